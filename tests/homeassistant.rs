//! The control room without configuration, end to end: the real binary
//! replays real survey frames through the real models and publishes to a
//! real mosquitto. Home Assistant discovery (once at start, retained, again on
//! `homeassistant/status online`, removed when switched off), the delivery
//! stamp of live messages, the `defects/active` list over a defect's life and
//! the control topics.

#[path = "common/mosquitto.rs"]
mod mosquitto;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use mosquitto::{publish_once, Mosquitto, Received, Subscriber};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pv/images");
/// A radiometric survey frame (FLIR R-JPEG).
const RADIOMETRIC_FRAME: &str = "001R.jpg";
/// A survey frame the shipped models find a defect in.
const DEFECTIVE_FRAME: &str = "20180630_154039.jpg";
const T: Duration = Duration::from_secs(60);

/// A daemon process with its folder; killed on drop.
struct Daemon {
    child: Option<Child>,
    _dir: tempfile::TempDir,
}

impl Daemon {
    /// Starts `pvtherm run` on `copies` copies of `frame` (a still camera),
    /// with `extra` appended to the config.
    fn start(
        broker: &Mosquitto,
        device: &str,
        (frame, copies): (&str, usize),
        looped: bool,
        extra: &str,
    ) -> Daemon {
        let dir = tempfile::tempdir().unwrap();
        let frames = dir.path().join("frames");
        std::fs::create_dir_all(&frames).unwrap();
        for i in 0..copies {
            std::fs::copy(
                Path::new(FIXTURES).join(frame),
                frames.join(format!("{i:03}.jpg")),
            )
            .unwrap();
        }
        let config = dir.path().join("pvtherm.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[device]
id = "{device}"
[source]
kind = "replay"
[source.replay]
path = "{frames}"
fps = 4
loop = {looped}
[output]
snapshot_interval = "0s"
stats_interval = "500ms"
[mqtt]
port = {port}
keep_alive = "2s"
reconnect_initial = "200ms"
reconnect_max = "1s"
[outbox]
path = "{outbox}"
{extra}
"#,
                frames = frames.display(),
                port = broker.port(),
                outbox = dir.path().join("outbox.sqlite").display(),
            ),
        )
        .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_pvtherm"))
            .args(["run", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        Daemon {
            child: Some(child),
            _dir: dir,
        }
    }

    /// SIGTERM, then waits for a clean exit.
    fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .unwrap();
        let deadline = Instant::now() + T;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "daemon did not stop");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits for the daemon to end on its own (a replay without loop).
    fn wait(mut self) {
        let mut child = self.child.take().unwrap();
        let deadline = Instant::now() + T;
        while child.try_wait().unwrap().is_none() {
            assert!(Instant::now() < deadline, "daemon did not finish");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn json(m: &Received) -> Value {
    serde_json::from_slice(&m.payload).unwrap_or_else(|e| panic!("{}: not JSON: {e}", m.topic))
}

fn time(v: &Value) -> SystemTime {
    humantime::parse_rfc3339(v.as_str().unwrap()).unwrap()
}

const ENABLED: &str = "[homeassistant]\nenabled = true\n[control]\nenabled = true\n";

#[test]
fn discovery_is_retained_republished_on_ha_online_and_removed() {
    let broker = Mosquitto::start();
    let config_topic = "homeassistant/device/ha-1/config";
    let ha = Subscriber::start(&broker.mqtt_config(), "homeassistant/#", None);
    let all = Subscriber::start(&broker.mqtt_config(), "pvtherm/ha-1/#", None);
    let daemon = Daemon::start(&broker, "ha-1", (RADIOMETRIC_FRAME, 4), true, ENABLED);
    assert!(ha.wait_for(T, |m| m.iter().any(|m| m.topic == config_topic)));
    // Once at start: nothing more while nobody asks.
    std::thread::sleep(Duration::from_secs(2));
    let configs = ha.on_topic(config_topic);
    assert_eq!(configs.len(), 1, "{configs:?}");
    let config = json(&configs[0]);
    assert_eq!(config["o"]["name"], "pvtherm");
    assert_eq!(config["dev"]["ids"][0], "pvtherm_ha-1");
    assert_eq!(config["avty"][0]["t"], "pvtherm/ha-1/availability");
    let cmps = config["cmps"].as_object().unwrap();
    for name in [
        "camera",
        "fps",
        "defects_today",
        "active_defects",
        "outbox_depth",
        "broker_backlog",
        "reference_temperature",
        "snapshot",
        "defect_thumbnail",
        "defect_event",
        "detection",
        "take_snapshot",
    ] {
        let c = &cmps[name];
        assert!(
            c["p"].is_string() && c["uniq_id"].is_string(),
            "{name}: {c}"
        );
    }
    // Retained: Home Assistant starting later still finds it.
    let late = Subscriber::start(&broker.mqtt_config(), config_topic, None);
    assert!(late.wait_for(T, |m| m
        .iter()
        .any(|m| m.retain && m.payload == configs[0].payload)));

    // Every state topic the entities read is there, retained, with what the templates read.
    let retained = |suffix: &str| {
        let topic = format!("pvtherm/ha-1/{suffix}");
        all.wait_for(T, |m| m.iter().any(|m| m.topic == topic));
        all.on_topic(&topic).last().cloned().unwrap()
    };
    assert_eq!(json(&retained("camera"))["state"], "online");
    let stats = json(&retained("stats"));
    assert!(stats["fps"].is_number() && stats["defects_today"].is_u64());
    assert!(stats["broker"]["outbox_depth"].is_u64() && stats["broker"]["in_flight"].is_u64());
    assert!(json(&retained("defects/active"))["count"].is_u64());
    assert_eq!(json(&retained("state"))["detect"], "ON");
    let detections = json(&retained("detections"));
    assert!(detections["reference_temp"].is_number());
    // Live messages carry the delivery stamp.
    for d in all.on_topic("pvtherm/ha-1/detections").iter().map(json) {
        assert_eq!(d["replayed"], false, "{d}");
        assert!(
            time(&d["published_at"]) >= time(&d["frame"]["captured_at"]),
            "{d}"
        );
    }

    // Home Assistant restarts: the config comes again after a short delay.
    publish_once(
        &broker.mqtt_config(),
        "homeassistant/status",
        b"online",
        false,
    );
    assert!(ha.wait_for(Duration::from_secs(10), |m| m
        .iter()
        .filter(|m| m.topic == config_topic)
        .count()
        >= 2));
    daemon.stop();

    // Switched off: the next start removes the device (empty retained payload).
    let daemon = Daemon::start(&broker, "ha-1", (RADIOMETRIC_FRAME, 2), true, "");
    assert!(ha.wait_for(T, |m| m
        .iter()
        .any(|m| m.topic == config_topic && m.payload.is_empty())));
    daemon.stop();
    let after = Subscriber::start(&broker.mqtt_config(), config_topic, None);
    std::thread::sleep(Duration::from_secs(1));
    assert!(after.messages().is_empty(), "{:?}", after.messages());
}

#[test]
fn defects_active_follows_new_and_end_events() {
    let broker = Mosquitto::start();
    let sub = Subscriber::start(&broker.mqtt_config(), "pvtherm/act-1/#", None);
    // A still camera on a defective frame: the tracker confirms the defects
    // after min_frames (3) sightings and ends them when the replay ends.
    Daemon::start(&broker, "act-1", (DEFECTIVE_FRAME, 5), false, "").wait();
    // Delivered before the daemon exited; the subscriber may still be reading.
    sub.wait_for(Duration::from_secs(5), |m| {
        m.iter()
            .filter(|m| m.topic.ends_with("/events"))
            .any(|m| json(m)["type"] == "end")
    });
    let events: Vec<Value> = sub
        .on_topic("pvtherm/act-1/events")
        .iter()
        .map(json)
        .collect();
    let new = events.iter().filter(|e| e["type"] == "new").count();
    let end = events.iter().filter(|e| e["type"] == "end").count();
    assert!(new > 0 && new == end, "{events:?}");
    let active: Vec<Value> = sub
        .on_topic("pvtherm/act-1/defects/active")
        .iter()
        .map(json)
        .collect();
    assert_eq!(active.first().unwrap()["count"], 0, "empty at start");
    let most = active
        .iter()
        .map(|a| a["count"].as_u64().unwrap())
        .max()
        .unwrap();
    assert_eq!(
        most as usize, new,
        "every confirmed defect listed while open"
    );
    assert_eq!(
        active.last().unwrap()["count"],
        0,
        "empty after the end events"
    );
    // Retained for a dashboard that starts now: the empty list and the latest thumbnail.
    let late = Subscriber::start(&broker.mqtt_config(), "pvtherm/act-1/defects/#", None);
    assert!(late.wait_for(Duration::from_secs(5), |m| {
        m.iter()
            .any(|m| m.topic.ends_with("defects/active") && m.retain && json(m)["count"] == 0)
            && m.iter().any(|m| {
                m.topic.ends_with("defects/latest/thumbnail")
                    && m.retain
                    && m.payload.starts_with(&[0xFF, 0xD8])
            })
    }));
}

#[test]
fn control_topics_pause_and_resume_analysis() {
    let broker = Mosquitto::start();
    let mqtt = broker.mqtt_config();
    let sub = Subscriber::start(&mqtt, "pvtherm/ctl-1/#", None);
    let daemon = Daemon::start(&broker, "ctl-1", (RADIOMETRIC_FRAME, 4), true, ENABLED);
    let t = |s: &str| format!("pvtherm/ctl-1/{s}");
    let count = |s: &str| sub.on_topic(&t(s)).len();
    let last_json = |s: &str| sub.on_topic(&t(s)).last().map(json);
    assert!(sub.wait_for(T, |m| m.iter().any(|m| m.topic == t("detections"))));
    let state_is = |detect: &str, result: &str| {
        sub.wait_for(Duration::from_secs(10), |m| {
            m.iter()
                .rev()
                .find(|m| m.topic == t("state"))
                .is_some_and(|m| {
                    let s = json(m);
                    s["detect"] == detect && s["last_command"]["result"] == result
                })
        })
    };

    publish_once(&mqtt, &t("detect/set"), b"OFF", false);
    assert!(state_is("OFF", "accepted"), "{:?}", last_json("state"));
    // The frame in flight when the command came may still be published.
    std::thread::sleep(Duration::from_secs(1));
    let detections = count("detections");
    let captured = |s: &Value| s["frames_captured"].as_u64().unwrap();
    let before = last_json("stats").unwrap();

    // Garbage changes nothing and is answered.
    publish_once(&mqtt, &t("detect/set"), b"\xFFbanana", false);
    assert!(state_is("OFF", "rejected"));
    // A snapshot on request while paused.
    let snapshots = count("snapshot");
    publish_once(&mqtt, &t("snapshot/set"), b"PRESS", false);
    assert!(sub.wait_for(Duration::from_secs(10), |m| m
        .iter()
        .filter(|m| m.topic == t("snapshot"))
        .count()
        > snapshots));
    std::thread::sleep(Duration::from_secs(2));
    let paused = last_json("stats").unwrap();
    assert_eq!(
        count("detections"),
        detections,
        "no detections while paused"
    );
    assert!(
        captured(&paused) > captured(&before),
        "frames still counted"
    );
    assert_eq!(paused["frames_processed"], before["frames_processed"]);
    assert_eq!(paused["detecting"], false);

    publish_once(&mqtt, &t("detect/set"), b"ON", false);
    assert!(state_is("ON", "accepted"));
    assert!(sub.wait_for(T, |m| m
        .iter()
        .filter(|m| m.topic == t("detections"))
        .count()
        > detections));
    daemon.stop();
}
