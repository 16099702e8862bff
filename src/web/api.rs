//! The handlers of `/api/v1`: detect (the uploads' analysis, in the
//! `detect` schema or as CSV, GeoJSON, KML, the annotated JPEG or the page's
//! overview), status, the live snapshot and the defect events.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::ApiError;
use super::live::LiveState;
use super::queue::{AnalysisQueue, Batch, Refused};
use super::upload::{self, Limits};
use super::{base64, export};
use crate::messages::ModelInfo;

/// What every handler shares.
pub(crate) struct AppState {
    pub(crate) queue: AnalysisQueue,
    pub(crate) live: Arc<LiveState>,
    pub(crate) limits: Limits,
    /// `serve` or `daemon`.
    pub(crate) mode: &'static str,
    /// A bearer token is configured (`[http] token_file`).
    pub(crate) token_required: bool,
    /// A Basic login is configured (`[http] username`, `password_file`).
    pub(crate) login_required: bool,
    pub(crate) request_timeout: Duration,
}

/// The answer formats of `POST /api/v1/detect`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Format {
    /// The `detect --json` report.
    #[default]
    Json,
    Csv,
    Geojson,
    Kml,
    /// The annotated picture of the first image.
    Jpeg,
    /// Everything the upload page shows, in one answer.
    Overview,
}

/// The query of `POST /api/v1/detect`.
#[derive(Debug, Deserialize)]
pub(crate) struct DetectQuery {
    #[serde(default)]
    format: Option<Format>,
    /// `1`: the annotated JPEG (same as `format=jpeg`).
    #[serde(default)]
    annotated: Option<String>,
    /// The file name of a raw body (decides how headerless formats are read).
    #[serde(default)]
    name: Option<String>,
}

/// `POST /api/v1/detect`.
pub(crate) async fn detect(
    State(app): State<Arc<AppState>>,
    Query(query): Query<DetectQuery>,
    request: Request,
) -> Result<Response, ApiError> {
    let format = match query.annotated.as_deref() {
        Some("1" | "true") => Format::Jpeg,
        _ => query.format.unwrap_or_default(),
    };
    let uploads = upload::read_uploads(request, app.limits, query.name.as_deref()).await?;
    let answer = app.queue.submit(uploads).map_err(|refused| match refused {
        Refused::Full { capacity } => ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            message: format!(
                "the analysis queue is full ({capacity} batches waiting besides the one in progress, [http] queue_depth): retry later"
            ),
            retry_after_s: Some(5),
        },
        Refused::Stopped => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the upload analysis stopped (see the log); restart pvtherm",
        ),
    })?;
    let batch = answer.await.map_err(|_| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "the upload analysis stopped while working on this request (see the log)",
        )
    })?;
    if batch.report.images.is_empty() {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("no image could be analysed: {}", batch.errors.join("; ")),
        ));
    }
    Ok(respond(format, batch))
}

/// The overview the upload page draws: the report, the pictures as data
/// URLs, and the downloads.
#[derive(Serialize)]
struct Overview<'a> {
    report: &'a crate::survey::SurveyReport,
    images: Vec<OverviewImage>,
    contact_sheet: Option<String>,
    errors: &'a [String],
    csv: String,
    geojson: String,
    kml: String,
}

/// One picture of the overview.
#[derive(Serialize)]
struct OverviewImage {
    name: String,
    annotated: String,
}

/// `batch` in `format`.
fn respond(format: Format, batch: Batch) -> Response {
    let report = &batch.report;
    match format {
        Format::Json => Json(report).into_response(),
        Format::Csv => typed("text/csv; charset=utf-8", export::csv(report)),
        Format::Geojson => typed("application/geo+json", export::geojson(report)),
        Format::Kml => typed("application/vnd.google-earth.kml+xml", export::kml(report)),
        Format::Jpeg => typed("image/jpeg", batch.images[0].annotated_jpeg.clone()),
        Format::Overview => {
            let data_url = |jpeg: &[u8]| format!("data:image/jpeg;base64,{}", base64::encode(jpeg));
            let overview = Overview {
                report,
                images: batch
                    .images
                    .iter()
                    .map(|i| OverviewImage {
                        name: i.name.clone(),
                        annotated: data_url(&i.annotated_jpeg),
                    })
                    .collect(),
                contact_sheet: batch.contact_sheet_jpeg.as_deref().map(data_url),
                errors: &batch.errors,
                csv: export::csv(report),
                geojson: export::geojson(report),
                kml: export::kml(report),
            };
            Json(overview).into_response()
        }
    }
}

/// A body with its content type.
fn typed(content_type: &'static str, body: impl Into<axum::body::Body>) -> Response {
    let mut response = Response::new(body.into());
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// `GET /api/v1/status`.
#[derive(Serialize)]
struct Status<'a> {
    version: &'static str,
    mode: &'static str,
    /// The models uploads are analysed with.
    model: &'a ModelInfo,
    analysis_queue: QueueStatus,
    limits: LimitsStatus,
    token_required: bool,
    login_required: bool,
    /// The daemon's latest `camera` payload (`null` under `pvtherm serve`).
    camera: Option<Value>,
    /// The daemon's latest `stats` payload: fps, broker link, outbox depth.
    stats: Option<Value>,
    snapshot_seq: Option<u64>,
    last_event_seq: Option<u64>,
}

/// The analysis queue in [`Status`].
#[derive(Serialize)]
struct QueueStatus {
    pending: usize,
    capacity: usize,
}

/// The limits in [`Status`].
#[derive(Serialize)]
struct LimitsStatus {
    max_upload_bytes: usize,
    max_images: usize,
    request_timeout_s: u64,
}

/// `GET /api/v1/status`.
pub(crate) async fn status(State(app): State<Arc<AppState>>) -> Response {
    let health = app.live.health();
    let raw = |bytes: Option<Arc<[u8]>>| bytes.and_then(|b| serde_json::from_slice(&b).ok());
    Json(Status {
        version: env!("CARGO_PKG_VERSION"),
        mode: app.mode,
        model: app.queue.model(),
        analysis_queue: QueueStatus {
            pending: app.queue.pending(),
            capacity: app.queue.capacity(),
        },
        limits: LimitsStatus {
            max_upload_bytes: app.limits.max_bytes,
            max_images: app.limits.max_images,
            request_timeout_s: app.request_timeout.as_secs(),
        },
        token_required: app.token_required,
        login_required: app.login_required,
        camera: raw(health.camera),
        stats: raw(health.stats),
        snapshot_seq: health.snapshot_seq,
        last_event_seq: health.last_event_seq,
    })
    .into_response()
}

/// `GET /api/v1/snapshot.jpg`: the latest annotated snapshot.
pub(crate) async fn snapshot(State(app): State<Arc<AppState>>) -> Result<Response, ApiError> {
    let snapshot = app.live.snapshot().ok_or_else(|| {
        ApiError::not_found(match app.mode {
            "daemon" => "no snapshot yet: the daemon makes one every [output] snapshot_interval once frames arrive",
            _ => "no snapshot: pvtherm serve has no camera (live snapshots come from pvtherm run with [http] enabled)",
        })
    })?;
    let mut response = typed("image/jpeg", snapshot.jpeg.to_vec());
    response
        .headers_mut()
        .insert("x-snapshot-seq", HeaderValue::from(snapshot.seq));
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// The query of `GET /api/v1/events`.
#[derive(Deserialize)]
pub(crate) struct EventsQuery {
    /// Only events numbered above this (the `seq` of the last one seen).
    #[serde(default)]
    since: u64,
}

/// One event of `GET /api/v1/events`.
#[derive(Serialize)]
struct EventItem {
    seq: u64,
    #[serde(with = "crate::analysis::rfc3339")]
    received_at: std::time::SystemTime,
    /// The `events` payload as the broker got it.
    event: Value,
    /// Where its thumbnail is, if it has one.
    thumbnail: Option<String>,
}

/// `GET /api/v1/events?since=`.
pub(crate) async fn events(
    State(app): State<Arc<AppState>>,
    Query(query): Query<EventsQuery>,
) -> Response {
    let items: Vec<EventItem> = app
        .live
        .events_since(query.since)
        .into_iter()
        .filter_map(|e| {
            Some(EventItem {
                seq: e.seq,
                received_at: e.received_at,
                event: serde_json::from_slice(&e.payload).ok()?,
                thumbnail: e
                    .thumbnail
                    .as_ref()
                    .map(|_| format!("/api/v1/events/{}/thumbnail.jpg", e.seq)),
            })
        })
        .collect();
    Json(serde_json::json!({ "events": items })).into_response()
}

/// `GET /api/v1/events/{seq}/thumbnail.jpg`.
pub(crate) async fn event_thumbnail(
    State(app): State<Arc<AppState>>,
    Path(seq): Path<u64>,
) -> Result<Response, ApiError> {
    let jpeg = app.live.event_thumbnail(seq).ok_or_else(|| {
        ApiError::not_found(format!(
            "event {seq} has no thumbnail here (only the last events are kept)"
        ))
    })?;
    Ok(typed("image/jpeg", jpeg.to_vec()))
}
