//! A batch of thermal images judged together: each image's report and
//! annotated picture, the defects grouped per physical module over the
//! batch, and the contact sheet of those defects. `pvtherm detect` and the
//! web upload (`src/web/`) both go through [`Survey`], so a file gives the
//! same answer on the command line and in the browser.

use anyhow::Result;
use image::RgbImage;
use serde::Serialize;

use crate::analysis::tracking::DefectEvent;
use crate::frame::Frame;
use crate::inspect::Inspector;
use crate::messages::{DetectionsMessage, ModelInfo, SCHEMA_VERSION};
use crate::position::Position;
use crate::render::{self, RenderOptions, Renderer};

/// Columns of the defects' contact sheet.
const SHEET_COLUMNS: u32 = 6;

/// The whole report of one batch (`report.json`, `detect --json`, the
/// `POST /api/v1/detect` answer).
#[derive(Debug, Clone, Serialize)]
pub struct SurveyReport {
    pub(crate) schema: u32,
    pub(crate) model: ModelInfo,
    pub(crate) images: Vec<DetectionsMessage>,
    /// Defects grouped per physical module over consecutive images.
    #[serde(serialize_with = "crate::messages::defect_reports")]
    pub(crate) defects: Vec<DefectEvent>,
    pub summary: SurveySummary,
}

/// Totals of a batch.
#[derive(Debug, Clone, Serialize, Default)]
pub struct SurveySummary {
    pub images: usize,
    pub failed: usize,
    pub modules: usize,
    pub defective_modules: usize,
    pub grouped_defects: usize,
}

/// What a finished batch gives.
pub struct SurveyResult {
    pub report: SurveyReport,
    /// The best thumbnail of each grouped defect with its label, in a grid;
    /// `None` when the batch found no defect.
    pub contact_sheet: Option<RgbImage>,
}

/// One batch in progress. It borrows the [`Inspector`] (models loaded once,
/// for many batches) and closes its defect tracks in [`Survey::finish`], so
/// the next batch starts with none.
pub struct Survey<'a> {
    inspector: &'a mut Inspector,
    renderer: Renderer,
    report: SurveyReport,
    /// Best thumbnail and label per grouped defect, keyed by event id.
    thumbs: Vec<(String, (RgbImage, String))>,
}

impl<'a> Survey<'a> {
    /// Starts a batch drawn with `render`.
    pub fn new(inspector: &'a mut Inspector, render: RenderOptions) -> Self {
        let report = SurveyReport {
            schema: SCHEMA_VERSION,
            model: inspector.model_info().clone(),
            images: Vec::new(),
            defects: Vec::new(),
            summary: SurveySummary::default(),
        };
        Self {
            inspector,
            renderer: Renderer::new(render),
            report,
            thumbs: Vec::new(),
        }
    }

    /// Inspects one image of the batch: `name` becomes its report's id,
    /// `position` is where the camera was, when known. Returns the image's
    /// report (also kept for the batch report) and its annotated picture.
    pub fn inspect(
        &mut self,
        frame: &Frame,
        position: Option<&Position>,
        name: String,
    ) -> Result<(&DetectionsMessage, RgbImage)> {
        let inspection = self.inspector.inspect(frame, position)?;
        let message = DetectionsMessage::new(
            name,
            "local",
            frame,
            self.inspector.model_info(),
            inspection.latency_ms,
            &inspection.analysis,
        );
        let annotated = self.renderer.overview(frame, &inspection.analysis);
        self.collect(inspection.analysis.events);
        self.report.images.push(message);
        let message = self.report.images.last().expect("pushed above");
        Ok((message, annotated))
    }

    /// Counts an image that could not be loaded or inspected.
    pub fn failed(&mut self) {
        self.report.summary.failed += 1;
    }

    /// Closes the open defect tracks and totals the batch.
    pub fn finish(mut self) -> SurveyResult {
        let events = self.inspector.finish();
        self.collect(events);
        let mut report = self.report;
        report.summary.images = report.images.len();
        report.summary.modules = report.images.iter().map(|m| m.module_count).sum();
        report.summary.defective_modules = report.images.iter().map(|m| m.defect_count).sum();
        report.summary.grouped_defects = report.defects.len();
        let contact_sheet = (!self.thumbs.is_empty()).then(|| {
            let items: Vec<_> = self.thumbs.into_iter().map(|(_, t)| t).collect();
            render::contact_sheet(&items, SHEET_COLUMNS)
        });
        SurveyResult {
            report,
            contact_sheet,
        }
    }

    /// Keeps the latest state of each grouped defect and its best thumbnail,
    /// keyed by event id (an `update` replaces the earlier state).
    fn collect(&mut self, events: Vec<DefectEvent>) {
        for e in events {
            if let Some(t) = self.renderer.event_thumbnail(&e) {
                let label = format!("{} {:.2}", e.anomaly_class, e.defect_score);
                match self.thumbs.iter().position(|(id, _)| *id == e.event_id) {
                    Some(i) => self.thumbs[i].1 = (t, label),
                    None => self.thumbs.push((e.event_id.clone(), (t, label))),
                }
            }
            let defects = &mut self.report.defects;
            match defects.iter().position(|d| d.event_id == e.event_id) {
                Some(i) => defects[i] = e,
                None => defects.push(e),
            }
        }
    }
}
