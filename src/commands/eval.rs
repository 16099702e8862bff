//! `pvtherm eval` (being built).

/// Arguments of `pvtherm eval`.
#[derive(clap::Args, Debug)]
pub struct EvalArgs {}

/// Entry point of `pvtherm eval`.
pub fn run(_args: EvalArgs) -> anyhow::Result<()> {
    anyhow::bail!("eval is being built")
}
