//! The `[mqtt]` config section and what is built from it: rumqttc options, the rustls
//! client configuration (ring provider) and readable connection errors.

use crate::config_value::duration;
use crate::config_value::{duration_in_range, in_range, read_secret_file};
use anyhow::{bail, Context, Result};
use rumqttc::{
    ConnectReturnCode, ConnectionError, MqttOptions, StateError, TlsConfiguration, Transport,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// System CA bundle used when TLS is on and no `ca_file` is given (Debian path).
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The `[mqtt]` config section: how to reach the broker and how to pace delivery.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// Broker host name or IP address. Default `127.0.0.1`.
    pub host: String,
    /// Broker TCP port. Default 1883 (use 8883 for TLS brokers).
    pub port: u16,
    /// MQTT client id. Default `pvtherm-<device>`. Must be unique on the broker: a
    /// second client with the same id kicks the first one off.
    pub client_id: Option<String>,
    /// User name for brokers that require a login.
    pub username: Option<String>,
    /// Password, inline. Prefer `password_file` or `password_env`. Never logged.
    pub password: Option<String>,
    /// File whose content (trailing newline removed) is the password.
    pub password_file: Option<PathBuf>,
    /// Environment variable holding the password (e.g. from a systemd credential).
    pub password_env: Option<String>,
    /// QoS for durable messages and state: 1 (default, at-least-once: outbox rows are
    /// deleted on PUBACK) or 0 (fire and forget: rows are deleted once written to the
    /// socket, so a dropped link can lose them).
    pub qos: u8,
    /// MQTT keep-alive; also how fast a dead link is noticed. Default `"30s"`
    /// (at least 1 s).
    #[serde(with = "duration")]
    pub keep_alive: Duration,
    /// Largest message accepted by `submit`, in bytes (snapshot JPEGs must fit).
    /// The broker must accept it too (mosquitto: `message_size_limit`). Default 1 MiB.
    pub max_message_bytes: usize,
    /// First reconnect delay. Doubles on every failed attempt, with random jitter.
    /// Default `"1s"`.
    #[serde(with = "duration")]
    pub reconnect_initial: Duration,
    /// Upper bound of the reconnect delay. Default `"60s"`.
    #[serde(with = "duration")]
    pub reconnect_max: Duration,
    /// Delivery rate limit in messages per second, so a backlog replayed after an
    /// outage does not flood a thin uplink. Must exceed the steady production rate
    /// (detections per frame + defects) or the backlog never drains. 0 = unlimited.
    /// Default 100.
    pub replay_rate: u32,
    /// Most unacknowledged messages on the wire at once. Bounds memory when the broker
    /// is slow or never acknowledges; everything else waits on disk. Default 32.
    pub inflight_window: u16,
    /// On shutdown, keep delivering what is queued for at most this long before
    /// publishing `offline` and disconnecting; the rest stays in the outbox for the
    /// next start. Default `"5s"`.
    #[serde(with = "duration")]
    pub drain_timeout: Duration,
    /// TLS. Absent (default) = plain TCP; an `[mqtt.tls]` table (even empty) turns TLS
    /// on, verifying the broker against `ca_file` or the system CA bundle.
    pub tls: Option<TlsConfig>,
}

/// The `[mqtt.tls]` table: rustls with the ring crypto provider.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TlsConfig {
    /// PEM file with the CA certificate(s) that signed the broker's certificate.
    /// Default: the system bundle `/etc/ssl/certs/ca-certificates.crt`.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for brokers that require client certificates.
    pub client_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) for `client_cert`.
    pub client_key: Option<PathBuf>,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            host: "127.0.0.1".to_string(),
            port: 1883,
            client_id: None,
            username: None,
            password: None,
            password_file: None,
            password_env: None,
            qos: 1,
            keep_alive: Duration::from_secs(30),
            max_message_bytes: 1024 * 1024,
            reconnect_initial: Duration::from_secs(1),
            reconnect_max: Duration::from_secs(60),
            replay_rate: 100,
            inflight_window: 32,
            drain_timeout: Duration::from_secs(5),
            tls: None,
        }
    }
}

/// Redacts the password: config structs get logged with `{:?}`.
impl fmt::Debug for MqttConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("client_id", &self.client_id)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("password_file", &self.password_file)
            .field("password_env", &self.password_env)
            .field("qos", &self.qos)
            .field("keep_alive", &self.keep_alive)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("reconnect_initial", &self.reconnect_initial)
            .field("reconnect_max", &self.reconnect_max)
            .field("replay_rate", &self.replay_rate)
            .field("inflight_window", &self.inflight_window)
            .field("drain_timeout", &self.drain_timeout)
            .field("tls", &self.tls)
            .finish()
    }
}

impl MqttConfig {
    /// Checks every value that does not need the network (address, QoS,
    /// durations, sizes, window, password sources, the TLS key pair). Called by
    /// `Config::validate`, so `check-config` refuses what the client would, and
    /// again by [`MqttConfig::client_options`] for callers without a file.
    pub(crate) fn validate(&self) -> Result<()> {
        if self.host.trim().is_empty() {
            bail!("[mqtt] host is empty: set the broker's host name or IP address");
        }
        in_range("[mqtt] port", self.port, 1..=u16::MAX, "")?;
        // rumqttc panics on these rather than returning an error.
        if let Some(id) = &self.client_id {
            if id.is_empty() || id.starts_with(' ') {
                bail!("[mqtt] client_id = {id:?}: must be non-empty and not start with a space (or remove it for \"pvtherm-<device id>\")");
            }
        }
        if self.qos > 1 {
            bail!(
                "[mqtt] qos = {}: only 0 and 1 are supported (1 = at-least-once, the default)",
                self.qos
            );
        }
        // MQTT carries the keep-alive as whole seconds in 16 bits; 0 = none.
        if !self.keep_alive.is_zero() {
            duration_in_range(
                "[mqtt] keep_alive",
                self.keep_alive,
                Duration::from_secs(1)..=Duration::from_secs(u16::MAX.into()),
            )?;
        }
        // MQTT's largest packet is 256 MiB, and the packet adds headroom.
        in_range(
            "[mqtt] max_message_bytes",
            self.max_message_bytes,
            1024..=128 * 1024 * 1024,
            " bytes",
        )?;
        in_range("[mqtt] inflight_window", self.inflight_window, 1..=1000, "")?;
        duration_in_range(
            "[mqtt] reconnect_max",
            self.reconnect_max,
            Duration::from_millis(1)..=crate::config_value::MAX_PERIOD,
        )?;
        duration_in_range(
            "[mqtt] reconnect_initial",
            self.reconnect_initial,
            Duration::from_millis(1)..=self.reconnect_max,
        )?;
        duration_in_range(
            "[mqtt] drain_timeout",
            self.drain_timeout,
            Duration::ZERO..=crate::config_value::MAX_PERIOD,
        )?;
        if let Some(tls) = &self.tls {
            if tls.client_cert.is_some() != tls.client_key.is_some() {
                bail!("[mqtt.tls] set both client_cert and client_key, or neither");
            }
        }
        let sources = [
            self.password.is_some(),
            self.password_file.is_some(),
            self.password_env.is_some(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            bail!("[mqtt] set only one of password, password_file, password_env");
        }
        if sources.iter().any(|s| *s) && self.username.is_none() {
            bail!("[mqtt] a password is set but no username");
        }
        Ok(())
    }

    /// Resolves the password from `password`, `password_file` or `password_env`.
    fn resolve_password(&self) -> Result<Option<String>> {
        if let Some(p) = &self.password {
            return Ok(Some(p.clone()));
        }
        if let Some(file) = &self.password_file {
            return read_secret_file("[mqtt] password_file", file, "password").map(Some);
        }
        if let Some(var) = &self.password_env {
            let value = std::env::var(var).with_context(|| {
                format!("[mqtt] password_env: environment variable {var} is not set")
            })?;
            return Ok(Some(value));
        }
        Ok(None)
    }

    /// rumqttc options for this broker: address, client id, credentials, TLS,
    /// keep-alive and packet size. The publisher adds the last will and the in-flight
    /// limit; test subscribers use it as is.
    pub fn client_options(&self, client_id: &str) -> Result<MqttOptions> {
        self.validate()?;
        let mut options = MqttOptions::new(client_id, self.host.trim(), self.port);
        options.set_keep_alive(self.keep_alive);
        // Headroom for the fixed header and topic on top of the payload.
        let packet = self.max_message_bytes + 64 * 1024;
        options.set_max_packet_size(packet, packet);
        if let Some(user) = &self.username {
            let password = self.resolve_password()?.unwrap_or_default();
            options.set_credentials(user.clone(), password);
        }
        if let Some(tls) = &self.tls {
            let config = tls_client_config(tls)?;
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                Arc::new(config),
            )));
        }
        Ok(options)
    }

    /// `host:port`, for log lines.
    pub(crate) fn address(&self) -> String {
        format!("{}:{}", self.host.trim(), self.port)
    }
}

/// Builds a rustls client configuration with the ring provider (no process-wide
/// default provider is installed: no global state).
pub(crate) fn tls_client_config(tls: &TlsConfig) -> Result<rustls::ClientConfig> {
    let ca_file = tls
        .ca_file
        .clone()
        .unwrap_or_else(|| PathBuf::from(SYSTEM_CA_BUNDLE));
    let mut roots = rustls::RootCertStore::empty();
    for cert in read_certs(&ca_file, "[mqtt.tls] ca_file")? {
        roots.add(cert).with_context(|| {
            format!(
                "[mqtt.tls] ca_file {}: unusable CA certificate",
                ca_file.display()
            )
        })?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("rustls: no usable TLS protocol version")?
        .with_root_certificates(roots);
    let config = match (&tls.client_cert, &tls.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            let chain = read_certs(cert, "[mqtt.tls] client_cert")?;
            let key = read_key(key)?;
            builder
                .with_client_auth_cert(chain, key)
                .context("[mqtt.tls] client_cert and client_key do not form a usable pair")?
        }
        _ => bail!("[mqtt.tls] set both client_cert and client_key, or neither"),
    };
    Ok(config)
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open {key} {}", path.display()))?;
    let certs = rustls_pemfile::certs(&mut BufReader::new(file))
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{key} {}: not a PEM certificate file", path.display()))?;
    if certs.is_empty() {
        bail!("{key} {}: no PEM certificate found", path.display());
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot open [mqtt.tls] client_key {}", path.display()))?;
    rustls_pemfile::private_key(&mut BufReader::new(file))
        .with_context(|| format!("[mqtt.tls] client_key {}: unreadable PEM", path.display()))?
        .with_context(|| {
            format!(
                "[mqtt.tls] client_key {}: no private key found",
                path.display()
            )
        })
}

/// A one-line, actionable description of why the connection failed or dropped.
pub(crate) fn describe_connection_error(e: &ConnectionError, address: &str) -> String {
    match e {
        ConnectionError::ConnectionRefused(code) => {
            let why = match code {
                ConnectReturnCode::BadUserNamePassword => {
                    "bad user name or password — check [mqtt] username/password"
                }
                ConnectReturnCode::NotAuthorized => {
                    "not authorized (bad user name or password, or no access) — check [mqtt] username/password"
                }
                ConnectReturnCode::BadClientId => "client id rejected — check [mqtt] client_id",
                ConnectReturnCode::RefusedProtocolVersion => "MQTT 3.1.1 not supported by the broker",
                ConnectReturnCode::ServiceUnavailable => "service unavailable",
                ConnectReturnCode::Success => "unexpected success code",
            };
            format!("broker {address} refused the connection: {why}")
        }
        ConnectionError::Io(io) => format!("cannot reach broker {address}: {io}"),
        ConnectionError::NetworkTimeout => format!("broker {address}: connection timed out"),
        ConnectionError::FlushTimeout => {
            format!("broker {address}: write timed out (link stalled)")
        }
        ConnectionError::Tls(t) => format!(
            "TLS with broker {address} failed: {t} — check [mqtt.tls] and the broker certificate"
        ),
        ConnectionError::MqttState(StateError::AwaitPingResp) => {
            format!("broker {address} stopped answering (no ping response)")
        }
        ConnectionError::MqttState(StateError::ConnectionAborted) => {
            format!("broker {address} closed the connection")
        }
        ConnectionError::MqttState(StateError::Io(io)) => {
            format!("link to broker {address} lost: {io}")
        }
        ConnectionError::MqttState(s) => format!("MQTT protocol error with broker {address}: {s}"),
        other => format!("broker {address}: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_password() {
        let cfg = MqttConfig {
            username: Some("u".into()),
            password: Some("hunter2".into()),
            ..MqttConfig::default()
        };
        let text = format!("{cfg:?}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("<redacted>"));
    }

    #[test]
    fn parses_and_validates() {
        let cfg: MqttConfig = toml::from_str(
            "host = \"broker\"\nusername = \"u\"\npassword_env = \"PVTHERM_TEST_NO_SUCH_VAR\"\n\
             reconnect_max = \"2m\"\n[tls]\nca_file = \"/x.pem\"",
        )
        .unwrap();
        assert_eq!(cfg.reconnect_max, Duration::from_secs(120));
        assert!(cfg.validate().is_ok());
        let err = format!("{:#}", cfg.client_options("c").unwrap_err());
        assert!(err.contains("PVTHERM_TEST_NO_SUCH_VAR"), "{err}");
        let bad = MqttConfig {
            qos: 2,
            ..MqttConfig::default()
        };
        assert!(bad.validate().unwrap_err().to_string().contains("qos"));
        let err = toml::from_str::<MqttConfig>("hots = \"x\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("hots"), "{err}");
    }

    #[test]
    fn password_file_is_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let cfg = MqttConfig {
            username: Some("u".into()),
            password_file: Some(file),
            ..MqttConfig::default()
        };
        assert_eq!(cfg.resolve_password().unwrap().as_deref(), Some("s3cret"));
    }

    #[test]
    fn documented_snippet_parses_with_every_key() {
        crate::config_value::test_support::check_documented_snippet::<MqttConfig>(
            "mqtt",
            include_str!("../../config/snippets/mqtt.toml"),
        );
    }
}
