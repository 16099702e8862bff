//! Radiometric decoding against an independent computation: the golden file
//! `tests/fixtures/planck_golden.tsv` was produced by
//! `tests/scripts/planck_check.py` (exiftool + Thermimage's raw2temp in Python,
//! with FLIR Tools' single-path atmosphere), so this test checks pvtherm's
//! FLIR parser (raw values) and Planck maths (temperatures within 0.1 K)
//! without needing exiftool. It reads the files with the FLIR parser itself:
//! `load_frame` reads the FLIR Vue Pro frames as relative values (the camera
//! is not radiometric), which is checked at the end.

use std::path::Path;

use pvtherm::flir::{read_file, RadiometricImage};
use pvtherm::imageio::load_frame;
use pvtherm::radiometry::{CelsiusLut, Radiometry};

#[test]
fn temperatures_match_independent_computation() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let golden = std::fs::read_to_string(fixtures.join("planck_golden.tsv")).unwrap();
    let mut checked = 0;
    let mut current: Option<(String, RadiometricImage, Radiometry, CelsiusLut)> = None;
    for line in golden
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
    {
        let cols: Vec<&str> = line.split('\t').collect();
        let [name, x, y, raw, celsius] = cols[..] else {
            panic!("bad golden line {line:?}")
        };
        if current.as_ref().map(|c| c.0.as_str()) != Some(name) {
            let path = if name.ends_with(".fff") {
                fixtures.join("fff").join(name)
            } else {
                fixtures.join("pv/images").join(name)
            };
            let img = read_file(&path).unwrap();
            let radiometry = Radiometry::Planck(img.planck);
            let lut = radiometry.celsius_lut().unwrap();
            current = Some((name.to_string(), img, radiometry, lut));
        }
        let (_, img, radiometry, lut) = current.as_ref().unwrap();
        let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
        let (raw, celsius): (u16, f32) = (raw.parse().unwrap(), celsius.parse().unwrap());
        let got_raw = img.raw[y * img.width as usize + x];
        assert_eq!(got_raw, raw, "{name} ({x},{y}) raw");
        let t_lut = lut.get(got_raw).unwrap();
        let t_one = radiometry.to_celsius(got_raw).unwrap();
        assert!(
            (t_lut - celsius).abs() < 0.1,
            "{name} ({x},{y}): {t_lut} vs {celsius}"
        );
        assert!(
            (t_one - celsius).abs() < 0.1,
            "{name} ({x},{y}): {t_one} vs {celsius}"
        );
        // The inverse lands back on the raw value.
        let back = radiometry.celsius_to_raw(celsius).unwrap();
        assert!(
            (back - raw as f32).abs() < 0.5,
            "{name}: {celsius} C -> raw {back}, expected {raw}"
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} golden values");
}

/// The files as the detector gets them: Planck for the radiometric FLIR
/// cameras, relative values with the reason for the FLIR Vue Pro (not R).
#[test]
fn load_frame_marks_non_radiometric_flir_models() {
    let images = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pv/images");
    let xt2 = load_frame(&images.join("001R.jpg"), 0).unwrap();
    assert!(matches!(xt2.radiometry, Radiometry::Planck(_)));
    let note = xt2.provenance.calibration.as_ref().unwrap();
    assert!(note.calibrated && note.kind == "flir-planck", "{note:?}");
    assert!(
        xt2.provenance.flags.is_empty(),
        "{:?}",
        xt2.provenance.flags
    );
    let vue = load_frame(&images.join("20180630_154039.jpg"), 0).unwrap();
    assert_eq!(vue.radiometry, Radiometry::Relative);
    let note = vue.provenance.calibration.as_ref().unwrap();
    assert!(
        !note.calibrated && note.reason.contains("Vue Pro 640 9mm"),
        "{note:?}"
    );
    assert!(vue.provenance.flags[0].contains("sold without radiometry"));
}
