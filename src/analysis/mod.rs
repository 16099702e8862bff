//! Analysis of the model's output: module temperatures, delta-T against the
//! healthy neighbours, severity classes, tracking across frames (one event per
//! physical defect) and the camera position on events.
//!
//! Thermographers do not act on "defective: true"; they act on how hot,
//! compared with what, and where. [`Analyser::analyse`] is the one entry point
//! that the daemon's pipeline and `pvtherm detect` both call, once per frame.
//!
//! Pure computation: a frame, its detections and the camera position (read by
//! the caller from [`crate::position`]) in, numbers and events out. No I/O,
//! no threads, no pictures: the renderer draws what the analysis found, never
//! the other way round.

pub(crate) mod fusion;
pub(crate) mod severity;
pub(crate) mod temperature;
pub(crate) mod tracking;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::frame::Frame;
use crate::geometry::Quad;
use crate::model::ModuleDetection;
use crate::position::{Position, PositionConfig};
use crate::radiometry::{ObjectParams, Radiometry};

pub use fusion::FusionRule;
pub(crate) use severity::{Severity, SeverityConfig};
pub(crate) use temperature::{ModuleTemperature, TemperatureMeter, TemperatureUnit};
pub(crate) use tracking::{DefectEvent, Tracker, TrackingConfig};

/// `[analysis]`: temperatures, severity, tracking and position.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AnalysisConfig {
    /// Fewest healthy modules in a frame for their median to be the delta-T
    /// reference (default 3); with fewer, the median of all modules is used.
    pub(crate) min_reference_modules: usize,
    /// Object parameters replacing the R-JPEG's own (emissivity of module
    /// glass, reflected sky temperature, distance). Applies to FLIR Planck
    /// radiometry only; linear cameras (Lepton, TC001) report temperatures
    /// that already include their own assumptions.
    pub(crate) object: ObjectParams,
    /// Severity classes.
    pub(crate) severity: SeverityConfig,
    /// Tracking and defect events.
    pub tracking: TrackingConfig,
    /// Where the positions on events come from. The caller starts the
    /// source and passes each frame's position to [`Analyser::analyse`].
    pub(crate) position: PositionConfig,
    /// `[analysis.render]` as files written before it became `[render]`:
    /// kept as a raw table so that analysis does not depend on the renderer;
    /// [`crate::config::Config`] moves it to its new place with a warning.
    #[serde(skip_serializing)]
    pub(crate) render: Option<toml::Table>,
}

impl Default for AnalysisConfig {
    fn default() -> Self {
        AnalysisConfig {
            min_reference_modules: 3,
            object: ObjectParams::default(),
            severity: SeverityConfig::default(),
            tracking: TrackingConfig::default(),
            position: PositionConfig::default(),
            render: None,
        }
    }
}

impl AnalysisConfig {
    /// Checks every subsection; errors name the key.
    pub(crate) fn validate(&self) -> Result<()> {
        self.object.validate().context("analysis.object")?;
        self.severity.validate()?;
        self.tracking.validate()?;
        self.position.validate()?;
        Ok(())
    }
}

/// One module with everything the analysis adds to the model's verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnalysedModule {
    /// The detector's and classifier's output.
    pub detection: ModuleDetection,
    /// Temperatures inside the outline (`None` when no pixel lies inside).
    pub(crate) temperature: Option<ModuleTemperature>,
    /// Hottest pixel minus the frame's reference, in the frame's unit.
    pub(crate) delta_t: Option<f32>,
    /// Class of abnormality (see [`severity`]).
    pub(crate) severity: Option<Severity>,
    /// Tracker id, stable while the module stays in view.
    pub(crate) track_id: Option<u64>,
}

/// The analysis of one frame.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FrameAnalysis {
    /// The modules, in the detector's order.
    pub modules: Vec<AnalysedModule>,
    /// Median of the mean temperatures of the healthy modules (of all modules
    /// when too few are healthy), in `unit`; `None` without any temperature.
    pub(crate) reference_temp: Option<f32>,
    /// Unit of every temperature and delta-T: `celsius` or `relative`.
    pub(crate) unit: TemperatureUnit,
    /// Why severities are missing, when they are (relative units without a scale).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(crate) note: Option<String>,
    /// Defect events caused by this frame (`new`, `update`, `end`).
    pub(crate) events: Vec<DefectEvent>,
}

/// Runs the analysis frame after frame. Holds the tracker and reused
/// buffers: one per frame stream (the daemon's pipeline, or one `detect` run
/// over a survey).
#[derive(Debug)]
pub struct Analyser {
    config: AnalysisConfig,
    meter: TemperatureMeter,
    tracker: Tracker,
    means: Vec<f32>,
    /// The classifier's fused rule, when it decides (see [`fusion`]).
    fusion: Option<FusionRule>,
    /// Per module, its converted pixel values (only when the rule needs them).
    values: Vec<Vec<(f32, u32)>>,
}

impl Analyser {
    /// Validates the config and sets up the tracker.
    pub fn new(config: AnalysisConfig) -> Result<Analyser> {
        config.validate()?;
        Ok(Analyser {
            tracker: Tracker::new(config.tracking.clone()),
            config,
            meter: TemperatureMeter::new(),
            means: Vec::new(),
            fusion: None,
            values: Vec::new(),
        })
    }

    /// The same analyser deciding defects with `rule` (the classifier's,
    /// from [`FusionRule::for_classifier`]); `None` leaves the classifier's
    /// decisions as they are.
    pub fn with_fusion(mut self, rule: Option<FusionRule>) -> Analyser {
        self.fusion = rule;
        self
    }

    /// The radiometry used for `frame`: the frame's, with the configured
    /// object parameters applied to FLIR Planck constants.
    pub(crate) fn effective_radiometry(&self, frame: &Frame) -> Radiometry {
        match &frame.radiometry {
            Radiometry::Planck(p) => Radiometry::Planck(p.with_overrides(&self.config.object)),
            other => other.clone(),
        }
    }

    /// Analyses one frame: temperatures, reference, delta-T and severity of
    /// every module, then tracking and the defect events this frame causes.
    /// `position` is where the camera was at capture, when a position source
    /// knows it; events keep it. Never fails: what cannot be measured is `None`.
    /// Flagged modules keep the classifier's anomaly class (see
    /// [`Analyser::analyse_naming`]).
    pub fn analyse(
        &mut self,
        frame: &Frame,
        detections: Vec<ModuleDetection>,
        position: Option<&Position>,
    ) -> FrameAnalysis {
        self.analyse_naming(frame, detections, position, &mut |_, _| None)
    }

    /// [`Analyser::analyse`], with `name` asked for the anomaly class of each
    /// module the defect decision flags, once decided and before anything
    /// reads the class (severity, tracking); `None` keeps the classifier's.
    /// The model stack's anomaly model answers here: run only on flagged
    /// modules, it can be larger than a model that sees every module.
    pub(crate) fn analyse_naming(
        &mut self,
        frame: &Frame,
        detections: Vec<ModuleDetection>,
        position: Option<&Position>,
        name: &mut dyn FnMut(&Frame, &Quad) -> Option<&'static str>,
    ) -> FrameAnalysis {
        let radiometry = self.effective_radiometry(frame);
        let absolute = radiometry.is_absolute();
        let unit = if absolute {
            TemperatureUnit::Celsius
        } else {
            TemperatureUnit::Relative
        };
        let keep_values = self
            .fusion
            .as_ref()
            .is_some_and(FusionRule::needs_pixel_values);
        if keep_values && self.values.len() < detections.len() {
            self.values.resize_with(detections.len(), Vec::new);
        }
        let mut modules: Vec<AnalysedModule> = detections
            .into_iter()
            .enumerate()
            .map(|(i, detection)| AnalysedModule {
                temperature: self.meter.measure_keeping(
                    frame,
                    &radiometry,
                    &detection.quad,
                    self.values.get_mut(i).filter(|_| keep_values),
                ),
                detection,
                delta_t: None,
                severity: None,
                track_id: None,
            })
            .collect();
        // The fused decision comes before anything that reads `defective`
        // (the healthy reference, severity, tracking).
        if let Some(rule) = &self.fusion {
            let values = if keep_values { &self.values[..] } else { &[] };
            let size = (frame.width() as f32, frame.height() as f32);
            rule.apply(absolute, size, &mut modules, values, &mut self.means);
        }
        for m in modules.iter_mut().filter(|m| m.detection.defect.defective) {
            if let Some(class) = name(frame, &m.detection.quad) {
                m.detection.defect.anomaly_class = class.to_string();
            }
        }

        let reference_temp = self.reference(&modules);
        let sev = &self.config.severity;
        for m in &mut modules {
            m.delta_t = match (&m.temperature, reference_temp) {
                (Some(t), Some(r)) => Some(t.max - r),
                _ => None,
            };
            let delta_k = m.delta_t.and_then(|d| sev.delta_in_kelvin(d, absolute));
            let defect = &m.detection.defect;
            m.severity = sev.classify(delta_k, defect.defective, &defect.anomaly_class);
        }
        let note =
            (!absolute && sev.raw_units_per_k.is_none() && reference_temp.is_some()).then(|| {
                "relative units: no absolute temperature from this source; set \
             analysis.severity.raw_units_per_k to grade delta-T"
                    .to_string()
            });

        let events = self.tracker.update(frame, &mut modules, unit, position);
        FrameAnalysis {
            modules,
            reference_temp,
            unit,
            note,
            events,
        }
    }

    /// Ends every open defect (shutdown, end of a survey): the `end` events.
    pub(crate) fn finish(&mut self) -> Vec<DefectEvent> {
        self.tracker.finish()
    }

    /// Median of the healthy modules' mean temperatures, or of all modules'
    /// when fewer than `min_reference_modules` are healthy.
    fn reference(&mut self, modules: &[AnalysedModule]) -> Option<f32> {
        let means = &mut self.means;
        means.clear();
        let healthy = modules.iter().filter(|m| !m.detection.defect.defective);
        means.extend(healthy.filter_map(|m| m.temperature.as_ref().map(|t| t.mean)));
        if means.len() < self.config.min_reference_modules.max(1) {
            means.clear();
            means.extend(
                modules
                    .iter()
                    .filter_map(|m| m.temperature.as_ref().map(|t| t.mean)),
            );
        }
        median(means)
    }
}

pub(crate) use crate::median::median;

/// Serde for `SystemTime` as an RFC 3339 string with milliseconds (UTC), the
/// time format of every payload.
pub(crate) mod rfc3339 {
    use std::time::{Duration, SystemTime, UNIX_EPOCH};

    use serde::{Deserialize, Deserializer, Serializer};

    /// Last second humantime can format (end of year 9999).
    const MAX_SECS: u64 = 253_402_300_799;

    /// Writes `t` as e.g. `2024-06-01T10:00:00.123Z`; times outside 1970..9999
    /// (a camera with a wrong clock) are clamped rather than failing.
    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let max = UNIX_EPOCH + Duration::from_secs(MAX_SECS);
        let t = (*t).clamp(UNIX_EPOCH, max);
        s.collect_str(&humantime::format_rfc3339_millis(t))
    }

    /// Reads an RFC 3339 time.
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_rfc3339_weak(&s).map_err(serde::de::Error::custom)
    }

    /// Milliseconds since the Unix epoch (0 for earlier times).
    pub(crate) fn unix_millis(t: SystemTime) -> u64 {
        t.duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
    }
}

#[cfg(test)]
mod tests;
