use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use auditstream_producer::synthetic::Generator;
use auditstream_producer::{PublishError, Publisher, Stream};
use auditstream_schemas::raw::{RawGatewayEvent, RawLifecycleEvent};
use futures::stream::FuturesUnordered;
use futures::StreamExt;

use crate::config::Config;

/// Publishes raw events. Either reads JSON lines (one raw event per line, `-` for stdin) or
/// generates synthetic events with `--generate N`. Prints a summary; with `--ids-out`, writes the
/// id of every acknowledged event, one per line, for later verification.
#[derive(clap::Args)]
pub struct Args {
    /// JSON-lines file of raw events, or `-` for stdin.
    #[arg(long, short, value_name = "FILE", conflicts_with = "generate")]
    file: Option<PathBuf>,
    /// Generate this many synthetic events instead of reading a file.
    #[arg(long, value_name = "N")]
    generate: Option<u64>,
    /// Stream of the events. For files, `auto` tells each line by its fields (`request` means
    /// gateway, `type` means lifecycle). For `--generate`, `auto` means both, one lifecycle
    /// event for every nine gateway events.
    #[arg(long, value_enum, default_value = "auto")]
    stream: StreamArg,
    /// How file events are published: `avro` validates and encodes each line (bad lines are
    /// reported and skipped, and the exit code is 1); `json` publishes each line exactly as
    /// written, for the router to validate or dead-letter.
    #[arg(long, value_enum, default_value = "avro")]
    encoding: EncodingArg,
    /// Target rate in events per second (0: as fast as possible).
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Seed of the synthetic generator.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Events awaiting acknowledgement at once.
    #[arg(long, default_value_t = 10_000)]
    in_flight: usize,
    /// Write the id of every acknowledged event to this file.
    #[arg(long, value_name = "FILE")]
    ids_out: Option<PathBuf>,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StreamArg {
    Auto,
    Gateway,
    Lifecycle,
}

#[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum EncodingArg {
    Avro,
    Json,
}

/// One event to publish.
enum Item {
    Gateway(RawGatewayEvent),
    Lifecycle(RawLifecycleEvent),
    Verbatim {
        stream: Stream,
        key: String,
        id: Option<String>,
        bytes: Vec<u8>,
    },
}

/// Counts outcomes and writes acknowledged ids.
struct Tally {
    published: u64,
    failed: u64,
    ids_out: Option<std::io::BufWriter<std::fs::File>>,
}

impl Tally {
    fn record(&mut self, result: Result<Option<String>, PublishError>) -> anyhow::Result<()> {
        match result {
            Ok(id) => {
                self.published += 1;
                if let (Some(out), Some(id)) = (self.ids_out.as_mut(), id) {
                    writeln!(out, "{id}")?;
                }
            }
            Err(err) => self.fail(&err),
        }
        Ok(())
    }

    fn fail(&mut self, err: &dyn std::fmt::Display) {
        self.failed += 1;
        eprintln!("error: {err:#}");
    }
}

pub async fn run(args: Args, config: &Config) -> anyhow::Result<()> {
    let publisher = Publisher::new(&config.kafka)?;
    let ids_out = match &args.ids_out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => None,
    };
    let items: Box<dyn Iterator<Item = anyhow::Result<Item>>> = match (&args.file, args.generate) {
        (Some(path), None) => Box::new(read_lines(path, args.stream, args.encoding)?),
        (None, Some(count)) => Box::new(generate(count, args.stream, args.seed)),
        _ => bail!("give either --file FILE (or - for stdin) or --generate N"),
    };

    let started = Instant::now();
    let mut pending = FuturesUnordered::new();
    let mut tally = Tally {
        published: 0,
        failed: 0,
        ids_out,
    };
    for (index, item) in items.enumerate() {
        if args.rate > 0 {
            // Pace against the schedule rather than sleeping per event, so that the rate holds
            // even when individual sends are slow.
            let due = started + Duration::from_secs_f64(index as f64 / args.rate as f64);
            tokio::time::sleep_until(due.into()).await;
        }
        let item = match item {
            Ok(item) => item,
            Err(err) => {
                tally.fail(&format!("{err:#}"));
                continue;
            }
        };
        while pending.len() >= args.in_flight.max(1) {
            if let Some(result) = pending.next().await {
                tally.record(result)?;
            }
        }
        let publisher = publisher.clone();
        pending.push(async move {
            match item {
                Item::Gateway(event) => publisher.publish_gateway(event).await.map(Some),
                Item::Lifecycle(event) => publisher.publish_lifecycle(event).await.map(Some),
                Item::Verbatim {
                    stream,
                    key,
                    id,
                    bytes,
                } => publisher.publish_bytes(stream, &key, id, &bytes).await,
            }
        });
    }
    while let Some(result) = pending.next().await {
        tally.record(result)?;
    }
    if let Some(mut out) = tally.ids_out.take() {
        out.flush()?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    eprintln!(
        "published {} events in {elapsed:.1}s ({:.0}/s), {} failed",
        tally.published,
        tally.published as f64 / elapsed.max(1e-9),
        tally.failed
    );
    if tally.failed > 0 {
        bail!("{} events were not published", tally.failed);
    }
    Ok(())
}

fn generate(
    count: u64,
    stream: StreamArg,
    seed: u64,
) -> impl Iterator<Item = anyhow::Result<Item>> {
    let mut generator = Generator::new(seed);
    (0..count).map(move |i| {
        Ok(match stream {
            StreamArg::Gateway => Item::Gateway(generator.gateway()),
            StreamArg::Lifecycle => Item::Lifecycle(generator.lifecycle()),
            StreamArg::Auto if i % 10 == 9 => Item::Lifecycle(generator.lifecycle()),
            StreamArg::Auto => Item::Gateway(generator.gateway()),
        })
    })
}

fn read_lines(
    path: &PathBuf,
    stream: StreamArg,
    encoding: EncodingArg,
) -> anyhow::Result<impl Iterator<Item = anyhow::Result<Item>>> {
    let reader: Box<dyn BufRead> = if path.as_os_str() == "-" {
        Box::new(std::io::BufReader::new(std::io::stdin()))
    } else {
        Box::new(std::io::BufReader::new(
            std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?,
        ))
    };
    let source = path.display().to_string();
    Ok(reader
        .lines()
        .enumerate()
        .filter(|(_, line)| line.as_ref().map_or(true, |l| !l.trim().is_empty()))
        .map(move |(index, line)| {
            let line = line.with_context(|| format!("reading {source}"))?;
            parse_line(&line, stream, encoding).with_context(|| format!("{source}:{}", index + 1))
        }))
}

fn parse_line(line: &str, stream: StreamArg, encoding: EncodingArg) -> anyhow::Result<Item> {
    let value: serde_json::Value = serde_json::from_str(line).context("not JSON")?;
    let stream = match stream {
        StreamArg::Gateway => Stream::Gateway,
        StreamArg::Lifecycle => Stream::Lifecycle,
        StreamArg::Auto if value.get("request").is_some() => Stream::Gateway,
        StreamArg::Auto if value.get("type").is_some() => Stream::Lifecycle,
        StreamArg::Auto => bail!("cannot tell the stream: no `request` (gateway) or `type` (lifecycle) field; use --stream"),
    };
    if encoding == EncodingArg::Json {
        let field = |name: &str| value.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        let key = match stream {
            Stream::Gateway => field("stack_id"),
            Stream::Lifecycle => field("organization_id"),
        };
        return Ok(Item::Verbatim {
            stream,
            key: key.unwrap_or_default(),
            id: field("id"),
            bytes: line.as_bytes().to_vec(),
        });
    }
    Ok(match stream {
        Stream::Gateway => {
            Item::Gateway(serde_json::from_value(value).context("not a raw gateway event")?)
        }
        Stream::Lifecycle => {
            Item::Lifecycle(serde_json::from_value(value).context("not a raw lifecycle event")?)
        }
    })
}
