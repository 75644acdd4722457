//! `auditstream status`: one line per stage of the pipeline (the router and every destination),
//! read from the broker alone, so that it answers the same whether the workers run or not.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use auditstream_kafka::lag::{self, GroupSpec, PartitionLag};
use auditstream_kafka::topics;
use auditstream_schemas::headers::dlq;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, OwnedMessage};
use rdkafka::Message;
use serde::Serialize;

use crate::config::Config;

const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const LAST_RECORD_TIMEOUT: Duration = Duration::from_secs(5);

/// Shows every destination (and the router): workers, lag in events and seconds, processing rate,
/// dead letters and the last of them. Reads offsets without joining any group.
#[derive(clap::Args)]
pub struct Args {
    /// One JSON document (an array of stages) instead of a table, for scripts.
    #[arg(long)]
    json: bool,
    /// The processing rate is the committed offsets' progress over this window, e.g. 5s.
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    window: Duration,
}

/// One stage of the pipeline: the router or a destination.
#[derive(Debug, Serialize)]
struct Stage {
    /// Destination name, or `router`.
    name: String,
    group: String,
    /// `ok`, `behind`, `stalled`, `down` or `idle`; see [`State`].
    state: State,
    /// Members of the consumer group, `None` when the broker cannot tell.
    workers: Option<usize>,
    lag_events: i64,
    lag_seconds: f64,
    /// Events processed per second over the window (committed offsets' progress).
    rate_per_second: f64,
    /// Records the broker deleted before the group processed them (lost to retention).
    deleted_unprocessed: i64,
    dead_letters: i64,
    last_error: Option<LastError>,
}

/// What the numbers say, in one word.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum State {
    /// Caught up.
    Ok,
    /// Lagging, and making progress.
    Behind,
    /// Lagging, workers present, no progress over the window: the destination is probably
    /// refusing or unreachable (see the workers' logs and `auditstream_sink_retries_total`).
    Stalled,
    /// Lagging with no worker in the group.
    Down,
    /// No worker and nothing to do.
    Idle,
}

impl State {
    fn of(workers: Option<usize>, lag_events: i64, rate: f64) -> State {
        match (workers, lag_events > 0) {
            (Some(0), true) => State::Down,
            (Some(0), false) => State::Idle,
            (_, false) => State::Ok,
            (_, true) if rate > 0.0 => State::Behind,
            (_, true) => State::Stalled,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            State::Ok => "ok",
            State::Behind => "behind",
            State::Stalled => "stalled",
            State::Down => "down",
            State::Idle => "idle",
        }
    }
}

/// The newest dead letter: why, and when.
#[derive(Debug, Serialize)]
struct LastError {
    reason: String,
    status: Option<String>,
    at_ms: Option<i64>,
}

pub async fn run(args: Args, config: &Config) -> anyhow::Result<()> {
    let groups = config.pipeline_groups();
    let before = lag::measure(&config.kafka, &groups).await?;
    tokio::time::sleep(args.window).await;
    let after = lag::measure(&config.kafka, &groups).await?;
    let kafka = config.kafka.clone();
    let specs = groups.clone();
    let (workers, dead_letters) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let reader: BaseConsumer = kafka.reader().create().context("creating a Kafka reader")?;
        let workers: Vec<Option<usize>> = specs
            .iter()
            .map(|spec| group_members(&reader, &spec.group))
            .collect();
        let dead_letters: Vec<(i64, Option<LastError>)> = specs
            .iter()
            .map(|spec| dead_letter_summary(&reader, &dead_letter_topic(spec)))
            .collect();
        Ok((workers, dead_letters))
    })
    .await??;

    let now = now_ms();
    let stages: Vec<Stage> = groups
        .iter()
        .zip(workers)
        .zip(dead_letters)
        .map(|((spec, workers), (dead_letters, last_error))| {
            let mine = |lags: &[PartitionLag]| -> Vec<PartitionLag> {
                lags.iter()
                    .filter(|lag| lag.group == spec.group)
                    .cloned()
                    .collect()
            };
            let (before, after) = (mine(&before), mine(&after));
            let lag_events = after.iter().map(|lag| lag.lag_events).sum();
            let rate_per_second = rate(&before, &after, args.window);
            Stage {
                name: spec
                    .destination
                    .clone()
                    .unwrap_or_else(|| "router".to_owned()),
                group: spec.group.clone(),
                state: State::of(workers, lag_events, rate_per_second),
                workers,
                lag_events,
                lag_seconds: after
                    .iter()
                    .map(|lag| lag.lag_seconds(now))
                    .fold(0.0, f64::max),
                rate_per_second,
                deleted_unprocessed: after.iter().map(|lag| lag.deleted_unprocessed).sum(),
                dead_letters,
                last_error,
            }
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stages)?);
    } else {
        print_table(&stages, now);
    }
    Ok(())
}

fn dead_letter_topic(spec: &GroupSpec) -> String {
    match &spec.destination {
        Some(name) => topics::destination_dlq(name),
        None => topics::ROUTER_DLQ.to_owned(),
    }
}

/// Events per second processed between two measurements: how far the committed offsets moved.
fn rate(before: &[PartitionLag], after: &[PartitionLag], window: Duration) -> f64 {
    let position = |lags: &[PartitionLag]| -> BTreeMap<(String, i32), i64> {
        lags.iter()
            .map(|lag| {
                let at = lag.high_watermark - lag.lag_events;
                ((lag.topic.clone(), lag.partition), at)
            })
            .collect()
    };
    let start = position(before);
    let moved: i64 = position(after)
        .iter()
        .map(|(key, end)| end - start.get(key).copied().unwrap_or(*end))
        .filter(|moved| *moved > 0)
        .sum();
    #[allow(clippy::cast_precision_loss)]
    let moved = moved as f64;
    moved / window.as_secs_f64().max(0.001)
}

fn group_members(reader: &BaseConsumer, group: &str) -> Option<usize> {
    let list = reader.fetch_group_list(Some(group), REQUEST_TIMEOUT).ok()?;
    let info = list.groups().iter().find(|info| info.name() == group)?;
    Some(info.members().len())
}

/// The number of dead letters in `topic` and the newest of them; (0, None) when the topic does
/// not exist yet (nothing was ever dead-lettered there).
fn dead_letter_summary(reader: &BaseConsumer, topic: &str) -> (i64, Option<LastError>) {
    let Ok(partitions) = auditstream_kafka::partitions_of(reader, topic) else {
        return (0, None);
    };
    let mut count = 0;
    let mut last_offsets = Vec::new();
    for partition in partitions {
        let Ok((low, high)) = reader.fetch_watermarks(topic, partition, REQUEST_TIMEOUT) else {
            continue;
        };
        count += high - low;
        if high > low {
            last_offsets.push((topic.to_owned(), partition, high - 1));
        }
    }
    let records = lag::records_at(reader, &last_offsets, LAST_RECORD_TIMEOUT);
    let newest = records
        .values()
        .max_by_key(|record| record.timestamp().to_millis().unwrap_or(0));
    (count, newest.map(last_error))
}

fn last_error(record: &OwnedMessage) -> LastError {
    let header = |name: &str| {
        record
            .headers()?
            .iter()
            .find(|header| header.key == name)
            .and_then(|header| std::str::from_utf8(header.value?).ok())
            .map(str::to_owned)
    };
    // Only the reason and status: the detail may quote a record (see `dlq inspect --payload`).
    LastError {
        reason: header(dlq::REASON).unwrap_or_else(|| "unknown".to_owned()),
        status: header(dlq::STATUS),
        at_ms: record.timestamp().to_millis(),
    }
}

fn print_table(stages: &[Stage], now_ms: i64) {
    println!(
        "{:<20} {:<8} {:>7} {:>12} {:>8} {:>10} {:>12}  LAST DEAD LETTER",
        "STAGE", "STATE", "WORKERS", "LAG EVENTS", "LAG", "RATE/S", "DEAD LETTERS"
    );
    for stage in stages {
        let workers = stage
            .workers
            .map_or_else(|| "?".to_owned(), |n| n.to_string());
        let last_error = stage.last_error.as_ref().map_or_else(
            || "-".to_owned(),
            |error| {
                let status = error
                    .status
                    .as_deref()
                    .map(|status| format!(" {status}"))
                    .unwrap_or_default();
                let ago = error
                    .at_ms
                    .map(|at| format!(", {} ago", human_age(now_ms - at)))
                    .unwrap_or_default();
                format!("{}{status}{ago}", error.reason)
            },
        );
        println!(
            "{:<20} {:<8} {:>7} {:>12} {:>8} {:>10.1} {:>12}  {last_error}",
            stage.name,
            stage.state.as_str(),
            workers,
            stage.lag_events,
            human_age((stage.lag_seconds * 1000.0) as i64),
            stage.rate_per_second,
            stage.dead_letters,
        );
        if stage.state == State::Stalled {
            println!(
                "  ! {} is not progressing: check its workers' logs and auditstream_sink_retries_total",
                stage.name
            );
        }
        if stage.deleted_unprocessed > 0 {
            println!(
                "  ! {} events of {} were deleted by topic retention before they were processed",
                stage.deleted_unprocessed, stage.group
            );
        }
    }
}

/// `950ms`, `42s`, `3m`, `5h`, `2d`.
fn human_age(millis: i64) -> String {
    let seconds = millis / 1000;
    match seconds {
        _ if millis <= 0 => "0s".to_owned(),
        0 => format!("{millis}ms"),
        1..=119 => format!("{seconds}s"),
        120..=7199 => format!("{}m", seconds / 60),
        7200..=172_799 => format!("{}h", seconds / 3600),
        _ => format!("{}d", seconds / 86400),
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(partition: i32, position: i64) -> PartitionLag {
        PartitionLag {
            group: "g".to_owned(),
            destination: None,
            topic: "t".to_owned(),
            partition,
            committed: Some(position),
            low_watermark: 0,
            high_watermark: 100,
            lag_events: 100 - position,
            deleted_unprocessed: 0,
            oldest_unprocessed_ms: None,
            retention_ms: None,
        }
    }

    #[test]
    fn rate_is_the_progress_of_positions_over_the_window() {
        let before = [at(0, 10), at(1, 50)];
        let after = [at(0, 40), at(1, 60)];
        assert_eq!(rate(&before, &after, Duration::from_secs(2)), 20.0);
        assert_eq!(rate(&after, &after, Duration::from_secs(2)), 0.0);
    }

    #[test]
    fn states() {
        assert_eq!(State::of(Some(2), 0, 0.0), State::Ok);
        assert_eq!(State::of(Some(2), 10, 5.0), State::Behind);
        assert_eq!(State::of(Some(2), 10, 0.0), State::Stalled);
        assert_eq!(State::of(None, 10, 0.0), State::Stalled);
        assert_eq!(State::of(Some(0), 10, 0.0), State::Down);
        assert_eq!(State::of(Some(0), 0, 0.0), State::Idle);
    }

    #[test]
    fn ages_read_like_a_person_would_say_them() {
        assert_eq!(human_age(0), "0s");
        assert_eq!(human_age(450), "450ms");
        assert_eq!(human_age(42_000), "42s");
        assert_eq!(human_age(600_000), "10m");
        assert_eq!(human_age(5 * 3_600_000), "5h");
        assert_eq!(human_age(3 * 86_400_000), "3d");
    }
}
