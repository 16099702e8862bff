//! Frame sources: where frames come from. Every source yields [`SourceEvent`]s
//! through one trait, so the pipeline does not care whether it reads a camera
//! or a folder of survey images.

pub mod formats;
pub mod replay;
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
}
