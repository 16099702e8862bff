//! Scoring detections against the data set's annotations: the numbers in
//! MODEL_CARD.md come from here (`pvtherm eval`).
//!
//! Matching rule: a predicted module matches an annotated one when their
//! axis-aligned boxes, clipped to the frame, have IoU >= 0.5; greedy by score,
//! each annotation matched at most once.

use std::path::Path;

use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::frame::{Frame, Pixels};
use crate::geometry::{BBox, Point, Quad};
use crate::model::preprocess::resize_bilinear;
use crate::model::{Decision, DefectAssessment, ModuleDetection};

/// IoU at which a prediction counts as finding an annotated module.
pub(crate) const MATCH_IOU: f32 = 0.5;

/// One annotated module of the data set (`instances[]` of an annotation file).
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    pub quad: Quad,
    pub defective: bool,
}

#[derive(Deserialize)]
struct AnnotationFile {
    instances: Vec<Instance>,
}

#[derive(Deserialize)]
struct Instance {
    corners: Vec<Point>,
    defected_module: bool,
}

/// Reads one annotation JSON of the data set layout (`{"instances": [{"corners": [{x,y} x4], "defected_module": bool}]}`).
pub fn read_annotations(path: &Path) -> Result<Vec<Annotation>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read annotation file {}", path.display()))?;
    let file: AnnotationFile = serde_json::from_str(&text)
        .with_context(|| format!("{}: not a pvtherm/data-set annotation file", path.display()))?;
    file.instances
        .into_iter()
        .enumerate()
        .map(|(i, inst)| {
            let c: [Point; 4] = inst.corners.try_into().map_err(|v: Vec<Point>| {
                anyhow::anyhow!(
                    "{}: instance {i} has {} corners, expected 4",
                    path.display(),
                    v.len()
                )
            })?;
            Ok(Annotation {
                quad: Quad(c),
                defective: inst.defected_module,
            })
        })
        .collect()
}

/// `frame` shrunk by `factor` (0 < factor <= 1) with a half-pixel bilinear
/// resize of its raw plane: what a lower-resolution camera of the same scene
/// would see, for measuring the detector on small modules. Returns the frame
/// and the (x, y) factors its annotations scale by.
pub fn downscaled(frame: &Frame, factor: f32) -> Result<(Frame, (f32, f32))> {
    ensure!(
        factor > 0.0 && factor <= 1.0,
        "--downscale {factor}: must be above 0 and at most 1"
    );
    let (w, h) = (frame.width() as usize, frame.height() as usize);
    let (nw, nh) = (
        ((w as f32 * factor).round() as usize).max(1),
        ((h as f32 * factor).round() as usize).max(1),
    );
    let raw: Vec<f32> = (0..w * h).map(|i| frame.pixels().get(i) as f32).collect();
    let mut out = Vec::new();
    resize_bilinear(&raw, w, h, nw, nh, &mut out);
    let pixels = match frame.pixels() {
        Pixels::Gray8(_) => Pixels::Gray8(out.iter().map(|&v| v.round() as u8).collect()),
        Pixels::Gray16(_) => Pixels::Gray16(out.iter().map(|&v| v.round() as u16).collect()),
    };
    let small = Frame::new(
        nw as u32,
        nh as u32,
        pixels,
        frame.radiometry.clone(),
        frame.sequence,
        frame.captured_at,
        format!("{} at {factor}x", frame.origin),
    )?;
    Ok((small, (nw as f32 / w as f32, nh as f32 / h as f32)))
}

/// The result of matching one image's predictions to its annotations.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImageMatch {
    /// For each prediction (in input order): the index of the matched annotation.
    pub matched: Vec<Option<usize>>,
}

/// Greedy matching by score at `MATCH_IOU` on boxes clipped to the frame.
pub fn match_image(
    pred: &[ModuleDetection],
    truth: &[Annotation],
    width: f32,
    height: f32,
) -> ImageMatch {
    let truth_boxes: Vec<BBox> = truth
        .iter()
        .map(|a| a.quad.bbox().clipped(width, height))
        .collect();
    let mut order: Vec<usize> = (0..pred.len()).collect();
    order.sort_by(|&a, &b| pred[b].score.total_cmp(&pred[a].score));
    let mut taken = vec![false; truth.len()];
    let mut matched = vec![None; pred.len()];
    for p in order {
        let pb = pred[p].bbox.clipped(width, height);
        let best = truth_boxes
            .iter()
            .enumerate()
            .filter(|(t, _)| !taken[*t])
            .map(|(t, tb)| (t, pb.iou(tb)))
            .filter(|(_, iou)| *iou >= MATCH_IOU)
            .max_by(|a, b| a.1.total_cmp(&b.1));
        if let Some((t, _)) = best {
            taken[t] = true;
            matched[p] = Some(t);
        }
    }
    ImageMatch { matched }
}

/// Running totals over many images.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub images: usize,
    pub(crate) modules_true: usize,
    pub(crate) modules_predicted: usize,
    /// (score, is true positive) of every prediction, for AP.
    scored: Vec<(f32, bool)>,
    /// Predictions at or above the operating threshold that matched.
    true_positives: usize,
    pub(crate) defects_true: usize,
    pub(crate) defects_predicted: usize,
    pub(crate) defects_correct: usize,
    latencies_ms: Vec<f64>,
    /// (decision value, matches a defective annotation) of every prediction
    /// at or above the operating threshold, for the defect curve.
    decided: Vec<(f32, bool)>,
    /// The operating point of each kind of decision seen, for the curve.
    operating: Vec<OperatingPoint>,
}

/// The value a defect decision compares with its threshold: the classifier's
/// `defect_score`, or the fused rule's logit z.
pub(crate) fn decision_value(d: &DefectAssessment) -> f32 {
    match d.decision {
        Decision::Classifier => d.defect_score,
        Decision::Fused => d.fused_logit.unwrap_or(f32::NEG_INFINITY),
    }
}

/// Which rule decided and at which threshold on its `decision_value`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OperatingPoint {
    pub decision: Decision,
    pub threshold: f32,
}

/// One row of the defect precision/recall curve, per sighting: the counts if
/// every prediction with a decision value >= `threshold` were defective.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CurvePoint {
    pub threshold: f32,
    pub tp: usize,
    pub fp: usize,
    #[serde(rename = "fn")]
    pub fn_: usize,
    pub precision: f64,
    pub recall: f64,
    /// The row of the threshold in use: its counts are `eval`'s.
    pub operating: bool,
}

/// The summary `pvtherm eval --json` prints (field names are stable).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct EvalReport {
    pub images: usize,
    pub modules_true: usize,
    pub modules_predicted: usize,
    pub module_ap50: f64,
    pub module_precision: f64,
    pub module_recall: f64,
    pub defects_true: usize,
    pub defects_predicted: usize,
    pub defect_precision: f64,
    pub defect_recall: f64,
    pub defect_f1: f64,
    pub mean_latency_ms: f64,
}

impl Tally {
    /// Adds one image: its predictions, annotations and inference latency.
    pub fn add(
        &mut self,
        pred: &[ModuleDetection],
        truth: &[Annotation],
        width: f32,
        height: f32,
        latency_ms: f64,
    ) {
        self.add_at(pred, truth, width, height, latency_ms, 0.0);
    }

    /// Like [`Tally::add`], for predictions decoded below the operating score
    /// threshold: all of them enter the AP curve (AP integrates over every
    /// score), while precision, recall and the defect numbers count only
    /// those at or above `threshold`, as the daemon would report them.
    pub fn add_at(
        &mut self,
        pred: &[ModuleDetection],
        truth: &[Annotation],
        width: f32,
        height: f32,
        latency_ms: f64,
        threshold: f32,
    ) {
        let m = match_image(pred, truth, width, height);
        self.images += 1;
        self.modules_true += truth.len();
        self.latencies_ms.push(latency_ms);
        self.defects_true += truth.iter().filter(|a| a.defective).count();
        for (p, t) in pred.iter().zip(&m.matched) {
            self.scored.push((p.score, t.is_some()));
            if p.score < threshold {
                continue;
            }
            self.modules_predicted += 1;
            self.true_positives += t.is_some() as usize;
            let is_defect = t.is_some_and(|t| truth[t].defective);
            self.decided.push((decision_value(&p.defect), is_defect));
            if p.defect.defective {
                self.defects_predicted += 1;
                self.defects_correct += is_defect as usize;
            }
        }
    }

    /// Records the operating point the image's decisions were made at.
    pub fn note_operating_point(&mut self, point: OperatingPoint) {
        if !self.operating.contains(&point) {
            self.operating.push(point);
        }
    }

    /// The operating points recorded with [`Tally::note_operating_point`].
    pub fn operating_points(&self) -> &[OperatingPoint] {
        &self.operating
    }

    /// The defect precision/recall curve per sighting, thresholds
    /// descending: one row where each true defect enters, plus the
    /// operating point's row, whose counts are the report's. Fails when the
    /// images were decided at different operating points (classifier and
    /// fused, or two fused branches): one curve cannot hold both.
    pub fn defect_curve(&self) -> Result<Vec<CurvePoint>> {
        let operating = match self.operating.as_slice() {
            [one] => *one,
            [] => anyhow::bail!("no image was scored"),
            many => anyhow::bail!(
                "the images were decided at {} operating points ({many:?}); \
                 run --curve on one camera (one data set folder) at a time, \
                 or with --no-fusion",
                many.len()
            ),
        };
        let mut thresholds: Vec<f32> = self
            .decided
            .iter()
            .filter(|(_, defect)| *defect)
            .map(|&(v, _)| v)
            .chain([operating.threshold])
            .collect();
        thresholds.sort_by(|a, b| b.total_cmp(a));
        thresholds.dedup();
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        Ok(thresholds
            .into_iter()
            .map(|t| {
                let above = self.decided.iter().filter(|(v, _)| *v >= t);
                let tp = above.clone().filter(|(_, d)| *d).count();
                let fp = above.count() - tp;
                CurvePoint {
                    threshold: t,
                    tp,
                    fp,
                    fn_: self.defects_true - tp,
                    precision: ratio(tp, tp + fp),
                    recall: ratio(tp, self.defects_true),
                    operating: t == operating.threshold,
                }
            })
            .collect())
    }

    /// Average precision at IoU 0.5: area under the precision/recall curve
    /// with precision made monotonic (VOC/COCO style, all points).
    fn ap50(&self) -> f64 {
        if self.modules_true == 0 {
            return 0.0;
        }
        let mut s = self.scored.clone();
        s.sort_by(|a, b| b.0.total_cmp(&a.0));
        let (mut tp, mut fp) = (0usize, 0usize);
        let mut curve = Vec::with_capacity(s.len());
        for (_, ok) in s {
            if ok {
                tp += 1
            } else {
                fp += 1
            }
            curve.push((
                tp as f64 / self.modules_true as f64,
                tp as f64 / (tp + fp) as f64,
            ));
        }
        // Monotone precision envelope from the right.
        for i in (0..curve.len().saturating_sub(1)).rev() {
            curve[i].1 = curve[i].1.max(curve[i + 1].1);
        }
        let mut ap = 0.0;
        let mut last_recall = 0.0;
        for (recall, precision) in curve {
            ap += (recall - last_recall) * precision;
            last_recall = recall;
        }
        ap
    }

    /// The final numbers.
    pub fn report(&self) -> EvalReport {
        let ratio = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let tp = self.true_positives;
        let dp = ratio(self.defects_correct, self.defects_predicted);
        let dr = ratio(self.defects_correct, self.defects_true);
        EvalReport {
            images: self.images,
            modules_true: self.modules_true,
            modules_predicted: self.modules_predicted,
            module_ap50: self.ap50(),
            module_precision: ratio(tp, self.modules_predicted),
            module_recall: ratio(tp, self.modules_true),
            defects_true: self.defects_true,
            defects_predicted: self.defects_predicted,
            defect_precision: dp,
            defect_recall: dr,
            defect_f1: if dp + dr > 0.0 {
                2.0 * dp * dr / (dp + dr)
            } else {
                0.0
            },
            mean_latency_ms: if self.latencies_ms.is_empty() {
                0.0
            } else {
                self.latencies_ms.iter().sum::<f64>() / self.latencies_ms.len() as f64
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::DefectAssessment;

    fn module(x: f32, score: f32, defective: bool) -> ModuleDetection {
        let p = |x, y| Point { x, y };
        let quad = Quad([p(x, 0.0), p(x + 10.0, 0.0), p(x + 10.0, 20.0), p(x, 20.0)]);
        ModuleDetection {
            quad,
            bbox: quad.bbox(),
            score,
            defect: DefectAssessment {
                defective,
                defect_score: 0.0,
                anomaly_class: "No-Anomaly".into(),
                ..Default::default()
            },
        }
    }

    #[test]
    fn perfect_predictions_score_one_and_duplicates_are_false_positives() {
        let truth: Vec<Annotation> = (0..3)
            .map(|i| Annotation {
                quad: module(i as f32 * 10.0, 1.0, false).quad,
                defective: i == 1,
            })
            .collect();
        let mut pred: Vec<ModuleDetection> = (0..3)
            .map(|i| module(i as f32 * 10.0, 0.9, i == 1))
            .collect();
        let mut t = Tally::default();
        t.add(&pred, &truth, 100.0, 100.0, 5.0);
        let r = t.report();
        assert_eq!(
            (r.module_ap50, r.module_precision, r.module_recall),
            (1.0, 1.0, 1.0)
        );
        assert_eq!(
            (r.defect_precision, r.defect_recall, r.defect_f1),
            (1.0, 1.0, 1.0)
        );
        pred.push(module(0.5, 0.1, false)); // duplicate of the first, lower score
        let mut t = Tally::default();
        t.add(&pred, &truth, 100.0, 100.0, 5.0);
        let r = t.report();
        assert_eq!(
            r.module_ap50, 1.0,
            "a low-scored duplicate ranks last and does not lower AP"
        );
        assert_eq!(r.module_precision, 0.75);
    }
}
