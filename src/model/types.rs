//! What the model stack says about one PV module.

use serde::{Deserialize, Serialize};

use crate::geometry::{BBox, Quad};

/// The twelve classes of the InfraredSolarModules data set (Raptor Maps), in
/// the classifier's output order.
pub const ANOMALY_CLASSES: [&str; 12] = [
    "No-Anomaly",
    "Cell",
    "Cell-Multi",
    "Cracking",
    "Diode",
    "Diode-Multi",
    "Hot-Spot",
    "Hot-Spot-Multi",
    "Offline-Module",
    "Shadowing",
    "Soiling",
    "Vegetation",
];

/// The model's defect verdict for one module.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DefectAssessment {
    /// Whether the module is considered defective (`defect_score >= threshold`).
    pub defective: bool,
    /// Probability-like score 0..1 that the module is defective.
    pub defect_score: f32,
    /// Most likely anomaly class (one of [`ANOMALY_CLASSES`]).
    pub anomaly_class: String,
}

/// One PV module found in a frame, in frame pixel coordinates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleDetection {
    /// The module outline.
    pub quad: Quad,
    /// Axis-aligned box of `quad`, clipped to the frame.
    pub bbox: BBox,
    /// Detector confidence 0..1.
    pub score: f32,
    #[serde(flatten)]
    pub defect: DefectAssessment,
}
