//! Module tracking across frames and defect events.
//!
//! A drone sees the same module in many consecutive frames; the control room
//! wants one defect, not twenty. The tracker gives each physical module a
//! stable track id while it is in view (SORT-like: predict, associate on IoU
//! with centre-distance gating, update) and turns a defective track into one
//! event with a `new` / `update` / `end` life cycle, like Frigate's events.
//!
//! Motion model: the camera moves the whole scene, so instead of a Kalman
//! filter per box we estimate one global shift per frame (the median
//! displacement of the matched modules) and predict every track with it.
//! Association runs twice: first with the previous frame's shift (constant
//! velocity), then, for what is left, with the shift just measured.

use std::sync::Arc;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use super::severity::Severity;
use super::temperature::TemperatureUnit;
use super::{median, rfc3339, AnalysedModule};
use crate::crop::{ModuleCrop, MAX_THUMBNAIL_MARGIN};
use crate::frame::Frame;
use crate::geometry::{BBox, Point, Quad};
use crate::position::Position;

/// `[analysis.tracking]`: association and event parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingConfig {
    /// Associate modules across frames. Off: every frame stands alone and a
    /// defect is reported by the frame that shows it (`new` then `end`), as
    /// for unrelated survey images.
    pub(crate) enabled: bool,
    /// Minimum IoU between a track's predicted box and a detection (default 0.3).
    pub(crate) min_iou: f32,
    /// Maximum distance between the predicted and detected centres, as a
    /// fraction of the predicted box's longer side (default 0.5). Stops a
    /// match with the neighbour of a module packed edge to edge.
    pub(crate) max_center_distance: f32,
    /// A track ends after this many consecutive frames without a match
    /// (default 3), or as soon as its prediction leaves the frame.
    pub(crate) max_missed_frames: u32,
    /// Frames in which a module must be seen defective before the defect is
    /// confirmed and a `new` event is sent (default 3). Suppresses
    /// single-frame false positives.
    pub min_frames: u32,
    /// An `update` event is sent when the severity rises, or when the best
    /// sighting (centrality x heat) improves by this fraction over the last
    /// one published (default 0.25).
    pub(crate) update_min_gain: f32,
}

impl Default for TrackingConfig {
    fn default() -> Self {
        TrackingConfig {
            enabled: true,
            min_iou: 0.3,
            max_center_distance: 0.5,
            max_missed_frames: 3,
            min_frames: 3,
            update_min_gain: 0.25,
        }
    }
}

impl TrackingConfig {
    /// Checks the values; errors name the key.
    pub(crate) fn validate(&self) -> anyhow::Result<()> {
        if !(0.0..=1.0).contains(&self.min_iou) {
            anyhow::bail!(
                "analysis.tracking.min_iou must be within 0..1 (got {})",
                self.min_iou
            );
        }
        if !(self.max_center_distance.is_finite() && self.max_center_distance > 0.0) {
            anyhow::bail!(
                "analysis.tracking.max_center_distance must be > 0 (got {})",
                self.max_center_distance
            );
        }
        if !(self.update_min_gain.is_finite() && self.update_min_gain >= 0.0) {
            anyhow::bail!(
                "analysis.tracking.update_min_gain must be >= 0 (got {})",
                self.update_min_gain
            );
        }
        Ok(())
    }
}

/// Where a defect event is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum EventKind {
    /// The defect was just confirmed (seen in `min_frames` frames).
    New,
    /// A better sighting (thumbnail) or a higher severity.
    Update,
    /// The module left the view (or the run finished); final values.
    End,
}

/// The sighting of a defective module that best shows it: where the module
/// was most central and hottest (or most surely defective).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct BestSighting {
    /// Frame sequence number.
    pub(crate) sequence: u64,
    /// Frame capture time (RFC 3339).
    #[serde(with = "rfc3339")]
    pub(crate) captured_at: SystemTime,
    /// Module outline in that frame.
    pub(crate) quad: Quad,
    /// Axis-aligned box of the outline.
    pub(crate) bbox: BBox,
    /// 1 at the frame centre, 0 at a corner.
    pub(crate) centrality: f32,
    /// Delta-T in that frame, when known.
    pub(crate) delta_t: Option<f32>,
    /// Defect score in that frame.
    pub(crate) defect_score: f32,
}

/// One defect of one physical module, reported over its life cycle.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DefectEvent {
    /// Stable id of the defect across its `new` / `update` / `end` messages
    /// (hex capture time of the first sighting in ms, dash, track id).
    pub(crate) event_id: String,
    /// Tracker id of the module.
    pub(crate) track_id: u64,
    /// `new`, `update` or `end`.
    #[serde(rename = "type")]
    pub(crate) kind: EventKind,
    /// Capture time of the first defective sighting.
    #[serde(with = "rfc3339")]
    pub(crate) first_seen: SystemTime,
    /// Capture time of the latest defective sighting.
    #[serde(with = "rfc3339")]
    pub(crate) last_seen: SystemTime,
    /// Number of frames that saw the module defective.
    pub(crate) frames_seen: u32,
    /// The best sighting (what the thumbnail shows).
    pub(crate) best: BestSighting,
    /// Highest defect score over the sightings.
    pub(crate) defect_score: f32,
    /// Anomaly class of the highest-scoring sighting.
    pub(crate) anomaly_class: String,
    /// Highest delta-T over the sightings, in `unit`.
    pub(crate) delta_t: Option<f32>,
    /// Unit of `delta_t`.
    pub(crate) unit: TemperatureUnit,
    /// Highest severity over the sightings.
    pub(crate) severity: Option<Severity>,
    /// Camera position at the best sighting, when a position source is configured.
    pub(crate) position: Option<Position>,
    /// The pixels around the module at the best sighting, for the thumbnail:
    /// the module box plus the widest thumbnail margin
    /// ([`crate::crop::MAX_THUMBNAIL_MARGIN`]), so any configured margin can
    /// be cut from it. Not serialised.
    #[serde(skip)]
    pub(crate) crop: Option<Arc<ModuleCrop>>,
}

/// What the tracker remembers of a defective track.
#[derive(Debug)]
struct DefectState {
    event_id: String,
    first_seen: SystemTime,
    last_seen: SystemTime,
    frames_seen: u32,
    confirmed: bool,
    best: BestSighting,
    best_quality: f32,
    published_quality: f32,
    published_severity: Option<Severity>,
    defect_score: f32,
    anomaly_class: String,
    delta_t: Option<f32>,
    unit: TemperatureUnit,
    severity: Option<Severity>,
    position: Option<Position>,
    crop: Option<Arc<ModuleCrop>>,
}

/// One tracked module.
#[derive(Debug)]
struct Track {
    id: u64,
    /// Box at the last match.
    bbox: BBox,
    /// Tracker frame counter at the last match.
    last_frame: u64,
    defect: Option<DefectState>,
}

impl Track {
    /// Box predicted for frame `frame_no` with a per-frame global shift.
    fn predict(&self, frame_no: u64, shift: (f32, f32)) -> BBox {
        let gap = frame_no.saturating_sub(self.last_frame) as f32;
        let (dx, dy) = (shift.0 * gap, shift.1 * gap);
        BBox {
            x0: self.bbox.x0 + dx,
            y0: self.bbox.y0 + dy,
            x1: self.bbox.x1 + dx,
            y1: self.bbox.y1 + dy,
        }
    }

    /// The event for the current state, if the track is a confirmed defect.
    fn event(&self, kind: EventKind) -> Option<DefectEvent> {
        let d = self.defect.as_ref().filter(|d| d.confirmed)?;
        Some(DefectEvent {
            event_id: d.event_id.clone(),
            track_id: self.id,
            kind,
            first_seen: d.first_seen,
            last_seen: d.last_seen,
            frames_seen: d.frames_seen,
            best: d.best.clone(),
            defect_score: d.defect_score,
            anomaly_class: d.anomaly_class.clone(),
            delta_t: d.delta_t,
            unit: d.unit,
            severity: d.severity,
            position: d.position.clone(),
            crop: d.crop.clone(),
        })
    }
}

/// SORT-like module tracker with global motion compensation; emits
/// [`DefectEvent`]s. Holds state between frames: one per video stream.
#[derive(Debug)]
pub(crate) struct Tracker {
    config: TrackingConfig,
    tracks: Vec<Track>,
    next_id: u64,
    /// Frames processed so far (the tracker's own clock; frame sequence
    /// numbers may jump).
    frame_no: u64,
    /// Global per-frame shift of the scene measured on the last frame with matches.
    shift: (f32, f32),
    // Reused buffers.
    candidates: Vec<(f32, usize, usize)>,
    track_match: Vec<Option<usize>>,
    det_match: Vec<Option<usize>>,
    dx: Vec<f32>,
    dy: Vec<f32>,
}

impl Tracker {
    /// A tracker with no tracks.
    pub(crate) fn new(config: TrackingConfig) -> Self {
        Tracker {
            config,
            tracks: Vec::new(),
            next_id: 1,
            frame_no: 0,
            shift: (0.0, 0.0),
            candidates: Vec::new(),
            track_match: Vec::new(),
            det_match: Vec::new(),
            dx: Vec::new(),
            dy: Vec::new(),
        }
    }

    /// The global per-frame scene shift last measured (pixels; x right, y down).
    #[cfg(test)]
    pub(crate) fn global_shift(&self) -> (f32, f32) {
        self.shift
    }

    /// Associates the modules of one frame with the tracks, sets their
    /// `track_id`, and returns the defect events this frame caused.
    /// `unit` is the unit of the modules' `delta_t`; `position` is the
    /// camera position at capture, when known.
    pub(crate) fn update(
        &mut self,
        frame: &Frame,
        modules: &mut [AnalysedModule],
        unit: TemperatureUnit,
        position: Option<&Position>,
    ) -> Vec<DefectEvent> {
        self.frame_no += 1;
        let n_tracks = self.tracks.len();
        self.track_match.clear();
        self.track_match.resize(n_tracks, None);
        self.det_match.clear();
        self.det_match.resize(modules.len(), None);

        // Pass 1: constant velocity (previous shift).
        let prev_shift = self.shift;
        self.associate(modules, prev_shift);
        // Global shift from the matches of pass 1.
        self.dx.clear();
        self.dy.clear();
        for (ti, m) in self.track_match.iter().enumerate() {
            if let Some(di) = *m {
                let t = &self.tracks[ti];
                let gap = (self.frame_no - t.last_frame).max(1) as f32;
                let (a, b) = (t.bbox.center(), modules[di].detection.quad.bbox().center());
                self.dx.push((b.x - a.x) / gap);
                self.dy.push((b.y - a.y) / gap);
            }
        }
        if let (Some(dx), Some(dy)) = (median(&mut self.dx), median(&mut self.dy)) {
            self.shift = (dx, dy);
            // Pass 2: what is left, with the shift just measured.
            if self.shift != prev_shift {
                self.associate(modules, self.shift);
            }
        }

        let mut events = Vec::new();
        let cfg = self.config.clone();
        let min_frames = if cfg.enabled {
            cfg.min_frames.max(1)
        } else {
            1
        };
        // Update matched tracks, start new ones.
        for (m, matched) in modules.iter_mut().zip(&self.det_match) {
            let ti = match *matched {
                Some(ti) => ti,
                None => {
                    self.tracks.push(Track {
                        id: self.next_id,
                        bbox: m.detection.quad.bbox(),
                        last_frame: self.frame_no,
                        defect: None,
                    });
                    self.next_id += 1;
                    self.tracks.len() - 1
                }
            };
            let track = &mut self.tracks[ti];
            track.bbox = m.detection.quad.bbox();
            track.last_frame = self.frame_no;
            m.track_id = Some(track.id);
            if m.detection.defect.defective {
                if let Some(kind) =
                    observe_defect(track, frame, m, unit, position, &cfg, min_frames)
                {
                    events.extend(track.event(kind));
                }
            }
        }
        // End tracks that were not seen for too long or left the frame.
        let (w, h) = (frame.width() as f32, frame.height() as f32);
        let (frame_no, shift) = (self.frame_no, self.shift);
        let max_missed = cfg.max_missed_frames as u64;
        self.tracks.retain(|t| {
            let missed = frame_no - t.last_frame;
            let p = t.predict(frame_no, shift);
            let out_of_view = p.x1 <= 0.0 || p.y1 <= 0.0 || p.x0 >= w || p.y0 >= h;
            let keep = cfg.enabled && (missed == 0 || (missed <= max_missed && !out_of_view));
            if !keep {
                events.extend(t.event(EventKind::End));
            }
            keep
        });
        events
    }

    /// Ends every track (end of a survey, shutdown) and returns the `end`
    /// events of the confirmed defects. The tracker starts afresh afterwards.
    pub(crate) fn finish(&mut self) -> Vec<DefectEvent> {
        let events = self
            .tracks
            .drain(..)
            .filter_map(|t| t.event(EventKind::End))
            .collect();
        self.shift = (0.0, 0.0);
        events
    }

    /// Greedy assignment of unmatched tracks to unmatched detections by IoU
    /// of the predicted box, best first, with IoU and centre-distance gates.
    fn associate(&mut self, modules: &[AnalysedModule], shift: (f32, f32)) {
        if !self.config.enabled {
            return;
        }
        self.candidates.clear();
        for (ti, t) in self.tracks.iter().enumerate() {
            if self.track_match[ti].is_some() {
                continue;
            }
            let p = t.predict(self.frame_no, shift);
            let gate = self.config.max_center_distance * p.width().max(p.height());
            let pc = p.center();
            for (di, m) in modules.iter().enumerate() {
                if self.det_match[di].is_some() {
                    continue;
                }
                let b = m.detection.quad.bbox();
                let iou = p.iou(&b);
                if iou.is_finite() && iou >= self.config.min_iou && distance(pc, b.center()) <= gate
                {
                    self.candidates.push((iou, ti, di));
                }
            }
        }
        self.candidates.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
        for &(_, ti, di) in &self.candidates {
            if self.track_match[ti].is_none() && self.det_match[di].is_none() {
                self.track_match[ti] = Some(di);
                self.det_match[di] = Some(ti);
            }
        }
    }
}

/// Records a defective sighting on its track; returns the event kind to send
/// now, if any.
fn observe_defect(
    track: &mut Track,
    frame: &Frame,
    m: &AnalysedModule,
    unit: TemperatureUnit,
    position: Option<&Position>,
    cfg: &TrackingConfig,
    min_frames: u32,
) -> Option<EventKind> {
    let det = &m.detection;
    let bbox = det.quad.bbox();
    let centrality = centrality(bbox.center(), frame.width() as f32, frame.height() as f32);
    let heat = match m.delta_t {
        Some(d) if d.is_finite() => 1.0 + d.max(0.0) / 10.0,
        _ => 0.5 + det.defect.defect_score.clamp(0.0, 1.0),
    };
    let quality = centrality * heat;
    let sighting = BestSighting {
        sequence: frame.sequence,
        captured_at: frame.captured_at,
        quad: det.quad,
        bbox,
        centrality,
        delta_t: m.delta_t,
        defect_score: det.defect.defect_score,
    };
    let id = track.id;
    let crop = || ModuleCrop::new(frame, &det.quad, MAX_THUMBNAIL_MARGIN).map(Arc::new);
    let d = track.defect.get_or_insert_with(|| DefectState {
        event_id: format!("{:x}-{}", rfc3339::unix_millis(frame.captured_at), id),
        first_seen: frame.captured_at,
        last_seen: frame.captured_at,
        frames_seen: 0,
        confirmed: false,
        best: sighting.clone(),
        best_quality: f32::NEG_INFINITY,
        published_quality: 0.0,
        published_severity: None,
        defect_score: f32::NEG_INFINITY,
        anomaly_class: det.defect.anomaly_class.clone(),
        delta_t: None,
        unit,
        severity: None,
        position: None,
        crop: None,
    });
    d.frames_seen += 1;
    d.last_seen = frame.captured_at;
    if det.defect.defect_score > d.defect_score {
        d.defect_score = det.defect.defect_score;
        d.anomaly_class.clone_from(&det.defect.anomaly_class);
    }
    d.delta_t = max_opt(d.delta_t, m.delta_t.filter(|v| v.is_finite()));
    d.severity = d.severity.max(m.severity);
    if quality > d.best_quality {
        d.best_quality = quality;
        d.best = sighting;
        d.position = position.cloned();
        d.crop = crop();
    }
    if !d.confirmed {
        if d.frames_seen >= min_frames {
            d.confirmed = true;
            d.published_quality = d.best_quality;
            d.published_severity = d.severity;
            return Some(EventKind::New);
        }
        return None;
    }
    let better_view = d.best_quality > d.published_quality * (1.0 + cfg.update_min_gain);
    if better_view || d.severity > d.published_severity {
        d.published_quality = d.best_quality;
        d.published_severity = d.severity;
        return Some(EventKind::Update);
    }
    None
}

/// 1 at the frame centre, falling linearly to 0 at the corners.
fn centrality(p: Point, w: f32, h: f32) -> f32 {
    let half_diag = 0.5 * (w * w + h * h).sqrt();
    if half_diag <= 0.0 {
        return 0.0;
    }
    (1.0 - distance(
        p,
        Point {
            x: 0.5 * w,
            y: 0.5 * h,
        },
    ) / half_diag)
        .clamp(0.0, 1.0)
}

fn distance(a: Point, b: Point) -> f32 {
    ((a.x - b.x).powi(2) + (a.y - b.y).powi(2)).sqrt()
}

fn max_opt(a: Option<f32>, b: Option<f32>) -> Option<f32> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}
