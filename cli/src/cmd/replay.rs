use std::time::{Duration, SystemTime};

use anyhow::{bail, Context};

use crate::config::Config;
use crate::shutdown;

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
        .map(parse_since)
        .transpose()
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

fn parse_since(text: &str) -> anyhow::Result<SystemTime> {
    if let Ok(date) =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
    {
        let nanos = u64::try_from(date.unix_timestamp_nanos()).context("--since is before 1970")?;
        return Ok(SystemTime::UNIX_EPOCH + Duration::from_nanos(nanos));
    }
    match humantime::parse_duration(text) {
        Ok(ago) => Ok(SystemTime::now() - ago),
        Err(_) => bail!("--since {text:?} is neither an RFC 3339 time (2026-11-22T08:00:00Z) nor a duration (2h, 30m, 7d)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_accepts_times_and_durations() {
        let at = parse_since("2026-11-22T08:00:00Z").unwrap();
        assert_eq!(
            at.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs(),
            1_795_334_400
        );
        let ago = parse_since("2h").unwrap();
        let expected = SystemTime::now() - Duration::from_secs(7200);
        assert!(expected.duration_since(ago).unwrap_or_default() < Duration::from_secs(5));
        assert!(parse_since("yesterday")
            .unwrap_err()
            .to_string()
            .contains("RFC 3339"));
    }
}
