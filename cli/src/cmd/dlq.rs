use anyhow::Context;
use auditstream_kafka::{scan, topics};
use auditstream_schemas::headers::dlq;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use serde_json::{json, Map, Value};

use crate::config::Config;

#[derive(clap::Subcommand)]
pub enum Command {
    /// List dead-lettered records, oldest first per partition, with why each was set aside and
    /// where it came from. Reads without a consumer group: nothing is consumed or committed.
    Inspect(InspectArgs),
}

#[derive(clap::Args)]
pub struct InspectArgs {
    /// Dead-letter topic of this destination (`audit.dlq.<NAME>`) instead of the router's.
    #[arg(long, short, value_name = "NAME")]
    destination: Option<String>,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    json: bool,
    /// Also show each record's payload. The router's dead letters are raw input that redaction
    /// never touched (a payload may hold credentials), so payloads are shown only when asked for.
    #[arg(long)]
    payload: bool,
    /// Stop after this many records.
    #[arg(long, default_value_t = 1000)]
    limit: u64,
}

pub async fn run(command: Command, config: &Config) -> anyhow::Result<()> {
    let Command::Inspect(args) = command;
    let topic = match &args.destination {
        Some(name) => topics::destination_dlq(name),
        None => topics::ROUTER_DLQ.to_owned(),
    };
    if !args.json {
        println!(
            "{:<9} {:<8} {:<24} {:<14} {:<32} DETAIL",
            "PARTITION", "OFFSET", "DEAD-LETTERED AT", "REASON", "SOURCE"
        );
    }
    let mut shown = 0u64;
    let visited = scan(&config.kafka, &topic, |message| {
        let record = describe(message, args.payload);
        if args.json {
            println!("{record}");
        } else {
            print_row(&record);
        }
        shown += 1;
        shown < args.limit
    })
    .await
    .with_context(|| format!("inspecting {topic}"))?;
    if !args.json {
        eprintln!("{visited} dead-lettered record(s) in {topic}");
    }
    Ok(())
}

/// Everything an operator needs about one dead letter, as JSON.
fn describe(message: &BorrowedMessage<'_>, with_payload: bool) -> Value {
    let mut dlq_headers = Map::new();
    let mut other_headers = Map::new();
    if let Some(headers) = message.headers() {
        for header in headers.iter() {
            let value = header
                .value
                .map(|v| Value::String(String::from_utf8_lossy(v).into_owned()))
                .unwrap_or(Value::Null);
            match header.key.strip_prefix("dlq_") {
                Some(name) => dlq_headers.insert(name.to_owned(), value),
                None => other_headers.insert(header.key.to_owned(), value),
            };
        }
    }
    let text = |name: &str| dlq_headers.get(name).cloned().unwrap_or(Value::Null);
    let payload = message.payload().unwrap_or_default();
    let mut record = json!({
        "partition": message.partition(),
        "offset": message.offset(),
        "dead_lettered_at": message.timestamp().to_millis().map(iso_millis),
        "reason": text(strip(dlq::REASON)),
        "detail": text(strip(dlq::DETAIL)),
        "source_topic": text(strip(dlq::SOURCE_TOPIC)),
        "source_partition": text(strip(dlq::SOURCE_PARTITION)),
        "source_offset": text(strip(dlq::SOURCE_OFFSET)),
        "key": message.key().map(|k| String::from_utf8_lossy(k).into_owned()),
        "headers": other_headers,
        "payload_bytes": payload.len(),
    });
    if with_payload {
        record["payload"] = Value::String(String::from_utf8_lossy(payload).into_owned());
    }
    record
}

fn strip(header: &'static str) -> &'static str {
    header.strip_prefix("dlq_").unwrap_or(header)
}

fn print_row(record: &Value) {
    let field = |name: &str| match &record[name] {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    };
    let source = format!(
        "{}/{}@{}",
        field("source_topic"),
        field("source_partition"),
        field("source_offset")
    );
    println!(
        "{:<9} {:<8} {:<24} {:<14} {:<32} {}",
        field("partition"),
        field("offset"),
        field("dead_lettered_at"),
        field("reason"),
        source,
        field("detail")
    );
    if let Some(payload) = record.get("payload").and_then(Value::as_str) {
        println!("          payload: {payload}");
    }
}

fn iso_millis(millis: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| millis.to_string())
}
