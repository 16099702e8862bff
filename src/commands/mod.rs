//! One module per subcommand of the `pvtherm` binary. `main.rs` only parses
//! the command line and calls `commands::<name>::run`.

pub mod bench;
pub mod cameras;
pub mod capture;
pub mod detect;
pub mod eval;
pub mod run;

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::model::{ModelConfig, ModelStack, Precision};

/// Model choice shared by `detect` and `eval`.
#[derive(clap::Args, Debug, Clone)]
pub struct ModelArgs {
    /// Detector ONNX file (default: the built-in detector).
    #[arg(long = "model", value_name = "PATH")]
    pub detector: Option<PathBuf>,
    /// Defect classifier ONNX file (default: the built-in classifier).
    #[arg(long, value_name = "PATH")]
    pub classifier: Option<PathBuf>,
    /// Which built-in models to use.
    #[arg(long, value_enum, default_value = "f32")]
    pub precision: PrecisionArg,
    /// Model input size WIDTHxHEIGHT (multiples of 16).
    #[arg(long, value_name = "WxH", default_value = "640x512", value_parser = parse_size)]
    pub input_size: (usize, usize),
    /// Override the detector's score threshold.
    #[arg(long)]
    pub score_threshold: Option<f32>,
    /// Override the classifier's defect threshold.
    #[arg(long)]
    pub defect_threshold: Option<f32>,
    /// Threads for the detector's matrix products.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=crate::model::MAX_THREADS as i64))]
    pub threads: u16,
}

/// `--precision` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub enum PrecisionArg {
    Int8,
    F32,
}

impl ModelArgs {
    /// The `[model]` section these arguments stand for.
    pub fn to_config(&self) -> ModelConfig {
        ModelConfig {
            precision: match self.precision {
                PrecisionArg::Int8 => Precision::Int8,
                PrecisionArg::F32 => Precision::F32,
            },
            detector: self.detector.clone(),
            classifier: self.classifier.clone(),
            input_width: self.input_size.0,
            input_height: self.input_size.1,
            score_threshold: self.score_threshold,
            defect_threshold: self.defect_threshold,
            threads: usize::from(self.threads),
        }
    }

    /// Loads the models these arguments name.
    pub fn load(&self) -> Result<ModelStack> {
        ModelStack::load(&self.to_config())
    }
}

/// Parses `WIDTHxHEIGHT`.
fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("{s:?} is not WIDTHxHEIGHT"))
    };
    Ok((parse(w)?, parse(h)?))
}

/// `pvtherm check-config FILE`: parse and validate, print a summary, start nothing.
pub fn check_config(file: &Path) -> Result<()> {
    let config = crate::config::Config::load(file)?;
    println!("{}: OK", file.display());
    for warning in &config.warnings {
        println!("{}: warning: {warning}", file.display());
    }
    println!("{}", config.summary());
    Ok(())
}
