//! Range checks shared by every section's `validate`: each numeric key has a
//! range, NaN and infinities fall outside every range, and the error names
//! the key and the range, so `check-config` and `run` refuse the same values
//! with the same words.

use std::fmt::Debug;
use std::ops::RangeInclusive;
use std::time::Duration;

use anyhow::{bail, Result};

/// Refuses `value` outside `range` (NaN is outside every range). `key` is
/// the full name, e.g. `"[pipeline] max_fps"`; `unit` follows the bounds in
/// the message (`""`, `" px"`, `" bytes"`). Values are shown as `Debug`
/// writes them, which for floats is the shortest exact form (`1e-30`).
pub(crate) fn in_range<T>(key: &str, value: T, range: RangeInclusive<T>, unit: &str) -> Result<()>
where
    T: PartialOrd + Debug,
{
    if !range.contains(&value) {
        bail!(
            "{key} = {value:?}: must be between {:?} and {:?}{unit}",
            range.start(),
            range.end()
        );
    }
    Ok(())
}

/// Refuses a duration outside `range`, written back in the file's spelling.
pub(crate) fn duration_in_range(
    key: &str,
    value: Duration,
    range: RangeInclusive<Duration>,
) -> Result<()> {
    if !range.contains(&value) {
        let show = |d: &Duration| format!("\"{}\"", humantime::format_duration(*d));
        bail!(
            "{key} = {}: must be between {} and {}",
            show(&value),
            show(range.start()),
            show(range.end())
        );
    }
    Ok(())
}

/// The longest period any duration key accepts: long enough for every
/// sensible setting, short enough that adding it to a clock never overflows.
pub(crate) const MAX_PERIOD: Duration = Duration::from_secs(24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_key_and_the_range() {
        assert!(in_range("[a] b", 5, 1..=10, "").is_ok());
        let err = in_range("[pipeline] max_fps", f32::NAN, 0.01..=1000.0, "")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "[pipeline] max_fps = NaN: must be between 0.01 and 1000.0"
        );
        let err = in_range("[pipeline] max_fps", 1e-30_f32, 0.01..=1000.0, "").unwrap_err();
        assert!(
            err.to_string().starts_with("[pipeline] max_fps = 1e-30:"),
            "{err}"
        );
        let err = in_range("[x] y", f64::INFINITY, 0.0..=1.0, "").unwrap_err();
        assert!(err.to_string().contains("inf"), "{err}");
        let err = duration_in_range(
            "[output] stats_interval",
            Duration::from_nanos(1),
            Duration::from_millis(100)..=MAX_PERIOD,
        )
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "[output] stats_interval = \"1ns\": must be between \"100ms\" and \"1day\""
        );
    }
}
