//! One module per subcommand of the `pvtherm` binary. `main.rs` only parses
//! the command line and calls `commands::<name>::run`.

pub(crate) mod bench;
pub(crate) mod cameras;
pub(crate) mod capture;
pub(crate) mod detect;
pub(crate) mod eval;
pub(crate) mod run;
pub(crate) mod serve;

use std::path::{Path, PathBuf};

use anyhow::Result;

use pvtherm::model::{ModelConfig, PrecisionChoice};

/// Model choice shared by `detect` and `eval`.
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct ModelArgs {
    /// Detector ONNX file (default: the built-in detector).
    #[arg(long = "model", value_name = "PATH")]
    pub(crate) detector: Option<PathBuf>,
    /// Defect classifier ONNX file (default: the built-in classifier).
    #[arg(long, value_name = "PATH")]
    pub(crate) classifier: Option<PathBuf>,
    /// Anomaly class model ONNX file, which names the class of flagged
    /// modules (default: the built-in one).
    #[arg(long, value_name = "PATH")]
    pub(crate) anomaly: Option<PathBuf>,
    /// Views of each flagged module the anomaly model averages: 1, 2 or 4
    /// (one model run each), 0 = none, the classifier names the class
    /// [default: 2, or the config file's].
    #[arg(long, value_name = "N")]
    pub(crate) anomaly_views: Option<usize>,
    /// Which built-in models to use; `auto` times both pairs in the daemon
    /// and `serve` and is f32 in one-shot commands [default: auto, or the
    /// config file's].
    #[arg(long, value_enum)]
    pub(crate) precision: Option<PrecisionArg>,
    /// Model input size WIDTHxHEIGHT, multiples of 16 [default: 640x512, or
    /// the config file's].
    #[arg(long, value_name = "WxH", value_parser = parse_size)]
    pub(crate) input_size: Option<(usize, usize)>,
    /// Detector input: `auto` (frames under 256 px on the short side
    /// upsampled 2x or 4x, others stretched to the input size) or a factor
    /// on every frame's own size [default: auto, or the config file's].
    #[arg(long, value_name = "auto|F")]
    pub(crate) input_scale: Option<pvtherm::model::InputScale>,
    /// Override the detector's score threshold.
    #[arg(long)]
    pub(crate) score_threshold: Option<f32>,
    /// Override the classifier's defect threshold (a probability).
    #[arg(long)]
    pub(crate) defect_threshold: Option<f32>,
    /// Override the fused rule's threshold on its logit z.
    #[arg(long, value_name = "Z", allow_negative_numbers = true)]
    pub(crate) fusion_threshold: Option<f32>,
    /// Decide defects by the classifier alone, ignoring its fusion rule.
    #[arg(long)]
    pub(crate) no_fusion: bool,
    /// A fusion rule JSON file replacing the classifier's `pvtherm.fusion`.
    #[arg(long, value_name = "FILE")]
    pub(crate) fusion_rule: Option<PathBuf>,
    /// Threads for the detector's matrix products [default: 1, or the config
    /// file's].
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=pvtherm::model::MAX_THREADS as i64))]
    pub(crate) threads: Option<u16>,
}

/// `--precision` values.
#[derive(clap::ValueEnum, Debug, Clone, Copy)]
pub(crate) enum PrecisionArg {
    Auto,
    Int8,
    F32,
}

impl ModelArgs {
    /// The `[model]` section these arguments stand for, over the defaults.
    pub(crate) fn to_config(&self) -> ModelConfig {
        self.over(ModelConfig::default())
    }

    /// `base` (a config file's `[model]`) with each setting given on the
    /// command line replacing the file's.
    pub(crate) fn over(&self, base: ModelConfig) -> ModelConfig {
        let (input_width, input_height) = self
            .input_size
            .unwrap_or((base.input_width, base.input_height));
        ModelConfig {
            precision: match self.precision {
                Some(PrecisionArg::Auto) => PrecisionChoice::Auto,
                Some(PrecisionArg::Int8) => PrecisionChoice::Int8,
                Some(PrecisionArg::F32) => PrecisionChoice::F32,
                None => base.precision,
            },
            detector: self.detector.clone().or(base.detector),
            classifier: self.classifier.clone().or(base.classifier),
            anomaly: self.anomaly.clone().or(base.anomaly),
            anomaly_views: self.anomaly_views.unwrap_or(base.anomaly_views),
            input_width,
            input_height,
            input_scale: self.input_scale.unwrap_or(base.input_scale),
            score_threshold: self.score_threshold.or(base.score_threshold),
            defect_threshold: self.defect_threshold.or(base.defect_threshold),
            fusion: base.fusion && !self.no_fusion,
            fusion_threshold: self.fusion_threshold.or(base.fusion_threshold),
            fusion_rule: self.fusion_rule.clone().or(base.fusion_rule),
            threads: self.threads.map_or(base.threads, usize::from),
        }
    }
}

/// Parses `WIDTHxHEIGHT`.
fn parse_size(s: &str) -> Result<(usize, usize), String> {
    let (w, h) = s
        .split_once(['x', 'X'])
        .ok_or_else(|| format!("{s:?} is not WIDTHxHEIGHT"))?;
    let parse = |v: &str| {
        v.trim()
            .parse::<usize>()
            .map_err(|_| format!("{s:?} is not WIDTHxHEIGHT"))
    };
    Ok((parse(w)?, parse(h)?))
}

/// `pvtherm check-config FILE`: parse and validate, then check what `run`
/// needs before its first frame ([`pvtherm::preflight`]: models, replay
/// frames, TLS files, outbox folder, camera); print a summary, start nothing.
/// Fails listing every problem found.
pub(crate) fn check_config(file: &Path) -> Result<()> {
    let config = pvtherm::config::Config::load(file)?;
    let checked = pvtherm::preflight::preflight(&config);
    for warning in config.warnings.iter().chain(&checked.warnings) {
        println!("{}: warning: {warning}", file.display());
    }
    if !checked.problems.is_empty() {
        anyhow::bail!(
            "{}: {} problem(s) would stop `pvtherm run`:\n  - {}",
            file.display(),
            checked.problems.len(),
            checked.problems.join("\n  - ")
        );
    }
    println!("{}: OK", file.display());
    println!("{}", config.summary());
    Ok(())
}
