//! What the live page shows: the latest annotated snapshot, the recent
//! defect events with their thumbnails, and the latest `camera` and `stats`
//! payloads. The daemon's pipeline hands it the messages it has already
//! built for the broker ([`LiveState::observe`]); nothing is rendered or
//! computed for the page, and the lock is held only to swap a few pointers,
//! so the camera pipeline never waits on a browser.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use crate::lock::IgnorePoison;
use crate::publish::{MessageClass, Outgoing};

/// Defect events kept for the page (older ones fall off).
const EVENTS_KEPT: usize = 50;

/// The shared latest state. One per process; the pipeline writes, the web
/// handlers read.
#[derive(Default)]
pub struct LiveState {
    inner: Mutex<Latest>,
}

/// The latest snapshot, with a number that changes whenever it does.
#[derive(Clone)]
pub(crate) struct Snapshot {
    pub(crate) seq: u64,
    pub(crate) jpeg: Arc<[u8]>,
}

/// One defect event as the broker got it, numbered for `?since=`.
#[derive(Clone)]
pub(crate) struct LiveEvent {
    pub(crate) seq: u64,
    pub(crate) received_at: SystemTime,
    /// The `events` payload (JSON text, as published).
    pub(crate) payload: Arc<[u8]>,
    pub(crate) thumbnail: Option<Arc<[u8]>>,
}

/// Everything behind the lock.
#[derive(Default)]
struct Latest {
    snapshot: Option<Snapshot>,
    events: VecDeque<LiveEvent>,
    /// Numbers snapshots and events alike (1, 2, ...), so a poll can ask
    /// for what is newer than what it saw.
    last_seq: u64,
    camera: Option<Arc<[u8]>>,
    stats: Option<Arc<[u8]>>,
}

/// What the status endpoint reports of the live pipeline.
pub(crate) struct LiveHealth {
    /// The latest `camera` payload (JSON), if any was built yet.
    pub(crate) camera: Option<Arc<[u8]>>,
    /// The latest `stats` payload (JSON), if any was built yet.
    pub(crate) stats: Option<Arc<[u8]>>,
    pub(crate) snapshot_seq: Option<u64>,
    pub(crate) last_event_seq: Option<u64>,
}

impl LiveState {
    /// Keeps what the page shows from messages about to be submitted to the
    /// publisher: snapshots, defect events (each followed by its thumbnail),
    /// camera and stats. Other classes are ignored.
    pub(crate) fn observe(&self, messages: &[Outgoing]) {
        if !messages.iter().any(|m| {
            matches!(
                m.class,
                MessageClass::Snapshot
                    | MessageClass::DefectEvent
                    | MessageClass::DefectThumbnail
                    | MessageClass::Stats
                    | MessageClass::Camera
            )
        }) {
            return;
        }
        let mut latest = self.inner.lock().ignore_poison();
        for m in messages {
            match m.class {
                MessageClass::Snapshot => {
                    latest.last_seq += 1;
                    latest.snapshot = Some(Snapshot {
                        seq: latest.last_seq,
                        jpeg: m.payload.as_slice().into(),
                    });
                }
                // The builder sends an event's thumbnail right after it on
                // `events/thumbnail` (defects' own go to `defects/thumbnail`).
                MessageClass::DefectThumbnail if m.topic_suffix == "events/thumbnail" => {
                    if let Some(last) = latest.events.back_mut() {
                        last.thumbnail = Some(m.payload.as_slice().into());
                    }
                }
                MessageClass::DefectEvent => {
                    latest.last_seq += 1;
                    let event = LiveEvent {
                        seq: latest.last_seq,
                        received_at: SystemTime::now(),
                        payload: m.payload.as_slice().into(),
                        thumbnail: None,
                    };
                    if latest.events.len() == EVENTS_KEPT {
                        latest.events.pop_front();
                    }
                    latest.events.push_back(event);
                }
                MessageClass::Stats => latest.stats = Some(m.payload.as_slice().into()),
                MessageClass::Camera => latest.camera = Some(m.payload.as_slice().into()),
                _ => {}
            }
        }
    }

    /// The latest snapshot, if one was built.
    pub(crate) fn snapshot(&self) -> Option<Snapshot> {
        self.inner.lock().ignore_poison().snapshot.clone()
    }

    /// The kept events numbered above `since`, oldest first.
    pub(crate) fn events_since(&self, since: u64) -> Vec<LiveEvent> {
        let latest = self.inner.lock().ignore_poison();
        latest
            .events
            .iter()
            .filter(|e| e.seq > since)
            .cloned()
            .collect()
    }

    /// The thumbnail of kept event `seq`.
    pub(crate) fn event_thumbnail(&self, seq: u64) -> Option<Arc<[u8]>> {
        let latest = self.inner.lock().ignore_poison();
        latest
            .events
            .iter()
            .find(|e| e.seq == seq)
            .and_then(|e| e.thumbnail.clone())
    }

    /// The pipeline's health as last reported.
    pub(crate) fn health(&self) -> LiveHealth {
        let latest = self.inner.lock().ignore_poison();
        LiveHealth {
            camera: latest.camera.clone(),
            stats: latest.stats.clone(),
            snapshot_seq: latest.snapshot.as_ref().map(|s| s.seq),
            last_event_seq: latest.events.back().map(|e| e.seq),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_get_their_thumbnail_and_since_filters() {
        let live = LiveState::default();
        live.observe(&[
            Outgoing::new(MessageClass::DefectEvent, "events", b"{\"a\":1}".to_vec()),
            Outgoing::new(
                MessageClass::DefectThumbnail,
                "events/thumbnail",
                vec![0xFF, 0xD8],
            ),
            Outgoing::new(MessageClass::Snapshot, "snapshot", vec![1, 2, 3]),
            Outgoing::new(MessageClass::Detections, "detections", b"{}".to_vec()),
        ]);
        let events = live.events_since(0);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].thumbnail.as_deref(), Some(&[0xFF, 0xD8][..]));
        assert_eq!(live.snapshot().unwrap().seq, 2);
        assert!(live.events_since(1).is_empty());
        assert!(live.event_thumbnail(1).is_some());
    }
}
