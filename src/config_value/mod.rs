//! Value types and checks that every configuration section shares: durations
//! (humantime strings), numeric ranges, secrets read from files, and the test
//! of each section's documented snippet. A leaf module: the sections (`source`, `model`,
//! `publish`, ...) use it for their own `validate`, and `config`, which
//! composes the sections, uses them, so nothing here may import a section.

pub(crate) mod duration;
mod range;
mod secret;
#[cfg(test)]
pub(crate) mod test_support;

pub use duration::parse_duration_arg;
pub(crate) use range::{duration_in_range, in_range, MAX_PERIOD};
pub(crate) use secret::read_secret_file;
