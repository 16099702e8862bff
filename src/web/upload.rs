//! From a request body to checked uploads: a raw image or a multipart form
//! of images, within the size and count limits, each sniffed by its content
//! (415 for anything that is not a thermal image pvtherm reads). The client's
//! file names survive only as labels.

use axum::body::Body;
use axum::extract::multipart::MultipartError;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};

use super::error::ApiError;
use super::queue::Upload;

/// Longest label kept from a client's file name.
const MAX_NAME_CHARS: usize = 100;

/// How much one request may carry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) max_bytes: usize,
    pub(crate) max_images: usize,
}

impl Limits {
    /// 413 naming the limit and the key that sets it.
    fn too_large(&self, what: &str) -> ApiError {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{what} is over the upload limit of {} MiB ([http] max_upload_mib); send fewer or smaller images per request",
                self.max_bytes / (1024 * 1024)
            ),
        )
    }
}

/// The uploads of `request`: the parts of a `multipart/form-data` body that
/// carry a file, or else the whole body as one image named `raw_name`.
pub(crate) async fn read_uploads(
    request: Request,
    limits: Limits,
    raw_name: Option<&str>,
) -> Result<Vec<Upload>, ApiError> {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(n) = length.filter(|&n| n > limits.max_bytes as u64) {
        return Err(limits.too_large(&format!("the request body ({n} bytes)")));
    }
    let multipart = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    let uploads = if multipart {
        read_multipart(request, limits).await?
    } else {
        let bytes = read_body(request.into_body(), limits).await?;
        let name = label(raw_name.unwrap_or(""), 0);
        vec![checked(name, bytes)?]
    };
    if uploads.is_empty() {
        return Err(ApiError::bad_request(
            "no image in the request: send the image as the body, or as file parts of a multipart/form-data form",
        ));
    }
    Ok(uploads)
}

/// The whole body, refused with 413 past the limit.
async fn read_body(body: Body, limits: Limits) -> Result<Vec<u8>, ApiError> {
    match axum::body::to_bytes(body, limits.max_bytes).await {
        Ok(bytes) => Ok(bytes.to_vec()),
        Err(e) => {
            let inner = e.into_inner();
            if inner
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some()
            {
                Err(limits.too_large("the request body"))
            } else {
                Err(ApiError::bad_request(format!(
                    "cannot read the request body: {inner}"
                )))
            }
        }
    }
}

/// The file parts of a multipart form.
async fn read_multipart(request: Request, limits: Limits) -> Result<Vec<Upload>, ApiError> {
    let mut form = Multipart::from_request(request, &()).await.map_err(|e| {
        ApiError::bad_request(format!("malformed multipart form: {}", e.body_text()))
    })?;
    let mut uploads = Vec::new();
    let mut total = 0usize;
    loop {
        let next = form.next_field().await;
        let Some(field) = next.map_err(|e| form_error(e, limits, "malformed multipart form"))?
        else {
            break;
        };
        let Some(file_name) = field.file_name().map(str::to_string) else {
            continue; // a plain form field, not a file
        };
        if uploads.len() == limits.max_images {
            return Err(ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "more than {} images in one request ([http] max_images): send them in several batches",
                    limits.max_images
                ),
            ));
        }
        let bytes = field
            .bytes()
            .await
            .map_err(|e| form_error(e, limits, &format!("cannot read the part {file_name:?}")))?;
        total += bytes.len();
        if total > limits.max_bytes {
            return Err(limits.too_large("the form"));
        }
        uploads.push(checked(label(&file_name, uploads.len()), bytes.to_vec())?);
    }
    Ok(uploads)
}

/// A multipart error: 413 past the body limit, else 400 saying `what`.
fn form_error(e: MultipartError, limits: Limits, what: &str) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        limits.too_large("the form")
    } else {
        ApiError::bad_request(format!("{what}: {}", e.body_text()))
    }
}

/// The upload, if its content is an image pvtherm reads (415 if not).
fn checked(name: String, bytes: Vec<u8>) -> Result<Upload, ApiError> {
    match sniff(&name, &bytes) {
        Some(extension) => Ok(Upload {
            name,
            extension,
            bytes,
        }),
        None => {
            let head: Vec<String> = bytes.iter().take(4).map(|b| format!("{b:02x}")).collect();
            Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!(
                    "{name}: not a thermal image pvtherm reads (content starts with {}): send a (radiometric) JPEG, PNG, TIFF or FLIR FFF, or a raw .y16 / .tjsn file named with its extension",
                    if head.is_empty() { "nothing".to_string() } else { head.join(" ") }
                ),
            ))
        }
    }
}

/// The extension the loader should see for this content: from the magic
/// bytes, or, for the headerless formats, from the client's file name.
fn sniff(name: &str, bytes: &[u8]) -> Option<&'static str> {
    let named = name
        .rsplit_once('.')
        .map(|(_, e)| e.to_ascii_lowercase())
        .unwrap_or_default();
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("jpg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("png")
    } else if bytes.starts_with(b"II*\0") || bytes.starts_with(b"MM\0*") {
        Some("tif")
    } else if bytes.starts_with(b"FFF\0") {
        // A .csq is FFF records too; the loader explains why it refuses one.
        Some(if named == "csq" { "csq" } else { "fff" })
    } else if matches!(named.as_str(), "y16" | "y16le")
        && !bytes.is_empty()
        && bytes.len().is_multiple_of(2)
    {
        Some(if named == "y16" { "y16" } else { "y16le" })
    } else if named == "tjsn" && bytes.trim_ascii_start().starts_with(b"{") {
        Some("tjsn")
    } else {
        None
    }
}

/// A label from a client's file name: its last path component, with only
/// plain characters, never empty.
fn label(file_name: &str, index: usize) -> String {
    let last = file_name.rsplit(['/', '\\']).next().unwrap_or("");
    let clean: String = last
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ' ' | '+'))
        .take(MAX_NAME_CHARS)
        .collect();
    let clean = clean.trim_start_matches('.').trim().to_string();
    if clean.is_empty() {
        format!("upload-{}", index + 1)
    } else {
        clean
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_never_paths() {
        assert_eq!(label("../../etc/passwd", 0), "passwd");
        assert_eq!(label("C:\\survey\\DJI_0001_T.JPG", 0), "DJI_0001_T.JPG");
        assert_eq!(label("..", 2), "upload-3");
    }

    #[test]
    fn content_decides_and_names_only_help_headerless_files() {
        assert_eq!(sniff("x.txt", &[0xFF, 0xD8, 0xFF, 0xE0]), Some("jpg"));
        assert_eq!(sniff("x.jpg", b"<html>"), None);
        assert_eq!(sniff("f.160x120.y16le", &[0; 4]), Some("y16le"));
        assert_eq!(sniff("f.tjsn", b" {\"radiometric\":1}"), Some("tjsn"));
    }
}
