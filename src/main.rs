//! The `pvtherm` command line: the daemon (`run`) and the one-shot tools.

// The commands are for this binary only: nothing in it is `pub`.
#![warn(unreachable_pub)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod commands;

/// Thermographic inspection of PV plants on an edge box: thermal camera ->
/// ONNX module detector and defect classifier -> MQTT.
#[derive(Parser, Debug)]
#[command(name = "pvtherm", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the daemon: capture, detect, publish over MQTT (what systemd starts).
    Run(commands::run::RunArgs),
    /// Find the modules in thermal images and say which may be defective.
    Detect(commands::detect::DetectArgs),
    /// Measure the model against annotated images (module AP50, defect precision/recall).
    Eval(commands::eval::EvalArgs),
    /// List V4L2 cameras, their formats, and which ones pvtherm can use.
    Cameras(commands::cameras::CamerasArgs),
    /// Capture frames from a V4L2 camera: print them, optionally save them (debugging).
    Capture(commands::capture::CaptureArgs),
    /// Time the models on this machine, stage by stage (int8 against f32 with --both).
    Bench(commands::bench::BenchArgs),
    /// Serve the upload page, the live page and the HTTP API (survey work; the daemon serves them with [http]).
    Serve(commands::serve::ServeArgs),
    /// Validate a configuration file without starting anything.
    CheckConfig {
        /// The TOML configuration file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Run(_)) {
        // Rust ignores SIGPIPE, turning a closed pipe into a panic in `println!`;
        // a one-shot tool should just stop, like `cat` does. Not the daemon: a
        // restarted journald must not kill it through its stderr.
        // SAFETY: no other thread exists yet.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let result = match cli.command {
        Command::Run(args) => commands::run::run(args),
        Command::Detect(args) => commands::detect::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Cameras(args) => commands::cameras::run(args),
        Command::Capture(args) => commands::capture::run(args),
        Command::Bench(args) => commands::bench::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::CheckConfig { file } => commands::check_config(&file),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // `{:#}` prints the whole context chain on one line: "what failed: why".
            eprintln!("pvtherm: error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
