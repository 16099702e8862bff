//! Frame in, analysed modules out: the one step that `pvtherm detect` and the
//! daemon share (model stack, then temperatures, severity and tracking).

use std::time::Instant;

use anyhow::Result;

use crate::analysis::{Analyser, AnalysisConfig, FrameAnalysis, FusionRule};
use crate::frame::Frame;
use crate::messages::ModelInfo;
use crate::model::trial::{self, PrecisionTrial};
use crate::model::{ModelConfig, ModelStack};
use crate::position::Position;

/// The models and the analysis state, loaded once.
pub struct Inspector {
    stack: ModelStack,
    analyser: Analyser,
    model_info: ModelInfo,
}

/// What inspecting one frame gives.
pub struct Inspection {
    pub analysis: FrameAnalysis,
    /// Inference time in milliseconds: the models (detector, classifier,
    /// and the anomaly model on flagged modules) and the analysis.
    pub latency_ms: f32,
}

impl Inspector {
    /// Loads the models and sets up the analysis. `precision = "auto"` loads
    /// f32 here (see [`crate::model::PrecisionChoice::Auto`]); long-running
    /// callers use `Inspector::load_fastest`.
    pub fn new(model: &ModelConfig, analysis: AnalysisConfig) -> Result<Self> {
        Self::with_stack(ModelStack::load(model)?, model, analysis)
    }

    /// As [`Inspector::new`], but `precision = "auto"` times both built-in
    /// pairs on the built-in sample frame and keeps the faster one (bounded by
    /// [`trial::TRIAL_BUDGET`]); the trial says what it measured.
    pub(crate) fn load_fastest(
        model: &ModelConfig,
        analysis: AnalysisConfig,
    ) -> Result<(Self, Option<PrecisionTrial>)> {
        let sample = crate::imageio::sample_frame()?;
        let (stack, trial) = trial::load_fastest(model, &sample, trial::TRIAL_BUDGET)?;
        Ok((Self::with_stack(stack, model, analysis)?, trial))
    }

    /// The inspector around a loaded stack.
    fn with_stack(
        stack: ModelStack,
        model: &ModelConfig,
        analysis: AnalysisConfig,
    ) -> Result<Self> {
        let fusion = FusionRule::for_classifier(&stack.classifier, model)?;
        let (name, version) = stack.detector.name_version();
        let model_info = ModelInfo {
            name,
            version,
            detector: stack.detector.label().to_string(),
            classifier: stack.classifier.label().to_string(),
            anomaly: stack.anomaly_label().map(str::to_string),
        };
        Ok(Self {
            stack,
            analyser: Analyser::new(analysis)?.with_fusion(fusion),
            model_info,
        })
    }

    /// Which models run.
    pub fn model_info(&self) -> &ModelInfo {
        &self.model_info
    }

    /// Runs the models on `frame` and analyses what they found; `position`
    /// is where the camera was, when a position source knows it.
    pub fn inspect(&mut self, frame: &Frame, position: Option<&Position>) -> Result<Inspection> {
        let start = Instant::now();
        let modules = self.stack.infer(frame)?;
        let stack = &mut self.stack;
        let analysis = self
            .analyser
            .analyse_naming(frame, modules, position, &mut |f, q| {
                stack.anomaly_class(f, q)
            });
        let latency_ms = start.elapsed().as_secs_f32() * 1e3;
        Ok(Inspection {
            analysis,
            latency_ms,
        })
    }

    /// Closes every open defect track (end of a survey, shutdown).
    pub(crate) fn finish(&mut self) -> Vec<crate::analysis::tracking::DefectEvent> {
        self.analyser.finish()
    }
}
