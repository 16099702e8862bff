//! The outbox against a full disk, with a real mosquitto: the broker is down
//! while the outbox fills up, every message is either delivered, dropped by the
//! eviction order or counted as unstored, none acknowledged is delivered twice
//! beyond one in-flight window, the publisher never stops, and the file gives
//! its space back once the backlog drained.
//!
//! Two ways to fill it: the page bound that `[outbox] max_bytes` sets (runs for
//! anyone), and a real 4 MiB tmpfs (needs root for the mount; skipped
//! otherwise). On both, new defects replace older detections: none is lost.

#[path = "common/mosquitto.rs"]
mod mosquitto;
#[path = "common/publisher.rs"]
mod publisher;

use mosquitto::{Mosquitto, MosquittoOptions, Subscriber};
use publisher::Running;
use pvtherm::publish::outbox::files_size;
use pvtherm::publish::{
    MessageClass, MqttConfig, Outbox, OutboxConfig, Outgoing, PublisherStats, Synchronous,
};
use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

const T: Duration = Duration::from_secs(30);
const WINDOW: u16 = 16;

/// A tmpfs of `bytes` mounted on a fresh directory, unmounted on drop.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// `None` when this process may not mount (not root, or no mount(8)).
    fn mount(bytes: u64) -> Option<Tmpfs> {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Tmpfs { dir })
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// Message `seq`: a defect every tenth, detections otherwise, `len` bytes.
fn numbered(seq: usize, len: usize) -> Outgoing {
    let (class, topic) = if seq.is_multiple_of(10) {
        (MessageClass::Defect, "defects")
    } else {
        (MessageClass::Detections, "detections")
    };
    let mut payload = format!("{seq:06} ").into_bytes();
    payload.resize(len, b'.');
    Outgoing::new(class, topic, payload)
}

/// The sequence numbers received on the durable topics, in arrival order.
fn payloads(sub: &Subscriber) -> Vec<Vec<u8>> {
    sub.messages()
        .into_iter()
        .filter(|m| m.topic.ends_with("/detections") || m.topic.ends_with("/defects"))
        .map(|m| m.payload[..6].to_vec())
        .collect()
}

/// Waits until `done` holds; whether it did within `timeout`.
fn wait_for(timeout: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !done() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    true
}

/// What one fill-outage-recover run saw.
struct Outcome {
    /// The publisher's stats at the end of the outage.
    full: PublisherStats,
    /// The outbox files at the end of the outage.
    full_size: u64,
    /// The outbox files after the backlog drained.
    drained_size: u64,
    /// The sequence numbers delivered (each once).
    delivered: HashSet<usize>,
}

impl Outcome {
    /// Asserts that every defect of the `count` messages sent during the outage
    /// was stored and delivered: when full, older detections made room for them.
    fn every_defect_delivered(&self, count: usize) {
        assert_eq!(
            self.full.unstored.get(MessageClass::Defect),
            0,
            "{:?}",
            self.full
        );
        let lost: Vec<usize> = (0..count)
            .step_by(10)
            .filter(|seq| !self.delivered.contains(seq))
            .collect();
        assert!(lost.is_empty(), "defects not delivered: {lost:?}");
        assert!(
            self.full.dropped.get(MessageClass::Detections) > 0,
            "{:?}",
            self.full
        );
    }
}

/// Broker down, `count` messages of `len` bytes into `outbox`, then `make_room`
/// (free space), broker up: every message must be delivered, dropped or
/// unstored (counted), none twice beyond one window, and new messages are
/// stored again.
fn fill_then_recover(
    outbox: OutboxConfig,
    device: &str,
    count: usize,
    len: usize,
    make_room: impl FnOnce(),
) -> Outcome {
    let mut broker = Mosquitto::start_with(MosquittoOptions {
        persistence: true,
        extra: "max_queued_messages 0\n".into(),
        ..MosquittoOptions::default()
    });
    let filter = format!("pvtherm/{device}/+");
    let sub = Subscriber::start(
        &broker.mqtt_config(),
        &filter,
        Some(&format!("{device}-sub")),
    );
    broker.stop();
    let mqtt = MqttConfig {
        reconnect_initial: Duration::from_millis(100),
        reconnect_max: Duration::from_millis(300),
        replay_rate: 0,
        inflight_window: WINDOW,
        drain_timeout: Duration::from_secs(3),
        ..broker.mqtt_config()
    };
    let run = Running::start(&mqtt, &outbox, device);
    let mut sent = Vec::new();
    for batch in (0..count).collect::<Vec<_>>().chunks(8) {
        let messages: Vec<Outgoing> = batch.iter().map(|&i| numbered(i, len)).collect();
        sent.extend(messages.iter().map(|m| m.payload[..6].to_vec()));
        run.publisher.submit_all(messages).unwrap();
    }
    run.publisher.flush();
    let full = run.publisher.stats();
    let full_size = files_size(&outbox.path);
    eprintln!("{device}: end of the outage: {full:?}, files {full_size} bytes");
    assert!(
        full.dropped.total() + full.unstored.total() > 0,
        "the outage did not fill the outbox: {full:?}"
    );
    assert_eq!(
        full.dropped.get(MessageClass::Defect),
        0,
        "defects went before detections: {full:?}"
    );
    assert!(full.outbox_depth > 0, "{full:?}");
    assert!(!run.task.is_finished());

    make_room();
    broker.start_again();
    // New messages after space returned are stored and delivered.
    let after: Vec<Outgoing> = (count..count + 20).map(|i| numbered(i, len)).collect();
    sent.extend(after.iter().map(|m| m.payload[..6].to_vec()));
    run.publisher.submit_all(after).unwrap();
    let done = run.wait_stats(T, |s| {
        s.connected && s.outbox_depth == 0 && s.in_flight == 0
    });
    assert_eq!(done.outbox_depth, 0, "{done:?}");
    assert_eq!(done.outbox_error, None, "{done:?}");
    assert_eq!(
        done.unstored, full.unstored,
        "stored again after space returned"
    );
    let lost = done.dropped.total() + done.unstored.total();
    let expected = sent.len() as u64 - lost;
    assert!(
        wait_for(T, || {
            let mut seen = payloads(&sub);
            seen.sort();
            seen.dedup();
            seen.len() as u64 >= expected
        }),
        "not every stored message arrived: {done:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    let mut times: HashMap<Vec<u8>, usize> = HashMap::new();
    for m in payloads(&sub) {
        *times.entry(m).or_default() += 1;
    }
    assert!(times.keys().all(|k| sent.contains(k)));
    assert_eq!(times.len() as u64, expected, "{done:?}");
    let twice: usize = times.values().map(|n| n - 1).sum();
    assert!(
        twice <= usize::from(WINDOW),
        "{twice} messages delivered twice"
    );
    let drained_size = files_size(&outbox.path);
    eprintln!("{device}: drained: {done:?}, files {drained_size} bytes, {twice} twice");
    assert!(!run.task.is_finished(), "the publisher stopped on its own");
    run.shutdown().expect("publisher shutdown failed");
    let delivered = times
        .keys()
        .map(|k| std::str::from_utf8(k).unwrap().parse().unwrap())
        .collect();
    Outcome {
        full,
        full_size,
        drained_size,
        delivered,
    }
}

#[test]
fn page_bound_full_outbox_evicts_counts_and_shrinks_after_draining() {
    let dir = tempfile::tempdir().unwrap();
    let outbox = OutboxConfig {
        path: dir.path().join("outbox.sqlite"),
        max_bytes: 8 << 20,
        synchronous: Synchronous::Normal,
        ..OutboxConfig::default()
    };
    capture_logs();
    // 12 MB of messages into 8 MiB.
    let out = fill_then_recover(outbox.clone(), "full-pages", 1500, 8000, || {});
    out.every_defect_delivered(1500);
    // The page bound, not the file system, was full: the reserve stayed.
    let here = outbox.path.display().to_string();
    assert_eq!(logged(&[&here, "released the"]), 0);
    assert!(out.full_size <= outbox.max_bytes, "{} bytes", out.full_size);
    assert!(
        out.drained_size < out.full_size / 4,
        "{} bytes full, {} drained",
        out.full_size,
        out.drained_size
    );
}

/// A 4 MiB tmpfs (root only; `None`, said on stderr, elsewhere) with a 1 MiB
/// filler file in it: deleting the filler is "space returns".
fn small_tmpfs_with_filler() -> Option<(Tmpfs, std::path::PathBuf)> {
    if !is_root() {
        eprintln!("skipped: mounting a tmpfs needs root");
        return None;
    }
    let Some(fs) = Tmpfs::mount(4 << 20) else {
        eprintln!("skipped: cannot mount a tmpfs here");
        return None;
    };
    let filler = fs.dir.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1 << 20]).unwrap();
    Some((fs, filler))
}

#[test]
fn full_file_system_keeps_running_counts_and_recovers() {
    let Some((fs, filler)) = small_tmpfs_with_filler() else {
        return;
    };
    let outbox = OutboxConfig {
        path: fs.dir.path().join("outbox.sqlite"),
        ..OutboxConfig::default()
    };
    capture_logs();
    let here = outbox.path.display().to_string();
    // 8 MB of messages onto a 4 MiB file system: with the reserve released,
    // every new message replaces an older one instead of being lost.
    let out = fill_then_recover(outbox, "full-fs", 2000, 4000, || {
        std::fs::remove_file(&filler).unwrap();
    });
    out.every_defect_delivered(2000);
    assert_eq!(out.full.unstored.total(), 0, "{:?}", out.full);
    // Full once, space back once: logged once each.
    assert_eq!(logged(&[&here, "released the"]), 1);
    assert_eq!(logged(&[&here, "reserve is back"]), 1);
}

/// Every log line of this test binary, so a test can count the outbox's.
struct Captured(Mutex<Vec<String>>);

impl log::Log for Captured {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        self.0.lock().unwrap().push(record.args().to_string());
    }
    fn flush(&self) {}
}

static CAPTURED: Captured = Captured(Mutex::new(Vec::new()));

/// Starts capturing log lines (once per binary; later calls do nothing).
fn capture_logs() {
    if log::set_logger(&CAPTURED).is_ok() {
        log::set_max_level(log::LevelFilter::Warn);
    }
}

/// How many captured lines hold every one of `parts`.
fn logged(parts: &[&str]) -> usize {
    let lines = CAPTURED.0.lock().unwrap();
    lines
        .iter()
        .filter(|l| parts.iter().all(|p| l.contains(p)))
        .count()
}

/// The reserve beside the outbox database.
fn reserve_of(outbox: &OutboxConfig) -> std::path::PathBuf {
    let mut p = outbox.path.as_os_str().to_owned();
    p.push("-reserve");
    p.into()
}

/// A message of `class` numbered `seq`, 4000 bytes.
fn of_class(class: MessageClass, seq: usize) -> Outgoing {
    let mut payload = format!("{seq:06} ").into_bytes();
    payload.resize(4000, b'.');
    Outgoing::new(class, "t", payload)
}

/// Pushes one message and asserts it was stored.
fn store(ob: &mut Outbox, m: Outgoing) {
    let ids = ob.push_all([&m]).unwrap();
    assert_eq!(
        ids.len(),
        1,
        "not stored: {:?} {:?}",
        ob.unstored(),
        ob.write_error()
    );
}

#[test]
fn truly_full_file_system_new_defects_replace_old_detections() {
    let Some((fs, filler)) = small_tmpfs_with_filler() else {
        return;
    };
    // max_bytes (256 MiB) far above the file system: the file system is what fills.
    let cfg = OutboxConfig {
        path: fs.dir.path().join("outbox.sqlite"),
        ..OutboxConfig::default()
    };
    capture_logs();
    let mut ob = Outbox::open(&cfg).unwrap();
    let here = cfg.path.display().to_string();
    let reserve = reserve_of(&cfg);
    let reserve_bytes = std::fs::metadata(&reserve).unwrap().len();
    assert!(reserve_bytes > 1 << 20, "{reserve_bytes}");
    assert_eq!(ob.write_error(), None);

    // Detections until the file system is full and the first ones are evicted:
    // every one is stored.
    let mut seq = 0;
    while ob.dropped().total() == 0 {
        assert!(seq < 2000, "4 MiB never filled: {:?}", ob.write_error());
        store(&mut ob, of_class(MessageClass::Detections, seq));
        seq += 1;
    }
    let detections = seq;
    eprintln!(
        "full after {detections} detections: depth {}, files {} bytes",
        ob.depth(),
        files_size(&cfg.path)
    );
    assert!(!reserve.exists(), "the reserve was not released");
    let health = ob.write_error().expect("a full file system in the health");
    assert!(health.contains("file system is full"), "{health}");

    // 200 defects (800 kB) on the full file system: each replaces the oldest
    // detection.
    let dropped_before = ob.dropped().get(MessageClass::Detections);
    for n in 0..200 {
        store(&mut ob, of_class(MessageClass::Defect, 100_000 + n));
    }
    assert_eq!(ob.unstored().total(), 0);
    assert_eq!(ob.dropped().get(MessageClass::Defect), 0);
    assert!(ob.dropped().get(MessageClass::Detections) >= dropped_before + 150);
    let rows = ob.fetch_after(0, 10_000).unwrap();
    assert_eq!(rows.len() as u64, ob.depth());
    let seqs: Vec<usize> = rows
        .iter()
        .map(|r| {
            std::str::from_utf8(&r.message.payload[..6])
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let defects: Vec<usize> = seqs.iter().copied().filter(|&s| s >= 100_000).collect();
    assert_eq!(defects, (100_000..100_200).collect::<Vec<_>>());
    // The detections left are the newest ones, in order.
    let kept: Vec<usize> = seqs.iter().copied().filter(|&s| s < 100_000).collect();
    let first = detections - kept.len();
    assert_eq!(kept, (first..detections).collect::<Vec<_>>());
    eprintln!(
        "200 defects stored, {} detections left of {detections}, files {} bytes",
        kept.len(),
        files_size(&cfg.path)
    );

    // Space returns: the next write makes the reserve again and clears the health.
    std::fs::remove_file(&filler).unwrap();
    store(&mut ob, of_class(MessageClass::Defect, 100_200));
    assert_eq!(ob.write_error(), None);
    assert_eq!(std::fs::metadata(&reserve).unwrap().len(), reserve_bytes);
    // Each change of state logged once, however many messages it concerned.
    assert_eq!(logged(&[&here, "released the"]), 1);
    assert_eq!(logged(&[&here, "reserve is back"]), 1);
    let depth = ob.depth();
    drop(ob);
    // What was stored stays: a reopened outbox has every row.
    let ob = Outbox::open(&cfg).unwrap();
    assert_eq!(ob.depth(), depth);
}
