//! Control topics (opt-in, `[control] enabled`): `<prefix>/<device>/detect/set`
//! `ON`/`OFF` pauses and resumes the analysis (the camera keeps running,
//! frames are still counted, health still goes out), `<prefix>/<device>/snapshot/set`
//! asks for a snapshot of the next frame. Each command is answered on the
//! retained `<prefix>/<device>/state`; a payload that is not a command is
//! logged, answered as rejected and changes nothing. There is deliberately no
//! restart command: a box that can be restarted from the bus can be kept
//! down from it.
//!
//! Anyone who may publish on these topics controls the box: the broker's ACL
//! must grant `write` on `<prefix>/<device>/+/set` only to the control room
//! (docs/INSTALL.md).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Result;
use log::{info, warn};
use serde::{Deserialize, Serialize};

use crate::analysis::rfc3339;

/// Longest command payload looked at (and quoted in logs and answers).
const MAX_PAYLOAD: usize = 64;

/// `[control]`: whether the daemon listens to its control topics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ControlConfig {
    /// Subscribe to `detect/set` and `snapshot/set`. Off by default.
    pub(crate) enabled: bool,
}

impl ControlConfig {
    /// Nothing to range-check; here so every section has its validator.
    pub(crate) fn validate(&self) -> Result<()> {
        Ok(())
    }
}

/// The switches the control topics set and the inference thread reads.
#[derive(Debug)]
pub(crate) struct Switches {
    detect: AtomicBool,
    snapshot: AtomicBool,
}

impl Default for Switches {
    fn default() -> Self {
        Self {
            detect: AtomicBool::new(true),
            snapshot: AtomicBool::new(false),
        }
    }
}

impl Switches {
    /// Whether frames are analysed (`detect/set ON`, the default).
    pub(crate) fn detecting(&self) -> bool {
        self.detect.load(Ordering::Relaxed)
    }

    /// Takes a pending snapshot request (true once per `snapshot/set`).
    pub(crate) fn take_snapshot_request(&self) -> bool {
        self.snapshot.swap(false, Ordering::Relaxed)
    }
}

/// One command, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Detect(bool),
    Snapshot,
}

/// The answer to one command, as the `state` payload shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Answer {
    /// `detect/set` or `snapshot/set`.
    pub(crate) topic: String,
    /// The payload as received (cut to 64 bytes).
    pub(crate) payload: String,
    /// `accepted` or `rejected`.
    pub(crate) result: &'static str,
    /// Why it was rejected.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    #[serde(with = "rfc3339")]
    pub(crate) at: SystemTime,
}

/// Reads commands from the control topics and sets the [`Switches`].
pub(crate) struct Control {
    /// `<prefix>/<device>/`, what every control topic starts with.
    topic_root: String,
    switches: Arc<Switches>,
}

impl Control {
    /// Control for the device whose topics start with `topic_root`
    /// (`<prefix>/<device>/`), switches in their defaults (detecting).
    pub(crate) fn new(topic_root: String) -> Self {
        Self {
            topic_root,
            switches: Arc::new(Switches::default()),
        }
    }

    /// The switches, for the inference thread and the `state` message.
    pub(crate) fn switches(&self) -> Arc<Switches> {
        self.switches.clone()
    }

    /// The topics to subscribe to.
    pub(crate) fn topics(&self) -> Vec<String> {
        ["detect/set", "snapshot/set"]
            .map(|t| format!("{}{t}", self.topic_root))
            .to_vec()
    }

    /// Handles a message on `topic`; `None` when the topic is not a control
    /// topic, else the answer to publish on `state`. A retained command is
    /// refused: a stale `OFF` left on the broker must not pause a box that
    /// restarts.
    pub(crate) fn handle(&self, topic: &str, payload: &[u8], retained: bool) -> Option<Answer> {
        let suffix = topic.strip_prefix(&self.topic_root)?;
        if suffix != "detect/set" && suffix != "snapshot/set" {
            return None;
        }
        let shown = String::from_utf8_lossy(&payload[..payload.len().min(MAX_PAYLOAD)])
            .trim()
            .to_string();
        let parsed = if retained {
            Err("retained commands are ignored: publish commands without the retain flag".into())
        } else {
            parse(suffix, &shown)
        };
        let answer = match parsed {
            Ok(command) => {
                match command {
                    Command::Detect(on) => self.switches.detect.store(on, Ordering::Relaxed),
                    Command::Snapshot => self.switches.snapshot.store(true, Ordering::Relaxed),
                }
                info!("control: {suffix} {shown:?} accepted");
                Answer {
                    topic: suffix.into(),
                    payload: shown,
                    result: "accepted",
                    reason: None,
                    at: SystemTime::now(),
                }
            }
            Err(reason) => {
                warn!("control: {suffix} {shown:?} ignored: {reason}");
                Answer {
                    topic: suffix.into(),
                    payload: shown,
                    result: "rejected",
                    reason: Some(reason),
                    at: SystemTime::now(),
                }
            }
        };
        Some(answer)
    }
}

/// The command a payload on `suffix` asks for (case-insensitive).
fn parse(suffix: &str, payload: &str) -> Result<Command, String> {
    let upper = payload.to_ascii_uppercase();
    match (suffix, upper.as_str()) {
        ("detect/set", "ON") => Ok(Command::Detect(true)),
        ("detect/set", "OFF") => Ok(Command::Detect(false)),
        ("detect/set", _) => Err("expected ON or OFF".into()),
        ("snapshot/set", "" | "PRESS" | "ON") => Ok(Command::Snapshot),
        (_, _) => Err("expected PRESS (or an empty payload)".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_set_switches_and_garbage_changes_nothing() {
        let control = Control::new("pvtherm/roof-a/".into());
        let switches = control.switches();
        let a = control
            .handle("pvtherm/roof-a/detect/set", b"off", false)
            .unwrap();
        assert!(!switches.detecting());
        assert_eq!((a.topic.as_str(), a.result), ("detect/set", "accepted"));
        for garbage in [&b"\xFF\x00"[..], b"maybe", b"{\"detect\":1}"] {
            let a = control
                .handle("pvtherm/roof-a/detect/set", garbage, false)
                .unwrap();
            assert_eq!(a.result, "rejected");
            assert!(a.reason.is_some());
            assert!(!switches.detecting());
        }
        let a = control
            .handle("pvtherm/roof-a/detect/set", b"ON", true)
            .unwrap();
        assert_eq!(a.result, "rejected");
        assert!(!switches.detecting());
        control.handle("pvtherm/roof-a/detect/set", b"ON", false);
        assert!(switches.detecting());
        assert!(!switches.take_snapshot_request());
        control.handle("pvtherm/roof-a/snapshot/set", b"PRESS", false);
        assert!(switches.take_snapshot_request() && !switches.take_snapshot_request());
        assert!(control
            .handle("pvtherm/other/detect/set", b"ON", false)
            .is_none());
        assert!(control
            .handle("pvtherm/roof-a/restart/set", b"ON", false)
            .is_none());
    }

    #[test]
    fn documented_snippet_parses_with_every_key() {
        crate::config_value::test_support::check_documented_snippet::<ControlConfig>(
            "control",
            include_str!("../config/snippets/control.toml"),
        );
    }
}
