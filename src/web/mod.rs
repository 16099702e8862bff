//! The web page and HTTP API: `pvtherm serve` and the daemon's `[http]`
//! section run this same server. It runs on its own thread and tokio
//! runtime, analyses uploads on its own model instance through a bounded
//! queue (`queue`), and reads the daemon's live state ([`LiveState`]) that
//! the pipeline fills with messages it built anyway; so neither a browser
//! nor a flood of uploads can slow the camera pipeline.
//!
//! Routes: `/` (upload page), `/live` (live page), `/assets/*` (embedded),
//! `/api/v1/...` (docs/openapi.yaml).

mod api;
mod assets;
mod auth;
mod base64;
pub(crate) mod config;
mod error;
mod export;
pub(crate) mod live;
mod queue;
mod upload;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tokio::sync::oneshot;

pub(crate) use config::HttpConfig;
pub use live::LiveState;

use crate::analysis::AnalysisConfig;
use crate::decode_limit::PixelLimit;
use crate::inspect::Inspector;
use crate::model::ModelConfig;
use crate::position::{Position, PositionConfig, PositionSourceKind};
use crate::render::RenderOptions;
use api::AppState;
use error::ApiError;
use queue::{AnalysisQueue, AnalysisSetup};
use upload::Limits;

/// Everything the server is built from.
pub struct WebSetup {
    pub http: HttpConfig,
    /// The uploads' models (loaded once more, for the uploads alone).
    pub model: ModelConfig,
    pub analysis: AnalysisConfig,
    pub render: RenderOptions,
    /// Most pixels an uploaded image may decode to (`[source] max_pixels`).
    pub pixel_limit: PixelLimit,
    /// `serve` or `daemon`: what `/api/v1/status` says and the live page expects.
    pub mode: &'static str,
}

/// The running server: where it listens, and how to stop it.
pub struct WebServer {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WebServer {
    /// Loads the uploads' models, binds `[http] listen` (errors name the
    /// address) and starts serving on the thread `pvtherm-http`.
    pub fn start(setup: WebSetup, live: Arc<LiveState>) -> Result<WebServer> {
        let http = setup.http;
        let credentials = auth::Credentials::from_config(&http)?;
        // Uploads are survey images: one sighting is a defect, as in `detect`.
        let mut analysis = setup.analysis;
        analysis.tracking.min_frames = 1;
        let fixed_position = fixed_position(&analysis.position);
        // `serve` with `precision = "auto"` times the pairs here; the daemon
        // passes the pair its own trial chose.
        let (inspector, trial) = Inspector::load_fastest(&setup.model, analysis)
            .context("cannot load the models for the uploads")?;
        if let Some(trial) = trial {
            log::info!("uploads: {trial}");
        }
        let queue = AnalysisQueue::start(
            inspector,
            AnalysisSetup {
                render: setup.render,
                fixed_position,
                pixel_limit: setup.pixel_limit,
            },
            http.queue_depth as usize,
        )?;
        let app = Arc::new(AppState {
            queue,
            live,
            limits: Limits {
                max_bytes: http.max_upload_bytes(),
                max_images: http.max_images as usize,
            },
            mode: setup.mode,
            token_required: credentials.token_required(),
            login_required: credentials.login_required(),
            request_timeout: http.request_timeout,
        });
        let router = router(app, credentials, http.max_upload_bytes());
        let listener = std::net::TcpListener::bind(http.listen)
            .with_context(|| format!("[http] listen {}: cannot listen there", http.listen))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("cannot start the HTTP runtime")?;
        let thread = std::thread::Builder::new()
            .name("pvtherm-http".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => return log::error!("[http] cannot serve on {addr}: {e}"),
                    };
                    let served = axum::serve(listener, router)
                        .with_graceful_shutdown(async {
                            let _ = stopped.await;
                        })
                        .await;
                    if let Err(e) = served {
                        log::error!("[http] server on {addr} failed: {e}");
                    }
                })
            })
            .context("cannot start the HTTP thread")?;
        Ok(WebServer {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port chosen when `listen` said 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting, lets requests in progress finish, and waits for it.
    pub fn stop(mut self) {
        self.shut_down();
    }

    /// What [`WebServer::stop`] and drop do.
    fn shut_down(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WebServer {
    fn drop(&mut self) {
        self.shut_down();
    }
}

/// The configured fixed camera position, for uploads whose images do not
/// record one.
fn fixed_position(config: &PositionConfig) -> Option<Position> {
    if config.source != PositionSourceKind::Fixed {
        return None;
    }
    Some(Position {
        latitude: config.latitude?,
        longitude: config.longitude?,
        altitude: config.altitude,
        source: "fixed".into(),
        fix_age_s: None,
        fix_time: None,
    })
}

/// The routes, the credentials check on `/api`, the body limit and the timeout.
fn router(app: Arc<AppState>, credentials: auth::Credentials, max_upload: usize) -> Router {
    let timeout = app.request_timeout;
    let api = Router::new()
        .route("/detect", post(api::detect))
        .route("/status", get(api::status))
        .route("/snapshot.jpg", get(api::snapshot))
        .route("/events", get(api::events))
        .route("/events/{seq}/thumbnail.jpg", get(api::event_thumbnail))
        .fallback(|| async { ApiError::not_found("no such API endpoint (see docs/openapi.yaml)") })
        .route_layer(middleware::from_fn_with_state(
            Arc::new(credentials),
            auth::require_credentials,
        ));
    Router::new()
        .route("/", get(assets::upload_page))
        .route("/live", get(assets::live_page))
        .route("/assets/{name}", get(assets::asset))
        .nest("/api/v1", api)
        .fallback(|| async { ApiError::not_found("no such page: try / or /live") })
        .layer(middleware::from_fn_with_state(timeout, time_limit))
        // Room for the multipart framing around the images themselves.
        .layer(DefaultBodyLimit::max(max_upload + 64 * 1024))
        .with_state(app)
}

/// Ends a request that takes longer than `[http] request_timeout` with 503.
async fn time_limit(State(limit): State<Duration>, request: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "the request took longer than {} ([http] request_timeout): send fewer images per request",
                humantime::format_duration(limit)
            ),
        )
        .into_response(),
    }
}
