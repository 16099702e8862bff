//! The daemon as a systemd service: the unit file passes `systemd-analyze
//! verify` without a word and scores "OK" in `systemd-analyze security`;
//! structured log fields reach a real journald; sd_notify messages (READY,
//! STATUS, WATCHDOG from the heartbeat, STOPPING) reach the notify socket.
//!
//! Needs `systemd` (systemd-analyze, journalctl, systemd-journald) and, for the
//! private journald, root and `unshare` (util-linux). Tests whose tools are
//! missing say so on stderr and pass.
//!
//! Some tests re-run this test binary as a helper process (`--exact <name>`
//! with `PVTHERM_SERVICE_HELPER` set): a logger is process-global, and the
//! notify socket comes from the environment, so each gets a fresh process.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use log::LevelFilter;
use pvtherm::service::{self, Heartbeat, LogTarget};

/// Set in helper processes; names the helper's job.
const HELPER_ENV: &str = "PVTHERM_SERVICE_HELPER";
/// Unique value the journald helper logs, to find its entry again.
const TOKEN_ENV: &str = "PVTHERM_SERVICE_TOKEN";
const JOURNALD: &str = "/lib/systemd/systemd-journald";

fn unit_source() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd/pvtherm.service")
}

/// `true` when `program` can be started (it exists on PATH or at that path).
fn have(program: &str) -> bool {
    Command::new(program)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// A copy of the unit in a fresh directory, with ExecStart pointing at the
/// binary cargo just built (verify checks that the executable exists; the
/// installed path /usr/bin/pvtherm does not exist here).
fn unit_copy() -> (tempfile::TempDir, PathBuf) {
    let text = std::fs::read_to_string(unit_source()).expect("read systemd/pvtherm.service");
    assert!(
        text.contains("ExecStart=/usr/bin/pvtherm run --config /etc/pvtherm/pvtherm.toml\n"),
        "the unit must start /usr/bin/pvtherm run --config /etc/pvtherm/pvtherm.toml"
    );
    let text = text.replace(
        "ExecStart=/usr/bin/pvtherm ",
        &format!("ExecStart={} ", env!("CARGO_BIN_EXE_pvtherm")),
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pvtherm.service");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

fn run(cmd: &mut Command) -> Output {
    cmd.env("SYSTEMD_COLORS", "0")
        .env("SYSTEMD_PAGER", "")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

#[test]
fn unit_passes_systemd_analyze_verify() {
    if !have("systemd-analyze") {
        eprintln!("SKIP: systemd-analyze not installed (Debian package: systemd)");
        return;
    }
    let (_dir, unit) = unit_copy();
    let output = run(Command::new("systemd-analyze").arg("verify").arg(&unit));
    let said = text(&output);
    assert!(
        output.status.success() && said.trim().is_empty(),
        "systemd-analyze verify must succeed without any output; it said ({}):\n{said}",
        output.status
    );
}

#[test]
fn unit_exposure_is_ok() {
    if !have("systemd-analyze") {
        eprintln!("SKIP: systemd-analyze not installed (Debian package: systemd)");
        return;
    }
    let (_dir, unit) = unit_copy();
    let output = run(Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--no-pager"])
        .arg(&unit));
    let said = text(&output);
    // "→ Overall exposure level for pvtherm.service: 1.5 OK 🙂"
    let line = said
        .lines()
        .find(|l| l.contains("Overall exposure level for pvtherm.service:"))
        .unwrap_or_else(|| panic!("no exposure level in systemd-analyze security output:\n{said}"));
    let mut words = line.rsplit_once(':').unwrap().1.split_whitespace();
    let score: f64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| {
            panic!("cannot parse the exposure level in {line:?}");
        });
    let verdict = words.next().unwrap_or("");
    eprintln!("systemd-analyze security: exposure {score} {verdict}");
    assert!(
        score <= 2.0 && verdict == "OK",
        "exposure {score} {verdict} > 2.0; findings:\n{said}"
    );
}

/// A child process killed when the test ends, even by a failed assertion.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Helper process: logs one structured event to journald and, when told to,
/// runs its own journald first in the private mount namespace it was started in.
#[test]
fn helper_journald() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return; // Not a helper run.
    };
    let token = std::env::var(TOKEN_ENV).unwrap();
    let mut journald: Option<KillOnDrop> = None;
    if mode == "journald-private" {
        // A fresh /run (the socket lives in /run/systemd/journal) and journal
        // storage, visible only in this mount namespace.
        let mut mounts = vec!["/run"];
        if Path::new("/var/log/journal").is_dir() {
            mounts.push("/var/log/journal");
        }
        for target in mounts {
            let status = Command::new("mount")
                .args(["-t", "tmpfs", "tmpfs", target])
                .status()
                .unwrap();
            assert!(status.success(), "mount tmpfs on {target} failed");
        }
        journald = Some(KillOnDrop(
            Command::new(JOURNALD)
                .spawn()
                .expect("start systemd-journald"),
        ));
        let socket = Path::new("/run/systemd/journal/socket");
        let deadline = Instant::now() + Duration::from_secs(10);
        while !socket.exists() {
            assert!(
                Instant::now() < deadline,
                "journald did not create {socket:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let target =
        service::init_logging_to(LevelFilter::Info, LogTarget::Journal).expect("journal logger");
    assert_eq!(target, LogTarget::Journal);
    // The target of the daemon's own records (this test crate's would be
    // "service", which the filter treats as a dependency).
    log::info!(
        target: "pvtherm::pipeline",
        frame_sequence = 42_u64,
        module_count = 12_usize,
        defect_id = "d-0042",
        broker_state = "connected",
        test_token = token.as_str();
        "structured event for the service test"
    );
    // Filtered out: a dependency's info record.
    log::info!(target: "rumqttc::state", test_token = token.as_str(); "dependency chatter");

    // Read it back (journald writes asynchronously).
    let deadline = Instant::now() + Duration::from_secs(10);
    let entries = loop {
        let output = Command::new("journalctl")
            .args(["--no-pager", "-o", "json"])
            .arg(format!("TEST_TOKEN={token}"))
            .output()
            .expect("run journalctl");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if !stdout.trim().is_empty() || Instant::now() > deadline {
            break stdout;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    drop(journald);
    let entries: Vec<serde_json::Value> = entries
        .lines()
        .map(|l| serde_json::from_str(l).expect("journalctl -o json line"))
        .collect();
    assert_eq!(
        entries.len(),
        1,
        "expected exactly our one entry: {entries:#?}"
    );
    let e = &entries[0];
    for (field, value) in [
        ("MESSAGE", "structured event for the service test"),
        ("FRAME_SEQUENCE", "42"),
        ("MODULE_COUNT", "12"),
        ("DEFECT_ID", "d-0042"),
        ("BROKER_STATE", "connected"),
        ("SYSLOG_IDENTIFIER", "pvtherm"),
        ("PRIORITY", "5"),
        ("TARGET", "pvtherm::pipeline"),
    ] {
        assert_eq!(e[field], value, "field {field} in {e:#}");
    }
}

#[test]
fn structured_fields_reach_journald() {
    if std::env::var_os(HELPER_ENV).is_some() {
        return;
    }
    if !Path::new(JOURNALD).exists() || !have("journalctl") {
        eprintln!("SKIP: systemd-journald/journalctl not installed (Debian package: systemd)");
        return;
    }
    // Preferred: a journald of our own in a private mount namespace, so the
    // test neither needs nor disturbs the machine's journal. The probe mounts
    // in a throwaway namespace, as the helper will.
    let private = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .args(["mount", "-t", "tmpfs", "tmpfs", "/run"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    let token = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    let me = std::env::current_exe().unwrap();
    let helper_args = [
        "--exact",
        "helper_journald",
        "--nocapture",
        "--test-threads=1",
    ];
    let mut cmd = if private {
        let mut cmd = Command::new("unshare");
        cmd.args(["--mount", "--propagation", "private"]).arg(&me);
        cmd.env(HELPER_ENV, "journald-private");
        cmd
    } else if Path::new("/run/systemd/journal/socket").exists() {
        // The machine's journald (systemd is PID 1 here).
        eprintln!("note: unshare not permitted; using the machine's journald");
        let mut cmd = Command::new(&me);
        cmd.env(HELPER_ENV, "journald-system");
        cmd
    } else {
        eprintln!(
            "SKIP: cannot start a private journald (unshare --mount needs root) \
             and no journald runs on this machine"
        );
        return;
    };
    let output = cmd
        .args(helper_args)
        .env(TOKEN_ENV, &token)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "journald helper failed ({}):\n{}",
        output.status,
        text(&output)
    );
    assert!(
        text(&output).contains("1 passed"),
        "helper did not run:\n{}",
        text(&output)
    );
}

/// Helper process: plays the daemon's side of sd_notify with the
/// environment systemd would set.
#[test]
fn helper_notify() {
    if std::env::var(HELPER_ENV).as_deref() != Ok("notify") {
        return;
    }
    assert_eq!(
        service::watchdog_interval(),
        Some(Duration::from_millis(200))
    );
    service::notify_status("model loaded\ncamera open");
    service::notify_ready();
    let heartbeat = Heartbeat::new();
    let pinger = heartbeat
        .start_watchdog()
        .unwrap()
        .expect("watchdog asked for");
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        heartbeat.beat();
        std::thread::sleep(Duration::from_millis(10));
    }
    pinger.stop();
    service::notify_stopping();
}

#[test]
fn notify_messages_reach_systemd() {
    if std::env::var_os(HELPER_ENV).is_some() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let socket_path = dir.path().join("notify");
    let socket = UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "helper_notify",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(HELPER_ENV, "notify")
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000")
        .env_remove("WATCHDOG_PID")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut messages = Vec::new();
    let mut buf = [0_u8; 4096];
    while messages.last().map(String::as_str) != Some("STOPPING=1\n") {
        match socket.recv(&mut buf) {
            Ok(n) => messages.push(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(e) => panic!("no STOPPING=1 (got {messages:?}): {e}"),
        }
    }
    let output = child.wait_with_output().unwrap();
    assert!(
        output.status.success(),
        "notify helper failed:\n{}",
        text(&output)
    );
    assert_eq!(messages[0], "STATUS=model loaded camera open\n");
    assert_eq!(messages[1], "READY=1\n");
    let pings = messages.iter().filter(|m| *m == "WATCHDOG=1\n").count();
    // 500 ms of beats, pinged every 100 ms.
    assert!(
        pings >= 2,
        "expected watchdog pings while beating: {messages:?}"
    );
    assert_eq!(
        messages.len(),
        2 + pings + 1,
        "unexpected messages: {messages:?}"
    );
}
