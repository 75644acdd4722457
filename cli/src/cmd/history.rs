use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use auditstream_kafka::{scan_window, topics, TimeWindow};
use auditstream_sink_http::FilterConfig;
use rdkafka::Message;
use serde_json::Value;

use crate::config::Config;
use crate::events::{self, Routing, Selection};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Lifecycle events of one organisation, newest first.
    #[command(after_help = "Examples:
  auditstream history org 3f1c9a0e7b2d
  auditstream history org 3f1c9a0e7b2d --since 24h --type 'invitations.*'
  auditstream history org 3f1c9a0e7b2d --since 2026-11-01T00:00:00Z --until 2026-11-08T00:00:00Z --format csv --output nov.csv")]
    Org {
        /// Organisation id (the `organizationId` of the events).
        #[arg(value_name = "ORG_ID")]
        id: String,
        #[command(flatten)]
        args: Args,
    },
    /// Lifecycle events of one stack, newest first. Organisation-level events (those that
    /// concern no stack) are not included.
    #[command(after_help = "Examples:
  auditstream history stack 3f1c9a0e7b2d-stk0
  auditstream history stack 3f1c9a0e7b2d-stk0 --type stacks.upgraded --type 'stacks.module.*'
  auditstream history stack 3f1c9a0e7b2d-stk0 --since 7d --format json | jq '.[].type'")]
    Stack {
        /// Stack id.
        #[arg(value_name = "STACK_ID")]
        id: String,
        #[command(flatten)]
        args: Args,
    },
}

#[derive(clap::Args)]
pub struct Args {
    /// Only events dated at or after this time: RFC 3339 (`2026-11-22T08:00:00Z`) or a duration
    /// ago (`2h`, `30m`, `7d`). Reading starts near that time, not at the oldest record.
    #[arg(long, value_name = "TIME")]
    since: Option<String>,
    /// Only events dated at or before this time (same syntax as --since).
    #[arg(long, value_name = "TIME")]
    until: Option<String>,
    /// Only these event types: exact (`stacks.created`) or a prefix ending in `*` (`stacks.*`),
    /// as in a destination's `filter.types`. Repeat or separate with commas for several.
    #[arg(long = "type", value_name = "PATTERN", value_delimiter = ',')]
    types: Vec<String>,
    /// Only events about this target, the id of the affected resource (`payload.data.id`:
    /// the stack, invitation, region, user...). Same pattern syntax as --type; repeatable.
    #[arg(long = "target", value_name = "PATTERN", value_delimiter = ',')]
    targets: Vec<String>,
    /// `table` for people; `json`, one JSON array of the envelopes exactly as destinations
    /// receive them; `csv` with a header row, one event per row, `data` as compact JSON.
    #[arg(long, value_enum, default_value = "table")]
    format: Format,
    /// Write to this file instead of stdout.
    #[arg(long, short, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Show only the newest N events.
    #[arg(long, value_name = "N")]
    limit: Option<usize>,
    /// Record timestamps are when the router wrote an event, which lags its date and depends
    /// on clocks: reading starts this long before --since and ends this long after --until.
    /// Raise it when the router had a backlog longer than that around the window.
    #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = humantime::parse_duration)]
    margin: Duration,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Format {
    Table,
    Json,
    Csv,
}

/// One selected record, ordered newest first by date, then by position in the topic.
#[derive(PartialEq, Eq, PartialOrd, Ord)]
struct Found {
    date_ms: i64,
    partition: i32,
    offset: i64,
    event_id: String,
    /// From the `stack_id` header: the envelope of a lifecycle event does not name its stack.
    stack_id: String,
    body: Vec<u8>,
}

pub async fn run(command: Command, config: &Config) -> anyhow::Result<()> {
    let (scope, id, args) = match command {
        Command::Org { id, args } => ("organisation", id, args),
        Command::Stack { id, args } => ("stack", id, args),
    };
    let mut filter = FilterConfig {
        types: args.types,
        ..FilterConfig::default()
    };
    if scope == "stack" {
        filter.stacks.push(id.clone());
    } else {
        filter.organizations.push(id.clone());
    }
    let selection = Selection {
        filter,
        targets: args.targets,
        since_ms: events::parse_flag_time("since", args.since.as_deref())
            .map_err(crate::UsageError)?,
        until_ms: events::parse_flag_time("until", args.until.as_deref())
            .map_err(crate::UsageError)?,
    };
    selection.check().map_err(crate::UsageError)?;
    let margin = i64::try_from(args.margin.as_millis()).unwrap_or(i64::MAX);
    let window = TimeWindow {
        from_ms: selection.since_ms.map(|ms| ms.saturating_sub(margin)),
        to_ms: selection.until_ms.map(|ms| ms.saturating_add(margin)),
    };

    // Newest first needs every match before the first line; `--limit` bounds that memory by
    // keeping only the newest N in a min-heap.
    let mut found: BinaryHeap<Reverse<Found>> = BinaryHeap::new();
    scan_window(&config.kafka, topics::LIFECYCLE, window, |message| {
        if selection.accepts(message) {
            let routing = Routing::of(message);
            found.push(Reverse(Found {
                date_ms: routing.date_ms.unwrap_or_default(),
                partition: message.partition(),
                offset: message.offset(),
                event_id: routing.event_id.unwrap_or_default().to_owned(),
                stack_id: routing.stack_id.unwrap_or_default().to_owned(),
                body: message.payload().unwrap_or_default().to_vec(),
            }));
            if args.limit.is_some_and(|limit| found.len() > limit) {
                found.pop();
            }
        }
        true
    })
    .await
    .with_context(|| format!("reading {}", topics::LIFECYCLE))?;
    let mut found: Vec<Found> = found.into_iter().map(|Reverse(f)| f).collect();
    found.sort_unstable_by(|a, b| b.cmp(a));

    if found.is_empty() {
        eprintln!("no lifecycle events of {scope} {id} match");
    }
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    let written = match args.format {
        Format::Table => write_table(&mut out, &found),
        Format::Json => write_json(&mut out, &found),
        Format::Csv => write_csv(&mut out, &found),
    }
    .and_then(|()| out.flush());
    match written {
        // `| head` closed the pipe: the reader has what it wanted.
        Err(err) if err.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.context("writing the history"),
    }
}

/// The columns of one event, from its envelope (the actor, target and summary are not in headers).
struct Row {
    date: String,
    event_type: String,
    event_id: String,
    actor: String,
    target: String,
    organization: String,
    stack: String,
    owner: String,
    data: Value,
}

impl Row {
    fn of(found: &Found) -> Row {
        let envelope: Value = serde_json::from_slice(&found.body).unwrap_or(Value::Null);
        let payload = &envelope["payload"];
        let text = |value: &Value| value.as_str().unwrap_or_default().to_owned();
        Row {
            date: text(&envelope["date"]),
            event_type: text(&envelope["type"]),
            event_id: found.event_id.clone(),
            actor: text(&payload["subject"]),
            target: events::target(&envelope).unwrap_or_default(),
            organization: text(&payload["organizationId"]),
            stack: found.stack_id.clone(),
            owner: text(&payload["ownerId"]),
            data: payload["data"].clone(),
        }
    }

    /// `name=prod-stack regionId=eu-west-1`: the data fields other than the target's id.
    fn summary(&self) -> String {
        let Value::Object(fields) = &self.data else {
            return String::new();
        };
        fields
            .iter()
            .filter(|(name, _)| name.as_str() != "id")
            .map(|(name, value)| match value {
                Value::String(text) => format!("{name}={text}"),
                other => format!("{name}={other}"),
            })
            .collect::<Vec<_>>()
            .join(" ")
    }
}

fn write_table(out: &mut dyn Write, found: &[Found]) -> std::io::Result<()> {
    if found.is_empty() {
        return Ok(());
    }
    let rows: Vec<[String; 7]> = found
        .iter()
        .map(|f| {
            let row = Row::of(f);
            let summary = row.summary();
            [
                row.date,
                row.event_type,
                row.actor,
                row.target,
                row.organization,
                row.stack,
                summary,
            ]
        })
        .collect();
    const HEADINGS: [&str; 7] = [
        "TIME",
        "TYPE",
        "ACTOR",
        "TARGET",
        "ORGANIZATION",
        "STACK",
        "SUMMARY",
    ];
    // Widest value per column, capped so that one long id cannot push the summary off screen.
    const CAPS: [usize; 7] = [24, 40, 24, 24, 24, 28, 60];
    let mut widths = HEADINGS.map(|h| h.chars().count());
    for row in &rows {
        for (width, (cell, cap)) in widths.iter_mut().zip(row.iter().zip(CAPS)) {
            *width = (*width).max(cell.chars().count().min(cap));
        }
    }
    let line = |cells: [&str; 7]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let cell = clip(cell, CAPS[i]);
            if i + 1 == cells.len() {
                text.push_str(&cell);
            } else {
                text.push_str(&format!("{cell:<width$}  ", width = widths[i]));
            }
        }
        text.trim_end().to_owned()
    };
    writeln!(out, "{}", line(HEADINGS))?;
    for row in &rows {
        let cells = [0, 1, 2, 3, 4, 5, 6].map(|i| if row[i].is_empty() { "-" } else { &row[i] });
        writeln!(out, "{}", line(cells))?;
    }
    Ok(())
}

/// `text` cut to `max` characters, the last one an ellipsis when something was cut.
fn clip(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_owned();
    }
    let mut clipped: String = text.chars().take(max.saturating_sub(1)).collect();
    clipped.push('…');
    clipped
}

/// One JSON array whose elements are the envelope bytes exactly as the router wrote them.
fn write_json(out: &mut dyn Write, found: &[Found]) -> std::io::Result<()> {
    out.write_all(b"[")?;
    for (i, f) in found.iter().enumerate() {
        out.write_all(if i == 0 { b"\n" } else { b",\n" })?;
        out.write_all(&f.body)?;
    }
    out.write_all(b"\n]\n")
}

fn write_csv(out: &mut dyn Write, found: &[Found]) -> std::io::Result<()> {
    let mut writer = csv::Writer::from_writer(out);
    writer.write_record([
        "date",
        "type",
        "event_id",
        "actor",
        "target",
        "organization_id",
        "stack_id",
        "owner_id",
        "data",
    ])?;
    for f in found {
        let row = Row::of(f);
        writer.write_record([
            row.date.as_str(),
            &row.event_type,
            &row.event_id,
            &row.actor,
            &row.target,
            &row.organization,
            &row.stack,
            &row.owner,
            &row.data.to_string(),
        ])?;
    }
    writer.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(date_ms: i64, offset: i64, event_type: &str, data: &str) -> Found {
        Found {
            date_ms,
            partition: 0,
            offset,
            event_id: format!("id-{offset}"),
            stack_id: if event_type.starts_with("stacks.") { "stk1".to_owned() } else { String::new() },
            body: format!(
                r#"{{"date":"2026-04-30T09:15:00.{date_ms:03}Z","app":"membership","version":"v2","type":"{event_type}","payload":{{"ownerId":"u1","organizationId":"org1","subject":"alice","data":{data}}}}}"#
            )
            .into_bytes(),
        }
    }

    fn render(
        write: fn(&mut dyn Write, &[Found]) -> std::io::Result<()>,
        rows: &[Found],
    ) -> String {
        let mut out = Vec::new();
        write(&mut out, rows).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn newest_first_by_date_then_position() {
        let mut rows = [
            found(1, 5, "a", "{}"),
            found(3, 1, "b", "{}"),
            found(3, 2, "c", "{}"),
        ];
        rows.sort_unstable_by(|a, b| b.cmp(a));
        let order: Vec<i64> = rows.iter().map(|f| f.offset).collect();
        assert_eq!(order, [2, 1, 5]);
    }

    #[test]
    fn table_has_aligned_columns_and_a_summary() {
        let rows = [
            found(
                2,
                1,
                "stacks.created",
                r#"{"id":"stk1","name":"prod","regionId":"eu"}"#,
            ),
            found(
                1,
                0,
                "invitations.created",
                r#"{"id":"inv9","userEmail":"x@y.z"}"#,
            ),
        ];
        let text = render(write_table, &rows);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("TIME "), "{text}");
        let type_column = lines[0].find("TYPE").unwrap();
        assert_eq!(&lines[1][type_column..type_column + 14], "stacks.created");
        assert_eq!(
            &lines[2][type_column..type_column + 19],
            "invitations.created"
        );
        assert!(
            lines[1].contains("alice") && lines[1].ends_with("name=prod regionId=eu"),
            "{text}"
        );
        // Events that concern no stack show `-`.
        fn columns(line: &str) -> Vec<&str> {
            line.split_whitespace().skip(2).take(4).collect()
        }
        assert_eq!(columns(lines[1]), ["alice", "stk1", "org1", "stk1"]);
        assert_eq!(columns(lines[2]), ["alice", "inv9", "org1", "-"]);
        assert_eq!(render(write_table, &[]), "");
    }

    #[test]
    fn long_values_are_clipped() {
        assert_eq!(clip("abcdef", 4), "abc…");
        assert_eq!(clip("abc", 4), "abc");
    }

    #[test]
    fn json_is_one_array_of_the_envelopes_as_written() {
        let rows = [
            found(2, 1, "stacks.created", r#"{"id":"s"}"#),
            found(1, 0, "x", "{}"),
        ];
        let text = render(write_json, &rows);
        let parsed: Vec<Value> = serde_json::from_str(&text).unwrap();
        assert_eq!(parsed.len(), 2);
        assert!(text.contains(std::str::from_utf8(&rows[0].body).unwrap()));
        assert!(serde_json::from_str::<Vec<Value>>(&render(write_json, &[]))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn csv_quotes_commas_quotes_and_newlines() {
        let rows = [found(
            1,
            0,
            "organizations.updated",
            r#"{"id":"o","name":"Acme, \"Inc\"\nEU"}"#,
        )];
        let text = render(write_csv, &rows);
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let headers = reader.headers().unwrap().clone();
        assert_eq!(&headers[1], "type");
        let record = reader.records().next().unwrap().unwrap();
        assert_eq!(&record[1], "organizations.updated");
        assert_eq!(&record[2], "id-0");
        let data: Value = serde_json::from_str(&record[8]).unwrap();
        assert_eq!(data["name"], "Acme, \"Inc\"\nEU");
    }
}
