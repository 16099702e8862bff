//! Input normalisation, defined once for training (Python,
//! `models/training/pvtherm_train/preprocess.py`) and inference (here).
//! A parity test (`tests/fixtures/parity`) keeps the two identical.
//!
//! The rule: `lo`/`hi` are the 1st/99th percentile order statistics of the
//! values (k = floor(0.01 (n-1)) and ceil(0.99 (n-1)), 0-based), `hi = lo + 1`
//! if they meet, and `x = clamp((v - lo) / (hi - lo), 0, 1)`. A robust
//! stretch like this makes a 16-bit radiometric frame and an 8-bit AGC
//! rendering of the same scene look alike to the model, which is what lets
//! one model serve both kinds of camera.

use crate::frame::{Frame, Pixels};
use crate::geometry::{Point, Quad};

/// Height and width of the classifier's module crop (portrait, like the
/// InfraredSolarModules crops).
pub(crate) const CROP_H: usize = 40;
/// Width of the classifier's module crop.
pub(crate) const CROP_W: usize = 24;

/// The order statistics used by the normalisation, for `n` values.
fn percentile_ranks(n: usize) -> (usize, usize) {
    let last = n.saturating_sub(1) as f64;
    (
        (0.01 * last).floor() as usize,
        (0.99 * last).ceil() as usize,
    )
}

/// Stretch limits (lo, hi) of integer pixels, from a histogram (O(n), no sort).
/// `hist` is a reusable buffer; it is resized as needed.
pub fn integer_limits(pixels: &Pixels, hist: &mut Vec<u32>) -> (f32, f32) {
    let bins = match pixels {
        Pixels::Gray8(_) => 256,
        Pixels::Gray16(_) => 65536,
    };
    hist.clear();
    hist.resize(bins, 0);
    match pixels {
        Pixels::Gray8(v) => v.iter().for_each(|&p| hist[p as usize] += 1),
        Pixels::Gray16(v) => v.iter().for_each(|&p| hist[p as usize] += 1),
    }
    let (k_lo, k_hi) = percentile_ranks(pixels.len());
    let (mut lo, mut hi) = (None, None);
    let mut seen = 0usize;
    for (value, &count) in hist.iter().enumerate() {
        seen += count as usize;
        // The k-th smallest value (0-based) is the first whose cumulative count exceeds k.
        if lo.is_none() && seen > k_lo {
            lo = Some(value);
        }
        if seen > k_hi {
            hi = Some(value);
            break;
        }
    }
    finish_limits(lo.unwrap_or(0) as f32, hi.unwrap_or(0) as f32)
}

/// Stretch limits of float values (used for the small module crops).
/// `scratch` is reused between calls.
pub(crate) fn float_limits(values: &[f32], scratch: &mut Vec<f32>) -> (f32, f32) {
    if values.is_empty() {
        return (0.0, 1.0);
    }
    scratch.clear();
    scratch.extend_from_slice(values);
    let (k_lo, k_hi) = percentile_ranks(values.len());
    let lo = *scratch.select_nth_unstable_by(k_lo, f32::total_cmp).1;
    let hi = *scratch.select_nth_unstable_by(k_hi, f32::total_cmp).1;
    finish_limits(lo, hi)
}

fn finish_limits(lo: f32, hi: f32) -> (f32, f32) {
    if hi <= lo {
        (lo, lo + 1.0)
    } else {
        (lo, hi)
    }
}

/// Maps a value into 0..1 with the stretch limits (the exact formula of the contract).
#[inline]
pub(crate) fn stretch(v: f32, lo: f32, hi: f32) -> f32 {
    ((v - lo) / (hi - lo)).clamp(0.0, 1.0)
}

/// Normalises a frame into `out` (row-major, frame size).
pub fn normalise_frame(frame: &Frame, hist: &mut Vec<u32>, out: &mut Vec<f32>) {
    let (lo, hi) = integer_limits(frame.pixels(), hist);
    out.clear();
    match frame.pixels() {
        Pixels::Gray8(v) => out.extend(v.iter().map(|&p| stretch(p as f32, lo, hi))),
        Pixels::Gray16(v) => out.extend(v.iter().map(|&p| stretch(p as f32, lo, hi))),
    }
}

/// Source index pair and weight for one output coordinate of a half-pixel
/// bilinear resize (the contract's formula).
#[derive(Debug, Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    frac: f32,
}

fn taps(input: usize, output: usize) -> Vec<Tap> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|d| {
            let src = ((d as f32 + 0.5) * scale - 0.5).clamp(0.0, (input - 1) as f32);
            let i0 = src.floor() as usize;
            Tap {
                i0,
                i1: (i0 + 1).min(input - 1),
                frac: src - i0 as f32,
            }
        })
        .collect()
}

/// Half-pixel-centre bilinear resize of a single-channel f32 image.
pub fn resize_bilinear(
    src: &[f32],
    in_w: usize,
    in_h: usize,
    out_w: usize,
    out_h: usize,
    out: &mut Vec<f32>,
) {
    let (tx, ty) = (taps(in_w, out_w), taps(in_h, out_h));
    out.clear();
    out.reserve(out_w * out_h);
    for t in &ty {
        let (r0, r1) = (&src[t.i0 * in_w..][..in_w], &src[t.i1 * in_w..][..in_w]);
        for s in &tx {
            let top = r0[s.i0] + (r0[s.i1] - r0[s.i0]) * s.frac;
            let bottom = r1[s.i0] + (r1[s.i1] - r1[s.i0]) * s.frac;
            out.push(top + (bottom - top) * t.frac);
        }
    }
}

/// Sorts four corners into the canonical order TL, TR, BR, BL: ascending
/// angle around their centre in screen coordinates (y down).
pub(crate) fn canonical_corners(quad: &Quad) -> [Point; 4] {
    let c = quad.center();
    let mut pts = quad.0;
    pts.sort_by(|a, b| {
        let aa = (a.y - c.y).atan2(a.x - c.x);
        let ab = (b.y - c.y).atan2(b.x - c.x);
        aa.total_cmp(&ab)
    });
    pts
}

/// Bilinear sample of raw frame values at a continuous pixel position
/// (pixel centres at integer + 0.5), clamped to the frame.
#[inline]
fn sample(frame: &Frame, x: f32, y: f32) -> f32 {
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let x = (x - 0.5).clamp(0.0, (w - 1) as f32);
    let y = (y - 0.5).clamp(0.0, (h - 1) as f32);
    let (x0, y0) = (x.floor() as usize, y.floor() as usize);
    let (x1, y1) = ((x0 + 1).min(w - 1), (y0 + 1).min(h - 1));
    let (fx, fy) = (x - x0 as f32, y - y0 as f32);
    let p = |xx: usize, yy: usize| frame.pixels().get(yy * w + xx) as f32;
    let top = p(x0, y0) + (p(x1, y0) - p(x0, y0)) * fx;
    let bottom = p(x0, y1) + (p(x1, y1) - p(x0, y1)) * fx;
    top + (bottom - top) * fy
}

/// Cuts the module crop the classifier sees: the quad warped onto a
/// `CROP_H` x `CROP_W` portrait grid (long side vertical), then normalised.
/// `out` receives `CROP_H * CROP_W` values; `scratch` is reused.
pub fn module_crop(frame: &Frame, quad: &Quad, scratch: &mut Vec<f32>, out: &mut Vec<f32>) {
    let [tl, tr, br, bl] = canonical_corners(quad);
    let dist = |a: Point, b: Point| ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt();
    // Landscape module: rotate the corner order so the long side runs down the crop.
    let [tl, tr, br, bl] = if dist(tl, tr) > dist(tl, bl) {
        [tr, br, bl, tl]
    } else {
        [tl, tr, br, bl]
    };
    out.clear();
    for v in 0..CROP_H {
        let t = (v as f32 + 0.5) / CROP_H as f32;
        for u in 0..CROP_W {
            let s = (u as f32 + 0.5) / CROP_W as f32;
            let (a, b, c, d) = ((1.0 - s) * (1.0 - t), s * (1.0 - t), s * t, (1.0 - s) * t);
            let x = a * tl.x + b * tr.x + c * br.x + d * bl.x;
            let y = a * tl.y + b * tr.y + c * br.y + d * bl.y;
            out.push(sample(frame, x, y));
        }
    }
    let (lo, hi) = float_limits(out, scratch);
    out.iter_mut().for_each(|v| *v = stretch(*v, lo, hi));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::radiometry::Radiometry;
    use std::time::SystemTime;

    fn frame16(w: u32, h: u32, f: impl Fn(u32, u32) -> u16) -> Frame {
        let pixels = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        Frame::new(
            w,
            h,
            Pixels::Gray16(pixels),
            Radiometry::Relative,
            0,
            SystemTime::UNIX_EPOCH,
            "test".into(),
        )
        .unwrap()
    }

    #[test]
    fn histogram_and_sort_limits_agree() {
        let f = frame16(37, 23, |x, y| ((x * 7919 + y * 104729) % 5000) as u16);
        let mut hist = Vec::new();
        let floats: Vec<f32> = match f.pixels() {
            Pixels::Gray16(v) => v.iter().map(|&p| p as f32).collect(),
            _ => unreachable!(),
        };
        assert_eq!(
            integer_limits(f.pixels(), &mut hist),
            float_limits(&floats, &mut Vec::new())
        );
    }

    #[test]
    fn flat_frame_does_not_divide_by_zero() {
        let f = frame16(8, 8, |_, _| 1000);
        let mut out = Vec::new();
        normalise_frame(&f, &mut Vec::new(), &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn resize_identity_and_halving() {
        let src: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut out = Vec::new();
        resize_bilinear(&src, 4, 4, 4, 4, &mut out);
        assert_eq!(out, src);
        resize_bilinear(&src, 4, 4, 2, 2, &mut out);
        // Half-pixel centres: output pixel 0 samples input coordinate 0.5 in x and y.
        assert_eq!(out, vec![2.5, 4.5, 10.5, 12.5]);
    }

    #[test]
    fn canonical_order_of_upright_rectangle() {
        let p = |x, y| Point { x, y };
        // Data set order TR, TL, BL, BR.
        let q = Quad([p(10.0, 0.0), p(0.0, 0.0), p(0.0, 20.0), p(10.0, 20.0)]);
        assert_eq!(
            canonical_corners(&q),
            [p(0.0, 0.0), p(10.0, 0.0), p(10.0, 20.0), p(0.0, 20.0)]
        );
    }

    #[test]
    fn crop_of_a_landscape_module_is_portrait() {
        // Hot left half of a landscape module: after rotation, it becomes one end of the crop.
        let f = frame16(100, 50, |x, _| if x < 50 { 2000 } else { 1000 });
        let p = |x, y| Point { x, y };
        let q = Quad([p(100.0, 0.0), p(0.0, 0.0), p(0.0, 50.0), p(100.0, 50.0)]);
        let mut out = Vec::new();
        module_crop(&f, &q, &mut Vec::new(), &mut out);
        assert_eq!(out.len(), CROP_H * CROP_W);
        let top: f32 = out[..CROP_W].iter().sum();
        let bottom: f32 = out[(CROP_H - 1) * CROP_W..].iter().sum();
        assert!(
            (top - bottom).abs() > 10.0,
            "rows differ along the long side"
        );
    }
}
