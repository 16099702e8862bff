//! The pixel buffer of a single-channel thermal frame. A leaf type of its
//! own so that what reads pixels (the frame, the provenance checks) can
//! share it without importing each other; [`crate::frame`] re-exports it.

/// Pixel data of a single-channel thermal frame, row-major, no padding.
#[derive(Debug, Clone, PartialEq)]
pub enum Pixels {
    /// 8-bit grey (AGC rendering, GREY/YUYV luma, or an 8-bit image file).
    Gray8(Vec<u8>),
    /// 16-bit values: radiometric (see [`crate::radiometry::Radiometry`]) or raw sensor counts.
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
