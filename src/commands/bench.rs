//! `pvtherm bench`: how fast the models run on *this* box, in the release
//! binary an operator installed (no Rust toolchain on a Raspberry Pi). It times
//! each stage of one frame on the calling thread (plus `--threads` for the
//! detector), as the daemon's inference thread runs it, and prints median and
//! range over several iterations.
//!
//! Developers have `cargo bench` (criterion) for the same stages; this command
//! is the one that answers "will int8 or f32 be faster here?" and "is this SD
//! card fast enough for `synchronous = "full"`?" in the field.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::ModelArgs;
use pvtherm::analysis::AnalysisConfig;
use pvtherm::inspect::Inspector;
use pvtherm::messages::MessageBuilder;
use pvtherm::messages::OutputConfig;
use pvtherm::model::{trial, ModelConfig, ModelStack, Precision, PrecisionChoice};
use pvtherm::publish::{Identity, Outbox, OutboxConfig, Outgoing, Synchronous};
use pvtherm::render::{RenderOptions, Renderer};

/// Arguments of `pvtherm bench`.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// A thermal image to run on (R-JPEG, PNG, TIFF, .y16, ...), e.g. a frame saved
    /// with `pvtherm capture --save`.
    #[arg(value_name = "IMAGE")]
    pub(crate) image: PathBuf,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Time both built-in precisions (int8 and f32) instead of `--precision` alone.
    #[arg(long, conflicts_with_all = ["detector", "classifier"])]
    pub(crate) both: bool,
    /// Timed iterations per stage (after two untimed warm-up runs).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) iterations: u32,
    /// Where to time outbox commits: the outbox's own disk tells the truth
    /// (e.g. /var/lib/pvtherm); a tmpfs makes fsync free. Default: the temp dir.
    #[arg(long, value_name = "DIR")]
    pub(crate) outbox_dir: Option<PathBuf>,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// One timed stage: wall-clock milliseconds per call on one thread.
#[derive(Debug, Serialize)]
pub(crate) struct StageTiming {
    pub(crate) precision: &'static str,
    pub(crate) stage: String,
    pub(crate) median_ms: f64,
    pub(crate) min_ms: f64,
    pub(crate) max_ms: f64,
    pub(crate) iterations: u32,
    /// Median as a share of the whole-frame time (models + analysis) of the same
    /// precision; for the rows shared by all precisions, of the fastest one.
    pub(crate) percent_of_frame: Option<f64>,
}

/// Entry point of `pvtherm bench`.
pub(crate) fn run(args: BenchArgs) -> Result<()> {
    let frame = pvtherm::imageio::load_frame(&args.image, 0)?;
    let precisions = if args.both {
        vec![Precision::Int8, Precision::F32]
    } else {
        vec![args.model.to_config().pair()]
    };
    let mut rows = Vec::new();
    let n = args.iterations;
    // Each precision's whole-frame time (the "% frame" base of its rows; the
    // fastest one for the shared rows), and the last frame's messages for the
    // outbox stages below.
    let mut frame_ms: Vec<(&'static str, f64)> = Vec::new();
    let mut batch: Vec<Outgoing> = Vec::new();
    rows.push(timing("-", "decode image", n, || {
        pvtherm::imageio::load_frame(&args.image, 0).map(drop)
    })?);
    for precision in precisions {
        let config = args.model.to_config().with_precision(precision);
        let name = precision.name();
        let start = Instant::now();
        let mut stack = ModelStack::load(&config)?;
        let load_ms = start.elapsed().as_secs_f64() * 1e3;
        rows.push(StageTiming {
            precision: name,
            stage: "load + optimise the models".into(),
            median_ms: load_ms,
            min_ms: load_ms,
            max_ms: load_ms,
            iterations: 1,
            percent_of_frame: None,
        });
        rows.push(timing(
            name,
            "detector (normalise, run, decode)",
            n,
            || stack.detector.detect(&frame).map(drop),
        )?);
        let modules = stack.detector.detect(&frame)?;
        if let Some(first) = modules.first() {
            rows.push(timing(name, "classifier, one module", n, || {
                stack.classifier.assess(&frame, &first.quad).map(drop)
            })?);
            if config.anomaly_views > 0 {
                rows.push(timing(
                    name,
                    &format!(
                        "anomaly model, one flagged module, {} views",
                        config.anomaly_views
                    ),
                    n,
                    || {
                        stack.anomaly_class(&frame, &first.quad);
                        Ok(())
                    },
                )?);
            }
        }
        rows.push(timing(
            name,
            "models: detector + classifier per module",
            n,
            || stack.infer(&frame).map(drop),
        )?);
        let mut inspector = Inspector::new(&config, AnalysisConfig::default())?;
        let flagged = inspector
            .inspect(&frame, None)?
            .analysis
            .modules
            .iter()
            .filter(|m| m.detection.defect.defective)
            .count();
        let whole = format!(
            "whole frame: models + analysis, {} modules, {flagged} flagged",
            modules.len()
        );
        if config.anomaly_views == 0 {
            let row = timing(name, &whole, n, || {
                inspector.inspect(&frame, None).map(drop)
            })?;
            frame_ms.push((name, row.median_ms));
            rows.push(row);
        } else {
            // The same frame without the anomaly model, interleaved call by
            // call so that both rows see the same machine: what naming the
            // flagged modules adds.
            let plain = ModelConfig {
                anomaly_views: 0,
                ..config.clone()
            };
            let mut without = Inspector::new(&plain, AnalysisConfig::default())?;
            let (with_row, without_row) = timing_interleaved(
                name,
                [
                    &format!("{whole}, {} anomaly views", config.anomaly_views),
                    "  the same without the anomaly model",
                ],
                n,
                || inspector.inspect(&frame, None).map(drop),
                || without.inspect(&frame, None).map(drop),
            )?;
            frame_ms.push((name, with_row.median_ms));
            rows.extend([with_row, without_row]);
        }
        let inspection = inspector.inspect(&frame, None)?;
        let mut builder = MessageBuilder::new(
            Identity::new("pvtherm", "bench")?,
            OutputConfig::default(),
            inspector.model_info().clone(),
            Renderer::new(RenderOptions::default()),
        );
        rows.push(timing(
            name,
            "messages: JSON, thumbnails, snapshot",
            n,
            || {
                batch = builder.frame_messages(&frame, &inspection.analysis, inspection.latency_ms);
                Ok(())
            },
        )?);
    }
    let durable: Vec<Outgoing> = batch.into_iter().filter(|m| m.class.is_durable()).collect();
    let bytes: usize = durable.iter().map(|m| m.payload.len()).sum();
    let dir = args.outbox_dir.clone().unwrap_or_else(std::env::temp_dir);
    for sync in [Synchronous::Full, Synchronous::Normal] {
        let stage = format!(
            "outbox {}: store + delete {} msgs, {} KB",
            format!("{sync:?}").to_lowercase(),
            durable.len(),
            bytes.div_ceil(1024),
        );
        rows.push(time_outbox(&dir, sync, &durable, &stage, n)?);
    }
    let fastest = frame_ms
        .iter()
        .map(|&(_, ms)| ms)
        .fold(f64::INFINITY, f64::min);
    for r in rows.iter_mut().filter(|r| !r.stage.starts_with("load")) {
        let base = frame_ms
            .iter()
            .find(|(p, _)| *p == r.precision)
            .map_or(fastest, |&(_, ms)| ms);
        r.percent_of_frame = Some(100.0 * r.median_ms / base).filter(|p| p.is_finite());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&args, &frame, &rows);
    }
    if args.both {
        // What the daemon's own start-up trial picks (on its built-in sample
        // frame, within its time budget), next to the rows above.
        let auto = ModelConfig {
            precision: PrecisionChoice::Auto,
            ..args.model.to_config()
        };
        let sample = pvtherm::imageio::sample_frame()?;
        match trial::load_fastest(&auto, &sample, trial::TRIAL_BUDGET)?.1 {
            Some(t) => eprintln!("{t}"),
            None => {
                eprintln!("`precision = \"auto\"` has nothing to choose: a model file is named")
            }
        }
    }
    Ok(())
}

/// Times storing one frame's durable messages in a fresh outbox and deleting
/// them again (what the publisher does per frame: commit, then PUBACKs).
fn time_outbox(
    dir: &Path,
    synchronous: Synchronous,
    messages: &[Outgoing],
    stage: &str,
    n: u32,
) -> Result<StageTiming> {
    let path = dir.join(format!("pvtherm-bench-{}.sqlite", std::process::id()));
    let mut outbox = Outbox::open(&OutboxConfig {
        path: path.clone(),
        synchronous,
        ..OutboxConfig::default()
    })
    .with_context(|| format!("cannot time the outbox in {}", dir.display()))?;
    let result = timing("-", stage, n, || {
        for id in outbox.push_all(messages)? {
            outbox.remove(id)?;
        }
        Ok(())
    });
    drop(outbox);
    for suffix in ["", "-wal", "-shm", "-reserve"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
    result
}

/// Runs `f` twice untimed (caches, lazy allocations), then `n` times timed.
fn timing(
    precision: &'static str,
    stage: &str,
    n: u32,
    mut f: impl FnMut() -> Result<()>,
) -> Result<StageTiming> {
    for _ in 0..2 {
        f().with_context(|| format!("{stage} failed"))?;
    }
    let mut ms = Vec::with_capacity(n as usize);
    for _ in 0..n {
        ms.push(time_once(&mut f)?);
    }
    Ok(summarise(precision, stage, ms))
}

/// [`timing`] for two stages at once, alternating call by call: a ratio
/// between them is not moved by the machine getting busier or quieter.
fn timing_interleaved(
    precision: &'static str,
    stages: [&str; 2],
    n: u32,
    mut a: impl FnMut() -> Result<()>,
    mut b: impl FnMut() -> Result<()>,
) -> Result<(StageTiming, StageTiming)> {
    for _ in 0..2 {
        a().with_context(|| format!("{} failed", stages[0]))?;
        b().with_context(|| format!("{} failed", stages[1]))?;
    }
    let (mut ms_a, mut ms_b) = (Vec::new(), Vec::new());
    for _ in 0..n {
        ms_a.push(time_once(&mut a)?);
        ms_b.push(time_once(&mut b)?);
    }
    Ok((
        summarise(precision, stages[0], ms_a),
        summarise(precision, stages[1], ms_b),
    ))
}

/// Milliseconds one call of `f` takes.
fn time_once(f: &mut impl FnMut() -> Result<()>) -> Result<f64> {
    let start = Instant::now();
    f()?;
    Ok(start.elapsed().as_secs_f64() * 1e3)
}

/// Median and range of `ms` (at least one timing) as a table row.
fn summarise(precision: &'static str, stage: &str, mut ms: Vec<f64>) -> StageTiming {
    ms.sort_by(f64::total_cmp);
    StageTiming {
        precision,
        stage: stage.to_string(),
        median_ms: ms[ms.len() / 2],
        min_ms: ms[0],
        max_ms: ms[ms.len() - 1],
        iterations: ms.len() as u32,
        percent_of_frame: None,
    }
}

fn print_table(args: &BenchArgs, frame: &pvtherm::frame::Frame, rows: &[StageTiming]) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{} ({}x{}), detector on {} thread(s), classifier on 1, {} iterations, load average {}",
        args.image.display(),
        frame.width(),
        frame.height(),
        args.model.to_config().threads,
        args.iterations,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<9} {:<72} {:>10} {:>9} {:>9} {:>8}",
        "precision", "stage", "median ms", "min ms", "max ms", "% frame"
    );
    for r in rows {
        let share = r
            .percent_of_frame
            .map(|p| format!("{p:.1}"))
            .unwrap_or_default();
        println!(
            "{:<9} {:<72} {:>10.2} {:>9.2} {:>9.2} {:>8}",
            r.precision, r.stage, r.median_ms, r.min_ms, r.max_ms, share
        );
    }
}
