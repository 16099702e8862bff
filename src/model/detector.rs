//! The module detector: a fully convolutional network that marks module
//! centres on a stride-8 grid and regresses the four corners from there
//! (CenterNet-style). Centres of modules packed edge to edge stay separate
//! peaks, so decoding does not merge neighbours.

use anyhow::{ensure, Result};

use super::classifier::{logit, sigmoid};
use super::onnx::{self, LoadedModel, ModelSource};
use super::preprocess;
use crate::frame::Frame;
use crate::geometry::{BBox, Point, Quad};

/// Channels of the detector output: heat logit, centre offset (2), corners (8).
pub(crate) const DETECTOR_CHANNELS: usize = 11;

/// Decoding parameters; the defaults come from the model's metadata.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct DecodeParams {
    /// Output stride of the network in input pixels.
    pub(crate) stride: f32,
    /// Corners are regressed in units of this many input pixels.
    pub(crate) corner_scale: f32,
    /// Minimum centre probability for a module.
    pub(crate) score_threshold: f32,
    /// Boxes overlapping more than this (IoU) are the same module.
    pub(crate) nms_iou: f32,
}

/// A module found by the detector, before the defect classifier has looked at it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Candidate {
    /// Corners in canonical order TL, TR, BR, BL, frame coordinates.
    pub quad: Quad,
    /// Box of the corners clipped to the frame.
    pub(crate) bbox: BBox,
    /// Centre probability 0..1.
    pub(crate) score: f32,
}

/// The loaded detector with its reusable buffers.
pub struct Detector {
    model: LoadedModel,
    /// Where the model came from and its thread count: a frame that needs
    /// another input size (see [`Detector::detect_at`]) re-plans from them.
    source: ModelSource,
    threads: usize,
    input_w: usize,
    input_h: usize,
    params: DecodeParams,
    hist: Vec<u32>,
    normalised: Vec<f32>,
    resized: Vec<f32>,
}

impl Detector {
    /// Loads the detector for a fixed input size `(width, height)` (multiples of
    /// 16), running on `threads` threads. `score_threshold` overrides the model's
    /// tuned threshold.
    pub fn load(
        source: &ModelSource,
        (input_w, input_h): (usize, usize),
        score_threshold: Option<f32>,
        threads: usize,
    ) -> Result<Self> {
        ensure!(
            input_w >= 32
                && input_h >= 32
                && input_w.is_multiple_of(16)
                && input_h.is_multiple_of(16),
            "model input size {input_w}x{input_h} must be multiples of 16, at least 32"
        );
        let model = plan(source, input_w, input_h, threads)?;
        let params = DecodeParams {
            stride: model.meta_or("stride", 8.0)?,
            corner_scale: model.meta_or("corner_scale", 32.0)?,
            score_threshold: match score_threshold {
                Some(t) => t,
                None => tuned_threshold(&model)?,
            },
            nms_iou: 0.5,
        };
        Ok(Self {
            model,
            source: source.clone(),
            threads,
            input_w,
            input_h,
            params,
            hist: Vec::new(),
            normalised: Vec::new(),
            resized: Vec::new(),
        })
    }

    /// The score threshold tuned for this model (its metadata), whatever
    /// threshold it was loaded with.
    pub fn tuned_score_threshold(&self) -> Result<f32> {
        tuned_threshold(&self.model)
    }

    /// The model's name and version from its metadata (for reports and messages).
    pub(crate) fn name_version(&self) -> (String, String) {
        let name = self
            .model
            .metadata
            .get("name")
            .cloned()
            .unwrap_or_else(|| "pvtherm-detector".into());
        let version = self
            .model
            .metadata
            .get("version")
            .cloned()
            .unwrap_or_else(|| "unknown".into());
        (name, version)
    }

    /// Where the model was loaded from.
    pub(crate) fn label(&self) -> &str {
        &self.model.label
    }

    /// Finds the modules in a frame, stretched to the input size the model
    /// was loaded for. Coordinates are frame pixels.
    pub fn detect(&mut self, frame: &Frame) -> Result<Vec<Candidate>> {
        self.detect_at(frame, (self.input_w, self.input_h))
    }

    /// [`Detector::detect`] with the frame stretched to `(width, height)`
    /// (multiples of 16): a new size re-plans the model once (tens of
    /// milliseconds), and stays until another size comes.
    pub(crate) fn detect_at(
        &mut self,
        frame: &Frame,
        (input_w, input_h): (usize, usize),
    ) -> Result<Vec<Candidate>> {
        if (input_w, input_h) != (self.input_w, self.input_h) {
            self.model = plan(&self.source, input_w, input_h, self.threads)?;
            (self.input_w, self.input_h) = (input_w, input_h);
        }
        let (fw, fh) = (frame.width() as usize, frame.height() as usize);
        preprocess::normalise_frame(frame, &mut self.hist, &mut self.normalised);
        let input = if (fw, fh) == (self.input_w, self.input_h) {
            &self.normalised
        } else {
            preprocess::resize_bilinear(
                &self.normalised,
                fw,
                fh,
                self.input_w,
                self.input_h,
                &mut self.resized,
            );
            &self.resized
        };
        let out = self
            .model
            .run_f32([1, 1, self.input_h, self.input_w], input)?;
        let shape = out.shape();
        let (gh, gw) = (shape[2], shape[3]);
        let view = out.try_as_plain_ram()?;
        let maps = view.as_slice::<f32>()?;
        let scale = (
            fw as f32 / self.input_w as f32,
            fh as f32 / self.input_h as f32,
        );
        Ok(decode(
            maps,
            gw,
            gh,
            &self.params,
            scale,
            (fw as f32, fh as f32),
        ))
    }
}

/// The detector `source` planned for a `input_w` x `input_h` input.
fn plan(
    source: &ModelSource,
    input_w: usize,
    input_h: usize,
    threads: usize,
) -> Result<LoadedModel> {
    let expected = onnx::Expected {
        kind: "detector",
        channels: DETECTOR_CHANNELS,
    };
    onnx::load(source, expected, [1, 1, input_h, input_w], threads)
}

/// The operating threshold stored in the model file (0.3 for files without one).
fn tuned_threshold(model: &LoadedModel) -> Result<f32> {
    model.meta_or("score_threshold", 0.3)
}

/// Turns the detector's output maps (`[11, gh, gw]`, row-major) into modules:
/// peaks of the centre heat map (3x3 local maxima above the threshold), corners
/// from the regression channels, scaled by `scale` from input to frame
/// pixels, then non-maximum suppression on the clipped boxes.
pub(crate) fn decode(
    maps: &[f32],
    gw: usize,
    gh: usize,
    p: &DecodeParams,
    scale: (f32, f32),
    frame_size: (f32, f32),
) -> Vec<Candidate> {
    let plane = gw * gh;
    let heat = &maps[..plane];
    // Compare logits, not probabilities: sigmoid is monotonic, so only peaks pay for exp().
    let logit_threshold = logit(p.score_threshold);
    let ch = |c: usize, i: usize| maps[c * plane + i];
    let mut found = Vec::new();
    for row in 0..gh {
        for col in 0..gw {
            let i = row * gw + col;
            let v = heat[i];
            if v < logit_threshold || !is_local_max(heat, gw, gh, row, col) {
                continue;
            }
            let cx = (col as f32 + ch(1, i)) * p.stride;
            let cy = (row as f32 + ch(2, i)) * p.stride;
            let corner = |k: usize| Point {
                x: (cx + p.corner_scale * ch(3 + 2 * k, i)) * scale.0,
                y: (cy + p.corner_scale * ch(4 + 2 * k, i)) * scale.1,
            };
            let quad = Quad([corner(0), corner(1), corner(2), corner(3)]);
            let bbox = quad.bbox().clipped(frame_size.0, frame_size.1);
            if bbox.area() > 0.0 {
                found.push(Candidate {
                    quad,
                    bbox,
                    score: sigmoid(v),
                });
            }
        }
    }
    non_max_suppression(found, p.nms_iou)
}

/// A cell is a peak when no 3x3 neighbour is higher; ties go to the first in scan order.
fn is_local_max(heat: &[f32], gw: usize, gh: usize, row: usize, col: usize) -> bool {
    let v = heat[row * gw + col];
    for r in row.saturating_sub(1)..=(row + 1).min(gh - 1) {
        for c in col.saturating_sub(1)..=(col + 1).min(gw - 1) {
            let n = heat[r * gw + c];
            let earlier = (r, c) < (row, col);
            if n > v || (earlier && n == v) {
                return false;
            }
        }
    }
    true
}

/// Greedy non-maximum suppression by score on the clipped boxes.
pub fn non_max_suppression(mut candidates: Vec<Candidate>, iou: f32) -> Vec<Candidate> {
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len());
    for c in candidates {
        if kept.iter().all(|k| k.bbox.iou(&c.bbox) <= iou) {
            kept.push(c);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> DecodeParams {
        DecodeParams {
            stride: 8.0,
            corner_scale: 32.0,
            score_threshold: 0.5,
            nms_iou: 0.5,
        }
    }

    /// Maps with one module centre per (row, col), each 16x16 px.
    fn maps_with_peaks(gw: usize, gh: usize, peaks: &[(usize, usize)]) -> Vec<f32> {
        let plane = gw * gh;
        let mut m = vec![-10.0; DETECTOR_CHANNELS * plane];
        for &(r, c) in peaks {
            let i = r * gw + c;
            m[i] = 5.0;
            m[plane + i] = 0.5;
            m[2 * plane + i] = 0.5;
            let corners = [(-0.25, -0.25), (0.25, -0.25), (0.25, 0.25), (-0.25, 0.25)];
            for (k, (dx, dy)) in corners.iter().enumerate() {
                m[(3 + 2 * k) * plane + i] = *dx;
                m[(4 + 2 * k) * plane + i] = *dy;
            }
        }
        m
    }

    #[test]
    fn neighbouring_modules_two_cells_apart_stay_separate() {
        let m = maps_with_peaks(10, 10, &[(4, 2), (4, 4), (4, 6)]);
        let found = decode(&m, 10, 10, &params(), (1.0, 1.0), (80.0, 80.0));
        assert_eq!(found.len(), 3);
        let mut xs: Vec<f32> = found.iter().map(|c| c.bbox.center().x).collect();
        xs.sort_by(f32::total_cmp);
        assert_eq!(xs, vec![20.0, 36.0, 52.0]);
        assert_eq!(found[0].bbox.width(), 16.0);
    }

    #[test]
    fn scale_maps_to_frame_and_clips() {
        let m = maps_with_peaks(4, 4, &[(0, 0)]);
        let found = decode(&m, 4, 4, &params(), (2.0, 2.0), (64.0, 64.0));
        assert_eq!(found.len(), 1);
        // Centre at (4,4) input px -> corners -4..12 -> clipped 0..24 in frame px.
        assert_eq!(
            found[0].bbox,
            BBox {
                x0: 0.0,
                y0: 0.0,
                x1: 24.0,
                y1: 24.0
            }
        );
    }

    #[test]
    fn nms_removes_duplicates_only() {
        let q = |x: f32| {
            let quad = Quad([
                Point { x, y: 0.0 },
                Point {
                    x: x + 10.0,
                    y: 0.0,
                },
                Point {
                    x: x + 10.0,
                    y: 10.0,
                },
                Point { x, y: 10.0 },
            ]);
            Candidate {
                quad,
                bbox: quad.bbox(),
                score: 0.9 - x / 100.0,
            }
        };
        let kept = non_max_suppression(vec![q(0.0), q(1.0), q(10.0)], 0.5);
        assert_eq!(kept.len(), 2);
    }
}
