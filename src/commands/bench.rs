//! `pvtherm bench`: how fast the models run on *this* box, in the release
//! binary an operator installed (no Rust toolchain on a Raspberry Pi). It times
//! each stage of one frame on the calling thread, as the daemon's inference
//! thread runs it, and prints median and range over several iterations.
//!
//! Developers have `cargo bench` (criterion) for the same stages; this command
//! is the one that answers "will int8 or f32 be faster here?" in the field.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::ModelArgs;
use crate::analysis::AnalysisConfig;
use crate::inspect::Inspector;
use crate::model::{ModelConfig, ModelStack, Precision};

/// Arguments of `pvtherm bench`.
#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// A thermal image to run on (R-JPEG, PNG, TIFF, .y16, ...), e.g. a frame saved
    /// with `pvtherm capture --save`.
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Time both built-in precisions (int8 and f32) instead of `--precision` alone.
    #[arg(long, conflicts_with_all = ["detector", "classifier"])]
    pub both: bool,
    /// Timed iterations per stage (after two untimed warm-up runs).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..))]
    pub iterations: u32,
    /// Print the results as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// One timed stage: wall-clock milliseconds per call on one thread.
#[derive(Debug, Serialize)]
pub struct StageTiming {
    pub precision: &'static str,
    pub stage: String,
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
    pub iterations: u32,
}

/// Entry point of `pvtherm bench`.
pub fn run(args: BenchArgs) -> Result<()> {
    let frame = crate::imageio::load_frame(&args.image, 0)?;
    let precisions = if args.both {
        vec![Precision::Int8, Precision::F32]
    } else {
        vec![args.model.to_config().precision]
    };
    let mut rows = Vec::new();
    let n = args.iterations;
    rows.push(timing("-", "decode image", n, || {
        crate::imageio::load_frame(&args.image, 0).map(drop)
    })?);
    for precision in precisions {
        let config = ModelConfig {
            precision,
            ..args.model.to_config()
        };
        let name = precision_name(precision);
        let start = Instant::now();
        let mut stack = ModelStack::load(&config)?;
        let load_ms = start.elapsed().as_secs_f64() * 1e3;
        rows.push(StageTiming {
            precision: name,
            stage: "load + optimise both models".into(),
            median_ms: load_ms,
            min_ms: load_ms,
            max_ms: load_ms,
            iterations: 1,
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
        }
        let mut inspector = Inspector::new(&config, AnalysisConfig::default())?;
        rows.push(timing(
            name,
            &format!("whole frame: models + analysis, {} modules", modules.len()),
            n,
            || inspector.inspect(&frame).map(drop),
        )?);
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        print_table(&args, &frame, &rows);
    }
    Ok(())
}

fn precision_name(p: Precision) -> &'static str {
    match p {
        Precision::Int8 => "int8",
        Precision::F32 => "f32",
    }
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
        let start = Instant::now();
        f()?;
        ms.push(start.elapsed().as_secs_f64() * 1e3);
    }
    ms.sort_by(f64::total_cmp);
    Ok(StageTiming {
        precision,
        stage: stage.to_string(),
        median_ms: ms[ms.len() / 2],
        min_ms: ms[0],
        max_ms: ms[ms.len() - 1],
        iterations: n,
    })
}

fn print_table(args: &BenchArgs, frame: &crate::frame::Frame, rows: &[StageTiming]) {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "{} ({}x{}), one thread, {} iterations, load average {}",
        args.image.display(),
        frame.width,
        frame.height,
        args.iterations,
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    println!(
        "{:<9} {:<48} {:>10} {:>10} {:>10}",
        "precision", "stage", "median ms", "min ms", "max ms"
    );
    for r in rows {
        println!(
            "{:<9} {:<48} {:>10.2} {:>10.2} {:>10.2}",
            r.precision, r.stage, r.median_ms, r.min_ms, r.max_ms
        );
    }
}
