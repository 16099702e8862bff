//! The pages, script and style sheet, embedded in the binary: the box
//! serves them offline, with no CDN and no files to install.

use axum::extract::Path;
use axum::http::{header, HeaderValue};
use axum::response::{Html, IntoResponse, Response};

use super::error::ApiError;

/// `GET /`: the upload page.
pub(crate) async fn upload_page() -> Html<&'static str> {
    Html(include_str!("assets/index.html"))
}

/// `GET /live`: the live page.
pub(crate) async fn live_page() -> Html<&'static str> {
    Html(include_str!("assets/live.html"))
}

/// `GET /assets/{name}`: one of the embedded files, by its fixed name
/// (never a path on disk).
pub(crate) async fn asset(Path(name): Path<String>) -> Result<Response, ApiError> {
    let (content_type, body) = match name.as_str() {
        "app.js" => (
            "text/javascript; charset=utf-8",
            include_str!("assets/app.js"),
        ),
        "live.js" => (
            "text/javascript; charset=utf-8",
            include_str!("assets/live.js"),
        ),
        "style.css" => ("text/css; charset=utf-8", include_str!("assets/style.css")),
        _ => return Err(ApiError::not_found(format!("no asset {name:?}"))),
    };
    let mut response = body.into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(response)
}
