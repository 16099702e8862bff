//! The defect classifier: a small network that looks at each module crop
//! (warped to 40x24, normalised) and gives a defect probability plus a first
//! guess at the InfraredSolarModules anomaly class (the anomaly model names
//! the class of the modules found defective: [`super::anomaly`]). Defects are
//! rare (1.65 % of annotated modules), so a second stage trained on 20,000
//! labelled crops judges them better than a detector head could.

use anyhow::Result;

use super::onnx::{self, LoadedModel, ModelSource};
use super::preprocess::{self, CROP_H, CROP_W};
use super::types::{DefectAssessment, ANOMALY_CLASSES};
use crate::frame::Frame;
use crate::geometry::Quad;

/// Output channels: the 12 class logits, then the defect logit.
pub(crate) const CLASSIFIER_CHANNELS: usize = 13;

/// The loaded classifier with its reusable buffers.
pub struct Classifier {
    model: LoadedModel,
    threshold: f32,
    crop: Vec<f32>,
    scratch: Vec<f32>,
}

impl Classifier {
    /// Loads the classifier; `threshold` overrides the model's tuned defect threshold.
    pub fn load(source: &ModelSource, threshold: Option<f32>) -> Result<Self> {
        let expected = onnx::Expected {
            kind: "classifier",
            channels: CLASSIFIER_CHANNELS,
        };
        let model = onnx::load(source, expected, [1, 1, CROP_H, CROP_W], 1)?;
        let threshold = match threshold {
            Some(t) => t,
            None => model.meta_or("defect_threshold", 0.5)?,
        };
        Ok(Self {
            model,
            threshold,
            crop: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// The defect threshold in use.
    pub fn threshold(&self) -> f32 {
        self.threshold
    }

    /// Where the model was loaded from.
    pub(crate) fn label(&self) -> &str {
        &self.model.label
    }

    /// A `pvtherm.<key>` metadata value of the model file (e.g. `fusion`).
    pub(crate) fn metadata(&self, key: &str) -> Option<&str> {
        self.model.metadata.get(key).map(String::as_str)
    }

    /// Judges the module outlined by `quad` in `frame`.
    pub fn assess(&mut self, frame: &Frame, quad: &Quad) -> Result<DefectAssessment> {
        preprocess::module_crop(frame, quad, &mut self.scratch, &mut self.crop);
        let out = self.model.run_f32([1, 1, CROP_H, CROP_W], &self.crop)?;
        let view = out.try_as_plain_ram()?;
        Ok(interpret(view.as_slice::<f32>()?, self.threshold))
    }
}

/// Turns the 13 logits into a verdict: the defect probability decides
/// `defective`; the class is the most likely anomaly class when defective,
/// else the most likely class overall.
pub(crate) fn interpret(logits: &[f32], threshold: f32) -> DefectAssessment {
    let defect_score = sigmoid(logits[12]);
    let defective = defect_score >= threshold;
    DefectAssessment {
        defective,
        defect_score,
        anomaly_class: anomaly_class(logits, defective).to_string(),
        logits: logits.try_into().unwrap_or([0.0; CLASSIFIER_CHANNELS]),
        ..DefectAssessment::default()
    }
}

/// The class shown for a verdict: the most likely anomaly class (never
/// No-Anomaly) when `defective`, else the most likely class overall. The
/// fused rule calls it again when it changes the classifier's decision.
pub(crate) fn anomaly_class(logits: &[f32], defective: bool) -> &'static str {
    let classes = &logits[..12];
    if defective {
        return super::anomaly::anomaly_of(classes);
    }
    let best = (0..12)
        .max_by(|&a, &b| classes[a].total_cmp(&classes[b]))
        .unwrap_or(0);
    ANOMALY_CLASSES[best]
}

/// The logistic function: a logit -> its probability.
pub(crate) fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The inverse of [`sigmoid`]: a probability threshold as a logit.
pub(crate) fn logit(p: f32) -> f32 {
    (p / (1.0 - p)).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defective_module_never_reports_no_anomaly() {
        let mut logits = [0.0f32; 13];
        logits[0] = 5.0; // No-Anomaly most likely class...
        logits[6] = 1.0; // ...then Hot-Spot
        logits[12] = 3.0; // ...but the defect head is sure.
        let v = interpret(&logits, 0.5);
        assert!(v.defective);
        assert_eq!(v.anomaly_class, "Hot-Spot");
        logits[12] = -3.0;
        let v = interpret(&logits, 0.5);
        assert!(!v.defective);
        assert_eq!(v.anomaly_class, "No-Anomaly");
    }
}
