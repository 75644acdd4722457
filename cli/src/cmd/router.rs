use crate::config::Config;
use crate::shutdown;

/// Runs until Ctrl-C or SIGTERM; start several with the same config to share the raw partitions.
#[derive(clap::Args)]
pub struct Args {}

pub async fn run(_args: Args, config: &Config) -> anyhow::Result<()> {
    auditstream_router::run(&config.kafka, &config.router, shutdown::signal()).await?;
    Ok(())
}
