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
            return Err(format!("{}: empty frame ({}x{})", self.origin, self.width, self.height));
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
