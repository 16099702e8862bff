//! Delivery layer: gets the pipeline's messages to the control room over MQTT
//! without losing any of them, whatever the payloads say.
//!
//! # Use
//!
//! ```no_run
//! # async fn demo(config_mqtt: pvtherm::publish::MqttConfig,
//! #               config_outbox: pvtherm::publish::OutboxConfig) -> anyhow::Result<()> {
//! use pvtherm::publish::{spawn_publisher, Identity, MessageClass, Outgoing};
//! let identity = Identity::new("pvtherm", "roof-a")?;
//! let (stop_tx, stop_rx) = tokio::sync::broadcast::channel(1);
//! let (publisher, task) = spawn_publisher(&config_mqtt, &config_outbox, &identity, stop_rx)?;
//! // From any thread (the pipeline worker): durable messages are on disk when this returns.
//! publisher.submit(Outgoing::new(MessageClass::Detections, "detections", b"{}".to_vec()))?;
//! // On SIGTERM: ask it to drain, publish `offline` and disconnect, then wait for it.
//! let _ = stop_tx.send(());
//! task.await??;
//! # Ok(()) }
//! ```
//!
//! # Delivery guarantees
//!
//! * **Durable classes** ([`MessageClass::is_durable`]: detections, defects, defect
//!   thumbnails, defect events, snapshots) are written to the SQLite [`outbox`] inside
//!   [`Publisher::submit`] *before* it returns: that is the "accepted" point. A row is
//!   deleted only when the broker's PUBACK for it arrives (QoS 1), so a broker outage,
//!   a lost uplink or a SIGKILL loses nothing that was accepted. Delivery is
//!   *at-least-once*: after a reconnect the unacknowledged rows are sent again, in
//!   their original order, so subscribers de-duplicate by the message id in the payload.
//! * **State classes** (stats, camera) are "latest value wins": kept in a small
//!   in-memory slot per topic, published when connected, never stored.
//! * When the outbox is full (bytes) the oldest *detections* go first, then snapshots,
//!   and defects only when nothing else is left; rows older than `max_age` are dropped.
//!   Every drop is counted per class in [`PublisherStats::dropped`].
//! * `<prefix>/<device>/availability` is retained `online` after every (re)connect;
//!   the broker publishes the retained last will `offline` when the link dies, and a
//!   clean shutdown publishes `offline` itself.
//!
//! Topics are `<prefix>/<device>/<topic_suffix>` (see `Identity::topic`).
//!
//! Optional: `broker` runs an in-process rumqttd broker for the demo/embedded setup.

pub(crate) mod broker;
mod committer;
mod delivery;
mod link;
pub(crate) mod mqtt;
pub mod outbox;
mod publisher;
mod reserve;
mod stamp;

pub use broker::{start_broker, BrokerConfig, BrokerHandle};
pub use mqtt::{MqttConfig, TlsConfig};
pub use outbox::{Outbox, OutboxConfig, StoredMessage, Synchronous};
pub use publisher::{spawn_publisher, Inbound, Publisher, PublisherStats};

use anyhow::{bail, Result};
use serde::ser::SerializeMap;
use serde::{Serialize, Serializer};
use std::fmt;

/// What kind of message this is: decides whether it is stored durably and what the
/// outbox drops first when it is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MessageClass {
    /// One message per processed frame with modules. Durable; dropped first when full.
    Detections,
    /// A defective module. Durable; kept unless nothing else is left.
    Defect,
    /// JPEG crop belonging to a defect message. Durable; kept like defects.
    DefectThumbnail,
    /// A defect life-cycle event (opened/closed by the tracker). Durable; kept like defects.
    DefectEvent,
    /// Annotated frame. Durable; dropped after detections when full.
    Snapshot,
    /// Periodic statistics. State: latest value wins, not stored.
    Stats,
    /// Camera state/description. State: latest value wins, not stored.
    Camera,
    /// The physical defects open now (`defects/active`). State.
    ActiveDefects,
    /// JPEG of the latest defect event (`defects/latest/thumbnail`). State.
    LatestThumbnail,
    /// What the control topics set, and the last command's answer (`state`). State.
    ControlState,
}

impl MessageClass {
    /// Every class, in a fixed order (the index order of [`ClassCounts`]).
    pub(crate) const ALL: [MessageClass; 10] = [
        MessageClass::Detections,
        MessageClass::Defect,
        MessageClass::DefectThumbnail,
        MessageClass::DefectEvent,
        MessageClass::Snapshot,
        MessageClass::Stats,
        MessageClass::Camera,
        MessageClass::ActiveDefects,
        MessageClass::LatestThumbnail,
        MessageClass::ControlState,
    ];

    /// Durable classes go through the on-disk outbox; the others are latest-value state.
    pub fn is_durable(self) -> bool {
        !matches!(
            self,
            MessageClass::Stats
                | MessageClass::Camera
                | MessageClass::ActiveDefects
                | MessageClass::LatestThumbnail
                | MessageClass::ControlState
        )
    }

    /// Stable lower-case name, used in the outbox table and in stats JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageClass::Detections => "detections",
            MessageClass::Defect => "defect",
            MessageClass::DefectThumbnail => "defect_thumbnail",
            MessageClass::DefectEvent => "defect_event",
            MessageClass::Snapshot => "snapshot",
            MessageClass::Stats => "stats",
            MessageClass::Camera => "camera",
            MessageClass::ActiveDefects => "active_defects",
            MessageClass::LatestThumbnail => "latest_thumbnail",
            MessageClass::ControlState => "control_state",
        }
    }

    /// Inverse of [`MessageClass::as_str`].
    pub(crate) fn from_name(name: &str) -> Option<MessageClass> {
        Self::ALL.into_iter().find(|c| c.as_str() == name)
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for MessageClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message handed to the [`Publisher`]: bytes plus where and how to deliver them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Topic relative to `<prefix>/<device>/`, e.g. `detections`, `defects`,
    /// `defects/thumbnail`, `snapshot`, `stats`, `camera`.
    pub topic_suffix: String,
    /// The payload bytes (JSON or JPEG); the publisher never looks inside.
    pub payload: Vec<u8>,
    /// Decides durability and drop priority.
    pub class: MessageClass,
    /// Publish with the MQTT retain flag (snapshots, stats, camera).
    pub(crate) retain: bool,
}

impl Outgoing {
    /// A message with the retain flag this class usually has (snapshots and state
    /// classes retained, the rest not).
    pub fn new(class: MessageClass, topic_suffix: impl Into<String>, payload: Vec<u8>) -> Self {
        let retain = class == MessageClass::Snapshot || !class.is_durable();
        Outgoing {
            topic_suffix: topic_suffix.into(),
            payload,
            class,
            retain,
        }
    }
}

/// Topic prefix and device id, validated once so every topic built from them is legal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    prefix: String,
    device: String,
}

impl Identity {
    /// Validates `prefix` (one or more topic levels, no wildcards, no empty level,
    /// not starting with `$`) and `device` (one non-empty topic level without `+ # /`).
    pub fn new(prefix: &str, device: &str) -> Result<Identity> {
        // The messages name the config keys: `[device]` validation calls this.
        if prefix.is_empty() {
            bail!("[device] topic_prefix is empty: set it, e.g. \"pvtherm\"");
        }
        if prefix.starts_with('$') {
            bail!(
                "[device] topic_prefix = {prefix:?} starts with '$' (reserved for broker topics)"
            );
        }
        if let Some(bad) = prefix.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
            bail!("[device] topic_prefix = {prefix:?} contains {bad:?}: MQTT wildcards are not allowed");
        }
        if prefix.split('/').any(str::is_empty) {
            bail!("[device] topic_prefix = {prefix:?} has an empty level (leading, trailing or double '/')");
        }
        validate_topic_level("[device] id", device)?;
        Ok(Identity {
            prefix: prefix.to_string(),
            device: device.to_string(),
        })
    }

    /// The device id, e.g. `roof-a`.
    pub(crate) fn device(&self) -> &str {
        &self.device
    }

    /// Full topic `<prefix>/<device>/<suffix>`.
    pub(crate) fn topic(&self, suffix: &str) -> String {
        format!("{}/{}/{}", self.prefix, self.device, suffix)
    }

    /// The availability topic that carries `online` / `offline` (retained).
    pub(crate) fn availability_topic(&self) -> String {
        self.topic("availability")
    }
}

/// Checks a single topic level (device id): not empty, no `+ # /` or NUL, not `$...`.
fn validate_topic_level(what: &str, level: &str) -> Result<()> {
    if level.is_empty() {
        bail!("{what} is empty: set it to a name unique to this box, e.g. \"roof-a\"");
    }
    if let Some(bad) = level.chars().find(|c| matches!(c, '+' | '#' | '/' | '\0')) {
        bail!("{what} = {level:?} contains {bad:?}: '+', '#' and '/' are not allowed in an MQTT topic level");
    }
    if level.starts_with('$') {
        bail!("{what} = {level:?} starts with '$' (reserved for broker topics)");
    }
    Ok(())
}

/// Checks a topic suffix given to [`Publisher::submit`]: relative, no wildcards, no
/// empty levels.
fn validate_topic_suffix(suffix: &str) -> Result<()> {
    if suffix.is_empty() || suffix.split('/').any(str::is_empty) {
        bail!("topic suffix {suffix:?} is empty or has an empty level");
    }
    if let Some(bad) = suffix.chars().find(|c| matches!(c, '+' | '#' | '\0')) {
        bail!("topic suffix {suffix:?} contains {bad:?}");
    }
    Ok(())
}

/// A counter per [`MessageClass`] (published, dropped). Serializes as a JSON object
/// `{"defect": 1, "detections": 3, ...}` with only the non-zero classes, in the
/// order of their names (the order the stats payload has always had).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassCounts([u64; MessageClass::ALL.len()]);

impl ClassCounts {
    /// The count for one class.
    pub fn get(&self, class: MessageClass) -> u64 {
        self.0[class.index()]
    }

    /// Adds `n` to one class.
    pub(crate) fn add(&mut self, class: MessageClass, n: u64) {
        self.0[class.index()] += n;
    }

    /// Sum over all classes.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }

    /// `(class, count)` for every class.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (MessageClass, u64)> + '_ {
        MessageClass::ALL.into_iter().map(|c| (c, self.get(c)))
    }
}

impl Serialize for ClassCounts {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut counts: Vec<(&str, u64)> = self
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(class, n)| (class.as_str(), n))
            .collect();
        counts.sort_unstable();
        let mut map = serializer.serialize_map(Some(counts.len()))?;
        for (name, n) in counts {
            map.serialize_entry(name, &n)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_rejects_bad_names() {
        assert!(Identity::new("pvtherm", "roof-a").is_ok());
        assert!(Identity::new("site/7/pvtherm", "roof-a").is_ok());
        for device in ["", "a/b", "a+", "#", "$sys"] {
            let err = Identity::new("pvtherm", device).unwrap_err().to_string();
            assert!(err.contains("[device] id"), "{err}");
        }
        for prefix in ["", "/a", "a/", "a//b", "a/+", "#", "$SYS"] {
            let err = Identity::new(prefix, "dev").unwrap_err().to_string();
            assert!(err.contains("[device] topic_prefix"), "{prefix}: {err}");
        }
        let id = Identity::new("pvtherm", "dev1").unwrap();
        assert_eq!(
            id.topic("defects/thumbnail"),
            "pvtherm/dev1/defects/thumbnail"
        );
        assert_eq!(id.availability_topic(), "pvtherm/dev1/availability");
    }

    #[test]
    fn class_names_round_trip() {
        for c in MessageClass::ALL {
            assert_eq!(MessageClass::from_name(c.as_str()), Some(c));
        }
        let mut counts = ClassCounts::default();
        counts.add(MessageClass::Defect, 2);
        assert_eq!(serde_json::to_string(&counts).unwrap(), r#"{"defect":2}"#);
        counts.add(MessageClass::Camera, 1);
        counts.add(MessageClass::Detections, 3);
        assert_eq!(
            serde_json::to_string(&counts).unwrap(),
            r#"{"camera":1,"defect":2,"detections":3}"#
        );
    }

    #[test]
    fn suffix_validation() {
        assert!(validate_topic_suffix("defects/thumbnail").is_ok());
        assert!(validate_topic_suffix("").is_err());
        assert!(validate_topic_suffix("a//b").is_err());
        assert!(validate_topic_suffix("a/#").is_err());
    }
}
