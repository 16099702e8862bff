//! `pvtherm detect`: the O&M engineer's one-shot command. For each thermal
//! image: a JSON report (modules, defects, temperatures) and an annotated
//! overview picture; for the whole run, the defects grouped per physical
//! module (tracking across consecutive survey frames) and a contact sheet.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::ModelArgs;
use pvtherm::analysis::AnalysisConfig;
use pvtherm::config::Config;
use pvtherm::imageio::{image_files_in, LoadOptions};
use pvtherm::inspect::Inspector;
use pvtherm::messages::DetectionsMessage;
use pvtherm::model::ModelConfig;
use pvtherm::position::Position;
use pvtherm::render::{self, RenderOptions};
use pvtherm::survey::Survey;

/// Arguments of `pvtherm detect`.
#[derive(clap::Args, Debug)]
pub(crate) struct DetectArgs {
    /// Thermal images (R-JPEG, PNG, TIFF, .y16, ...) or folders of them.
    #[arg(required = true, value_name = "IMAGE")]
    pub(crate) inputs: Vec<PathBuf>,
    #[command(flatten)]
    pub(crate) model: ModelArgs,
    /// Where to write the reports and pictures (created if missing).
    #[arg(long, value_name = "DIR")]
    pub(crate) out: Option<PathBuf>,
    /// Print the whole report as JSON on stdout instead of a summary.
    #[arg(long)]
    pub(crate) json: bool,
    /// Minimum number of consecutive images showing a defect before it counts
    /// as one grouped defect (survey frames overlap) [default: 1, or the
    /// config file's `[analysis.tracking] min_frames`].
    #[arg(long)]
    pub(crate) min_frames: Option<u32>,
    /// Take `[model]`, `[analysis]` and `[render]` from this configuration
    /// file (the daemon's, so a survey is judged as the box judges frames),
    /// `[source] max_pixels` for the decoded-size limit and `[source.replay]
    /// raw_scale` / `raw_offset` for 16-bit TIFFs; the flags above still
    /// override it.
    #[arg(long, value_name = "FILE")]
    pub(crate) config: Option<PathBuf>,
}

/// Entry point of `pvtherm detect`.
pub(crate) fn run(args: DetectArgs) -> Result<()> {
    let files = expand_inputs(&args.inputs)?;
    let mut load_options = LoadOptions::default();
    let (model, mut analysis, render_options) = match &args.config {
        Some(file) => {
            let config = Config::load(file)?;
            for warning in &config.warnings {
                eprintln!("pvtherm: warning: {}: {warning}", file.display());
            }
            load_options = config.source.load_options()?;
            (config.model, config.analysis, config.render)
        }
        // Survey images stand alone unless grouped: one sighting is a defect.
        None => {
            let mut analysis = AnalysisConfig::default();
            analysis.tracking.min_frames = 1;
            (ModelConfig::default(), analysis, RenderOptions::default())
        }
    };
    if let Some(n) = args.min_frames {
        analysis.tracking.min_frames = n.max(1);
    }
    let mut inspector = Inspector::new(&args.model.over(model), analysis)?;
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create output folder {}", dir.display()))?;
    }
    let progress = indicatif::ProgressBar::new(files.len() as u64);
    if files.len() < 3 || args.json {
        progress.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    let mut survey = Survey::new(&mut inspector, render_options);
    let names = output_names(&files);
    for (seq, (file, name)) in files.iter().zip(&names).enumerate() {
        progress.set_message(file.display().to_string());
        match inspect_one(
            &mut survey,
            &load_options,
            file,
            name,
            seq as u64,
            args.out.as_deref(),
        ) {
            Ok(msg) => {
                if !args.json {
                    progress.suspend(|| print_summary(&msg));
                }
            }
            Err(e) => {
                progress.suspend(|| eprintln!("pvtherm: error: {e:#}"));
                survey.failed();
            }
        }
        progress.inc(1);
    }
    progress.finish_and_clear();
    let result = survey.finish();
    let report = result.report;

    if let Some(dir) = &args.out {
        let path = dir.join("report.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        if let Some(sheet) = result.contact_sheet {
            let path = dir.join("defects.jpg");
            std::fs::write(&path, render::encode_jpeg(&sheet, 85)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        let s = &report.summary;
        println!(
            "{} images, {} modules, {} defective sightings, {} distinct defects{}",
            s.images,
            s.modules,
            s.defective_modules,
            s.grouped_defects,
            args.out
                .as_ref()
                .map(|d| format!("; reports in {}", d.display()))
                .unwrap_or_default()
        );
    }
    // Each failed image's error was printed above, once; this line only
    // makes the exit code say that some failed (returning the first error
    // instead would print it a second time).
    if report.summary.failed > 0 {
        bail!(
            "{} of {} images could not be processed (errors above)",
            report.summary.failed,
            files.len()
        );
    }
    Ok(())
}

/// Files named directly, plus the supported images inside named folders.
fn expand_inputs(inputs: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let found = image_files_in(input)?;
            if found.is_empty() {
                bail!("{}: no supported images in this folder", input.display());
            }
            files.extend(found);
        } else {
            files.push(input.clone());
        }
    }
    Ok(files)
}

/// The name each input's outputs get (`<name>.json`, `<name>.annotated.jpg`):
/// the file stem, or, where two inputs share a stem (`a.jpg` and `a.png`),
/// the whole file name, and a `-N` suffix where even those are equal (the
/// same name in two folders), so no report overwrites another.
fn output_names(files: &[PathBuf]) -> Vec<String> {
    let text = |s: Option<&std::ffi::OsStr>| s.unwrap_or_default().to_string_lossy().to_string();
    let stems: Vec<String> = files.iter().map(|f| text(f.file_stem())).collect();
    let mut taken = std::collections::HashSet::new();
    files
        .iter()
        .zip(&stems)
        .map(|(file, stem)| {
            let base = if stems.iter().filter(|s| *s == stem).count() > 1 {
                text(file.file_name())
            } else {
                stem.clone()
            };
            let mut name = base.clone();
            let mut n = 2;
            while !taken.insert(name.clone()) {
                name = format!("{base}-{n}");
                n += 1;
            }
            name
        })
        .collect()
}

/// Inspects one file and writes its report and annotated picture to `out`
/// under `name` (see [`output_names`]).
fn inspect_one(
    survey: &mut Survey<'_>,
    load_options: &LoadOptions,
    file: &Path,
    name: &str,
    sequence: u64,
    out: Option<&Path>,
) -> Result<DetectionsMessage> {
    let frame = pvtherm::imageio::load_frame_with(file, sequence, load_options)?;
    // No live position (the box running `detect` is not where the survey
    // images were taken): the camera position the file records, if any.
    let position = frame.provenance.camera_position.map(|v| Position {
        latitude: v.latitude,
        longitude: v.longitude,
        altitude: v.altitude,
        source: "exif".into(),
        fix_age_s: None,
        fix_time: None,
    });
    let (msg, image) = survey
        .inspect(&frame, position.as_ref(), name.to_string())
        .with_context(|| format!("{}: inference failed", file.display()))?;
    let msg = msg.clone();
    if let Some(dir) = out {
        let json = dir.join(format!("{name}.json"));
        std::fs::write(&json, serde_json::to_vec_pretty(&msg)?)
            .with_context(|| format!("cannot write {}", json.display()))?;
        let picture = dir.join(format!("{name}.annotated.jpg"));
        std::fs::write(&picture, render::encode_jpeg(&image, 90)?)
            .with_context(|| format!("cannot write {}", picture.display()))?;
    }
    Ok(msg)
}

fn print_summary(m: &DetectionsMessage) {
    let defects: Vec<String> = m
        .modules
        .iter()
        .filter(|x| x.defective)
        .map(|x| format!("#{} {} ({:.2})", x.index, x.anomaly_class, x.defect_score))
        .collect();
    println!(
        "{}: {} modules, {} possibly defective{}{} [{:.1} ms]",
        m.frame.origin,
        m.module_count,
        m.defect_count,
        if defects.is_empty() { "" } else { ": " },
        defects.join(", "),
        m.latency_ms
    );
    // Temperatures that are not the camera's own calibration, and frames
    // that failed a plausibility check, say so under their line.
    let p = &m.frame.provenance;
    if let Some(c) = p.calibration.as_ref().filter(|c| !c.calibrated) {
        println!("  temperatures not calibrated ({}): {}", c.kind, c.reason);
    }
    for flag in &p.flags {
        println!("  flagged: {flag}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inputs_sharing_a_stem_get_distinct_output_names() {
        let files: Vec<PathBuf> = ["s/a.jpg", "s/a.png", "s/b.jpg", "t/b.jpg", "s/c.tif"]
            .iter()
            .map(PathBuf::from)
            .collect();
        assert_eq!(
            output_names(&files),
            ["a.jpg", "a.png", "b.jpg", "b.jpg-2", "c"]
        );
    }
}
