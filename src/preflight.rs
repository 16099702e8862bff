//! What `pvtherm check-config` checks beyond the file itself: everything
//! `pvtherm run` needs before its first frame, tried without starting
//! anything, every problem collected instead of stopping at the first.

use std::path::Path;

use crate::config::Config;
use crate::inspect::Inspector;
use crate::source::v4l2::DeviceChoice;
use crate::source::{SourceEvent, SourceKind};

/// The outcome of [`preflight`]: what would stop `run`, and what only might.
#[derive(Debug, Default)]
pub struct Preflight {
    /// Each would make `run` fail before its first frame.
    pub problems: Vec<String>,
    /// Worth knowing, not fatal (a camera may be plugged in later).
    pub warnings: Vec<String>,
}

/// Loads and shape-checks the models, reads the first replay frame, builds the
/// MQTT options (password file, TLS CA, client certificate and key), and
/// writes a probe file next to the outbox. A V4L2 device that does not exist
/// is a warning: the daemon waits for it.
pub fn preflight(config: &Config) -> Preflight {
    let mut out = Preflight::default();
    if let Err(e) = Inspector::new(&config.model, config.analysis.clone()) {
        out.problems.push(format!("[model]: {e:#}"));
    }
    match config.source.kind {
        SourceKind::Replay => {
            if let Err(e) = first_replay_frame(config) {
                out.problems.push(format!("[source.replay] path: {e:#}"));
            }
        }
        SourceKind::V4l2 => {
            if let DeviceChoice::Path(device) = &config.source.v4l2.device {
                if !device.exists() {
                    out.warnings.push(format!(
                        "[source.v4l2] device {} does not exist (yet): run waits for it",
                        device.display()
                    ));
                }
            }
        }
    }
    if let Err(e) = config.mqtt.client_options("pvtherm-check-config") {
        out.problems.push(format!("[mqtt]: {e:#}"));
    }
    if let Err(e) = probe_writable(&config.outbox.path) {
        out.problems.push(format!("[outbox] path: {e:#}"));
    }
    out
}

/// Opens the replay and decodes its first frame.
fn first_replay_frame(config: &Config) -> anyhow::Result<()> {
    let mut source = config.source.open()?;
    loop {
        match source.next_event()? {
            SourceEvent::Frame(_) => return Ok(()),
            SourceEvent::State(_) => continue,
            SourceEvent::End => anyhow::bail!(
                "{} holds no readable frame",
                config.source.replay.path.display()
            ),
        }
    }
}

/// Creates the outbox's folder if missing and writes and removes a file in it.
fn probe_writable(outbox: &Path) -> anyhow::Result<()> {
    use anyhow::Context;
    let dir = outbox
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the folder {}", dir.display()))?;
    let probe = dir.join(format!(".pvtherm-check-{}", std::process::id()));
    std::fs::write(&probe, b"probe")
        .with_context(|| format!("cannot write in {} (the outbox lives there)", dir.display()))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}
