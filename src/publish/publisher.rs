//! The publisher: the [`Publisher`] handle the pipeline submits messages
//! through, and [`spawn_publisher`], which wires the outbox, the commit thread
//! and two tokio tasks: the link ([`super::link`]: connection, reconnect
//! backoff) and delivery ([`super::delivery`]: in-order replay, rate limit,
//! PUBACK bookkeeping, the shutdown drain).

use super::committer::Committer;
use super::delivery::Delivery;
use super::link::{drive_link, Backoff};
use super::outbox::Outbox;
use super::{validate_topic_suffix, ClassCounts, Identity, MqttConfig, OutboxConfig, Outgoing};
use crate::lock::IgnorePoison;
use anyhow::{bail, Result};
use rumqttc::{LastWill, QoS};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, Notify};
use tokio::task::JoinHandle;

/// A snapshot of the publisher's health, for the stats message and logs (its
/// wire form is `crate::messages::BrokerStats`).
#[derive(Debug, Clone, Default)]
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
    pub(crate) outbox_bytes: u64,
    /// Outbox messages sent and not yet acknowledged.
    pub in_flight: usize,
    /// Messages dropped because the outbox was full or they were too old, per class.
    pub dropped: ClassCounts,
    /// Messages that could not be stored at all (disk full or failing), per class.
    pub unstored: ClassCounts,
    /// Why the outbox cannot be written right now; `None` while it can.
    pub outbox_error: Option<String>,
    /// The last connection error, kept after reconnecting (for diagnosis).
    pub last_error: Option<String>,
}

/// A message that arrived on one of the topics given to `Publisher::inbound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inbound {
    /// The full topic it came on.
    pub(crate) topic: String,
    pub(crate) payload: Vec<u8>,
    /// Whether the broker delivered it as a retained message.
    pub(crate) retain: bool,
}

/// Handle for submitting messages. Cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
    committer: Arc<Committer>,
}

/// State shared by the handles and the delivery task. Its mutexes guard
/// counters, flags and the outbox handle, all consistent after a panic
/// elsewhere, hence the poison-tolerant locking.
pub(super) struct Shared {
    pub(super) identity: Identity,
    pub(super) outbox: Mutex<Outbox>,
    /// Latest value per state topic, and whether it still has to go out.
    pub(super) state: Mutex<BTreeMap<String, (Outgoing, bool)>>,
    /// Retained messages on full topics outside `<prefix>/<device>/` (Home
    /// Assistant discovery), sent on every connection and when asked again;
    /// with whether they still have to go out on this one.
    pub(super) announcements: Mutex<BTreeMap<String, (Vec<u8>, bool)>>,
    /// Topic filters to subscribe to on every connection, and where their
    /// messages go.
    pub(super) inbound: Mutex<InboundRoute>,
    pub(super) link: Mutex<LinkStats>,
    /// Wakes the delivery task: new messages, or a commit done.
    pub(super) wake: Notify,
    /// False once shutdown began: submissions are refused.
    pub(super) accepting: AtomicBool,
    max_message_bytes: usize,
}

impl Shared {
    /// Marks every announcement as still to send on this connection.
    pub(super) fn reannounce(&self) {
        for (_, dirty) in self.announcements.lock().ignore_poison().values_mut() {
            *dirty = true;
        }
    }
}

/// The subscriptions the delivery task makes on each connection.
#[derive(Default)]
pub(super) struct InboundRoute {
    pub(super) filters: Vec<String>,
    pub(super) sender: Option<mpsc::UnboundedSender<Inbound>>,
    /// Filters added since the current connection subscribed.
    pub(super) pending: bool,
}

/// What delivery reports for [`PublisherStats`] (the outbox figures come
/// from the outbox itself).
#[derive(Default)]
pub(super) struct LinkStats {
    pub(super) connected: bool,
    pub(super) link: String,
    pub(super) reconnects: u64,
    pub(super) connection_failures: u64,
    pub(super) published: ClassCounts,
    pub(super) in_flight: usize,
    pub(super) last_error: Option<String>,
}

impl Publisher {
    /// Accepts one message. Durable classes go to the outbox through the commit
    /// thread (see `Committer`: this waits only for the previous batch's commit);
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
            let mut slots = shared.state.lock().ignore_poison();
            for m in state {
                slots.insert(m.topic_suffix.clone(), (m, true));
            }
        }
        shared.wake.notify_one();
        Ok(())
    }

    /// Publishes `payload` retained on the full topic `topic` (not under
    /// `<prefix>/<device>/`) now and again after every reconnect, replacing
    /// what was announced there before; an empty payload removes the retained
    /// message from the broker. Used for Home Assistant discovery.
    pub(crate) fn announce(&self, topic: &str, payload: Vec<u8>) -> Result<()> {
        validate_topic_suffix(topic)?;
        self.shared
            .announcements
            .lock()
            .ignore_poison()
            .insert(topic.to_string(), (payload, true));
        self.shared.wake.notify_one();
        Ok(())
    }

    /// Sends every announcement again (Home Assistant restarted and asked
    /// for them).
    pub(crate) fn reannounce(&self) {
        self.shared.reannounce();
        self.shared.wake.notify_one();
    }

    /// Subscribes to `filters` (QoS 1) on the current and every later
    /// connection and returns where their messages arrive. One route per
    /// publisher: a second call adds its filters and replaces the receiver.
    pub(crate) fn inbound(&self, filters: &[String]) -> mpsc::UnboundedReceiver<Inbound> {
        let (tx, rx) = mpsc::unbounded_channel();
        {
            let mut route = self.shared.inbound.lock().ignore_poison();
            route.filters.extend(filters.iter().cloned());
            route.sender = Some(tx);
            route.pending = true;
        }
        self.shared.wake.notify_one();
        rx
    }

    /// Waits until every durable message accepted so far is committed to the
    /// outbox (at most one commit's time).
    pub fn flush(&self) {
        self.committer.flush();
    }

    /// Current link and queue statistics; the outbox figures count committed
    /// messages (call [`Publisher::flush`] first to include the last batch).
    pub fn stats(&self) -> PublisherStats {
        let (depth, bytes, dropped, unstored, outbox_error) = {
            let ob = self.shared.outbox.lock().ignore_poison();
            let error = ob.write_error().map(str::to_owned);
            (ob.depth(), ob.bytes(), ob.dropped(), ob.unstored(), error)
        };
        let link = self.shared.link.lock().ignore_poison();
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
            unstored,
            outbox_error,
            last_error: link.last_error.clone(),
        }
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
        announcements: Mutex::new(BTreeMap::new()),
        inbound: Mutex::new(InboundRoute::default()),
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
            shared.outbox.lock().ignore_poison().push_all(&batch)?;
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
        address,
    ));
    let delivery = Delivery::new(shared.clone(), committer.clone(), mqtt, qos, window);
    let task = tokio::spawn(delivery.run(events_rx, shutdown, link_task));
    Ok((Publisher { shared, committer }, task))
}
