//! The hand-over between the source thread and the inference thread: a queue
//! of one frame. A slow box drops older frames (and counts them) instead of
//! building up latency; a replay waits instead ([`FrameQueue::push_when_free`]).

use std::sync::{Condvar, Mutex};
use std::time::Duration;

use crate::frame::Frame;
use crate::lock::IgnorePoison;

/// A queue of one: the newest frame waiting for the model.
#[derive(Default)]
pub(crate) struct FrameQueue {
    slot: Mutex<QueueSlot>,
    ready: Condvar,
}

/// The guarded state of a [`FrameQueue`].
#[derive(Default)]
struct QueueSlot {
    frame: Option<Frame>,
    /// The source is done: no frame will follow the one in `frame`.
    closed: bool,
}

/// What [`FrameQueue::pop`] returns.
#[allow(clippy::large_enum_variant)] // the frame moves once, boxing it buys nothing
pub(crate) enum Popped {
    Frame(Frame),
    /// Nothing arrived within the timeout (the caller beats the heartbeat).
    Idle,
    /// The source is done and the queue is empty.
    Closed,
}

impl FrameQueue {
    /// Puts `frame` in the queue; returns true when it replaced an unprocessed frame.
    pub(crate) fn push(&self, frame: Frame) -> bool {
        let mut slot = self.slot.lock().ignore_poison();
        let replaced = slot.frame.replace(frame).is_some();
        self.ready.notify_one();
        replaced
    }

    /// Waits until the queue is empty, then puts `frame` in it: backpressure
    /// for sources that must not lose frames. Returns false, dropping the
    /// frame, when the queue is closed (the inference thread stopped): the
    /// caller counts it.
    pub(crate) fn push_when_free(&self, frame: Frame) -> bool {
        let slot = self.slot.lock().ignore_poison();
        let mut slot = self
            .ready
            .wait_while(slot, |s| s.frame.is_some() && !s.closed)
            .ignore_poison();
        if slot.closed {
            return false;
        }
        slot.frame = Some(frame);
        self.ready.notify_all();
        true
    }

    /// No more frames will come: the end of the source's data, not a stop
    /// request (the frame waiting, if any, is still popped).
    pub(crate) fn close(&self) {
        self.slot.lock().ignore_poison().closed = true;
        self.ready.notify_all();
    }

    /// Number of frames waiting (0 or 1).
    pub(crate) fn depth(&self) -> u32 {
        self.slot.lock().ignore_poison().frame.is_some() as u32
    }

    /// Takes the waiting frame, waiting up to `timeout` for one.
    pub(crate) fn pop(&self, timeout: Duration) -> Popped {
        let slot = self.slot.lock().ignore_poison();
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, timeout, |s| s.frame.is_none() && !s.closed)
            .ignore_poison();
        match slot.frame.take() {
            Some(f) => {
                // Wake a source waiting in `push_when_free`.
                self.ready.notify_all();
                Popped::Frame(f)
            }
            None if slot.closed => Popped::Closed,
            None => Popped::Idle,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    #[test]
    fn queue_keeps_only_the_newest_frame() {
        let q = FrameQueue::default();
        let frame = |seq| {
            Frame::new(
                1,
                1,
                crate::frame::Pixels::Gray8(vec![0]),
                crate::radiometry::Radiometry::Relative,
                seq,
                SystemTime::UNIX_EPOCH,
                "t".into(),
            )
            .unwrap()
        };
        assert!(!q.push(frame(1)));
        assert!(
            q.push(frame(2)),
            "replacing an unprocessed frame counts as a drop"
        );
        assert!(matches!(q.pop(Duration::ZERO), Popped::Frame(f) if f.sequence == 2));
        assert!(matches!(q.pop(Duration::from_millis(1)), Popped::Idle));
        q.close();
        assert!(matches!(q.pop(Duration::from_secs(5)), Popped::Closed));
        // Closed by a consumer that stopped: a waiting source is told, to count it.
        assert!(!q.push_when_free(frame(3)));
        assert!(matches!(q.pop(Duration::ZERO), Popped::Closed));
    }
}
