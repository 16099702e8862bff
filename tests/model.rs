//! The perception stack against real data: Python/Rust pre-processing
//! parity, detection of the annotated modules on real survey frames, and
//! clear errors for bad inputs (through the real binary).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use pvtherm::eval::{read_annotations, Tally};
use pvtherm::frame::{Frame, Pixels};
use pvtherm::geometry::{Point, Quad};
use pvtherm::model::{preprocess, ModelConfig, ModelStack, Precision};
use pvtherm::radiometry::Radiometry;

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

fn read_f32(rel: &str) -> Vec<f32> {
    let bytes = std::fs::read(fixture(rel)).unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn parity_frame() -> Frame {
    let bytes = std::fs::read(fixture("parity/raw.u16")).unwrap();
    let raw: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    Frame::new(
        640,
        512,
        Pixels::Gray16(raw),
        Radiometry::Relative,
        0,
        SystemTime::UNIX_EPOCH,
        "parity/raw.u16".into(),
    )
    .unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn preprocessing_matches_the_python_reference() {
    let frame = parity_frame();
    let mut hist = Vec::new();
    assert_eq!(
        preprocess::integer_limits(frame.pixels(), &mut hist),
        (3476.0, 4768.0)
    );
    let mut normalised = Vec::new();
    preprocess::normalise_frame(&frame, &mut hist, &mut normalised);
    assert_eq!(
        max_abs_diff(&normalised, &read_f32("parity/normalised.f32")),
        0.0,
        "normalisation is exact"
    );

    let mut resized = Vec::new();
    preprocess::resize_bilinear(&normalised, 640, 512, 320, 256, &mut resized);
    assert!(max_abs_diff(&resized, &read_f32("parity/input_256x320.f32")) < 1e-5);

    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(fixture("parity/manifest.json")).unwrap()).unwrap();
    let (mut crop, mut scratch) = (Vec::new(), Vec::new());
    for c in manifest["crops"].as_array().unwrap() {
        let pts: Vec<Point> = c["quad_input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| Point {
                x: p[0].as_f64().unwrap() as f32,
                y: p[1].as_f64().unwrap() as f32,
            })
            .collect();
        let quad = Quad(pts.try_into().unwrap());
        preprocess::module_crop(&frame, &quad, &mut scratch, &mut crop);
        let expected = read_f32(&format!("parity/{}", c["file"].as_str().unwrap()));
        let diff = max_abs_diff(&crop, &expected);
        assert!(diff < 1e-4, "crop {} differs by {diff}", c["name"]);
    }
}

/// Detection on real survey frames (both sub-datasets, one of them from the
/// validation split) finds the annotated modules. The bounds sit a few points
/// under what model v0.2.0 measures on these five frames (recall 0.76,
/// precision 0.89-0.91; the annotations count modules cut by the frame edge
/// too): a regression of the model or of the Rust pipeline fails here.
fn detection_quality(precision: Precision) -> pvtherm::eval::EvalReport {
    let mut stack = ModelStack::load(&ModelConfig::default().with_precision(precision)).unwrap();
    let mut tally = Tally::default();
    for stem in ["001R", "030R", "070R", "20180630_154039", "20180630_154531"] {
        let frame =
            pvtherm::imageio::load_frame(&fixture(&format!("pv/images/{stem}.jpg")), 0).unwrap();
        let truth = read_annotations(&fixture(&format!("pv/annotations/{stem}.json"))).unwrap();
        let pred = stack.infer(&frame).unwrap();
        tally.add(
            &pred,
            &truth,
            frame.width() as f32,
            frame.height() as f32,
            0.0,
        );
    }
    tally.report()
}

#[test]
fn both_model_pairs_find_the_annotated_modules() {
    for precision in [Precision::F32, Precision::Int8] {
        let r = detection_quality(precision);
        assert_eq!(r.images, 5);
        assert!(
            r.module_recall >= 0.7,
            "{precision:?} recall {:.3} ({r:?})",
            r.module_recall
        );
        assert!(
            r.module_precision >= 0.85,
            "{precision:?} precision {:.3} ({r:?})",
            r.module_precision
        );
    }
}

fn pvtherm(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_pvtherm"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    (out.status.code().unwrap_or(-1), stderr)
}

#[test]
fn bad_images_give_clear_errors_naming_the_file() {
    for (file, expect) in [
        ("bad/truncated_001R.jpg", "truncated"),
        ("bad/not_an_image.jpg", "not_an_image.jpg"),
    ] {
        let path = fixture(file);
        let (code, stderr) = pvtherm(&["detect", path.to_str().unwrap()]);
        assert_ne!(code, 0, "{file}: {stderr}");
        assert!(
            stderr.contains(path.file_name().unwrap().to_str().unwrap()),
            "{file}: {stderr}"
        );
        assert!(
            stderr.to_lowercase().contains(expect),
            "{file}: expected {expect:?} in {stderr}"
        );
    }
}

/// Runs the binary, which must succeed, and parses its JSON output.
fn pvtherm_json(args: &[&str]) -> serde_json::Value {
    let out = Command::new(env!("CARGO_BIN_EXE_pvtherm"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_jpeg_without_radiometric_data_still_gets_modules_but_no_temperatures() {
    let path = fixture("bad/no_flir_20180630_154039.jpg");
    let report = pvtherm_json(&["detect", "--json", path.to_str().unwrap()]);
    let image = &report["images"][0];
    assert_eq!(image["frame"]["radiometric"], false);
    assert!(image["module_count"].as_u64().unwrap() > 10, "{image}");
    assert!(image["modules"][0]["temperature"]["unit"] != "celsius");
}

#[test]
fn bad_model_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let corrupt = dir.path().join("corrupt.onnx");
    std::fs::write(&corrupt, b"this is not a protobuf at all \x00\x01\x02").unwrap();
    let image = fixture("pv/images/001R.jpg");
    let (code, stderr) = pvtherm(&[
        "detect",
        "--model",
        corrupt.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        stderr.contains("corrupt.onnx") && stderr.contains("not a valid ONNX model"),
        "{stderr}"
    );

    // The classifier as detector: a real ONNX model with the wrong input shape.
    let wrong = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/pvtherm-classifier-f32.onnx");
    let (code, stderr) = pvtherm(&[
        "detect",
        "--model",
        wrong.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("pvtherm-classifier-f32.onnx"), "{stderr}");
    assert!(stderr.contains("detector model is expected"), "{stderr}");

    // A valid ONNX model with an operator this build does not carry
    // (src/model/onnx_ops.rs): named, with what to do about it.
    let unsupported = fixture("bad/unsupported_op.onnx");
    let (code, stderr) = pvtherm(&[
        "detect",
        "--model",
        unsupported.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("unsupported_op.onnx"), "{stderr}");
    if cfg!(not(feature = "all-onnx-ops")) {
        assert!(
            stderr.contains("Sigmoid") && stderr.contains("--features all-onnx-ops"),
            "{stderr}"
        );
    }

    let missing = dir.path().join("missing.onnx");
    let (code, stderr) = pvtherm(&[
        "detect",
        "--model",
        missing.to_str().unwrap(),
        image.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(stderr.contains("missing.onnx"), "{stderr}");
}

/// `bytes` (an ONNX ModelProto) with one more `metadata_props` entry
/// (field 14, a StringStringEntryProto): appending a field to the top-level
/// message is valid protobuf, and tract reads the last value of a key.
fn with_metadata(bytes: &[u8], key: &str, value: &str) -> Vec<u8> {
    fn varint(mut n: usize, out: &mut Vec<u8>) {
        while n >= 0x80 {
            out.push((n as u8 & 0x7f) | 0x80);
            n >>= 7;
        }
        out.push(n as u8);
    }
    let mut entry = Vec::new();
    for (tag, s) in [(0x0a, key), (0x12, value)] {
        entry.push(tag);
        varint(s.len(), &mut entry);
        entry.extend_from_slice(s.as_bytes());
    }
    let mut out = bytes.to_vec();
    out.push(0x72);
    varint(entry.len(), &mut out);
    out.extend(entry);
    out
}

fn committed_model(name: &str) -> Vec<u8> {
    std::fs::read(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("models")
            .join(name),
    )
    .unwrap()
}

#[test]
fn model_files_with_the_wrong_metadata_or_shape_give_errors_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let image = fixture("pv/images/001R.jpg");
    let classifier = committed_model("pvtherm-classifier-f32.onnx");
    let anomaly = committed_model("pvtherm-anomaly-f32.onnx");
    let cases: [(&str, &str, Vec<u8>, &[&str]); 6] = [
        // The detector named as classifier: its kind says so.
        (
            "--classifier",
            "detector-as-classifier.onnx",
            committed_model("pvtherm-detector-f32.onnx"),
            &["pvtherm.kind = \"detector\"", "classifier model is expected"],
        ),
        // A classifier whose metadata claims it is a detector: its shape does not fit.
        (
            "--model",
            "classifier-claiming-detector.onnx",
            with_metadata(&classifier, "pvtherm.kind", "detector"),
            &["shape"],
        ),
        // The classifier named as anomaly model, and an anomaly model claiming
        // to be a classifier (12 outputs, not 13).
        (
            "--anomaly",
            "classifier-as-anomaly.onnx",
            classifier.clone(),
            &["pvtherm.kind = \"classifier\"", "anomaly model is expected"],
        ),
        (
            "--classifier",
            "anomaly-claiming-classifier.onnx",
            with_metadata(&anomaly, "pvtherm.kind", "classifier"),
            &["output shape [1, 12, 1, 1] is not [1, 13, h, w]"],
        ),
        (
            "--classifier",
            "bad-threshold.onnx",
            with_metadata(&classifier, "pvtherm.defect_threshold", "high"),
            &["defect_threshold=\"high\"", "not a valid value"],
        ),
        (
            "--classifier",
            "bad-fusion.onnx",
            with_metadata(&classifier, "pvtherm.fusion", "{\"version\":1,\"features\":[\"delta\"],\"relative\":{\"weights\":[1,2],\"bias\":0,\"logit_threshold\":0}}"),
            &["pvtherm.fusion", "2 weights for 1 features", "fusion = false"],
        ),
    ];
    for (flag, name, bytes, expect) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let (code, stderr) = pvtherm(&[
            "detect",
            flag,
            path.to_str().unwrap(),
            image.to_str().unwrap(),
        ]);
        assert_ne!(code, 0, "{name}");
        assert!(stderr.contains(name), "{name}: {stderr}");
        for e in expect {
            assert!(stderr.contains(e), "{name}: {e:?} in {stderr}");
        }
    }
}

/// Fixture frames with annotated defective modules in full view: one XT2
/// frame (radiometric) and two Vue Pro frames (relative), 4 defective
/// modules among 157. (030R's defect is a 16 px sliver at the frame edge
/// that the detector does not find.)
const DEFECT_FRAMES: [(&str, usize); 3] =
    [("066R", 1), ("20180630_154039", 2), ("20180630_154531", 1)];

/// Per frame: (annotated defects flagged, healthy annotated modules flagged),
/// from `pvtherm detect --json` matched to the annotations.
fn flagged_by_detect(extra: &[&str]) -> Vec<(usize, usize)> {
    let images: Vec<PathBuf> = DEFECT_FRAMES
        .iter()
        .map(|(stem, _)| fixture(&format!("pv/images/{stem}.jpg")))
        .collect();
    let mut args = vec!["detect", "--json"];
    args.extend_from_slice(extra);
    args.extend(images.iter().map(|p| p.to_str().unwrap()));
    let report = pvtherm_json(&args);
    DEFECT_FRAMES
        .iter()
        .zip(report["images"].as_array().unwrap())
        .map(|((stem, _), image)| {
            let truth = read_annotations(&fixture(&format!("pv/annotations/{stem}.json"))).unwrap();
            let pred: Vec<pvtherm::model::ModuleDetection> = image["modules"]
                .as_array()
                .unwrap()
                .iter()
                .map(|m| serde_json::from_value(m.clone()).unwrap())
                .collect();
            let (w, h) = (
                image["frame"]["width"].as_f64().unwrap() as f32,
                image["frame"]["height"].as_f64().unwrap() as f32,
            );
            let matched = pvtherm::eval::match_image(&pred, &truth, w, h).matched;
            let flagged = |defective: bool| {
                pred.iter()
                    .zip(&matched)
                    .filter(|(p, t)| {
                        p.defect.defective && t.is_some_and(|t| truth[t].defective == defective)
                    })
                    .count()
            };
            (flagged(true), flagged(false))
        })
        .collect()
}

#[test]
fn detect_flags_the_defects_of_both_cameras_and_not_their_healthy_neighbours() {
    let expected: Vec<(usize, usize)> = DEFECT_FRAMES.iter().map(|&(_, n)| (n, 0)).collect();
    // The built-in classifier's own rule (its pvtherm.fusion metadata).
    assert_eq!(flagged_by_detect(&[]), expected, "fused decisions");
}

#[test]
fn the_classifier_alone_flags_the_defects_of_both_cameras() {
    let expected: Vec<(usize, usize)> = DEFECT_FRAMES.iter().map(|&(_, n)| (n, 0)).collect();
    assert_eq!(flagged_by_detect(&["--no-fusion"]), expected);
}

#[test]
fn flagged_modules_are_named_by_the_anomaly_model() {
    let mut stack = ModelStack::load(&ModelConfig::default()).unwrap();
    let mut flagged = 0;
    for (stem, _) in DEFECT_FRAMES {
        let path = fixture(&format!("pv/images/{stem}.jpg"));
        let report = pvtherm_json(&["detect", "--json", "--no-fusion", path.to_str().unwrap()]);
        let frame = pvtherm::imageio::load_frame(&path, 0).unwrap();
        for m in report["images"][0]["modules"].as_array().unwrap() {
            let module: pvtherm::model::ModuleDetection =
                serde_json::from_value(m.clone()).unwrap();
            let class = m["anomaly_class"].as_str().unwrap();
            if module.defect.defective {
                flagged += 1;
                assert_eq!(
                    Some(class),
                    stack.anomaly_class(&frame, &module.quad),
                    "{stem}"
                );
                assert_ne!(class, "No-Anomaly", "{stem}");
            }
        }
    }
    assert!(
        flagged >= 4,
        "{flagged} flagged modules in the defect fixtures"
    );
}

#[test]
fn without_the_anomaly_model_the_same_modules_are_flagged_and_the_classifier_names_them() {
    // Classifier-only decisions, so that `assess` below gives the class too.
    let path = fixture(&format!("pv/images/{}.jpg", DEFECT_FRAMES[1].0));
    let path = path.to_str().unwrap();
    let named = pvtherm_json(&["detect", "--json", "--no-fusion", path]);
    let plain = pvtherm_json(&[
        "detect",
        "--json",
        "--no-fusion",
        "--anomaly-views",
        "0",
        path,
    ]);
    assert!(named["model"]["anomaly"].is_string(), "{}", named["model"]);
    assert!(plain["model"]["anomaly"].is_null(), "{}", plain["model"]);
    let mut stack = ModelStack::load(&ModelConfig::default()).unwrap();
    let frame = pvtherm::imageio::load_frame(std::path::Path::new(path), 0).unwrap();
    let modules = |r: &serde_json::Value| r["images"][0]["modules"].as_array().unwrap().clone();
    let (named, plain) = (modules(&named), modules(&plain));
    assert_eq!(named.len(), plain.len());
    let mut flagged = 0;
    for (a, b) in named.iter().zip(&plain) {
        assert_eq!(a["defective"], b["defective"]);
        let module: pvtherm::model::ModuleDetection = serde_json::from_value(b.clone()).unwrap();
        let by_classifier = stack.classifier.assess(&frame, &module.quad).unwrap();
        let by_classifier = serde_json::to_value(by_classifier).unwrap();
        assert_eq!(b["anomaly_class"], by_classifier["anomaly_class"]);
        flagged += usize::from(module.defect.defective);
    }
    assert!(flagged >= 1, "{path}: nothing flagged");
}

#[test]
fn an_anomaly_view_count_the_model_has_no_views_for_is_refused() {
    let out = Command::new(env!("CARGO_BIN_EXE_pvtherm"))
        .args(["detect", "--anomaly-views", "3"])
        .arg(fixture("pv/images/066R.jpg"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("anomaly_views = 3") && err.contains("1, 2 or 4"),
        "{err}"
    );
}

fn eval_json(extra: &[&str]) -> serde_json::Value {
    let dir = fixture("pv");
    let mut args = vec!["eval", dir.to_str().unwrap(), "--json", "--curve"];
    args.extend_from_slice(extra);
    pvtherm_json(&args)
}

/// Thresholds descend, counts and recall only grow, and the row of the
/// threshold in use holds the counts `eval` reports.
fn assert_curve_ends_at_the_report(r: &serde_json::Value) {
    let curve = r["curve"].as_array().unwrap();
    let n = |p: &serde_json::Value, k: &str| p[k].as_f64().unwrap();
    for pair in curve.windows(2) {
        assert!(n(&pair[0], "threshold") > n(&pair[1], "threshold"), "{r}");
        for k in ["tp", "fp", "recall"] {
            assert!(n(&pair[0], k) <= n(&pair[1], k), "{k} grows: {r}");
        }
        assert!(n(&pair[0], "fn") >= n(&pair[1], "fn"), "{r}");
    }
    let at: Vec<&serde_json::Value> = curve.iter().filter(|p| p["operating"] == true).collect();
    assert_eq!(at.len(), 1, "{r}");
    assert_eq!(n(at[0], "tp"), n(r, "defects_predicted") - n(at[0], "fp"));
    assert_eq!(n(at[0], "tp") + n(at[0], "fp"), n(r, "defects_predicted"));
    assert_eq!(n(at[0], "tp") + n(at[0], "fn"), n(r, "defects_true"));
    assert_eq!(n(at[0], "recall"), n(r, "defect_recall"));
    assert_eq!(n(at[0], "precision"), n(r, "defect_precision"));
}

#[test]
fn the_defect_curve_is_monotone_and_holds_the_counts_eval_reports() {
    let r = eval_json(&["--no-fusion"]);
    assert_eq!(r["images"], 6);
    assert_eq!(r["defects_true"], 5);
    assert_curve_ends_at_the_report(&r);
    // A lower threshold moves the operating point down the same curve.
    assert!(r["curve"].as_array().unwrap().len() >= 3, "{r}");
    let lower = eval_json(&["--no-fusion", "--defect-threshold", "0.5"]);
    assert_curve_ends_at_the_report(&lower);
    assert!(lower["defects_predicted"].as_u64() >= r["defects_predicted"].as_u64());

    // Fused decisions on one camera (the rule's radiometric branch).
    let list = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(list.path(), "001R\n030R\n066R\n070R\n").unwrap();
    let rule = fixture("fusion/cv-0.3.1.json");
    let fused = eval_json(&[
        "--only",
        list.path().to_str().unwrap(),
        "--fusion-rule",
        rule.to_str().unwrap(),
    ]);
    assert_eq!(fused["defects_true"], 2);
    assert!(fused["curve"].as_array().unwrap().len() >= 2, "{fused}");
    assert_curve_ends_at_the_report(&fused);
    // The shipped rule, whose z also carries the classifier's verdict and
    // the hot-spot floor: still one value against one threshold.
    let shipped = eval_json(&["--only", list.path().to_str().unwrap()]);
    assert_eq!(shipped["defects_true"], 2);
    assert_curve_ends_at_the_report(&shipped);
}
