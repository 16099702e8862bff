//! Checks shared by every section's tests: each section's documented snippet
//! in `config/snippets/` shows the defaults, and every key it mentions (also
//! the commented-out ones) parses.

use serde::de::DeserializeOwned;
use std::fmt::Debug;

/// The documented snippet with its commented-out keys and tables enabled
/// (`# key = value` and `# [table]` lines), so a test can check that every
/// documented key parses.
pub(crate) fn snippet_with_all_keys(text: &str) -> String {
    text.lines()
        .map(|line| {
            let rest = line.strip_prefix("# ").unwrap_or(line);
            let is_key = rest.split_once(" = ").is_some_and(|(k, _)| {
                !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
            });
            let is_table = rest.starts_with('[') && rest.trim_end().ends_with(']');
            if line.starts_with("# ") && (is_key || is_table) {
                rest
            } else {
                line
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Asserts that `text`, the snippet documenting the table `section` (dotted,
/// e.g. `"source.v4l2"`), holds that table alone, with `T`'s defaults as
/// written, and that with every commented-out key enabled it still parses
/// into `T` (whose `deny_unknown_fields` refuses a documented key that does
/// not exist).
pub(crate) fn check_documented_snippet<T>(section: &str, text: &str)
where
    T: DeserializeOwned + PartialEq + Debug + Default,
{
    let plain = section_of::<T>(section, text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        plain,
        T::default(),
        "the [{section}] snippet shows the defaults"
    );
    let all = snippet_with_all_keys(text);
    section_of::<T>(section, &all).unwrap_or_else(|e| panic!("{e}\n{all}"));
}

/// The table `section` of `text` read as `T`; an error when the text holds
/// anything but that table (and its parents).
fn section_of<T: DeserializeOwned>(section: &str, text: &str) -> Result<T, String> {
    let mut table: toml::Table = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut path = section.split('.').peekable();
    while let Some(name) = path.next() {
        if let Some(other) = table.keys().find(|k| *k != name) {
            return Err(format!("the [{section}] snippet also sets {other:?}"));
        }
        let value = table
            .remove(name)
            .ok_or_else(|| format!("the snippet has no [{section}] table"))?;
        if path.peek().is_none() {
            return value.try_into().map_err(|e: toml::de::Error| e.to_string());
        }
        table = match value {
            toml::Value::Table(t) => t,
            _ => return Err(format!("{name} is not a table")),
        };
    }
    unreachable!("a section name has at least one part")
}
