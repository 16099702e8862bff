//! The MQTT link: one tokio task that owns rumqttc's `EventLoop` (it must be
//! polled continuously and is not cancel-safe inside `select!`), connects,
//! reconnects with jittered exponential backoff, and forwards to the delivery
//! task the few events that matter ([`LinkEvent`]). It knows nothing of the
//! outbox: what was queued for a dead connection dies with it, and delivery
//! replays from the outbox.

use super::mqtt::describe_connection_error;
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, Publish};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio::time::sleep;

/// What the link task reports to the delivery task.
pub(super) enum LinkEvent {
    /// A new session is up; publish through this client (a fresh one per
    /// connection, so requests queued for a dead connection can never be mistaken for
    /// this one's).
    Connected(AsyncClient),
    /// The connection failed or dropped; the next attempt (number `attempt`)
    /// comes after `retry_in`.
    Lost {
        error: String,
        retry_in: Duration,
        attempt: u32,
    },
    /// A publish went out with this packet id (0 = QoS 0).
    Sent(u16),
    /// rumqttc held a publish back: its packet id is still awaiting an ack.
    Collision(u16),
    /// The broker acknowledged this packet id (PUBACK).
    Acked(u16),
    /// A message arrived on a subscribed topic (rumqttc acknowledges it).
    Message(Publish),
    /// The clean DISCONNECT of a shutdown went out; the link task ends.
    Disconnected,
}

/// Connects, polls the event loop and reconnects with backoff, forever. Each
/// connection attempt gets a fresh client and event loop: whatever was queued for the
/// previous connection dies with it, the delivery task replays from the outbox.
/// Ends after a clean DISCONNECT or when the delivery task is gone.
pub(super) async fn drive_link(
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
                Ok(Event::Incoming(Packet::Publish(p))) => LinkEvent::Message(p),
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

/// Exponential reconnect backoff with "equal jitter": the delay is uniformly random
/// in [base/2, base], base doubling from `initial` up to `max`. Jitter keeps a fleet of
/// boxes from reconnecting in lock-step after a broker restart.
pub(super) struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
    rng: u64,
}

impl Backoff {
    /// A backoff starting at `initial`, capped at `max`.
    pub(super) fn new(initial: Duration, max: Duration) -> Self {
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

    /// Back to `initial` after a successful connection.
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
}
