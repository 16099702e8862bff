//! The daemon end to end: the real binary replays real survey frames through
//! the real models and publishes to a real mosquitto. What a control room
//! would see is asserted, including a broker outage and a killed daemon.

#[path = "common/mosquitto.rs"]
mod mosquitto;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use mosquitto::{Mosquitto, MosquittoOptions, Received, Subscriber};
use serde_json::Value;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pv/images");

/// A folder with `n` survey frames (the fixtures, cycled), named in order.
fn frames_dir(dir: &Path, n: usize) -> PathBuf {
    let mut fixtures: Vec<PathBuf> = std::fs::read_dir(FIXTURES)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    fixtures.sort();
    let out = dir.join("frames");
    std::fs::create_dir_all(&out).unwrap();
    for i in 0..n {
        std::fs::copy(
            &fixtures[i % fixtures.len()],
            out.join(format!("{i:03}.jpg")),
        )
        .unwrap();
    }
    out
}

fn write_config(
    dir: &Path,
    broker: &Mosquitto,
    frames: &Path,
    device: &str,
    fps: f32,
    extra: &str,
) -> PathBuf {
    let path = dir.join("pvtherm.toml");
    let text = format!(
        r#"
[device]
id = "{device}"
[source]
kind = "replay"
[source.replay]
path = "{frames}"
fps = {fps}
loop = false
[output]
snapshot_interval = "500ms"
stats_interval = "1s"
[mqtt]
host = "127.0.0.1"
port = {port}
keep_alive = "2s"
reconnect_initial = "200ms"
reconnect_max = "1s"
drain_timeout = "20s"
[outbox]
path = "{outbox}"
{extra}
"#,
        frames = frames.display(),
        port = broker.port(),
        outbox = dir.join("outbox.sqlite").display(),
    );
    std::fs::write(&path, text).unwrap();
    path
}

fn spawn_daemon(config: &Path) -> Child {
    Command::new(env!("CARGO_BIN_EXE_pvtherm"))
        .args(["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_exit(mut child: Child, timeout: Duration) -> (bool, String) {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut err = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
            return (status.success(), err);
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("daemon did not exit within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `payload` as the outbox stored it: without the `published_at` and
/// `replayed` fields delivery writes in after `schema` (docs/PAYLOADS.md).
fn unstamped(payload: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(payload);
    let Some(start) = text.find(r#""published_at":""#) else {
        return payload.to_vec();
    };
    let Some(end) = ["\"replayed\":true,", "\"replayed\":false,"]
        .iter()
        .find_map(|r| text[start..].find(r).map(|at| start + at + r.len()))
    else {
        return payload.to_vec();
    };
    format!("{}{}", &text[..start], &text[end..]).into_bytes()
}

fn json(m: &Received) -> Value {
    serde_json::from_slice(&m.payload).unwrap_or_else(|e| panic!("{}: not JSON: {e}", m.topic))
}

/// Module count per frame file, from `pvtherm detect` with the same models
/// (`precision`: the pair the daemon ran).
fn expected_counts(frames: &Path, precision: &str) -> BTreeMap<String, u64> {
    let out = Command::new(env!("CARGO_BIN_EXE_pvtherm"))
        .args(["detect", "--json", "--precision", precision])
        .arg(frames)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    report["images"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            (
                i["frame"]["origin"].as_str().unwrap().to_string(),
                i["module_count"].as_u64().unwrap(),
            )
        })
        .collect()
}

#[test]
fn replay_run_publishes_every_documented_topic() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let frames = frames_dir(dir.path(), 5);
    let sub = Subscriber::start(&broker.mqtt_config(), "pvtherm/#", None);
    let config = write_config(dir.path(), &broker, &frames, "roof-a", 0.0, "");
    let (ok, stderr) = wait_exit(spawn_daemon(&config), Duration::from_secs(120));
    assert!(ok, "daemon failed: {stderr}");
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .any(|m| m.topic.ends_with("availability") && m.payload == b"offline")));

    let t = |s: &str| format!("pvtherm/roof-a/{s}");
    let availability: Vec<String> = sub
        .on_topic(&t("availability"))
        .iter()
        .map(Received::text)
        .collect();
    assert_eq!(availability.first().map(String::as_str), Some("online"));
    assert_eq!(
        availability.last().map(String::as_str),
        Some("offline"),
        "clean shutdown says offline"
    );

    // `precision = "auto"` (the default) timed both pairs at start-up and
    // says which one it kept.
    let stats: Vec<Value> = sub.on_topic(&t("stats")).iter().map(json).collect();
    let trial = &stats.last().expect("stats published")["precision_trial"];
    let chosen = trial["chosen"].as_str().expect("auto reports its trial");
    assert!(["int8", "f32"].contains(&chosen), "{trial}");
    let (f32_ms, int8_ms) = (
        trial["f32_ms"].as_f64().unwrap(),
        trial["int8_ms"].as_f64().unwrap(),
    );
    assert_eq!(
        chosen == "int8",
        int8_ms < f32_ms,
        "the faster pair is kept: {trial}"
    );
    assert!(
        (1..=7).contains(&trial["runs"].as_u64().unwrap()),
        "{trial}"
    );

    // One detections message per frame, with the module count `detect` finds
    // with the same pair.
    let expected = expected_counts(&frames, chosen);
    let detections: Vec<Value> = sub.on_topic(&t("detections")).iter().map(json).collect();
    assert_eq!(detections.len(), 5);
    for d in &detections {
        assert_eq!(d["schema"], 1);
        assert_eq!(d["device"], "roof-a");
        let origin = d["frame"]["origin"].as_str().unwrap();
        assert_eq!(
            d["module_count"].as_u64(),
            expected.get(origin).copied(),
            "{origin}"
        );
        assert!(
            d["module_count"].as_u64().unwrap() >= 15,
            "real frames hold many modules"
        );
        assert_eq!(
            d["modules"].as_array().unwrap().len() as u64,
            d["module_count"].as_u64().unwrap()
        );
        assert!(d["frame"]["captured_at"].as_str().unwrap().ends_with('Z'));
        assert!(d["modules"][0]["temperature"]["max"].is_number());
    }
    // The first five fixtures: four DJI XT2 frames (radiometric) and one FLIR
    // Vue Pro frame, a non-R model whose values carry no calibrated temperature.
    let radiometric: Vec<bool> = detections
        .iter()
        .map(|d| d["frame"]["radiometric"] == true)
        .collect();
    assert_eq!(
        radiometric.iter().filter(|r| **r).count(),
        4,
        "{radiometric:?}"
    );
    let seqs: Vec<u64> = detections
        .iter()
        .map(|d| d["frame"]["sequence"].as_u64().unwrap())
        .collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "capture order: {seqs:?}"
    );

    // Defects: one message per defective module, each followed by its JPEG.
    let defect_total: u64 = detections
        .iter()
        .map(|d| d["defect_count"].as_u64().unwrap())
        .sum();
    let defects: Vec<Value> = sub.on_topic(&t("defects")).iter().map(json).collect();
    let thumbs = sub.on_topic(&t("defects/thumbnail"));
    assert_eq!(defects.len() as u64, defect_total);
    assert_eq!(thumbs.len(), defects.len());
    for (d, jpeg) in defects.iter().zip(&thumbs) {
        assert_eq!(d["module"]["defective"], true);
        assert_eq!(
            d["thumbnail"]["bytes"].as_u64().unwrap() as usize,
            jpeg.payload.len()
        );
        let img = image::load_from_memory_with_format(&jpeg.payload, image::ImageFormat::Jpeg)
            .expect("thumbnail is a JPEG");
        assert!(img.width() > 16 && img.height() > 16);
        let id = format!("pvtherm-id={}", d["message_id"].as_str().unwrap());
        assert!(
            jpeg.payload.windows(id.len()).any(|w| w == id.as_bytes()),
            "thumbnail carries its defect id"
        );
    }

    let snapshots = sub.on_topic(&t("snapshot"));
    assert!(!snapshots.is_empty());
    image::load_from_memory_with_format(&snapshots[0].payload, image::ImageFormat::Jpeg)
        .expect("snapshot is a JPEG");

    let camera: Vec<Value> = sub.on_topic(&t("camera")).iter().map(json).collect();
    assert_eq!(camera[0]["state"], "online");
    let stats: Vec<Value> = sub.on_topic(&t("stats")).iter().map(json).collect();
    let last = stats.last().expect("stats published");
    assert_eq!(last["frames_processed"], 5);
    assert_eq!(last["frames_captured"], 5);
    assert!(last["broker"]["connected"].is_boolean(), "{last}");
}

/// The daemon's own stop path, driven by a test instead of SIGTERM: the
/// shutdown future `pvtherm run` builds from the signals is just one such
/// future. Stopped mid-replay, it delivers every frame it processed, the final
/// stats after them, and says offline.
#[test]
fn a_shutdown_future_stops_the_daemon_mid_run_and_loses_nothing() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let frames = frames_dir(dir.path(), 20);
    let sub = Subscriber::start(&broker.mqtt_config(), "pvtherm/#", None);
    let path = write_config(dir.path(), &broker, &frames, "in-proc", 2.0, "");
    let config = pvtherm::config::Config::load(&path).unwrap();
    let source = config.source.open().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let daemon = std::thread::spawn(move || {
        pvtherm::pipeline::run_daemon(config, source, async {
            let _ = stopped.await;
        })
    });
    assert!(
        sub.wait_for(Duration::from_secs(60), |m| m
            .iter()
            .any(|m| m.topic.ends_with("/detections"))),
        "first detections"
    );
    stop.send(()).unwrap();
    daemon.join().unwrap().expect("clean stop");
    assert!(sub.wait_for(Duration::from_secs(5), |m| m
        .iter()
        .any(|m| m.topic.ends_with("availability") && m.payload == b"offline")));

    let t = |s: &str| format!("pvtherm/in-proc/{s}");
    let detections = sub.on_topic(&t("detections")).len() as u64;
    assert!(
        (1..20).contains(&detections),
        "stopped mid-run: {detections} frames"
    );
    let stats: Vec<Value> = sub.on_topic(&t("stats")).iter().map(json).collect();
    let last = stats.last().expect("stats published");
    assert_eq!(
        last["frames_processed"].as_u64(),
        Some(detections),
        "the final stats count every processed frame, and each one was delivered"
    );
    let availability: Vec<String> = sub
        .on_topic(&t("availability"))
        .iter()
        .map(Received::text)
        .collect();
    assert_eq!(availability.last().map(String::as_str), Some("offline"));
}

#[test]
fn broker_outage_loses_no_detection_and_keeps_capture_order() {
    let mut broker = Mosquitto::start_with(MosquittoOptions {
        persistence: true,
        ..Default::default()
    });
    let dir = tempfile::tempdir().unwrap();
    let frames = frames_dir(dir.path(), 10);
    let sub = Subscriber::start(
        &broker.mqtt_config(),
        "pvtherm/+/detections",
        Some("control-room"),
    );
    let config = write_config(dir.path(), &broker, &frames, "drone", 0.0, "");
    let daemon = spawn_daemon(&config);
    assert!(
        sub.wait_for(Duration::from_secs(60), |m| !m.is_empty()),
        "first detections"
    );
    broker.stop();
    std::thread::sleep(Duration::from_secs(3)); // frames keep coming: into the outbox
    broker.restart();
    let (ok, stderr) = wait_exit(daemon, Duration::from_secs(120));
    assert!(ok, "{stderr}");
    assert!(sub.wait_for(Duration::from_secs(20), |m| {
        let ids: std::collections::HashSet<_> = m
            .iter()
            .map(|r| json(r)["message_id"].as_str().unwrap().to_string())
            .collect();
        ids.len() == 10
    }));
    // At-least-once: de-duplicate on message_id, as the README tells subscribers to.
    let mut seen = std::collections::HashSet::new();
    let seqs: Vec<u64> = sub
        .messages()
        .iter()
        .map(json)
        .filter(|d| seen.insert(d["message_id"].as_str().unwrap().to_string()))
        .map(|d| d["frame"]["sequence"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs.len(), 10, "every frame's detections arrived");
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in capture order: {seqs:?}"
    );
}

#[test]
fn killed_daemon_gets_its_last_will_and_its_outbox_survives() {
    let broker = Mosquitto::start();
    let dir = tempfile::tempdir().unwrap();
    let frames = frames_dir(dir.path(), 6);
    let sub = Subscriber::start(&broker.mqtt_config(), "pvtherm/#", None);
    let config = write_config(dir.path(), &broker, &frames, "pole", 2.0, "");
    let mut daemon = spawn_daemon(&config);
    assert!(sub.wait_for(Duration::from_secs(60), |m| m
        .iter()
        .any(|m| m.topic.ends_with("/detections"))));
    daemon.kill().unwrap(); // SIGKILL: no clean shutdown
    daemon.wait().unwrap();
    assert!(
        sub.wait_for(Duration::from_secs(10), |m| m.iter().any(|m| m.topic
            == "pvtherm/pole/availability"
            && m.payload == b"offline")),
        "the broker publishes the last will"
    );
    // Restarted on the same outbox: it opens (not corrupt), replays what was
    // accepted and not acknowledged, processes the frames and exits cleanly.
    let (ok, stderr) = wait_exit(spawn_daemon(&config), Duration::from_secs(120));
    assert!(ok, "restart on the same outbox failed: {stderr}");
    assert!(!stderr.contains("corrupt"), "{stderr}");
    // The clean exit's `offline` may still be on its way to the subscriber.
    sub.wait_for(Duration::from_secs(10), |m| {
        m.iter()
            .rfind(|m| m.topic == "pvtherm/pole/availability")
            .is_some_and(|m| m.payload == b"offline")
    });
    let availability: Vec<String> = sub
        .on_topic("pvtherm/pole/availability")
        .iter()
        .map(Received::text)
        .collect();
    assert_eq!(availability.last().map(String::as_str), Some("offline"));
    assert!(availability.iter().filter(|a| *a == "online").count() >= 2);
}

/// One stored message: topic suffix and payload.
type Row = (String, Vec<u8>);

/// Rows of the daemon's outbox, oldest first, and SQLite's integrity verdict;
/// `None` until the daemon has created the table.
fn outbox_rows(path: &Path) -> Option<(Vec<Row>, String)> {
    if !path.exists() {
        return None;
    }
    let conn = rusqlite::Connection::open(path).ok()?;
    conn.busy_timeout(Duration::from_secs(5)).ok()?;
    let check: String = conn
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .ok()?;
    let mut stmt = conn
        .prepare("SELECT topic_suffix, payload FROM outbox ORDER BY id")
        .ok()?;
    let rows = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .ok()?
        .collect::<Result<Vec<Row>, _>>()
        .ok()?;
    Some((rows, check))
}

#[test]
fn killed_daemon_loses_nothing_it_accepted() {
    // The broker is down for the whole first run: everything the daemon accepts
    // stays in its outbox, unacknowledged, when it is killed.
    let mut broker = Mosquitto::start();
    broker.stop();
    let dir = tempfile::tempdir().unwrap();
    let frames = frames_dir(dir.path(), 8);
    let config = write_config(dir.path(), &broker, &frames, "pole2", 2.0, "");
    let outbox = dir.path().join("outbox.sqlite");
    let detections_in = |rows: &[Row]| rows.iter().filter(|(t, _)| t == "detections").count();

    let mut daemon = spawn_daemon(&config);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while outbox_rows(&outbox).is_none_or(|(rows, _)| detections_in(&rows) < 3) {
        assert!(std::time::Instant::now() < deadline, "no detections queued");
        std::thread::sleep(Duration::from_millis(100));
    }
    daemon.kill().unwrap(); // SIGKILL mid-run, possibly mid-commit
    daemon.wait().unwrap();

    let (accepted, check) = outbox_rows(&outbox).expect("outbox readable after SIGKILL");
    assert_eq!(check, "ok", "outbox intact after SIGKILL");
    let accepted_detections = detections_in(&accepted);
    assert!((3..8).contains(&accepted_detections), "killed mid-run");

    // Broker back, a control room listening, the daemon restarted on the same outbox.
    broker.restart();
    let sub = Subscriber::start(&broker.mqtt_config(), "pvtherm/#", None);
    let (ok, stderr) = wait_exit(spawn_daemon(&config), Duration::from_secs(120));
    assert!(ok, "restart on the same outbox failed: {stderr}");

    // Every accepted message arrives byte for byte, the backlog before new work.
    let delivered = |m: &[Received], (topic, payload): &Row| {
        m.iter().position(|r| {
            r.topic == format!("pvtherm/pole2/{topic}") && &unstamped(&r.payload) == payload
        })
    };
    assert!(
        sub.wait_for(Duration::from_secs(20), |m| accepted
            .iter()
            .all(|row| delivered(m, row).is_some())),
        "every message accepted before the kill is delivered after the restart"
    );
    let received = sub.messages();
    let positions: Vec<usize> = accepted
        .iter()
        .map(|row| delivered(&received, row).unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|w| w[0] < w[1]),
        "replayed in the order accepted: {positions:?}"
    );
    // Exact count: the killed run's detections plus one per frame of the second run.
    let ids: std::collections::HashSet<String> = sub
        .on_topic("pvtherm/pole2/detections")
        .iter()
        .map(|m| json(m)["message_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), accepted_detections + 8);
    let (left, _) = outbox_rows(&outbox).unwrap();
    assert!(
        left.is_empty(),
        "{} messages left in the outbox",
        left.len()
    );
}

#[test]
fn check_config_accepts_the_shipped_files_and_names_bad_keys() {
    let pvtherm = env!("CARGO_BIN_EXE_pvtherm");
    for file in ["config/pvtherm.toml", "config/demo.toml"] {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(file);
        let out = Command::new(pvtherm)
            .args(["check-config"])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{file}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "[mqtt]\nhost = \"x\"\nprot = 1883\n").unwrap();
    let out = Command::new(pvtherm)
        .args(["check-config"])
        .arg(&bad)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("prot") && err.contains("line 3") && err.contains("bad.toml"),
        "{err}"
    );

    // A broker nobody listens on: the daemon starts anyway (it queues) and says why it cannot deliver.
    let unreachable = dir.path().join("unreachable.toml");
    std::fs::write(
        &unreachable,
        format!(
            "[source]\nkind = \"replay\"\n[source.replay]\npath = \"{FIXTURES}\"\nfps = 0\n[mqtt]\nport = {}\ndrain_timeout = \"1s\"\n[outbox]\npath = \"{}\"\n",
            mosquitto::free_port(),
            dir.path().join("o.sqlite").display()
        ),
    )
    .unwrap();
    let out = Command::new(pvtherm)
        .args(["run", "--config"])
        .arg(&unreachable)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("127.0.0.1:"),
        "names the broker address: {err}"
    );
    assert!(
        err.to_lowercase().contains("refused") || err.to_lowercase().contains("cannot"),
        "{err}"
    );
}

#[test]
fn a_second_sigterm_ends_the_drain_at_once_and_keeps_the_outbox() {
    // The broker is down: the drain after the first SIGTERM would wait its
    // whole `drain_timeout` (20 s); the second SIGTERM ends it now.
    let mut broker = Mosquitto::start();
    broker.stop();
    let dir = tempfile::tempdir().unwrap();
    let frames = frames_dir(dir.path(), 20);
    let config = write_config(dir.path(), &broker, &frames, "pole9", 2.0, "");
    let outbox = dir.path().join("outbox.sqlite");
    let daemon = spawn_daemon(&config);
    let deadline = std::time::Instant::now() + Duration::from_secs(90);
    while outbox_rows(&outbox).is_none_or(|(rows, _)| rows.is_empty()) {
        assert!(std::time::Instant::now() < deadline, "nothing queued");
        std::thread::sleep(Duration::from_millis(100));
    }
    let term = || {
        let sent = Command::new("kill")
            .args(["-TERM", &daemon.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
    };
    term();
    std::thread::sleep(Duration::from_secs(2));
    term();
    let stopped = std::time::Instant::now();
    let (_, stderr) = wait_exit(daemon, Duration::from_secs(5));
    assert!(
        stopped.elapsed() < Duration::from_secs(5),
        "took {:?}",
        stopped.elapsed()
    );
    assert!(stderr.contains("second"), "{stderr}");
    let (rows, check) = outbox_rows(&outbox).expect("outbox readable after the second SIGTERM");
    assert_eq!(check, "ok");
    assert!(
        !rows.is_empty(),
        "the undelivered messages stay in the outbox"
    );
}
