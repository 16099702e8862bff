//! Optional in-process MQTT broker (rumqttd) for the demo and for boxes that serve
//! their own subscribers: with `[broker] enabled = true` nothing else needs
//! installing to watch pvtherm work.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// The `[broker]` config section. Off by default: production boxes talk to the
/// control room's broker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BrokerConfig {
    /// Start the embedded broker. Default false.
    pub enabled: bool,
    /// Address it listens on: loopback only, since it has no authentication.
    /// Default `127.0.0.1:1883`.
    pub listen: SocketAddr,
    /// Largest publish it accepts, in bytes. Default 1 MiB (snapshots must fit).
    pub max_payload_bytes: usize,
    /// Most simultaneous client connections. Default 64.
    pub max_connections: usize,
}

impl BrokerConfig {
    /// Sizes rumqttd can allocate for (its segments hold four maximal
    /// publishes). Checked also when the broker is off, so turning it on later
    /// does not reveal an old mistake.
    pub(crate) fn validate(&self) -> Result<()> {
        if !self.listen.ip().is_loopback() {
            bail!(
                "[broker] listen = \"{}\" is not a loopback address: the embedded broker has \
                 no authentication, so anyone on that network could read every topic and \
                 spoof `availability`; keep it on 127.0.0.1, or run mosquitto with users and \
                 TLS to serve a network",
                self.listen
            );
        }
        crate::config_value::in_range(
            "[broker] max_payload_bytes",
            self.max_payload_bytes,
            1024..=128 * 1024 * 1024,
            " bytes",
        )?;
        crate::config_value::in_range(
            "[broker] max_connections",
            self.max_connections,
            1..=10_000,
            "",
        )
    }
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            enabled: false,
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
            max_payload_bytes: 1024 * 1024,
            max_connections: 64,
        }
    }
}

/// A running embedded broker. rumqttd has no stop API: it runs until the process
/// exits, which is what the daemon wants.
#[derive(Debug)]
pub struct BrokerHandle {
    listen: SocketAddr,
    _thread: std::thread::JoinHandle<()>,
}

impl BrokerHandle {
    /// The address it listens on.
    pub fn listen(&self) -> SocketAddr {
        self.listen
    }
}

/// Starts the embedded broker on its own thread if `[broker] enabled`, and waits (up
/// to 5 s) until it accepts connections so the publisher's first attempt succeeds.
/// Returns `None` when disabled.
pub fn start_broker(config: &BrokerConfig) -> Result<Option<BrokerHandle>> {
    if !config.enabled {
        return Ok(None);
    }
    // rumqttd only logs a failed bind from its server thread; probe first so the
    // user gets a clear error instead of a daemon that silently has no broker.
    TcpListener::bind(config.listen).with_context(|| {
        format!(
            "[broker] cannot listen on {}: is another MQTT broker (mosquitto?) running there? \
             Change [broker] listen, or set enabled = false and point [mqtt] at that broker",
            config.listen
        )
    })?;
    let rumqttd_config = rumqttd_config(config);
    let thread = std::thread::Builder::new()
        .name("pvtherm-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(rumqttd_config);
            if let Err(e) = broker.start() {
                log::error!("embedded MQTT broker stopped: {e}");
            }
        })
        .context("cannot start the embedded broker thread")?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while TcpStream::connect_timeout(&config.listen, Duration::from_millis(200)).is_err() {
        if Instant::now() > deadline || thread.is_finished() {
            bail!(
                "embedded MQTT broker did not start listening on {}",
                config.listen
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    log::info!("embedded MQTT broker listening on {}", config.listen);
    Ok(Some(BrokerHandle {
        listen: config.listen,
        _thread: thread,
    }))
}

/// rumqttd configuration: one MQTT 3.1.1 listener, modest memory (segments sized for a
/// handful of clients on an edge box).
fn rumqttd_config(config: &BrokerConfig) -> rumqttd::Config {
    let connections = rumqttd::ConnectionSettings {
        connection_timeout_ms: 5000,
        max_payload_size: config.max_payload_bytes,
        max_inflight_count: 100,
        auth: None,
        external_auth: None,
        dynamic_filters: true,
    };
    let server = rumqttd::ServerSettings {
        name: "pvtherm-v4".into(),
        listen: config.listen,
        tls: None,
        next_connection_delay_ms: 1,
        connections,
    };
    let router = rumqttd::RouterConfig {
        max_connections: config.max_connections,
        max_outgoing_packet_count: 200,
        // A segment must hold at least one maximal publish.
        max_segment_size: (4 * config.max_payload_bytes).max(1024 * 1024),
        max_segment_count: 4,
        ..rumqttd::RouterConfig::default()
    };
    rumqttd::Config {
        router,
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..rumqttd::Config::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disabled_by_default() {
        assert!(start_broker(&BrokerConfig::default()).unwrap().is_none());
        let cfg: BrokerConfig = toml::from_str("enabled = true\nlisten = \"127.0.0.1:0\"").unwrap();
        assert!(cfg.enabled);
        assert!(toml::from_str::<BrokerConfig>("enable = true").is_err());
    }

    #[test]
    fn busy_port_is_a_clear_error() {
        let taken = TcpListener::bind("127.0.0.1:0").unwrap();
        let cfg = BrokerConfig {
            enabled: true,
            listen: taken.local_addr().unwrap(),
            ..BrokerConfig::default()
        };
        let err = format!("{:#}", start_broker(&cfg).unwrap_err());
        assert!(err.contains("cannot listen"), "{err}");
    }

    #[test]
    fn only_loopback_addresses_are_accepted() {
        let on = |listen: &str| BrokerConfig {
            listen: listen.parse().unwrap(),
            ..BrokerConfig::default()
        };
        assert!(on("127.0.0.1:1883").validate().is_ok());
        assert!(on("[::1]:1883").validate().is_ok());
        for open in ["0.0.0.0:1883", "192.168.1.5:1883", "[::]:1883"] {
            let err = on(open).validate().unwrap_err().to_string();
            assert!(
                err.contains("[broker] listen") && err.contains("loopback"),
                "{err}"
            );
        }
    }

    #[test]
    fn documented_snippet_parses_with_every_key() {
        crate::config_value::test_support::check_documented_snippet::<BrokerConfig>(
            "broker",
            include_str!("../../config/snippets/broker.toml"),
        );
    }
}
