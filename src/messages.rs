//! The payloads pvtherm publishes, and the report `pvtherm detect` writes.
//! Field names are a public interface (Node-RED flows, dashboards, SCADA
//! mappings depend on them): change them only with a new [`SCHEMA_VERSION`].
//! README.md documents each payload with an example.

use std::time::SystemTime;

use serde::Serialize;

use crate::analysis::rfc3339;
use crate::analysis::severity::Severity;
use crate::analysis::temperature::{ModuleTemperature, TemperatureUnit};
use crate::analysis::tracking::DefectEvent;
use crate::analysis::{AnalysedModule, FrameAnalysis};
use crate::frame::Frame;
use crate::geometry::{BBox, Quad};

/// Version of the JSON schema of every payload.
pub const SCHEMA_VERSION: u32 = 1;

/// Which frame a message is about.
#[derive(Debug, Clone, Serialize)]
pub struct FrameInfo {
    /// Source sequence number (gaps = frames not processed).
    pub sequence: u64,
    /// Capture time, RFC 3339 UTC with milliseconds.
    #[serde(with = "rfc3339")]
    pub captured_at: SystemTime,
    pub width: u32,
    pub height: u32,
    /// Device path or file name.
    pub origin: String,
    /// Whether temperatures are absolute (degrees C) or relative units.
    pub radiometric: bool,
}

impl FrameInfo {
    /// Describes `frame`.
    pub fn of(frame: &Frame) -> Self {
        Self {
            sequence: frame.sequence,
            captured_at: frame.captured_at,
            width: frame.width(),
            height: frame.height(),
            origin: frame.origin.clone(),
            radiometric: frame.radiometry.is_absolute(),
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
}

/// One module as every payload shows it (flat, stable names).
#[derive(Debug, Clone, Serialize)]
pub struct ModuleReport {
    /// Index in this frame's module list.
    pub index: usize,
    /// Tracker id (stable while the module stays in view; absent in one-shot reports).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub track_id: Option<u64>,
    /// Outline: four corners `{x, y}` in frame pixels (TL, TR, BR, BL).
    pub quad: Quad,
    /// Axis-aligned box clipped to the frame.
    pub bbox: BBox,
    /// Detector confidence 0..1.
    pub score: f32,
    pub defective: bool,
    /// Defect probability 0..1.
    pub defect_score: f32,
    /// InfraredSolarModules class: No-Anomaly, Hot-Spot, Diode, Offline-Module, ...
    pub anomaly_class: String,
    /// Temperatures inside the outline (unit in `temperature.unit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub temperature: Option<ModuleTemperature>,
    /// Hottest pixel minus the frame's reference (median of healthy modules).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delta_t: Option<f32>,
    /// Severity class 1..3 (IEC TS 62446-3 practice) with its label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub severity: Option<Severity>,
}

impl ModuleReport {
    /// Flattens an analysed module.
    pub fn of(index: usize, m: &AnalysedModule) -> Self {
        let d = &m.detection;
        Self {
            index,
            track_id: m.track_id,
            quad: d.quad,
            bbox: d.bbox,
            score: d.score,
            defective: d.defect.defective,
            defect_score: d.defect.defect_score,
            anomaly_class: d.defect.anomaly_class.clone(),
            temperature: m.temperature.clone(),
            delta_t: m.delta_t,
            severity: m.severity,
        }
    }
}

/// `<prefix>/<device>/detections`, and the per-image report of `pvtherm detect`.
#[derive(Debug, Clone, Serialize)]
pub struct DetectionsMessage {
    pub schema: u32,
    /// Unique id (`<device>-<run>-<sequence>`); repeated on delivery retries,
    /// so subscribers can de-duplicate (delivery is at-least-once).
    pub message_id: String,
    pub device: String,
    pub frame: FrameInfo,
    pub model: ModelInfo,
    /// Inference time for this frame (detector + classifier), milliseconds.
    pub latency_ms: f32,
    /// `celsius` or `relative`.
    pub unit: TemperatureUnit,
    /// Reference temperature (median of the healthy modules), in `unit`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference_temp: Option<f32>,
    /// Why severities are missing, when they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub module_count: usize,
    pub defect_count: usize,
    pub modules: Vec<ModuleReport>,
}

impl DetectionsMessage {
    /// Builds the message for one analysed frame.
    pub fn new(
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
            .map(|(i, m)| ModuleReport::of(i, m))
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
pub struct ThumbnailRef {
    /// Topic of the JPEG (binary payload).
    pub topic: String,
    /// Size in bytes.
    pub bytes: usize,
}

/// `<prefix>/<device>/defects`: one per defective module per frame.
#[derive(Debug, Clone, Serialize)]
pub struct DefectMessage {
    pub schema: u32,
    /// `<detections message id>-m<module index>`; also written into the
    /// thumbnail JPEG's comment segment, which links the two.
    pub message_id: String,
    /// The detections message this defect belongs to.
    pub detections_id: String,
    pub device: String,
    pub frame: FrameInfo,
    pub unit: TemperatureUnit,
    pub module: ModuleReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<ThumbnailRef>,
}

/// `<prefix>/<device>/events`: one physical defect's life (`new`, `update`, `end`).
#[derive(Debug, Clone, Serialize)]
pub struct EventMessage<'a> {
    pub schema: u32,
    pub device: &'a str,
    #[serde(flatten)]
    pub event: &'a DefectEvent,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thumbnail: Option<ThumbnailRef>,
}

/// `<prefix>/<device>/camera` (retained): the source's health.
#[derive(Debug, Clone, Serialize)]
pub struct CameraMessage {
    pub schema: u32,
    pub device: String,
    /// `online` or `offline`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The source (device path and format, or replay folder).
    pub source: String,
    pub radiometric: bool,
    #[serde(with = "rfc3339")]
    pub since: SystemTime,
}

/// Latency percentiles over the stats window.
#[derive(Debug, Clone, Copy, Serialize, Default, PartialEq)]
pub struct LatencyStats {
    pub p50_ms: f32,
    pub p95_ms: f32,
    pub max_ms: f32,
}

/// `<prefix>/<device>/stats`: the daemon's health, every `stats_interval`.
#[derive(Debug, Clone, Serialize)]
pub struct StatsMessage {
    pub schema: u32,
    pub device: String,
    /// pvtherm version.
    pub version: &'static str,
    pub model: ModelInfo,
    pub uptime_s: u64,
    pub frames_captured: u64,
    pub frames_processed: u64,
    /// Frames dropped: by the camera/driver, or replaced in the queue by a newer frame.
    pub frames_dropped: u64,
    /// Frames skipped on purpose (`detect_every_n`, `max_fps`).
    pub frames_skipped: u64,
    /// Processed frames per second over the last window.
    pub fps: f32,
    pub inference: LatencyStats,
    /// Frames waiting for the model (0 or 1: the queue keeps only the newest).
    pub queue_depth: u32,
    pub camera: &'static str,
    pub defects_detected: u64,
    pub events: u64,
    /// The MQTT link and the outbox (see README: durable delivery).
    pub broker: serde_json::Value,
}

/// Serialises a payload; our payload types cannot fail to serialise.
pub fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("payload types serialise")
}
