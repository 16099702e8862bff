//! Radiometric decoding against an independent computation: the golden file
//! `tests/fixtures/planck_golden.tsv` was produced by
//! `tests/scripts/planck_check.py` (exiftool + Thermimage's raw2temp in Python),
//! so this test checks pvtherm's FLIR parser (raw values) and Planck maths
//! (temperatures within 0.1 K) without needing exiftool.

use std::path::Path;

use pvtherm::frame::Pixels;
use pvtherm::imageio::load_frame;
use pvtherm::radiometry::Radiometry;

#[test]
fn temperatures_match_independent_computation() {
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let golden = std::fs::read_to_string(fixtures.join("planck_golden.tsv")).unwrap();
    let mut checked = 0;
    let mut current: Option<(
        String,
        pvtherm::frame::Frame,
        pvtherm::radiometry::CelsiusLut,
    )> = None;
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
            let frame = load_frame(&path, 0).unwrap();
            assert!(matches!(frame.radiometry, Radiometry::Planck(_)), "{name}");
            let lut = frame.radiometry.celsius_lut().unwrap();
            current = Some((name.to_string(), frame, lut));
        }
        let (_, frame, lut) = current.as_ref().unwrap();
        let (x, y): (usize, usize) = (x.parse().unwrap(), y.parse().unwrap());
        let (raw, celsius): (u16, f32) = (raw.parse().unwrap(), celsius.parse().unwrap());
        let Pixels::Gray16(px) = frame.pixels() else {
            panic!("{name}: not 16-bit")
        };
        let got_raw = px[y * frame.width() as usize + x];
        assert_eq!(got_raw, raw, "{name} ({x},{y}) raw");
        let t_lut = lut.get(got_raw).unwrap();
        let t_one = frame.radiometry.to_celsius(got_raw).unwrap();
        assert!(
            (t_lut - celsius).abs() < 0.1,
            "{name} ({x},{y}): {t_lut} vs {celsius}"
        );
        assert!(
            (t_one - celsius).abs() < 0.1,
            "{name} ({x},{y}): {t_one} vs {celsius}"
        );
        // The inverse lands back on the raw value.
        let back = frame.radiometry.celsius_to_raw(celsius).unwrap();
        assert!(
            (back - raw as f32).abs() < 0.5,
            "{name}: {celsius} C -> raw {back}, expected {raw}"
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} golden values");
}
