//! The fused defect decision: the classifier's defect logit combined with the
//! temperature evidence the analysis measures inside each module.
//!
//! A hot cell 5 K above its neighbours is a defect whatever a 40x24 crop
//! looks like to the classifier, and a crop that looks odd on a module at the
//! frame's temperature is less likely one. The rule is a logistic combiner
//! fitted on the cross-validation (`models/training/pvtherm_train/crossval.py`,
//! `fusion_metadata`) and shipped in the classifier's `pvtherm.fusion`
//! metadata, one branch per kind of frame:
//!
//! ```text
//! z = bias + sum(w_i x_i)        defective when z >= logit_threshold
//! ```
//!
//! over named features of each module, measured on the pixels whose centres
//! lie inside its quad (values in degrees C on radiometric frames, raw counts
//! on relative ones):
//!
//! * `defect_logit`: the classifier's defect logit;
//! * `delta` = (module max - reference) / spread;
//! * `contrast` = (module max - module median) / spread;
//! * `hot_fraction` = share of the module's pixels above its median + 2 spread;
//!
//! where reference = median over the frame's modules of the module medians,
//! spread = 1 K on radiometric frames, else the interquartile range (linear
//! interpolation) of the module medians, at least 1 raw count. A module
//! without pixels gets 0 for every temperature feature, as in training.

use std::path::Path;

use anyhow::{Context, Result};
use serde::Deserialize;

use super::AnalysedModule;
use crate::model::classifier::{anomaly_class, sigmoid};
use crate::model::{Classifier, Decision, ModelConfig};

/// The classifier metadata key (`pvtherm.fusion`) that holds the rule.
pub(crate) const METADATA_KEY: &str = "fusion";

/// Hot-area threshold above the module's own median, in frame spreads
/// (crossval.py `HOT_SPREADS`).
const HOT_SPREADS: f32 = 2.0;

/// One input of the combiner, by its name in the metadata.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Feature {
    /// The classifier's defect logit (its output 12).
    DefectLogit,
    /// (module max - reference) / spread.
    Delta,
    /// (module max - module median) / spread.
    Contrast,
    /// Share of the module's pixels above its median + 2 spread.
    HotFraction,
}

impl Feature {
    /// The feature called `name` in the metadata.
    fn named(name: &str) -> Option<Feature> {
        Some(match name {
            "defect_logit" => Feature::DefectLogit,
            "delta" => Feature::Delta,
            "contrast" => Feature::Contrast,
            "hot_fraction" => Feature::HotFraction,
            _ => return None,
        })
    }
}

/// The combiner of one kind of frame.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Combiner {
    /// One weight per feature, in the rule's feature order.
    pub(crate) weights: Vec<f32>,
    /// Added to the weighted sum.
    pub(crate) bias: f32,
    /// Defective when z >= this.
    pub(crate) logit_threshold: f32,
}

impl Combiner {
    /// z for the feature values `x` (in the rule's feature order).
    fn logit(&self, x: &[f32]) -> f32 {
        self.bias + self.weights.iter().zip(x).map(|(w, v)| w * v).sum::<f32>()
    }
}

/// The metadata value as written by `fusion_metadata` (descriptive keys such
/// as `feature_definitions` are read and ignored).
#[derive(Deserialize)]
struct RuleFile {
    version: u32,
    features: Vec<String>,
    radiometric: Option<Combiner>,
    relative: Option<Combiner>,
}

/// The fused rule of one classifier, parsed once at load.
#[derive(Debug, Clone, PartialEq)]
pub struct FusionRule {
    features: Vec<Feature>,
    /// For frames with absolute temperatures (degrees C).
    radiometric: Option<Combiner>,
    /// For frames in raw counts.
    relative: Option<Combiner>,
}

impl FusionRule {
    /// Parses a `pvtherm.fusion` value; `origin` (the model file, or the rule
    /// file) names it in every error.
    pub(crate) fn parse(json: &str, origin: &str) -> Result<FusionRule> {
        let bad = |why: String| {
            anyhow::anyhow!(
                "{origin}: metadata pvtherm.{METADATA_KEY} is not a usable fusion rule: {why}; \
                 re-export the classifier, or set [model] fusion = false to decide by the \
                 classifier alone"
            )
        };
        let file: RuleFile = serde_json::from_str(json).map_err(|e| bad(e.to_string()))?;
        if file.version != 1 {
            return Err(bad(format!(
                "version {} (this pvtherm reads version 1)",
                file.version
            )));
        }
        let features = file
            .features
            .iter()
            .map(|n| Feature::named(n).ok_or_else(|| bad(format!("unknown feature {n:?}"))))
            .collect::<Result<Vec<_>>>()?;
        for (name, branch) in [
            ("radiometric", &file.radiometric),
            ("relative", &file.relative),
        ] {
            let Some(c) = branch else { continue };
            if c.weights.len() != features.len() {
                return Err(bad(format!(
                    "branch {name:?} has {} weights for {} features",
                    c.weights.len(),
                    features.len()
                )));
            }
            let numbers = c.weights.iter().chain([&c.bias, &c.logit_threshold]);
            if numbers.into_iter().any(|v| !v.is_finite()) {
                return Err(bad(format!(
                    "branch {name:?} holds a number that is not finite"
                )));
            }
        }
        if file.radiometric.is_none() && file.relative.is_none() {
            return Err(bad(
                "neither a \"radiometric\" nor a \"relative\" branch".into()
            ));
        }
        Ok(FusionRule {
            features,
            radiometric: file.radiometric,
            relative: file.relative,
        })
    }

    /// The rule `config` asks for with `classifier`: the file named by
    /// `[model] fusion_rule`, else the classifier's metadata; none with
    /// `fusion = false` or when neither holds one. `fusion_threshold`
    /// replaces the branches' thresholds.
    pub fn for_classifier(
        classifier: &Classifier,
        config: &ModelConfig,
    ) -> Result<Option<FusionRule>> {
        if !config.fusion {
            return Ok(None);
        }
        let rule = match &config.fusion_rule {
            Some(file) => Some(Self::read(file)?),
            None => classifier
                .metadata(METADATA_KEY)
                .map(|json| Self::parse(json, classifier.label()))
                .transpose()?,
        };
        Ok(rule.map(|r| r.with_threshold(config.fusion_threshold)))
    }

    /// Reads a rule from a JSON file (the metadata value on its own).
    pub(crate) fn read(file: &Path) -> Result<FusionRule> {
        let json = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read fusion rule {}", file.display()))?;
        Self::parse(&json, &file.display().to_string())
    }

    /// The same rule deciding at `threshold` on z in every branch (an
    /// operator's operating point), or at its own thresholds for `None`.
    pub(crate) fn with_threshold(mut self, threshold: Option<f32>) -> FusionRule {
        if let Some(t) = threshold {
            for c in [&mut self.radiometric, &mut self.relative]
                .into_iter()
                .flatten()
            {
                c.logit_threshold = t;
            }
        }
        self
    }

    /// The threshold on z for frames of this kind, when the rule covers them.
    pub fn logit_threshold(&self, radiometric: bool) -> Option<f32> {
        self.combiner(radiometric).map(|c| c.logit_threshold)
    }

    /// Whether a feature needs the module's pixel values beyond the
    /// statistics of [`super::ModuleTemperature`] (`hot_fraction`).
    pub(crate) fn needs_pixel_values(&self) -> bool {
        self.features.contains(&Feature::HotFraction)
    }

    fn combiner(&self, radiometric: bool) -> Option<&Combiner> {
        if radiometric {
            self.radiometric.as_ref()
        } else {
            self.relative.as_ref()
        }
    }

    /// Decides every module of one frame with the branch of its kind
    /// (nothing changes when the rule has none). `values[i]` holds module
    /// `i`'s converted pixel values with their counts, ascending (needed for
    /// `hot_fraction` only); `scratch` is reused for the medians.
    pub(crate) fn apply(
        &self,
        radiometric: bool,
        modules: &mut [AnalysedModule],
        values: &[Vec<(f32, u32)>],
        scratch: &mut Vec<f32>,
    ) {
        let Some(combiner) = self.combiner(radiometric) else {
            return;
        };
        scratch.clear();
        scratch.extend(
            modules
                .iter()
                .filter_map(|m| m.temperature.as_ref().map(|t| t.median)),
        );
        let scale = FrameScale::of(scratch, radiometric);
        let mut x = Vec::with_capacity(self.features.len());
        for (i, m) in modules.iter_mut().enumerate() {
            let logits = m.detection.defect.logits;
            x.clear();
            x.extend(self.features.iter().map(|f| {
                match (f, &m.temperature, scale) {
                    (Feature::DefectLogit, _, _) => logits[12],
                    (_, None, _) | (_, _, None) => 0.0,
                    (Feature::Delta, Some(t), Some(s)) => (t.max - s.reference) / s.spread,
                    (Feature::Contrast, Some(t), Some(s)) => (t.max - t.median) / s.spread,
                    (Feature::HotFraction, Some(t), Some(s)) => values
                        .get(i)
                        .map_or(0.0, |v| share_above(v, t.median + HOT_SPREADS * s.spread)),
                }
            }));
            let z = combiner.logit(&x);
            let defect = &mut m.detection.defect;
            defect.defective = z >= combiner.logit_threshold;
            defect.anomaly_class = anomaly_class(&logits, defect.defective).to_string();
            defect.decision = Decision::Fused;
            defect.fused_logit = Some(z);
            defect.fused_score = Some(sigmoid(z));
        }
    }
}

/// What the temperature features of one frame are relative to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct FrameScale {
    /// Median of the module medians.
    pub(crate) reference: f32,
    /// 1 K on radiometric frames; the interquartile range of the module
    /// medians (at least 1 count) on relative ones.
    pub(crate) spread: f32,
}

impl FrameScale {
    /// The scale of a frame from its module medians (reordered); `None`
    /// without any.
    pub(crate) fn of(medians: &mut [f32], radiometric: bool) -> Option<FrameScale> {
        medians.sort_unstable_by(f32::total_cmp);
        let reference = super::median(medians)?;
        let spread = if radiometric {
            1.0
        } else {
            (percentile(medians, 0.75) - percentile(medians, 0.25)).max(1.0)
        };
        Some(FrameScale { reference, spread })
    }
}

/// The `q` quantile of ascending `sorted` values, interpolated linearly
/// between order statistics (numpy's default `percentile`).
fn percentile(sorted: &[f32], q: f64) -> f32 {
    let pos = q * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let frac = (pos - lo as f64) as f32;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Share of the counted values strictly above `limit`.
fn share_above(values: &[(f32, u32)], limit: f32) -> f32 {
    let total: u32 = values.iter().map(|&(_, k)| k).sum();
    let above: u32 = values
        .iter()
        .filter(|&&(v, _)| v > limit)
        .map(|&(_, k)| k)
        .sum();
    if total == 0 {
        0.0
    } else {
        above as f32 / total as f32
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;
    use crate::analysis::{Analyser, AnalysisConfig};
    use crate::frame::{Frame, Pixels};
    use crate::geometry::Quad;
    use crate::model::classifier::interpret;
    use crate::model::ModuleDetection;
    use crate::radiometry::Radiometry;

    /// A rule that flags a module whose hottest pixel is 4 K (on a classifier
    /// logit of 0) above the frame's reference; not a trained one.
    const RULE: &str = r#"{"version":1,"features":["defect_logit","delta","contrast","hot_fraction"],
        "feature_definitions":{"delta":"(module max - reference) / spread"},
        "radiometric":{"weights":[1.0,1.0,0.0,0.0],"bias":-4.0,"logit_threshold":0.0},
        "relative":{"weights":[1.0,0.0,0.0,8.0],"bias":-4.0,"logit_threshold":0.0}}"#;

    /// Six 20x30 px modules in a row on a centi-kelvin (Lepton TLinear) frame
    /// at about 30 C, module `hot` (if any) 8 K hotter; every module gets
    /// the same healthy classifier verdict (defect logit -3).
    fn row_of_modules(hot: Option<usize>) -> (Frame, Vec<ModuleDetection>) {
        let (w, h) = (160u32, 50u32);
        let pixels = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                let module = (x as usize).checked_sub(5).map(|v| v / 25);
                // A little texture so medians and maxima differ.
                let base = 30315 + ((x * 7 + y * 13) % 40) as u16;
                if module == hot && (10..40).contains(&y) {
                    base + 800
                } else {
                    base
                }
            })
            .collect();
        let radiometry = Radiometry::Linear {
            scale: 0.01,
            offset: -273.15,
        };
        let frame = Frame::new(
            w,
            h,
            Pixels::Gray16(pixels),
            radiometry,
            0,
            SystemTime::UNIX_EPOCH,
            "synthetic".into(),
        )
        .unwrap();
        let mut logits = [0.0f32; 13];
        logits[12] = -3.0;
        let detections = (0..6)
            .map(|i| {
                let x0 = 5.0 + 25.0 * i as f32;
                let quad = Quad::rect(x0 + 2.0, 10.0, x0 + 22.0, 40.0);
                ModuleDetection {
                    quad,
                    bbox: quad.bbox(),
                    score: 0.9,
                    defect: interpret(&logits, 0.5),
                }
            })
            .collect();
        (frame, detections)
    }

    fn fused_analyser() -> Analyser {
        let rule = FusionRule::parse(RULE, "test rule").unwrap();
        Analyser::new(AnalysisConfig::default())
            .unwrap()
            .with_fusion(Some(rule))
    }

    #[test]
    fn a_module_8_k_hotter_than_its_row_is_flagged_and_its_row_is_not() {
        let (frame, detections) = row_of_modules(Some(2));
        let a = fused_analyser().analyse(&frame, detections, None);
        let flagged: Vec<usize> = (0..6)
            .filter(|&i| a.modules[i].detection.defect.defective)
            .collect();
        assert_eq!(flagged, vec![2]);
        for m in &a.modules {
            let d = &m.detection.defect;
            assert_eq!(d.decision, Decision::Fused);
            assert!(
                (d.defect_score - sigmoid(-3.0)).abs() < 1e-6,
                "classifier's own"
            );
        }
        let z = a.modules[2].detection.defect.fused_logit.unwrap();
        // delta ~ 8 K (+ texture) - 3 - 4.
        assert!((0.5..2.0).contains(&z), "z = {z}");
        assert_ne!(a.modules[2].detection.defect.anomaly_class, "No-Anomaly");

        let (frame, detections) = row_of_modules(None);
        let a = fused_analyser().analyse(&frame, detections, None);
        assert!(a.modules.iter().all(|m| !m.detection.defect.defective));
        assert!(a
            .modules
            .iter()
            .all(|m| m.detection.defect.fused_logit.unwrap() < -6.0));
    }

    #[test]
    fn without_a_rule_the_classifier_decides() {
        let (frame, detections) = row_of_modules(Some(2));
        let mut analyser = Analyser::new(AnalysisConfig::default()).unwrap();
        let a = analyser.analyse(&frame, detections, None);
        assert!(a.modules.iter().all(|m| !m.detection.defect.defective
            && m.detection.defect.decision == Decision::Classifier
            && m.detection.defect.fused_score.is_none()));
    }

    #[test]
    fn the_frame_scale_follows_numpy() {
        // np.median / np.percentile([1, 2, 4, 10], [75, 25]) = 3.0; 5.5, 1.75.
        let s = FrameScale::of(&mut [10.0, 1.0, 4.0, 2.0], false).unwrap();
        assert_eq!(s.reference, 3.0);
        assert_eq!(s.spread, 5.5 - 1.75);
        assert_eq!(FrameScale::of(&mut [7.0, 7.0], false).unwrap().spread, 1.0);
        assert_eq!(FrameScale::of(&mut [1.0, 9.0], true).unwrap().spread, 1.0);
        assert!(FrameScale::of(&mut [], true).is_none());
        assert_eq!(share_above(&[(1.0, 3), (5.0, 1)], 2.0), 0.25);
    }

    #[test]
    fn bad_rules_are_named_errors() {
        for (json, expect) in [
            ("{", "EOF"),
            (r#"{"version":2,"features":[]}"#, "version 2"),
            (
                r#"{"version":1,"features":["delta","colour"],"relative":{"weights":[1,2],"bias":0,"logit_threshold":0}}"#,
                "unknown feature \"colour\"",
            ),
            (
                r#"{"version":1,"features":["delta"],"relative":{"weights":[1,2],"bias":0,"logit_threshold":0}}"#,
                "2 weights for 1 features",
            ),
            (r#"{"version":1,"features":["delta"]}"#, "neither"),
        ] {
            let e = FusionRule::parse(json, "model.onnx")
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("model.onnx: metadata pvtherm.fusion"), "{e}");
            assert!(e.contains(expect), "{expect:?} in {e}");
        }
        let rule = FusionRule::parse(RULE, "r")
            .unwrap()
            .with_threshold(Some(1.5));
        assert_eq!(rule.logit_threshold(true), Some(1.5));
        assert_eq!(rule.logit_threshold(false), Some(1.5));
    }
}
