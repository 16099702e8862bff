//! Model latency in tract, int8 against f32, on a real 640x512 survey frame,
//! the pre/post-processing around it, and how the cost grows with the camera
//! size and the number of modules. Run: `cargo bench --bench model`.
//! Single-threaded: tract runs the plan on the calling thread.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use pvtherm::analysis::{Analyser, AnalysisConfig};
use pvtherm::inspect::Inspection;
use pvtherm::messages::MessageBuilder;
use pvtherm::messages::ModelInfo;
use pvtherm::messages::OutputConfig;
use pvtherm::model::{detector, preprocess, Classifier, Detector, ModelConfig, Precision};
use pvtherm::publish::Identity;
use pvtherm::render::{RenderOptions, Renderer};

fn frame() -> pvtherm::frame::Frame {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pv/images/001R.jpg");
    pvtherm::imageio::load_frame(&path, 0).expect("fixture")
}

fn bench_models(c: &mut Criterion) {
    let frame = frame();
    let mut group = c.benchmark_group("model");
    group.sample_size(20);
    for precision in [Precision::F32, Precision::Int8] {
        let cfg = ModelConfig::default().with_precision(precision);
        let mut det = Detector::load(&cfg.detector_source(), (640, 512), None, 1).unwrap();
        let name = precision.name();
        group.bench_function(format!("detector_640x512_{name}"), |b| {
            b.iter(|| det.detect(&frame).unwrap())
        });
        // All threads: tract's own pool for the detector's matrix products.
        let mut det2 = Detector::load(&cfg.detector_source(), (640, 512), None, 2).unwrap();
        group.bench_function(format!("detector_640x512_{name}_2_threads"), |b| {
            b.iter(|| det2.detect(&frame).unwrap())
        });
        let modules = det.detect(&frame).unwrap();
        let mut cls = Classifier::load(&cfg.classifier_source(), None).unwrap();
        group.bench_function(format!("classifier_per_module_{name}"), |b| {
            b.iter(|| cls.assess(&frame, &modules[0].quad).unwrap())
        });
        let mut stack = pvtherm::model::ModelStack::load(&cfg).unwrap();
        group.bench_function(
            format!("stack_frame_{name}_{}_modules", modules.len()),
            |b| b.iter(|| stack.infer(&frame).unwrap()),
        );
    }
    group.finish();
}

fn bench_processing(c: &mut Criterion) {
    let frame = frame();
    let mut group = c.benchmark_group("processing");
    let (mut hist, mut out, mut resized) = (Vec::new(), Vec::new(), Vec::new());
    group.bench_function("normalise_640x512_u16", |b| {
        b.iter(|| preprocess::normalise_frame(&frame, &mut hist, &mut out))
    });
    group.bench_function("resize_640x512_to_320x256", |b| {
        b.iter(|| preprocess::resize_bilinear(&out, 640, 512, 320, 256, &mut resized))
    });
    let cfg = ModelConfig::default();
    let mut det = Detector::load(&cfg.detector_source(), (640, 512), None, 1).unwrap();
    let modules = det.detect(&frame).unwrap();
    let (mut scratch, mut crop) = (Vec::new(), Vec::new());
    group.bench_function("module_crop_40x24", |b| {
        b.iter(|| preprocess::module_crop(&frame, &modules[0].quad, &mut scratch, &mut crop))
    });
    group.bench_function("nms_100_candidates", |b| {
        let many: Vec<_> = modules.iter().cycle().take(100).copied().collect();
        b.iter(|| detector::non_max_suppression(many.clone(), 0.5))
    });
    group.bench_function("rjpeg_decode_640x512", |b| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pv/images/001R.jpg");
        b.iter(|| pvtherm::imageio::load_frame(&path, 0).unwrap())
    });
    group.finish();
}

/// `frame` resampled (nearest neighbour) to `w` x `h`: a stand-in for a camera of
/// that size showing the same scene.
fn resampled(frame: &pvtherm::frame::Frame, w: u32, h: u32) -> pvtherm::frame::Frame {
    let mut pixels = Vec::with_capacity((w * h) as usize);
    for y in 0..h {
        for x in 0..w {
            let (sx, sy) = (x * frame.width() / w, y * frame.height() / h);
            pixels.push(frame.pixels().get((sy * frame.width() + sx) as usize));
        }
    }
    pvtherm::frame::Frame::new(
        w,
        h,
        pvtherm::frame::Pixels::Gray16(pixels),
        frame.radiometry.clone(),
        frame.sequence,
        frame.captured_at,
        frame.origin.clone(),
    )
    .unwrap()
}

/// How the cost grows with the work: camera resolution (Lepton, TC001, survey)
/// and modules per frame.
fn bench_scaling(c: &mut Criterion) {
    let frame = frame();
    let mut group = c.benchmark_group("scaling");
    group.sample_size(20);
    let cfg = ModelConfig::default();
    // The model input is the camera size rounded up to a multiple of 16.
    for (name, w, h) in [
        ("lepton_160x120", 160, 120),
        ("tc001_256x192", 256, 192),
        ("survey_640x512", 640, 512),
    ] {
        let small = resampled(&frame, w, h);
        let input = (
            w.next_multiple_of(16) as usize,
            h.next_multiple_of(16) as usize,
        );
        let mut det = Detector::load(&cfg.detector_source(), input, None, 1).unwrap();
        group.bench_function(format!("detector_f32_{name}"), |b| {
            b.iter(|| det.detect(&small).unwrap())
        });
    }
    let mut stack = pvtherm::model::ModelStack::load(&cfg).unwrap();
    let found = stack.infer(&frame).unwrap();
    for n in [0usize, 10, 30, 100] {
        let modules: Vec<_> = found.iter().cycle().take(n).cloned().collect();
        let mut analyser = Analyser::new(AnalysisConfig::default()).unwrap();
        group.bench_function(format!("analysis_{n}_modules"), |b| {
            b.iter(|| analyser.analyse(&frame, modules.clone(), None))
        });
        let mut builder = MessageBuilder::new(
            Identity::new("pvtherm", "bench").unwrap(),
            OutputConfig::default(),
            ModelInfo {
                name: "pvtherm-detector".into(),
                version: "bench".into(),
                detector: "built-in".into(),
                classifier: "built-in".into(),
                anomaly: Some("built-in".into()),
            },
            Renderer::new(RenderOptions::default()),
        );
        let inspection = Inspection {
            analysis: analyser.analyse(&frame, modules.clone(), None),
            latency_ms: 0.0,
        };
        group.bench_function(format!("messages_{n}_modules"), |b| {
            b.iter(|| builder.frame_messages(&frame, &inspection.analysis, inspection.latency_ms))
        });
    }
    group.finish();
}

/// Rendering and serialisation on their own: the overview JPEG and the
/// detections JSON of a real frame.
fn bench_output(c: &mut Criterion) {
    let frame = frame();
    let mut group = c.benchmark_group("output");
    let mut stack = pvtherm::model::ModelStack::load(&ModelConfig::default()).unwrap();
    let modules = stack.infer(&frame).unwrap();
    let analysis = Analyser::new(AnalysisConfig::default())
        .unwrap()
        .analyse(&frame, modules, None);
    let mut renderer = Renderer::new(RenderOptions::default());
    let overview = renderer.overview(&frame, &analysis);
    group.bench_function("render_overview_640x512", |b| {
        b.iter(|| renderer.overview(&frame, &analysis))
    });
    group.bench_function("jpeg_encode_640x512_q80", |b| {
        b.iter(|| pvtherm::render::encode_jpeg(&overview, 80).unwrap())
    });
    group.bench_function(
        format!("json_analysis_{}_modules", analysis.modules.len()),
        |b| b.iter(|| serde_json::to_vec(&analysis.modules).unwrap()),
    );
    group.finish();
}

criterion_group!(
    benches,
    bench_models,
    bench_processing,
    bench_scaling,
    bench_output
);
criterion_main!(benches);
