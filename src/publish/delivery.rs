//! Delivery: the task that moves state values and outbox rows to the broker,
//! in order, within the in-flight window and the replay rate limit, and
//! deletes each row when its PUBACK arrives.
//!
//! It owns the bookkeeping of one connection (which outbox row went out under
//! which packet id, [`InflightTable`]), the token bucket of the rate limit, the
//! state slots' "still to send" flags and the shutdown drain. The link task
//! ([`super::link`]) hands it a fresh client per connection; after a
//! reconnect it starts again from the oldest unacknowledged row.

use super::committer::Committer;
use super::link::LinkEvent;
use super::publisher::{Inbound, Shared};
use super::stamp::Stamp;
use super::{MessageClass, MqttConfig, Outgoing};
use crate::lock::IgnorePoison;
use anyhow::{anyhow, Context, Result};
use rumqttc::{AsyncClient, QoS};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

/// How often old rows are expired while running.
const EXPIRE_EVERY: Duration = Duration::from_secs(60);
/// Extra time after the drain timeout for `offline` and DISCONNECT to go out.
const GOODBYE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long DISCONNECT may take to go out after that.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Which publish went out under which packet id, on the current connection.
/// rumqttc reports packet ids in the order publishes were handed to it, so a
/// FIFO of handed publishes pairs each `Sent(pkid)` event with its message.
#[derive(Default)]
struct InflightTable {
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

impl InflightTable {
    /// A publish was handed to the client.
    fn note_handed(&mut self, sent: Sent) {
        if matches!(sent, Sent::Row(..)) {
            self.rows += 1;
        }
        self.queued.push_back(sent);
    }

    /// rumqttc wrote a publish out under `pkid`; returns it when that finishes
    /// it (QoS 0, packet id 0).
    fn note_sent(&mut self, pkid: u16) -> Option<Sent> {
        if self.resend_pending == Some(pkid) {
            self.resend_pending = None;
            return None;
        }
        let sent = self.queued.pop_front()?;
        if pkid == 0 {
            return Some(self.finished(sent));
        }
        self.by_pkid.insert(pkid, sent);
        None
    }

    /// rumqttc held the next publish back: `pkid` is still awaiting its ack.
    fn note_collision(&mut self, pkid: u16) {
        if let Some(sent) = self.queued.pop_front() {
            self.collided = Some((pkid, sent));
        }
    }

    /// The broker acknowledged `pkid`; returns the publish that finishes. A
    /// publish held back on that packet id is released and awaits its own ack.
    fn note_acked(&mut self, pkid: u16) -> Option<Sent> {
        let done = self.by_pkid.remove(&pkid).map(|sent| self.finished(sent));
        if let Some((p, sent)) = self.collided.take_if(|(p, _)| *p == pkid) {
            self.by_pkid.insert(p, sent);
            self.resend_pending = Some(p);
        }
        done
    }

    /// The publish waiting for the ack of `pkid`, if any.
    fn awaiting(&self, pkid: u16) -> Option<Sent> {
        self.by_pkid.get(&pkid).copied()
    }

    /// Takes a finished publish out of the window count.
    fn finished(&mut self, sent: Sent) -> Sent {
        if matches!(sent, Sent::Row(..)) {
            self.rows -= 1;
        }
        sent
    }
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
    /// A retained message on a full topic ([`super::Publisher::announce`]).
    Announcement,
}

/// The delivery task's state: the current connection, the rate limit and
/// the in-flight packets.
pub(super) struct Delivery {
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
    inflight: InflightTable,
    /// When the current connection came up (ms since the Unix epoch): rows
    /// accepted before it are sent with `replayed: true`.
    connected_at_ms: i64,
}

impl Delivery {
    /// A delivery task for `shared`, not connected yet.
    pub(super) fn new(
        shared: Arc<Shared>,
        committer: Arc<Committer>,
        mqtt: &MqttConfig,
        qos: QoS,
        window: usize,
    ) -> Self {
        Delivery {
            shared,
            committer,
            client: None,
            qos,
            window,
            address: mqtt.address(),
            bucket: TokenBucket::new(mqtt.replay_rate, window),
            drain_timeout: mqtt.drain_timeout,
            connected: false,
            ever_connected: false,
            last_sent: 0,
            backlog: true,
            inflight: InflightTable::default(),
            connected_at_ms: 0,
        }
    }

    /// Delivers until `shutdown` fires and the drain is over (or the disk
    /// fails), then says goodbye to the broker and stops `link_task`.
    pub(super) async fn run(
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
                    if let Err(e) = shared.outbox.lock().ignore_poison().expire() {
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
        let left = shared.outbox.lock().ignore_poison().depth();
        if left > 0 {
            log::warn!("MQTT: {left} message(s) stay in the outbox for the next start");
        }
        if result.is_ok() {
            self.goodbye(&mut events).await;
        }
        link_task.abort();
        shared.outbox.lock().ignore_poison().checkpoint();
        result
    }

    /// Nothing left to deliver (used to end the drain early).
    fn drained(&self) -> bool {
        self.connected
            && self.committer.is_idle()
            && self.inflight.rows == 0
            && self.shared.outbox.lock().ignore_poison().depth() == 0
            && !self
                .shared
                .state
                .lock()
                .ignore_poison()
                .values()
                .any(|(_, dirty)| *dirty)
    }

    /// Publishes retained `offline`, waits for its PUBACK, then disconnects cleanly.
    async fn goodbye(&mut self, events: &mut mpsc::Receiver<LinkEvent>) {
        if !self.connected {
            return;
        }
        let deadline = Instant::now() + GOODBYE_TIMEOUT;
        let topic = self.shared.identity.availability_topic();
        if self.try_publish(topic, QoS::AtLeastOnce, true, b"offline".to_vec()) {
            self.inflight.note_handed(Sent::Availability);
            let mut offline_acked = false;
            while !offline_acked {
                let Ok(Some(event)) = tokio::time::timeout_at(deadline, events.recv()).await else {
                    break;
                };
                if let LinkEvent::Acked(pkid) = &event {
                    offline_acked =
                        matches!(self.inflight.awaiting(*pkid), Some(Sent::Availability));
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

    /// Updates the bookkeeping for one link event.
    fn on_event(&mut self, event: LinkEvent) -> Result<()> {
        match event {
            LinkEvent::Connected(client) => {
                self.client = Some(client);
                self.connected = true;
                self.inflight = InflightTable::default();
                self.last_sent = 0;
                self.backlog = true;
                self.connected_at_ms = unix_ms(SystemTime::now());
                {
                    let mut link = self.shared.link.lock().ignore_poison();
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
                    self.inflight.note_handed(Sent::Availability);
                }
                // The broker may have lost retained state: send the latest again.
                for (_, dirty) in self.shared.state.lock().ignore_poison().values_mut() {
                    *dirty = true;
                }
                self.shared.reannounce();
                // A clean session has no subscriptions: make them again.
                self.shared.inbound.lock().ignore_poison().pending = true;
            }
            LinkEvent::Message(p) => {
                let route = self.shared.inbound.lock().ignore_poison();
                if let Some(sender) = &route.sender {
                    // The receiver gone only means nobody listens any more.
                    let _ = sender.send(Inbound {
                        topic: p.topic.clone(),
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                    });
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
                self.inflight = InflightTable::default();
                let text = format!(
                    "disconnected: {error}; retry #{attempt} in {:.1}s",
                    retry_in.as_secs_f64()
                );
                let repeated = {
                    let mut link = self.shared.link.lock().ignore_poison();
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
                if let Some(sent) = self.inflight.note_sent(pkid) {
                    self.complete(sent)?;
                }
            }
            LinkEvent::Collision(pkid) => self.inflight.note_collision(pkid),
            LinkEvent::Acked(pkid) => {
                if let Some(sent) = self.inflight.note_acked(pkid) {
                    self.complete(sent)?;
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
                self.shared
                    .outbox
                    .lock()
                    .ignore_poison()
                    .remove(id)
                    .with_context(|| {
                        format!("cannot delete delivered message {id} from the outbox")
                    })?;
                Some(class)
            }
            Sent::State(class) => Some(class),
            Sent::Availability | Sent::Announcement => None,
        };
        if let Some(class) = class {
            self.shared
                .link
                .lock()
                .ignore_poison()
                .published
                .add(class, 1);
        }
        Ok(())
    }

    /// Hands state values and outbox rows to the client, within the window and the
    /// rate limit.
    fn pump(&mut self) -> Result<()> {
        if !self.connected {
            return Ok(());
        }
        self.subscribe_pending();
        let announcements: Vec<(String, Vec<u8>)> = self
            .shared
            .announcements
            .lock()
            .ignore_poison()
            .iter_mut()
            .filter(|(_, (_, dirty))| *dirty)
            .map(|(topic, (payload, dirty))| {
                *dirty = false;
                (topic.clone(), payload.clone())
            })
            .collect();
        for (topic, payload) in announcements {
            if self.try_publish(topic, QoS::AtLeastOnce, true, payload) {
                self.inflight.note_handed(Sent::Announcement);
            }
        }
        let dirty: Vec<Outgoing> = self
            .shared
            .state
            .lock()
            .ignore_poison()
            .values_mut()
            .filter(|(_, dirty)| *dirty)
            .map(|(m, dirty)| {
                *dirty = false;
                m.clone()
            })
            .collect();
        for m in dirty {
            let topic = self.shared.identity.topic(&m.topic_suffix);
            let payload = stamped(m.payload, false);
            // A full request channel only means the link is busy: the value stays
            // latest-wins and goes out with the next one.
            if self.try_publish(topic, self.qos, m.retain, payload) {
                self.inflight.note_handed(Sent::State(m.class));
            }
        }
        while self.backlog && self.inflight.rows < self.window {
            let allowed = (self.window - self.inflight.rows).min(self.bucket.available());
            if allowed == 0 {
                break;
            }
            let rows = self
                .shared
                .outbox
                .lock()
                .ignore_poison()
                .fetch_after(self.last_sent, allowed)?;
            if rows.len() < allowed {
                self.backlog = false;
            }
            if rows.is_empty() {
                break;
            }
            for row in rows {
                let m = row.message;
                let topic = self.shared.identity.topic(&m.topic_suffix);
                let payload = stamped(m.payload, row.created_at_ms < self.connected_at_ms);
                if !self.try_publish(topic, self.qos, m.retain, payload) {
                    // Channel full: try again on the next wake-up from this row on.
                    self.backlog = true;
                    break;
                }
                self.bucket.take();
                self.last_sent = row.id;
                self.inflight.note_handed(Sent::Row(row.id, m.class));
            }
        }
        self.publish_in_flight();
        Ok(())
    }

    /// Subscribes to the inbound filters not yet subscribed on this connection.
    fn subscribe_pending(&mut self) {
        let mut route = self.shared.inbound.lock().ignore_poison();
        if !route.pending || route.filters.is_empty() {
            return;
        }
        let Some(client) = &self.client else { return };
        let filters = route
            .filters
            .iter()
            .map(|f| rumqttc::SubscribeFilter::new(f.clone(), QoS::AtLeastOnce));
        // A full request channel: try again on the next wake-up.
        route.pending = client.try_subscribe_many(filters).is_err();
    }

    /// When the loop should wake up to feed more rows (rate limit waiting).
    fn next_feed_time(&self) -> Option<Instant> {
        (self.connected && self.backlog && self.inflight.rows < self.window)
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

    /// Records the link state shown in the stats.
    fn set_link(&self, connected: bool, text: String) {
        let mut link = self.shared.link.lock().ignore_poison();
        link.connected = connected;
        link.link = text;
    }

    /// Shows the in-flight window in the stats.
    fn publish_in_flight(&self) {
        self.shared.link.lock().ignore_poison().in_flight = self.inflight.rows;
    }
}

/// `payload` with the delivery stamp of a message handed over now (see
/// [`Stamp`]); non-JSON payloads unchanged.
fn stamped(payload: Vec<u8>, replayed: bool) -> Vec<u8> {
    let stamp = Stamp {
        published_at: SystemTime::now(),
        replayed,
    };
    stamp.apply(&payload).unwrap_or(payload)
}

/// Milliseconds since the Unix epoch, the unit of the outbox's `created_at`.
fn unix_ms(t: SystemTime) -> i64 {
    t.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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

    /// Adds the tokens earned since the last refill.
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

    /// Spends one token (one message sent).
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

#[cfg(test)]
mod tests {
    use super::*;

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
