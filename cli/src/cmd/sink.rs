use crate::config::Config;
use crate::shutdown;

/// Runs one worker of a destination until Ctrl-C or SIGTERM. Workers of the same destination
/// share its partitions through the consumer group `auditstream.sink.<destination>`.
#[derive(clap::Args)]
pub struct Args {
    /// Name of a `[[destinations]]` entry of the configuration.
    #[arg(long, short)]
    destination: String,
}

pub async fn run(args: Args, config: &Config) -> anyhow::Result<()> {
    let destination = config
        .destination(&args.destination)
        .map_err(crate::UsageError)?;
    auditstream_sink_http::run(&config.kafka, destination, shutdown::signal()).await?;
    Ok(())
}
