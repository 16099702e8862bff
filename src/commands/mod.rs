//! One module per subcommand of the `pvtherm` binary. `main.rs` only parses
//! the command line and calls `commands::<name>::run`.

pub mod cameras;
pub mod capture;
pub mod detect;
pub mod eval;
pub mod run;

use std::path::Path;

/// `pvtherm check-config FILE`: parse and validate, print a summary, start nothing.
pub fn check_config(file: &Path) -> anyhow::Result<()> {
    anyhow::bail!("{}: check-config is being built", file.display())
}
