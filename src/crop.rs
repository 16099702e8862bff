//! Cut-outs of one module from a frame: the pixels a defect event keeps for
//! its thumbnail, and the rectangle a thumbnail shows.
//!
//! Crop geometry sits beside the frame rather than in the analysis or the
//! renderer: the tracker keeps crops and the renderer draws them, and neither
//! has to know about the other.

use crate::frame::{Frame, Pixels};
use crate::geometry::{Point, Quad};

/// The widest margin around a module that a crop kept by a defect event
/// holds (fraction of the module box on each side). A thumbnail's own margin
/// (`[render] thumbnail_margin`) can be at most this, since it is cut from
/// that crop.
pub(crate) const MAX_THUMBNAIL_MARGIN: f32 = 0.5;

/// The pixels around one module, kept for its thumbnail after the frame is
/// gone (the best sighting of a defect may be several frames old when the
/// event is sent).
#[derive(Debug, Clone)]
pub(crate) struct ModuleCrop {
    /// The cut-out, with the original radiometry, sequence and capture time.
    pub(crate) frame: Frame,
    /// The module outline in the cut-out's coordinates.
    pub(crate) quad: Quad,
}

impl ModuleCrop {
    /// Cuts the module's box plus `margin` (fraction of the box size on each
    /// side) out of `frame`. `None` when the box misses the frame.
    pub(crate) fn new(frame: &Frame, quad: &Quad, margin: f32) -> Option<ModuleCrop> {
        let (x0, y0, x1, y1) = crop_rect(quad, margin, frame.width(), frame.height())?;
        let (w, cw) = (frame.width() as usize, (x1 - x0) as usize);
        let rows =
            (y0 as usize..y1 as usize).map(|y| y * w + x0 as usize..y * w + x0 as usize + cw);
        let pixels = match frame.pixels() {
            Pixels::Gray8(p) => Pixels::Gray8(rows.flat_map(|r| p[r].iter().copied()).collect()),
            Pixels::Gray16(p) => Pixels::Gray16(rows.flat_map(|r| p[r].iter().copied()).collect()),
        };
        let (dx, dy) = (x0 as f32, y0 as f32);
        Some(ModuleCrop {
            frame: Frame::new(
                x1 - x0,
                y1 - y0,
                pixels,
                frame.radiometry.clone(),
                frame.sequence,
                frame.captured_at,
                frame.origin.clone(),
            )
            .ok()?,
            quad: Quad(quad.0.map(|p| Point {
                x: p.x - dx,
                y: p.y - dy,
            })),
        })
    }
}

/// The pixel rectangle `(x0, y0, x1, y1)` (exclusive ends) of the quad's box
/// grown by `margin` x its size on each side and clipped to a `width` x
/// `height` frame; `None` when it is empty or the quad is not finite.
fn crop_rect(quad: &Quad, margin: f32, width: u32, height: u32) -> Option<(u32, u32, u32, u32)> {
    let b = quad.bbox();
    if ![b.x0, b.y0, b.x1, b.y1, margin]
        .iter()
        .all(|v| v.is_finite())
    {
        return None;
    }
    let (mx, my) = (b.width() * margin.max(0.0), b.height() * margin.max(0.0));
    let x0 = (b.x0 - mx).floor().clamp(0.0, width as f32) as u32;
    let y0 = (b.y0 - my).floor().clamp(0.0, height as f32) as u32;
    let x1 = (b.x1 + mx).ceil().clamp(0.0, width as f32) as u32;
    let y1 = (b.y1 + my).ceil().clamp(0.0, height as f32) as u32;
    (x1 > x0 && y1 > y0).then_some((x0, y0, x1, y1))
}

#[cfg(test)]
mod tests {
    use std::time::UNIX_EPOCH;

    use super::*;
    use crate::geometry::BBox;
    use crate::radiometry::Radiometry;

    #[test]
    fn crop_keeps_the_module_and_its_margin() {
        let f = Frame::new(
            320,
            256,
            Pixels::Gray16((0..320 * 256).map(|i| (i % 65_536) as u16).collect()),
            Radiometry::Relative,
            7,
            UNIX_EPOCH,
            "test".into(),
        )
        .unwrap();
        let c = ModuleCrop::new(&f, &Quad::rect(40.0, 40.0, 80.0, 60.0), 0.25).unwrap();
        assert_eq!((c.frame.width(), c.frame.height()), (60, 30));
        assert_eq!(
            c.quad.bbox(),
            BBox {
                x0: 10.0,
                y0: 5.0,
                x1: 50.0,
                y1: 25.0
            }
        );
        // The cut-out holds the frame's pixels: its top-left is (30, 35).
        assert_eq!(c.frame.pixels().get(0), f.pixels().get(35 * 320 + 30));
        assert_eq!(c.frame.sequence, 7);
        assert!(ModuleCrop::new(&f, &Quad::rect(400.0, 40.0, 480.0, 60.0), 0.25).is_none());
        let edge = ModuleCrop::new(&f, &Quad::rect(300.0, 240.0, 340.0, 270.0), 0.25).unwrap();
        // x 290..320, y 232.5 -> 232..256.
        assert_eq!((edge.frame.width(), edge.frame.height()), (30, 24));
    }
}
