//! Temperature statistics inside one module outline.
//!
//! Thermographers judge a module by its hottest point against its neighbours,
//! so for each module quadrilateral we compute min / max / mean / median and
//! the hot-spot pixel. Values are degrees C when the frame is radiometric
//! ([`Radiometry::is_absolute`]), else the raw pixel values ("relative" units).

use serde::{Deserialize, Serialize};

use crate::frame::Frame;
use crate::geometry::{Point, Quad};
use crate::radiometry::{CelsiusLut, Radiometry};

/// The unit of every temperature-like number in an analysis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum TemperatureUnit {
    /// Degrees Celsius (the frame carries absolute radiometry).
    Celsius,
    /// Raw pixel values: ordered like temperature, but without a scale.
    Relative,
}

/// Temperature statistics of the pixels inside one module quadrilateral.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ModuleTemperature {
    /// Coldest pixel.
    pub(crate) min: f32,
    /// Hottest pixel.
    pub(crate) max: f32,
    /// Mean over the module's pixels.
    pub(crate) mean: f32,
    /// Median over the module's pixels (robust against a single hot spot).
    pub(crate) median: f32,
    /// Centre of the hottest pixel, in frame pixel coordinates.
    pub(crate) hotspot: Point,
    /// Number of pixels that contributed.
    pub(crate) pixels: u32,
    /// `celsius` or `relative` (raw values).
    pub(crate) unit: TemperatureUnit,
}

/// Raw value -> temperature conversion for one [`Radiometry`]: the raw value
/// itself for relative frames, a [`CelsiusLut`] (built once per parameter set)
/// for absolute ones.
#[derive(Debug, Clone)]
pub(crate) enum Conversion {
    /// Relative units: the raw value.
    Relative,
    /// Degrees C by table look-up.
    Celsius(CelsiusLut),
}

impl Conversion {
    /// The conversion for `radiometry` (builds the 65,536-entry table for
    /// absolute radiometry: a few milliseconds for Planck).
    pub(crate) fn new(radiometry: &Radiometry) -> Conversion {
        radiometry
            .celsius_lut()
            .map_or(Conversion::Relative, Conversion::Celsius)
    }

    /// The unit of converted values.
    pub(crate) fn unit(&self) -> TemperatureUnit {
        match self {
            Conversion::Relative => TemperatureUnit::Relative,
            Conversion::Celsius(_) => TemperatureUnit::Celsius,
        }
    }

    /// Converts one raw value; `None` outside a calibration's domain.
    #[inline]
    pub(crate) fn convert(&self, raw: u16) -> Option<f32> {
        match self {
            Conversion::Relative => Some(raw as f32),
            Conversion::Celsius(lut) => lut.get(raw),
        }
    }
}

/// Computes [`ModuleTemperature`]s. Reuses its buffers across calls (no
/// allocation once they have grown to the largest module) and caches the
/// conversion table of the last radiometry seen (a survey's images share
/// their Planck constants; a camera's never change).
#[derive(Debug, Default)]
pub(crate) struct TemperatureMeter {
    /// Raw values of the pixels inside the current quad, in scan order.
    samples: Vec<u16>,
    /// The same values counted per raw value (in value order, for the median).
    histogram: Histogram,
    /// The radiometry the cached conversion was built for.
    cached: Option<(Radiometry, Conversion)>,
}

impl TemperatureMeter {
    /// A meter with an empty buffer and no cached table.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// The (cached) conversion for `radiometry`.
    pub(crate) fn conversion(&mut self, radiometry: &Radiometry) -> &Conversion {
        if self.cached.as_ref().is_some_and(|(r, _)| r != radiometry) {
            self.cached = None;
        }
        let (_, c) = self
            .cached
            .get_or_insert_with(|| (radiometry.clone(), Conversion::new(radiometry)));
        c
    }

    /// [`Self::measure_keeping`] without the values.
    #[cfg(test)]
    pub(crate) fn measure(
        &mut self,
        frame: &Frame,
        radiometry: &Radiometry,
        quad: &Quad,
    ) -> Option<ModuleTemperature> {
        self.measure_keeping(frame, radiometry, quad, None)
    }

    /// Statistics of the pixels of `frame` whose centres lie inside `quad`,
    /// converted with `radiometry` (normally `frame.radiometry`, possibly with
    /// object-parameter overrides applied).
    ///
    /// Returns `None` when no pixel lies inside the quad (empty or degenerate
    /// quad, quad outside the frame), when the frame's pixel buffer does not
    /// match its size, or when no pixel converts to a temperature.
    ///
    /// Assumes the raw -> temperature mapping is non-decreasing (true for the
    /// Planck curve and for linear cameras with a positive scale), so the
    /// median temperature is the temperature of the median raw value and the
    /// hottest raw pixel is the hottest pixel.
    ///
    /// Also fills `values` (when given) with the module's converted values
    /// and their pixel counts, ascending: what a statistic that depends on the
    /// whole frame (the fusion's `hot_fraction`) needs later, without reading
    /// the pixels again.
    pub(crate) fn measure_keeping(
        &mut self,
        frame: &Frame,
        radiometry: &Radiometry,
        quad: &Quad,
        values: Option<&mut Vec<(f32, u32)>>,
    ) -> Option<ModuleTemperature> {
        let (w, h) = (frame.width() as usize, frame.height() as usize);
        let b = quad.bbox();
        if !(b.x0.is_finite() && b.y0.is_finite() && b.x1.is_finite() && b.y1.is_finite()) {
            return None;
        }
        let b = b.clipped(w as f32, h as f32);
        let (x0, x1) = (b.x0.floor() as usize, (b.x1.ceil() as usize).min(w));
        let (y0, y1) = (b.y0.floor() as usize, (b.y1.ceil() as usize).min(h));

        let mut samples = std::mem::take(&mut self.samples);
        samples.clear();
        let mut hottest: Option<(u16, usize, usize)> = None;
        for y in y0..y1 {
            // Pixel centres are inside by the quad's even-odd rule.
            let crossings = quad.crossings_at(y as f32 + 0.5);
            if crossings.is_empty() {
                continue;
            }
            let row = y * w;
            for x in x0..x1 {
                if !crossings.inside(x as f32 + 0.5) {
                    continue;
                }
                let v = frame.pixels().get(row + x);
                samples.push(v);
                if hottest.is_none_or(|(m, _, _)| v > m) {
                    hottest = Some((v, x, y));
                }
            }
        }
        self.histogram.fill(&samples);
        self.samples = samples;
        let histogram = std::mem::take(&mut self.histogram);
        let conv = self.conversion(radiometry);
        let unit = conv.unit();
        let stats = stats_of(&histogram, |raw| conv.convert(raw));
        if let Some(values) = values {
            values.clear();
            values.extend(
                histogram
                    .runs()
                    .filter_map(|(raw, k)| conv.convert(raw).map(|t| (t, k))),
            );
        }
        self.histogram = histogram;
        let (_, hx, hy) = hottest?;
        stats.map(|s| ModuleTemperature {
            min: s.min,
            max: s.max,
            mean: s.mean,
            median: s.median,
            hotspot: Point {
                x: hx as f32 + 0.5,
                y: hy as f32 + 0.5,
            },
            pixels: s.count,
            unit,
        })
    }
}

/// Min / max / mean / median of converted values.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Stats {
    min: f32,
    max: f32,
    mean: f32,
    median: f32,
    count: u32,
}

/// How many samples have each raw value, over the range the samples span:
/// the samples in value order without sorting them, in O(n + range) (module
/// temperatures span a few hundred raw values; a dead pixel at 0 costs one
/// pass over at most 65,536 counters).
#[derive(Debug, Default)]
struct Histogram {
    /// The raw value of `counts[0]`.
    base: u16,
    counts: Vec<u32>,
}

impl Histogram {
    /// Counts `samples` (reusing the buffer).
    fn fill(&mut self, samples: &[u16]) {
        self.counts.clear();
        let (Some(&lo), Some(&hi)) = (samples.iter().min(), samples.iter().max()) else {
            return;
        };
        self.base = lo;
        self.counts.resize(usize::from(hi - lo) + 1, 0);
        for &v in samples {
            self.counts[usize::from(v - lo)] += 1;
        }
    }

    /// `(raw value, count)` for every value present, ascending.
    fn runs(&self) -> impl Iterator<Item = (u16, u32)> + '_ {
        self.counts
            .iter()
            .enumerate()
            .filter(|(_, &k)| k > 0)
            .map(|(i, &k)| (self.base + i as u16, k))
    }
}

/// Statistics of the counted raw values. Each distinct raw value is converted
/// once per pass, so a Planck conversion costs a look-up per distinct value
/// rather than per pixel. Values that do not convert are skipped.
fn stats_of(histogram: &Histogram, conv: impl Fn(u16) -> Option<f32>) -> Option<Stats> {
    let runs = || histogram.runs();
    let (mut n, mut sum) = (0u32, 0f64);
    let (mut min, mut max) = (f32::INFINITY, f32::NEG_INFINITY);
    for (raw, k) in runs() {
        if let Some(t) = conv(raw) {
            n += k;
            sum += t as f64 * k as f64;
            min = min.min(t);
            max = max.max(t);
        }
    }
    if n == 0 {
        return None;
    }
    // Positions of the two middle values among the valid ones (equal for odd n).
    let (lo, hi) = ((n - 1) / 2, n / 2);
    let (mut lo_t, mut hi_t) = (None, None);
    let mut seen = 0u32;
    for (raw, k) in runs() {
        let Some(t) = conv(raw) else { continue };
        if lo_t.is_none() && lo < seen + k {
            lo_t = Some(t);
        }
        if hi < seen + k {
            hi_t = Some(t);
            break;
        }
        seen += k;
    }
    let median = match (lo_t, hi_t) {
        (Some(a), Some(b)) => 0.5 * (a + b),
        _ => return None,
    };
    Some(Stats {
        min,
        max,
        mean: (sum / n as f64) as f32,
        median,
        count: n,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    /// A `w` x `h` relative 16-bit frame filled with `bg`.
    pub(crate) fn frame16(w: u32, h: u32, bg: u16, radiometry: Radiometry) -> Frame {
        Frame::new(
            w,
            h,
            crate::frame::Pixels::Gray16(vec![bg; (w * h) as usize]),
            radiometry,
            0,
            SystemTime::UNIX_EPOCH,
            "test".into(),
        )
        .unwrap()
    }

    fn set(f: &mut Frame, x: u32, y: u32, v: u16) {
        if let crate::frame::Pixels::Gray16(p) = f.pixels() {
            let mut p = p.clone();
            p[(y * f.width() + x) as usize] = v;
            *f = Frame::new(
                f.width(),
                f.height(),
                crate::frame::Pixels::Gray16(p),
                f.radiometry.clone(),
                f.sequence,
                f.captured_at,
                f.origin.clone(),
            )
            .unwrap();
        }
    }

    #[test]
    fn exact_stats_inside_quad_ignore_outside_pixels() {
        let mut f = frame16(20, 10, 9999, Radiometry::Relative);
        // Quad covers pixels x 2..6, y 1..3 (4 x 2 = 8 pixels).
        let vals = [10u16, 20, 30, 40, 50, 60, 70, 80];
        for (i, v) in vals.iter().enumerate() {
            set(&mut f, 2 + (i as u32 % 4), 1 + i as u32 / 4, *v);
        }
        let t = TemperatureMeter::new()
            .measure(&f, &Radiometry::Relative, &Quad::rect(2.0, 1.0, 6.0, 3.0))
            .unwrap();
        assert_eq!(t.pixels, 8);
        assert_eq!((t.min, t.max, t.mean, t.median), (10.0, 80.0, 45.0, 45.0));
        assert_eq!(t.hotspot, Point { x: 5.5, y: 2.5 });
        assert_eq!(t.unit, TemperatureUnit::Relative);
    }

    #[test]
    fn linear_radiometry_gives_celsius() {
        // Lepton TLinear: centi-kelvin.
        let r = Radiometry::Linear {
            scale: 0.01,
            offset: -273.15,
        };
        let mut f = frame16(8, 8, 30315, r.clone()); // 30.0 C
        set(&mut f, 3, 3, 31315); // 40.0 C
        let t = TemperatureMeter::new()
            .measure(&f, &r, &Quad::rect(1.0, 1.0, 6.0, 6.0))
            .unwrap();
        assert_eq!(t.unit, TemperatureUnit::Celsius);
        assert!((t.max - 40.0).abs() < 1e-3 && (t.min - 30.0).abs() < 1e-3);
        assert!((t.median - 30.0).abs() < 1e-3);
        assert!((t.mean - (30.0 + 10.0 / 25.0)).abs() < 1e-3);
        assert_eq!(t.hotspot, Point { x: 3.5, y: 3.5 });
    }

    #[test]
    fn odd_input_gives_none_not_panic() {
        let f = frame16(8, 8, 1, Radiometry::Relative);
        let mut m = TemperatureMeter::new();
        let r = Radiometry::Relative;
        assert!(m.measure(&f, &r, &Quad::rect(3.0, 3.0, 3.0, 3.0)).is_none()); // empty
        assert!(m
            .measure(&f, &r, &Quad::rect(20.0, 20.0, 30.0, 30.0))
            .is_none()); // outside
        assert!(m
            .measure(&f, &r, &Quad::rect(-30.0, -30.0, -20.0, -20.0))
            .is_none());
        let nan = Point {
            x: f32::NAN,
            y: 0.0,
        };
        assert!(m.measure(&f, &r, &Quad([nan; 4])).is_none());
        // Partly outside: clipped.
        let t = m
            .measure(&f, &r, &Quad::rect(-5.0, -5.0, 2.0, 2.0))
            .unwrap();
        assert_eq!(t.pixels, 4);
        // A buffer that does not match the size never reaches `measure`: no
        // such frame can be built.
        let bad = Frame::new(
            100,
            f.height(),
            f.pixels().clone(),
            r.clone(),
            0,
            f.captured_at,
            "bad".into(),
        );
        assert!(bad.is_err());
    }

    fn stats_of_samples(samples: &[u16], conv: impl Fn(u16) -> Option<f32>) -> Option<Stats> {
        let mut h = Histogram::default();
        h.fill(samples);
        stats_of(&h, conv)
    }

    #[test]
    fn median_skips_values_that_do_not_convert() {
        let conv = |v: u16| if v == 0 { None } else { Some(v as f32) };
        let s = stats_of_samples(&[3, 0, 1, 0, 2, 3, 0], conv).unwrap();
        assert_eq!((s.count, s.min, s.max, s.median), (4, 1.0, 3.0, 2.5));
        assert!(stats_of_samples(&[0, 0], conv).is_none());
        assert!(stats_of_samples(&[], conv).is_none());
    }

    #[test]
    fn histogram_spans_the_whole_raw_range() {
        let s = stats_of_samples(&[65535, 0, 7, 65535], |v| Some(v as f32)).unwrap();
        assert_eq!((s.count, s.min, s.max), (4, 0.0, 65535.0));
        assert_eq!(s.median, 0.5 * (7.0 + 65535.0));
    }

    /// The per-point even-odd test, edge by edge: what the row crossings replace.
    fn contains_per_point(q: &Quad, p: Point) -> bool {
        let mut inside = false;
        for i in 0..4 {
            let (a, b) = (q.0[i], q.0[(i + 3) % 4]);
            if (a.y > p.y) != (b.y > p.y) && p.x < (b.x - a.x) * (p.y - a.y) / (b.y - a.y) + a.x {
                inside = !inside;
            }
        }
        inside
    }

    #[test]
    fn row_crossings_agree_with_the_per_point_test_on_a_tilted_quad() {
        let q = Quad([
            Point { x: 3.2, y: 1.1 },
            Point { x: 14.7, y: 2.9 },
            Point { x: 12.9, y: 9.6 },
            Point { x: 1.4, y: 7.3 },
        ]);
        for y in 0..12 {
            let row = q.crossings_at(y as f32 + 0.5);
            for x in 0..16 {
                let p = Point {
                    x: x as f32 + 0.5,
                    y: y as f32 + 0.5,
                };
                assert_eq!(row.inside(p.x), contains_per_point(&q, p), "{p:?}");
            }
        }
    }
}
