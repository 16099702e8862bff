//! Cameras whose values are a linear temperature scale: FLIR Lepton with
//! TLinear on (centi-kelvin) and the TOPDON TC001 / InfiRay temperature plane
//! (1/64 kelvin); and the one rule that tells what a Lepton frame holds, used
//! by the camera decoder and the file reader alike.

use super::{Radiometry, KELVIN};

/// Degrees C of 0 K, the offset of every kelvin-based linear scale.
const KELVIN_OFFSET_C: f32 = -(KELVIN as f32);

/// Lepton TLinear output (V4L2 `Y16`, `.y16` files, tCam `.tjsn`):
/// centi-kelvin per count.
pub(crate) const LEPTON_TLINEAR: Radiometry = Radiometry::Linear {
    scale: 0.01,
    offset: KELVIN_OFFSET_C,
};

/// TC001 / InfiRay temperature plane: 1/64 kelvin per count.
pub(crate) const TC001_LINEAR: Radiometry = Radiometry::Linear {
    scale: 1.0 / 64.0,
    offset: KELVIN_OFFSET_C,
};

/// Largest value of an 8-bit AGC rendering carried in 16-bit words.
const AGC_MAX: u16 = 255;

/// Median below which a 16-bit Lepton frame is raw counts, not centi-kelvin:
/// 20,000 cK is -73.15 degrees C, colder than any scene a Lepton measures
/// (its range starts at -10 C), while raw 14-bit counts never reach 16,384.
const CENTIKELVIN_MIN_MEDIAN: u16 = 20_000;

/// What a Lepton frame's 16-bit values hold. The camera sends no flag saying
/// so, so it is judged from the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Y16Content {
    /// TLinear on: centi-kelvin of a real scene.
    CentiKelvin,
    /// All values <= 255: the camera's AGC output, no temperature.
    Agc,
    /// Raw 14-bit sensor counts (TLinear off), no absolute temperature.
    RawCounts,
}

impl Y16Content {
    /// Classifies a Lepton frame, the one rule for the camera and for files.
    ///
    /// The three kinds occupy disjoint ranges: AGC output is below 256, raw
    /// 14-bit counts below 16,384, and centi-kelvin of any real scene above
    /// ~20,000 (-73 C). The boundary between the last two is taken on the
    /// median, not on every pixel: dead pixels or a cold sky reading far
    /// below the scene may cover part of a TLinear frame without turning it
    /// into counts, and a few hot pixels do not turn counts into
    /// temperatures. A TLinear frame at 0.1 K resolution (decikelvin) falls
    /// in the range of raw counts and is read as such (relative).
    pub(crate) fn classify(values: &[u16]) -> Y16Content {
        if values.iter().all(|&v| v <= AGC_MAX) {
            return Y16Content::Agc;
        }
        let mut sorted = values.to_vec();
        let mid = sorted.len() / 2;
        let median = *sorted.select_nth_unstable(mid).1;
        if median < CENTIKELVIN_MIN_MEDIAN {
            Y16Content::RawCounts
        } else {
            Y16Content::CentiKelvin
        }
    }

    /// How values of this kind map to temperature.
    pub(crate) fn radiometry(self) -> Radiometry {
        match self {
            Y16Content::CentiKelvin => LEPTON_TLINEAR,
            Y16Content::Agc | Y16Content::RawCounts => Radiometry::Relative,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 100-pixel frame: `n_low` pixels at `low`, the rest at `high`.
    fn frame(n_low: usize, low: u16, high: u16) -> Vec<u16> {
        (0..100)
            .map(|i| if i < n_low { low } else { high })
            .collect()
    }

    #[test]
    fn agc_counts_and_centikelvin_are_told_apart() {
        assert_eq!(Y16Content::classify(&frame(50, 0, 255)), Y16Content::Agc);
        assert_eq!(
            Y16Content::classify(&frame(10, 2_900, 3_900)),
            Y16Content::RawCounts
        );
        // Raw counts with a few saturated pixels stay counts.
        assert_eq!(
            Y16Content::classify(&frame(90, 3_000, 16_383)),
            Y16Content::RawCounts
        );
        // 25 degrees C.
        assert_eq!(
            Y16Content::classify(&frame(0, 0, 29_815)),
            Y16Content::CentiKelvin
        );
        assert_eq!(Y16Content::CentiKelvin.radiometry(), LEPTON_TLINEAR);
        assert_eq!(Y16Content::RawCounts.radiometry(), Radiometry::Relative);
        assert_eq!(Y16Content::Agc.radiometry(), Radiometry::Relative);
    }

    #[test]
    fn cold_sky_and_dead_pixels_keep_a_frame_centikelvin() {
        // A third of the frame is sky reading below -73 C, a few pixels are dead
        // (0): the scene itself is at 20 degrees C, so the frame is TLinear.
        let mut values = frame(33, 19_000, 29_315);
        values[50..53].fill(0);
        assert_eq!(Y16Content::classify(&values), Y16Content::CentiKelvin);
    }

    #[test]
    fn scales_are_kelvin_based() {
        let zero = LEPTON_TLINEAR.to_celsius(27_315).unwrap();
        assert!(zero.abs() < 1e-3, "{zero}");
        assert_eq!(TC001_LINEAR.to_celsius(64 * 300), Some(300.0 - 273.15));
    }
}
