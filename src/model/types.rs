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

/// Which rule made a module's defect decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// The classifier's defect probability against its threshold.
    #[default]
    Classifier,
    /// The classifier's defect logit fused with the module's temperature
    /// evidence (the classifier's `pvtherm.fusion` rule, `analysis::fusion`).
    Fused,
}

/// The model's defect verdict for one module.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DefectAssessment {
    /// Whether the module is considered defective: `defect_score >=
    /// threshold`, or the fused rule's verdict when `decision` is `fused`.
    pub defective: bool,
    /// The classifier's probability-like score 0..1 that the module is
    /// defective (whichever rule decided).
    pub(crate) defect_score: f32,
    /// Most likely anomaly class (one of [`ANOMALY_CLASSES`]).
    pub(crate) anomaly_class: String,
    /// Which rule decided `defective`.
    #[serde(default)]
    pub(crate) decision: Decision,
    /// The fused rule's score 0..1 (logistic of `fused_logit`), when it decided.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fused_score: Option<f32>,
    /// The fused rule's logit z; defective when z >= its threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) fused_logit: Option<f32>,
    /// The classifier's 13 outputs (12 class logits, then the defect logit):
    /// what the fusion reads, and what picks the class again when it changes
    /// the decision.
    #[serde(skip)]
    pub(crate) logits: [f32; 13],
}

/// One PV module found in a frame, in frame pixel coordinates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModuleDetection {
    /// The module outline.
    pub quad: Quad,
    /// Axis-aligned box of `quad`, clipped to the frame.
    pub(crate) bbox: BBox,
    /// Detector confidence 0..1.
    pub score: f32,
    #[serde(flatten)]
    pub defect: DefectAssessment,
}
