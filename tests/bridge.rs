//! Fleet topology (b) for real: pvtherm publishes to a local mosquitto that
//! bridges to a central one with the shipped `config/mosquitto-bridge.conf`.
//! The central broker is stopped for a bounded time and started again on the
//! same port; every message the publisher accepted must reach a persistent
//! QoS 1 subscriber on the central broker, and the retained state topics
//! there must be right afterwards.

#[path = "common/mosquitto.rs"]
mod mosquitto;

use mosquitto::{Mosquitto, MosquittoOptions, Subscriber};
use pvtherm::publish::{
    spawn_publisher, Identity, MessageClass, MqttConfig, OutboxConfig, Outgoing,
};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

const SHIPPED: &str = include_str!("../config/mosquitto-bridge.conf");

/// The shipped bridge file for a box called `device` whose central broker
/// listens on `central_port`: the box-specific lines (the listener, where the
/// persistence goes, TLS and login) are the test harness's own.
fn bridge_conf(central_port: u16, device: &str) -> String {
    let local_only = [
        "listener",
        "allow_anonymous",
        "persistence",
        "persistence_location",
        "autosave_interval",
        "bridge_cafile",
        "remote_username",
        "remote_password",
    ];
    let mut out = String::new();
    for line in SHIPPED.lines() {
        let key = line.split_whitespace().next().unwrap_or("");
        if key.starts_with('#') || local_only.contains(&key) {
            continue;
        }
        let line = if key == "address" {
            format!("address 127.0.0.1:{central_port}")
        } else {
            line.replace("roof-a", device).replace("roof_a", device)
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// A JSON payload numbered `n`, like the daemon's (`schema` first).
fn numbered(n: usize) -> Outgoing {
    Outgoing::new(
        MessageClass::Detections,
        "detections",
        format!(r#"{{"schema":1,"message_id":"m{n:05}"}}"#).into_bytes(),
    )
}

#[test]
fn bridged_broker_outage_loses_nothing() {
    let device = "box-7";
    let mut central = Mosquitto::start_with(MosquittoOptions {
        persistence: true,
        ..MosquittoOptions::default()
    });
    let local = Mosquitto::start_with(MosquittoOptions {
        persistence: true,
        extra: bridge_conf(central.port(), device),
        ..MosquittoOptions::default()
    });
    let filter = "pvtherm/+/detections";
    let sub = Subscriber::start(&central.mqtt_config(), filter, Some("control-room"));

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mqtt = MqttConfig {
        reconnect_initial: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(500),
        drain_timeout: Duration::from_secs(5),
        ..local.mqtt_config()
    };
    let outbox = OutboxConfig {
        path: dir.path().join("outbox.sqlite"),
        ..OutboxConfig::default()
    };
    let identity = Identity::new("pvtherm", device).unwrap();
    let (stop, stop_rx) = broadcast::channel(1);
    let (publisher, task) = rt
        .block_on(async { spawn_publisher(&mqtt, &outbox, &identity, stop_rx) })
        .unwrap();
    let camera = |state: &str| {
        Outgoing::new(
            MessageClass::Camera,
            "camera",
            format!(r#"{{"schema":1,"state":"{state}"}}"#).into_bytes(),
        )
    };
    publisher.submit(camera("online")).unwrap();

    // 20 messages a second for 6 s; the central broker is down from 1.5 s to 4.5 s.
    let mut sent = 0;
    let started = Instant::now();
    let mut outage = (false, false);
    while started.elapsed() < Duration::from_secs(6) {
        if publisher.submit(numbered(sent)).is_ok() {
            sent += 1;
        }
        let t = started.elapsed();
        if !outage.0 && t > Duration::from_millis(1500) {
            central.stop();
            outage.0 = true;
        }
        if !outage.1 && t > Duration::from_millis(4500) {
            central.start_again();
            outage.1 = true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    publisher.submit(camera("offline")).unwrap();

    let topic = format!("pvtherm/{device}/detections");
    let all_in = sub.wait_for(Duration::from_secs(30), |got| {
        let ids: std::collections::BTreeSet<_> = got
            .iter()
            .filter(|m| m.topic == topic)
            .map(|m| m.payload.clone())
            .collect();
        ids.len() >= sent
    });
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in sub.on_topic(&topic) {
        let v: serde_json::Value = serde_json::from_slice(&m.payload).unwrap();
        *counts
            .entry(v["message_id"].as_str().unwrap().into())
            .or_default() += 1;
    }
    let received = counts.values().sum::<usize>();
    let duplicated = received - counts.len();
    let lost = (0..sent)
        .filter(|n| !counts.contains_key(&format!("m{n:05}")))
        .count();
    eprintln!(
        "bridge outage: sent {sent}, received {received}, duplicated {duplicated}, lost {lost}"
    );
    assert!(
        all_in,
        "not everything arrived within 30 s; central log:\n{}",
        central.log()
    );
    assert_eq!(lost, 0);
    assert!(sent >= 100, "only {sent} messages were accepted");

    // Retained state on the central broker, as a control room that connects now sees it.
    let late = Subscriber::start(&central.mqtt_config(), &format!("pvtherm/{device}/#"), None);
    let retained = |suffix: &str, want: &str| {
        let t = format!("pvtherm/{device}/{suffix}");
        late.wait_for(Duration::from_secs(10), |got| {
            got.iter()
                .any(|m| m.topic == t && m.retain && m.text().contains(want))
        })
    };
    assert!(retained("availability", "online"), "{:?}", late.messages());
    assert!(
        retained("camera", r#""state":"offline""#),
        "{:?}",
        late.messages()
    );
    assert!(retained("bridge", "1"), "{:?}", late.messages());

    // A clean stop leaves `offline` retained, up through the bridge.
    let _ = stop.send(());
    rt.block_on(task).unwrap().unwrap();
    let after = Subscriber::start(
        &central.mqtt_config(),
        &format!("pvtherm/{device}/availability"),
        None,
    );
    assert!(after.wait_for(Duration::from_secs(10), |got| got
        .last()
        .is_some_and(|m| m.text() == "offline")));
}
