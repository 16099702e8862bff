//! The one frame type that flows through the pipeline, whatever produced it
//! (a V4L2 camera, a replayed file, an R-JPEG from a survey).

use std::time::SystemTime;

/// Pixel data of a single-channel thermal frame, row-major, no padding.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// 8-bit grey (AGC rendering, GREY/YUYV luma, or an 8-bit image file).
    Gray8(Vec<u8>),
    /// 16-bit values: radiometric (see [`Radiometry`]) or raw sensor counts.
    Gray16(Vec<u16>),
}

impl Pixels {
    /// Number of pixels.
    pub fn len(&self) -> usize {
        match self {
            Pixels::Gray8(v) => v.len(),
            Pixels::Gray16(v) => v.len(),
        }
    }

    /// True when there are no pixels.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value of pixel `i` widened to u16 (8-bit values keep their 0..255 range).
    #[inline]
    pub fn get(&self, i: usize) -> u16 {
        match self {
            Pixels::Gray8(v) => v[i] as u16,
            Pixels::Gray16(v) => v[i],
        }
    }
}

/// Planck and object parameters of a FLIR radiometric camera, as stored in
/// the FLIR APP1 CameraInfo record (names follow exiftool).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanckParams {
    pub r1: f64,
    pub r2: f64,
    pub b: f64,
    pub f: f64,
    pub o: f64,
    /// Object emissivity (0..1].
    pub emissivity: f64,
    /// Object distance in metres (0 = no atmospheric correction).
    pub object_distance: f64,
    /// Reflected apparent temperature in degrees C.
    pub reflected_temp_c: f64,
    /// Atmospheric temperature in degrees C.
    pub atmospheric_temp_c: f64,
    /// IR window temperature in degrees C.
    pub ir_window_temp_c: f64,
    /// IR window transmission (0..1].
    pub ir_window_transmission: f64,
    /// Relative humidity, 0..1.
    pub relative_humidity: f64,
    pub alpha1: f64,
    pub alpha2: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub x: f64,
}

/// How raw pixel values map to temperature.
#[derive(Debug, Clone, PartialEq)]
pub enum Radiometry {
    /// No absolute temperature: AGC output or uncalibrated counts.
    /// Analysis then works in relative units.
    Relative,
    /// Linear cameras: degrees C = raw * scale + offset
    /// (Lepton TLinear: 0.01, -273.15; TC001 plane: 1/64, -273.15).
    Linear { scale: f32, offset: f32 },
    /// FLIR R-JPEG / FFF raw counts with the Planck constants of the file.
    Planck(PlanckParams),
}

impl Radiometry {
    /// Whether the values convert to absolute temperatures.
    pub fn is_absolute(&self) -> bool {
        !matches!(self, Radiometry::Relative)
    }

    /// Degrees C of one raw pixel value: the one conversion used everywhere.
    /// `None` for [`Radiometry::Relative`] and for values outside a Planck
    /// calibration's domain. For whole frames build a [`CelsiusLut`] once.
    pub fn to_celsius(&self, raw: u16) -> Option<f32> {
        let t = match self {
            Radiometry::Relative => return None,
            Radiometry::Linear { scale, offset } => raw as f32 * scale + offset,
            Radiometry::Planck(p) => p.raw_to_celsius(raw),
        };
        t.is_finite().then_some(t)
    }

    /// The raw value (not rounded) that reads as `celsius`, e.g. to turn a
    /// temperature threshold into a raw one. `None` for Relative.
    pub fn celsius_to_raw(&self, celsius: f32) -> Option<f32> {
        let raw = match self {
            Radiometry::Relative => return None,
            Radiometry::Linear { scale, offset } => (celsius - offset) / scale,
            Radiometry::Planck(p) => p.celsius_to_raw(celsius),
        };
        raw.is_finite().then_some(raw)
    }

    /// A raw -> degrees C table for all 65,536 values (the Planck formula costs
    /// a logarithm per pixel; the table one look-up). `None` for Relative.
    pub fn celsius_lut(&self) -> Option<CelsiusLut> {
        let table = match self {
            Radiometry::Relative => return None,
            Radiometry::Linear { .. } => (0..=u16::MAX)
                .map(|raw| self.to_celsius(raw).unwrap_or(f32::NAN))
                .collect(),
            Radiometry::Planck(p) => p.celsius_table(),
        };
        Some(CelsiusLut(table))
    }
}

/// Degrees C for every u16 raw value of one [`Radiometry`], built once per
/// parameter set by [`Radiometry::celsius_lut`]. NaN marks values outside the
/// calibration's domain.
#[derive(Debug, Clone, PartialEq)]
pub struct CelsiusLut(Vec<f32>);

impl CelsiusLut {
    /// Degrees C of `raw`, `None` outside the calibration's domain.
    #[inline]
    pub fn get(&self, raw: u16) -> Option<f32> {
        let t = self.0[raw as usize];
        t.is_finite().then_some(t)
    }

    /// The whole table (index = raw value), NaN outside the domain.
    pub fn as_slice(&self) -> &[f32] {
        &self.0
    }
}

/// One captured thermal frame.
#[derive(Debug, Clone)]
pub struct Frame {
    pub width: u32,
    pub height: u32,
    pub pixels: Pixels,
    pub radiometry: Radiometry,
    /// Monotonic sequence number assigned by the source (gaps = drops).
    pub sequence: u64,
    /// Capture time (driver timestamp for cameras, file time or now for replays).
    pub captured_at: SystemTime,
    /// Where the frame came from (device path or file name), for logs and reports.
    pub origin: String,
}

impl Frame {
    /// Checks that the pixel buffer matches the declared size.
    pub fn validate(&self) -> Result<(), String> {
        let expected = self.width as usize * self.height as usize;
        if self.width == 0 || self.height == 0 {
            return Err(format!(
                "{}: empty frame ({}x{})",
                self.origin, self.width, self.height
            ));
        }
        if self.pixels.len() != expected {
            return Err(format!(
                "{}: frame is {}x{} but carries {} pixels (expected {expected})",
                self.origin,
                self.width,
                self.height,
                self.pixels.len()
            ));
        }
        Ok(())
    }
}
