//! How an analysed frame becomes the messages the publisher delivers: the
//! payloads of [`crate::messages`] serialised, thumbnails and snapshots
//! rendered and tagged with the id of the JSON message they belong to.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Result;
use log::warn;
use serde::{Deserialize, Serialize};

use super::{
    to_json, ActiveDefectsMessage, CameraMessage, ControlStateMessage, DefectMessage, DefectReport,
    DetectionsMessage, EventMessage, FrameInfo, ModelInfo, ModuleReport, ThumbnailRef,
    SCHEMA_VERSION,
};
use crate::analysis::temperature::TemperatureUnit;
use crate::analysis::tracking::{DefectEvent, EventKind};
use crate::analysis::FrameAnalysis;
use crate::config_value::{duration_in_range, in_range, MAX_PERIOD};
use crate::control::Answer;
use crate::frame::Frame;
use crate::publish::{Identity, MessageClass, Outgoing};
use crate::render::{self, Renderer};
use crate::source::SourceState;

/// `[output]`: snapshots, thumbnails and stats.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Time between retained annotated snapshots (`"0s"` = never). Read
    /// from `snapshot_interval_s` (seconds) in older files.
    #[serde(with = "crate::config_value::duration", alias = "snapshot_interval_s")]
    pub(crate) snapshot_interval: Duration,
    /// JPEG quality of snapshots and thumbnails (1..100).
    pub(crate) jpeg_quality: u8,
    /// Publish a JPEG thumbnail with every defect message.
    pub(crate) thumbnails: bool,
    /// Time between stats messages. Read from `stats_interval_s` (seconds)
    /// in older files.
    #[serde(with = "crate::config_value::duration", alias = "stats_interval_s")]
    pub(crate) stats_interval: Duration,
    /// Publish a detections message also for frames without modules.
    pub(crate) publish_empty_frames: bool,
}

impl OutputConfig {
    /// Intervals a timer can run (`snapshot_interval` may be 0 = never) and a
    /// JPEG quality.
    pub(crate) fn validate(&self) -> Result<()> {
        if !self.snapshot_interval.is_zero() {
            duration_in_range(
                "[output] snapshot_interval",
                self.snapshot_interval,
                Duration::from_millis(100)..=MAX_PERIOD,
            )?;
        }
        in_range("[output] jpeg_quality", self.jpeg_quality, 1..=100, "")?;
        duration_in_range(
            "[output] stats_interval",
            self.stats_interval,
            Duration::from_millis(100)..=MAX_PERIOD,
        )
    }
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            snapshot_interval: Duration::from_secs(10),
            jpeg_quality: 80,
            thumbnails: true,
            stats_interval: Duration::from_secs(30),
            publish_empty_frames: false,
        }
    }
}

/// Turns one analysed frame into the messages to publish.
pub struct MessageBuilder {
    identity: Identity,
    output: OutputConfig,
    model: ModelInfo,
    /// Distinguishes message ids of this run from those of earlier runs.
    run_id: String,
    last_snapshot: Option<Instant>,
    /// A snapshot was asked for (`snapshot/set`): the next frame gets one.
    snapshot_requested: bool,
    /// The open physical defects by event id (ids sort by first sighting),
    /// as their latest event reported them: the `defects/active` list.
    active: BTreeMap<String, DefectReport>,
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
            snapshot_requested: false,
            active: BTreeMap::new(),
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
    /// `latency_ms` is the frame's inference time.
    pub fn frame_messages(
        &mut self,
        frame: &Frame,
        analysis: &FrameAnalysis,
        latency_ms: f32,
    ) -> Vec<Outgoing> {
        let device = self.identity.device().to_string();
        let mut out = Vec::new();
        let message_id = self.message_id(frame);
        if !analysis.modules.is_empty() || self.output.publish_empty_frames {
            let msg = DetectionsMessage::new(
                message_id.clone(),
                &device,
                frame,
                &self.model,
                latency_ms,
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
                frame: FrameInfo::of(frame),
                unit: analysis.unit,
                module: ModuleReport::of(index, m, frame),
                thumbnail: self.thumbnail_ref("defects/thumbnail", thumbnail.as_deref()),
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

    /// The id of the detections message of `frame` (`<device>-<run>-<sequence>`),
    /// which its snapshot carries too.
    fn message_id(&self, frame: &Frame) -> String {
        format!(
            "{}-{}-{}",
            self.identity.device(),
            self.run_id,
            frame.sequence
        )
    }

    /// Asks for a snapshot with the next frame, due or not.
    pub(crate) fn request_snapshot(&mut self) {
        self.snapshot_requested = true;
    }

    /// Messages for a frame that is not analysed (`detect/set OFF`): only the
    /// snapshot, when one was asked for, showing the frame without outlines.
    pub(crate) fn paused_frame_messages(&mut self, frame: &Frame) -> Vec<Outgoing> {
        if !std::mem::take(&mut self.snapshot_requested) {
            return Vec::new();
        }
        let nothing = FrameAnalysis {
            modules: Vec::new(),
            reference_temp: None,
            unit: TemperatureUnit::Relative,
            note: None,
            events: Vec::new(),
        };
        let image = self.renderer.overview(frame, &nothing);
        self.jpeg(Some(image), &self.message_id(frame))
            .map(|jpeg| Outgoing::new(MessageClass::Snapshot, "snapshot", jpeg))
            .into_iter()
            .collect()
    }

    /// The retained `defects/active` message: the open defects now.
    pub(crate) fn active_defects_message(&self) -> Outgoing {
        let msg = ActiveDefectsMessage {
            schema: SCHEMA_VERSION,
            device: self.identity.device().to_string(),
            count: self.active.len(),
            defects: self.active.values().cloned().collect(),
        };
        Outgoing::new(MessageClass::ActiveDefects, "defects/active", to_json(&msg))
    }

    /// Messages for defect events (`new`/`update`/`end`), each followed by its
    /// best thumbnail on `events/thumbnail` for `new` and `update` (also kept
    /// retained on `defects/latest/thumbnail`), then the `defects/active` list
    /// when there was any event.
    pub(crate) fn event_messages(&mut self, events: &[DefectEvent]) -> Vec<Outgoing> {
        let mut out = Vec::new();
        for event in events {
            let report = DefectReport::of(event);
            if event.kind == EventKind::End {
                self.active.remove(&event.event_id);
            } else {
                self.active.insert(event.event_id.clone(), report);
            }
            let thumbnail = if self.output.thumbnails && event.kind != EventKind::End {
                let image = self.renderer.event_thumbnail(event);
                self.jpeg(image, &event.event_id)
            } else {
                None
            };
            let msg = EventMessage::new(
                self.identity.device(),
                event,
                self.thumbnail_ref("events/thumbnail", thumbnail.as_deref()),
            );
            out.push(Outgoing::new(
                MessageClass::DefectEvent,
                "events",
                to_json(&msg),
            ));
            if let Some(jpeg) = thumbnail {
                out.push(Outgoing::new(
                    MessageClass::LatestThumbnail,
                    "defects/latest/thumbnail",
                    jpeg.clone(),
                ));
                out.push(Outgoing::new(
                    MessageClass::DefectThumbnail,
                    "events/thumbnail",
                    jpeg,
                ));
            }
        }
        if !events.is_empty() {
            out.push(self.active_defects_message());
        }
        out
    }

    /// Where a JSON message's JPEG goes (`suffix`), when there is one.
    fn thumbnail_ref(&self, suffix: &str, jpeg: Option<&[u8]>) -> Option<ThumbnailRef> {
        jpeg.map(|t| ThumbnailRef {
            topic: self.identity.topic(suffix),
            bytes: t.len(),
        })
    }

    /// Whether a snapshot is due (`snapshot_interval`); if so, restarts the interval.
    fn snapshot_due(&mut self) -> bool {
        let interval = self.output.snapshot_interval;
        let requested = std::mem::take(&mut self.snapshot_requested);
        if interval.is_zero() && !requested {
            return false;
        }
        let now = Instant::now();
        let due = requested
            || self
                .last_snapshot
                .is_none_or(|t| now.duration_since(t) >= interval);
        if due {
            self.last_snapshot = Some(now);
        }
        due
    }
}

/// The retained `camera` message for a change of the source's state.
pub(crate) fn camera_message(
    identity: &Identity,
    source: &str,
    radiometric: bool,
    state: &SourceState,
) -> Outgoing {
    let (s, reason) = match state {
        SourceState::Online => ("online", None),
        SourceState::Offline { reason } => ("offline", Some(reason.clone())),
    };
    let msg = CameraMessage {
        schema: SCHEMA_VERSION,
        device: identity.device().to_string(),
        state: s,
        reason,
        source: source.to_string(),
        radiometric,
        since: SystemTime::now(),
    };
    Outgoing::new(MessageClass::Camera, "camera", to_json(&msg))
}

/// The retained `state` message: whether frames are analysed (`detecting`)
/// and the answer to the command that changed it, if any.
pub(crate) fn control_state_message(
    identity: &Identity,
    detecting: bool,
    last_command: Option<Answer>,
) -> Outgoing {
    let msg = ControlStateMessage {
        schema: SCHEMA_VERSION,
        device: identity.device().to_string(),
        detect: if detecting { "ON" } else { "OFF" },
        last_command,
    };
    Outgoing::new(MessageClass::ControlState, "state", to_json(&msg))
}

/// `jpeg` with a comment segment (COM) holding `text` right after the start
/// marker: the thumbnail stays a valid JPEG and carries the id of the JSON
/// message it belongs to (MQTT 3.1.1 has no message properties to carry it).
pub(crate) fn with_jpeg_comment(jpeg: &[u8], text: &str) -> Vec<u8> {
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
    fn jpeg_comment_keeps_a_decodable_jpeg() {
        let img = image::RgbImage::from_pixel(16, 8, image::Rgb([200, 10, 10]));
        let jpeg = render::encode_jpeg(&img, 80).unwrap();
        let tagged = with_jpeg_comment(&jpeg, "pvtherm-id=dev-1-2-m3");
        let decoded = image::load_from_memory(&tagged).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (16, 8));
        assert!(tagged.windows(21).any(|w| w == b"pvtherm-id=dev-1-2-m3"));
    }
}
