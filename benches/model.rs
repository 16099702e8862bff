//! Model latency in tract, int8 against f32, on a real 640x512 survey frame,
//! and the pre/post-processing around it. Run: `cargo bench --bench model`.
//! Single-threaded: tract runs the plan on the calling thread.

use std::path::Path;

use criterion::{criterion_group, criterion_main, Criterion};
use pvtherm::model::{detector, preprocess, Classifier, Detector, ModelConfig, Precision};

fn frame() -> pvtherm::frame::Frame {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pv/images/001R.jpg");
    pvtherm::imageio::load_frame(&path, 0).expect("fixture")
}

fn bench_models(c: &mut Criterion) {
    let frame = frame();
    let mut group = c.benchmark_group("model");
    group.sample_size(20);
    for precision in [Precision::F32, Precision::Int8] {
        let cfg = ModelConfig {
            precision,
            ..Default::default()
        };
        let mut det = Detector::load(&cfg.detector_source(), 640, 512, None).unwrap();
        let name = format!("{precision:?}").to_lowercase();
        group.bench_function(format!("detector_640x512_{name}"), |b| {
            b.iter(|| det.detect(&frame).unwrap())
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
    let mut det = Detector::load(&cfg.detector_source(), 640, 512, None).unwrap();
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

criterion_group!(benches, bench_models, bench_processing);
criterion_main!(benches);
