use auditstream_router::RouterMetrics;

use crate::config::Config;
use crate::shutdown;
use crate::telemetry::{self, MetricsArgs};

/// Runs until Ctrl-C or SIGTERM; start several with the same config to share the raw partitions.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    metrics: MetricsArgs,
}

pub async fn run(args: Args, config: &Config) -> anyhow::Result<()> {
    let registry = telemetry::start(
        "router",
        &args.metrics,
        telemetry::ROUTER_DEFAULT,
        &config.kafka,
    )
    .await?;
    let metrics = RouterMetrics::new(&registry);
    auditstream_router::run(&config.kafka, &config.router, &metrics, shutdown::signal()).await?;
    Ok(())
}
