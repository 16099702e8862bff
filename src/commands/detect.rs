//! `pvtherm detect` (being built).

/// Arguments of `pvtherm detect`.
#[derive(clap::Args, Debug)]
pub struct DetectArgs {}

/// Entry point of `pvtherm detect`.
pub fn run(_args: DetectArgs) -> anyhow::Result<()> {
    anyhow::bail!("detect is being built")
}
