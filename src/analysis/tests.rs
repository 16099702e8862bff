//! Tests of the whole analysis on synthetic frame sequences (a drone flying
//! over a block of modules packed edge to edge) and on a real R-JPEG fixture.

use std::collections::HashMap;
use std::time::{Duration, UNIX_EPOCH};

use super::tracking::EventKind;
use super::*;
use crate::frame::Pixels;
use crate::geometry::{Point, Quad};
use crate::model::DefectAssessment;
use crate::position::PositionSource;

/// Lepton TLinear: centi-kelvin.
const LINEAR: Radiometry = Radiometry::Linear {
    scale: 0.01,
    offset: -273.15,
};

fn raw_of(celsius: f32) -> u16 {
    ((celsius + 273.15) * 100.0).round() as u16
}

fn detection(quad: Quad, defective: bool, class: &str) -> ModuleDetection {
    ModuleDetection {
        quad,
        bbox: quad.bbox(),
        score: 0.9,
        defect: DefectAssessment {
            defective,
            defect_score: if defective { 0.9 } else { 0.05 },
            anomaly_class: class.into(),
            ..Default::default()
        },
    }
}

/// A block of `cols` x `rows` modules of 40 x 20 px packed edge to edge,
/// whose top-left corner moves by `step` per frame over a 320 x 256 frame.
struct Scene {
    cols: u32,
    rows: u32,
    origin: (f32, f32),
    step: (f32, f32),
    /// (col, row) of the defective module and its hot-spot temperature.
    hot: Option<((u32, u32), f32)>,
    seed: u32,
}

const W: u32 = 320;
const H: u32 = 256;
const MW: f32 = 40.0;
const MH: f32 = 20.0;

/// Detections of a synthetic frame, each with its module's (col, row) in the grid.
type GridDetections = Vec<(ModuleDetection, (u32, u32))>;

impl Scene {
    /// Frame `k` and the detections a detector would report (modules fully
    /// inside the frame, corners jittered by up to 1 px), each with its (col, row).
    fn frame(&mut self, k: u32) -> (Frame, GridDetections) {
        let mut px = vec![raw_of(15.0); (W * H) as usize];
        let (ox, oy) = (
            self.origin.0 + self.step.0 * k as f32,
            self.origin.1 + self.step.1 * k as f32,
        );
        let mut dets = Vec::new();
        for r in 0..self.rows {
            for c in 0..self.cols {
                let (x0, y0) = (ox + c as f32 * MW, oy + r as f32 * MH);
                let hot = self.hot.filter(|(cr, _)| *cr == (c, r)).map(|(_, t)| t);
                for y in y0.max(0.0) as u32..((y0 + MH).min(H as f32).max(0.0) as u32) {
                    for x in x0.max(0.0) as u32..((x0 + MW).min(W as f32).max(0.0) as u32) {
                        // Modules at 30 C with a 2 K gradient; the hot one has a hot spot.
                        let mut t = 30.0 + 2.0 * (x as f32 - x0) / MW;
                        if let Some(th) = hot {
                            if (x as f32 - x0 - 20.0).abs() < 3.0
                                && (y as f32 - y0 - 10.0).abs() < 3.0
                            {
                                t = th;
                            }
                        }
                        px[(y * W + x) as usize] = raw_of(t);
                    }
                }
                if x0 >= 0.0 && y0 >= 0.0 && x0 + MW <= W as f32 && y0 + MH <= H as f32 {
                    let q = Quad(Quad::rect(x0, y0, x0 + MW, y0 + MH).0.map(|p| Point {
                        x: p.x + self.jitter(),
                        y: p.y + self.jitter(),
                    }));
                    dets.push((detection(q, hot.is_some(), "Hot-Spot"), (c, r)));
                }
            }
        }
        let frame = Frame::new(
            W,
            H,
            Pixels::Gray16(px),
            LINEAR,
            1000 + k as u64,
            UNIX_EPOCH + Duration::from_secs(1_700_000_000) + Duration::from_millis(100 * k as u64),
            "synthetic".into(),
        )
        .unwrap();
        (frame, dets)
    }

    /// Deterministic jitter in [-1, 1) px.
    fn jitter(&mut self) -> f32 {
        self.seed = self
            .seed
            .wrapping_mul(1_664_525)
            .wrapping_add(1_013_904_223);
        (self.seed >> 8) as f32 / (1u32 << 23) as f32 - 1.0
    }
}

fn config(min_frames: u32) -> AnalysisConfig {
    let mut c = AnalysisConfig::default();
    c.tracking.min_frames = min_frames;
    c
}

#[test]
fn moving_defect_yields_one_event_with_its_track_length() {
    // Scene moves 7 px left and 1 px down per frame; the hot module (col 9,
    // row 2) starts outside the frame, is fully visible in frames 12..=51.
    let mut scene = Scene {
        cols: 12,
        rows: 6,
        origin: (0.0, 60.0),
        step: (-7.0, 1.0),
        hot: Some(((9, 2), 55.0)),
        seed: 7,
    };
    let mut a = Analyser::new(config(3)).unwrap();
    let mut events = Vec::new();
    let mut ids: HashMap<(u32, u32), u64> = HashMap::new();
    let mut visible_frames = 0;
    for k in 0..70 {
        let (frame, dets) = scene.frame(k);
        let cells: Vec<(u32, u32)> = dets.iter().map(|d| d.1).collect();
        visible_frames += cells.contains(&(9, 2)) as u32;
        let fa = a.analyse(&frame, dets.into_iter().map(|d| d.0).collect(), None);
        assert_eq!(fa.unit, TemperatureUnit::Celsius);
        for (m, cell) in fa.modules.iter().zip(&cells) {
            let id = m.track_id.expect("every module gets a track id");
            assert_eq!(
                *ids.entry(*cell).or_insert(id),
                id,
                "module {cell:?} changed track id in frame {k}"
            );
        }
        events.extend(fa.events);
    }
    // Global shift estimated.
    let (dx, dy) = a.tracker.global_shift();
    assert!(
        (dx + 7.0).abs() < 1.0 && (dy - 1.0).abs() < 1.0,
        "shift ({dx}, {dy})"
    );
    events.extend(a.finish());
    assert_eq!(visible_frames, 40);
    // Distinct modules, distinct ids.
    let mut unique: Vec<u64> = ids.values().copied().collect();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), ids.len());

    let kinds: Vec<EventKind> = events.iter().map(|e| e.kind).collect();
    assert_eq!(kinds.first(), Some(&EventKind::New), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&EventKind::End), "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| **k == EventKind::New).count(), 1);
    assert_eq!(kinds.iter().filter(|k| **k == EventKind::End).count(), 1);
    assert!(events
        .iter()
        .all(|e| e.event_id == events[0].event_id && e.track_id == ids[&(9, 2)]));
    let end = events.last().unwrap();
    assert_eq!(end.frames_seen, 40);
    assert_eq!(
        end.first_seen,
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + 1200)
    );
    assert_eq!(
        end.last_seen,
        UNIX_EPOCH + Duration::from_millis(1_700_000_000_000 + 5100)
    );
    assert_eq!(end.anomaly_class, "Hot-Spot");
    assert_eq!(end.severity, Some(Severity::SAFETY));
    // Hot spot 55 C against ~31 C modules.
    let dt = end.delta_t.unwrap();
    assert!((dt - 24.0).abs() < 0.5, "delta_t {dt}");
    // Best sighting: most central. Module centre x = 380 - 7k, frame centre 160 -> k ~ 31.
    assert!(
        (29..=33).contains(&(end.best.sequence - 1000)),
        "best at {}",
        end.best.sequence
    );
    let crop = end.crop.as_ref().expect("thumbnail pixels kept");
    assert!(crop.frame.width() >= 40 && crop.frame.height() >= 20);
    // JSON payload shape.
    let j = serde_json::to_value(end).unwrap();
    assert_eq!(j["type"], "end");
    assert_eq!(j["severity"]["class"], 3);
    assert!(j["first_seen"]
        .as_str()
        .unwrap()
        .starts_with("2023-11-14T22:13:21.200"));
}

#[test]
fn single_frame_false_positive_below_min_frames_yields_no_event() {
    let mut scene = Scene {
        cols: 6,
        rows: 4,
        origin: (20.0, 40.0),
        step: (-3.0, 0.0),
        hot: None,
        seed: 3,
    };
    let mut a = Analyser::new(config(3)).unwrap();
    let mut events = Vec::new();
    for k in 0..10 {
        let (frame, mut dets) = scene.frame(k);
        if k == 4 {
            dets[5].0.defect.defective = true;
        }
        events.extend(
            a.analyse(&frame, dets.into_iter().map(|d| d.0).collect(), None)
                .events,
        );
    }
    events.extend(a.finish());
    assert!(events.is_empty(), "{events:?}");
}

#[test]
fn defect_below_min_frames_confirmed_once_threshold_reached() {
    let mut scene = Scene {
        cols: 4,
        rows: 2,
        origin: (40.0, 40.0),
        step: (0.0, 0.0),
        hot: Some(((1, 1), 45.0)),
        seed: 1,
    };
    let mut a = Analyser::new(config(2)).unwrap();
    let (f0, d0) = scene.frame(0);
    assert!(a
        .analyse(&f0, d0.into_iter().map(|d| d.0).collect(), None)
        .events
        .is_empty());
    let (f1, d1) = scene.frame(1);
    let ev = a
        .analyse(&f1, d1.into_iter().map(|d| d.0).collect(), None)
        .events;
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].kind, ev[0].frames_seen), (EventKind::New, 2));
    // A static camera: the module stays; finish() ends it.
    let end = a.finish();
    assert_eq!(end.len(), 1);
    assert_eq!((end[0].kind, end[0].frames_seen), (EventKind::End, 2));
}

#[test]
fn severity_thresholds_from_config_change_the_class() {
    let mut scene = Scene {
        cols: 5,
        rows: 2,
        origin: (40.0, 40.0),
        step: (0.0, 0.0),
        hot: Some(((2, 0), 45.0)),
        seed: 5,
    };
    let (frame, dets) = scene.frame(0);
    let dets: Vec<ModuleDetection> = dets.into_iter().map(|d| d.0).collect();
    let hot = dets.iter().position(|d| d.defect.defective).unwrap();

    let mut a = Analyser::new(AnalysisConfig::default()).unwrap();
    let fa = a.analyse(&frame, dets.clone(), None);
    // Healthy modules: 30..32 C gradient, mean ~31; reference = their median.
    let r = fa.reference_temp.unwrap();
    assert!((r - 31.0).abs() < 0.1, "reference {r}");
    let dt = fa.modules[hot].delta_t.unwrap();
    assert!((dt - 14.0).abs() < 0.1, "delta_t {dt}");
    assert_eq!(fa.modules[hot].severity, Some(Severity::ANOMALY));
    assert_eq!(fa.modules[0].severity, Some(Severity::OBSERVE));

    let cfg: AnalysisConfig =
        toml::from_str("[severity]\nclass2_delta_t_k = 5.0\nclass3_delta_t_k = 12.0").unwrap();
    let fa = Analyser::new(cfg)
        .unwrap()
        .analyse(&frame, dets.clone(), None);
    assert_eq!(fa.modules[hot].severity, Some(Severity::SAFETY));

    let cfg: AnalysisConfig =
        toml::from_str("[severity]\nclass2_delta_t_k = 15.0\nclass3_delta_t_k = 30.0").unwrap();
    let fa = Analyser::new(cfg).unwrap().analyse(&frame, dets, None);
    assert_eq!(fa.modules[hot].severity, Some(Severity::OBSERVE));
}

#[test]
fn relative_frames_grade_only_with_a_raw_scale() {
    let mut scene = Scene {
        cols: 5,
        rows: 2,
        origin: (40.0, 40.0),
        step: (0.0, 0.0),
        hot: Some(((2, 0), 45.0)),
        seed: 5,
    };
    let (mut frame, dets) = scene.frame(0);
    frame.radiometry = Radiometry::Relative;
    let dets: Vec<ModuleDetection> = dets.into_iter().map(|d| d.0).collect();
    let hot = dets.iter().position(|d| d.defect.defective).unwrap();
    let fa = Analyser::new(AnalysisConfig::default())
        .unwrap()
        .analyse(&frame, dets.clone(), None);
    assert_eq!(fa.unit, TemperatureUnit::Relative);
    assert!(fa.note.is_some());
    assert!((fa.modules[hot].delta_t.unwrap() - 1400.0).abs() < 10.0);
    assert_eq!(fa.modules[hot].severity, None);
    assert_eq!(
        fa.modules[hot].temperature.as_ref().unwrap().unit,
        TemperatureUnit::Relative
    );

    let cfg: AnalysisConfig = toml::from_str("[severity]\nraw_units_per_k = 100.0").unwrap();
    let fa = Analyser::new(cfg).unwrap().analyse(&frame, dets, None);
    assert!(fa.note.is_none());
    assert_eq!(fa.modules[hot].severity, Some(Severity::ANOMALY));
}

#[test]
fn reference_falls_back_to_all_modules_and_odd_input_is_harmless() {
    let mut a = Analyser::new(AnalysisConfig::default()).unwrap();
    let (frame, dets) = Scene {
        cols: 2,
        rows: 1,
        origin: (40.0, 40.0),
        step: (0.0, 0.0),
        hot: None,
        seed: 2,
    }
    .frame(0);
    let mut dets: Vec<ModuleDetection> = dets.into_iter().map(|d| d.0).collect();
    // Fewer than min_reference_modules healthy: median of all.
    let fa = a.analyse(&frame, dets.clone(), None);
    // ~31 C; a jittered outline may take in a column of 15 C background.
    let r = fa.reference_temp.unwrap();
    assert!((r - 31.0).abs() < 0.6, "reference {r}");
    // Zero modules, empty and outside quads.
    assert!(a.analyse(&frame, Vec::new(), None).modules.is_empty());
    dets.push(detection(Quad::rect(5.0, 5.0, 5.0, 5.0), true, "Cell"));
    dets.push(detection(
        Quad::rect(-100.0, -100.0, -50.0, -50.0),
        false,
        "No-Anomaly",
    ));
    let fa = a.analyse(&frame, dets, None);
    assert!(fa.modules[2].temperature.is_none() && fa.modules[2].delta_t.is_none());
    assert!(fa.modules[3].temperature.is_none());
    assert!(fa.modules.iter().all(|m| m.track_id.is_some()));
    // A frame whose buffer does not match its size never reaches the
    // analyser: no such frame can be built.
    let bad = Frame::new(
        frame.width(),
        1000,
        frame.pixels().clone(),
        frame.radiometry.clone(),
        frame.sequence,
        frame.captured_at,
        frame.origin.clone(),
    );
    assert!(bad.is_err());
}

#[test]
fn tracking_off_reports_each_frame_on_its_own() {
    let mut cfg = config(3);
    cfg.tracking.enabled = false;
    let mut a = Analyser::new(cfg).unwrap();
    let mut scene = Scene {
        cols: 3,
        rows: 2,
        origin: (40.0, 40.0),
        step: (0.0, 0.0),
        hot: Some(((1, 1), 45.0)),
        seed: 9,
    };
    for k in 0..2 {
        let (f, d) = scene.frame(k);
        let ev = a
            .analyse(&f, d.into_iter().map(|d| d.0).collect(), None)
            .events;
        let kinds: Vec<EventKind> = ev.iter().map(|e| e.kind).collect();
        assert_eq!(kinds, [EventKind::New, EventKind::End]);
        assert_eq!(ev[0].frames_seen, 1);
    }
    assert!(a.finish().is_empty());
}

#[test]
fn fixed_position_is_attached_to_events() {
    let cfg: AnalysisConfig = toml::from_str(
        "[tracking]\nmin_frames = 1\n[position]\nsource = \"fixed\"\nlatitude = 47.5\nlongitude = 8.25",
    )
    .unwrap();
    let position = PositionSource::from_config(&cfg.position).unwrap();
    let mut a = Analyser::new(cfg).unwrap();
    let (f, d) = Scene {
        cols: 3,
        rows: 2,
        origin: (40.0, 40.0),
        step: (0.0, 0.0),
        hot: Some(((1, 1), 45.0)),
        seed: 9,
    }
    .frame(0);
    let at = position.current();
    let ev = a
        .analyse(&f, d.into_iter().map(|d| d.0).collect(), at.as_ref())
        .events;
    let p = ev[0].position.as_ref().unwrap();
    assert_eq!((p.latitude, p.longitude), (47.5, 8.25));
}

#[test]
fn config_rejects_unknown_keys_and_bad_values() {
    assert!(toml::from_str::<AnalysisConfig>("colour = 1").is_err());
    assert!(toml::from_str::<AnalysisConfig>("[tracking]\nmin_iuo = 0.3").is_err());
    let c: AnalysisConfig = toml::from_str("[object]\nemissivity = 1.5").unwrap();
    assert!(Analyser::new(c)
        .unwrap_err()
        .to_string()
        .contains("analysis.object"));
    let c: AnalysisConfig = toml::from_str("[position]\nsource = \"fixed\"").unwrap();
    assert!(Analyser::new(c).is_err());
}

#[test]
fn real_rjpeg_module_temperatures_are_plausible() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pv");
    let (img, ann) = (
        dir.join("images/001R.jpg"),
        dir.join("annotations/001R.json"),
    );
    if !img.exists() {
        eprintln!("skipped: {} missing", img.display());
        return;
    }
    let frame = crate::imageio::load_frame(&img, 0).unwrap();
    assert!(frame.radiometry.is_absolute());
    let ann: serde_json::Value = serde_json::from_slice(&std::fs::read(ann).unwrap()).unwrap();
    let dets: Vec<ModuleDetection> = ann["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let c: Vec<Point> = serde_json::from_value(i["corners"].clone()).unwrap();
            let defective = i["defected_module"].as_bool().unwrap();
            detection(
                Quad([c[0], c[1], c[2], c[3]]),
                defective,
                if defective { "Hot-Spot" } else { "No-Anomaly" },
            )
        })
        .collect();
    let n = dets.len();
    let fa = Analyser::new(AnalysisConfig::default())
        .unwrap()
        .analyse(&frame, dets, None);
    assert_eq!(fa.unit, TemperatureUnit::Celsius);
    let measured: Vec<&ModuleTemperature> = fa
        .modules
        .iter()
        .filter_map(|m| m.temperature.as_ref())
        .collect();
    assert!(
        measured.len() >= n * 9 / 10,
        "{} of {n} modules measured",
        measured.len()
    );
    for t in &measured {
        assert!(t.min <= t.median && t.median <= t.max && t.min <= t.mean && t.mean <= t.max);
        assert!((20.0..=60.0).contains(&t.mean), "module mean {} C", t.mean);
    }
    let r = fa.reference_temp.unwrap();
    assert!((20.0..=60.0).contains(&r), "reference {r} C");
}
