//! The daemon's threads and how they stop.
//!
//! Data flows one way: the **source thread** reads the camera (or a replay)
//! into a queue of one frame (`pipeline/queue.rs`: a slow box drops the older
//! frame instead of building up latency); the **inference thread** runs the
//! models, the analysis and the [`MessageBuilder`] and submits each frame's
//! messages to the [`Publisher`]; the **publisher** (tokio tasks) delivers
//! them through the outbox. The **main task** here publishes camera state
//! changes and periodic stats, and a **watchdog pinger** thread tells systemd
//! the inference thread is alive ([`Heartbeat`]).
//!
//! # Stopping
//!
//! [`run_daemon`] is given a `shutdown` future: `pvtherm run` passes SIGTERM
//! or SIGINT ([`service::shutdown_signal`]), a test passes whatever it wants
//! to stop on. The main task waits for it, or for the source to end (the
//! inference thread returns after the last frame). Then, in this order:
//!
//! 1. the watchdog pinger stops, then systemd is told `STOPPING=1`, so no
//!    ping follows it;
//! 2. the main task sends the one shutdown broadcast; the source and
//!    inference threads each hold a listener (`pipeline/shutdown.rs`) and look
//!    at it between frames;
//! 3. the source thread stops before its next read and closes the queue (end
//!    of data: the frame waiting in it is still processed);
//! 4. the inference thread finishes the frame in flight and stops when the
//!    queue is closed, or at its next idle tick (at most 500 ms) if the source
//!    is stuck in a driver call; it ends the open defect tracks and submits
//!    their `end` events;
//! 5. once the inference thread is done, the last stats message is submitted;
//! 6. the publisher, which must outlive every producer to deliver their last
//!    messages, is told to drain only now: it stops accepting, delivers what
//!    is queued (bounded by `drain_timeout`), publishes `offline` and
//!    disconnects.
//!
//! A source thread stuck in a driver call is left behind; it ends with the
//! process.

mod queue;
mod shutdown;
mod stats;
mod throttle;

use std::future::Future;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use log::{debug, error, info, warn};
use tokio::sync::{broadcast, mpsc};

use queue::{FrameQueue, Popped};
use shutdown::Shutdown;
use stats::{PipelineStats, StatsReporter};
use throttle::Throttle;

use crate::analysis::tracking::EventKind;
use crate::config::Config;
use crate::control::{Control, Switches};
use crate::frame::Frame;
use crate::homeassistant::{self, DeviceFacts};
use crate::inspect::Inspector;
use crate::messages::{camera_message, control_state_message, MessageBuilder};
use crate::model::trial::PrecisionTrial;
use crate::position::PositionSource;
use crate::publish::{self, Identity, Outgoing, Publisher};
use crate::render::Renderer;
use crate::service::{self, Heartbeat};
use crate::source::{FrameSource, SourceEvent, SourceState};
use crate::web::{LiveState, WebServer, WebSetup};

/// How long the inference thread waits for a frame before it beats the
/// heartbeat and looks at the shutdown signal again.
const IDLE_TICK: Duration = Duration::from_millis(500);

/// Runs the source on its own thread until it ends or shutdown is asked for;
/// frames go to `queue`, state changes to `states`.
fn source_thread(
    mut source: Box<dyn FrameSource>,
    queue: Arc<FrameQueue>,
    states: mpsc::UnboundedSender<SourceState>,
    stats: Arc<PipelineStats>,
    mut shutdown: Shutdown,
) {
    let wait = source.waits_for_consumer();
    while !shutdown.is_shutdown() {
        match source.next_event() {
            Ok(SourceEvent::Frame(frame)) => {
                stats.frames_captured.fetch_add(1, Ordering::Relaxed);
                if wait {
                    if !queue.push_when_free(frame) {
                        // The inference thread stopped first: counted, not lost silently.
                        stats.frames_dropped_queue.fetch_add(1, Ordering::Relaxed);
                    }
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
    shutdown: Shutdown,
    /// What the control topics set: analysis paused, snapshot asked for.
    switches: Arc<Switches>,
    /// What the web page's live view shows (`[http]` enabled): it keeps the
    /// messages built for the broker anyway, nothing more is computed.
    live: Option<Arc<LiveState>>,
}

impl Worker {
    /// Processes frames until the queue is closed and empty, or until it is
    /// idle after shutdown was asked for; then ends the open defect tracks.
    fn run(mut self) {
        loop {
            self.heartbeat.beat();
            let frame = match self.queue.pop(IDLE_TICK) {
                Popped::Frame(f) => f,
                // Stopping while the source is still busy: close the queue, so a
                // frame it hands over later is refused and counted, and take one
                // that arrived meanwhile.
                Popped::Idle if self.shutdown.is_shutdown() => {
                    self.queue.close();
                    continue;
                }
                Popped::Idle => continue,
                Popped::Closed => break,
            };
            if self.switches.take_snapshot_request() {
                self.builder.request_snapshot();
            }
            if !self.switches.detecting() {
                // Paused: the frame was counted as captured; only an asked-for snapshot goes out.
                let messages = self.builder.paused_frame_messages(&frame);
                if let Err(e) = self.publisher.submit_all(messages) {
                    warn!("could not queue the snapshot: {e:#}");
                }
                continue;
            }
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
        self.show_live(&messages);
        if let Err(e) = self.publisher.submit_all(messages) {
            error!("could not queue the final defect events: {e:#}");
        }
    }

    /// Inspects one frame, counts and logs it, and submits its messages.
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
        let new = a.events.iter().filter(|e| e.kind == EventKind::New).count();
        self.stats.count_new_defects(new as u64);
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
        let messages = self.builder.frame_messages(frame, a, inspection.latency_ms);
        self.show_live(&messages);
        // Accepted = written to the outbox; an error here means the disk is failing.
        self.publisher
            .submit_all(messages)
            .context("could not queue messages for delivery")
    }

    /// Hands the messages to the live view, when there is one.
    fn show_live(&self, messages: &[Outgoing]) {
        if let Some(live) = &self.live {
            live.observe(messages);
        }
    }
}

/// Runs the daemon until `shutdown` completes or the source ends (see the
/// stop order above). Returns when everything queued has been handed to the
/// broker or the drain timed out.
pub fn run_daemon(
    config: Config,
    source: Box<dyn FrameSource>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    let identity = Identity::new(&config.device.topic_prefix, &config.device.id)?;
    let (inspector, trial) = Inspector::load_fastest(&config.model, config.analysis.clone())?;
    info!(
        "models loaded: {} + {}",
        inspector.model_info().detector,
        inspector.model_info().classifier
    );
    if let Some(trial) = &trial {
        info!("{trial}");
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .thread_name("pvtherm-io")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(run_async(
        config, identity, inspector, trial, source, shutdown,
    ))
}

/// The body of [`run_daemon`], inside the tokio runtime.
async fn run_async(
    config: Config,
    identity: Identity,
    inspector: Inspector,
    trial: Option<PrecisionTrial>,
    source: Box<dyn FrameSource>,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    // Its gpsd thread, if any, stops when the worker drops it.
    let position = PositionSource::from_config(&config.analysis.position)?;
    let _broker = if config.broker.enabled {
        Some(publish::start_broker(&config.broker)?)
    } else {
        None
    };
    // Step 6 of the stop order: the publisher's own trigger, fired last.
    let (drain_tx, drain_rx) = broadcast::channel::<()>(1);
    let (publisher, publisher_task) =
        publish::spawn_publisher(&config.mqtt, &config.outbox, &identity, drain_rx)?;
    let (notify_shutdown, _) = broadcast::channel::<()>(1);
    // The web server has its own thread, runtime and models: it reads the
    // live state and never waits on the pipeline, nor the pipeline on it.
    let live = config.http.enabled.then(|| Arc::new(LiveState::default()));
    let web = match &live {
        Some(live) => {
            let server = WebServer::start(
                WebSetup {
                    http: config.http.clone(),
                    // The pair the trial chose: the uploads' own instance
                    // need not time them again.
                    model: match &trial {
                        Some(t) => config.model.with_precision(t.chosen),
                        None => config.model.clone(),
                    },
                    analysis: config.analysis.clone(),
                    render: config.render.clone(),
                    pixel_limit: config.source.max_pixels,
                    mode: "daemon",
                },
                live.clone(),
            )?;
            info!("web page and API on http://{}/", server.addr());
            Some(server)
        }
        None => None,
    };

    let stats = Arc::new(PipelineStats::default());
    let queue = Arc::new(FrameQueue::default());
    let heartbeat = Heartbeat::new();
    let watchdog = heartbeat
        .start_watchdog()
        .context("cannot start the watchdog pinger")?;
    let source_name = source.describe();
    let radiometric = source.is_radiometric();
    let model_info = inspector.model_info().clone();

    let (state_tx, mut state_rx) = mpsc::unbounded_channel();
    stats.camera_online.store(true, Ordering::Relaxed);
    let source_handle = {
        let (queue, stats) = (queue.clone(), stats.clone());
        let shutdown = Shutdown::new(notify_shutdown.subscribe());
        std::thread::Builder::new()
            .name("pvtherm-source".into())
            .spawn(move || source_thread(source, queue, state_tx, stats, shutdown))?
    };
    let builder = MessageBuilder::new(
        identity.clone(),
        config.output.clone(),
        model_info.clone(),
        Renderer::new(config.render.clone()),
    );
    // The tracker starts empty: a `defects/active` list left by an earlier run is stale.
    let mut initial = vec![builder.active_defects_message()];
    let control = Control::new(identity.topic(""));
    let switches = control.switches();
    let mut listen = Vec::new();
    if config.control.enabled {
        listen.extend(control.topics());
        initial.push(control_state_message(&identity, true, None));
    }
    let ha = &config.homeassistant;
    if ha.enabled {
        let facts = DeviceFacts {
            radiometric,
            control: config.control.enabled,
            source: source_name.clone(),
        };
        let payload = homeassistant::discovery_payload(ha, &identity, &facts);
        publisher.announce(&ha.config_topic(&identity), payload)?;
        listen.push(ha.status_topic());
    } else {
        // Removes the device from Home Assistant if discovery was on before;
        // an empty retained message where there is none changes nothing.
        publisher.announce(&ha.config_topic(&identity), Vec::new())?;
    }
    let mut inbound = publisher.inbound(&listen);
    let worker = Worker {
        inspector,
        position,
        builder,
        publisher: publisher.clone(),
        queue: queue.clone(),
        stats: stats.clone(),
        heartbeat: heartbeat.clone(),
        throttle: Throttle::new(&config.pipeline),
        frame_summary: config.pipeline.frame_summary,
        shutdown: Shutdown::new(notify_shutdown.subscribe()),
        switches: switches.clone(),
        live: live.clone(),
    };
    let worker_handle = tokio::task::spawn_blocking(move || worker.run());

    let camera = |state: &SourceState| camera_message(&identity, &source_name, radiometric, state);
    // Camera and stats messages go to the live view too, when there is one.
    let submit = |message: Outgoing| {
        if let Some(live) = &live {
            live.observe(std::slice::from_ref(&message));
        }
        publisher.submit(message)
    };
    submit(camera(&SourceState::Online))?;
    publisher.submit_all(initial)?;
    service::notify_ready();
    info!(
        "pvtherm {} running: source {source_name}, topics {}",
        env!("CARGO_PKG_VERSION"),
        identity.topic("#")
    );

    let mut reporter = StatsReporter::new(
        identity.clone(),
        model_info,
        trial,
        stats.clone(),
        queue,
        publisher.clone(),
        switches.clone(),
    );
    let mut stats_timer = tokio::time::interval(config.output.stats_interval);
    // After a stall (e.g. a long model load on a slow box) send one stats message, not a burst.
    stats_timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(worker_handle);
    tokio::pin!(shutdown);
    let mut worker_done = false;
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
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
                submit(camera(&state))?;
            }
            Some(message) = inbound.recv() => {
                if ha.enabled && message.topic == ha.status_topic() {
                    if homeassistant::is_online(&message.payload) {
                        // Home Assistant (re)started: announce again, after a
                        // delay that differs from box to box.
                        let delay = homeassistant::answer_delay(&ha.node_id(&identity));
                        let publisher = publisher.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(delay).await;
                            publisher.reannounce();
                        });
                    }
                } else if let Some(answer) =
                    control.handle(&message.topic, &message.payload, message.retain)
                {
                    submit(control_state_message(&identity, switches.detecting(), Some(answer)))?;
                }
            }
            _ = stats_timer.tick() => {
                let (message, status) = reporter.tick();
                service::notify_status(&status);
                submit(message)?;
            }
        }
    }
    if let Some(w) = watchdog {
        w.stop();
    }
    service::notify_stopping();
    // No listener left (the source and the worker ended on their own) is fine.
    let _ = notify_shutdown.send(());
    if !worker_done {
        if let Err(e) = worker_handle.await {
            error!("inference thread failed: {e}");
        }
    }
    submit(reporter.last())?;
    // No new uploads while the publisher drains; requests in flight finish.
    if let Some(web) = web {
        web.stop();
    }
    let _ = drain_tx.send(());
    let result = publisher_task.await.context("publisher task panicked")?;
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
