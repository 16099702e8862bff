//! `pvtherm eval`: run the models over annotated images (the data set's
//! layout: `DIR/images/*.jpg` + `DIR/annotations/<stem>.json`) and report
//! module AP50 and defect precision/recall.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::ModelArgs;
use pvtherm::analysis::{Analyser, AnalysisConfig, FusionRule};
use pvtherm::eval::{downscaled, read_annotations, CurvePoint, EvalReport, OperatingPoint, Tally};
use pvtherm::imageio::image_files_in;
use pvtherm::model::{Decision, ModuleDetection};

/// Lowest detector score decoded for the AP curve.
const AP_FLOOR: f32 = 0.05;

/// Arguments of `pvtherm eval`.
#[derive(clap::Args, Debug)]
pub(crate) struct EvalArgs {
    /// Folders holding `images/` and `annotations/` (the data set's layout).
    #[arg(required = true, value_name = "DIR")]
    pub(crate) dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Only images whose file stem is listed in this file (one per line),
    /// e.g. the validation split.
    #[arg(long, value_name = "FILE")]
    pub(crate) only: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also print the defect precision/recall curve per sighting
    /// (threshold, TP, FP, FN, precision, recall), marking the row of the
    /// threshold in use, whose counts are the ones reported.
    #[arg(long)]
    pub(crate) curve: bool,
    /// Shrink every image's raw plane by this factor (bilinear) before
    /// inference, annotations alike: how the models do on a lower-resolution
    /// camera, e.g. 0.4 (TC001-like) or 0.25 (Lepton-like).
    #[arg(long, value_name = "F")]
    pub(crate) downscale: Option<f32>,
}

/// `--json` output: the report, and the curve when asked for.
#[derive(serde::Serialize)]
struct JsonOutput<'a> {
    #[serde(flatten)]
    report: &'a EvalReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    curve: Option<&'a [CurvePoint]>,
    /// Images that could not be scored, each with the reason.
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    skipped: &'a [Skipped],
}

/// An image `eval` could not score (unreadable file or annotations, failed
/// inference): reported, and the run goes on with the others.
#[derive(serde::Serialize)]
struct Skipped {
    file: String,
    error: String,
}

/// Entry point of `pvtherm eval`.
pub(crate) fn run(args: EvalArgs) -> Result<()> {
    let only = match &args.only {
        Some(f) => Some(read_stem_list(f)?),
        None => None,
    };
    // Decode down to a low score so AP sees the whole precision/recall curve;
    // precision and recall are reported at the operating threshold.
    let requested = args.model.score_threshold;
    let mut config = args.model.to_config();
    config.score_threshold = Some(requested.map_or(AP_FLOOR, |t| t.min(AP_FLOOR)));
    let mut stack = pvtherm::model::ModelStack::load(&config)?;
    let operating = match requested {
        Some(t) => t,
        None => stack.detector.tuned_score_threshold()?,
    };
    // The daemon's defect decision: the analysis (temperatures, fusion)
    // over the modules it would report.
    let fusion = FusionRule::for_classifier(&stack.classifier, &config)?;
    let mut analyser = Analyser::new(AnalysisConfig::default())?.with_fusion(fusion.clone());
    let mut tally = Tally::default();
    let mut skipped = Vec::new();
    for dir in &args.dirs {
        let images = image_files_in(&dir.join("images"))?;
        if images.is_empty() {
            bail!(
                "{}: no images found in {}/images",
                dir.display(),
                dir.display()
            );
        }
        for image in images {
            let stem = image
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy()
                .to_string();
            if only.as_ref().is_some_and(|o| !o.contains(&stem)) {
                continue;
            }
            let mut score = || -> Result<()> {
                let mut truth =
                    read_annotations(&dir.join("annotations").join(format!("{stem}.json")))?;
                let mut frame = pvtherm::imageio::load_frame(&image, tally.images as u64)?;
                if let Some(factor) = args.downscale {
                    let (small, (sx, sy)) = downscaled(&frame, factor)?;
                    frame = small;
                    truth
                        .iter_mut()
                        .for_each(|a| a.quad = a.quad.scaled(sx, sy));
                }
                let start = Instant::now();
                let pred = stack
                    .infer(&frame)
                    .with_context(|| format!("inference failed on {}", image.display()))?;
                let latency = start.elapsed().as_secs_f64() * 1e3;
                let (reported, below): (Vec<ModuleDetection>, Vec<ModuleDetection>) =
                    pred.into_iter().partition(|m| m.score >= operating);
                let mut pred: Vec<ModuleDetection> = analyser
                    .analyse(&frame, reported, None)
                    .modules
                    .into_iter()
                    .map(|m| m.detection)
                    .collect();
                pred.extend(below);
                let radiometric = frame.radiometry.is_absolute();
                tally.note_operating_point(
                    match fusion.as_ref().and_then(|r| r.logit_threshold(radiometric)) {
                        Some(threshold) => OperatingPoint {
                            decision: Decision::Fused,
                            threshold,
                        },
                        None => OperatingPoint {
                            decision: Decision::Classifier,
                            threshold: stack.classifier.threshold(),
                        },
                    },
                );
                let (w, h) = (frame.width() as f32, frame.height() as f32);
                tally.add_at(&pred, &truth, w, h, latency, operating);
                Ok(())
            };
            if let Err(e) = score() {
                eprintln!("pvtherm: skipped {}: {e:#}", image.display());
                skipped.push(Skipped {
                    file: image.display().to_string(),
                    error: format!("{e:#}"),
                });
            }
        }
    }
    if tally.images == 0 {
        bail!("no image matched (check --only and the folders)");
    }
    let report = tally.report();
    let curve = args.curve.then(|| tally.defect_curve()).transpose()?;
    if args.json {
        let out = JsonOutput {
            report: &report,
            curve: curve.as_deref(),
            skipped: &skipped,
        };
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print_table(&report);
        if let Some(curve) = &curve {
            print_curve(curve, tally.operating_points());
        }
        if !skipped.is_empty() {
            println!(
                "{} image(s) skipped, not counted above (reasons on stderr)",
                skipped.len()
            );
        }
    }
    Ok(())
}

/// The curve as a table, one row per threshold, descending.
fn print_curve(curve: &[CurvePoint], operating: &[OperatingPoint]) {
    let unit = match operating.first().map(|p| p.decision) {
        Some(Decision::Fused) => "fused logit z",
        _ => "defect_score",
    };
    println!();
    println!("defect curve per sighting (threshold on {unit}):");
    println!(
        "{:>10} {:>6} {:>6} {:>6} {:>9} {:>7}",
        "threshold", "TP", "FP", "FN", "precision", "recall"
    );
    for p in curve {
        println!(
            "{:>10.4} {:>6} {:>6} {:>6} {:>9.4} {:>7.4}{}",
            p.threshold,
            p.tp,
            p.fp,
            p.fn_,
            p.precision,
            p.recall,
            if p.operating { "  <- in use" } else { "" }
        );
    }
}

fn read_stem_list(path: &Path) -> Result<HashSet<String>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read list {}", path.display()))?;
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(String::from)
        .collect())
}

fn print_table(r: &EvalReport) {
    println!("images              {:>8}", r.images);
    println!("modules annotated   {:>8}", r.modules_true);
    println!("modules predicted   {:>8}", r.modules_predicted);
    println!("module AP50         {:>8.4}", r.module_ap50);
    println!("module precision    {:>8.4}", r.module_precision);
    println!("module recall       {:>8.4}", r.module_recall);
    println!("defects annotated   {:>8}", r.defects_true);
    println!("defects predicted   {:>8}", r.defects_predicted);
    println!("defect precision    {:>8.4}", r.defect_precision);
    println!("defect recall       {:>8.4}", r.defect_recall);
    println!("defect F1           {:>8.4}", r.defect_f1);
    println!("mean latency (ms)   {:>8.2}", r.mean_latency_ms);
}
