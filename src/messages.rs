//! The payloads pvtherm publishes, and the report `pvtherm detect` writes.
//! Field names are a public interface (Node-RED flows, dashboards, SCADA
//! mappings depend on them): change them only with a new `SCHEMA_VERSION`.
//! README.md documents each payload with an example.

use std::time::SystemTime;

use serde::{Serialize, Serializer};

use crate::analysis::rfc3339;
use crate::analysis::severity::Severity;
use crate::analysis::temperature::{ModuleTemperature, TemperatureUnit};
use crate::analysis::tracking::{BestSighting, DefectEvent, EventKind};
use crate::analysis::{AnalysedModule, FrameAnalysis};
use crate::frame::Frame;
use crate::geometry::{BBox, Quad};
use crate::model::trial::PrecisionTrial;
use crate::position::Position;
use crate::provenance::{GroundPosition, Provenance};
use crate::publish::{ClassCounts, PublisherStats};

mod builder;

pub(crate) use builder::{camera_message, control_state_message};
pub use builder::{MessageBuilder, OutputConfig};

/// Version of the JSON schema of every payload.
pub(crate) const SCHEMA_VERSION: u32 = 1;

/// Which frame a message is about.
#[derive(Debug, Clone, Serialize)]
pub struct FrameInfo {
    /// Source sequence number (gaps = frames not processed).
    pub(crate) sequence: u64,
    /// Capture time, RFC 3339 UTC with milliseconds.
    #[serde(with = "rfc3339")]
    pub(crate) captured_at: SystemTime,
    pub(crate) width: u32,
    pub(crate) height: u32,
    /// Device path or file name.
    pub origin: String,
    /// Whether temperatures are absolute (degrees C) or relative units.
    pub(crate) radiometric: bool,
    /// What the file says beyond its pixels: camera, which calibration applies
    /// (`calibrated: false` with the reason where it is not the camera's own),
    /// plausibility flags, where the time came from, camera position and pose.
    #[serde(flatten)]
    pub provenance: Provenance,
}

impl FrameInfo {
    /// Describes `frame`.
    pub(crate) fn of(frame: &Frame) -> Self {
        Self {
            sequence: frame.sequence,
            captured_at: frame.captured_at,
            width: frame.width(),
            height: frame.height(),
            origin: frame.origin.clone(),
            radiometric: frame.radiometry.is_absolute(),
            provenance: frame.provenance.clone(),
        }
    }
}

/// Which models produced a message.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ModelInfo {
    pub name: String,
    pub version: String,
    /// Where the detector came from (file or built-in).
    pub detector: String,
    /// Where the classifier came from.
    pub classifier: String,
    /// Where the anomaly class model came from; `None` (JSON `null`) when
    /// none runs (`[model] anomaly_views = 0`: the classifier names the class).
    pub anomaly: Option<String>,
}

/// One module as every payload shows it (flat, stable names).
#[derive(Debug, Clone, Serialize)]
pub struct ModuleReport {
    /// Index in this frame's module list.
    pub index: usize,
    /// Tracker id (stable while the module stays in view; absent in one-shot reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) track_id: Option<u64>,
    /// Outline: four corners `{x, y}` in frame pixels (TL, TR, BR, BL).
    pub(crate) quad: Quad,
    /// Axis-aligned box clipped to the frame.
    pub(crate) bbox: BBox,
    /// Detector confidence 0..1.
    pub(crate) score: f32,
    pub defective: bool,
    /// The classifier's defect probability 0..1.
    pub defect_score: f32,
    /// Which rule decided `defective`: `classifier` (`defect_score` against
    /// its threshold) or `fused` (classifier and temperature evidence).
    pub(crate) decision: crate::model::Decision,
    /// The fused rule's score 0..1, when it decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) fused_score: Option<f32>,
    /// InfraredSolarModules class: No-Anomaly, Hot-Spot, Diode, Offline-Module, ...
    pub anomaly_class: String,
    /// Temperatures inside the outline (unit in `temperature.unit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) temperature: Option<ModuleTemperature>,
    /// Hottest pixel minus the frame's reference (median of healthy modules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) delta_t: Option<f32>,
    /// Severity class 1..3 (IEC TS 62446-3 practice) with its label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) severity: Option<Severity>,
    /// Estimated ground position of the module centre, when the frame
    /// carries the camera's position, pose and model (flat-ground projection
    /// at the relative altitude; typically 1-5 m off for nadir survey
    /// flights, see `exif::project_to_ground`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) ground_position: Option<GroundPosition>,
}

impl ModuleReport {
    /// Flattens an analysed module of `frame`.
    pub(crate) fn of(index: usize, m: &AnalysedModule, frame: &Frame) -> Self {
        let d = &m.detection;
        Self {
            index,
            track_id: m.track_id,
            quad: d.quad,
            bbox: d.bbox,
            score: d.score,
            defective: d.defect.defective,
            defect_score: d.defect.defect_score,
            decision: d.defect.decision,
            fused_score: d.defect.fused_score,
            anomaly_class: d.defect.anomaly_class.clone(),
            temperature: m.temperature.clone(),
            delta_t: m.delta_t,
            severity: m.severity,
            ground_position: frame.provenance.camera_position.and_then(|view| {
                let c = d.quad.center();
                view.ground_position(c.x as f64, c.y as f64)
            }),
        }
    }
}

/// `<prefix>/<device>/detections`, and the per-image report of `pvtherm detect`.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionsMessage {
    pub(crate) schema: u32,
    /// Unique id (`<device>-<run>-<sequence>`); repeated on delivery retries,
    /// so subscribers can de-duplicate (delivery is at-least-once).
    pub(crate) message_id: String,
    pub(crate) device: String,
    pub frame: FrameInfo,
    pub(crate) model: ModelInfo,
    /// Inference time for this frame (models and analysis), milliseconds.
    pub latency_ms: f32,
    /// `celsius` or `relative`.
    pub(crate) unit: TemperatureUnit,
    /// Reference temperature (median of the healthy modules), in `unit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reference_temp: Option<f32>,
    /// Why severities are missing, when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) note: Option<String>,
    pub module_count: usize,
    pub defect_count: usize,
    pub modules: Vec<ModuleReport>,
}

impl DetectionsMessage {
    /// Builds the message for one analysed frame.
    pub(crate) fn new(
        message_id: String,
        device: &str,
        frame: &Frame,
        model: &ModelInfo,
        latency_ms: f32,
        analysis: &FrameAnalysis,
    ) -> Self {
        let modules: Vec<ModuleReport> = analysis
            .modules
            .iter()
            .enumerate()
            .map(|(i, m)| ModuleReport::of(i, m, frame))
            .collect();
        Self {
            schema: SCHEMA_VERSION,
            message_id,
            device: device.to_string(),
            frame: FrameInfo::of(frame),
            model: model.clone(),
            latency_ms,
            unit: analysis.unit,
            reference_temp: analysis.reference_temp,
            note: analysis.note.clone(),
            module_count: modules.len(),
            defect_count: modules.iter().filter(|m| m.defective).count(),
            modules,
        }
    }
}

/// Where a message's JPEG went.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ThumbnailRef {
    /// Topic of the JPEG (binary payload).
    pub(crate) topic: String,
    /// Size in bytes.
    pub(crate) bytes: usize,
}

/// `<prefix>/<device>/defects`: one per defective module per frame.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DefectMessage {
    pub(crate) schema: u32,
    /// `<detections message id>-m<module index>`; also written into the
    /// thumbnail JPEG's comment segment, which links the two.
    pub(crate) message_id: String,
    /// The detections message this defect belongs to.
    pub(crate) detections_id: String,
    pub(crate) device: String,
    pub(crate) frame: FrameInfo,
    pub(crate) unit: TemperatureUnit,
    pub(crate) module: ModuleReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) thumbnail: Option<ThumbnailRef>,
}

/// `<prefix>/<device>/events`: one physical defect's life (`new`, `update`, `end`).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct EventMessage {
    pub(crate) schema: u32,
    pub(crate) device: String,
    /// The defect as the tracker reports it now.
    #[serde(flatten)]
    pub(crate) defect: DefectReport,
    /// The best sighting's JPEG (`new` and `update` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) thumbnail: Option<ThumbnailRef>,
}

impl EventMessage {
    /// The message for one tracker event.
    pub(crate) fn new(device: &str, event: &DefectEvent, thumbnail: Option<ThumbnailRef>) -> Self {
        Self {
            schema: SCHEMA_VERSION,
            device: device.to_string(),
            defect: DefectReport::of(event),
            thumbnail,
        }
    }
}

/// `<prefix>/<device>/defects/active` (retained): the physical defects open
/// now, each as its latest event reported it, so a dashboard that starts late
/// shows them without replaying the event history. Sent at start (empty: the
/// tracker starts empty) and after every event.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ActiveDefectsMessage {
    pub(crate) schema: u32,
    pub(crate) device: String,
    /// Number of open defects (`defects.len()`).
    pub(crate) count: usize,
    /// Oldest first.
    pub(crate) defects: Vec<DefectReport>,
}

/// One physical defect over its life, as the `events` payload and the survey
/// report of `pvtherm detect` show it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct DefectReport {
    /// Stable id across the defect's `new` / `update` / `end` messages.
    pub(crate) event_id: String,
    /// Tracker id of the module.
    pub(crate) track_id: u64,
    /// `new`, `update` or `end`.
    #[serde(rename = "type", serialize_with = "event_type")]
    pub(crate) kind: EventKind,
    /// Capture time of the first defective sighting.
    #[serde(with = "rfc3339")]
    pub(crate) first_seen: SystemTime,
    /// Capture time of the latest defective sighting.
    #[serde(with = "rfc3339")]
    pub(crate) last_seen: SystemTime,
    /// Number of frames that saw the module defective.
    pub(crate) frames_seen: u32,
    /// The sighting that best shows the defect (what the thumbnail shows).
    pub(crate) best: SightingReport,
    /// Highest defect score over the sightings.
    pub(crate) defect_score: f32,
    /// Anomaly class of the highest-scoring sighting.
    pub(crate) anomaly_class: String,
    /// Highest delta-T over the sightings, in `unit` (`null` when unknown).
    pub(crate) delta_t: Option<f32>,
    pub(crate) unit: TemperatureUnit,
    /// Highest severity over the sightings (`null` when unknown).
    pub(crate) severity: Option<Severity>,
    /// Camera position at the best sighting (`null` without a position source).
    pub(crate) position: Option<Position>,
}

impl DefectReport {
    /// The report of one tracker event.
    pub(crate) fn of(e: &DefectEvent) -> Self {
        Self {
            event_id: e.event_id.clone(),
            track_id: e.track_id,
            kind: e.kind,
            first_seen: e.first_seen,
            last_seen: e.last_seen,
            frames_seen: e.frames_seen,
            best: SightingReport::of(&e.best),
            defect_score: e.defect_score,
            anomaly_class: e.anomaly_class.clone(),
            delta_t: e.delta_t,
            unit: e.unit,
            severity: e.severity,
            position: e.position.clone(),
        }
    }
}

/// Serialises tracker events as their [`DefectReport`]s (the `defects` of the
/// survey report).
pub(crate) fn defect_reports<S: Serializer>(
    events: &[DefectEvent],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(events.iter().map(DefectReport::of))
}

/// The wire names of [`EventKind`].
fn event_type<S: Serializer>(kind: &EventKind, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match kind {
        EventKind::New => "new",
        EventKind::Update => "update",
        EventKind::End => "end",
    })
}

/// The `best` object of a [`DefectReport`]: where the module was most central
/// and hottest (or most surely defective).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SightingReport {
    /// Frame sequence number.
    pub(crate) sequence: u64,
    /// Frame capture time.
    #[serde(with = "rfc3339")]
    pub(crate) captured_at: SystemTime,
    /// Module outline in that frame.
    pub(crate) quad: Quad,
    /// Axis-aligned box of the outline.
    pub(crate) bbox: BBox,
    /// 1 at the frame centre, 0 at a corner.
    pub(crate) centrality: f32,
    /// Delta-T in that frame (`null` when unknown).
    pub(crate) delta_t: Option<f32>,
    /// Defect score in that frame.
    pub(crate) defect_score: f32,
}

impl SightingReport {
    /// The report of one sighting.
    pub(crate) fn of(b: &BestSighting) -> Self {
        Self {
            sequence: b.sequence,
            captured_at: b.captured_at,
            quad: b.quad,
            bbox: b.bbox,
            centrality: b.centrality,
            delta_t: b.delta_t,
            defect_score: b.defect_score,
        }
    }
}

/// `<prefix>/<device>/camera` (retained): the source's health.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CameraMessage {
    pub(crate) schema: u32,
    pub(crate) device: String,
    /// `online` or `offline`.
    pub(crate) state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<String>,
    /// The source (device path and format, or replay folder).
    pub(crate) source: String,
    pub(crate) radiometric: bool,
    #[serde(with = "rfc3339")]
    pub(crate) since: SystemTime,
}

/// `<prefix>/<device>/state` (retained, `[control]` only): what the control
/// topics set now and the answer to the last command.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct ControlStateMessage {
    pub(crate) schema: u32,
    pub(crate) device: String,
    /// `ON` while frames are analysed, `OFF` while paused.
    pub(crate) detect: &'static str,
    /// Absent at start, before any command.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) last_command: Option<crate::control::Answer>,
}

/// Latency percentiles over the stats window.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq)]
pub(crate) struct LatencyStats {
    pub(crate) p50_ms: f32,
    pub(crate) p95_ms: f32,
    pub(crate) max_ms: f32,
}

/// `<prefix>/<device>/stats`: the daemon's health, every `stats_interval`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct StatsMessage {
    pub(crate) schema: u32,
    pub(crate) device: String,
    /// pvtherm version.
    pub(crate) version: &'static str,
    pub(crate) model: ModelInfo,
    pub(crate) uptime_s: u64,
    pub(crate) frames_captured: u64,
    pub(crate) frames_processed: u64,
    /// Frames dropped: by the camera/driver, or replaced in the queue by a newer frame.
    pub(crate) frames_dropped: u64,
    /// Frames skipped on purpose (`detect_every_n`, `max_fps`).
    pub(crate) frames_skipped: u64,
    /// Processed frames per second over the last window.
    pub(crate) fps: f32,
    pub(crate) inference: LatencyStats,
    /// Frames waiting for the model (0 or 1: the queue keeps only the newest).
    pub(crate) queue_depth: u32,
    pub(crate) camera: &'static str,
    pub(crate) defects_detected: u64,
    pub(crate) events: u64,
    /// Physical defects confirmed (`new` events) since 00:00 UTC.
    pub(crate) defects_today: u64,
    /// False while the analysis is paused (`detect/set OFF`): frames are
    /// counted as captured, none is processed.
    pub(crate) detecting: bool,
    /// The MQTT link and the outbox (see README: durable delivery).
    pub(crate) broker: BrokerStats,
    /// What `[model] precision = "auto"` measured at start-up and chose;
    /// absent when the precision or the model files were named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) precision_trial: Option<PrecisionTrial>,
}

/// The `broker` object of [`StatsMessage`]: the MQTT link and the outbox.
/// Fields in alphabetical order, the order this object has always had on the
/// wire.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct BrokerStats {
    /// True while an MQTT session is up.
    pub(crate) connected: bool,
    /// Failed connection attempts and dropped links since start.
    pub(crate) connection_failures: u64,
    /// Messages dropped (outbox full or too old), per class.
    pub(crate) dropped: ClassCounts,
    /// Outbox messages sent and not yet acknowledged.
    pub(crate) in_flight: usize,
    /// The last connection error, kept after reconnecting (`null` if none).
    pub(crate) last_error: Option<String>,
    /// Human-readable link state, e.g. `connected to 10.0.0.2:1883`.
    pub(crate) link: String,
    /// Accounted bytes in the outbox.
    pub(crate) outbox_bytes: u64,
    /// Messages waiting in the outbox (including those in flight).
    pub(crate) outbox_depth: u64,
    /// Why the outbox cannot be written right now (disk full or failing);
    /// `null` while it can.
    pub(crate) outbox_error: Option<String>,
    /// Messages acknowledged by the broker (QoS 1) or written out (QoS 0), per class.
    pub(crate) published: ClassCounts,
    /// Successful connections after the first one.
    pub(crate) reconnects: u64,
    /// Messages that could not be stored at all (disk full or failing even
    /// after evicting older ones), per class: lost.
    pub(crate) unstored: ClassCounts,
}

impl From<&PublisherStats> for BrokerStats {
    fn from(p: &PublisherStats) -> Self {
        Self {
            connected: p.connected,
            connection_failures: p.connection_failures,
            dropped: p.dropped,
            in_flight: p.in_flight,
            last_error: p.last_error.clone(),
            link: p.link.clone(),
            outbox_bytes: p.outbox_bytes,
            outbox_depth: p.outbox_depth,
            outbox_error: p.outbox_error.clone(),
            published: p.published,
            reconnects: p.reconnects,
            unstored: p.unstored,
        }
    }
}

/// Serialises a payload; our payload types cannot fail to serialise.
pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("payload types serialise")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::tracking::EventKind;
    use crate::publish::MessageClass;

    fn event(kind: EventKind, position: Option<Position>) -> DefectEvent {
        let quad = Quad::rect(10.0, 20.0, 50.0, 40.0);
        DefectEvent {
            event_id: "18bcf1c2a40-7".into(),
            track_id: 7,
            kind,
            first_seen: SystemTime::UNIX_EPOCH
                + std::time::Duration::from_millis(1_700_000_001_200),
            last_seen: SystemTime::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_003_400),
            frames_seen: 12,
            best: BestSighting {
                sequence: 1031,
                captured_at: SystemTime::UNIX_EPOCH
                    + std::time::Duration::from_millis(1_700_000_002_000),
                quad,
                bbox: quad.bbox(),
                centrality: 0.9,
                delta_t: Some(24.0),
                defect_score: 0.97,
            },
            defect_score: 0.98,
            anomaly_class: "Hot-Spot".into(),
            delta_t: None,
            unit: TemperatureUnit::Celsius,
            severity: Some(Severity::SAFETY),
            position,
            crop: None,
        }
    }

    /// The events payload is, byte for byte, what it was when it flattened
    /// the tracker's event (whose serde form the analysis tests pin).
    #[test]
    fn event_message_keeps_its_wire_form() {
        let position = Position {
            latitude: 48.1,
            longitude: 11.5,
            altitude: None,
            source: "fixed".into(),
            fix_age_s: None,
            fix_time: None,
        };
        for (kind, name) in [
            (EventKind::New, "new"),
            (EventKind::Update, "update"),
            (EventKind::End, "end"),
        ] {
            for position in [None, Some(position.clone())] {
                let e = event(kind, position);
                let thumbnail = ThumbnailRef {
                    topic: "pvtherm/roof-a/events/thumbnail".into(),
                    bytes: 1234,
                };
                let json =
                    String::from_utf8(to_json(&EventMessage::new("roof-a", &e, Some(thumbnail))))
                        .unwrap();
                let tracker = serde_json::to_string(&e).unwrap();
                let expected = format!(
                    r#"{{"schema":1,"device":"roof-a",{},"thumbnail":{{"topic":"pvtherm/roof-a/events/thumbnail","bytes":1234}}}}"#,
                    &tracker[1..tracker.len() - 1]
                );
                assert_eq!(json, expected);
                assert!(json.contains(&format!(r#""type":"{name}""#)), "{json}");
            }
        }
    }

    /// `broker` in the stats payload keeps the alphabetical key order it had
    /// as an untyped JSON value, down to the per-class counters.
    #[test]
    fn broker_stats_keep_their_names_and_order() {
        let mut published = ClassCounts::default();
        published.add(MessageClass::Stats, 6);
        published.add(MessageClass::Detections, 2);
        published.add(MessageClass::Camera, 1);
        let stats = PublisherStats {
            connected: true,
            link: "connected to 127.0.0.1:1883".into(),
            reconnects: 0,
            connection_failures: 1,
            published,
            outbox_depth: 3,
            outbox_bytes: 4096,
            in_flight: 2,
            dropped: ClassCounts::default(),
            unstored: ClassCounts::default(),
            outbox_error: None,
            last_error: None,
        };
        let json = String::from_utf8(to_json(&BrokerStats::from(&stats))).unwrap();
        assert_eq!(
            json,
            r#"{"connected":true,"connection_failures":1,"dropped":{},"in_flight":2,"last_error":null,"link":"connected to 127.0.0.1:1883","outbox_bytes":4096,"outbox_depth":3,"outbox_error":null,"published":{"camera":1,"detections":2,"stats":6},"reconnects":0,"unstored":{}}"#
        );
    }
}
