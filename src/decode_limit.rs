//! The bound on decoded image size that every decoder checks from the
//! header, before it allocates: a few hundred kilobytes of PNG or TIFF can
//! claim 20000x20000 pixels and take gigabytes to decode, enough to kill a
//! Raspberry Pi. The default sits far above any thermal camera (the largest
//! survey cores are 1280x1024, 1.3 Mpx), so real frames never meet it; the
//! configuration (`[source] max_pixels`) can lower it on a small box or
//! raise it for a large mosaic.
//!
//! The limit is a value ([`PixelLimit`]) handed down to each decoder with
//! the other load options, not a global: `detect`, `serve` and the daemon
//! each read files with the limit of their own configuration.

use std::io::Cursor;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The configuration key that sets the limit: every refusal names it, so
/// whoever meets the limit with a real frame knows what to raise.
pub(crate) const KEY: &str = "[source] max_pixels";

/// Pixels in one Mpx as the limit is written (32 Mpx = 32 x 2^20).
const MPX: u64 = 1024 * 1024;

/// Most pixels a decoded image may have. `Default` is 32 Mpx.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct PixelLimit(u64);

impl PixelLimit {
    /// The default: 32 Mpx, 25 times the largest thermal frame.
    pub(crate) const DEFAULT: PixelLimit = PixelLimit(32 * MPX);
    /// The smallest limit the configuration accepts: 80x60, the smallest
    /// thermal frame pvtherm reads (Lepton 2); a lower one refuses them all.
    pub(crate) const MIN: u64 = 80 * 60;
    /// The largest limit the configuration accepts: 256 Mpx (16384x16384),
    /// whose decoding already takes up to 2 GiB; beyond that the limit no
    /// longer protects anything.
    pub(crate) const MAX: u64 = 256 * MPX;

    /// A limit of `pixels` pixels (the configuration range-checks the value
    /// against [`Self::MIN`]..=[`Self::MAX`]; this does not).
    #[cfg(test)]
    pub(crate) const fn new(pixels: u64) -> Self {
        Self(pixels)
    }

    /// The limit in pixels.
    pub(crate) const fn pixels(self) -> u64 {
        self.0
    }

    /// Refuses a `width` x `height` image of more pixels than the limit;
    /// `what` names the image in the error ("PNG", "embedded raw TIFF").
    pub(crate) fn check(self, what: &str, width: u64, height: u64) -> Result<(), TooLarge> {
        if width.saturating_mul(height) > self.0 {
            return Err(TooLarge {
                what: what.to_string(),
                width,
                height,
                limit: self,
            });
        }
        Ok(())
    }

    /// Decodes `bytes` as `format` through the `image` crate after checking
    /// the size its header claims, with an allocation limit as a second guard.
    pub(crate) fn decode_image(
        self,
        bytes: &[u8],
        format: image::ImageFormat,
    ) -> Result<image::DynamicImage> {
        let (w, h) = image::ImageReader::with_format(Cursor::new(bytes), format)
            .into_dimensions()
            .with_context(|| format!("not a valid {format:?} image (truncated or corrupt)"))?;
        self.check(&format!("{format:?} image"), w.into(), h.into())?;
        let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
        let mut limits = image::Limits::default();
        // 8 bytes a pixel covers 16-bit RGBA, the widest layout these files use.
        limits.max_alloc = Some(self.0.saturating_mul(8));
        reader.limits(limits);
        reader
            .decode()
            .with_context(|| format!("not a valid {format:?} image (truncated or corrupt)"))
    }
}

impl Default for PixelLimit {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl std::fmt::Display for PixelLimit {
    /// Whole Mpx as "32 Mpx", anything else as a pixel count, so the
    /// message shows the value as the configuration would write it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0.is_multiple_of(MPX) {
            write!(f, "{} Mpx", self.0 / MPX)
        } else {
            write!(f, "{} pixels", self.0)
        }
    }
}

/// An image whose header claims more pixels than the limit: refused before
/// anything of that size is allocated. A type of its own so that decoders
/// with their own error types (FLIR, DJI) carry it unchanged.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error(
    "{what} claims {width}x{height} pixels ({:.1} Mpx), over the limit of {limit} ({KEY} = {}), \
     so it is not decoded: a damaged or hostile file, or an image larger than the limit \
     allows (raise {KEY} for it)",
    (*width as f64) * (*height as f64) / MPX as f64,
    limit.pixels()
)]
pub(crate) struct TooLarge {
    /// What claimed the size ("PNG image", "FLIR RawData").
    pub(crate) what: String,
    /// Claimed width.
    pub(crate) width: u64,
    /// Claimed height.
    pub(crate) height: u64,
    /// The limit it is over.
    pub(crate) limit: PixelLimit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_frames_pass_and_the_refusal_names_the_limit_and_the_key() {
        let limit = PixelLimit::default();
        limit.check("frame", 640, 512).unwrap();
        limit.check("frame", 1280, 1024).unwrap();
        let msg = limit
            .check("PNG image", 20_000, 20_000)
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("20000x20000")
                && msg.contains("over the limit of 32 Mpx")
                && msg.contains("[source] max_pixels = 33554432"),
            "{msg}"
        );
        let small = PixelLimit::new(100 * 100);
        small.check("frame", 100, 100).unwrap();
        let msg = small.check("frame", 160, 120).unwrap_err().to_string();
        assert!(msg.contains("over the limit of 10000 pixels"), "{msg}");
        // Sides whose product overflows are still refused.
        assert!(limit.check("x", u64::MAX, u64::MAX).is_err());
    }
}
