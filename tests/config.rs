//! `check-config` and `run` refuse the same files, with the same message
//! naming the key, and neither panics: the real binary on a table of files
//! with one bad value each. Nothing is started: every file is refused while
//! it is read, and the broker it names is a closed local port.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/pv/images");

/// A file's settings as `(table, key, value)`; a case replaces a base entry
/// with the same table and key, or adds one.
type Entries = Vec<(&'static str, &'static str, String)>;

/// A valid configuration: a replay of the fixtures, a broker port nothing
/// listens on, a short drain, the outbox in `dir`.
fn base(dir: &Path) -> Entries {
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    vec![
        ("source", "kind", "\"replay\"".into()),
        ("source.replay", "path", format!("{FIXTURES:?}")),
        ("source.replay", "fps", "0".into()),
        ("mqtt", "port", closed_port.to_string()),
        ("mqtt", "drain_timeout", "\"1s\"".into()),
        (
            "outbox",
            "path",
            format!("{:?}", dir.join("outbox.sqlite").display().to_string()),
        ),
    ]
}

/// A refused file: its name, the entries that make it bad, and the key the
/// error must name.
type Case<'a> = (
    &'a str,
    &'a [(&'static str, &'static str, &'a str)],
    &'a str,
);

/// Writes `base` with `case` applied as TOML to `dir/name.toml`.
fn write(dir: &Path, name: &str, case: &[(&'static str, &'static str, &str)]) -> PathBuf {
    let mut entries = base(dir);
    for (table, key, value) in case {
        entries.retain(|(t, k, _)| !(t == table && k == key));
        entries.push((table, key, value.to_string()));
    }
    let mut tables: Vec<&str> = entries.iter().map(|(t, _, _)| *t).collect();
    tables.sort_unstable();
    tables.dedup();
    let mut text = String::new();
    for table in tables {
        text += &format!("[{table}]\n");
        for (_, key, value) in entries.iter().filter(|(t, _, _)| *t == table) {
            text += &format!("{key} = {value}\n");
        }
    }
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the binary with `args`, killed after `limit` (a refused file ends at
/// once; one that is not refused would start the daemon).
fn pvtherm(args: &[&str], file: &Path, limit: Duration) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_pvtherm"))
        .args(args)
        .arg(file)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + limit;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

/// What the binary said on stderr (a TOML syntax error spans several lines).
fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).trim().to_string()
}

#[test]
fn check_config_and_run_refuse_the_same_files_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    // (file name, settings, what the message must name)
    let cases: &[Case] = &[
        (
            "prefix-sys",
            &[("device", "topic_prefix", "\"$SYS\"")],
            "[device] topic_prefix",
        ),
        (
            "prefix-empty-level",
            &[("device", "topic_prefix", "\"a//b\"")],
            "[device] topic_prefix",
        ),
        (
            "prefix-trailing",
            &[("device", "topic_prefix", "\"a/\"")],
            "[device] topic_prefix",
        ),
        ("device-id", &[("device", "id", "\"a/b\"")], "[device] id"),
        (
            "v4l2-stall",
            &[
                ("source", "kind", "\"v4l2\""),
                ("source.v4l2", "stall_timeout", "\"10ms\""),
            ],
            "[source.v4l2] stall_timeout",
        ),
        (
            "replay-fps",
            &[("source.replay", "fps", "1e-300")],
            "[source.replay] fps",
        ),
        (
            "replay-path",
            &[("source.replay", "path", "\"/nonexistent/frames\"")],
            "[source.replay] path",
        ),
        (
            "max-pixels-zero",
            &[("source", "max_pixels", "0")],
            "[source] max_pixels",
        ),
        (
            "max-pixels-huge",
            &[("source", "max_pixels", "1099511627776")],
            "[source] max_pixels",
        ),
        (
            "max-pixels-negative",
            &[("source", "max_pixels", "-1")],
            "max_pixels",
        ),
        (
            "max-pixels-nan",
            &[("source", "max_pixels", "nan")],
            "max_pixels",
        ),
        (
            "model-size",
            &[
                ("model", "input_width", "65536"),
                ("model", "input_height", "65536"),
            ],
            "[model] input_width",
        ),
        (
            "model-threshold",
            &[("model", "score_threshold", "1.5")],
            "[model] score_threshold",
        ),
        (
            "analysis",
            &[("analysis.tracking", "min_iou", "2.0")],
            "min_iou",
        ),
        (
            "pipeline-fps",
            &[("pipeline", "max_fps", "1e-30")],
            "[pipeline] max_fps",
        ),
        (
            "pipeline-every",
            &[("pipeline", "detect_every_n", "0")],
            "[pipeline] detect_every_n",
        ),
        (
            "output-inf",
            &[("output", "stats_interval_s", "inf")],
            "stats_interval_s",
        ),
        (
            "output-nan",
            &[("output", "stats_interval", "nan")],
            "stats_interval",
        ),
        (
            "output-tiny",
            &[("output", "stats_interval_s", "1e-30")],
            "[output] stats_interval",
        ),
        (
            "output-quality",
            &[("output", "jpeg_quality", "0")],
            "[output] jpeg_quality",
        ),
        (
            "mqtt-keep-alive",
            &[("mqtt", "keep_alive", "\"1day\"")],
            "[mqtt] keep_alive",
        ),
        (
            "mqtt-tls",
            &[("mqtt.tls", "client_cert", "\"client.pem\"")],
            "client_key",
        ),
        (
            "mqtt-client-id",
            &[("mqtt", "client_id", "\"\"")],
            "[mqtt] client_id",
        ),
        (
            "outbox-size",
            &[("outbox", "max_bytes", "0")],
            "[outbox] max_bytes",
        ),
        (
            "broker",
            &[("broker", "max_connections", "0")],
            "[broker] max_connections",
        ),
        (
            "logging",
            &[("logging", "level", "\"loud\"")],
            "[logging] level",
        ),
        (
            "http-login-half",
            &[("http", "username", "\"inspector\"")],
            "[http] set both username and password_file",
        ),
        (
            "http-password-missing",
            &[
                ("http", "username", "\"inspector\""),
                ("http", "password_file", "\"no-such-password\""),
            ],
            "cannot read [http] password_file",
        ),
        (
            "http-password-empty",
            &[
                ("http", "username", "\"inspector\""),
                ("http", "password_file", "\"empty-password\""),
            ],
            "[http] password_file",
        ),
        (
            "http-password-unreadable",
            &[
                ("http", "username", "\"inspector\""),
                ("http", "password_file", "\".\""),
            ],
            "cannot read [http] password_file",
        ),
        (
            "http-token-empty",
            &[("http", "token_file", "\"empty-password\"")],
            "[http] token_file",
        ),
    ];
    // Relative secret files are read beside the configuration file.
    std::fs::write(dir.path().join("empty-password"), "\n").unwrap();
    let mut failures = Vec::new();
    for (name, case, key) in cases {
        let file = write(dir.path(), name, case);
        let check = pvtherm(&["check-config"], &file, Duration::from_secs(30));
        let run = pvtherm(&["run", "--config"], &file, Duration::from_secs(30));
        let (check_err, run_err) = (stderr(&check), stderr(&run));
        let problems = [
            (
                check.status.code() != Some(1),
                "check-config did not exit 1",
            ),
            (
                run.status.code() != Some(1),
                "run did not exit 1 (101 = panic, none = still running)",
            ),
            (
                !check_err.contains(key),
                "check-config does not name the key",
            ),
            (check_err != run_err, "run says something else"),
        ];
        for (failed, what) in problems {
            if failed {
                failures.push(format!(
                    "{name}: {what} (want {key:?})\n  check-config {:?}: {check_err}\n  run {:?}: {run_err}",
                    check.status.code(),
                    run.status.code()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_good_file_passes_and_old_spellings_are_read_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let good = write(
        dir.path(),
        "good",
        &[("output", "stats_interval", "\"10s\"")],
    );
    let out = pvtherm(&["check-config"], &good, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout.contains("OK") && !stdout.contains("warning"),
        "{stdout}"
    );

    let old = write(
        dir.path(),
        "old",
        &[
            ("output", "stats_interval_s", "10.0"),
            ("source.v4l2", "stall_timeout", "5.0"),
        ],
    );
    let out = pvtherm(&["check-config"], &old, Duration::from_secs(30));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout.contains("stats_interval_s is now stats_interval")
            && stdout.contains("stats_interval = \"10s\"")
            && stdout.contains("stall_timeout = \"5s\""),
        "{stdout}"
    );
}

/// Modules `pvtherm detect` finds in one fixture with these extra arguments.
fn detected_modules(args: &[&str]) -> u64 {
    let out = Command::new(env!("CARGO_BIN_EXE_pvtherm"))
        .arg("detect")
        .args(args)
        .args(["--json", &format!("{FIXTURES}/001R.jpg")])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    report["summary"]["modules"].as_u64().unwrap()
}

#[test]
fn detect_takes_the_model_settings_of_a_config_file_and_flags_override_them() {
    let dir = tempfile::tempdir().unwrap();
    let strict = write(
        dir.path(),
        "strict",
        &[("model", "score_threshold", "0.999")],
    );
    let strict = strict.to_str().unwrap();
    let default = detected_modules(&[]);
    assert!(default > 0);
    assert!(detected_modules(&["--config", strict]) < default);
    assert_eq!(
        detected_modules(&["--config", strict, "--score-threshold", "0.3"]),
        detected_modules(&["--score-threshold", "0.3"])
    );
    // The file is checked as the daemon checks it.
    let bad = write(dir.path(), "bad", &[("pipeline", "max_fps", "1e-30")]);
    let out = Command::new(env!("CARGO_BIN_EXE_pvtherm"))
        .args(["detect", &format!("{FIXTURES}/001R.jpg"), "--config"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("[pipeline] max_fps"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn check_config_lists_every_problem_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Two values out of range: both named in one run, and run refuses alike.
    let file = write(
        dir.path(),
        "two-ranges",
        &[
            ("outbox", "max_bytes", "0"),
            ("mqtt", "inflight_window", "0"),
        ],
    );
    let check = pvtherm(&["check-config"], &file, Duration::from_secs(30));
    let err = stderr(&check);
    assert_eq!(check.status.code(), Some(1), "{err}");
    for key in ["[outbox] max_bytes", "[mqtt] inflight_window", "2 problems"] {
        assert!(err.contains(key), "{key} not in: {err}");
    }
    let run = pvtherm(&["run", "--config"], &file, Duration::from_secs(30));
    assert_eq!(stderr(&run), err);

    // A valid file whose replay folder holds no readable frame, whose CA file is not a
    // certificate, and whose outbox folder cannot be written: what run would
    // fail on before its first frame, all listed; a missing camera is a warning.
    let empty = dir.path().join("unreadable");
    std::fs::create_dir(&empty).unwrap();
    std::fs::write(empty.join("frame.png"), "not a PNG").unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, "not a certificate\n").unwrap();
    let blocked = dir.path().join("blocked");
    std::fs::write(&blocked, "a file, not a folder").unwrap();
    let file = write(
        dir.path(),
        "three-preflight",
        &[
            (
                "source.replay",
                "path",
                &format!("{:?}", empty.display().to_string()),
            ),
            (
                "mqtt.tls",
                "ca_file",
                &format!("{:?}", ca.display().to_string()),
            ),
            (
                "outbox",
                "path",
                &format!("{:?}", blocked.join("outbox.sqlite").display().to_string()),
            ),
        ],
    );
    let check = pvtherm(&["check-config"], &file, Duration::from_secs(60));
    let err = stderr(&check);
    assert_eq!(check.status.code(), Some(1), "{err}");
    for key in [
        "3 problem(s)",
        "[source.replay] path",
        "[mqtt]",
        "[outbox] path",
    ] {
        assert!(err.contains(key), "{key} not in: {err}");
    }
    let camera = write(
        dir.path(),
        "camera-missing",
        &[
            ("source", "kind", "\"v4l2\""),
            ("source.v4l2", "device", "\"/dev/pvtherm-no-such-camera\""),
        ],
    );
    let check = pvtherm(&["check-config"], &camera, Duration::from_secs(60));
    let out = String::from_utf8_lossy(&check.stdout).into_owned();
    assert_eq!(check.status.code(), Some(0), "{}{out}", stderr(&check));
    assert!(out.contains("warning: [source.v4l2] device"), "{out}");
}

/// Every numeric key of the default configuration, as `(table path, key, is_float)`.
fn numeric_keys() -> Vec<(String, String, bool)> {
    fn walk(table: &toml::Table, path: &str, out: &mut Vec<(String, String, bool)>) {
        for (key, value) in table {
            match value {
                toml::Value::Table(t) => {
                    let sub = if path.is_empty() {
                        key.clone()
                    } else {
                        format!("{path}.{key}")
                    };
                    walk(t, &sub, out);
                }
                toml::Value::Integer(_) => out.push((path.into(), key.clone(), false)),
                toml::Value::Float(_) => out.push((path.into(), key.clone(), true)),
                _ => {}
            }
        }
    }
    let defaults = toml::Table::try_from(pvtherm::config::Config::default()).unwrap();
    let mut out = Vec::new();
    walk(&defaults, "", &mut out);
    // Unset by default, so not in the serialised defaults.
    for key in ["score_threshold", "defect_threshold"] {
        out.push(("model".into(), key.into(), true));
    }
    out
}

#[test]
fn every_numeric_key_refuses_nan_inf_and_out_of_range_values_naming_it() {
    let keys = numeric_keys();
    assert!(keys.len() >= 35, "only {} numeric keys found", keys.len());
    let mut failures = Vec::new();
    for (table, key, is_float) in &keys {
        let values: &[&str] = if *is_float {
            &["nan", "inf", "-inf", "-1.0", "0.0", "1e300"]
        } else {
            &["-1", "0", "9223372036854775807", "nan", "inf"]
        };
        for value in values {
            // A section is checked when it is used: the replay one with kind = "replay".
            let mut text = format!("[{table}]\n{key} = {value}\n");
            if table == "source.replay" {
                text = format!("[source]\nkind = \"replay\"\n{text}path = {FIXTURES:?}\n");
            }
            let parsed = std::panic::catch_unwind(|| {
                pvtherm::config::Config::parse(&text, Path::new("t.toml")).map(|_| ())
            });
            match parsed {
                Err(_) => failures.push(format!("{table}.{key} = {value}: panicked")),
                Ok(Ok(())) if value.contains("nan") || value.contains("inf") => {
                    failures.push(format!("{table}.{key} = {value}: accepted"))
                }
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    let msg = format!("{e:#}");
                    if !msg.contains(key.as_str()) {
                        failures.push(format!("{table}.{key} = {value}: not named in {msg}"));
                    }
                }
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
