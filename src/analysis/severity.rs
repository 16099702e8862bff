//! Severity classes of a thermal abnormality, after IEC TS 62446-3 practice.
//!
//! IEC TS 62446-3:2017 (outdoor infrared thermography of PV modules and plants)
//! grades every abnormality in three "classes of abnormality" (CoA):
//! 1 = no abnormality / observe, 2 = thermal abnormality (find the cause,
//! plan a repair), 3 = safety-relevant thermal abnormality (act now). Its
//! annex gives, per abnormality type, example temperature differences to
//! the healthy reference; the widely used field practice for a hot spot is
//! < 10 K class 1, 10..20 K class 2, > 20 K class 3. Those are our defaults;
//! contracts often set their own, hence the config.

use std::collections::BTreeMap;

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

use crate::model::ANOMALY_CLASSES;

/// A class of abnormality (1..=3). Serialises as `{"class": n, "label": "..."}`
/// so the control room gets both the number and a readable meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct Severity(u8);

impl Severity {
    /// Class 1: no abnormality worth a repair; observe.
    pub(crate) const OBSERVE: Severity = Severity(1);
    /// Class 2: thermal abnormality; find the cause, plan a repair.
    pub(crate) const ANOMALY: Severity = Severity(2);
    /// Class 3: safety-relevant thermal abnormality; repair now.
    pub(crate) const SAFETY: Severity = Severity(3);

    /// The class for a number; values outside 1..=3 are clamped into it.
    pub(crate) fn new(class: u8) -> Severity {
        Severity(class.clamp(1, 3))
    }

    /// The class number, 1..=3.
    pub(crate) fn class(self) -> u8 {
        self.0
    }

    /// A short label: `observe`, `anomaly`, `safety`.
    pub(crate) fn label(self) -> &'static str {
        match self.0 {
            1 => "observe",
            2 => "anomaly",
            _ => "safety",
        }
    }
}

#[derive(Serialize, Deserialize)]
struct SeverityRepr {
    class: u8,
    label: String,
}

impl Serialize for Severity {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        SeverityRepr {
            class: self.0,
            label: self.label().to_string(),
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let r = SeverityRepr::deserialize(d)?;
        if !(1..=3).contains(&r.class) {
            return Err(serde::de::Error::custom(format!(
                "severity class {} is not 1, 2 or 3",
                r.class
            )));
        }
        Ok(Severity(r.class))
    }
}

/// `[analysis.severity]`: how a module's delta-T (and the classifier's
/// anomaly class) maps to a severity class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct SeverityConfig {
    /// Delta-T in kelvin from which a module is class 2 (default 10 K:
    /// IEC TS 62446-3 field practice for a hot spot).
    pub(crate) class2_delta_t_k: f32,
    /// Delta-T in kelvin above which a module is class 3 (default 20 K).
    pub(crate) class3_delta_t_k: f32,
    /// For cameras without absolute temperatures: how many raw units make one
    /// kelvin (e.g. 100 for a Lepton in centi-kelvin whose radiometry flag is
    /// off). Unset (default): no severity from delta-T in relative units.
    pub(crate) raw_units_per_k: Option<f32>,
    /// Minimum class for a module the classifier calls defective with this
    /// anomaly class, whatever its delta-T: a whole module or substring that
    /// is offline, or an active bypass diode, is a yield loss (class 2) even
    /// when only a few kelvin warmer. Keys are classifier class names.
    pub(crate) class_floor: BTreeMap<String, u8>,
}

impl Default for SeverityConfig {
    fn default() -> Self {
        let class_floor = [("Offline-Module", 2), ("Diode", 2), ("Diode-Multi", 2)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        SeverityConfig {
            class2_delta_t_k: 10.0,
            class3_delta_t_k: 20.0,
            raw_units_per_k: None,
            class_floor,
        }
    }
}

impl SeverityConfig {
    /// Checks the values; errors name the key.
    pub(crate) fn validate(&self) -> Result<()> {
        let (t2, t3) = (self.class2_delta_t_k, self.class3_delta_t_k);
        if !(t2.is_finite() && t3.is_finite() && t2 >= 0.0 && t3 >= t2) {
            bail!(
                "analysis.severity: class2_delta_t_k ({t2}) and class3_delta_t_k ({t3}) must be \
                 finite, >= 0, and class3_delta_t_k >= class2_delta_t_k"
            );
        }
        if let Some(u) = self.raw_units_per_k {
            if !(u.is_finite() && u > 0.0) {
                bail!("analysis.severity.raw_units_per_k must be > 0 (got {u}); remove it to grade no relative frames");
            }
        }
        for (name, class) in &self.class_floor {
            if !ANOMALY_CLASSES.contains(&name.as_str()) {
                bail!(
                    "analysis.severity.class_floor: unknown anomaly class {name:?}; known: {}",
                    ANOMALY_CLASSES.join(", ")
                );
            }
            if !(1..=3).contains(class) {
                bail!("analysis.severity.class_floor.{name:?} = {class}: a class is 1, 2 or 3");
            }
        }
        Ok(())
    }

    /// The class for a delta-T in kelvin: `< class2` -> 1, `class2..=class3` -> 2,
    /// `> class3` -> 3.
    pub(crate) fn class_for_delta_k(&self, delta_k: f32) -> Severity {
        if delta_k > self.class3_delta_t_k {
            Severity::SAFETY
        } else if delta_k >= self.class2_delta_t_k {
            Severity::ANOMALY
        } else {
            Severity::OBSERVE
        }
    }

    /// Converts a delta-T in the frame's unit to kelvin: as is for celsius,
    /// through `raw_units_per_k` for relative units (`None` when unset).
    pub(crate) fn delta_in_kelvin(&self, delta: f32, absolute: bool) -> Option<f32> {
        if absolute {
            Some(delta)
        } else {
            self.raw_units_per_k.map(|u| delta / u)
        }
    }

    /// Severity of one module: from its delta-T (in kelvin, when known), raised
    /// to the `class_floor` of its anomaly class when the classifier calls it
    /// defective. `None` when neither applies.
    pub(crate) fn classify(
        &self,
        delta_k: Option<f32>,
        defective: bool,
        anomaly_class: &str,
    ) -> Option<Severity> {
        let thermal = delta_k
            .filter(|d| d.is_finite())
            .map(|d| self.class_for_delta_k(d));
        let floor = defective
            .then(|| {
                self.class_floor
                    .get(anomaly_class)
                    .map(|c| Severity::new(*c))
            })
            .flatten();
        thermal.max(floor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_thresholds_follow_iec_practice() {
        let c = SeverityConfig::default();
        c.validate().unwrap();
        assert_eq!(
            c.classify(Some(5.0), false, "No-Anomaly"),
            Some(Severity::OBSERVE)
        );
        assert_eq!(
            c.classify(Some(10.0), true, "Hot-Spot"),
            Some(Severity::ANOMALY)
        );
        assert_eq!(
            c.classify(Some(20.5), true, "Hot-Spot"),
            Some(Severity::SAFETY)
        );
        assert_eq!(c.classify(None, false, "Hot-Spot"), None);
    }

    #[test]
    fn thresholds_from_config_are_honoured() {
        let mut c: SeverityConfig =
            toml::from_str("class2_delta_t_k = 3.0\nclass3_delta_t_k = 6.0").unwrap();
        c.validate().unwrap();
        assert_eq!(
            c.classify(Some(5.0), true, "Hot-Spot"),
            Some(Severity::ANOMALY)
        );
        assert_eq!(
            c.classify(Some(7.0), true, "Hot-Spot"),
            Some(Severity::SAFETY)
        );
        c.class3_delta_t_k = 1.0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn classifier_class_raises_but_never_lowers() {
        let c = SeverityConfig::default();
        assert_eq!(
            c.classify(Some(2.0), true, "Offline-Module"),
            Some(Severity::ANOMALY)
        );
        assert_eq!(c.classify(None, true, "Diode"), Some(Severity::ANOMALY));
        assert_eq!(
            c.classify(Some(2.0), false, "Offline-Module"),
            Some(Severity::OBSERVE)
        );
        assert_eq!(
            c.classify(Some(25.0), true, "Diode"),
            Some(Severity::SAFETY)
        );
    }

    #[test]
    fn relative_units_need_a_scale() {
        let mut c = SeverityConfig::default();
        assert_eq!(c.delta_in_kelvin(500.0, false), None);
        c.raw_units_per_k = Some(100.0);
        assert_eq!(c.delta_in_kelvin(1500.0, false), Some(15.0));
        assert_eq!(c.delta_in_kelvin(15.0, true), Some(15.0));
    }

    #[test]
    fn unknown_class_in_floor_is_rejected_and_serde_round_trips() {
        let c: SeverityConfig = toml::from_str("[class_floor]\nHotspot = 2").unwrap();
        assert!(c.validate().unwrap_err().to_string().contains("Hotspot"));
        assert!(toml::from_str::<SeverityConfig>("class2 = 1").is_err());
        let j = serde_json::to_string(&Severity::SAFETY).unwrap();
        assert_eq!(j, r#"{"class":3,"label":"safety"}"#);
        assert_eq!(
            serde_json::from_str::<Severity>(&j).unwrap(),
            Severity::SAFETY
        );
    }
}
