//! The perception stack: normalisation, the module detector and the defect classifier.

pub mod types;

pub use types::{DefectAssessment, ModuleDetection, ANOMALY_CLASSES};
