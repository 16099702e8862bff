//! What a file says about its frame beyond the pixels, carried with the
//! [`Frame`](crate::frame::Frame) into the reports: which calibration the
//! temperatures follow (and why they are not calibrated when they are not),
//! the plausibility checks a frame failed, and the camera's position and pose
//! for ground positions.
//!
//! Plausibility (a flagged frame still gets module detection; the flag is in
//! the JSON and the text summary):
//! - scene temperatures: the 1st or 99th percentile outside -60..+200 C
//!   ([`SCENE_RANGE_C`]) means the calibration is wrong for this frame (no
//!   PV survey scene is colder or hotter over 1 % of its pixels);
//! - FLIR cameras that are sold without radiometry still write a Planck block
//!   (a FLIR Vue Pro 640 reads 95-108 C for modules in sunlight): such models
//!   ([`is_non_radiometric_flir`]) are read as relative values.
//!
//! Planck constants outside their known ranges are refused when the file is
//! read ([`crate::radiometry::PlanckParams::check`]).

use serde::Serialize;

use crate::exif::{CameraPosition, GroundPoint, Intrinsics, Pose};
use crate::pixels::Pixels;
use crate::radiometry::Radiometry;

/// Scene temperatures a PV survey frame can show, degrees C.
pub(crate) const SCENE_RANGE_C: (f32, f32) = (-60.0, 200.0);

/// The extra facts about a frame (see the module doc). Empty for camera
/// frames and files that carry none.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Provenance {
    /// The camera as the file names it ("DJI Zenmuse H20T", "FLIR XT2").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) camera: Option<String>,
    /// Which calibration the values follow.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calibration: Option<CalibrationNote>,
    /// Why the frame's temperatures may not be physical, one reason each.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    /// Where the capture time came from ("exif", "flir", "file time").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) time_source: Option<&'static str>,
    /// Camera position and pose, for ground positions of modules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera_position: Option<CameraView>,
}

/// Whether absolute temperatures are calibrated, with where the scale comes
/// from and, when not calibrated, why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationNote {
    /// True when the temperatures follow the camera's own calibration.
    pub calibrated: bool,
    /// The conversion: "flir-planck", "dji-kelvin64", "float-tiff",
    /// "flir-tlinear", "configured", "relative", ...
    pub kind: String,
    /// Why not calibrated, or what the scale is.
    pub reason: String,
}

/// The camera's position and pointing from the file's EXIF/XMP.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct CameraView {
    pub latitude: f64,
    pub longitude: f64,
    /// Metres above sea level, when recorded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub altitude: Option<f64>,
    /// Metres above the take-off point (DJI RelativeAltitude), when recorded:
    /// the height of the flat-ground projection.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) relative_altitude: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) gimbal_yaw: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) gimbal_pitch: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) gimbal_roll: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) flight_yaw: Option<f64>,
    /// The camera model used for projections, when known.
    #[serde(skip)]
    pub(crate) intrinsics: Option<Intrinsics>,
}

/// An estimated ground position of a pixel (module centre).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct GroundPosition {
    pub(crate) latitude: f64,
    pub(crate) longitude: f64,
    /// How it was obtained: always "flat-ground projection" today (see
    /// [`crate::exif::project_to_ground`] for the assumptions and the error).
    pub(crate) method: &'static str,
}

impl CameraView {
    /// From the EXIF/XMP position and pose; `intrinsics` when the camera's
    /// focal length and pixel pitch are known.
    pub(crate) fn new(p: &CameraPosition, pose: &Pose, intrinsics: Option<Intrinsics>) -> Self {
        CameraView {
            latitude: p.latitude_deg,
            longitude: p.longitude_deg,
            altitude: p.absolute_altitude_m,
            relative_altitude: p.relative_altitude_m,
            gimbal_yaw: pose.gimbal_yaw_deg,
            gimbal_pitch: pose.gimbal_pitch_deg,
            gimbal_roll: pose.gimbal_roll_deg,
            flight_yaw: pose.flight_yaw_deg,
            intrinsics,
        }
    }

    /// Where pixel (`u`, `v`) meets flat ground at the relative altitude;
    /// `None` without a height, a pose or a camera model, or above the horizon.
    pub(crate) fn ground_position(&self, u: f64, v: f64) -> Option<GroundPosition> {
        let position = CameraPosition {
            latitude_deg: self.latitude,
            longitude_deg: self.longitude,
            absolute_altitude_m: self.altitude,
            relative_altitude_m: self.relative_altitude,
        };
        let pose = Pose {
            gimbal_yaw_deg: self.gimbal_yaw,
            gimbal_pitch_deg: self.gimbal_pitch,
            gimbal_roll_deg: self.gimbal_roll,
            flight_yaw_deg: self.flight_yaw,
        };
        let g: GroundPoint = crate::exif::project_to_ground(
            u,
            v,
            self.intrinsics.as_ref()?,
            &position,
            &pose,
            self.relative_altitude?,
        )?;
        Some(GroundPosition {
            latitude: g.latitude_deg,
            longitude: g.longitude_deg,
            method: "flat-ground projection",
        })
    }
}

/// Whether a FLIR camera model is sold without radiometry although its
/// files carry a Planck block: the Vue and Duo families, unless the model
/// has the radiometric "R" ("Vue Pro R 640 13mm", "Duo Pro R").
pub(crate) fn is_non_radiometric_flir(model: &str) -> bool {
    let mut words = model.split_whitespace();
    let family = words.next().unwrap_or("");
    (family.eq_ignore_ascii_case("Vue") || family.eq_ignore_ascii_case("Duo"))
        && !words.any(|w| w == "R")
}

/// The flag for a frame whose 1st or 99th percentile temperature lies
/// outside [`SCENE_RANGE_C`]; `None` when plausible or not absolute.
pub(crate) fn scene_flag(pixels: &Pixels, radiometry: &Radiometry) -> Option<String> {
    if !radiometry.is_absolute() || pixels.is_empty() {
        return None;
    }
    let mut hist = vec![0u32; 65_536];
    for i in 0..pixels.len() {
        hist[pixels.get(i) as usize] += 1;
    }
    let percentile = |q: f64| {
        let target = ((pixels.len() as f64 - 1.0) * q).round() as u64;
        let mut seen = 0u64;
        hist.iter()
            .position(|&n| {
                seen += n as u64;
                seen > target
            })
            .unwrap_or(0) as u16
    };
    let (lo_raw, hi_raw) = (percentile(0.01), percentile(0.99));
    let (lo, hi) = (radiometry.to_celsius(lo_raw), radiometry.to_celsius(hi_raw));
    let (min_c, max_c) = SCENE_RANGE_C;
    match (lo, hi) {
        (Some(lo), Some(hi)) if lo >= min_c && hi <= max_c => None,
        (Some(lo), Some(hi)) => Some(format!(
            "scene temperatures {lo:.1}..{hi:.1} C (1st..99th percentile) lie outside \
             {min_c}..{max_c} C: the calibration does not fit this frame"
        )),
        _ => Some(format!(
            "raw values {lo_raw}..{hi_raw} (1st..99th percentile) lie outside the \
             calibration's domain"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flir_models_without_radiometry() {
        for m in [
            "Vue Pro 640 9mm",
            "Vue Pro 336 13mm",
            "Duo Pro 640",
            "Vue 640",
        ] {
            assert!(is_non_radiometric_flir(m), "{m}");
        }
        for m in ["Vue Pro R 640 13mm", "Duo Pro R", "XT2", "T420", "AX8", ""] {
            assert!(!is_non_radiometric_flir(m), "{m}");
        }
    }

    #[test]
    fn scene_range() {
        let lin = Radiometry::Linear {
            scale: 0.01,
            offset: -273.15,
        };
        let ok = Pixels::Gray16(vec![29_815; 100]); // 25 C
        assert_eq!(scene_flag(&ok, &lin), None);
        let mut hot = vec![29_815u16; 100];
        hot[50..].fill(50_000); // 226.85 C over half the frame, printed 226.9
        let f = scene_flag(&Pixels::Gray16(hot), &lin).unwrap();
        assert!(f.contains("25.0..226.9 C"), "{f}");
        assert_eq!(scene_flag(&ok, &Radiometry::Relative), None);
    }
}
