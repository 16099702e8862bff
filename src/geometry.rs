//! Geometry shared by the detector, the analysis and the reports.

use serde::{Deserialize, Serialize};

/// A point in frame pixel coordinates (origin top-left, y down).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub x: f32,
    pub y: f32,
}

/// An axis-aligned box in frame pixel coordinates (x0 <= x1, y0 <= y1).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct BBox {
    pub(crate) x0: f32,
    pub(crate) y0: f32,
    pub(crate) x1: f32,
    pub(crate) y1: f32,
}

impl BBox {
    pub(crate) fn width(&self) -> f32 {
        (self.x1 - self.x0).max(0.0)
    }
    pub(crate) fn height(&self) -> f32 {
        (self.y1 - self.y0).max(0.0)
    }
    pub(crate) fn area(&self) -> f32 {
        self.width() * self.height()
    }
    pub(crate) fn center(&self) -> Point {
        Point {
            x: 0.5 * (self.x0 + self.x1),
            y: 0.5 * (self.y0 + self.y1),
        }
    }
    /// The box clipped to a `width` x `height` frame.
    pub(crate) fn clipped(&self, width: f32, height: f32) -> BBox {
        BBox {
            x0: self.x0.clamp(0.0, width),
            y0: self.y0.clamp(0.0, height),
            x1: self.x1.clamp(0.0, width),
            y1: self.y1.clamp(0.0, height),
        }
    }
    /// Intersection over union; 0 for disjoint or empty boxes.
    pub(crate) fn iou(&self, other: &BBox) -> f32 {
        let ix = (self.x1.min(other.x1) - self.x0.max(other.x0)).max(0.0);
        let iy = (self.y1.min(other.y1) - self.y0.max(other.y0)).max(0.0);
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union <= 0.0 {
            0.0
        } else {
            inter / union
        }
    }
}

/// A module outline: four corners, in the data set's order where known
/// (top-right, top-left, bottom-left, bottom-right), but nothing relies on it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Quad(pub [Point; 4]);

impl Quad {
    /// The axis-aligned rectangle from (x0, y0) to (x1, y1), corners in the
    /// data set's order (top-right first). For tests and synthetic scenes,
    /// where a module is a plain rectangle.
    #[cfg(test)]
    pub(crate) fn rect(x0: f32, y0: f32, x1: f32, y1: f32) -> Quad {
        Quad([
            Point { x: x1, y: y0 },
            Point { x: x0, y: y0 },
            Point { x: x0, y: y1 },
            Point { x: x1, y: y1 },
        ])
    }
    /// The smallest axis-aligned box holding the four corners.
    pub(crate) fn bbox(&self) -> BBox {
        let mut b = BBox {
            x0: f32::MAX,
            y0: f32::MAX,
            x1: f32::MIN,
            y1: f32::MIN,
        };
        for p in &self.0 {
            b.x0 = b.x0.min(p.x);
            b.y0 = b.y0.min(p.y);
            b.x1 = b.x1.max(p.x);
            b.y1 = b.y1.max(p.y);
        }
        b
    }
    /// Mean of the corners.
    pub(crate) fn center(&self) -> Point {
        let (sx, sy) = self
            .0
            .iter()
            .fold((0.0, 0.0), |(sx, sy), p| (sx + p.x, sy + p.y));
        Point {
            x: sx / 4.0,
            y: sy / 4.0,
        }
    }
    /// Whether `p` lies inside the (convex or not) quadrilateral (even-odd rule).
    #[cfg(test)]
    pub(crate) fn contains(&self, p: Point) -> bool {
        self.crossings_at(p.y).inside(p.x)
    }
    /// Where the horizontal line at `y` crosses the outline. Computed once per
    /// row, it tells for every point of that row whether it lies inside with a
    /// few comparisons instead of four divisions each (pixel loops).
    pub(crate) fn crossings_at(&self, y: f32) -> RowCrossings {
        let mut row = RowCrossings {
            xs: [0.0; 4],
            len: 0,
        };
        let c = &self.0;
        let mut j = 3;
        for i in 0..4 {
            let (a, b) = (c[i], c[j]);
            if (a.y > y) != (b.y > y) {
                row.xs[row.len] = (b.x - a.x) * (y - a.y) / (b.y - a.y) + a.x;
                row.len += 1;
            }
            j = i;
        }
        row
    }
    /// Polygon area (shoelace).
    #[cfg(test)]
    pub(crate) fn area(&self) -> f32 {
        let c = &self.0;
        let mut s = 0.0;
        for i in 0..4 {
            let j = (i + 1) % 4;
            s += c[i].x * c[j].y - c[j].x * c[i].y;
        }
        0.5 * s.abs()
    }
    /// The quad scaled by (sx, sy), e.g. from model input to frame coordinates.
    pub fn scaled(&self, sx: f32, sy: f32) -> Quad {
        Quad(self.0.map(|p| Point {
            x: p.x * sx,
            y: p.y * sy,
        }))
    }
}

/// The x positions where one horizontal line crosses a [`Quad`]'s edges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RowCrossings {
    xs: [f32; 4],
    len: usize,
}

impl RowCrossings {
    /// Whether the line misses the quad.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// Whether the point at `x` on this line is inside: an odd number of
    /// crossings lie to its right (even-odd rule).
    #[inline]
    pub(crate) fn inside(&self, x: f32) -> bool {
        self.xs[..self.len].iter().filter(|&&c| x < c).count() % 2 == 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn square(x: f32, y: f32, s: f32) -> Quad {
        Quad::rect(x, y, x + s, y + s)
    }

    #[test]
    fn iou_of_neighbours_packed_edge_to_edge_is_zero() {
        let a = square(0.0, 0.0, 10.0).bbox();
        let b = square(10.0, 0.0, 10.0).bbox();
        assert_eq!(a.iou(&b), 0.0);
        assert!((a.iou(&a) - 1.0).abs() < 1e-6);
    }

    #[test]
    fn quad_contains_and_area() {
        let q = square(2.0, 3.0, 4.0);
        assert!(q.contains(Point { x: 4.0, y: 5.0 }));
        assert!(!q.contains(Point { x: 7.0, y: 5.0 }));
        assert!((q.area() - 16.0).abs() < 1e-6);
        assert_eq!(q.center(), Point { x: 4.0, y: 5.0 });
    }
}
