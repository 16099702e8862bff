//! Driver timestamps and sequence numbers, turned into what a [`Frame`]
//! carries: a wall-clock capture time and a gap-aware sequence number.
//! Pure bookkeeping, unit-tested without a device.
//!
//! [`Frame`]: crate::frame::Frame

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// A jump of the wall clock relative to the driver clock larger than this
/// (NTP step, suspend) re-anchors the mapping at once.
const CLOCK_STEP: Duration = Duration::from_secs(2);

/// Maps V4L2 buffer timestamps (CLOCK_MONOTONIC, set by the driver when the
/// frame was captured) to wall-clock time.
///
/// std offers no way to read CLOCK_MONOTONIC as a number, so the offset
/// between the two clocks is estimated from the frames themselves: at each
/// dequeue, `now_wall - driver_ts` is the true offset plus the (always
/// positive) delivery latency. The smallest such value seen is the best
/// estimate; a large jump means the wall clock was stepped and re-anchors.
#[derive(Debug, Default, Clone)]
pub(crate) struct TimestampMapper {
    /// Estimated wall-clock time at driver timestamp zero, in ns since the epoch.
    offset_ns: Option<i128>,
}

impl TimestampMapper {
    /// The capture time of a frame with driver timestamp `driver_ts`,
    /// dequeued at wall-clock `now`. A zero timestamp (drivers that set
    /// none) gives `now`.
    pub(crate) fn capture_time(&mut self, driver_ts: Duration, now: SystemTime) -> SystemTime {
        if driver_ts.is_zero() {
            return now;
        }
        let now_ns = match now.duration_since(UNIX_EPOCH) {
            Ok(d) => d.as_nanos() as i128,
            Err(_) => return now,
        };
        let observed = now_ns - driver_ts.as_nanos() as i128;
        let offset = match self.offset_ns {
            Some(best) if observed >= best && observed - best <= CLOCK_STEP.as_nanos() as i128 => {
                best
            }
            // Lower latency than before, first frame, or a stepped clock.
            _ => observed,
        };
        self.offset_ns = Some(offset);
        let ns = offset + driver_ts.as_nanos() as i128;
        if ns < 0 {
            return now;
        }
        UNIX_EPOCH + Duration::from_nanos(ns.min(u64::MAX as i128) as u64)
    }
}

/// Counts frames lost between buffers from the driver's per-stream
/// sequence numbers, and numbers frames for the pipeline so that gaps show.
#[derive(Debug, Default, Clone)]
pub(crate) struct SequenceTracker {
    /// Driver sequence of the previous buffer of the current stream.
    last_driver: Option<u32>,
    /// Pipeline sequence of the previous frame (across reopens).
    last_frame: Option<u64>,
    /// Frames known lost so far.
    dropped: u64,
}

impl SequenceTracker {
    /// A new stream starts (driver sequences restart at 0): no gap is
    /// counted across a reopen.
    pub(crate) fn stream_restarted(&mut self) {
        self.last_driver = None;
    }

    /// Registers a buffer with driver sequence `seq`; returns the pipeline
    /// sequence number for its frame (previous + 1 + frames lost in between).
    pub(crate) fn next(&mut self, seq: u32) -> u64 {
        let gap = match self.last_driver {
            // wrapping: u32 driver counters may wrap after years at 60 fps.
            Some(last) => u64::from(seq.wrapping_sub(last).saturating_sub(1)),
            None => 0,
        };
        // A driver that repeats or goes backwards is not a loss.
        let gap = if gap > u64::from(u32::MAX / 2) {
            0
        } else {
            gap
        };
        self.last_driver = Some(seq);
        self.dropped += gap;
        let frame = self.last_frame.map_or(0, |f| f + 1 + gap);
        self.last_frame = Some(frame);
        frame
    }

    /// Counts a buffer that was dequeued but unusable (error flag, bad size):
    /// its number is skipped so the gap shows in the frame sequence.
    pub(crate) fn discard(&mut self, seq: u32) {
        let n = self.next(seq);
        self.dropped += 1;
        self.last_frame = Some(n);
    }

    /// Frames lost so far.
    pub(crate) fn dropped(&self) -> u64 {
        self.dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(secs: f64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs_f64(1_700_000_000.0 + secs)
    }

    #[test]
    fn timestamps_follow_the_driver_clock() {
        let mut m = TimestampMapper::default();
        // Driver clock at 100 s when the wall clock is at 0 (+ latency).
        let t0 = m.capture_time(Duration::from_secs_f64(100.0), at(0.020));
        assert_eq!(t0, at(0.020));
        // A later frame delivered with less latency refines the offset.
        let t1 = m.capture_time(Duration::from_secs_f64(100.1), at(0.105));
        assert_eq!(t1, at(0.105));
        // A frame delivered late (queue backlog) keeps its capture time.
        let t2 = m.capture_time(Duration::from_secs_f64(100.2), at(0.500));
        let err = t2.duration_since(at(0.205)).unwrap_or_default();
        assert!(err < Duration::from_millis(1), "{t2:?}");
    }

    #[test]
    fn stepped_wall_clock_reanchors() {
        let mut m = TimestampMapper::default();
        m.capture_time(Duration::from_secs(100), at(0.0));
        // NTP steps the wall clock forward by an hour.
        let t = m.capture_time(Duration::from_secs(101), at(3601.0));
        assert_eq!(t, at(3601.0));
        // and back: smaller offset, adopted at once.
        let t = m.capture_time(Duration::from_secs(102), at(2.0));
        assert_eq!(t, at(2.0));
    }

    #[test]
    fn zero_timestamp_means_now() {
        let mut m = TimestampMapper::default();
        assert_eq!(m.capture_time(Duration::ZERO, at(5.0)), at(5.0));
    }

    #[test]
    fn sequence_gaps_are_dropped_frames() {
        let mut s = SequenceTracker::default();
        assert_eq!(s.next(0), 0);
        assert_eq!(s.next(1), 1);
        assert_eq!(s.next(4), 4); // 2 and 3 lost
        assert_eq!(s.dropped(), 2);
        s.discard(5); // dequeued with the error flag
        assert_eq!(s.dropped(), 3);
        assert_eq!(s.next(6), 6);
        // Reopen: the driver restarts at 0, the pipeline sequence goes on.
        s.stream_restarted();
        assert_eq!(s.next(0), 7);
        assert_eq!(s.next(1), 8);
        assert_eq!(s.dropped(), 3);
        // A driver repeating a sequence number is not a loss.
        assert_eq!(s.next(1), 9);
        assert_eq!(s.dropped(), 3);
        // Wrap-around of the u32 driver counter.
        s.stream_restarted();
        s.next(u32::MAX);
        s.next(1);
        assert_eq!(s.dropped(), 4);
    }
}
