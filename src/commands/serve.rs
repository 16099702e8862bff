//! `pvtherm serve`: the web page and HTTP API on their own, for survey work
//! on a laptop or a server (no camera, no broker). The daemon serves the
//! same with `[http] enabled = true`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Result;

use super::ModelArgs;
use pvtherm::config::Config;
use pvtherm::web::{LiveState, WebServer, WebSetup};

/// Arguments of `pvtherm serve`.
#[derive(clap::Args, Debug)]
pub(crate) struct ServeArgs {
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Address and port to listen on [default: 127.0.0.1:8080, or the config
    /// file's `[http] listen`]. Port 0 picks a free one (printed at start).
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) listen: Option<SocketAddr>,
    /// File holding the bearer token API requests must send [default: the
    /// config file's `[http] token_file`; none].
    #[arg(long, value_name = "FILE")]
    pub(crate) token_file: Option<PathBuf>,
    /// Take `[http]`, `[model]`, `[analysis]` (the fixed position for images
    /// without one), `[render]` and `[source] max_pixels` (the uploads'
    /// decoded-size limit) from this configuration file; the flags above
    /// still override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// Entry point of `pvtherm serve`: serves until SIGINT or SIGTERM.
pub(crate) fn run(args: ServeArgs) -> Result<()> {
    let config = match &args.config {
        Some(file) => {
            let config = Config::load(file)?;
            for warning in &config.warnings {
                eprintln!("pvtherm: warning: {}: {warning}", file.display());
            }
            config
        }
        None => Config::default(),
    };
    let mut http = config.http.clone();
    if let Some(listen) = args.listen {
        http.listen = listen;
    }
    if let Some(file) = args.token_file {
        http.token_file = Some(file);
    }
    http.validate()?;
    let setup = WebSetup {
        http,
        model: args.model.over(config.model.clone()),
        analysis: config.analysis.clone(),
        render: config.render.clone(),
        pixel_limit: config.source.max_pixels,
        mode: "serve",
    };
    let server = WebServer::start(setup, Arc::new(LiveState::default()))?;
    // The one line a script (or a test) waits for: where to connect.
    println!("pvtherm serve: listening on http://{}/", server.addr());
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let signal = runtime.block_on(pvtherm::service::shutdown_signal())?;
    eprintln!("pvtherm serve: {signal} received, stopping");
    server.stop();
    Ok(())
}
