//! `[http]`: the web page and HTTP API of the daemon, and the defaults of
//! `pvtherm serve`. Safe by default: loopback only, bounded uploads, a
//! bounded analysis queue, request timeouts; a bearer token when set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::config_value::{duration, duration_in_range, in_range};

/// `[http]` of the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve the page and the API from the daemon (`pvtherm serve` always does).
    pub enabled: bool,
    /// Address and port to listen on. Loopback by default: open it to the
    /// network (e.g. "0.0.0.0:8080") only on a trusted network or with a token.
    pub listen: SocketAddr,
    /// File whose content (trailing newline removed) is the bearer token every
    /// request must carry (`Authorization: Bearer <token>`); none = no token.
    pub token_file: Option<PathBuf>,
    /// Largest accepted upload (one request, all its images), in MiB.
    pub max_upload_mib: u32,
    /// Batches that may wait for the analysis besides the one it works on;
    /// more are refused with 503 and Retry-After.
    pub queue_depth: u32,
    /// Most images in one batch.
    pub max_images: u32,
    /// Longest a request may take, analysis included (humantime, e.g. "60s").
    #[serde(with = "duration")]
    pub request_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token_file: None,
            max_upload_mib: 64,
            queue_depth: 2,
            max_images: 200,
            request_timeout: Duration::from_secs(120),
        }
    }
}

impl HttpConfig {
    /// Ranges of the numeric keys, and a readable token file.
    pub fn validate(&self) -> Result<()> {
        in_range(
            "[http] max_upload_mib",
            self.max_upload_mib,
            1..=4096,
            " MiB",
        )?;
        in_range("[http] queue_depth", self.queue_depth, 1..=64, " batches")?;
        in_range("[http] max_images", self.max_images, 1..=10_000, " images")?;
        duration_in_range(
            "[http] request_timeout",
            self.request_timeout,
            Duration::from_secs(1)..=Duration::from_secs(3600),
        )?;
        if self.token_file.is_some() {
            self.token()?;
        }
        Ok(())
    }

    /// The largest upload in bytes.
    pub(crate) fn max_upload_bytes(&self) -> usize {
        self.max_upload_mib as usize * 1024 * 1024
    }

    /// The bearer token from `token_file`, if one is configured.
    pub fn token(&self) -> Result<Option<String>> {
        let Some(file) = &self.token_file else {
            return Ok(None);
        };
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read [http] token_file {}", file.display()))?;
        let token = text.trim_end_matches(['\r', '\n']).to_string();
        if token.is_empty() {
            bail!(
                "[http] token_file {} is empty: write the token into it, or remove token_file",
                file.display()
            );
        }
        Ok(Some(token))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn documented_snippet_parses_with_every_key() {
        crate::config_value::test_support::check_documented_snippet::<HttpConfig>(
            "http",
            include_str!("../../config/snippets/http.toml"),
        );
    }

    #[test]
    fn empty_token_file_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "\n").unwrap();
        let config = HttpConfig {
            token_file: Some(file),
            ..HttpConfig::default()
        };
        let err = format!("{:#}", config.validate().unwrap_err());
        assert!(err.contains("token_file") && err.contains("empty"), "{err}");
    }
}
