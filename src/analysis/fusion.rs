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
//! Two optional parts let other evidence decide on its own, so that the
//! combiner adds evidence and never vetoes it: `keep_classifier` (a module
//! the classifier alone finds defective stays so, unless it is a sliver cut
//! by the frame's border: its crop is stretched frame edge, where the
//! classifier's false alarms are) and a branch's
//! `hot_spot_floor` (a module whose hottest pixel lies at least that many
//! spreads above both the frame's reference and its own median is defective
//! whatever its crop looks like). Both enter z as one number, so that one
//! threshold still decides and moves all three together:
//!
//! ```text
//! z = max(z_combiner,
//!         t + (defect_logit - classifier threshold logit),   keep_classifier
//!         t + min(delta, contrast) - hot_spot_floor)         hot_spot_floor
//! ```
//!
//! with t the branch's own `logit_threshold`: at it, the decision is the
//! union of the three; an operator's `fusion_threshold` one unit lower also
//! asks one logit less of the classifier and one kelvin (spread) less of
//! the hot spot.
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
use crate::geometry::BBox;
use crate::model::classifier::{anomaly_class, logit, sigmoid};
use crate::model::{Classifier, Decision, ModelConfig};

/// The classifier metadata key (`pvtherm.fusion`) that holds the rule.
pub(crate) const METADATA_KEY: &str = "fusion";

/// Hot-area threshold above the module's own median, in frame spreads
/// (crossval.py `HOT_SPREADS`).
const HOT_SPREADS: f32 = 2.0;

/// A module whose box comes this close to the frame's border (px) is cut by
/// it (rulecheck.py `BORDER_PX`).
const BORDER_PX: f32 = 1.0;

/// A module cut by the border whose box's short side is under this share of
/// the frame's median module short side is a sliver (rulecheck.py
/// `SLIVER_SHARE`): the classifier's false alarms on the cross-validation
/// frames are slivers of 4-9 px, the defects at least 17 px of ~58.
const SLIVER_SHARE: f32 = 0.25;

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
    /// Hot-spot evidence that decides alone: min(delta, contrast) at or
    /// above it is defective (kelvin on radiometric frames, spreads on
    /// relative ones).
    #[serde(default)]
    pub(crate) hot_spot_floor: Option<f32>,
}

impl Combiner {
    /// The combiner's own z for the feature values `x` (rule feature order).
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
    #[serde(default)]
    keep_classifier: bool,
    radiometric: Option<Combiner>,
    relative: Option<Combiner>,
}

/// The fused rule of one classifier, parsed once at load.
#[derive(Debug, Clone, PartialEq)]
pub struct FusionRule {
    features: Vec<Feature>,
    /// Whether the classifier's own verdict (at its defect threshold, as
    /// logit `classifier_logit_threshold`) also decides.
    keep_classifier: bool,
    classifier_logit_threshold: f32,
    /// For frames with absolute temperatures (degrees C).
    radiometric: Option<Combiner>,
    /// For frames in raw counts.
    relative: Option<Combiner>,
    /// The operator's threshold on z (`fusion_threshold`), replacing the
    /// branches' own.
    threshold: Option<f32>,
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
            if numbers.chain(&c.hot_spot_floor).any(|v| !v.is_finite()) {
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
            keep_classifier: file.keep_classifier,
            // The classifier's metadata default; `for_classifier` sets the
            // threshold in use.
            classifier_logit_threshold: f32::INFINITY,
            radiometric: file.radiometric,
            relative: file.relative,
            threshold: None,
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
        Ok(rule.map(|mut r| {
            r.classifier_logit_threshold = logit(classifier.threshold());
            r.with_threshold(config.fusion_threshold)
        }))
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
        self.threshold = threshold;
        self
    }

    /// The threshold on z for frames of this kind, when the rule covers them.
    pub fn logit_threshold(&self, radiometric: bool) -> Option<f32> {
        self.combiner(radiometric)
            .map(|c| self.threshold.unwrap_or(c.logit_threshold))
    }

    /// z of one module: the combiner's, raised by the evidence that decides
    /// alone (see the module documentation); `x` in the rule's feature order.
    fn fused_logit(
        &self,
        c: &Combiner,
        x: &[f32],
        defect_logit: f32,
        hot: Option<f32>,
        sliver: bool,
    ) -> f32 {
        let mut z = c.logit(x);
        if self.keep_classifier && !sliver {
            z = z.max(c.logit_threshold + defect_logit - self.classifier_logit_threshold);
        }
        if let (Some(floor), Some(hot)) = (c.hot_spot_floor, hot) {
            z = z.max(c.logit_threshold + hot - floor);
        }
        z
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
        (width, height): (f32, f32),
        modules: &mut [AnalysedModule],
        values: &[Vec<(f32, u32)>],
        scratch: &mut Vec<f32>,
    ) {
        let (Some(combiner), Some(threshold)) = (
            self.combiner(radiometric),
            self.logit_threshold(radiometric),
        ) else {
            return;
        };
        scratch.clear();
        scratch.extend(
            modules
                .iter()
                .filter_map(|m| m.temperature.as_ref().map(|t| t.median)),
        );
        let scale = FrameScale::of(scratch, radiometric);
        let short_side = |b: &BBox| b.width().min(b.height());
        scratch.clear();
        scratch.extend(modules.iter().map(|m| short_side(&m.detection.quad.bbox())));
        scratch.sort_by(f32::total_cmp);
        let typical_side = scratch.get(scratch.len() / 2).copied().unwrap_or(0.0);
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
            // min(delta, contrast): hot against the frame and within the module.
            let hot = match (&m.temperature, scale) {
                (Some(t), Some(s)) => Some((t.max - s.reference).min(t.max - t.median) / s.spread),
                _ => None,
            };
            let b = m.detection.quad.bbox();
            let at_border = b.x0 <= BORDER_PX
                || b.y0 <= BORDER_PX
                || b.x1 >= width - BORDER_PX
                || b.y1 >= height - BORDER_PX;
            let sliver = at_border && short_side(&b) < SLIVER_SHARE * typical_side;
            let z = self.fused_logit(combiner, &x, logits[12], hot, sliver);
            let defect = &mut m.detection.defect;
            defect.defective = z >= threshold;
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
        row_with(hot, 800, |_, y| (10..40).contains(&y))
    }

    /// As [`row_of_modules`], with module `hot` `centi_k` hotter where
    /// `area(x within the module, y)` holds.
    fn row_with(
        hot: Option<usize>,
        centi_k: u16,
        area: impl Fn(u32, u32) -> bool,
    ) -> (Frame, Vec<ModuleDetection>) {
        let (w, h) = (160u32, 50u32);
        let pixels = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| {
                let module = (x as usize).checked_sub(5).map(|v| v / 25);
                // A little texture so medians and maxima differ.
                let base = 30315 + ((x * 7 + y * 13) % 40) as u16;
                if module == hot && area(x.saturating_sub(5) % 25, y) {
                    base + centi_k
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

    /// A rule whose combiner alone flags nothing (bias -50), with a hot-spot
    /// floor of `floor` K on radiometric frames.
    fn floor_rule(floor: f32) -> FusionRule {
        let json = format!(
            r#"{{"version":1,"features":["defect_logit","delta","contrast"],
            "radiometric":{{"weights":[1.0,1.0,1.0],"bias":-50.0,"logit_threshold":0.0,"hot_spot_floor":{floor}}}}}"#
        );
        FusionRule::parse(&json, "test rule").unwrap()
    }

    #[test]
    fn a_hot_cell_above_the_floor_is_flagged_whatever_the_classifier_says() {
        // One 4x5 px cell of module 2, 5.5 K above everything else; every
        // crop's classifier verdict is healthy (defect logit -3).
        let cell = |x: u32, y: u32| (8..12).contains(&x) && (20..25).contains(&y);
        let decide = |floor: f32| {
            let (frame, detections) = row_with(Some(2), 550, cell);
            let mut analyser = Analyser::new(AnalysisConfig::default())
                .unwrap()
                .with_fusion(Some(floor_rule(floor)));
            let a = analyser.analyse(&frame, detections, None);
            let flagged: Vec<usize> = (0..6)
                .filter(|&i| a.modules[i].detection.defect.defective)
                .collect();
            (flagged, a.modules[2].detection.defect.fused_logit.unwrap())
        };
        let (flagged, z) = decide(5.0);
        assert_eq!(flagged, vec![2]);
        // z = 0 + min(delta, contrast) - 5: about 0.5 (+- the texture).
        assert!((0.1..1.0).contains(&z), "z = {z}");
        let (flagged, z) = decide(6.0);
        assert!(flagged.is_empty(), "{flagged:?}");
        assert!((-0.9..-0.1).contains(&z), "z = {z}");
    }

    #[test]
    fn with_keep_classifier_the_combiner_cannot_veto_the_classifier() {
        let (frame, mut detections) = row_of_modules(None);
        let mut logits = [0.0f32; 13];
        logits[12] = 4.0;
        detections[1].defect = interpret(&logits, 0.5);
        let json = r#"{"version":1,"features":["defect_logit"],"keep_classifier":true,
            "radiometric":{"weights":[0.0],"bias":-50.0,"logit_threshold":-1.0}}"#;
        let mut rule = FusionRule::parse(json, "test rule").unwrap();
        // What `for_classifier` sets from a classifier threshold of 0.95.
        rule.classifier_logit_threshold = (0.95f32 / 0.05).ln();
        let mut analyser = Analyser::new(AnalysisConfig::default())
            .unwrap()
            .with_fusion(Some(rule.clone()));
        let a = analyser.analyse(&frame, detections.clone(), None);
        let flagged: Vec<usize> = (0..6)
            .filter(|&i| a.modules[i].detection.defect.defective)
            .collect();
        // Logit 4 >= ln(19) = 2.94: kept; z = -1 + 4 - 2.94.
        assert_eq!(flagged, vec![1]);
        let z = a.modules[1].detection.defect.fused_logit.unwrap();
        assert!((z - (4.0 - 1.0 - 19f32.ln())).abs() < 1e-5, "z = {z}");
        // The same verdict on a sliver cut by the frame's top edge (20x3 px
        // against modules 20x30) is not kept: the combiner decides it.
        let mut cut = detections.clone();
        cut[1].quad = Quad::rect(32.0, 0.0, 52.0, 3.0);
        cut[1].bbox = cut[1].quad.bbox();
        let a = analyser.analyse(&frame, cut, None);
        assert!(a.modules.iter().all(|m| !m.detection.defect.defective));
        // An operator's threshold 1.5 above the rule's asks logit 4.44 of the classifier.
        let mut analyser = Analyser::new(AnalysisConfig::default())
            .unwrap()
            .with_fusion(Some(rule.with_threshold(Some(0.5))));
        let a = analyser.analyse(&frame, detections, None);
        assert!(a.modules.iter().all(|m| !m.detection.defect.defective));
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
