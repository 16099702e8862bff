//! `[model] precision = "auto"`: which built-in pair runs faster on this box.
//!
//! Whether int8 beats f32 depends on the CPU, not on the model: tract has
//! fast int8 kernels for VNNI, AMX and the arm64 dot product, slow ones
//! elsewhere (BENCHMARKS.md). So the daemon times both pairs at start-up on a
//! real frame and keeps the faster one, instead of asking the operator to run
//! `pvtherm bench` on every box first.

use std::time::{Duration, Instant};

use anyhow::Result;
use serde::Serialize;

use super::{ModelConfig, ModelStack, Precision, PrecisionChoice};
use crate::frame::Frame;
use crate::median::median;

/// How long the timed runs may go on, once both pairs are loaded and warm:
/// enough for several runs each on a Pi 5, short enough that the first
/// message still comes within 2 s of start-up (BENCHMARKS.md).
pub const TRIAL_BUDGET: Duration = Duration::from_millis(1000);

/// Timed runs per pair at most: the median of 7 alternating runs is stable
/// on a quiet box; more only delays the first frame.
const MAX_RUNS: usize = 7;

/// What `precision = "auto"` measured and chose (logged, and in `stats`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrecisionTrial {
    /// The pair kept: the faster one; f32 on a tie (the accuracy reference).
    pub(crate) chosen: Precision,
    /// Median wall time of the f32 pair (detector + classifier) on the sample frame, ms.
    pub(crate) f32_ms: f32,
    /// The same for the int8 pair, ms.
    pub(crate) int8_ms: f32,
    /// Timed runs per pair, after one warm-up run each.
    pub(crate) runs: u32,
    /// The whole trial, loading both pairs included, ms.
    pub(crate) took_ms: f32,
}

impl std::fmt::Display for PrecisionTrial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "precision auto chose {}: f32 {:.1} ms, int8 {:.1} ms per frame (median of {} runs each; trial {:.0} ms)",
            self.chosen.name(),
            self.f32_ms,
            self.int8_ms,
            self.runs,
            self.took_ms
        )
    }
}

/// Loads the model stack `config` asks for. With `precision = "auto"` and
/// no model file named, loads both built-in pairs, times them alternately on
/// `sample` (one warm-up run each, then up to `MAX_RUNS` each while
/// `budget` lasts, at least one) and keeps the faster; the trial says what
/// it measured. Otherwise loads as [`ModelStack::load`] and there is no
/// trial (a named file or precision leaves nothing to choose).
pub fn load_fastest(
    config: &ModelConfig,
    sample: &Frame,
    budget: Duration,
) -> Result<(ModelStack, Option<PrecisionTrial>)> {
    let nothing_to_choose = config.precision != PrecisionChoice::Auto
        || config.detector.is_some()
        || config.classifier.is_some();
    if nothing_to_choose {
        return Ok((ModelStack::load(config)?, None));
    }
    let start = Instant::now();
    let mut f32_pair = Timed::load(config, Precision::F32)?;
    let mut int8_pair = Timed::load(config, Precision::Int8)?;
    // The first run of a tract plan allocates its scratch space: not timed.
    f32_pair.stack.infer(sample)?;
    int8_pair.stack.infer(sample)?;
    let timed = Instant::now();
    let mut round = 0;
    while round < MAX_RUNS && (round == 0 || timed.elapsed() < budget) {
        // Alternate which pair goes first, so neither always runs on the
        // caches the other left.
        let (first, second) = if round % 2 == 0 {
            (&mut f32_pair, &mut int8_pair)
        } else {
            (&mut int8_pair, &mut f32_pair)
        };
        first.run(sample)?;
        second.run(sample)?;
        round += 1;
    }
    let (f32_ms, int8_ms) = (f32_pair.median_ms(), int8_pair.median_ms());
    let (chosen, stack) = if int8_ms < f32_ms {
        (Precision::Int8, int8_pair.stack)
    } else {
        (Precision::F32, f32_pair.stack)
    };
    let trial = PrecisionTrial {
        chosen,
        f32_ms,
        int8_ms,
        runs: round as u32,
        took_ms: start.elapsed().as_secs_f32() * 1e3,
    };
    Ok((stack, Some(trial)))
}

/// One built-in pair under trial and the times of its timed runs.
struct Timed {
    stack: ModelStack,
    times_ms: Vec<f32>,
}

impl Timed {
    /// Loads the built-in pair `precision` with the rest of `config`.
    fn load(config: &ModelConfig, precision: Precision) -> Result<Self> {
        Ok(Self {
            stack: ModelStack::load(&config.with_precision(precision))?,
            times_ms: Vec::new(),
        })
    }

    /// One timed run of the whole stack on `sample`.
    fn run(&mut self, sample: &Frame) -> Result<()> {
        let t = Instant::now();
        self.stack.infer(sample)?;
        self.times_ms.push(t.elapsed().as_secs_f32() * 1e3);
        Ok(())
    }

    /// Median run time; every pair has at least one run (round 0 always runs).
    fn median_ms(&mut self) -> f32 {
        median(&mut self.times_ms).unwrap_or(f32::INFINITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_keeps_the_pair_it_measured_faster_within_its_budget() {
        let sample = crate::imageio::sample_frame().unwrap();
        let config = ModelConfig::default();
        assert_eq!(config.precision, PrecisionChoice::Auto);
        // A generous budget: every one of the rounds runs.
        let (stack, trial) = load_fastest(&config, &sample, Duration::from_secs(60)).unwrap();
        let trial = trial.expect("auto with built-in models times both pairs");
        assert_eq!(trial.runs, MAX_RUNS as u32, "{trial:?}");
        let faster = if trial.int8_ms < trial.f32_ms {
            Precision::Int8
        } else {
            Precision::F32
        };
        assert_eq!(trial.chosen, faster);
        assert!(
            stack.detector.label().contains(trial.chosen.name()),
            "{} runs, {trial}",
            stack.detector.label()
        );
        // No budget: one round still runs, so there is something to compare.
        let (_, trial) = load_fastest(&config, &sample, Duration::ZERO).unwrap();
        let trial = trial.unwrap();
        assert_eq!(trial.runs, 1, "{trial:?}");
        assert!(
            trial.f32_ms.is_finite() && trial.int8_ms.is_finite(),
            "{trial:?}"
        );

        // A named pair or model file leaves nothing to choose.
        let fixed = ModelConfig::default().with_precision(Precision::Int8);
        let (stack, trial) = load_fastest(&fixed, &sample, Duration::ZERO).unwrap();
        assert!(trial.is_none());
        assert!(stack.detector.label().contains("int8"));
    }
}
