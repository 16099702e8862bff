//! The daemon's pipeline: source thread -> newest-frame queue -> inference
//! thread -> publisher (tokio). Data flows one way; one shutdown path:
//!
//! 1. SIGTERM/SIGINT (or the end of a replay) sets the stop flag;
//! 2. the source thread stops and closes the queue;
//! 3. the inference thread finishes the frame in flight, ends open defect
//!    tracks and exits;
//! 4. the publisher gets the broadcast shutdown, delivers what is queued
//!    (bounded by its drain timeout), publishes `offline` and disconnects.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result};
use log::{debug, error, info, warn};

use crate::analysis::tracking::{DefectEvent, EventKind};
use crate::config::{Config, OutputConfig, PipelineConfig};
use crate::frame::Frame;
use crate::inspect::{Inspection, Inspector};
use crate::messages::{
    to_json, CameraMessage, DefectMessage, DetectionsMessage, EventMessage, LatencyStats,
    ModelInfo, ModuleReport, StatsMessage, ThumbnailRef, SCHEMA_VERSION,
};
use crate::position::PositionSource;
use crate::publish::{self, Identity, MessageClass, Outgoing, Publisher};
use crate::render::{self, Renderer};
use crate::service::{self, Heartbeat};
use crate::source::{FrameSource, SourceEvent, SourceState};

/// A queue of one: the newest frame waiting for the model. A slow box drops
/// older frames (and counts them) instead of building up latency.
#[derive(Default)]
pub struct FrameQueue {
    slot: Mutex<QueueSlot>,
    ready: Condvar,
}

#[derive(Default)]
struct QueueSlot {
    frame: Option<Frame>,
    closed: bool,
}

/// What [`FrameQueue::pop`] returns.
#[allow(clippy::large_enum_variant)] // the frame moves once, boxing it buys nothing
pub enum Popped {
    Frame(Frame),
    /// Nothing arrived within the timeout (the caller beats the heartbeat).
    Idle,
    /// The source is done and the queue is empty.
    Closed,
}

impl FrameQueue {
    /// Puts `frame` in the queue; returns true when it replaced an unprocessed frame.
    pub fn push(&self, frame: Frame) -> bool {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let replaced = slot.frame.replace(frame).is_some();
        self.ready.notify_one();
        replaced
    }

    /// Waits until the queue is empty (or closed), then puts `frame` in it:
    /// backpressure for sources that must not lose frames.
    pub fn push_when_free(&self, frame: Frame) {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let mut slot = self
            .ready
            .wait_while(slot, |s| s.frame.is_some() && !s.closed)
            .unwrap_or_else(|e| e.into_inner());
        slot.frame = Some(frame);
        self.ready.notify_all();
    }

    /// No more frames will come.
    pub fn close(&self) {
        self.slot.lock().unwrap_or_else(|e| e.into_inner()).closed = true;
        self.ready.notify_all();
    }

    /// Number of frames waiting (0 or 1).
    pub fn depth(&self) -> u32 {
        self.slot
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .frame
            .is_some() as u32
    }

    /// Takes the waiting frame, waiting up to `timeout` for one.
    pub fn pop(&self, timeout: Duration) -> Popped {
        let slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        let (mut slot, _) = self
            .ready
            .wait_timeout_while(slot, timeout, |s| s.frame.is_none() && !s.closed)
            .unwrap_or_else(|e| e.into_inner());
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

/// Counters shared by the pipeline's threads and read by the stats task.
#[derive(Default)]
pub struct PipelineStats {
    pub frames_captured: AtomicU64,
    pub frames_processed: AtomicU64,
    pub frames_dropped_queue: AtomicU64,
    pub frames_dropped_source: AtomicU64,
    pub frames_skipped: AtomicU64,
    pub defects_detected: AtomicU64,
    pub events: AtomicU64,
    pub camera_online: AtomicBool,
    /// Inference latencies (ms) since the last stats message.
    latencies: Mutex<Vec<f32>>,
}

impl PipelineStats {
    fn record_latency(&self, ms: f32) {
        let mut l = self.latencies.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded: a stats interval never holds more than this many samples.
        if l.len() < 100_000 {
            l.push(ms);
        }
    }

    /// Percentiles of the latencies recorded since the last call, and how many.
    pub fn take_latencies(&self) -> (LatencyStats, usize) {
        let mut l = std::mem::take(&mut *self.latencies.lock().unwrap_or_else(|e| e.into_inner()));
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

/// Turns one inspected frame into the messages to publish.
pub struct MessageBuilder {
    identity: Identity,
    output: OutputConfig,
    model: ModelInfo,
    /// Distinguishes message ids of this run from those of earlier runs.
    run_id: String,
    last_snapshot: Option<Instant>,
    renderer: Renderer,
}

impl MessageBuilder {
    /// A builder for this device and output settings.
    pub fn new(
        identity: Identity,
        output: OutputConfig,
        model: ModelInfo,
        renderer: Renderer,
    ) -> Self {
        let started = crate::analysis::rfc3339::unix_millis(SystemTime::now());
        Self {
            identity,
            output,
            model,
            run_id: format!("{started:x}"),
            last_snapshot: None,
            renderer,
        }
    }

    /// The JPEG of `image` with `id` in its comment segment, or `None` (logged)
    /// when it cannot be encoded: a picture is never worth losing the message.
    fn jpeg(&self, image: Option<image::RgbImage>, id: &str) -> Option<Vec<u8>> {
        let jpeg = render::encode_jpeg(&image?, self.output.jpeg_quality)
            .map_err(|e| warn!("{id}: no thumbnail: {e:#}"))
            .ok()?;
        Some(with_jpeg_comment(&jpeg, &format!("pvtherm-id={id}")))
    }

    /// Messages for one frame: detections, a defect message (+ thumbnail) per
    /// defective module, the tracker's events, and the snapshot when due.
    pub fn frame_messages(&mut self, frame: &Frame, inspection: &Inspection) -> Vec<Outgoing> {
        let device = self.identity.device().to_string();
        let analysis = &inspection.analysis;
        let mut out = Vec::new();
        let message_id = format!("{device}-{}-{}", self.run_id, frame.sequence);
        if !analysis.modules.is_empty() || self.output.publish_empty_frames {
            let msg = DetectionsMessage::new(
                message_id.clone(),
                &device,
                frame,
                &self.model,
                inspection.latency_ms,
                analysis,
            );
            out.push(Outgoing::new(
                MessageClass::Detections,
                "detections",
                to_json(&msg),
            ));
        }
        for (index, m) in analysis
            .modules
            .iter()
            .enumerate()
            .filter(|(_, m)| m.detection.defect.defective)
        {
            let defect_id = format!("{message_id}-m{index}");
            let thumbnail = if self.output.thumbnails {
                let image = self.renderer.module_thumbnail(frame, &m.detection.quad);
                self.jpeg(image, &defect_id)
            } else {
                None
            };
            let msg = DefectMessage {
                schema: SCHEMA_VERSION,
                message_id: defect_id,
                detections_id: message_id.clone(),
                device: device.clone(),
                frame: crate::messages::FrameInfo::of(frame),
                unit: analysis.unit,
                module: ModuleReport::of(index, m),
                thumbnail: thumbnail.as_ref().map(|t| ThumbnailRef {
                    topic: self.identity.topic("defects/thumbnail"),
                    bytes: t.len(),
                }),
            };
            out.push(Outgoing::new(
                MessageClass::Defect,
                "defects",
                to_json(&msg),
            ));
            if let Some(jpeg) = thumbnail {
                out.push(Outgoing::new(
                    MessageClass::DefectThumbnail,
                    "defects/thumbnail",
                    jpeg,
                ));
            }
        }
        out.extend(self.event_messages(&analysis.events));
        if self.snapshot_due() {
            let image = self.renderer.overview(frame, analysis);
            if let Some(jpeg) = self.jpeg(Some(image), &message_id) {
                out.push(Outgoing::new(MessageClass::Snapshot, "snapshot", jpeg));
            }
        }
        out
    }

    /// Messages for defect events (`new`/`update`/`end`), each followed by its
    /// best thumbnail on `events/thumbnail` for `new` and `update`.
    pub fn event_messages(&mut self, events: &[DefectEvent]) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for event in events {
            let thumbnail = if self.output.thumbnails && event.kind != EventKind::End {
                let image = self.renderer.event_thumbnail(event);
                self.jpeg(image, &event.event_id)
            } else {
                None
            };
            let msg = EventMessage {
                schema: SCHEMA_VERSION,
                device: self.identity.device(),
                event,
                thumbnail: thumbnail.as_ref().map(|t| ThumbnailRef {
                    topic: self.identity.topic("events/thumbnail"),
                    bytes: t.len(),
                }),
            };
            out.push(Outgoing::new(
                MessageClass::DefectEvent,
                "events",
                to_json(&msg),
            ));
            if let Some(jpeg) = thumbnail {
                out.push(Outgoing::new(
                    MessageClass::DefectThumbnail,
                    "events/thumbnail",
                    jpeg,
                ));
            }
        }
        out
    }

    fn snapshot_due(&mut self) -> bool {
        let interval = self.output.snapshot_interval;
        if interval.is_zero() {
            return false;
        }
        let now = Instant::now();
        let due = self
            .last_snapshot
            .is_none_or(|t| now.duration_since(t) >= interval);
        if due {
            self.last_snapshot = Some(now);
        }
        due
    }
}

/// Decides which captured frames go to the model (`detect_every_n`, `max_fps`).
struct Throttle {
    every_n: u64,
    min_interval: Option<Duration>,
    seen: u64,
    last: Option<Instant>,
}

impl Throttle {
    fn new(cfg: &PipelineConfig) -> Self {
        let min_interval = (cfg.max_fps > 0.0).then(|| Duration::from_secs_f32(1.0 / cfg.max_fps));
        Self {
            every_n: cfg.detect_every_n.max(1) as u64,
            min_interval,
            seen: 0,
            last: None,
        }
    }

    fn admit(&mut self) -> bool {
        self.seen += 1;
        if !(self.seen - 1).is_multiple_of(self.every_n) {
            return false;
        }
        let now = Instant::now();
        if let (Some(min), Some(last)) = (self.min_interval, self.last) {
            if now.duration_since(last) < min {
                return false;
            }
        }
        self.last = Some(now);
        true
    }
}

/// Runs the source on its own thread until it ends or `stop` is set; frames go
/// to `queue`, state changes to `states`.
fn source_thread(
    mut source: Box<dyn FrameSource>,
    queue: Arc<FrameQueue>,
    states: tokio::sync::mpsc::UnboundedSender<SourceState>,
    stats: Arc<PipelineStats>,
    stop: Arc<AtomicBool>,
) {
    let wait = source.waits_for_consumer();
    while !stop.load(Ordering::Relaxed) {
        match source.next_event() {
            Ok(SourceEvent::Frame(frame)) => {
                stats.frames_captured.fetch_add(1, Ordering::Relaxed);
                if wait {
                    queue.push_when_free(frame);
                } else if queue.push(frame) {
                    stats.frames_dropped_queue.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(SourceEvent::State(state)) => {
                stats
                    .camera_online
                    .store(state == SourceState::Online, Ordering::Relaxed);
                let _ = states.send(state);
            }
            Ok(SourceEvent::End) => {
                info!("source finished: {}", source.describe());
                break;
            }
            Err(e) => {
                error!("source failed: {e:#}");
                let _ = states.send(SourceState::Offline {
                    reason: format!("{e:#}"),
                });
                break;
            }
        }
        stats
            .frames_dropped_source
            .store(source.dropped_frames(), Ordering::Relaxed);
    }
    queue.close();
}

/// Everything the inference thread needs.
struct Worker {
    inspector: Inspector,
    /// Where the camera is; read for every frame and handed to the analysis.
    position: PositionSource,
    builder: MessageBuilder,
    publisher: Publisher,
    queue: Arc<FrameQueue>,
    stats: Arc<PipelineStats>,
    heartbeat: Heartbeat,
    throttle: Throttle,
    frame_summary: bool,
}

impl Worker {
    /// Processes frames until the queue is closed and empty.
    fn run(mut self) {
        loop {
            self.heartbeat.beat();
            let frame = match self.queue.pop(Duration::from_millis(500)) {
                Popped::Frame(f) => f,
                Popped::Idle => continue,
                Popped::Closed => break,
            };
            if !self.throttle.admit() {
                self.stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            if let Err(e) = self.process(&frame) {
                // A bad frame is reported and skipped; the daemon goes on.
                warn!("frame {} from {}: {e:#}", frame.sequence, frame.origin);
            }
        }
        let events = self.inspector.finish();
        self.stats
            .events
            .fetch_add(events.len() as u64, Ordering::Relaxed);
        let messages = self.builder.event_messages(&events);
        if let Err(e) = self.publisher.submit_all(messages) {
            error!("could not queue the final defect events: {e:#}");
        }
    }

    fn process(&mut self, frame: &Frame) -> Result<()> {
        let position = self.position.current();
        let inspection = self.inspector.inspect(frame, position.as_ref())?;
        let a = &inspection.analysis;
        let defects = a
            .modules
            .iter()
            .filter(|m| m.detection.defect.defective)
            .count();
        self.stats.frames_processed.fetch_add(1, Ordering::Relaxed);
        self.stats
            .defects_detected
            .fetch_add(defects as u64, Ordering::Relaxed);
        self.stats
            .events
            .fetch_add(a.events.len() as u64, Ordering::Relaxed);
        self.stats.record_latency(inspection.latency_ms);
        let summary = format!(
            "frame {} ({}): {} modules, {} defective, {} events, {:.1} ms",
            frame.sequence,
            frame.origin,
            a.modules.len(),
            defects,
            a.events.len(),
            inspection.latency_ms
        );
        if self.frame_summary {
            info!(frame_sequence = frame.sequence, module_count = a.modules.len(), defect_count = defects; "{summary}");
        } else {
            debug!(frame_sequence = frame.sequence, module_count = a.modules.len(), defect_count = defects; "{summary}");
        }
        for event in &a.events {
            info!(defect_id = event.event_id.as_str(), frame_sequence = frame.sequence;
                "defect event {:?} {}: {} over {} frames", event.kind, event.event_id, event.anomaly_class, event.frames_seen);
        }
        let messages = self.builder.frame_messages(frame, &inspection);
        // Accepted = written to the outbox; an error here means the disk is failing.
        self.publisher
            .submit_all(messages)
            .context("could not queue messages for delivery")
    }
}

/// Runs the daemon until a signal or the end of the source. Returns when
/// everything queued has been handed to the broker or the drain timed out.
pub fn run_daemon(config: Config, source: Box<dyn FrameSource>) -> Result<()> {
    let identity = Identity::new(&config.device.topic_prefix, &config.device.id)?;
    let inspector = Inspector::new(&config.model, config.analysis.clone())?;
    info!(
        "models loaded: {} + {}",
        inspector.model_info().detector,
        inspector.model_info().classifier
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("pvtherm-io")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(config, identity, inspector, source))
}

async fn run_async(
    config: Config,
    identity: Identity,
    inspector: Inspector,
    source: Box<dyn FrameSource>,
) -> Result<()> {
    // Its gpsd thread, if any, stops when the worker drops it.
    let position = PositionSource::from_config(&config.analysis.position)?;
    let _broker = if config.broker.enabled {
        Some(publish::start_broker(&config.broker)?)
    } else {
        None
    };
    let (shutdown_tx, _) = tokio::sync::broadcast::channel::<()>(4);
    let (publisher, publisher_task) = publish::spawn_publisher(
        &config.mqtt,
        &config.outbox,
        &identity,
        shutdown_tx.subscribe(),
    )?;

    let stats = Arc::new(PipelineStats::default());
    let queue = Arc::new(FrameQueue::default());
    let stop = Arc::new(AtomicBool::new(false));
    let heartbeat = Heartbeat::new();
    let watchdog = heartbeat
        .start_watchdog()
        .context("cannot start the watchdog pinger")?;
    let source_name = source.describe();
    let radiometric = source.is_radiometric();
    let model_info = inspector.model_info().clone();

    let (state_tx, mut state_rx) = tokio::sync::mpsc::unbounded_channel();
    stats.camera_online.store(true, Ordering::Relaxed);
    let source_handle = {
        let (queue, stats, stop) = (queue.clone(), stats.clone(), stop.clone());
        std::thread::Builder::new()
            .name("pvtherm-source".into())
            .spawn(move || source_thread(source, queue, state_tx, stats, stop))?
    };
    let worker = Worker {
        inspector,
        position,
        builder: MessageBuilder::new(
            identity.clone(),
            config.output.clone(),
            model_info.clone(),
            Renderer::new(config.render.clone()),
        ),
        publisher: publisher.clone(),
        queue: queue.clone(),
        stats: stats.clone(),
        heartbeat: heartbeat.clone(),
        throttle: Throttle::new(&config.pipeline),
        frame_summary: config.pipeline.frame_summary,
    };
    let worker_handle = tokio::task::spawn_blocking(move || worker.run());

    let camera_message = |state: &SourceState| {
        let (s, reason) = match state {
            SourceState::Online => ("online", None),
            SourceState::Offline { reason } => ("offline", Some(reason.clone())),
        };
        let msg = CameraMessage {
            schema: SCHEMA_VERSION,
            device: identity.device().to_string(),
            state: s,
            reason,
            source: source_name.clone(),
            radiometric,
            since: SystemTime::now(),
        };
        Outgoing::new(MessageClass::Camera, "camera", to_json(&msg))
    };
    publisher.submit(camera_message(&SourceState::Online))?;
    service::notify_ready();
    info!(
        "pvtherm {} running: source {source_name}, topics {}",
        env!("CARGO_PKG_VERSION"),
        identity.topic("#")
    );

    let started = Instant::now();
    let mut stats_timer =
        tokio::time::interval(config.output.stats_interval);
    // After a stall (e.g. a long model load on a slow box) send one stats message, not a burst.
    stats_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_processed = 0u64;
    let mut last_stats = Instant::now();
    tokio::pin!(worker_handle);
    let signal = service::shutdown_signal();
    tokio::pin!(signal);
    let mut worker_done = false;
    loop {
        tokio::select! {
            sig = &mut signal => {
                match sig {
                    Ok(s) => info!("{s} received: finishing the frame in flight, flushing, going offline"),
                    Err(e) => error!("cannot listen for signals: {e}"),
                }
                break;
            }
            res = &mut worker_handle => {
                worker_done = true;
                if let Err(e) = res { error!("inference thread failed: {e}"); }
                info!("source ended: flushing and going offline");
                break;
            }
            Some(state) = state_rx.recv() => {
                match &state {
                    SourceState::Online => info!("camera online: {source_name}"),
                    SourceState::Offline { reason } => warn!("camera offline: {reason}"),
                }
                publisher.submit(camera_message(&state))?;
            }
            _ = stats_timer.tick() => {
                let processed = stats.frames_processed.load(Ordering::Relaxed);
                let elapsed = last_stats.elapsed().as_secs_f32().max(1e-3);
                let fps = (processed - last_processed) as f32 / elapsed;
                last_processed = processed;
                last_stats = Instant::now();
                let msg = stats_message(&identity, &model_info, &stats, &queue, &publisher, started, fps);
                service::notify_status(&format!("{processed} frames processed, {fps:.1} fps"));
                publisher.submit(Outgoing::new(MessageClass::Stats, "stats", to_json(&msg)))?;
            }
        }
    }
    service::notify_stopping();
    stop.store(true, Ordering::Relaxed);
    // The source thread may block in a camera read up to its stall timeout; the
    // queue is closed here too so the worker does not wait for it.
    queue.close();
    if !worker_done {
        if let Err(e) = worker_handle.await {
            error!("inference thread failed: {e}");
        }
    }
    let fps = 0.0;
    let msg = stats_message(
        &identity,
        &model_info,
        &stats,
        &queue,
        &publisher,
        started,
        fps,
    );
    publisher.submit(Outgoing::new(MessageClass::Stats, "stats", to_json(&msg)))?;
    let _ = shutdown_tx.send(());
    let result = publisher_task.await.context("publisher task panicked")?;
    if let Some(w) = watchdog {
        w.stop();
    }
    // The source thread is detached if it is stuck in a driver call; it dies with the process.
    if source_handle.is_finished() {
        let _ = source_handle.join();
    }
    info!(
        "stopped: {} frames captured, {} processed",
        stats.frames_captured.load(Ordering::Relaxed),
        stats.frames_processed.load(Ordering::Relaxed)
    );
    result
}

fn stats_message(
    identity: &Identity,
    model: &ModelInfo,
    stats: &PipelineStats,
    queue: &FrameQueue,
    publisher: &Publisher,
    started: Instant,
    fps: f32,
) -> StatsMessage {
    let (inference, _) = stats.take_latencies();
    let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
    StatsMessage {
        schema: SCHEMA_VERSION,
        device: identity.device().to_string(),
        version: env!("CARGO_PKG_VERSION"),
        model: model.clone(),
        uptime_s: started.elapsed().as_secs(),
        frames_captured: load(&stats.frames_captured),
        frames_processed: load(&stats.frames_processed),
        frames_dropped: load(&stats.frames_dropped_queue) + load(&stats.frames_dropped_source),
        frames_skipped: load(&stats.frames_skipped),
        fps,
        inference,
        queue_depth: queue.depth(),
        camera: if stats.camera_online.load(Ordering::Relaxed) {
            "online"
        } else {
            "offline"
        },
        defects_detected: load(&stats.defects_detected),
        events: load(&stats.events),
        broker: serde_json::to_value(publisher.stats()).unwrap_or_default(),
    }
}

/// `jpeg` with a comment segment (COM) holding `text` right after the start
/// marker: the thumbnail stays a valid JPEG and carries the id of the JSON
/// message it belongs to (MQTT 3.1.1 has no message properties to carry it).
pub fn with_jpeg_comment(jpeg: &[u8], text: &str) -> Vec<u8> {
    if jpeg.len() < 2 || jpeg[..2] != [0xFF, 0xD8] || text.len() > 60_000 {
        return jpeg.to_vec();
    }
    let len = (text.len() + 2) as u16;
    let mut out = Vec::with_capacity(jpeg.len() + text.len() + 4);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(text.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    }

    #[test]
    fn throttle_every_n() {
        let mut t = Throttle::new(&PipelineConfig {
            detect_every_n: 3,
            ..Default::default()
        });
        let admitted: Vec<bool> = (0..6).map(|_| t.admit()).collect();
        assert_eq!(admitted, [true, false, false, true, false, false]);
    }

    #[test]
    fn jpeg_comment_keeps_a_decodable_jpeg() {
        let img = image::RgbImage::from_pixel(16, 8, image::Rgb([200, 10, 10]));
        let jpeg = render::encode_jpeg(&img, 80).unwrap();
        let tagged = with_jpeg_comment(&jpeg, "pvtherm-id=dev-1-2-m3");
        let decoded = image::load_from_memory(&tagged).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (16, 8));
        assert!(tagged.windows(21).any(|w| w == b"pvtherm-id=dev-1-2-m3"));
    }
}
