use anyhow::Context;

use crate::config::Config;
use crate::{events, shutdown};

/// Delivers a destination's dead letters again, through the same format, batching and retries as
/// its workers. Without --since, starts where the previous replay of this destination stopped
/// (consumer group `auditstream.replay.<destination>`); stops at the end the dead-letter topic had
/// when the replay started. Events that fail permanently again are dead-lettered again.
#[derive(clap::Args)]
pub struct Args {
    /// Name of a `[[destinations]]` entry of the configuration.
    #[arg(long, short)]
    destination: String,
    /// Replay dead letters written at or after this time: an RFC 3339 timestamp
    /// (`2026-11-22T08:00:00Z`) or a duration ago (`2h`, `30m`, `7d`).
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
}

pub async fn run(args: Args, config: &Config) -> anyhow::Result<()> {
    let destination = config
        .destination(&args.destination)
        .map_err(crate::UsageError)?;
    let since = args
        .since
        .as_deref()
        .map(events::parse_time)
        .transpose()
        .context("--since")
        .map_err(crate::UsageError)?;
    let replayed =
        auditstream_sink_http::replay(&config.kafka, destination, since, shutdown::signal())
            .await?;
    eprintln!(
        "replayed {replayed} dead-lettered event(s) of destination {}",
        args.destination
    );
    Ok(())
}
