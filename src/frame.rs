//! The one frame type that flows through the pipeline, whatever produced it
//! (a V4L2 camera, a replayed file, an R-JPEG from a survey).

use std::time::SystemTime;

pub use crate::pixels::Pixels;
use crate::provenance::Provenance;
use crate::radiometry::Radiometry;

/// One captured thermal frame. Built only through [`Frame::new`], so a
/// `Frame` that exists has a pixel buffer of exactly `width * height` values
/// and no consumer has to check it again.
#[derive(Debug, Clone)]
pub struct Frame {
    width: u32,
    height: u32,
    pixels: Pixels,
    /// How the pixel values map to temperature.
    pub radiometry: Radiometry,
    /// Monotonic sequence number assigned by the source (gaps = drops).
    pub sequence: u64,
    /// Capture time (driver timestamp for cameras, file time or now for replays).
    pub captured_at: SystemTime,
    /// Where the frame came from (device path or file name), for logs and reports.
    pub origin: String,
    /// What the file says beyond the pixels: calibration, plausibility flags,
    /// camera position and pose (empty for camera frames).
    pub provenance: Provenance,
}

/// Why pixels cannot make a [`Frame`]. The messages name the origin, so a bad
/// file or camera mode can be found from the log line alone.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// Width or height is zero.
    #[error("{origin}: empty frame ({width}x{height})")]
    Empty {
        origin: String,
        width: u32,
        height: u32,
    },
    /// The buffer holds more or fewer pixels than the size says.
    #[error("{origin}: frame is {width}x{height} but carries {got} pixels (expected {expected})")]
    SizeMismatch {
        origin: String,
        width: u32,
        height: u32,
        got: usize,
        expected: usize,
    },
}

impl Frame {
    /// A frame of `width` x `height` row-major `pixels`, refused when the
    /// size is empty or does not match the buffer.
    pub fn new(
        width: u32,
        height: u32,
        pixels: Pixels,
        radiometry: Radiometry,
        sequence: u64,
        captured_at: SystemTime,
        origin: String,
    ) -> Result<Frame, FrameError> {
        if width == 0 || height == 0 {
            return Err(FrameError::Empty {
                origin,
                width,
                height,
            });
        }
        let expected = width as usize * height as usize;
        if pixels.len() != expected {
            return Err(FrameError::SizeMismatch {
                origin,
                width,
                height,
                got: pixels.len(),
                expected,
            });
        }
        Ok(Frame {
            width,
            height,
            pixels,
            radiometry,
            sequence,
            captured_at,
            origin,
            provenance: Provenance::default(),
        })
    }

    /// Width in pixels (> 0).
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels (> 0).
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The pixels, row-major, exactly `width * height` of them.
    pub fn pixels(&self) -> &Pixels {
        &self.pixels
    }
}

/// Pixels and radiometry of one decoded image, before a source gives it a
/// sequence number and an origin: what every decoder returns, from a camera
/// buffer ([`crate::formats`]) or an image file ([`crate::imageio`]).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Decoded {
    /// Output width in pixels.
    pub(crate) width: u32,
    /// Output height in pixels (TC001: the temperature half only).
    pub(crate) height: u32,
    /// Row-major pixels without padding.
    pub(crate) pixels: Pixels,
    /// How the pixel values map to temperature.
    pub(crate) radiometry: Radiometry,
    /// Capture time the data records itself (FLIR files); `None` when the
    /// source must supply it (camera buffers are timestamped by the driver).
    pub(crate) captured_at: Option<SystemTime>,
}

impl Decoded {
    /// Turns the decoded pixels into a pipeline [`Frame`]; `captured_at` is
    /// used when the data records no capture time of its own.
    pub(crate) fn into_frame(
        self,
        sequence: u64,
        captured_at: SystemTime,
        origin: String,
    ) -> Result<Frame, FrameError> {
        Frame::new(
            self.width,
            self.height,
            self.pixels,
            self.radiometry,
            sequence,
            self.captured_at.unwrap_or(captured_at),
            origin,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_new_checks_the_size() {
        let at = SystemTime::UNIX_EPOCH;
        let f = Frame::new(
            3,
            2,
            Pixels::Gray8(vec![1; 6]),
            Radiometry::Relative,
            4,
            at,
            "cam".into(),
        )
        .unwrap();
        assert_eq!((f.width(), f.height(), f.pixels().len()), (3, 2, 6));
        let err = Frame::new(
            3,
            3,
            Pixels::Gray8(vec![1; 6]),
            Radiometry::Relative,
            4,
            at,
            "cam".into(),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "cam: frame is 3x3 but carries 6 pixels (expected 9)"
        );
        let err = Frame::new(
            0,
            3,
            Pixels::Gray16(vec![]),
            Radiometry::Relative,
            4,
            at,
            "cam".into(),
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "cam: empty frame (0x3)");
    }
}
