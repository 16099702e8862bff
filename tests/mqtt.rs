//! Delivery layer against a real mosquitto: availability and last will, outage and
//! replay in order, crash and reopen of the outbox, outbox full, a broker that never
//! acknowledges, username/password and TLS.

#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/publisher.rs"]
mod publisher;

use mosquitto::{Mosquitto, MosquittoOptions, Received, Subscriber};
use publisher::Running;
use pvtherm::publish::{MessageClass, MqttConfig, OutboxConfig, Outgoing};
use std::io::Read;
use std::net::TcpListener;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DURABLE_TOPICS: [&str; 4] = ["detections", "defects", "defects/thumbnail", "snapshot"];

/// Short timings so failures and reconnects happen within a test's patience.
fn fast(mqtt: MqttConfig) -> MqttConfig {
    MqttConfig {
        reconnect_initial: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(500),
        keep_alive: Duration::from_secs(5),
        drain_timeout: Duration::from_secs(3),
        ..mqtt
    }
}

fn outbox_in(dir: &Path) -> OutboxConfig {
    OutboxConfig {
        path: dir.join("outbox.sqlite"),
        ..OutboxConfig::default()
    }
}

/// A durable message whose payload starts with its sequence number.
fn numbered(class: MessageClass, seq: usize) -> Outgoing {
    let topic = match class {
        MessageClass::Detections => "detections",
        MessageClass::Defect => "defects",
        MessageClass::DefectThumbnail => "defects/thumbnail",
        MessageClass::Snapshot => "snapshot",
        other => other.as_str(),
    };
    Outgoing::new(class, topic, format!("{seq:05} {class}").into_bytes())
}

fn durable(messages: &[Received], device: &str) -> Vec<String> {
    messages
        .iter()
        .filter(|m| {
            DURABLE_TOPICS
                .iter()
                .any(|t| m.topic == format!("pvtherm/{device}/{t}"))
        })
        .map(Received::text)
        .collect()
}

fn texts(messages: &[Outgoing]) -> Vec<String> {
    messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.payload).into_owned())
        .collect()
}

const T: Duration = Duration::from_secs(20);

#[test]
fn availability_online_then_clean_shutdown_offline() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(&fast(broker.mqtt_config()), &outbox_in(dir.path()), "dev1");
    assert!(
        run.wait_stats(T, |s| s.connected).connected,
        "{:?}",
        run.publisher.stats()
    );

    let sub = Subscriber::start(&broker.mqtt_config(), "pvtherm/dev1/#", None);
    let avail = "pvtherm/dev1/availability";
    assert!(sub.wait_for(T, |m| m.iter().any(|m| m.topic == avail)));
    let first = &sub.on_topic(avail)[0];
    assert_eq!((first.text().as_str(), first.retain), ("online", true));

    run.publisher
        .submit(numbered(MessageClass::Detections, 1))
        .unwrap();
    run.publisher
        .submit(Outgoing::new(
            MessageClass::Stats,
            "stats",
            b"{\"fps\":9}".to_vec(),
        ))
        .unwrap();
    assert!(sub.wait_for(T, |m| m.len() >= 3), "{:?}", sub.messages());
    assert_eq!(sub.on_topic("pvtherm/dev1/stats")[0].text(), "{\"fps\":9}");
    let stats = run.wait_stats(T, |s| s.published.get(MessageClass::Detections) == 1);
    assert_eq!(stats.outbox_depth, 0, "{stats:?}");
    assert_eq!(stats.published.get(MessageClass::Stats), 1);

    run.shutdown().unwrap();
    assert!(sub.wait_for(T, |m| m
        .iter()
        .any(|m| m.topic == avail && m.text() == "offline")));
    // A late subscriber sees the retained offline.
    let late = Subscriber::start(&broker.mqtt_config(), avail, None);
    assert!(late.wait_for(T, |m| !m.is_empty()));
    let retained = &late.messages()[0];
    assert_eq!(
        (retained.text().as_str(), retained.retain),
        ("offline", true)
    );
}

#[test]
fn last_will_offline_when_the_process_dies() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(&fast(broker.mqtt_config()), &outbox_in(dir.path()), "dev2");
    assert!(run.wait_stats(T, |s| s.connected).connected);
    let sub = Subscriber::start(&broker.mqtt_config(), "pvtherm/dev2/availability", None);
    assert!(sub.wait_for(T, |m| m.iter().any(|m| m.text() == "online")));
    run.crash();
    assert!(
        sub.wait_for(T, |m| m.last().is_some_and(|m| m.text() == "offline")),
        "no last will: {:?}\n{}",
        sub.messages(),
        broker.log()
    );
    let late = Subscriber::start(&broker.mqtt_config(), "pvtherm/dev2/availability", None);
    assert!(late.wait_for(T, |m| !m.is_empty()));
    assert_eq!(late.messages()[0].text(), "offline");
    assert!(late.messages()[0].retain);
}

#[test]
fn messages_during_an_outage_all_arrive_in_order() {
    let mut broker = Mosquitto::start_with(MosquittoOptions {
        persistence: true,
        ..MosquittoOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mqtt = MqttConfig {
        replay_rate: 100,
        ..fast(broker.mqtt_config())
    };
    let run = Running::start(&mqtt, &outbox_in(dir.path()), "dev3");
    let sub = Subscriber::start(&broker.mqtt_config(), "pvtherm/dev3/#", Some("outage-sub"));
    assert!(run.wait_stats(T, |s| s.connected).connected);

    broker.stop();
    let stats = run.wait_stats(T, |s| !s.connected);
    assert!(!stats.connected && stats.last_error.is_some(), "{stats:?}");

    let mut sent = Vec::new();
    for frame in 0..60 {
        let mut batch = vec![numbered(MessageClass::Detections, sent.len())];
        if frame % 5 == 0 {
            batch.push(numbered(MessageClass::Defect, sent.len() + 1));
            batch.push(numbered(MessageClass::DefectThumbnail, sent.len() + 2));
        }
        sent.extend(batch.iter().cloned());
        run.publisher.submit_all(batch).unwrap();
    }
    let n = sent.len();
    run.publisher.flush();
    assert_eq!(run.publisher.stats().outbox_depth, n as u64);

    broker.restart();
    let restarted = Instant::now();
    assert!(
        sub.wait_for(Duration::from_secs(40), |m| durable(m, "dev3").len() >= n),
        "got {} of {n}; stats {:?}",
        durable(&sub.messages(), "dev3").len(),
        run.publisher.stats()
    );
    let elapsed = restarted.elapsed();
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(
        durable(&sub.messages(), "dev3"),
        texts(&sent),
        "exactly once each, in order"
    );
    // At 100 messages/s after a burst of 32 (the window), n messages take at least
    // (n - 32) / 100 s; allow 10 % for timer granularity.
    let minimum = Duration::from_secs_f64((n - 32) as f64 / 100.0 * 0.9);
    assert!(
        elapsed >= minimum,
        "rate limit not applied: {n} in {elapsed:?}"
    );

    let stats = run.wait_stats(T, |s| s.outbox_depth == 0 && s.in_flight == 0);
    assert_eq!(stats.outbox_depth, 0);
    assert!(stats.connected && stats.reconnects >= 1, "{stats:?}");
    assert_eq!(stats.published.total(), n as u64);
    assert_eq!(stats.dropped.total(), 0);
    run.shutdown().unwrap();
}

#[test]
fn accepted_messages_survive_a_crash() {
    let mut broker = Mosquitto::start();
    broker.stop();
    let dir = tempfile::tempdir().unwrap();
    let mqtt = fast(broker.mqtt_config());
    let run = Running::start(&mqtt, &outbox_in(dir.path()), "dev4");
    let mut sent = Vec::new();
    for i in 0..40 {
        let class = if i % 2 == 0 {
            MessageClass::Detections
        } else {
            MessageClass::Defect
        };
        let m = numbered(class, i);
        run.publisher.submit(m.clone()).unwrap();
        sent.push(m);
    }
    // `submit` returns while its own batch may still be committing; once flushed,
    // everything accepted is on disk, which is what a crash must not undo.
    run.publisher.flush();
    run.crash();

    broker.restart();
    let sub = Subscriber::start(&broker.mqtt_config(), "pvtherm/dev4/#", None);
    let run = Running::start(&mqtt, &outbox_in(dir.path()), "dev4");
    assert!(sub.wait_for(T, |m| durable(m, "dev4").len() >= sent.len()));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(durable(&sub.messages(), "dev4"), texts(&sent));
    assert_eq!(run.wait_stats(T, |s| s.outbox_depth == 0).outbox_depth, 0);
    run.shutdown().unwrap();
}

#[test]
fn full_outbox_drops_oldest_detections_first_and_keeps_defects() {
    // Persistent subscriber session: it misses nothing while the broker restarts.
    let mut broker = Mosquitto::start_with(MosquittoOptions {
        persistence: true,
        ..MosquittoOptions::default()
    });
    let sub = Subscriber::start(&broker.mqtt_config(), "pvtherm/dev5/#", Some("full-sub"));
    broker.stop();
    let dir = tempfile::tempdir().unwrap();
    // Every row below accounts 200 bytes (payload + topic) + 64: room for exactly 10.
    let outbox = OutboxConfig {
        max_bytes: 10 * 264,
        ..outbox_in(dir.path())
    };
    let sized = |class: MessageClass, seq: usize| {
        let mut m = numbered(class, seq);
        m.payload.resize(200 - m.topic_suffix.len(), b'.');
        m
    };
    let run = Running::start(&fast(broker.mqtt_config()), &outbox, "dev5");
    let mut all = Vec::new();
    for i in 0..6 {
        all.push(sized(MessageClass::Detections, i));
    }
    all.push(sized(MessageClass::Snapshot, 6));
    all.push(sized(MessageClass::Snapshot, 7));
    for i in 8..17 {
        all.push(sized(MessageClass::Defect, i));
    }
    for m in &all {
        run.publisher.submit(m.clone()).unwrap();
    }
    run.publisher.flush();
    let stats = run.publisher.stats();
    assert_eq!(stats.outbox_depth, 10);
    assert_eq!(stats.dropped.get(MessageClass::Detections), 6, "{stats:?}");
    assert_eq!(stats.dropped.get(MessageClass::Snapshot), 1, "{stats:?}");
    assert_eq!(stats.dropped.get(MessageClass::Defect), 0, "{stats:?}");
    assert_eq!(stats.dropped.total(), 7);

    broker.restart();
    let expected = texts(&all[7..]);
    assert!(sub.wait_for(T, |m| durable(m, "dev5").len() >= expected.len()));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(durable(&sub.messages(), "dev5"), expected);
    run.shutdown().unwrap();
}

/// A broker that sends CONNACK and then ignores everything: counts the PUBLISH
/// packets it receives.
fn silent_broker() -> (u16, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let publishes = Arc::new(AtomicUsize::new(0));
    let count = publishes.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let count = count.clone();
            std::thread::spawn(move || {
                use std::io::Write;
                let mut first = true;
                loop {
                    let mut header = [0u8; 1];
                    if stream.read_exact(&mut header).is_err() {
                        return;
                    }
                    let (mut len, mut shift) = (0usize, 0);
                    loop {
                        let mut b = [0u8; 1];
                        if stream.read_exact(&mut b).is_err() {
                            return;
                        }
                        len |= usize::from(b[0] & 0x7f) << shift;
                        shift += 7;
                        if b[0] & 0x80 == 0 {
                            break;
                        }
                    }
                    let mut body = vec![0u8; len];
                    if stream.read_exact(&mut body).is_err() {
                        return;
                    }
                    if first {
                        first = false;
                        let _ = stream.write_all(&[0x20, 0x02, 0x00, 0x00]); // CONNACK accepted
                    } else if header[0] >> 4 == 3 {
                        count.fetch_add(1, Ordering::SeqCst);
                    }
                }
            });
        }
    });
    (port, publishes)
}

#[test]
fn broker_that_never_acknowledges_keeps_memory_bounded() {
    let (port, publishes) = silent_broker();
    let dir = tempfile::tempdir().unwrap();
    let mqtt = MqttConfig {
        host: "127.0.0.1".into(),
        port,
        inflight_window: 8,
        replay_rate: 0,
        keep_alive: Duration::from_secs(60),
        drain_timeout: Duration::from_millis(500),
        ..MqttConfig::default()
    };
    let run = Running::start(&mqtt, &outbox_in(dir.path()), "dev6");
    assert!(run.wait_stats(T, |s| s.connected).connected);
    for i in 0..300 {
        run.publisher
            .submit(numbered(MessageClass::Detections, i))
            .unwrap();
    }
    let stats = run.wait_stats(T, |s| s.in_flight == 8);
    std::thread::sleep(Duration::from_secs(2));
    let stats_later = run.publisher.stats();
    assert_eq!(stats.in_flight, 8, "{stats:?}");
    assert_eq!(stats_later.in_flight, 8, "{stats_later:?}");
    assert_eq!(
        stats_later.outbox_depth, 300,
        "nothing acked, nothing deleted"
    );
    // online + the window, nothing more went on the wire.
    assert_eq!(publishes.load(Ordering::SeqCst), 9);
    run.shutdown().unwrap();
    // Unacknowledged messages stay for the next start.
    let reopened = pvtherm::publish::Outbox::open(&outbox_in(dir.path())).unwrap();
    assert_eq!(reopened.depth(), 300);
}

#[test]
fn username_password_accepted_and_wrong_password_retried() {
    let broker = Mosquitto::start_with(MosquittoOptions {
        users: vec![("pvtherm".into(), "s3cret".into())],
        ..MosquittoOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let good = MqttConfig {
        username: Some("pvtherm".into()),
        password: Some("s3cret".into()),
        ..fast(broker.mqtt_config())
    };
    let run = Running::start(&good, &outbox_in(&dir.path().join("good")), "dev7");
    assert!(
        run.wait_stats(T, |s| s.connected).connected,
        "{:?}",
        run.publisher.stats()
    );
    let sub = Subscriber::start(&good, "pvtherm/dev7/availability", None);
    assert!(sub.wait_for(T, |m| m.iter().any(|m| m.text() == "online")));

    let bad = MqttConfig {
        password: Some("wrong".into()),
        ..good.clone()
    };
    let intruder = Running::start(&bad, &outbox_in(&dir.path().join("bad")), "dev7b");
    let stats = intruder.wait_stats(T, |s| s.connection_failures >= 3);
    assert!(!stats.connected);
    assert!(stats.connection_failures >= 3, "keeps retrying: {stats:?}");
    let error = stats.last_error.clone().unwrap_or_default();
    assert!(
        error.contains("refused the connection")
            && error.contains("check [mqtt] username/password"),
        "{error}"
    );
    assert!(stats.link.contains("retry #"), "{}", stats.link);
    assert!(
        !format!("{bad:?}").contains("wrong"),
        "password must not be printed"
    );
    intruder.shutdown().unwrap();
    run.shutdown().unwrap();
}

#[test]
fn tls_with_a_throwaway_ca() {
    let broker = Mosquitto::start_with(MosquittoOptions {
        tls: true,
        ..MosquittoOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let mqtt = fast(broker.mqtt_config());
    assert!(mqtt.tls.is_some());
    let run = Running::start(&mqtt, &outbox_in(dir.path()), "dev8");
    assert!(
        run.wait_stats(T, |s| s.connected).connected,
        "{:?}\n{}",
        run.publisher.stats(),
        broker.log()
    );
    let sub = Subscriber::start(&mqtt, "pvtherm/dev8/#", None);
    run.publisher
        .submit(numbered(MessageClass::Defect, 1))
        .unwrap();
    assert!(
        sub.wait_for(T, |m| durable(m, "dev8") == ["00001 defect"]),
        "{:?}",
        sub.messages()
    );
    assert!(sub.on_topic("pvtherm/dev8/availability")[0].retain);

    // Plain TCP against the TLS listener fails with a readable error, no crash.
    let plain = MqttConfig { tls: None, ..mqtt };
    let wrong = Running::start(&plain, &outbox_in(&dir.path().join("plain")), "dev8b");
    let stats = wrong.wait_stats(T, |s| s.connection_failures >= 2);
    assert!(!stats.connected && stats.last_error.is_some(), "{stats:?}");
    wrong.shutdown().unwrap();
    run.shutdown().unwrap();
}

#[test]
fn embedded_broker_serves_the_publisher() {
    let listen = std::net::SocketAddr::from(([127, 0, 0, 1], mosquitto::free_port()));
    let config = pvtherm::publish::BrokerConfig {
        enabled: true,
        listen,
        ..Default::default()
    };
    let handle = pvtherm::publish::start_broker(&config)
        .unwrap()
        .expect("enabled");
    assert_eq!(handle.listen(), listen);
    let dir = tempfile::tempdir().unwrap();
    let mqtt = fast(MqttConfig {
        port: listen.port(),
        ..MqttConfig::default()
    });
    let sub = Subscriber::start(&mqtt, "pvtherm/dev9/#", None);
    let run = Running::start(&mqtt, &outbox_in(dir.path()), "dev9");
    assert!(run.wait_stats(T, |s| s.connected).connected);
    run.publisher
        .submit(numbered(MessageClass::Defect, 1))
        .unwrap();
    assert!(
        sub.wait_for(T, |m| durable(m, "dev9") == ["00001 defect"]),
        "{:?}",
        sub.messages()
    );
    assert_eq!(run.wait_stats(T, |s| s.outbox_depth == 0).outbox_depth, 0);
    run.shutdown().unwrap();
}

/// A pvtherm-style JSON payload (`schema` first) numbered `n`.
fn stamped_json(n: usize) -> Outgoing {
    Outgoing::new(
        MessageClass::Detections,
        "detections",
        format!(r#"{{"schema":1,"n":{n}}}"#).into_bytes(),
    )
}

#[test]
fn replayed_is_false_live_and_true_for_the_backlog_after_a_broker_restart() {
    let mut broker = Mosquitto::start_with(MosquittoOptions {
        persistence: true,
        ..MosquittoOptions::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(&fast(broker.mqtt_config()), &outbox_in(dir.path()), "dev9");
    let sub = Subscriber::start(
        &broker.mqtt_config(),
        "pvtherm/dev9/detections",
        Some("replay-sub"),
    );
    assert!(run.wait_stats(T, |s| s.connected).connected);
    let before = std::time::SystemTime::now();
    run.publisher
        .submit_all((0..3).map(stamped_json).collect())
        .unwrap();
    assert!(sub.wait_for(T, |m| m.len() >= 3));

    broker.stop();
    assert!(!run.wait_stats(T, |s| !s.connected).connected);
    run.publisher
        .submit_all((3..8).map(stamped_json).collect())
        .unwrap();
    run.publisher.flush();
    broker.start_again();
    assert!(sub.wait_for(T, |m| m.len() >= 8), "{:?}", sub.messages());

    let got: Vec<serde_json::Value> = sub
        .messages()
        .iter()
        .map(|m| serde_json::from_slice(&m.payload).unwrap())
        .collect();
    for m in &got {
        let n = m["n"].as_u64().unwrap();
        assert_eq!(m["replayed"], n >= 3, "{m}");
        let at = humantime::parse_rfc3339(m["published_at"].as_str().unwrap()).unwrap();
        assert!(at >= before - Duration::from_millis(1), "{m}");
    }
    run.shutdown().unwrap();
}
