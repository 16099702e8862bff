//! `[http]`: the web page and HTTP API of the daemon, and the defaults of
//! `pvtherm serve`. Safe by default: loopback only, bounded uploads, a
//! bounded analysis queue, request timeouts; a bearer token and/or an HTTP
//! Basic login when set.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::config_value::{duration, duration_in_range, in_range, read_secret_file};

/// `[http]` of the configuration file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Serve the page and the API from the daemon (`pvtherm serve` always does).
    pub(crate) enabled: bool,
    /// Address and port to listen on. Loopback by default: open it to the
    /// network (e.g. "0.0.0.0:8080") only on a trusted network or with a
    /// token or a login.
    pub listen: SocketAddr,
    /// File whose content (trailing newline removed) is the bearer token every
    /// request must carry (`Authorization: Bearer <token>`); none = no token.
    pub token_file: Option<PathBuf>,
    /// User name of the HTTP Basic login (a browser asks for it); set together
    /// with `password_file`. Either the login or the token is accepted.
    pub(crate) username: Option<String>,
    /// File whose content (trailing newline removed) is the password of
    /// `username`, like `[mqtt] password_file`.
    pub(crate) password_file: Option<PathBuf>,
    /// Largest accepted upload (one request, all its images), in MiB.
    pub(crate) max_upload_mib: u32,
    /// Batches that may wait for the analysis besides the one it works on;
    /// more are refused with 503 and Retry-After.
    pub(crate) queue_depth: u32,
    /// Most images in one batch.
    pub(crate) max_images: u32,
    /// Longest a request may take, analysis included (humantime, e.g. "60s").
    #[serde(with = "duration")]
    pub(crate) request_timeout: Duration,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            token_file: None,
            username: None,
            password_file: None,
            max_upload_mib: 64,
            queue_depth: 2,
            max_images: 200,
            request_timeout: Duration::from_secs(120),
        }
    }
}

impl HttpConfig {
    /// Ranges of the numeric keys, and readable, non-empty token and password
    /// files (read here, so `check-config` and `run` refuse the same files).
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
        self.token()?;
        self.basic_login()?;
        Ok(())
    }

    /// The largest upload in bytes.
    pub(crate) fn max_upload_bytes(&self) -> usize {
        self.max_upload_mib as usize * 1024 * 1024
    }

    /// The bearer token from `token_file`, if one is configured.
    pub(crate) fn token(&self) -> Result<Option<String>> {
        let Some(file) = &self.token_file else {
            return Ok(None);
        };
        read_secret_file("[http] token_file", file, "token").map(Some)
    }

    /// The user name and password of the HTTP Basic login, if one is
    /// configured: both keys or neither, a user name a Basic login can carry
    /// (no `:`, which separates it from the password), a non-empty password.
    pub(crate) fn basic_login(&self) -> Result<Option<(String, String)>> {
        let (user, file) = match (&self.username, &self.password_file) {
            (None, None) => return Ok(None),
            (Some(user), Some(file)) => (user, file),
            _ => bail!(
                "[http] set both username and password_file (the HTTP Basic login), or neither"
            ),
        };
        if user.is_empty() || user.contains(':') || user.chars().any(char::is_control) {
            bail!("[http] username = {user:?}: must be non-empty, without ':' and control characters (a Basic login sends user:password)");
        }
        let password = read_secret_file("[http] password_file", file, "password")?;
        Ok(Some((user.clone(), password)))
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

    #[test]
    fn basic_login_needs_both_keys_a_plain_user_and_a_readable_password() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("password");
        std::fs::write(&file, "pa:ss w0rd\n").unwrap();
        let login = |user: Option<&str>, file: Option<&std::path::Path>| HttpConfig {
            username: user.map(str::to_string),
            password_file: file.map(std::path::Path::to_path_buf),
            ..HttpConfig::default()
        };
        let refused = |config: HttpConfig| format!("{:#}", config.validate().unwrap_err());
        assert_eq!(
            login(Some("inspector"), Some(&file)).basic_login().unwrap(),
            Some(("inspector".into(), "pa:ss w0rd".into()))
        );
        assert_eq!(HttpConfig::default().basic_login().unwrap(), None);
        let err = refused(login(Some("inspector"), None));
        assert!(err.contains("both username and password_file"), "{err}");
        let err = refused(login(None, Some(&file)));
        assert!(err.contains("both username and password_file"), "{err}");
        let err = refused(login(Some("a:b"), Some(&file)));
        assert!(
            err.contains("[http] username") && err.contains("':'"),
            "{err}"
        );
        let err = refused(login(Some("inspector"), Some(&dir.path().join("none"))));
        assert!(err.contains("cannot read [http] password_file"), "{err}");
        std::fs::write(&file, "").unwrap();
        let err = refused(login(Some("inspector"), Some(&file)));
        assert!(
            err.contains("[http] password_file") && err.contains("empty"),
            "{err}"
        );
    }
}
