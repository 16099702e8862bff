//! The anomaly class model: names *what* is wrong with a module (one of the
//! twelve InfraredSolarModules classes) once the defect decision has said
//! *that* something is. It runs only on the flagged modules, usually none or
//! a few per frame, so it can be an order of magnitude larger than the
//! classifier that looks at every module.

use anyhow::Result;

use super::onnx::{self, LoadedModel, ModelSource};
use super::preprocess::{self, CROP_H, CROP_W};
use super::types::ANOMALY_CLASSES;
use crate::frame::Frame;
use crate::geometry::Quad;

/// Output channels: one logit per anomaly class, in [`ANOMALY_CLASSES`] order.
pub(crate) const ANOMALY_CHANNELS: usize = 12;

/// How many views of a flagged module the anomaly model averages:
/// `[model] anomaly_views`. More views name the class a little more often
/// right and cost one model run each (MODEL_CARD.md: ISM accuracy 0.838 with
/// 1, 0.850 with 2, 0.852 with 4, f32).
pub(crate) const ANOMALY_VIEWS: [usize; 3] = [1, 2, 4];

/// The loaded anomaly class model with its reusable buffers.
pub(crate) struct AnomalyModel {
    model: LoadedModel,
    /// The mirrors averaged per module: a prefix of [`Flip::ORDER`].
    views: &'static [Flip],
    crop: Vec<f32>,
    flipped: Vec<f32>,
    scratch: Vec<f32>,
}

impl AnomalyModel {
    /// Loads the model (a `pvtherm.kind = anomaly` file with 12 outputs)
    /// that averages `views` views of each module (one of [`ANOMALY_VIEWS`]).
    pub(crate) fn load(source: &ModelSource, views: usize) -> Result<Self> {
        anyhow::ensure!(
            ANOMALY_VIEWS.contains(&views),
            "{views} anomaly views: must be one of {ANOMALY_VIEWS:?}"
        );
        let expected = onnx::Expected {
            kind: "anomaly",
            channels: ANOMALY_CHANNELS,
        };
        Ok(Self {
            model: onnx::load(source, expected, [1, 1, CROP_H, CROP_W], 1)?,
            views: &Flip::ORDER[..views],
            crop: Vec::new(),
            flipped: Vec::new(),
            scratch: Vec::new(),
        })
    }

    /// Where the model was loaded from.
    pub(crate) fn label(&self) -> &str {
        &self.model.label
    }

    /// The anomaly class of the defective module outlined by `quad`: the
    /// most likely class other than No-Anomaly, from the logits averaged over
    /// the crop's views (a module has no preferred orientation).
    pub(crate) fn name(&mut self, frame: &Frame, quad: &Quad) -> Result<&'static str> {
        Ok(anomaly_of(&self.logits(frame, quad)?))
    }

    /// The 12 class logits of the module outlined by `quad`, averaged over
    /// the crop's views.
    fn logits(&mut self, frame: &Frame, quad: &Quad) -> Result<[f32; ANOMALY_CHANNELS]> {
        preprocess::module_crop(frame, quad, &mut self.scratch, &mut self.crop);
        let mut mean = [0.0; ANOMALY_CHANNELS];
        for flip in self.views {
            flip.apply(&self.crop, &mut self.flipped);
            let out = self.model.run_f32([1, 1, CROP_H, CROP_W], &self.flipped)?;
            let view = out.try_as_plain_ram()?;
            for (m, l) in mean.iter_mut().zip(view.as_slice::<f32>()?) {
                *m += l / self.views.len() as f32;
            }
        }
        Ok(mean)
    }
}

/// The most likely anomaly class of 12 class logits, never No-Anomaly (index
/// 0): what a flagged module is shown as.
pub(crate) fn anomaly_of(logits: &[f32]) -> &'static str {
    let best = (1..ANOMALY_CHANNELS)
        .max_by(|&a, &b| logits[a].total_cmp(&logits[b]))
        .unwrap_or(1);
    ANOMALY_CLASSES[best]
}

/// A mirror of the portrait crop.
#[derive(Debug, Clone, Copy)]
enum Flip {
    None,
    Horizontal,
    Vertical,
    Both,
}

impl Flip {
    /// The views in the order `anomaly_views` takes them: the crop, then
    /// its 180-degree turn (which helps most as a second view), then the
    /// two single mirrors.
    const ORDER: [Flip; 4] = [Flip::None, Flip::Both, Flip::Horizontal, Flip::Vertical];

    /// Writes `crop` (row-major `CROP_H` x `CROP_W`) mirrored into `out`.
    fn apply(self, crop: &[f32], out: &mut Vec<f32>) {
        let (flip_x, flip_y) = match self {
            Flip::None => (false, false),
            Flip::Horizontal => (true, false),
            Flip::Vertical => (false, true),
            Flip::Both => (true, true),
        };
        out.clear();
        for v in 0..CROP_H {
            let row = if flip_y { CROP_H - 1 - v } else { v };
            let row = &crop[row * CROP_W..(row + 1) * CROP_W];
            if flip_x {
                out.extend(row.iter().rev());
            } else {
                out.extend_from_slice(row);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::geometry::Point;
    use crate::model::{builtin, Precision};
    use crate::pixels::Pixels;
    use crate::radiometry::Radiometry;

    /// Each fixture crop (ISM val, 8-bit 24x40) as a frame and the quad around all of it.
    fn ism_crops() -> (Vec<(Frame, Quad)>, serde_json::Value) {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ism");
        let bytes = std::fs::read(dir.join("crops.u8")).unwrap();
        let expected: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
        let (w, h) = (CROP_W as f32, CROP_H as f32);
        let quad = Quad([
            Point { x: 0.0, y: 0.0 },
            Point { x: w, y: 0.0 },
            Point { x: w, y: h },
            Point { x: 0.0, y: h },
        ]);
        let crops = bytes
            .chunks(CROP_W * CROP_H)
            .map(|c| {
                let frame = Frame::new(
                    CROP_W as u32,
                    CROP_H as u32,
                    Pixels::Gray8(c.to_vec()),
                    Radiometry::Relative,
                    0,
                    std::time::SystemTime::UNIX_EPOCH,
                    "ism".into(),
                )
                .unwrap();
                (frame, quad)
            })
            .collect();
        (crops, expected)
    }

    #[test]
    fn built_in_models_name_ism_crops_as_the_training_side_does() {
        let (crops, expected) = ism_crops();
        assert_eq!(crops.len(), 24);
        for p in [Precision::F32, Precision::Int8] {
            // expected.json holds onnxruntime's logits averaged over all four views.
            let mut model = AnomalyModel::load(&builtin::anomaly(p), 4).unwrap();
            let want = &expected[p.name()];
            // int8: tract and onnxruntime round requantisation differently.
            let tolerance = if p == Precision::F32 { 0.02 } else { 0.15 };
            for (i, (frame, quad)) in crops.iter().enumerate() {
                let named = model.name(frame, quad).unwrap();
                assert_eq!(
                    named,
                    want["named"][i].as_str().unwrap(),
                    "{} crop {i}",
                    p.name()
                );
                let logits = model.logits(frame, quad).unwrap();
                for (k, (got, reference)) in logits
                    .iter()
                    .zip(want["logits"][i].as_array().unwrap())
                    .enumerate()
                {
                    let reference = reference.as_f64().unwrap() as f32;
                    assert!(
                        (got - reference).abs() < tolerance,
                        "{} crop {i} class {k}: {got} against {reference}",
                        p.name()
                    );
                }
            }
        }
    }

    #[test]
    fn flips_mirror_rows_and_columns() {
        let crop: Vec<f32> = (0..CROP_H * CROP_W).map(|i| i as f32).collect();
        let mut out = Vec::new();
        Flip::Horizontal.apply(&crop, &mut out);
        assert_eq!(out[0], (CROP_W - 1) as f32);
        Flip::Vertical.apply(&crop, &mut out);
        assert_eq!(out[0], ((CROP_H - 1) * CROP_W) as f32);
        Flip::Both.apply(&crop, &mut out);
        assert_eq!(out[0], (CROP_H * CROP_W - 1) as f32);
        Flip::None.apply(&crop, &mut out);
        assert_eq!(out, crop);
    }

    #[test]
    fn a_flagged_module_is_never_no_anomaly() {
        let mut logits = [0.0f32; ANOMALY_CHANNELS];
        logits[0] = 9.0;
        logits[4] = 1.0;
        assert_eq!(anomaly_of(&logits), "Diode");
    }
}
