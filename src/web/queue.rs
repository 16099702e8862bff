//! The uploads' analysis: one thread with its own model instance (loaded
//! once at start), fed through a bounded queue. A flood of uploads fills the
//! queue and is refused (503); it never reaches the camera's models, and
//! takes at most the one core this thread runs on.

use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::sync::Arc;

use anyhow::{Context, Result};
use tokio::sync::oneshot;

use crate::decode_limit::PixelLimit;
use crate::imageio::{self, LoadOptions};
use crate::inspect::Inspector;
use crate::messages::ModelInfo;
use crate::position::Position;
use crate::render::{self, RenderOptions};
use crate::survey::{Survey, SurveyReport};

/// JPEG quality of the pictures the page shows.
const JPEG_QUALITY: u8 = 90;

/// One uploaded image: its bytes and the name it is shown under. The name
/// comes from the client, is only ever a label, and never names a file here.
pub(crate) struct Upload {
    pub(crate) name: String,
    /// The extension (from the supported list) the content or the name says
    /// it has, so the loader reads headerless formats right.
    pub(crate) extension: &'static str,
    pub(crate) bytes: Vec<u8>,
}

/// One analysed image of a batch.
pub(crate) struct AnalysedImage {
    pub(crate) name: String,
    pub(crate) annotated_jpeg: Vec<u8>,
}

/// What a batch gives: the report (the `detect` schema), the pictures and
/// what failed.
pub(crate) struct Batch {
    pub(crate) report: SurveyReport,
    pub(crate) images: Vec<AnalysedImage>,
    pub(crate) contact_sheet_jpeg: Option<Vec<u8>>,
    /// One line per image that could not be analysed, naming it.
    pub(crate) errors: Vec<String>,
}

/// A batch waiting for the analysis, with where its answer goes.
struct Job {
    uploads: Vec<Upload>,
    reply: oneshot::Sender<Batch>,
}

/// Why a batch was not taken.
#[derive(Debug)]
pub(crate) enum Refused {
    /// The queue is full: try again later.
    Full { capacity: usize },
    /// The analysis thread is gone (it panicked): the server must be restarted.
    Stopped,
}

/// What the analysis needs besides the models.
pub(crate) struct AnalysisSetup {
    pub(crate) render: RenderOptions,
    /// Where the camera was for images that do not say (`[analysis.position]`
    /// fixed), or `None`.
    pub(crate) fixed_position: Option<Position>,
    /// Most pixels an upload may decode to (`[source] max_pixels`): an
    /// upload is a file from anyone who can reach the page.
    pub(crate) pixel_limit: PixelLimit,
}

/// The handle the HTTP handlers hold.
#[derive(Clone)]
pub(crate) struct AnalysisQueue {
    sender: SyncSender<Job>,
    /// Batches queued and in progress, for the status endpoint.
    pending: Arc<AtomicUsize>,
    capacity: usize,
    model: ModelInfo,
}

impl AnalysisQueue {
    /// Starts the analysis thread with `inspector` (its own models) and a
    /// queue of `capacity` waiting batches. The thread ends when the last
    /// handle is dropped.
    pub(crate) fn start(
        inspector: Inspector,
        setup: AnalysisSetup,
        capacity: usize,
    ) -> Result<Self> {
        let (sender, receiver) = mpsc::sync_channel::<Job>(capacity);
        let pending = Arc::new(AtomicUsize::new(0));
        let model = inspector.model_info().clone();
        let counter = pending.clone();
        std::thread::Builder::new()
            .name("pvtherm-web-analysis".into())
            .spawn(move || {
                let mut inspector = inspector;
                for job in receiver {
                    let batch = analyse(&mut inspector, &setup, job.uploads);
                    counter.fetch_sub(1, Ordering::Relaxed);
                    // The client may have gone (timeout): nobody to tell.
                    let _ = job.reply.send(batch);
                }
            })
            .context("cannot start the upload analysis thread")?;
        Ok(Self {
            sender,
            pending,
            capacity,
            model,
        })
    }

    /// Queues a batch; the answer comes on the returned receiver.
    pub(crate) fn submit(&self, uploads: Vec<Upload>) -> Result<oneshot::Receiver<Batch>, Refused> {
        let (reply, answer) = oneshot::channel();
        self.pending.fetch_add(1, Ordering::Relaxed);
        match self.sender.try_send(Job { uploads, reply }) {
            Ok(()) => Ok(answer),
            Err(e) => {
                self.pending.fetch_sub(1, Ordering::Relaxed);
                Err(match e {
                    TrySendError::Full(_) => Refused::Full {
                        capacity: self.capacity,
                    },
                    TrySendError::Disconnected(_) => Refused::Stopped,
                })
            }
        }
    }

    /// Batches queued or in progress.
    pub(crate) fn pending(&self) -> usize {
        self.pending.load(Ordering::Relaxed)
    }

    /// How many batches may wait besides the one in progress.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// The models the uploads are analysed with.
    pub(crate) fn model(&self) -> &ModelInfo {
        &self.model
    }
}

/// Analyses one batch through the same [`Survey`] as `pvtherm detect`.
fn analyse(inspector: &mut Inspector, setup: &AnalysisSetup, uploads: Vec<Upload>) -> Batch {
    let mut survey = Survey::new(inspector, setup.render.clone());
    let mut images = Vec::new();
    let mut errors = Vec::new();
    for (sequence, upload) in uploads.into_iter().enumerate() {
        let result = analyse_one(&mut survey, setup, &upload, sequence as u64);
        match result {
            Ok(jpeg) => images.push(AnalysedImage {
                name: upload.name,
                annotated_jpeg: jpeg,
            }),
            Err(e) => {
                survey.failed();
                errors.push(format!("{}: {e:#}", upload.name));
            }
        }
    }
    let result = survey.finish();
    let contact_sheet_jpeg = result
        .contact_sheet
        .and_then(|sheet| render::encode_jpeg(&sheet, JPEG_QUALITY).ok());
    Batch {
        report: result.report,
        images,
        contact_sheet_jpeg,
        errors,
    }
}

/// Loads one upload through the file loader (a private temporary file with a
/// name of our own, so every format `detect` reads is read the same way),
/// inspects it and returns its annotated picture.
fn analyse_one(
    survey: &mut Survey<'_>,
    setup: &AnalysisSetup,
    upload: &Upload,
    sequence: u64,
) -> Result<Vec<u8>> {
    let mut file = tempfile::Builder::new()
        .prefix("pvtherm-upload-")
        .suffix(&format!(".{}", upload.extension))
        .tempfile()
        .context("cannot create a temporary file for the upload")?;
    file.write_all(&upload.bytes)
        .and_then(|()| file.flush())
        .context("cannot write the upload to a temporary file")?;
    let temp = file.path().display().to_string();
    let options = LoadOptions {
        pixel_limit: setup.pixel_limit,
        ..LoadOptions::default()
    };
    let loaded = imageio::load_frame_with(file.path(), sequence, &options);
    // Errors and the report name the upload, never the temporary file.
    let mut frame =
        loaded.map_err(|e| anyhow::anyhow!(format!("{e:#}").replace(&format!("{temp}: "), "")))?;
    frame.origin = upload.name.clone();
    let stem = upload
        .name
        .rsplit_once('.')
        .map_or(upload.name.as_str(), |(stem, _)| stem)
        .to_string();
    let (_, annotated) = survey
        .inspect(&frame, setup.fixed_position.as_ref(), stem)
        .context("inference failed")?;
    render::encode_jpeg(&annotated, JPEG_QUALITY)
}
