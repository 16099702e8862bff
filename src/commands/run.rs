//! `pvtherm run`: the daemon systemd starts.

use std::path::PathBuf;

use anyhow::{Context, Result};

use pvtherm::config::Config;

/// Arguments of `pvtherm run`.
#[derive(clap::Args, Debug)]
pub(crate) struct RunArgs {
    /// The configuration file.
    #[arg(
        long,
        short,
        value_name = "FILE",
        default_value = "/etc/pvtherm/pvtherm.toml"
    )]
    pub(crate) config: PathBuf,
}

/// Entry point of `pvtherm run`: read the config, set up logging, open the
/// source, load the models, run until SIGTERM or the end of a replay.
pub(crate) fn run(args: RunArgs) -> Result<()> {
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
                log::info!("{s} received: finishing the frame in flight, flushing, going offline");
                // The drain may wait up to `[mqtt] drain_timeout` for a broker that
                // is down; a second signal (an impatient operator, systemd's stop
                // timeout) must not be ignored meanwhile.
                tokio::spawn(stop_on_second_signal());
            }
            Err(e) => log::error!("cannot listen for signals: {e}"),
        }
    };
    pvtherm::pipeline::run_daemon(config, source, shutdown)
}

/// Ends the process at the next SIGTERM or SIGINT, without waiting for the
/// drain. Nothing accepted is lost: every accepted message is committed to the
/// outbox (its write-ahead log survives an abrupt exit like a crash) and is
/// delivered after the next start.
async fn stop_on_second_signal() {
    if let Ok(s) = pvtherm::service::shutdown_signal().await {
        log::warn!(
            "second {s} during the shutdown drain: stopping now; undelivered messages stay \
             in the outbox for the next start"
        );
        std::process::exit(0);
    }
}
