//! `pvtherm eval`: run the models over annotated images (the data set's
//! layout: `DIR/images/*.jpg` + `DIR/annotations/<stem>.json`) and report
//! module AP50 and defect precision/recall.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};

use super::ModelArgs;
use pvtherm::eval::{read_annotations, EvalReport, Tally};
use pvtherm::imageio::image_files_in;

/// Lowest detector score decoded for the AP curve.
const AP_FLOOR: f32 = 0.05;

/// Arguments of `pvtherm eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {
    /// Folders holding `images/` and `annotations/` (the data set's layout).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    #[command(flatten)]
    pub model: ModelArgs,
    /// Only images whose file stem is listed in this file (one per line),
    /// e.g. the validation split.
    #[arg(long, value_name = "FILE")]
    pub only: Option<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Entry point of `pvtherm eval`.
pub fn run(args: EvalArgs) -> Result<()> {
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
    let mut tally = Tally::default();
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
            let truth = read_annotations(&dir.join("annotations").join(format!("{stem}.json")))?;
            let frame = pvtherm::imageio::load_frame(&image, tally.images as u64)?;
            let start = Instant::now();
            let pred = stack
                .infer(&frame)
                .with_context(|| format!("inference failed on {}", image.display()))?;
            let latency = start.elapsed().as_secs_f64() * 1e3;
            let (w, h) = (frame.width() as f32, frame.height() as f32);
            tally.add_at(&pred, &truth, w, h, latency, operating);
        }
    }
    if tally.images == 0 {
        bail!("no image matched (check --only and the folders)");
    }
    let report = tally.report();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(())
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
