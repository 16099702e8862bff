//! Durations in the configuration file and on the command line: humantime
//! strings (`"500ms"`, `"30s"`, `"2m"`, `"7days"`) everywhere. Files written
//! before that used plain numbers of seconds; those are still read (the
//! config module warns about them, naming the current spelling).
//!
//! Used as a serde `with` module: `#[serde(with = "crate::config_value::duration")]`.

use std::time::Duration;

use serde::de::{self, Visitor};
use serde::{Deserializer, Serializer};
use std::fmt;

/// Reads `"30s"`-style strings and plain numbers of seconds.
pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    d.deserialize_any(DurationVisitor)
}

/// Writes the humantime string (`"1m 30s"`).
pub(crate) fn serialize<S: Serializer>(value: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(&humantime::format_duration(*value))
}

/// Accepts a string, an integer or a float.
struct DurationVisitor;

impl Visitor<'_> for DurationVisitor {
    type Value = Duration;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a duration such as \"500ms\", \"30s\" or \"2m\"")
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Duration, E> {
        humantime::parse_duration(text).map_err(|e| {
            E::custom(format!(
                "invalid duration {text:?}: {e} (write e.g. \"500ms\", \"30s\", \"2m\", \"7days\")"
            ))
        })
    }

    fn visit_u64<E: de::Error>(self, secs: u64) -> Result<Duration, E> {
        Ok(Duration::from_secs(secs))
    }

    fn visit_i64<E: de::Error>(self, secs: i64) -> Result<Duration, E> {
        u64::try_from(secs).map(Duration::from_secs).map_err(|_| {
            E::custom(format!(
                "{secs} s is negative: write a duration such as \"5s\""
            ))
        })
    }

    fn visit_f64<E: de::Error>(self, secs: f64) -> Result<Duration, E> {
        seconds(secs).ok_or_else(|| {
            E::custom(format!(
                "{secs} is not a duration: write one such as \"500ms\" or \"30s\""
            ))
        })
    }
}

/// Parses a command-line duration the way the file reads one: `"500ms"`,
/// `"2s"`, or a plain number of seconds (`"0.5"`), as a clap value parser.
pub fn parse_duration_arg(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(secs) => seconds(secs)
            .ok_or_else(|| format!("{text:?} is not a duration: write e.g. \"500ms\" or \"2s\"")),
        Err(_) => humantime::parse_duration(text.trim())
            .map_err(|e| format!("{text:?}: {e} (write e.g. \"500ms\" or \"2s\")")),
    }
}

/// A number of seconds as a duration; `None` for NaN, infinities, negative
/// values and values beyond `Duration`'s range.
fn seconds(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A struct with one duration, for the serde module alone.
    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct T {
        #[serde(with = "super")]
        d: Duration,
    }

    fn parse(text: &str) -> Result<Duration, String> {
        toml::from_str::<T>(text)
            .map(|t| t.d)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn durations_read_as_strings_and_as_seconds() {
        assert_eq!(parse("d = \"500ms\""), Ok(Duration::from_millis(500)));
        assert_eq!(parse("d = \"2m\""), Ok(Duration::from_secs(120)));
        assert_eq!(parse("d = 5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse("d = 0.25"), Ok(Duration::from_millis(250)));
        for bad in [
            "d = nan",
            "d = inf",
            "d = -1",
            "d = -0.5",
            "d = \"5 parsecs\"",
            "d = true",
        ] {
            let err = parse(bad).unwrap_err();
            assert!(err.contains("line 1"), "{bad}: {err}");
        }
        let text = toml::to_string(&T {
            d: Duration::from_millis(1500),
        })
        .unwrap();
        assert_eq!(text.trim(), "d = \"1s 500ms\"");
    }

    #[test]
    fn command_line_durations_read_both_spellings() {
        assert_eq!(parse_duration_arg("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration_arg("2"), Ok(Duration::from_secs(2)));
        assert_eq!(parse_duration_arg("2s"), Ok(Duration::from_secs(2)));
        assert!(parse_duration_arg("nan").is_err());
        assert!(parse_duration_arg("-1").is_err());
        assert!(parse_duration_arg("soon").is_err());
    }
}
