use auditstream_sink_http::SinkMetrics;

use crate::config::Config;
use crate::shutdown;
use crate::telemetry::{self, MetricsArgs};

/// Runs one worker of a destination until Ctrl-C or SIGTERM. Workers of the same destination
/// share its partitions through the consumer group `auditstream.sink.<destination>`.
#[derive(clap::Args)]
pub struct Args {
    /// Name of a `[[destinations]]` entry of the configuration.
    #[arg(long, short)]
    destination: String,
    #[command(flatten)]
    metrics: MetricsArgs,
}

pub async fn run(args: Args, config: &Config) -> anyhow::Result<()> {
    let destination = config
        .destination(&args.destination)
        .map_err(crate::UsageError)?;
    let registry = telemetry::start(
        "sink",
        &args.metrics,
        telemetry::SINK_DEFAULT,
        &config.kafka,
    )
    .await?;
    let metrics = SinkMetrics::new(&registry, &args.destination);
    auditstream_sink_http::run(&config.kafka, destination, metrics, shutdown::signal()).await?;
    Ok(())
}
