//! Pictures for people: thermal palettes, the annotated overview of a frame
//! (`pvtherm detect` and the MQTT snapshot), module thumbnails for defect
//! events, a contact sheet of defect thumbnails, and JPEG encoding.
//!
//! Everything draws into `image::RgbImage` with a few primitives defined here
//! (thick Bresenham lines, a 5x7 bitmap font), so there is no font or drawing
//! crate to carry onto the edge box.

use anyhow::{bail, Context, Result};
use image::{imageops, Rgb, RgbImage};
use serde::{Deserialize, Serialize};

use crate::analysis::{DefectEvent, FrameAnalysis, TemperatureUnit};
use crate::crop::{ModuleCrop, MAX_THUMBNAIL_MARGIN};
use crate::frame::{Frame, Pixels};
use crate::geometry::Quad;

/// Outline colour of healthy modules (green).
pub(crate) const HEALTHY_COLOR: Rgb<u8> = Rgb([0, 230, 0]);
/// Outline and label colour of defective modules (magenta: brighter than any
/// colour of the thermal palettes, so it stays visible on hot and cold areas).
pub(crate) const DEFECT_COLOR: Rgb<u8> = Rgb([255, 0, 255]);
/// Label background (dark, for contrast).
const LABEL_BG: Rgb<u8> = Rgb([0, 0, 0]);
/// Text colour on the contact sheet.
const TEXT_COLOR: Rgb<u8> = Rgb([240, 240, 240]);

/// Which thermal palette.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum PaletteKind {
    /// Black - purple - red - orange - yellow - white, the thermographers' default.
    Ironbow,
    /// Black (cold) to white (hot).
    Grey,
}

/// A 256-entry colour table indexed by the stretched pixel value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Palette([Rgb<u8>; 256]);

/// Ironbow control points (position 0..1, colour), interpolated linearly.
const IRONBOW: [(f32, [u8; 3]); 8] = [
    (0.00, [0, 0, 10]),
    (0.15, [40, 0, 110]),
    (0.30, [120, 0, 150]),
    (0.45, [190, 20, 120]),
    (0.60, [230, 70, 40]),
    (0.75, [250, 140, 0]),
    (0.90, [255, 210, 40]),
    (1.00, [255, 255, 230]),
];

impl Palette {
    /// The table for `kind`.
    pub(crate) fn new(kind: PaletteKind) -> Palette {
        let mut lut = [Rgb([0u8; 3]); 256];
        for (i, c) in lut.iter_mut().enumerate() {
            let v = i as u8;
            *c = match kind {
                PaletteKind::Grey => Rgb([v, v, v]),
                PaletteKind::Ironbow => Rgb(interpolate(&IRONBOW, i as f32 / 255.0)),
            };
        }
        Palette(lut)
    }

    /// Colour of index `i`.
    #[inline]
    pub(crate) fn color(&self, i: u8) -> Rgb<u8> {
        self.0[i as usize]
    }
}

fn interpolate(points: &[(f32, [u8; 3])], t: f32) -> [u8; 3] {
    let k = points
        .iter()
        .position(|(p, _)| *p >= t)
        .unwrap_or(points.len() - 1)
        .max(1);
    let ((p0, c0), (p1, c1)) = (points[k - 1], points[k]);
    let f = ((t - p0) / (p1 - p0).max(1e-6)).clamp(0.0, 1.0);
    std::array::from_fn(|j| (c0[j] as f32 + (c1[j] as f32 - c0[j] as f32) * f).round() as u8)
}

/// `[render]`: how the snapshot, `detect` overviews and thumbnails are drawn.
/// (Files written before this section existed have it as `[analysis.render]`;
/// [`crate::config::Config`] still reads it there.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RenderOptions {
    /// `ironbow` (default) or `grey`.
    pub(crate) palette: PaletteKind,
    /// Lower percentile of the pixel values mapped to the palette's first
    /// colour (default 1: a few cold pixels do not wash out the picture).
    pub(crate) percentile_low: f32,
    /// Upper percentile mapped to the last colour (default 99.5).
    pub(crate) percentile_high: f32,
    /// Fixed temperature range `[min, max]` in degrees C instead of
    /// percentiles, for comparable pictures across frames. Used only for
    /// radiometric frames; others fall back to percentiles.
    pub(crate) range_c: Option<[f32; 2]>,
    /// Outline thickness in pixels (default 2).
    pub(crate) line_width: u32,
    /// Long side of a module thumbnail in pixels (default 112).
    pub(crate) thumbnail_size: u32,
    /// Margin around the module on a thumbnail, as a fraction of the module
    /// box (default 0.25, at most 0.5: what defect events keep).
    pub(crate) thumbnail_margin: f32,
}

impl Default for RenderOptions {
    fn default() -> Self {
        RenderOptions {
            palette: PaletteKind::Ironbow,
            percentile_low: 1.0,
            percentile_high: 99.5,
            range_c: None,
            line_width: 2,
            thumbnail_size: 112,
            thumbnail_margin: 0.25,
        }
    }
}

impl RenderOptions {
    /// Checks the values; errors name the key.
    pub(crate) fn validate(&self) -> Result<()> {
        let (lo, hi) = (self.percentile_low, self.percentile_high);
        if !((0.0..100.0).contains(&lo) && lo < hi && hi <= 100.0) {
            bail!("render: need 0 <= percentile_low ({lo}) < percentile_high ({hi}) <= 100");
        }
        if let Some([a, b]) = self.range_c {
            if !(a.is_finite() && b.is_finite() && a < b) {
                bail!("render.range_c = [{a}, {b}]: need two finite values, min < max");
            }
        }
        if !(1..=16).contains(&self.line_width) {
            bail!("render.line_width must be 1..16 (got {})", self.line_width);
        }
        if !(16..=1024).contains(&self.thumbnail_size) {
            bail!(
                "render.thumbnail_size must be 16..1024 (got {})",
                self.thumbnail_size
            );
        }
        if !(0.0..=MAX_THUMBNAIL_MARGIN).contains(&self.thumbnail_margin) {
            bail!(
                "render.thumbnail_margin must be 0..{MAX_THUMBNAIL_MARGIN} (got {})",
                self.thumbnail_margin
            );
        }
        Ok(())
    }
}

/// Draws frames. Keeps the histogram and the value -> colour-index table
/// between calls, so rendering a stream does not reallocate them.
#[derive(Debug)]
pub struct Renderer {
    options: RenderOptions,
    palette: Palette,
    hist: Vec<u32>,
    index: Vec<u8>,
}

impl Renderer {
    /// A renderer with `options` (invalid values are clamped, not rejected:
    /// validate the config with `RenderOptions::validate` first).
    pub fn new(options: RenderOptions) -> Renderer {
        Renderer {
            palette: Palette::new(options.palette),
            options,
            hist: Vec::new(),
            index: Vec::new(),
        }
    }

    /// The frame in the thermal palette, stretched by percentiles (or by the
    /// fixed temperature range for radiometric frames).
    pub(crate) fn thermal(&mut self, frame: &Frame) -> RgbImage {
        let mut img = RgbImage::new(frame.width(), frame.height());
        let rmin = self.build_index(frame);
        for (i, px) in img.pixels_mut().enumerate() {
            let raw = frame.pixels().get(i) as usize;
            *px = self.palette.color(self.index[raw - rmin]);
        }
        img
    }

    /// Fills `self.index` for raw values `rmin..=rmax` of the frame; returns `rmin`.
    fn build_index(&mut self, frame: &Frame) -> usize {
        let bins = match frame.pixels() {
            Pixels::Gray8(_) => 256,
            Pixels::Gray16(_) => 65536,
        };
        self.hist.clear();
        self.hist.resize(bins, 0);
        let n = frame.pixels().len();
        for i in 0..n {
            self.hist[frame.pixels().get(i) as usize] += 1;
        }
        let rmin = self.hist.iter().position(|&c| c > 0).unwrap_or(0);
        let rmax = self.hist.iter().rposition(|&c| c > 0).unwrap_or(0);
        self.index.clear();
        let o = &self.options;
        let celsius_range = o.range_c.filter(|_| frame.radiometry.is_absolute());
        if let Some([tmin, tmax]) = celsius_range {
            let span = (tmax - tmin).max(1e-3);
            self.index.extend((rmin..=rmax).map(
                |raw| match frame.radiometry.to_celsius(raw as u16) {
                    Some(t) => to_index((t - tmin) / span),
                    None => 0,
                },
            ));
        } else {
            let lo = percentile(&self.hist, n, o.percentile_low) as f32;
            let hi = (percentile(&self.hist, n, o.percentile_high) as f32).max(lo + 1.0);
            self.index
                .extend((rmin..=rmax).map(|raw| to_index((raw as f32 - lo) / (hi - lo))));
        }
        rmin
    }

    /// The annotated overview: the frame in the palette, healthy modules
    /// outlined in `HEALTHY_COLOR`, defective ones in `DEFECT_COLOR` with
    /// their defect score, severity class and delta-T as a label.
    pub fn overview(&mut self, frame: &Frame, analysis: &FrameAnalysis) -> RgbImage {
        let mut img = self.thermal(frame);
        let lw = self.options.line_width;
        // Healthy first: a defective module's outline wins on shared edges.
        for m in analysis
            .modules
            .iter()
            .filter(|m| !m.detection.defect.defective)
        {
            draw_quad(&mut img, &m.detection.quad, HEALTHY_COLOR, lw);
        }
        let scale = if frame.width() >= 480 { 2 } else { 1 };
        for m in analysis
            .modules
            .iter()
            .filter(|m| m.detection.defect.defective)
        {
            draw_quad(&mut img, &m.detection.quad, DEFECT_COLOR, lw);
            let mut label = format!("{:.2}", m.detection.defect.defect_score);
            if let Some(s) = m.severity {
                label.push_str(&format!(" S{}", s.class()));
            }
            if let Some(dt) = m
                .delta_t
                .filter(|_| analysis.unit == TemperatureUnit::Celsius)
            {
                label.push_str(&format!(" {dt:+.0}K"));
            }
            let b = m.detection.quad.bbox();
            let th = text_height(scale) as f32 + 2.0;
            // Above the module, or below it when there is no room above.
            let y = if b.y0 >= th { b.y0 - th } else { b.y1 + 2.0 };
            draw_label(
                &mut img,
                b.x0.max(0.0) as i64,
                y as i64,
                &label,
                DEFECT_COLOR,
                scale,
            );
        }
        if let Some(banner) = calibration_banner(frame) {
            draw_label(&mut img, 2, 2, &banner, TEXT_COLOR, scale);
        }
        img
    }

    /// A thumbnail of one module: its box plus the configured margin, in the
    /// palette stretched on the crop itself (local contrast), scaled so the
    /// long side is `thumbnail_size`, the outline drawn. `None` when the
    /// module lies outside the frame.
    pub(crate) fn module_thumbnail(&mut self, frame: &Frame, quad: &Quad) -> Option<RgbImage> {
        let margin = self
            .options
            .thumbnail_margin
            .clamp(0.0, MAX_THUMBNAIL_MARGIN);
        let crop = ModuleCrop::new(frame, quad, margin)?;
        let img = self.thermal(&crop.frame);
        let (w, h) = (img.width() as f32, img.height() as f32);
        let s = self.options.thumbnail_size.max(1) as f32 / w.max(h);
        let (tw, th) = (
            ((w * s).round() as u32).max(1),
            ((h * s).round() as u32).max(1),
        );
        let mut thumb = imageops::resize(&img, tw, th, imageops::FilterType::Triangle);
        let q = crop.quad.scaled(tw as f32 / w, th as f32 / h);
        draw_quad(&mut thumb, &q, DEFECT_COLOR, self.options.line_width.min(2));
        Some(thumb)
    }

    /// The thumbnail of a defect event, from the pixels the event kept of its
    /// best sighting. `None` when it kept none.
    pub(crate) fn event_thumbnail(&mut self, event: &DefectEvent) -> Option<RgbImage> {
        let crop = event.crop.as_ref()?;
        self.module_thumbnail(&crop.frame, &crop.quad)
    }
}

/// Value at percentile `p` (0..100) of a histogram over `n` samples.
fn percentile(hist: &[u32], n: usize, p: f32) -> usize {
    let target = ((p.clamp(0.0, 100.0) / 100.0) * n.saturating_sub(1) as f32).round() as u64;
    let mut acc = 0u64;
    for (v, &c) in hist.iter().enumerate() {
        acc += c as u64;
        if acc > target {
            return v;
        }
    }
    hist.len().saturating_sub(1)
}

fn to_index(f: f32) -> u8 {
    if f.is_nan() {
        0
    } else {
        (f.clamp(0.0, 1.0) * 255.0).round() as u8
    }
}

/// Encodes an RGB image as baseline JPEG (`quality` 1..100; ~80 is good for
/// snapshots, ~75 for thumbnails). The one encoder for snapshots, thumbnails
/// and `detect` pictures.
pub fn encode_jpeg(img: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    if img.width() == 0 || img.height() == 0 {
        bail!(
            "cannot encode an empty {}x{} image as JPEG",
            img.width(),
            img.height()
        );
    }
    let mut out = Vec::with_capacity(img.len() / 8);
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
        .encode_image(img)
        .context("JPEG encoding failed")?;
    Ok(out)
}

/// The warning the annotated picture carries in its corner when the values
/// are not the camera's calibrated temperatures ("RELATIVE VALUES", "NOT
/// CALIBRATED") or a plausibility check failed ("FLAGGED"); the JSON says why.
fn calibration_banner(frame: &Frame) -> Option<String> {
    let p = &frame.provenance;
    let mut parts = Vec::new();
    match &p.calibration {
        Some(c) if c.kind == "relative" => parts.push("RELATIVE VALUES"),
        Some(c) if !c.calibrated => parts.push("NOT CALIBRATED"),
        _ => {}
    }
    if !p.flags.is_empty() {
        parts.push("FLAGGED");
    }
    (!parts.is_empty()).then(|| parts.join(" - "))
}

/// A grid of labelled thumbnails (e.g. every defect of a survey), `columns`
/// wide, for `pvtherm detect` on a folder. Labels are cut to the cell width.
/// An empty list gives a small blank sheet.
pub(crate) fn contact_sheet(items: &[(RgbImage, String)], columns: u32) -> RgbImage {
    const PAD: u32 = 6;
    let columns = columns.clamp(1, items.len().max(1) as u32);
    let cell_w = items
        .iter()
        .map(|(i, _)| i.width())
        .max()
        .unwrap_or(64)
        .max(48);
    let cell_h = items.iter().map(|(i, _)| i.height()).max().unwrap_or(48);
    let label_h = text_height(1) + 4;
    let rows = (items.len() as u32).div_ceil(columns).max(1);
    let (w, h) = (
        PAD + columns * (cell_w + PAD),
        PAD + rows * (cell_h + label_h + PAD),
    );
    let mut sheet = RgbImage::from_pixel(w, h, Rgb([32, 32, 32]));
    let max_chars = (cell_w / GLYPH_ADVANCE) as usize;
    for (k, (thumb, label)) in items.iter().enumerate() {
        let (c, r) = (k as u32 % columns, k as u32 / columns);
        let (x, y) = (PAD + c * (cell_w + PAD), PAD + r * (cell_h + label_h + PAD));
        imageops::overlay(&mut sheet, thumb, x as i64, y as i64);
        let text: String = label.chars().take(max_chars).collect();
        draw_text(
            &mut sheet,
            x as i64,
            (y + cell_h + 2) as i64,
            &text,
            TEXT_COLOR,
            1,
        );
    }
    sheet
}

// ---------------------------------------------------------------------------
// Drawing primitives

/// Sets a pixel when it lies inside the image.
#[inline]
fn put(img: &mut RgbImage, x: i64, y: i64, c: Rgb<u8>) {
    if x >= 0 && y >= 0 && (x as u64) < img.width() as u64 && (y as u64) < img.height() as u64 {
        img.put_pixel(x as u32, y as u32, c);
    }
}

/// A straight line `width` pixels thick (Bresenham, a square brush at each
/// step). Clipped to the image; non-finite end points draw nothing.
pub(crate) fn draw_line(
    img: &mut RgbImage,
    (x0, y0): (f32, f32),
    (x1, y1): (f32, f32),
    c: Rgb<u8>,
    width: u32,
) {
    if ![x0, y0, x1, y1].iter().all(|v| v.is_finite()) {
        return;
    }
    // Keep far-away points from making the loop long: clamp to a band around the image.
    let lim = |v: f32, n: u32| v.clamp(-(n as f32) - 16.0, 2.0 * n as f32 + 16.0).round() as i64;
    let (mut x, mut y) = (lim(x0, img.width()), lim(y0, img.height()));
    let (xe, ye) = (lim(x1, img.width()), lim(y1, img.height()));
    let (dx, dy) = ((xe - x).abs(), -(ye - y).abs());
    let (sx, sy) = (if x < xe { 1 } else { -1 }, if y < ye { 1 } else { -1 });
    let w = width.max(1) as i64;
    let (lo, hi) = (-(w - 1) / 2, w / 2);
    let mut err = dx + dy;
    loop {
        for oy in lo..=hi {
            for ox in lo..=hi {
                put(img, x + ox, y + oy, c);
            }
        }
        if x == xe && y == ye {
            break;
        }
        let e2 = 2 * err;
        if e2 >= dy {
            err += dy;
            x += sx;
        }
        if e2 <= dx {
            err += dx;
            y += sy;
        }
    }
}

/// The outline of a quadrilateral.
pub(crate) fn draw_quad(img: &mut RgbImage, q: &Quad, c: Rgb<u8>, width: u32) {
    for i in 0..4 {
        let (a, b) = (q.0[i], q.0[(i + 1) % 4]);
        draw_line(img, (a.x, a.y), (b.x, b.y), c, width);
    }
}

/// Glyph width and height of the built-in font, in pixels at scale 1.
const GLYPH_W: u32 = 5;
const GLYPH_H: u32 = 7;
/// Horizontal distance between glyphs at scale 1.
const GLYPH_ADVANCE: u32 = GLYPH_W + 1;

/// Height of a text line at `scale`.
pub(crate) fn text_height(scale: u32) -> u32 {
    GLYPH_H * scale.max(1)
}

/// Width of `text` at `scale`.
pub(crate) fn text_width(text: &str, scale: u32) -> u32 {
    (text.chars().count() as u32 * GLYPH_ADVANCE).saturating_sub(1) * scale.max(1)
}

/// Draws `text` with its top-left corner at (x, y), in the built-in 5x7 font
/// (digits, letters, `.-+:/%#_()` and space; lower case is drawn as upper
/// case, anything else as `?`), each font pixel `scale` x `scale`.
pub(crate) fn draw_text(img: &mut RgbImage, x: i64, y: i64, text: &str, c: Rgb<u8>, scale: u32) {
    let s = scale.max(1) as i64;
    for (k, ch) in text.chars().enumerate() {
        let gx = x + k as i64 * GLYPH_ADVANCE as i64 * s;
        for (row, bits) in glyph(ch).iter().enumerate() {
            for col in 0..GLYPH_W as i64 {
                if bits & (0x10 >> col) != 0 {
                    for dy in 0..s {
                        for dx in 0..s {
                            put(img, gx + col * s + dx, y + row as i64 * s + dy, c);
                        }
                    }
                }
            }
        }
    }
}

/// Text on a dark box with a 1-pixel border, kept inside the image.
pub(crate) fn draw_label(img: &mut RgbImage, x: i64, y: i64, text: &str, c: Rgb<u8>, scale: u32) {
    let (tw, th) = (text_width(text, scale) as i64, text_height(scale) as i64);
    let x = x.clamp(1, (img.width() as i64 - tw - 1).max(1));
    let y = y.clamp(1, (img.height() as i64 - th - 1).max(1));
    for yy in y - 1..y + th + 1 {
        for xx in x - 1..x + tw + 1 {
            put(img, xx, yy, LABEL_BG);
        }
    }
    draw_text(img, x, y, text, c, scale);
}

/// The 5x7 bitmap of one character: 7 rows, bit 4 = leftmost column.
fn glyph(ch: char) -> [u8; 7] {
    match ch.to_ascii_uppercase() {
        ' ' => [0; 7],
        '0' => [0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E],
        '1' => [0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E],
        '2' => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F],
        '3' => [0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E],
        '4' => [0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02],
        '5' => [0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E],
        '6' => [0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E],
        '7' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08],
        '8' => [0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E],
        '9' => [0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C],
        'A' => [0x0E, 0x11, 0x11, 0x11, 0x1F, 0x11, 0x11],
        'B' => [0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E],
        'C' => [0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E],
        'D' => [0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C],
        'E' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F],
        'F' => [0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10],
        'G' => [0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F],
        'H' => [0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11],
        'I' => [0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E],
        'J' => [0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C],
        'K' => [0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11],
        'L' => [0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F],
        'M' => [0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11],
        'N' => [0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11],
        'O' => [0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'P' => [0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10],
        'Q' => [0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D],
        'R' => [0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11],
        'S' => [0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E],
        'T' => [0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04],
        'U' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E],
        'V' => [0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04],
        'W' => [0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A],
        'X' => [0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11],
        'Y' => [0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04],
        'Z' => [0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F],
        '.' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C],
        '-' => [0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00],
        '+' => [0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00],
        ':' => [0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00],
        '/' => [0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00],
        '%' => [0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03],
        '#' => [0x0A, 0x0A, 0x1F, 0x0A, 0x1F, 0x0A, 0x0A],
        '_' => [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F],
        '(' => [0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02],
        ')' => [0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08],
        _ => [0x0E, 0x11, 0x01, 0x02, 0x04, 0x00, 0x04],
    }
}

#[cfg(test)]
mod tests;
