//! `pvtherm run` (being built).

/// Arguments of `pvtherm run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {}

/// Entry point of `pvtherm run`.
pub fn run(_args: RunArgs) -> anyhow::Result<()> {
    anyhow::bail!("run is being built")
}
