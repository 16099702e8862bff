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
    pub chosen: Precision,
    /// Median wall time of the f32 pair (detector + classifier) on the sample frame, ms.
    pub f32_ms: f32,
    /// The same for the int8 pair, ms.
    pub int8_ms: f32,
    /// Timed runs per pair, after one warm-up run each.
    pub runs: u32,
    /// The whole trial, loading both pairs included, ms.
    pub took_ms: f32,
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
/// `sample` (one warm-up run each, then up to [`MAX_RUNS`] each while
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
    let mut pairs = [Precision::F32, Precision::Int8]
        .into_iter()
        .map(|p| Ok((ModelStack::load(&config.with_precision(p))?, Vec::new())))
        .collect::<Result<Vec<(ModelStack, Vec<f32>)>>>()?;
    // The first run of a tract plan allocates its scratch space: not timed.
    for (stack, _) in pairs.iter_mut() {
        stack.infer(sample)?;
    }
    let timed = Instant::now();
    let mut round = 0;
    while round < MAX_RUNS && (round == 0 || timed.elapsed() < budget) {
        // Alternate which pair goes first, so neither always runs on the
        // caches the other left.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for i in order {
            let (stack, times) = &mut pairs[i];
            let t = Instant::now();
            stack.infer(sample)?;
            times.push(t.elapsed().as_secs_f32() * 1e3);
        }
        round += 1;
    }
    let mut pairs = pairs.into_iter();
    let (Some((f32_stack, mut f32_times)), Some((int8_stack, mut int8_times))) =
        (pairs.next(), pairs.next())
    else {
        unreachable!("two pairs were loaded")
    };
    // Each list holds at least one run (round 0 always runs).
    let f32_ms = median(&mut f32_times).unwrap_or(f32::INFINITY);
    let int8_ms = median(&mut int8_times).unwrap_or(f32::INFINITY);
    let (chosen, stack) = if int8_ms < f32_ms {
        (Precision::Int8, int8_stack)
    } else {
        (Precision::F32, f32_stack)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_keeps_the_pair_it_measured_faster_within_its_budget() {
        let sample = crate::imageio::sample_frame().unwrap();
        let config = ModelConfig::default();
        assert_eq!(config.precision, PrecisionChoice::Auto);
        let budget = Duration::from_millis(300);
        let (stack, trial) = load_fastest(&config, &sample, budget).unwrap();
        let trial = trial.expect("auto with built-in models times both pairs");
        assert!((1..=MAX_RUNS as u32).contains(&trial.runs), "{trial:?}");
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
        // The trial stops starting rounds once the budget is spent: at most
        // one round over it, after loading and the warm-up.
        assert!(trial.took_ms > 0.0 && trial.took_ms.is_finite());

        // A named pair or model file leaves nothing to choose.
        let fixed = ModelConfig::default().with_precision(Precision::Int8);
        let (stack, trial) = load_fastest(&fixed, &sample, budget).unwrap();
        assert!(trial.is_none());
        assert!(stack.detector.label().contains("int8"));
    }
}
