//! How the configuration file writes values that serde alone cannot read the
//! way an operator expects: durations, and keys whose name changed.
//!
//! Durations are humantime strings everywhere (`"500ms"`, `"30s"`, `"2m"`,
//! `"7days"`). Files written before that used plain numbers of seconds, some
//! under keys ending in `_s`; both are still read, and [`old_style_warnings`]
//! says for each what to write instead, so an existing file keeps working and
//! its operator learns the current spelling.

use std::time::Duration;

/// Keys renamed when durations became humantime strings, as
/// `(table, old key, new key)`. The struct field of the new key carries
/// `#[serde(alias = "<old key>")]` so the old spelling is still read.
pub(crate) const RENAMED_KEYS: &[(&str, &str, &str)] = &[
    ("output", "snapshot_interval_s", "snapshot_interval"),
    ("output", "stats_interval_s", "stats_interval"),
    ("analysis.position", "max_fix_age_s", "max_fix_age"),
];

/// Serde `with` module for a [`Duration`] written as a humantime string; a
/// plain number is read as seconds (the old spelling, warned about by
/// [`old_style_warnings`]).
pub(crate) mod duration {
    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};
    use std::fmt;
    use std::time::Duration;

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
            super::seconds(secs).ok_or_else(|| {
                E::custom(format!(
                    "{secs} is not a duration: write one such as \"500ms\" or \"30s\""
                ))
            })
        }
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

/// One warning per value of `file` written the old way: a key from
/// [`RENAMED_KEYS`], or a duration given as a plain number of seconds. A key
/// holds a duration when its value in `defaults` (the serialized default
/// configuration) is a humantime string, so a new duration key needs nothing
/// added here.
pub(crate) fn old_style_warnings(file: &toml::Table, defaults: &toml::Table) -> Vec<String> {
    let mut warnings = Vec::new();
    walk(file, defaults, "", &mut warnings);
    warnings
}

/// [`old_style_warnings`] for one table, `path` being its dotted name.
fn walk(file: &toml::Table, defaults: &toml::Table, path: &str, out: &mut Vec<String>) {
    for (key, value) in file {
        let renamed = RENAMED_KEYS
            .iter()
            .find(|(table, old, _)| *table == path && old == key)
            .map(|(_, _, new)| *new);
        let current = renamed.unwrap_or(key);
        let default = defaults.get(current);
        if let (toml::Value::Table(sub), Some(toml::Value::Table(sub_defaults))) = (value, default)
        {
            let sub_path = if path.is_empty() {
                key.clone()
            } else {
                format!("{path}.{key}")
            };
            walk(sub, sub_defaults, &sub_path, out);
            continue;
        }
        let is_duration =
            matches!(default, Some(toml::Value::String(s)) if humantime::parse_duration(s).is_ok());
        let as_seconds = match value {
            toml::Value::Integer(n) => u64::try_from(*n).ok().map(Duration::from_secs),
            toml::Value::Float(x) => seconds(*x),
            _ => None,
        };
        let suggestion = match (is_duration, as_seconds) {
            (true, Some(d)) => format!("{current} = \"{}\"", humantime::format_duration(d)),
            _ => format!("{current} = {value}"),
        };
        if let Some(new) = renamed {
            out.push(format!(
                "[{path}] {key} is now {new}: write {suggestion} (read as before until then)"
            ));
        } else if is_duration && as_seconds.is_some() {
            out.push(format!(
                "[{path}] {key} = {value}: a plain number of seconds is the old spelling of a duration: write {suggestion}"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A struct with one duration, for the serde module alone.
    #[derive(serde::Deserialize, serde::Serialize, Debug, PartialEq)]
    struct T {
        #[serde(with = "duration")]
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

    #[test]
    fn old_spellings_are_warned_about_with_the_new_one() {
        let defaults: toml::Table = toml::from_str(
            "[output]\nsnapshot_interval = \"10s\"\njpeg_quality = 80\n[source.v4l2]\nstall_timeout = \"5s\"\n",
        )
        .unwrap();
        let file: toml::Table = toml::from_str(
            "[output]\nsnapshot_interval_s = 0.5\njpeg_quality = 70\n[source.v4l2]\nstall_timeout = 3\n",
        )
        .unwrap();
        let warnings = old_style_warnings(&file, &defaults);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("[output] snapshot_interval_s is now snapshot_interval")
                && warnings[0].contains("snapshot_interval = \"500ms\""),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("[source.v4l2] stall_timeout = 3")
                && warnings[1].contains("stall_timeout = \"3s\""),
            "{warnings:?}"
        );
        let current: toml::Table = toml::from_str(
            "[output]\nsnapshot_interval = \"1s\"\n[source.v4l2]\nstall_timeout = \"1s\"\n",
        )
        .unwrap();
        assert!(old_style_warnings(&current, &defaults).is_empty());
    }
}
