//! The perception stack: normalisation, the module detector and the defect
//! classifier, loaded once and run per frame.
//!
//! ```no_run
//! # fn main() -> anyhow::Result<()> {
//! let mut stack = pvtherm::model::ModelStack::load(&Default::default())?;
//! let frame = pvtherm::imageio::load_frame("survey/DJI_0827_R.JPG".as_ref(), 0)?;
//! for module in stack.infer(&frame)? {
//!     println!("{:?} defective={}", module.quad, module.defect.defective);
//! }
//! # Ok(()) }
//! ```

pub(crate) mod anomaly;
pub(crate) mod classifier;
pub mod detector;
pub(crate) mod onnx;
mod onnx_ops;
pub mod preprocess;
pub mod trial;
pub(crate) mod types;

use std::path::PathBuf;

use anyhow::Result;
use serde::{Deserialize, Serialize};

pub use classifier::Classifier;
pub use detector::{Candidate, Detector};
pub(crate) use onnx::ModelSource;
pub use types::{Decision, DefectAssessment, ModuleDetection, ANOMALY_CLASSES};

use crate::frame::Frame;
use crate::geometry::Quad;
use anomaly::AnomalyModel;

/// One of the two built-in model pairs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// Quantised models (per-tensor QLinearConv): 3x smaller; faster than f32
    /// where tract has a fast int8 kernel for the CPU (VNNI, AMX, arm64 dot
    /// product), slower elsewhere (BENCHMARKS.md).
    Int8,
    /// Float models: the accuracy reference.
    #[default]
    F32,
}

impl Precision {
    /// The name used in the config, on the command line and in messages.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Int8 => "int8",
            Precision::F32 => "f32",
        }
    }
}

/// `[model] precision`: a built-in pair, or `auto`, which times both pairs at
/// start-up and keeps the faster one on this box ([`trial`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum PrecisionChoice {
    /// The daemon and `serve` time both pairs at start-up ([`trial::load_fastest`]);
    /// one-shot loads (`detect`, `eval`) use f32, the accuracy reference, so
    /// that their results do not depend on which pair a box runs faster.
    #[default]
    Auto,
    /// Always the int8 pair.
    Int8,
    /// Always the f32 pair.
    F32,
}

impl PrecisionChoice {
    /// The pair this choice names, `None` for `auto`.
    pub(crate) fn fixed(self) -> Option<Precision> {
        match self {
            PrecisionChoice::Auto => None,
            PrecisionChoice::Int8 => Some(Precision::Int8),
            PrecisionChoice::F32 => Some(Precision::F32),
        }
    }
}

impl From<Precision> for PrecisionChoice {
    fn from(p: Precision) -> Self {
        match p {
            Precision::Int8 => PrecisionChoice::Int8,
            Precision::F32 => PrecisionChoice::F32,
        }
    }
}

/// `[model] input_scale`: the size the detector sees each frame at.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum InputScale {
    /// Frames whose short side is at least `AUTO_SMALL_SIDE` px are
    /// stretched to `input_width` x `input_height`; smaller frames (TC001,
    /// Lepton) run at their own size times the smallest power of two that
    /// makes their short side at least `AUTO_MIN_SHORT_SIDE` px (256x192:
    /// 2x, 160x120: 4x), so that their modules cover several cells of the
    /// stride-8 detector. Measured in MODEL_CARD.md ("Small frames").
    #[default]
    Auto,
    /// Every frame runs at its own size times this factor.
    Factor(f32),
}

/// Short side (px) under which `input_scale = "auto"` upsamples a frame.
pub(crate) const AUTO_SMALL_SIDE: u32 = 256;

/// Short side (px) that `input_scale = "auto"` upsamples small frames to, at least.
pub(crate) const AUTO_MIN_SHORT_SIDE: u32 = 384;

impl Serialize for InputScale {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            InputScale::Auto => s.serialize_str("auto"),
            InputScale::Factor(f) => s.serialize_f32(*f),
        }
    }
}

impl<'de> Deserialize<'de> for InputScale {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        /// What the TOML may hold: `"auto"` or a number.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Name(String),
            Number(f64),
        }
        match Raw::deserialize(d)? {
            Raw::Name(n) if n == "auto" => Ok(InputScale::Auto),
            Raw::Name(n) => Err(serde::de::Error::custom(format!(
                "input_scale = {n:?}: must be \"auto\" or a number such as 2"
            ))),
            Raw::Number(f) => Ok(InputScale::Factor(f as f32)),
        }
    }
}

impl std::str::FromStr for InputScale {
    type Err = String;

    /// `auto` or a number (the `--input-scale` flag).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(InputScale::Auto),
            n => n
                .parse()
                .map(InputScale::Factor)
                .map_err(|_| format!("{s:?} is not \"auto\" or a number")),
        }
    }
}

/// `[model]`: which models to run and how.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelConfig {
    /// Built-in model pair to use when no file is named, or `auto`.
    pub precision: PrecisionChoice,
    /// Detector ONNX file; unset = the built-in detector of `precision`.
    pub detector: Option<PathBuf>,
    /// Classifier ONNX file; unset = the built-in classifier of `precision`.
    pub classifier: Option<PathBuf>,
    /// Anomaly class model ONNX file (names the class of the modules the
    /// defect decision flags); unset = the built-in one of `precision`.
    pub anomaly: Option<PathBuf>,
    /// Views of each flagged module the anomaly model averages (1, 2 or 4:
    /// the crop, its 180-degree turn, its two mirrors), one model run each;
    /// 0 = no anomaly model: the classifier's class head names the class.
    pub anomaly_views: usize,
    /// Width the frame is resized to before detection (multiple of 16).
    pub input_width: usize,
    /// Height the frame is resized to before detection (multiple of 16).
    pub input_height: usize,
    /// Which frames run at `input_width` x `input_height` and which at a
    /// multiple of their own size (see [`InputScale`]).
    pub input_scale: InputScale,
    /// Minimum detector score for a module; unset = the model's tuned value.
    pub score_threshold: Option<f32>,
    /// Minimum defect probability for `defective`; unset = the model's tuned
    /// value. Decides modules the fused rule does not (no `pvtherm.fusion` in
    /// the classifier, `fusion = false`, no temperatures).
    pub defect_threshold: Option<f32>,
    /// Whether the classifier's fusion rule (its `pvtherm.fusion` metadata:
    /// defect logit and temperature evidence) decides; false = the
    /// classifier's probability alone.
    pub fusion: bool,
    /// Threshold on the fused rule's logit z (defective when z >= it);
    /// unset = the rule's own, chosen on the cross-validation.
    pub fusion_threshold: Option<f32>,
    /// A fusion rule file (JSON, the `pvtherm.fusion` value on its own)
    /// replacing the classifier's; unset = the classifier's metadata.
    pub fusion_rule: Option<PathBuf>,
    /// Threads for the detector's matrix products (1 = the inference thread
    /// alone). The classifier always runs on one: its 40x24 crops are too small
    /// to split.
    pub threads: usize,
}

/// The most threads `[model] threads` / `--threads` may ask for: 1 in a build
/// without the `threads` cargo feature (no thread pool compiled in).
pub const MAX_THREADS: usize = if cfg!(feature = "threads") { 64 } else { 1 };

impl Default for ModelConfig {
    fn default() -> Self {
        Self {
            precision: PrecisionChoice::Auto,
            detector: None,
            classifier: None,
            anomaly: None,
            anomaly_views: 2,
            input_width: 640,
            input_height: 512,
            input_scale: InputScale::Auto,
            score_threshold: None,
            defect_threshold: None,
            fusion: true,
            fusion_threshold: None,
            fusion_rule: None,
            threads: 1,
        }
    }
}

/// Largest `[model] input_width` / `input_height`: well above any thermal
/// camera, small enough that the resized frame fits a 1 GB box.
pub(crate) const MAX_INPUT_SIDE: usize = 2048;

impl ModelConfig {
    /// Checks the section (for `Config::validate`, and in [`ModelStack::load`]
    /// for command-line settings): an input size the detector can tile and a
    /// box can hold, thresholds that are probabilities, a thread count this
    /// build can run, model files that exist.
    pub(crate) fn validate(&self) -> Result<()> {
        use crate::config_value::in_range;
        for (key, side) in [
            ("[model] input_width", self.input_width),
            ("[model] input_height", self.input_height),
        ] {
            in_range(key, side, 32..=MAX_INPUT_SIDE, " px")?;
            if !side.is_multiple_of(16) {
                anyhow::bail!("{key} = {side}: must be a multiple of 16");
            }
        }
        if let InputScale::Factor(f) = self.input_scale {
            if !(0.25..=8.0).contains(&f) {
                anyhow::bail!("[model] input_scale = {f}: must be \"auto\" or 0.25 to 8");
            }
        }
        // 0 and 1 are no thresholds: ln(p / (1 - p)) is infinite there.
        for (key, threshold) in [
            ("[model] score_threshold", self.score_threshold),
            ("[model] defect_threshold", self.defect_threshold),
        ] {
            if let Some(p) = threshold {
                if !(p > 0.0 && p < 1.0) {
                    anyhow::bail!("{key} = {p}: must be a probability above 0 and below 1");
                }
            }
        }
        if let Some(z) = self.fusion_threshold {
            if !z.is_finite() || z.abs() > 50.0 {
                anyhow::bail!(
                    "[model] fusion_threshold = {z}: must be a logit between -50 and 50 \
                     (0 = fused score 0.5)"
                );
            }
        }
        if self.anomaly_views != 0 && !anomaly::ANOMALY_VIEWS.contains(&self.anomaly_views) {
            anyhow::bail!(
                "[model] anomaly_views = {}: must be 0 (no anomaly model), 1, 2 or 4",
                self.anomaly_views
            );
        }
        if !(1..=MAX_THREADS).contains(&self.threads) {
            anyhow::bail!(
                "[model] threads = {}: must be 1 to {MAX_THREADS} (1 = the inference thread alone{})",
                self.threads,
                if cfg!(feature = "threads") {
                    ""
                } else {
                    "; this build has no thread pool: rebuild with the `threads` cargo feature for more"
                }
            );
        }
        for (key, file) in [
            ("detector", &self.detector),
            ("classifier", &self.classifier),
            ("anomaly", &self.anomaly),
            ("fusion_rule", &self.fusion_rule),
        ] {
            if let Some(f) = file {
                if !f.is_file() {
                    anyhow::bail!(
                        "[model] {key} = {:?}: no such file",
                        f.display().to_string()
                    );
                }
            }
        }
        Ok(())
    }

    /// The detector's input size (width, height) for a `width` x `height`
    /// frame: multiples of 16, 32 to [`MAX_INPUT_SIDE`].
    pub(crate) fn input_size_for(&self, width: u32, height: u32) -> (usize, usize) {
        let factor = match self.input_scale {
            InputScale::Auto if width.min(height) >= AUTO_SMALL_SIDE => {
                return (self.input_width, self.input_height)
            }
            InputScale::Auto => {
                let short = width.min(height).max(1);
                let mut factor = 2.0f32;
                while (short as f32 * factor) < AUTO_MIN_SHORT_SIDE as f32 {
                    factor *= 2.0;
                }
                factor
            }
            InputScale::Factor(f) => f,
        };
        let side = |v: u32| {
            let scaled = (v as f32 * factor).round() as usize;
            scaled.div_ceil(16).clamp(2, MAX_INPUT_SIDE / 16) * 16
        };
        (side(width), side(height))
    }

    /// The built-in pair a plain [`ModelStack::load`] uses: the one named,
    /// f32 for `auto` (see [`PrecisionChoice::Auto`]).
    pub fn pair(&self) -> Precision {
        self.precision.fixed().unwrap_or(Precision::F32)
    }

    /// This section with `precision` fixed to `p` (what `auto` chose, for a
    /// second model instance that must not time the pairs again).
    pub fn with_precision(&self, p: Precision) -> ModelConfig {
        ModelConfig {
            precision: p.into(),
            ..self.clone()
        }
    }

    /// The detector to load.
    pub fn detector_source(&self) -> ModelSource {
        match &self.detector {
            Some(p) => ModelSource::File(p.clone()),
            None => builtin::detector(self.pair()),
        }
    }

    /// The classifier to load.
    pub fn classifier_source(&self) -> ModelSource {
        match &self.classifier {
            Some(p) => ModelSource::File(p.clone()),
            None => builtin::classifier(self.pair()),
        }
    }

    /// The anomaly class model to load.
    pub(crate) fn anomaly_source(&self) -> ModelSource {
        match &self.anomaly {
            Some(p) => ModelSource::File(p.clone()),
            None => builtin::anomaly(self.pair()),
        }
    }
}

/// The models shipped inside the binary, so that `pvtherm detect` and the
/// demo work with nothing installed.
mod builtin {
    use super::{ModelSource, Precision};

    pub(crate) fn detector(p: Precision) -> ModelSource {
        match p {
            Precision::Int8 => ModelSource::Builtin {
                label: "pvtherm-detector-int8.onnx",
                bytes: include_bytes!("../../models/pvtherm-detector-int8.onnx"),
            },
            Precision::F32 => ModelSource::Builtin {
                label: "pvtherm-detector-f32.onnx",
                bytes: include_bytes!("../../models/pvtherm-detector-f32.onnx"),
            },
        }
    }

    pub(crate) fn classifier(p: Precision) -> ModelSource {
        match p {
            Precision::Int8 => ModelSource::Builtin {
                label: "pvtherm-classifier-int8.onnx",
                bytes: include_bytes!("../../models/pvtherm-classifier-int8.onnx"),
            },
            Precision::F32 => ModelSource::Builtin {
                label: "pvtherm-classifier-f32.onnx",
                bytes: include_bytes!("../../models/pvtherm-classifier-f32.onnx"),
            },
        }
    }

    pub(crate) fn anomaly(p: Precision) -> ModelSource {
        match p {
            Precision::Int8 => ModelSource::Builtin {
                label: "pvtherm-anomaly-int8.onnx",
                bytes: include_bytes!("../../models/pvtherm-anomaly-int8.onnx"),
            },
            Precision::F32 => ModelSource::Builtin {
                label: "pvtherm-anomaly-f32.onnx",
                bytes: include_bytes!("../../models/pvtherm-anomaly-f32.onnx"),
            },
        }
    }
}

/// Detector, classifier and anomaly class model together: frame in, judged
/// modules out.
pub struct ModelStack {
    pub detector: Detector,
    pub classifier: Classifier,
    /// Names the class of flagged modules ([`ModelStack::anomaly_class`]);
    /// `None` with `anomaly_views = 0`.
    anomaly: Option<AnomalyModel>,
    /// Picks the detector's input size per frame.
    config: ModelConfig,
}

impl ModelStack {
    /// Loads and optimises the models (once, at start-up).
    pub fn load(config: &ModelConfig) -> Result<Self> {
        config.validate()?;
        let detector = Detector::load(
            &config.detector_source(),
            (config.input_width, config.input_height),
            config.score_threshold,
            config.threads,
        )?;
        let classifier = Classifier::load(&config.classifier_source(), config.defect_threshold)?;
        let anomaly = match config.anomaly_views {
            0 => None,
            views => Some(AnomalyModel::load(&config.anomaly_source(), views)?),
        };
        Ok(Self {
            detector,
            classifier,
            anomaly,
            config: config.clone(),
        })
    }

    /// Where the anomaly class model was loaded from; `None` when none runs.
    pub(crate) fn anomaly_label(&self) -> Option<&str> {
        self.anomaly.as_ref().map(AnomalyModel::label)
    }

    /// The anomaly class of a module the defect decision flagged, from the
    /// anomaly model; `None` (the classifier's class stays) when no anomaly
    /// model runs or it fails on this crop, which is logged: the class is a
    /// label, the decision is already made.
    pub fn anomaly_class(&mut self, frame: &Frame, quad: &Quad) -> Option<&'static str> {
        let model = self.anomaly.as_mut()?;
        model
            .name(frame, quad)
            .map_err(|e| {
                log::warn!(
                    "{}: {e:#}; the module keeps the classifier's anomaly class",
                    model.label()
                )
            })
            .ok()
    }

    /// Finds the modules in `frame` (at the input size `[model]` gives its
    /// size) and judges each one.
    pub fn infer(&mut self, frame: &Frame) -> Result<Vec<ModuleDetection>> {
        let input = self.config.input_size_for(frame.width(), frame.height());
        let candidates = self.detector.detect_at(frame, input)?;
        candidates
            .into_iter()
            .map(|c| {
                let defect = self.classifier.assess(frame, &c.quad)?;
                Ok(ModuleDetection {
                    quad: c.quad,
                    bbox: c.bbox,
                    score: c.score,
                    defect,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_input_scale_upsamples_small_frames_only() {
        let c = ModelConfig::default();
        assert_eq!(c.input_size_for(640, 512), (640, 512));
        assert_eq!(c.input_size_for(1280, 1024), (640, 512));
        assert_eq!(c.input_size_for(256, 192), (512, 384));
        assert_eq!(c.input_size_for(256, 205), (512, 416));
        assert_eq!(c.input_size_for(160, 120), (640, 480));
        assert_eq!(c.input_size_for(80, 60), (640, 480));
        let once = ModelConfig {
            input_scale: InputScale::Factor(1.0),
            ..ModelConfig::default()
        };
        assert_eq!(once.input_size_for(160, 120), (160, 128));
        let bad = ModelConfig {
            input_scale: InputScale::Factor(20.0),
            ..ModelConfig::default()
        };
        assert!(bad
            .validate()
            .unwrap_err()
            .to_string()
            .contains("input_scale"));
        for (toml, scale) in [
            ("\"auto\"", InputScale::Auto),
            ("2", InputScale::Factor(2.0)),
        ] {
            let c: ModelConfig = toml::from_str(&format!("input_scale = {toml}")).unwrap();
            assert_eq!(c.input_scale, scale);
        }
        assert!(toml::from_str::<ModelConfig>("input_scale = \"big\"").is_err());
    }
}
