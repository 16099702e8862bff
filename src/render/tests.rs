use std::time::UNIX_EPOCH;

use super::*;
use crate::analysis::{AnalysedModule, TemperatureUnit};
use crate::geometry::Point;
use crate::model::{DefectAssessment, ModuleDetection};
use crate::radiometry::Radiometry;

fn gradient_frame(w: u32, h: u32) -> Frame {
    Frame::new(
        w,
        h,
        Pixels::Gray16((0..w * h).map(|i| 29_000 + (i % w) as u16 * 10).collect()),
        Radiometry::Linear {
            scale: 0.01,
            offset: -273.15,
        },
        3,
        UNIX_EPOCH,
        "test".into(),
    )
    .unwrap()
}

fn module(q: Quad, defective: bool) -> AnalysedModule {
    AnalysedModule {
        detection: ModuleDetection {
            quad: q,
            bbox: q.bbox(),
            score: 0.9,
            defect: DefectAssessment {
                defective,
                defect_score: if defective { 0.87 } else { 0.1 },
                anomaly_class: "Hot-Spot".into(),
                ..Default::default()
            },
        },
        temperature: None,
        delta_t: Some(12.0),
        severity: Some(crate::analysis::Severity::ANOMALY),
        track_id: None,
    }
}

#[test]
fn palettes_run_from_dark_to_bright() {
    let lum = |c: Rgb<u8>| c.0.iter().map(|v| *v as u32).sum::<u32>();
    for kind in [PaletteKind::Ironbow, PaletteKind::Grey] {
        let p = Palette::new(kind);
        assert!(lum(p.color(0)) < 30 && lum(p.color(255)) > 700, "{kind:?}");
        assert!(lum(p.color(64)) < lum(p.color(192)));
    }
    assert_eq!(Palette::new(PaletteKind::Grey).color(77), Rgb([77, 77, 77]));
}

#[test]
fn overview_has_frame_size_and_defect_outlines() {
    let f = gradient_frame(320, 240);
    let analysis = FrameAnalysis {
        modules: vec![
            module(Quad::rect(60.0, 100.0, 100.0, 120.0), false),
            module(Quad::rect(100.0, 100.0, 140.0, 120.0), true),
        ],
        reference_temp: Some(20.0),
        unit: TemperatureUnit::Celsius,
        note: None,
        events: Vec::new(),
    };
    let img = Renderer::new(RenderOptions::default()).overview(&f, &analysis);
    assert_eq!(img.dimensions(), (320, 240));
    // Defective outline: left, right and bottom edges (the shared edge at x=100 too).
    for (x, y) in [(100, 110), (140, 110), (120, 120), (141, 115)] {
        assert_eq!(*img.get_pixel(x, y), DEFECT_COLOR, "({x}, {y})");
    }
    // Healthy outline.
    for (x, y) in [(60, 110), (80, 120), (61, 110)] {
        assert_eq!(*img.get_pixel(x, y), HEALTHY_COLOR, "({x}, {y})");
    }
    // Label above the defective module (text pixels in the defect colour on black).
    let label_area = (100..160).flat_map(|x| (88..99).map(move |y| (x, y)));
    let (mut text, mut bg) = (0, 0);
    for (x, y) in label_area {
        match *img.get_pixel(x, y) {
            c if c == DEFECT_COLOR => text += 1,
            c if c == LABEL_BG => bg += 1,
            _ => {}
        }
    }
    assert!(
        text > 20 && bg > 50,
        "label: {text} text px, {bg} background px"
    );
    // Inside a module: palette colour, not an outline colour.
    let inside = *img.get_pixel(120, 110);
    assert!(inside != DEFECT_COLOR && inside != HEALTHY_COLOR);
}

#[test]
fn stretch_uses_percentiles_or_fixed_range() {
    let f = gradient_frame(256, 4);
    let mut r = Renderer::new(RenderOptions {
        palette: PaletteKind::Grey,
        ..Default::default()
    });
    let img = r.thermal(&f);
    assert!(img.get_pixel(0, 0).0[0] <= 3 && img.get_pixel(255, 0).0[0] >= 252);
    // 16.85 .. 42.35 C across the frame; a fixed 0..100 C range compresses it.
    let opts = RenderOptions {
        palette: PaletteKind::Grey,
        range_c: Some([0.0, 100.0]),
        ..Default::default()
    };
    let img = Renderer::new(opts).thermal(&f);
    let (a, b) = (img.get_pixel(0, 0).0[0], img.get_pixel(255, 0).0[0]);
    assert!(
        (40..=46).contains(&a) && (105..=111).contains(&b),
        "{a} {b}"
    );
    // Constant and 8-bit frames: no panic. An inconsistent frame cannot be
    // built, so it never reaches the renderer.
    let g = gradient_frame(10, 10);
    let c = Frame::new(
        10,
        10,
        Pixels::Gray8(vec![7; 100]),
        g.radiometry.clone(),
        g.sequence,
        g.captured_at,
        g.origin.clone(),
    )
    .unwrap();
    assert_eq!(r.thermal(&c).dimensions(), (10, 10));
    assert!(Frame::new(
        10,
        11,
        Pixels::Gray8(vec![7; 100]),
        g.radiometry,
        g.sequence,
        g.captured_at,
        g.origin,
    )
    .is_err());
}

#[test]
fn jpeg_round_trips() {
    let img = Renderer::new(RenderOptions::default()).thermal(&gradient_frame(64, 48));
    let jpeg = encode_jpeg(&img, 90).unwrap();
    assert_eq!(&jpeg[..2], &[0xFF, 0xD8]);
    let back = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
        .unwrap()
        .to_rgb8();
    assert_eq!(back.dimensions(), (64, 48));
    let diff = img
        .pixels()
        .zip(back.pixels())
        .map(|(a, b)| (a.0[0] as i32 - b.0[0] as i32).abs())
        .max()
        .unwrap();
    assert!(diff < 40, "max channel difference {diff}");
    assert!(encode_jpeg(&RgbImage::new(0, 0), 80).is_err());
}

#[test]
fn thumbnail_is_a_small_jpeg() {
    let f = gradient_frame(640, 512);
    let mut r = Renderer::new(RenderOptions::default());
    let t = r
        .module_thumbnail(&f, &Quad::rect(300.0, 200.0, 360.0, 230.0))
        .unwrap();
    assert_eq!(t.width(), 112);
    assert!((50..=60).contains(&t.height()), "{}", t.height());
    let jpeg = encode_jpeg(&t, 75).unwrap();
    assert!(jpeg.len() < 8 * 1024, "{} bytes", jpeg.len());
    assert!(image::load_from_memory(&jpeg).is_ok());
    assert!(r
        .module_thumbnail(&f, &Quad::rect(700.0, 600.0, 720.0, 620.0))
        .is_none());
    let nan = Point {
        x: f32::NAN,
        y: 1.0,
    };
    assert!(r.module_thumbnail(&f, &Quad([nan; 4])).is_none());
}

#[test]
fn contact_sheet_lays_out_a_grid() {
    let t = RgbImage::from_pixel(100, 50, Rgb([200, 0, 0]));
    let items: Vec<(RgbImage, String)> = (0..5)
        .map(|i| (t.clone(), format!("#{i} Hot-Spot S3")))
        .collect();
    let sheet = contact_sheet(&items, 3);
    assert_eq!(sheet.width(), 6 + 3 * 106);
    assert_eq!(sheet.height(), 6 + 2 * (50 + 11 + 6));
    assert_eq!(*sheet.get_pixel(6, 6), Rgb([200, 0, 0]));
    assert_eq!(*sheet.get_pixel(6 + 106, 6 + 67), Rgb([200, 0, 0]));
    assert!(contact_sheet(&[], 4).width() > 0);
}

#[test]
fn lines_clip_and_text_draws() {
    let mut img = RgbImage::new(20, 20);
    draw_line(&mut img, (-50.0, 10.0), (1e9, 10.0), DEFECT_COLOR, 2);
    assert_eq!(*img.get_pixel(0, 10), DEFECT_COLOR);
    assert_eq!(*img.get_pixel(19, 11), DEFECT_COLOR);
    draw_line(&mut img, (f32::NAN, 0.0), (5.0, 5.0), HEALTHY_COLOR, 2);
    let mut t = RgbImage::new(20, 10);
    draw_text(&mut t, 0, 0, "1", TEXT_COLOR, 1);
    // '1' has its stem in column 2.
    assert!((0..7).all(|y| *t.get_pixel(2, y) == TEXT_COLOR));
    assert_eq!(text_width("0.87", 1), 23);
    draw_label(&mut t, 100, 100, "far away", TEXT_COLOR, 2);
}
