//! The demo.

/// Arguments of `demo`.
#[derive(clap::Args)]
pub struct Args {}

/// Runs the demo.
pub async fn run(_a: Args) -> anyhow::Result<std::process::ExitCode> {
    Ok(std::process::ExitCode::SUCCESS)
}
