//! The bound on decoded image size that every decoder checks from the
//! header, before it allocates: a few hundred kilobytes of PNG or TIFF can
//! claim 20000x20000 pixels and take gigabytes to decode, enough to kill a
//! Raspberry Pi. The bound sits far above any thermal camera (the largest
//! survey cores are 1280x1024, 1.3 Mpx), so real frames never meet it.

use std::io::Cursor;

use anyhow::{bail, Context, Result};

/// Most pixels a decoded image may have: 32 Mpx.
pub const MAX_PIXELS: u64 = 32 * 1024 * 1024;

/// Refuses a `width` x `height` image of more than [`MAX_PIXELS`]; `what`
/// names the image in the error ("PNG", "embedded raw TIFF").
pub fn check(what: &str, width: u64, height: u64) -> Result<()> {
    let pixels = width.saturating_mul(height);
    if pixels > MAX_PIXELS {
        bail!(
            "{what} claims {width}x{height} pixels ({:.1} Mpx), over the limit of {} Mpx: \
             not a thermal frame (a damaged or hostile file?)",
            pixels as f64 / 1e6,
            MAX_PIXELS / (1024 * 1024)
        );
    }
    Ok(())
}

/// Decodes `bytes` as `format` through the `image` crate after checking the
/// size its header claims, with an allocation limit as a second guard.
pub fn decode_image(bytes: &[u8], format: image::ImageFormat) -> Result<image::DynamicImage> {
    let (w, h) = image::ImageReader::with_format(Cursor::new(bytes), format)
        .into_dimensions()
        .with_context(|| format!("not a valid {format:?} image (truncated or corrupt)"))?;
    check(&format!("{format:?} image"), w.into(), h.into())?;
    let mut reader = image::ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = image::Limits::default();
    // 8 bytes a pixel covers 16-bit RGBA, the widest layout these files use.
    limits.max_alloc = Some(MAX_PIXELS * 8);
    reader.limits(limits);
    reader
        .decode()
        .with_context(|| format!("not a valid {format:?} image (truncated or corrupt)"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_frames_pass() {
        check("frame", 640, 512).unwrap();
        check("frame", 1280, 1024).unwrap();
        let msg = format!("{:#}", check("PNG image", 20_000, 20_000).unwrap_err());
        assert!(
            msg.contains("20000x20000") && msg.contains("32 Mpx"),
            "{msg}"
        );
    }
}
