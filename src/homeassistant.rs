//! Home Assistant MQTT discovery: the `[homeassistant]` section and the one
//! retained device-based config message (`<discovery_prefix>/device/<node_id>/config`)
//! that makes every pvtherm entity appear in Home Assistant without YAML.
//!
//! The message names pvtherm's existing topics; nothing is published twice
//! for Home Assistant. It goes out on every connection (the publisher's
//! announcements) and again a short random delay after Home Assistant says
//! `online` on `<discovery_prefix>/status`, so a fleet of boxes does not
//! answer a Home Assistant restart all in the same millisecond. With
//! `enabled = false` the daemon publishes the empty retained payload on the
//! same topic, which removes the device from Home Assistant. Every key is
//! checked against Home Assistant's discovery schema (docs/PAYLOADS.md lists
//! the entities).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::publish::Identity;

/// Shortest and longest wait before answering Home Assistant's `online`.
const ANSWER_DELAY_MS: std::ops::Range<u64> = 500..5_000;

/// `[homeassistant]`: MQTT discovery for Home Assistant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HomeAssistantConfig {
    /// Publish the discovery config. Off: the daemon removes the device from
    /// Home Assistant (empty retained config) at every connection.
    pub(crate) enabled: bool,
    /// Home Assistant's discovery prefix (its MQTT integration setting).
    pub(crate) discovery_prefix: String,
    /// The device's id in the discovery topic: letters, digits, `_` and `-`.
    /// Default: the device id with every other character replaced by `_`.
    pub(crate) node_id: Option<String>,
}

impl Default for HomeAssistantConfig {
    fn default() -> Self {
        Self {
            enabled: false,
            discovery_prefix: "homeassistant".into(),
            node_id: None,
        }
    }
}

impl HomeAssistantConfig {
    /// The discovery prefix is a topic without wildcards or empty levels, the
    /// node id a single level of the characters Home Assistant accepts.
    pub(crate) fn validate(&self) -> Result<()> {
        let prefix = &self.discovery_prefix;
        if prefix.is_empty()
            || prefix.split('/').any(str::is_empty)
            || prefix.contains(['+', '#', '\0'])
        {
            bail!("[homeassistant] discovery_prefix = {prefix:?}: use a topic without '+', '#' or empty levels, e.g. \"homeassistant\" (Home Assistant's default)");
        }
        if let Some(id) = &self.node_id {
            if !is_node_id(id) {
                bail!("[homeassistant] node_id = {id:?}: use only letters, digits, '_' and '-' (or remove it to derive it from [device] id)");
            }
        }
        Ok(())
    }

    /// The node id: configured, or derived from the device id.
    pub(crate) fn node_id(&self, identity: &Identity) -> String {
        self.node_id.clone().unwrap_or_else(|| {
            identity
                .device()
                .chars()
                .map(|c| if is_node_char(c) { c } else { '_' })
                .collect()
        })
    }

    /// `<discovery_prefix>/device/<node_id>/config`.
    pub(crate) fn config_topic(&self, identity: &Identity) -> String {
        format!(
            "{}/device/{}/config",
            self.discovery_prefix,
            self.node_id(identity)
        )
    }

    /// `<discovery_prefix>/status`, where Home Assistant says `online` when it starts.
    pub(crate) fn status_topic(&self) -> String {
        format!("{}/status", self.discovery_prefix)
    }
}

fn is_node_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

fn is_node_id(id: &str) -> bool {
    !id.is_empty() && id.chars().all(is_node_char)
}

/// What the discovery message describes besides the topics.
#[derive(Debug, Clone)]
pub(crate) struct DeviceFacts {
    /// The source gives absolute temperatures (adds the reference temperature sensor).
    pub(crate) radiometric: bool,
    /// The control topics are on (adds the detection switch and the snapshot button).
    pub(crate) control: bool,
    /// The camera or replay, as the `camera` message names it.
    pub(crate) source: String,
}

/// The device-based discovery payload for this box.
pub(crate) fn discovery_payload(
    config: &HomeAssistantConfig,
    identity: &Identity,
    facts: &DeviceFacts,
) -> Vec<u8> {
    let node = config.node_id(identity);
    let t = |suffix: &str| identity.topic(suffix);
    let version = env!("CARGO_PKG_VERSION");
    let mut cmps = Map::new();
    let mut add = |id: &str, platform: &str, name: &str, mut fields: Value| {
        let obj = fields
            .as_object_mut()
            .expect("component fields are an object");
        obj.insert("p".into(), platform.into());
        obj.insert("name".into(), name.into());
        obj.insert("uniq_id".into(), format!("{node}_{id}").into());
        cmps.insert(id.into(), fields);
    };
    add(
        "camera",
        "binary_sensor",
        "Camera",
        json!({
            "dev_cla": "connectivity",
            "stat_t": t("camera"),
            "val_tpl": "{{ value_json.state }}",
            "pl_on": "online",
            "pl_off": "offline",
        }),
    );
    add(
        "fps",
        "sensor",
        "Frames per second",
        json!({
            "stat_t": t("stats"),
            "val_tpl": "{{ value_json.fps }}",
            "unit_of_meas": "fps",
            "stat_cla": "measurement",
            "sug_dsp_prc": 1,
        }),
    );
    add(
        "defects_today",
        "sensor",
        "Defects today",
        json!({
            "stat_t": t("stats"),
            "val_tpl": "{{ value_json.defects_today }}",
            "stat_cla": "total_increasing",
            "ic": "mdi:solar-panel",
        }),
    );
    add(
        "active_defects",
        "sensor",
        "Active defects",
        json!({
            "stat_t": t("defects/active"),
            "val_tpl": "{{ value_json.count }}",
            "stat_cla": "measurement",
            "ic": "mdi:alert-circle-outline",
        }),
    );
    add(
        "outbox_depth",
        "sensor",
        "Outbox depth",
        json!({
            "stat_t": t("stats"),
            "val_tpl": "{{ value_json.broker.outbox_depth }}",
            "stat_cla": "measurement",
            "ent_cat": "diagnostic",
            "ic": "mdi:tray-full",
        }),
    );
    add(
        "broker_backlog",
        "sensor",
        "Broker backlog",
        json!({
            "stat_t": t("stats"),
            "val_tpl": "{{ value_json.broker.in_flight }}",
            "stat_cla": "measurement",
            "ent_cat": "diagnostic",
            "ic": "mdi:timer-sand",
        }),
    );
    if facts.radiometric {
        add(
            "reference_temperature",
            "sensor",
            "Reference temperature",
            json!({
                "stat_t": t("detections"),
                // "None" (no healthy module in the frame) is Home Assistant's unknown.
                "val_tpl": "{{ value_json.get('reference_temp') }}",
                "dev_cla": "temperature",
                "unit_of_meas": "°C",
                "stat_cla": "measurement",
                "sug_dsp_prc": 1,
            }),
        );
    }
    add(
        "snapshot",
        "image",
        "Snapshot",
        json!({ "image_topic": t("snapshot"), "cont_type": "image/jpeg" }),
    );
    add(
        "defect_thumbnail",
        "image",
        "Latest defect",
        json!({ "image_topic": t("defects/latest/thumbnail"), "cont_type": "image/jpeg" }),
    );
    add(
        "defect_event",
        "event",
        "Defect",
        json!({
            "stat_t": t("events"),
            "event_types": ["new", "update", "end"],
            "val_tpl": "{{ {'event_type': value_json.type, 'event_id': value_json.event_id, \
                        'track_id': value_json.track_id, 'anomaly_class': value_json.anomaly_class, \
                        'defect_score': value_json.defect_score, 'delta_t': value_json.delta_t, \
                        'replayed': value_json.replayed} | to_json }}",
        }),
    );
    if facts.control {
        add(
            "detection",
            "switch",
            "Detection",
            json!({
                "cmd_t": t("detect/set"),
                "stat_t": t("state"),
                "val_tpl": "{{ value_json.detect }}",
                "pl_on": "ON",
                "pl_off": "OFF",
                "ent_cat": "config",
            }),
        );
        add(
            "take_snapshot",
            "button",
            "Take snapshot",
            json!({ "cmd_t": t("snapshot/set"), "pl_prs": "PRESS" }),
        );
    }
    let payload = json!({
        "dev": {
            "ids": [format!("pvtherm_{node}")],
            "name": format!("pvtherm {}", identity.device()),
            "mf": "pvtherm",
            "mdl": facts.source,
            "sw": version,
        },
        "o": { "name": "pvtherm", "sw": version },
        "avty": [{ "t": identity.availability_topic() }],
        "qos": 1,
        "cmps": cmps,
    });
    serde_json::to_vec(&payload).expect("a JSON value serialises")
}

/// A wait between [`ANSWER_DELAY_MS`] before answering Home Assistant's
/// `online`, different from box to box (seeded by the clock and the node id).
pub(crate) fn answer_delay(node_id: &str) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    let seed = node_id.bytes().fold(nanos | 1, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01B3)
    });
    let span = ANSWER_DELAY_MS.end - ANSWER_DELAY_MS.start;
    Duration::from_millis(ANSWER_DELAY_MS.start + seed % span)
}

/// Whether a message on the status topic says Home Assistant (re)started.
pub(crate) fn is_online(payload: &[u8]) -> bool {
    payload.trim_ascii() == b"online"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_id_and_topics() {
        let id = Identity::new("pvtherm", "roof.a 7").unwrap();
        let ha = HomeAssistantConfig::default();
        assert_eq!(ha.node_id(&id), "roof_a_7");
        assert_eq!(ha.config_topic(&id), "homeassistant/device/roof_a_7/config");
        assert_eq!(ha.status_topic(), "homeassistant/status");
        for bad in ["", "a/b", "a+b", "a b"] {
            let cfg = HomeAssistantConfig {
                node_id: Some(bad.into()),
                ..HomeAssistantConfig::default()
            };
            assert!(cfg.validate().unwrap_err().to_string().contains("node_id"));
        }
        for bad in ["", "ha/", "ha/#"] {
            let cfg = HomeAssistantConfig {
                discovery_prefix: bad.into(),
                ..HomeAssistantConfig::default()
            };
            assert!(cfg.validate().is_err(), "{bad}");
        }
        let d = answer_delay("roof_a_7");
        assert!(d >= Duration::from_millis(500) && d < Duration::from_secs(5));
        assert!(is_online(b"online\n") && !is_online(b"offline"));
    }

    #[test]
    fn payload_has_what_device_discovery_requires() {
        let id = Identity::new("pvtherm", "roof-a").unwrap();
        let facts = DeviceFacts {
            radiometric: false,
            control: false,
            source: "replay".into(),
        };
        let v: Value =
            serde_json::from_slice(&discovery_payload(&Default::default(), &id, &facts)).unwrap();
        assert_eq!(v["o"]["name"], "pvtherm");
        assert_eq!(v["dev"]["ids"][0], "pvtherm_roof-a");
        assert_eq!(v["avty"][0]["t"], "pvtherm/roof-a/availability");
        let cmps = v["cmps"].as_object().unwrap();
        for (key, c) in cmps {
            assert!(c["p"].is_string() && c["uniq_id"].is_string(), "{key}");
        }
        assert!(!cmps.contains_key("reference_temperature") && !cmps.contains_key("detection"));
        assert_eq!(cmps["snapshot"]["image_topic"], "pvtherm/roof-a/snapshot");
        assert_eq!(
            cmps["defect_event"]["event_types"],
            json!(["new", "update", "end"])
        );
    }

    #[test]
    fn documented_snippet_parses_with_every_key() {
        crate::config_value::test_support::check_documented_snippet::<HomeAssistantConfig>(
            "homeassistant",
            include_str!("../config/snippets/homeassistant.toml"),
        );
    }
}
