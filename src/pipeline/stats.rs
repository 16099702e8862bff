//! The daemon's counters and the periodic `stats` message built from them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use super::queue::FrameQueue;
use crate::control::Switches;
use crate::lock::IgnorePoison;
use crate::messages::{
    to_json, BrokerStats, LatencyStats, ModelInfo, StatsMessage, SCHEMA_VERSION,
};
use crate::model::trial::PrecisionTrial;
use crate::publish::{Identity, MessageClass, Outgoing, Publisher};

/// Counters shared by the pipeline's threads and read by the stats message.
#[derive(Default)]
pub(crate) struct PipelineStats {
    pub(crate) frames_captured: AtomicU64,
    pub(crate) frames_processed: AtomicU64,
    pub(crate) frames_dropped_queue: AtomicU64,
    pub(crate) frames_dropped_source: AtomicU64,
    pub(crate) frames_skipped: AtomicU64,
    pub(crate) defects_detected: AtomicU64,
    pub(crate) events: AtomicU64,
    pub(crate) camera_online: AtomicBool,
    /// Inference latencies (ms) since the last stats message.
    latencies: Mutex<Vec<f32>>,
    /// `new` defect events counted per UTC day: (day number, count).
    defects_today: Mutex<(u64, u64)>,
}

/// Days since the Unix epoch, UTC.
fn utc_day(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400)
}

impl PipelineStats {
    /// Records one frame's inference time for the next stats message.
    pub(crate) fn record_latency(&self, ms: f32) {
        let mut l = self.latencies.lock().ignore_poison();
        // Bounded: a stats interval never holds more than this many samples.
        if l.len() < 100_000 {
            l.push(ms);
        }
    }

    /// Counts `n` newly confirmed physical defects for today (UTC).
    pub(crate) fn count_new_defects(&self, n: u64) {
        let today = utc_day(SystemTime::now());
        let mut d = self.defects_today.lock().ignore_poison();
        if d.0 != today {
            *d = (today, 0);
        }
        d.1 += n;
    }

    /// Physical defects confirmed since 00:00 UTC.
    pub(crate) fn defects_today(&self) -> u64 {
        let d = *self.defects_today.lock().ignore_poison();
        if d.0 == utc_day(SystemTime::now()) {
            d.1
        } else {
            0
        }
    }

    /// Percentiles of the latencies recorded since the last call, and how many.
    pub(crate) fn take_latencies(&self) -> (LatencyStats, usize) {
        let mut l = std::mem::take(&mut *self.latencies.lock().ignore_poison());
        if l.is_empty() {
            return (LatencyStats::default(), 0);
        }
        l.sort_by(f32::total_cmp);
        let at = |q: f32| l[((l.len() - 1) as f32 * q).round() as usize];
        (
            LatencyStats {
                p50_ms: at(0.5),
                p95_ms: at(0.95),
                max_ms: l[l.len() - 1],
            },
            l.len(),
        )
    }
}

/// Builds `stats` messages: the counters, the queue, the publisher's link and
/// outbox, and the frame rate over the window since the previous message.
pub(crate) struct StatsReporter {
    identity: Identity,
    model: ModelInfo,
    /// What `precision = "auto"` chose at start-up, repeated in every message.
    precision_trial: Option<PrecisionTrial>,
    stats: Arc<PipelineStats>,
    queue: Arc<FrameQueue>,
    publisher: Publisher,
    switches: Arc<Switches>,
    started: Instant,
    /// `frames_processed` and the time at the previous message (the fps window).
    window: (u64, Instant),
}

impl StatsReporter {
    /// A reporter whose uptime and first window start now.
    pub(crate) fn new(
        identity: Identity,
        model: ModelInfo,
        precision_trial: Option<PrecisionTrial>,
        stats: Arc<PipelineStats>,
        queue: Arc<FrameQueue>,
        publisher: Publisher,
        switches: Arc<Switches>,
    ) -> Self {
        let now = Instant::now();
        Self {
            identity,
            model,
            precision_trial,
            stats,
            queue,
            publisher,
            switches,
            started: now,
            window: (0, now),
        }
    }

    /// The message for the window since the previous one, and the one-line
    /// status for systemd.
    pub(crate) fn tick(&mut self) -> (Outgoing, String) {
        let processed = self.stats.frames_processed.load(Ordering::Relaxed);
        let (last_processed, last_time) = self.window;
        let elapsed = last_time.elapsed().as_secs_f32().max(1e-3);
        let fps = (processed - last_processed) as f32 / elapsed;
        self.window = (processed, Instant::now());
        let status = format!("{processed} frames processed, {fps:.1} fps");
        (self.message(fps), status)
    }

    /// The last message, once the inference thread is done: final counts, no
    /// frame rate.
    pub(crate) fn last(&self) -> Outgoing {
        self.message(0.0)
    }

    fn message(&self, fps: f32) -> Outgoing {
        let stats = &self.stats;
        let (inference, _) = stats.take_latencies();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let msg = StatsMessage {
            schema: SCHEMA_VERSION,
            device: self.identity.device().to_string(),
            version: env!("CARGO_PKG_VERSION"),
            model: self.model.clone(),
            uptime_s: self.started.elapsed().as_secs(),
            frames_captured: load(&stats.frames_captured),
            frames_processed: load(&stats.frames_processed),
            frames_dropped: load(&stats.frames_dropped_queue) + load(&stats.frames_dropped_source),
            frames_skipped: load(&stats.frames_skipped),
            fps,
            inference,
            queue_depth: self.queue.depth(),
            camera: if stats.camera_online.load(Ordering::Relaxed) {
                "online"
            } else {
                "offline"
            },
            defects_detected: load(&stats.defects_detected),
            events: load(&stats.events),
            defects_today: stats.defects_today(),
            detecting: self.switches.detecting(),
            broker: BrokerStats::from(&self.publisher.stats()),
            precision_trial: self.precision_trial.clone(),
        };
        Outgoing::new(MessageClass::Stats, "stats", to_json(&msg))
    }
}
