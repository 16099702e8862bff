//! Keys whose spelling changed: the old spellings are still read, and
//! [`old_style_warnings`] says for each what to write instead.
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
            toml::Value::Float(x) => Duration::try_from_secs_f64(*x).ok(),
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
