//! The publisher: a [`Publisher`] handle for the pipeline and the delivery task that
//! moves outbox rows to the broker and deletes them on PUBACK.
//!
//! Two tokio tasks: the *link* task owns rumqttc's `EventLoop` (it must be polled
//! continuously and is not cancel-safe inside `select!`), reconnects with backoff and
//! forwards the few events that matter; the *delivery* task owns the bookkeeping:
//! which outbox row went out under which packet id, the in-flight window, the rate
//! limit, the state slots and the shutdown drain.

use super::committer::Committer;
use super::mqtt::describe_connection_error;
use super::outbox::Outbox;
use super::{
    validate_topic_suffix, ClassCounts, Identity, MessageClass, MqttConfig, OutboxConfig, Outgoing,
};
use anyhow::{anyhow, bail, Context, Result};
use rumqttc::{AsyncClient, Event, LastWill, MqttOptions, Packet, QoS};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::task::JoinHandle;
use tokio::time::{sleep, sleep_until, Instant};

/// How often old rows are expired while running.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);
/// Extra time after the drain timeout for `offline` and DISCONNECT to go out.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long DISCONNECT may take to go out after that.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// A snapshot of the publisher's health, for the stats message and logs.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PublisherStats {
    /// True while an MQTT session is up.
    pub connected: bool,
    /// Human-readable link state, e.g. `connected to 10.0.0.2:1883` or
    /// `disconnected: cannot reach broker ...; retry #3 in 4.1s`.
    pub link: String,
    /// Successful connections after the first one.
    pub reconnects: u64,
    /// Failed connection attempts and dropped links since start.
    pub connection_failures: u64,
    /// Messages acknowledged by the broker (QoS 1) or written out (QoS 0), per class.
    pub published: ClassCounts,
    /// Messages waiting in the outbox (including those in flight).
    pub outbox_depth: u64,
    /// Accounted bytes in the outbox.
    pub outbox_bytes: u64,
    /// Outbox messages sent and not yet acknowledged.
    pub in_flight: usize,
    /// Messages dropped because the outbox was full or they were too old, per class.
    pub dropped: ClassCounts,
    /// The last connection error, kept after reconnecting (for diagnosis).
    pub last_error: Option<String>,
}

/// Handle for submitting messages. Cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
    committer: Arc<Committer>,
}

/// State shared by the handles and the delivery task.
struct Shared {
    identity: Identity,
    outbox: Mutex<Outbox>,
    /// Latest value per state topic, and whether it still has to go out.
    state: Mutex<BTreeMap<String, (Outgoing, bool)>>,
    link: Mutex<LinkStats>,
    wake: Notify,
    accepting: AtomicBool,
    max_message_bytes: usize,
}

#[derive(Default)]
struct LinkStats {
    connected: bool,
    link: String,
    reconnects: u64,
    connection_failures: u64,
    published: ClassCounts,
    in_flight: usize,
    last_error: Option<String>,
}

/// Locks a mutex, recovering from poisoning: the data are counters and a queue
/// handle, still consistent after a panic elsewhere.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Publisher {
    /// Accepts one message. Durable classes go to the outbox through the commit
    /// thread (see [`Committer`]: this waits only for the previous batch's commit);
    /// state classes replace the previous value of their topic in memory. Errors:
    /// shutting down, invalid topic suffix, message larger than `[mqtt]
    /// max_message_bytes`, disk failure.
    pub fn submit(&self, message: Outgoing) -> Result<()> {
        self.submit_all(vec![message])
    }

    /// Accepts several messages at once, e.g. everything one frame produced; the
    /// durable ones share a single commit (one fsync instead of one per message),
    /// done on the commit thread while the caller goes on.
    pub fn submit_all(&self, messages: Vec<Outgoing>) -> Result<()> {
        let shared = &self.shared;
        if !shared.accepting.load(Ordering::Acquire) {
            bail!("publisher is shutting down: message not accepted");
        }
        for m in &messages {
            validate_topic_suffix(&m.topic_suffix)?;
            if m.payload.len() > shared.max_message_bytes {
                bail!(
                    "{} message on {:?} is {} bytes, more than [mqtt] max_message_bytes = {}",
                    m.class,
                    m.topic_suffix,
                    m.payload.len(),
                    shared.max_message_bytes
                );
            }
        }
        let (durable, state): (Vec<_>, Vec<_>) =
            messages.into_iter().partition(|m| m.class.is_durable());
        if !durable.is_empty() {
            self.committer.submit(durable)?;
        }
        if !state.is_empty() {
            let mut slots = lock(&shared.state);
            for m in state {
                slots.insert(m.topic_suffix.clone(), (m, true));
            }
        }
        shared.wake.notify_one();
        Ok(())
    }

    /// Waits until every durable message accepted so far is committed to the
    /// outbox (at most one commit's time).
    pub fn flush(&self) {
        self.committer.flush();
    }

    /// Current link and queue statistics; the outbox figures count committed
    /// messages (call [`Publisher::flush`] first to include the last batch).
    pub fn stats(&self) -> PublisherStats {
        let (depth, bytes, dropped) = {
            let ob = lock(&self.shared.outbox);
            (ob.depth(), ob.bytes(), ob.dropped())
        };
        let link = lock(&self.shared.link);
        PublisherStats {
            connected: link.connected,
            link: link.link.clone(),
            reconnects: link.reconnects,
            connection_failures: link.connection_failures,
            published: link.published,
            outbox_depth: depth,
            outbox_bytes: bytes,
            in_flight: link.in_flight,
            dropped,
            last_error: link.last_error.clone(),
        }
    }

    /// The identity (prefix, device) topics are built from.
    pub fn identity(&self) -> &Identity {
        &self.shared.identity
    }
}

/// Opens the outbox and starts the publisher on the current tokio runtime (must be
/// called from inside one). Returns the handle for submitting and the delivery task,
/// which ends after `shutdown` fires (or its sender is dropped) and the drain is done:
/// queued messages delivered for up to `drain_timeout`, retained `offline` published,
/// clean DISCONNECT, outbox checkpointed. It returns an error only for a failing disk;
/// broker trouble is retried forever and reported in [`Publisher::stats`].
pub fn spawn_publisher(
    mqtt: &MqttConfig,
    outbox: &OutboxConfig,
    identity: &Identity,
    shutdown: broadcast::Receiver<()>,
) -> Result<(Publisher, JoinHandle<Result<()>>)> {
    let client_id = mqtt
        .client_id
        .clone()
        .unwrap_or_else(|| format!("pvtherm-{}", identity.device()));
    let mut options = mqtt.client_options(&client_id)?;
    let qos = if mqtt.qos == 0 {
        QoS::AtMostOnce
    } else {
        QoS::AtLeastOnce
    };
    options.set_last_will(LastWill::new(
        identity.availability_topic(),
        "offline",
        QoS::AtLeastOnce,
        true,
    ));
    let window = usize::from(mqtt.inflight_window);
    // rumqttc's own limit sits above ours, leaving room for availability and state
    // messages; its request channel is bounded by the same window.
    options.set_inflight(mqtt.inflight_window + 8);
    let outbox = Outbox::open(outbox)?;
    let shared = Arc::new(Shared {
        identity: identity.clone(),
        outbox: Mutex::new(outbox),
        state: Mutex::new(BTreeMap::new()),
        link: Mutex::new(LinkStats {
            link: format!("connecting to {}", mqtt.address()),
            ..LinkStats::default()
        }),
        wake: Notify::new(),
        accepting: AtomicBool::new(true),
        max_message_bytes: mqtt.max_message_bytes,
    });
    let committer = {
        let shared = shared.clone();
        Committer::spawn(move |batch| {
            lock(&shared.outbox).push_all(&batch)?;
            shared.wake.notify_one();
            Ok(())
        })?
    };
    let (events_tx, events_rx) = mpsc::channel(256);
    let backoff = Backoff::new(mqtt.reconnect_initial, mqtt.reconnect_max);
    let address = mqtt.address();
    log::info!("MQTT: connecting to {address} as {client_id}");
    let link_task = tokio::spawn(drive_link(
        options,
        window + 16,
        events_tx,
        backoff,
        address.clone(),
    ));
    let delivery = Delivery {
        shared: shared.clone(),
        committer: committer.clone(),
        client: None,
        qos,
        window,
        address,
        bucket: TokenBucket::new(mqtt.replay_rate, window),
        drain_timeout: mqtt.drain_timeout,
        connected: false,
        ever_connected: false,
        last_sent: 0,
        backlog: true,
        track: Tracking::default(),
    };
    let task = tokio::spawn(delivery.run(events_rx, shutdown, link_task));
    Ok((Publisher { shared, committer }, task))
}

/// What the link task reports to the delivery task.
enum LinkEvent {
    /// A new session is up; publish through this client (a fresh one per
    /// connection, so requests queued for a dead connection can never be mistaken for
    /// this one's).
    Connected(AsyncClient),
    Lost {
        error: String,
        retry_in: Duration,
        attempt: u32,
    },
    /// A publish went out with this packet id (0 = QoS 0).
    Sent(u16),
    /// rumqttc held a publish back: its packet id is still awaiting an ack.
    Collision(u16),
    Acked(u16),
    Disconnected,
}

/// Connects, polls the event loop and reconnects with backoff, forever. Each
/// connection attempt gets a fresh client and event loop: whatever was queued for the
/// previous connection dies with it, the delivery task replays from the outbox.
/// Ends after a clean DISCONNECT or when the delivery task is gone.
async fn drive_link(
    options: MqttOptions,
    channel_capacity: usize,
    events: mpsc::Sender<LinkEvent>,
    mut backoff: Backoff,
    address: String,
) {
    use rumqttc::Outgoing as Out;
    loop {
        let (client, mut eventloop) = AsyncClient::new(options.clone(), channel_capacity);
        loop {
            let event = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    backoff.reset();
                    LinkEvent::Connected(client.clone())
                }
                Ok(Event::Incoming(Packet::PubAck(ack))) => LinkEvent::Acked(ack.pkid),
                Ok(Event::Outgoing(Out::Publish(pkid))) => LinkEvent::Sent(pkid),
                Ok(Event::Outgoing(Out::AwaitAck(pkid))) => LinkEvent::Collision(pkid),
                Ok(Event::Outgoing(Out::Disconnect)) => {
                    let _ = events.send(LinkEvent::Disconnected).await;
                    return;
                }
                Ok(_) => continue,
                Err(e) => {
                    let (retry_in, attempt) = backoff.next_delay();
                    let error = describe_connection_error(&e, &address);
                    if events
                        .send(LinkEvent::Lost {
                            error,
                            retry_in,
                            attempt,
                        })
                        .await
                        .is_err()
                    {
                        return;
                    }
                    sleep(retry_in).await;
                    break;
                }
            };
            if events.send(event).await.is_err() {
                return;
            }
        }
    }
}

/// Which message went out under which packet id, for the current connection.
#[derive(Default)]
struct Tracking {
    /// Handed to the client, packet id not known yet (FIFO: rumqttc keeps order).
    queued: VecDeque<Sent>,
    /// Sent, waiting for PUBACK.
    by_pkid: HashMap<u16, Sent>,
    /// Held back by rumqttc because its packet id was still in use.
    collided: Option<(u16, Sent)>,
    /// The collided publish was released and its `Sent(pkid)` event is still to come.
    resend_pending: Option<u16>,
    /// Outbox rows among the above (the in-flight window).
    rows: usize,
}

/// A publish handed to rumqttc.
#[derive(Debug, Clone, Copy)]
enum Sent {
    /// An outbox row: delete it when acknowledged.
    Row(i64, MessageClass),
    /// A state-slot value (counted as published when acknowledged).
    State(MessageClass),
    /// `online` / `offline`.
    Availability,
}

struct Delivery {
    shared: Arc<Shared>,
    committer: Arc<Committer>,
    /// The current connection's client; `None` while disconnected.
    client: Option<AsyncClient>,
    qos: QoS,
    window: usize,
    address: String,
    bucket: TokenBucket,
    drain_timeout: Duration,
    connected: bool,
    ever_connected: bool,
    /// Highest outbox id handed to the client on this connection.
    last_sent: i64,
    /// The outbox may hold rows after `last_sent`.
    backlog: bool,
    track: Tracking,
}

impl Delivery {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<LinkEvent>,
        mut shutdown: broadcast::Receiver<()>,
        link_task: JoinHandle<()>,
    ) -> Result<()> {
        let shared = self.shared.clone();
        let mut next_expire = Instant::now() + EXPIRE_EVERY;
        let mut drain_deadline: Option<Instant> = None;
        let result = loop {
            let feed_at = self.next_feed_time();
            tokio::select! {
                event = events.recv() => match event {
                    Some(event) => {
                        if let Err(e) = self.on_event(event) {
                            break Err(e);
                        }
                    }
                    None => break Err(anyhow!("MQTT link task ended unexpectedly")),
                },
                _ = shared.wake.notified() => self.backlog = true,
                _ = sleep_until(feed_at.unwrap_or_else(Instant::now)), if feed_at.is_some() => {}
                _ = shutdown.recv(), if drain_deadline.is_none() => {
                    shared.accepting.store(false, Ordering::Release);
                    drain_deadline = Some(Instant::now() + self.drain_timeout);
                    log::info!(
                        "MQTT: shutting down, delivering queued messages for up to {}",
                        humantime::format_duration(self.drain_timeout)
                    );
                }
                _ = sleep_until(drain_deadline.unwrap_or_else(Instant::now)), if drain_deadline.is_some() => break Ok(()),
                _ = sleep_until(next_expire) => {
                    next_expire = Instant::now() + EXPIRE_EVERY;
                    if let Err(e) = lock(&shared.outbox).expire() {
                        break Err(e);
                    }
                }
            }
            if let Err(e) = self.pump() {
                break Err(e);
            }
            if drain_deadline.is_some() && self.drained() {
                break Ok(());
            }
        };
        shared.accepting.store(false, Ordering::Release);
        // The last batch may still be on its way to the disk: count it, checkpoint it.
        self.committer.close();
        let left = lock(&shared.outbox).depth();
        if left > 0 {
            log::warn!("MQTT: {left} message(s) stay in the outbox for the next start");
        }
        if result.is_ok() {
            self.goodbye(&mut events).await;
        }
        link_task.abort();
        let checkpoint = lock(&shared.outbox).checkpoint();
        result.and(checkpoint)
    }

    /// Nothing left to deliver (used to end the drain early).
    fn drained(&self) -> bool {
        self.connected
            && self.committer.is_idle()
            && self.track.rows == 0
            && lock(&self.shared.outbox).depth() == 0
            && !lock(&self.shared.state).values().any(|(_, dirty)| *dirty)
    }

    /// Publishes retained `offline`, waits for its PUBACK, then disconnects cleanly.
    async fn goodbye(&mut self, events: &mut mpsc::Receiver<LinkEvent>) {
        if !self.connected {
            return;
        }
        let deadline = Instant::now() + GOODBYE_TIMEOUT;
        let topic = self.shared.identity.availability_topic();
        if self.try_publish(topic, QoS::AtLeastOnce, true, b"offline".to_vec()) {
            self.track.queued.push_back(Sent::Availability);
            let mut offline_acked = false;
            while !offline_acked {
                let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await else {
                    break;
                };
                if let LinkEvent::Acked(pkid) = &event {
                    offline_acked =
                        matches!(self.track.by_pkid.get(pkid), Some(Sent::Availability));
                }
                if self.on_event(event).is_err() || !self.connected {
                    return;
                }
            }
        }
        if self
            .client
            .as_ref()
            .is_some_and(|c| c.try_disconnect().is_ok())
        {
            let deadline = Instant::now() + DISCONNECT_TIMEOUT;
            while let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await {
                if matches!(event, LinkEvent::Disconnected | LinkEvent::Lost { .. }) {
                    break;
                }
                let _ = self.on_event(event);
            }
        }
        self.set_link(
            false,
            format!("disconnected from {} (shutdown)", self.address),
        );
        log::info!(
            "MQTT: published offline and disconnected from {}",
            self.address
        );
    }

    fn on_event(&mut self, event: LinkEvent) -> Result<()> {
        match event {
            LinkEvent::Connected(client) => {
                self.client = Some(client);
                self.connected = true;
                self.track = Tracking::default();
                self.last_sent = 0;
                self.backlog = true;
                {
                    let mut link = lock(&self.shared.link);
                    if self.ever_connected {
                        link.reconnects += 1;
                    }
                }
                self.ever_connected = true;
                self.set_link(true, format!("connected to {}", self.address));
                log::info!("MQTT: connected to {}", self.address);
                // Availability first; everything else follows in the same FIFO.
                let topic = self.shared.identity.availability_topic();
                if self.try_publish(topic, QoS::AtLeastOnce, true, b"online".to_vec()) {
                    self.track.queued.push_back(Sent::Availability);
                }
                // The broker may have lost retained state: send the latest again.
                for (_, dirty) in lock(&self.shared.state).values_mut() {
                    *dirty = true;
                }
            }
            LinkEvent::Lost {
                error,
                retry_in,
                attempt,
            } => {
                let was_connected = self.connected;
                self.connected = false;
                self.client = None;
                self.track = Tracking::default();
                let text = format!(
                    "disconnected: {error}; retry #{attempt} in {:.1}s",
                    retry_in.as_secs_f64()
                );
                let repeated = {
                    let mut link = lock(&self.shared.link);
                    link.connection_failures += 1;
                    let repeated =
                        link.last_error.as_deref() == Some(error.as_str()) && !was_connected;
                    link.last_error = Some(error.clone());
                    repeated
                };
                self.set_link(false, text.clone());
                if repeated {
                    log::debug!("MQTT: {text}");
                } else if was_connected {
                    log::warn!("MQTT: link lost: {text}");
                } else {
                    log::warn!("MQTT: {text}");
                }
            }
            LinkEvent::Sent(pkid) => {
                if self.track.resend_pending == Some(pkid) {
                    self.track.resend_pending = None;
                } else if let Some(sent) = self.track.queued.pop_front() {
                    if pkid == 0 {
                        self.complete(sent)?;
                    } else {
                        self.track.by_pkid.insert(pkid, sent);
                    }
                }
            }
            LinkEvent::Collision(pkid) => {
                if let Some(sent) = self.track.queued.pop_front() {
                    self.track.collided = Some((pkid, sent));
                }
            }
            LinkEvent::Acked(pkid) => {
                if let Some(sent) = self.track.by_pkid.remove(&pkid) {
                    self.complete(sent)?;
                }
                if self
                    .track
                    .collided
                    .as_ref()
                    .is_some_and(|(p, _)| *p == pkid)
                {
                    if let Some((p, sent)) = self.track.collided.take() {
                        self.track.by_pkid.insert(p, sent);
                        self.track.resend_pending = Some(p);
                    }
                }
            }
            LinkEvent::Disconnected => {
                self.connected = false;
                self.client = None;
            }
        }
        self.publish_in_flight();
        Ok(())
    }

    /// A publish is done (acked, or written out with QoS 0): delete its row, count it.
    fn complete(&mut self, sent: Sent) -> Result<()> {
        let class = match sent {
            Sent::Row(id, class) => {
                self.track.rows -= 1;
                lock(&self.shared.outbox).remove(id).with_context(|| {
                    format!("cannot delete delivered message {id} from the outbox")
                })?;
                Some(class)
            }
            Sent::State(class) => Some(class),
            Sent::Availability => None,
        };
        if let Some(class) = class {
            lock(&self.shared.link).published.add(class, 1);
        }
        Ok(())
    }

    /// Hands state values and outbox rows to the client, within the window and the
    /// rate limit.
    fn pump(&mut self) -> Result<()> {
        if !self.connected {
            return Ok(());
        }
        let dirty: Vec<Outgoing> = lock(&self.shared.state)
            .values_mut()
            .filter(|(_, dirty)| *dirty)
            .map(|(m, dirty)| {
                *dirty = false;
                m.clone()
            })
            .collect();
        for m in dirty {
            let topic = self.shared.identity.topic(&m.topic_suffix);
            // A full request channel only means the link is busy: the value stays
            // latest-wins and goes out with the next one.
            if self.try_publish(topic, self.qos, m.retain, m.payload) {
                self.track.queued.push_back(Sent::State(m.class));
            }
        }
        while self.backlog && self.track.rows < self.window {
            let allowed = (self.window - self.track.rows).min(self.bucket.available());
            if allowed == 0 {
                break;
            }
            let rows = lock(&self.shared.outbox).fetch_after(self.last_sent, allowed)?;
            if rows.len() < allowed {
                self.backlog = false;
            }
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let m = row.message;
                let topic = self.shared.identity.topic(&m.topic_suffix);
                if !self.try_publish(topic, self.qos, m.retain, m.payload) {
                    // Channel full: try again on the next wake-up from this row on.
                    self.backlog = true;
                    break;
                }
                self.bucket.take();
                self.last_sent = row.id;
                self.track.rows += 1;
                self.track.queued.push_back(Sent::Row(row.id, m.class));
            }
        }
        self.publish_in_flight();
        Ok(())
    }

    /// When the loop should wake up to feed more rows (rate limit waiting).
    fn next_feed_time(&self) -> Option<Instant> {
        (self.connected && self.backlog && self.track.rows < self.window)
            .then(|| self.bucket.ready_at())
            .flatten()
    }

    /// Hands a publish to the current connection; false if there is none or its
    /// request channel is full.
    fn try_publish(&self, topic: String, qos: QoS, retain: bool, payload: Vec<u8>) -> bool {
        self.client
            .as_ref()
            .is_some_and(|c| c.try_publish(topic, qos, retain, payload).is_ok())
    }

    fn set_link(&self, connected: bool, text: String) {
        let mut link = lock(&self.shared.link);
        link.connected = connected;
        link.link = text;
    }

    fn publish_in_flight(&self) {
        lock(&self.shared.link).in_flight = self.track.rows;
    }
}

/// Token bucket for the delivery rate limit; `rate == 0` means unlimited.
struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    updated: Instant,
}

impl TokenBucket {
    /// Burst of at most one second's worth (and at most the window).
    fn new(rate: u32, window: usize) -> Self {
        let capacity = (rate as f64).min(window as f64).max(1.0);
        TokenBucket {
            rate: rate as f64,
            capacity,
            tokens: capacity,
            updated: Instant::now(),
        }
    }

    fn refill(&mut self) {
        let now = Instant::now();
        let elapsed = now.duration_since(self.updated).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.capacity);
        self.updated = now;
    }

    /// Whole messages that may go now.
    fn available(&mut self) -> usize {
        if self.rate == 0.0 {
            return usize::MAX;
        }
        self.refill();
        self.tokens.floor() as usize
    }

    fn take(&mut self) {
        if self.rate > 0.0 {
            self.tokens -= 1.0;
        }
    }

    /// When the next whole token is there, or `None` if one is available now.
    fn ready_at(&self) -> Option<Instant> {
        if self.rate == 0.0 || self.tokens >= 1.0 {
            return None;
        }
        Some(self.updated + Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
    }
}

/// Exponential reconnect backoff with "equal jitter": the delay is uniformly random
/// in [base/2, base], base doubling from `initial` up to `max`. Jitter keeps a fleet of
/// boxes from reconnecting in lock-step after a broker restart.
struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        // Seed from the clock and this allocation's address: no global RNG needed.
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        let local = 0u8;
        let seed = (nanos ^ (&local as *const u8 as u64).rotate_left(32)) | 1;
        Backoff {
            initial,
            max,
            attempt: 0,
            rng: seed,
        }
    }

    fn reset(&mut self) {
        self.attempt = 0;
    }

    /// The delay before the next attempt, and that attempt's number (1-based).
    fn next_delay(&mut self) -> (Duration, u32) {
        let factor = 2u32.saturating_pow(self.attempt.min(20));
        let base = self.initial.saturating_mul(factor).min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        // xorshift64*
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11;
        let unit = r as f64 / (1u64 << 53) as f64;
        (base.mul_f64(0.5 + 0.5 * unit), self.attempt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_with_jitter_and_caps() {
        let mut b = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
        let delays: Vec<Duration> = (0..8).map(|_| b.next_delay().0).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays[3] >= Duration::from_millis(400) && delays[3] <= Duration::from_millis(800));
        assert!(delays.iter().all(|d| *d <= Duration::from_secs(2)));
        assert!(delays[7] >= Duration::from_secs(1));
        b.reset();
        assert!(b.next_delay().0 <= Duration::from_millis(100));
    }

    #[tokio::test]
    async fn token_bucket_limits_rate() {
        let mut bucket = TokenBucket::new(10, 32);
        assert_eq!(bucket.available(), 10);
        for _ in 0..10 {
            bucket.take();
        }
        assert_eq!(bucket.available(), 0);
        let at = bucket.ready_at().unwrap();
        assert!(at - Instant::now() <= Duration::from_millis(100));
        let mut unlimited = TokenBucket::new(0, 32);
        assert_eq!(unlimited.available(), usize::MAX);
        assert!(unlimited.ready_at().is_none());
    }
}
