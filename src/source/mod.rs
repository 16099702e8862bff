//! Frame sources: where frames come from. Every source yields [`SourceEvent`]s
//! through one trait, so the pipeline does not care whether it reads a camera
//! or a folder of survey images.

pub(crate) mod replay;
pub mod v4l2;

use crate::frame::Frame;

/// Health of the camera (or other source), published on the `camera` topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceState {
    /// Delivering frames.
    Online,
    /// Not delivering frames; the reason says why (unplugged, stalled, ...).
    /// The source keeps trying to reopen it.
    Offline { reason: String },
}

/// What a source yields on each call to [`FrameSource::next_event`].
// Frames dominate, and each one moves once from the source thread to the queue:
// boxing them would add an allocation per frame for nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum SourceEvent {
    /// A new frame.
    Frame(Frame),
    /// The source changed state (camera lost or back).
    State(SourceState),
    /// The source has no more frames (a replay that does not loop). The pipeline shuts down.
    End,
}

/// Anything that produces thermal frames. Implementations block in
/// `next_event` until something happens; they run on their own thread.
pub trait FrameSource: Send {
    /// Waits for the next frame or state change. Errors are fatal for the source;
    /// recoverable faults (unplugged camera) are reported as [`SourceEvent::State`].
    fn next_event(&mut self) -> anyhow::Result<SourceEvent>;

    /// A short human-readable description for logs (device path and format, folder).
    fn describe(&self) -> String;

    /// Whether frames from this source carry absolute temperatures.
    fn is_radiometric(&self) -> bool;

    /// Frames the source knows it lost (driver sequence gaps, frames skipped).
    fn dropped_frames(&self) -> u64 {
        0
    }

    /// Whether the source should wait for the model instead of having its
    /// older frames replaced by newer ones. A camera never waits (latency
    /// matters, and it would drop frames in the driver anyway); a survey
    /// replayed as fast as possible must not lose a frame.
    fn waits_for_consumer(&self) -> bool {
        false
    }
}

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::decode_limit::PixelLimit;
use crate::imageio::LoadOptions;
use replay::{ReplayConfig, ReplaySource};
use v4l2::{V4l2Config, V4l2Source};

/// Which kind of source `[source]` selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub(crate) enum SourceKind {
    /// A USB thermal camera over V4L2 (`[source.v4l2]`).
    #[default]
    V4l2,
    /// A folder of image files played back (`[source.replay]`).
    Replay,
}

/// `[source]`: where frames come from.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SourceConfig {
    /// `v4l2` (camera) or `replay` (files).
    pub(crate) kind: SourceKind,
    /// Settings of the replay source.
    pub(crate) replay: ReplayConfig,
    /// Settings of the camera source.
    pub(crate) v4l2: V4l2Config,
    /// Most pixels an image file may decode to (replayed files, web
    /// uploads, `detect --config`), checked from the header before anything
    /// is allocated: a small file claiming a huge image is refused instead
    /// of taking the box's memory.
    pub max_pixels: PixelLimit,
}

impl SourceConfig {
    /// Checks the pixel limit and the selected source's settings.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        crate::config_value::in_range(
            crate::decode_limit::KEY,
            self.max_pixels.pixels(),
            PixelLimit::MIN..=PixelLimit::MAX,
            " pixels",
        )?;
        match self.kind {
            SourceKind::Replay => self.replay.validate(),
            SourceKind::V4l2 => self.v4l2.validate(),
        }
    }

    /// How image files are read: the pixel limit, and `[source.replay]`'s
    /// 16-bit TIFF scale when configured.
    pub fn load_options(&self) -> anyhow::Result<LoadOptions> {
        Ok(LoadOptions {
            raw_scale: self.replay.raw_scale()?,
            pixel_limit: self.max_pixels,
        })
    }

    /// Makes relative paths relative to the config file's folder.
    pub(crate) fn resolve_paths(&mut self, base: &Path) {
        // An empty path stays empty, so validation can say it is missing.
        if !self.replay.path.as_os_str().is_empty() && self.replay.path.is_relative() {
            self.replay.path = base.join(&self.replay.path);
        }
    }

    /// Opens the configured source.
    pub fn open(&self) -> anyhow::Result<Box<dyn FrameSource>> {
        match self.kind {
            SourceKind::Replay => Ok(Box::new(ReplaySource::new(
                &self.replay,
                self.load_options()?,
            )?)),
            // A camera missing at start is reported and waited for, like one
            // unplugged later: systemd should not restart-loop on a loose cable.
            SourceKind::V4l2 => Ok(Box::new(V4l2Source::open_or_wait(self.v4l2.clone())?)),
        }
    }
}
