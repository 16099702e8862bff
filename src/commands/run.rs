//! `pvtherm run`: the daemon systemd starts.

use std::path::PathBuf;

use anyhow::{Context, Result};

use pvtherm::config::Config;

/// Arguments of `pvtherm run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/pvtherm/pvtherm.toml"
    )]
    pub config: PathBuf,
}

/// Entry point of `pvtherm run`: read the config, set up logging, open the
/// source, load the models, run until SIGTERM or the end of a replay.
pub fn run(args: RunArgs) -> Result<()> {
    let config = Config::load(&args.config)?;
    let level = config
        .logging
        .level
        .parse()
        .unwrap_or(log::LevelFilter::Info);
    pvtherm::service::init_logging(level).context("cannot set up logging")?;
    log::info!("configuration {} loaded", args.config.display());
    for warning in &config.warnings {
        log::warn!("{}: {warning}", args.config.display());
    }
    let source = config
        .source
        .open()
        .context("cannot open the frame source")?;
    let shutdown = async {
        match pvtherm::service::shutdown_signal().await {
            Ok(s) => {
                log::info!("{s} received: finishing the frame in flight, flushing, going offline")
            }
            Err(e) => log::error!("cannot listen for signals: {e}"),
        }
    };
    pvtherm::pipeline::run_daemon(config, source, shutdown)
}
