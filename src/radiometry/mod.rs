//! Radiometry: how a frame's raw values map to degrees C, in one place.
//!
//! - [`Radiometry`] says which mapping a frame's values follow: none
//!   (relative), a linear scale, or a FLIR Planck calibration.
//! - [`CelsiusLut`] turns a mapping into one look-up per pixel.
//! - `planck`: the FLIR Planck maths and the object parameters
//!   (emissivity, reflected temperature, atmosphere) a configuration may
//!   override.
//! - `linear`: the Lepton TLinear and TC001 scales, and the rule that tells
//!   a Lepton frame's content (centi-kelvin, raw counts or AGC) for the camera
//!   and the file readers alike.
//!
//! Containers (R-JPEG, FFF, camera buffers) are parsed elsewhere
//! ([`crate::flir`], [`crate::imageio`], [`crate::formats`]); they
//! only hand their values and parameters to this module.

mod linear;
mod planck;

pub(crate) use linear::{Y16Content, LEPTON_TLINEAR, TC001_LINEAR};
pub(crate) use planck::{ObjectParams, PlanckParams};

/// Kelvin at 0 degrees C.
pub(crate) const KELVIN: f64 = 273.15;

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
}
