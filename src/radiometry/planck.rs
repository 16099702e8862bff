//! Planck calibration of FLIR radiometric cameras: raw counts to degrees C
//! with the emission of the reflected surroundings, the atmosphere and the IR
//! window taken out.
//!
//! The formula is the standard one (exiftool forum topic 4898, Thermimage
//! `raw2temp`): the raw value is corrected for the emission of the reflected
//! surroundings, the atmosphere and the IR window, then
//! `T = B / ln(R1 / (R2 * (S + O)) + F) - 273.15`.
//!
//! The atmosphere is one path over the whole object distance, between the
//! object and the IR window, as FLIR Tools models it (it matches FLIR Tools
//! to 0.0005 K). Thermimage's `raw2temp` splits the distance into two
//! half-distance paths with the window midway, which reads 0.1 K warmer at
//! 5 m and up to 0.9 K at 50 m and 80 C; no drone or mast set-up has a
//! window midway to the object, so that model is not offered.

use serde::{Deserialize, Serialize};

use super::KELVIN;

/// Planck and object parameters of a FLIR radiometric camera, as stored in
/// the FLIR APP1 CameraInfo record (names follow exiftool).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanckParams {
    /// Planck constant R1 of the sensor calibration.
    pub(crate) r1: f64,
    /// Planck constant R2 of the sensor calibration.
    pub(crate) r2: f64,
    /// Planck constant B (kelvin).
    pub(crate) b: f64,
    /// Planck constant F.
    pub(crate) f: f64,
    /// Planck offset O (raw counts).
    pub(crate) o: f64,
    /// Object emissivity (0..1].
    pub(crate) emissivity: f64,
    /// Object distance in metres (0 = no atmospheric correction).
    pub(crate) object_distance: f64,
    /// Reflected apparent temperature in degrees C.
    pub(crate) reflected_temp_c: f64,
    /// Atmospheric temperature in degrees C.
    pub(crate) atmospheric_temp_c: f64,
    /// IR window temperature in degrees C.
    pub(crate) ir_window_temp_c: f64,
    /// IR window transmission (0..1].
    pub(crate) ir_window_transmission: f64,
    /// Relative humidity, 0..1.
    pub(crate) relative_humidity: f64,
    /// Atmospheric transmission constant alpha1 (dry air, first band).
    pub(crate) alpha1: f64,
    /// Atmospheric transmission constant alpha2 (dry air, second band).
    pub(crate) alpha2: f64,
    /// Atmospheric transmission constant beta1 (water vapour, first band).
    pub(crate) beta1: f64,
    /// Atmospheric transmission constant beta2 (water vapour, second band).
    pub(crate) beta2: f64,
    /// Weight of the first band in the atmospheric transmission.
    pub(crate) x: f64,
}

/// Object parameters from the configuration that replace the file's values
/// (a camera on a mast looks at glass, not at the blackbody the file assumes).
/// Fields left unset keep the file's value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ObjectParams {
    /// Object emissivity (0..1]; PV module glass is about 0.85.
    pub(crate) emissivity: Option<f64>,
    /// Reflected apparent temperature in degrees C (sky seen in the glass).
    pub(crate) reflected_temp_c: Option<f64>,
    /// Distance from camera to object in metres (drives the atmospheric correction).
    pub(crate) object_distance: Option<f64>,
    /// Atmospheric temperature in degrees C.
    pub(crate) atmospheric_temp_c: Option<f64>,
    /// Relative humidity, 0..1.
    pub(crate) relative_humidity: Option<f64>,
}

impl ObjectParams {
    /// Checks the ranges (for config validation): emissivity in (0, 1],
    /// distance >= 0, humidity in [0, 1], finite temperatures.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if let Some(e) = self.emissivity {
            anyhow::ensure!(e > 0.0 && e <= 1.0, "emissivity {e} must be in (0, 1]");
        }
        if let Some(d) = self.object_distance {
            anyhow::ensure!(
                d.is_finite() && d >= 0.0,
                "object_distance {d} must be >= 0 metres"
            );
        }
        if let Some(h) = self.relative_humidity {
            anyhow::ensure!(
                (0.0..=1.0).contains(&h),
                "relative_humidity {h} must be in [0, 1]"
            );
        }
        for (name, t) in [
            ("reflected_temp_c", self.reflected_temp_c),
            ("atmospheric_temp_c", self.atmospheric_temp_c),
        ] {
            if let Some(t) = t {
                anyhow::ensure!(
                    t.is_finite() && t > -KELVIN,
                    "{name} {t} is not a temperature in degrees C"
                );
            }
        }
        Ok(())
    }
}

/// Ranges of the Planck constants of FLIR calibrations, generous bounds
/// around the cameras in public samples and exiftool's forum (R1 about
/// 13,000-400,000, R2 0.01-1, B 1,300-1,600 for LWIR and up to about 3,000
/// for MWIR cameras, F 1-2, O -8,000..0): a value outside is a damaged file.
pub(crate) struct PlanckRanges {
    pub(crate) r1: (f64, f64),
    pub(crate) r2: (f64, f64),
    pub(crate) b: (f64, f64),
    pub(crate) f: (f64, f64),
    pub(crate) o: (f64, f64),
}

/// See [`PlanckRanges`].
pub(crate) const PLANCK_RANGES: PlanckRanges = PlanckRanges {
    r1: (1_000.0, 2_000_000.0),
    r2: (1e-4, 10.0),
    b: (500.0, 5_000.0),
    f: (0.25, 4.0),
    o: (-30_000.0, 5_000.0),
};

/// The linear part of the raw correction, computed once per parameter set:
/// object raw signal `S = raw * gain - offset`.
#[derive(Debug, Clone, Copy)]
struct RawCorrection {
    gain: f64,
    offset: f64,
}

impl PlanckParams {
    /// Checks that the constants give a usable conversion: finite, the
    /// Planck constants inside [`PLANCK_RANGES`] (a damaged file, e.g. one
    /// flipped byte in PlanckB, gave 304,542 C), emissivity and window
    /// transmission in (0, 1].
    pub(crate) fn check(&self) -> Result<(), String> {
        let all = [
            self.r1,
            self.r2,
            self.b,
            self.f,
            self.o,
            self.emissivity,
            self.object_distance,
            self.reflected_temp_c,
            self.atmospheric_temp_c,
            self.ir_window_temp_c,
            self.ir_window_transmission,
            self.relative_humidity,
            self.alpha1,
            self.alpha2,
            self.beta1,
            self.beta2,
            self.x,
        ];
        if all.iter().any(|v| !v.is_finite()) {
            return Err(format!("non-finite constant in {self:?}"));
        }
        for (name, value, (lo, hi)) in [
            ("PlanckR1", self.r1, PLANCK_RANGES.r1),
            ("PlanckR2", self.r2, PLANCK_RANGES.r2),
            ("PlanckB", self.b, PLANCK_RANGES.b),
            ("PlanckF", self.f, PLANCK_RANGES.f),
            ("PlanckO", self.o, PLANCK_RANGES.o),
        ] {
            if !(lo..=hi).contains(&value) {
                return Err(format!(
                    "{name} {value} is outside the range of FLIR calibrations ({lo}..{hi}): \
                     the file's calibration block is damaged; temperatures from it would be \
                     wrong (re-copy the file from the camera)"
                ));
            }
        }
        if !(self.emissivity > 0.0 && self.emissivity <= 1.0) {
            return Err(format!("emissivity {} must be in (0, 1]", self.emissivity));
        }
        if !(self.ir_window_transmission > 0.0 && self.ir_window_transmission <= 1.0) {
            return Err(format!(
                "IR window transmission {} must be in (0, 1]",
                self.ir_window_transmission
            ));
        }
        if self.object_distance < 0.0 || self.relative_humidity < 0.0 {
            return Err("negative object distance or humidity".into());
        }
        Ok(())
    }

    /// These parameters with the set fields of `o` replacing the file's values.
    pub(crate) fn with_overrides(&self, o: &ObjectParams) -> PlanckParams {
        PlanckParams {
            emissivity: o.emissivity.unwrap_or(self.emissivity),
            reflected_temp_c: o.reflected_temp_c.unwrap_or(self.reflected_temp_c),
            object_distance: o.object_distance.unwrap_or(self.object_distance),
            atmospheric_temp_c: o.atmospheric_temp_c.unwrap_or(self.atmospheric_temp_c),
            relative_humidity: o.relative_humidity.unwrap_or(self.relative_humidity),
            ..*self
        }
    }

    /// Raw signal of a blackbody at `t_c` degrees C.
    fn blackbody_raw(&self, t_c: f64) -> f64 {
        self.r1 / (self.r2 * ((self.b / (t_c + KELVIN)).exp() - self.f)) - self.o
    }

    /// Atmospheric transmission over the whole object distance (one path, as
    /// FLIR Tools computes it), from humidity via alpha/beta/X.
    fn atmospheric_transmission(&self) -> f64 {
        let t = self.atmospheric_temp_c;
        let h2o = self.relative_humidity
            * (1.5587 + 0.06939 * t - 0.00027816 * t * t + 0.00000068455 * t * t * t).exp();
        let d = self.object_distance.sqrt();
        let s = h2o.sqrt();
        self.x * (-d * (self.alpha1 + self.beta1 * s)).exp()
            + (1.0 - self.x) * (-d * (self.alpha2 + self.beta2 * s)).exp()
    }

    /// The emission corrections folded into a gain and an offset. The signal
    /// reaching the camera is `irt * (tau * (e * obj + (1 - e) * refl) + (1 -
    /// tau) * atm) + (1 - irt) * wind`: object and reflection through the
    /// atmosphere, the atmosphere's own emission, all through the IR window,
    /// plus the window's emission (anti-reflective window: no reflection term).
    fn correction(&self) -> RawCorrection {
        let e = self.emissivity;
        let tau = self.atmospheric_transmission();
        let irt = self.ir_window_transmission;
        let refl = self.blackbody_raw(self.reflected_temp_c);
        let atm = self.blackbody_raw(self.atmospheric_temp_c);
        let wind = self.blackbody_raw(self.ir_window_temp_c);
        let refl1 = (1.0 - e) / e * refl;
        let atm1 = (1.0 - tau) / e / tau * atm;
        let wind1 = (1.0 - irt) / e / tau / irt * wind;
        RawCorrection {
            gain: 1.0 / (e * tau * irt),
            offset: refl1 + atm1 + wind1,
        }
    }

    /// Temperature of an object raw signal (after correction).
    fn object_celsius(&self, s: f64) -> f64 {
        self.b / (self.r1 / (self.r2 * (s + self.o)) + self.f).ln() - KELVIN
    }

    /// Degrees C of one raw value. NaN when the value lies outside the
    /// calibration's domain (e.g. raw 0 with a negative PlanckO).
    /// For whole frames use [`PlanckParams::celsius_table`].
    pub(crate) fn raw_to_celsius(&self, raw: u16) -> f32 {
        let c = self.correction();
        self.object_celsius(raw as f64 * c.gain - c.offset) as f32
    }

    /// Degrees C for every possible raw value (65,536 entries, NaN outside the
    /// calibration's domain): built once per parameter set, then a frame
    /// converts with one table look-up per pixel.
    pub(crate) fn celsius_table(&self) -> Vec<f32> {
        let c = self.correction();
        (0..=u16::MAX)
            .map(|raw| self.object_celsius(raw as f64 * c.gain - c.offset) as f32)
            .collect()
    }

    /// The raw value (not rounded, may lie outside 0..65535) that reads as
    /// `celsius`: the inverse of [`PlanckParams::raw_to_celsius`], for turning
    /// temperature thresholds into raw thresholds.
    pub(crate) fn celsius_to_raw(&self, celsius: f32) -> f32 {
        let c = self.correction();
        ((self.blackbody_raw(celsius as f64) + c.offset) / c.gain) as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flir::read_file;

    fn fixture(rel: &str) -> std::path::PathBuf {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures")
            .join(rel)
    }

    #[test]
    fn table_scalar_and_inverse_agree() {
        let p = read_file(&fixture("pv/images/20180630_154039.jpg"))
            .unwrap()
            .planck;
        let p = p.with_overrides(&ObjectParams {
            emissivity: Some(0.85),
            reflected_temp_c: Some(-10.0),
            ..Default::default()
        });
        assert_eq!(p.emissivity, 0.85);
        assert_eq!(p.object_distance, 50.0);
        let table = p.celsius_table();
        for raw in [6000u16, 7500, 8190, 9000, 12000] {
            let t = p.raw_to_celsius(raw);
            assert_eq!(t, table[raw as usize]);
            let back = p.celsius_to_raw(t);
            assert!((back - raw as f32).abs() < 0.05, "{raw} -> {t} -> {back}");
        }
        // Lower emissivity: the same raw reads hotter.
        let file = read_file(&fixture("pv/images/20180630_154039.jpg"))
            .unwrap()
            .planck;
        assert!(p.raw_to_celsius(8190) > file.raw_to_celsius(8190));
    }

    /// The single-path atmosphere by hand, on the FLIR Vue Pro frame (50 m,
    /// 22.0 C air, 45 % humidity, emissivity 1, window transmission 1), raw 8190:
    /// - water vapour h2o = 0.45 * exp(1.5587 + 0.06939*22 - 0.00027816*22^2
    ///   + 0.00000068455*22^3) = 8.66621, sqrt = 2.94384;
    /// - tau = X exp(-sqrt(50) (a1 + b1 sqrt h2o)) + (1 - X) exp(-sqrt(50)
    ///   (a2 + b2 sqrt h2o)) with X 1.9, a1 0.006569, b1 -0.002276, a2 0.012620,
    ///   b2 -0.006670: tau = 0.955991 (two paths of 25 m: 0.969117 each);
    /// - atmosphere raw = R1 / (R2 (exp(B / 295.15) - F)) - O = 3268.643;
    /// - object signal S = 8190 / tau - (1 - tau) / tau * 3268.643 = 8416.552;
    /// - T = 1428 / ln(17096.453 / (0.0466422 (8416.552 - 342)) + 1) - 273.15
    ///   = 1428 / ln(46.39509) - 273.15 = 98.997 C.
    ///
    /// The two-path model of the previous versions gave 100.076 C.
    #[test]
    fn single_path_atmosphere_matches_hand_computation() {
        let p = read_file(&fixture("pv/images/20180630_154039.jpg"))
            .unwrap()
            .planck;
        assert_eq!((p.object_distance, p.emissivity), (50.0, 1.0));
        assert!((p.atmospheric_transmission() - 0.955_991).abs() < 1e-6);
        let t = p.raw_to_celsius(8190);
        assert!((t - 98.997).abs() < 0.001, "{t}");
        assert!((t - 100.076).abs() > 1.0, "two-path result {t}");
    }

    #[test]
    fn damaged_planck_constants_are_refused() {
        let p = read_file(&fixture("pv/images/001R.jpg")).unwrap().planck;
        assert_eq!(p.check(), Ok(()));
        // PlanckB 1428 is the f32 0x44B28000; one flipped bit in its high byte
        // (0x48) gives 365,568 and modules of hundreds of thousands of C.
        let b = f32::from_bits(0x48B2_8000) as f64;
        let err = PlanckParams { b, ..p }.check().unwrap_err();
        assert!(
            err.contains("PlanckB 365568") && err.contains("damaged"),
            "{err}"
        );
        assert!(PlanckParams { r1: -1.0, ..p }
            .check()
            .unwrap_err()
            .contains("PlanckR1"));
        assert!(PlanckParams { o: f64::NAN, ..p }.check().is_err());
    }

    #[test]
    fn out_of_domain_raw_is_nan_not_panic() {
        let p = read_file(&fixture("pv/images/001R.jpg")).unwrap().planck;
        assert!(p.raw_to_celsius(0).is_nan());
    }
}
