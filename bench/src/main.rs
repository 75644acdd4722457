//! `auditstream-bench`: measures the pipeline on this machine, in one run, next to the broker's own
//! consume rate, and prints a table (plus JSON for comparing runs).
//!
//! Steps, each against the same in-memory broker (so that the broker's storage is not what is
//! measured):
//! 1. publish N realistic ~1 KB gateway events to `audit.raw.gateway`;
//! 2. reference: a plain librdkafka consumer reads them (events/s);
//! 3. router: `auditstream router` turns them into envelopes (events/s, CPU µs per event, peak RSS);
//! 4. reference: a plain consumer reads the N envelopes; and the receiver's own request ceiling,
//!    1 KB POSTs from a plain HTTP client with nothing read from Kafka;
//! 5. each sink mode drains the N queued envelopes into a local receiver: one event per POST,
//!    JSON array, NDJSON and Elasticsearch bulk (batches of 500); the drain is the backlog case,
//!    so peak RSS here is the memory under a backlog of N events;
//! 6. latency from produce to receipt at 1,000 and 10,000 events/s (one event per POST), each rate
//!    on a fresh broker with a router and a sink of its own, and of its first half, up to the
//!    router's output;
//! 7. two workers of one destination versus one.
//!
//! CPU time and peak RSS are read from `/proc/<pid>` of the measured process only. Rates are
//! quoted as ratios to the reference measured in the same run, because absolute figures move with
//! the machine's load.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use auditstream_kafka::{topics, KafkaConfig};
use auditstream_producer::synthetic::Generator;
use auditstream_producer::Publisher;
use auditstream_receiver::{Receiver, ReceiverOptions};
use auditstream_tests::{run_command, Broker, Process};
use clap::Parser;
use futures::stream::{self, FuturesUnordered, StreamExt};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};
use tokio::time::MissedTickBehavior;

/// The bench process is the load generator and the receivers: with mimalloc, as in the
/// `auditstream` binary, the allocator costs them less of the cores the pipeline needs.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Partitions of every topic of the run.
const PARTITIONS: i32 = 4;

/// The consumer group of the latency steps' destination, `latency` (`auditstream.sink.<name>`).
const LATENCY_SINK_GROUP: &str = "auditstream.sink.latency";

/// Publishing rates of the latency measurements (also the seeds of their generators).
const LATENCY_RATES: [u64; 2] = [1_000, 10_000];

#[derive(Parser)]
#[command(about = "Benchmarks the auditstream pipeline against the broker's own consume rate")]
struct Args {
    /// Events for the router and the batched sink modes.
    #[arg(long, default_value_t = 1_000_000)]
    events: usize,
    /// Events for the one-event-per-POST mode (slower by nature).
    #[arg(long, default_value_t = 200_000)]
    single_events: usize,
    /// Seconds of load per latency measurement.
    #[arg(long, default_value_t = 10)]
    latency_seconds: u64,
    /// Extra librdkafka property for every client of the run, as `key=value` (repeatable), e.g.
    /// `--kafka-property fetch.queue.backoff.ms=1000` to measure a setting side by side.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    kafka_properties: Vec<String>,
    /// Measure only these steps, comma-separated: router, single, json_array, ndjson, es_bulk,
    /// scale, latency. The router runs in any case (it makes the envelopes the others read), so
    /// `--only router` measures the router alone. Default: all of them.
    #[arg(long, value_delimiter = ',', value_name = "STEPS")]
    only: Vec<String>,
    /// Another build of `auditstream` (say, of an earlier commit) whose router and sinks are
    /// measured too, in the order baseline, current, current, baseline: a before/after ratio
    /// from one run. The routers read the same raw records; each sink reads the envelopes that
    /// the router of its own build wrote, so that a change of what the router writes is measured
    /// on both sides.
    #[arg(long, value_name = "PATH")]
    baseline_binary: Option<PathBuf>,
    /// Where to write the results as JSON.
    #[arg(long, default_value = "bench/results.json")]
    out: PathBuf,
}

/// One measured row of the table.
struct Row {
    name: String,
    events: usize,
    seconds: f64,
    cpu_seconds: Option<f64>,
    peak_rss_mib: Option<f64>,
    reference_rate: f64,
    /// The receiver's own request ceiling, for the one-event-per-POST rows.
    ceiling_rate: Option<f64>,
}

impl Row {
    fn rate(&self) -> f64 {
        self.events as f64 / self.seconds
    }

    fn json(&self) -> Value {
        json!({
            "name": self.name,
            "events": self.events,
            "seconds": self.seconds,
            "events_per_second": self.rate(),
            "cpu_us_per_event": self.cpu_seconds.map(|cpu| cpu * 1e6 / self.events as f64),
            "peak_rss_mib": self.peak_rss_mib,
            "ratio_to_reference": self.rate() / self.reference_rate,
            "ratio_to_receiver_ceiling": self.ceiling_rate.map(|ceiling| self.rate() / ceiling),
        })
    }
}

/// CPU seconds (user + system) a process has used so far.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may contain spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / clock_ticks_per_second())
}

fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Peak resident memory of a process, in MiB.
fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

/// Publishes `count` gateway events as fast as the producer takes them. They are generated as
/// they go, since a million of them held at once would take gigabytes.
async fn publish(publisher: &Publisher, seed: u64, count: usize) {
    let mut generator = Generator::new(seed);
    stream::iter(0..count)
        .map(|_| publisher.publish_gateway(generator.gateway()))
        .buffer_unordered(20_000)
        .for_each(|published| async move {
            published.expect("publish");
        })
        .await;
}

/// Publishes `count` gateway events at `rate` per second, each dated when it is sent so that
/// latency counts the pipeline only.
///
/// The load generator shares the machine with the pipeline it measures, so it is kept cheap: the
/// events are generated before the clock starts (a third of a core at 10,000 events/s
/// otherwise), and one 1 ms ticker releases those that are due, where a timer per event cost the
/// runtime a wake-up per event.
async fn publish_paced(publisher: &Publisher, seed: u64, count: usize, rate: u64) {
    let mut generator = Generator::new(seed);
    let mut waiting = (0..count)
        .map(|_| generator.gateway())
        .collect::<Vec<_>>()
        .into_iter();
    let mut sending = FuturesUnordered::new();
    let mut ticker = tokio::time::interval(Duration::from_millis(1));
    ticker.set_missed_tick_behavior(MissedTickBehavior::Skip);
    let started = Instant::now();
    let mut released = 0;
    while released < count || !sending.is_empty() {
        tokio::select! {
            _ = ticker.tick(), if released < count => {
                let due = ((started.elapsed().as_secs_f64() * rate as f64) as usize + 1).min(count);
                for mut event in waiting.by_ref().take(due - released) {
                    event.timestamp = now_ms();
                    sending.push(publisher.publish_gateway(event));
                }
                released = due;
            }
            Some(published) = sending.next() => {
                published.expect("publish");
            }
        }
    }
}

/// Reads `count` records of `topic` with a plain consumer: the reference rate.
fn reference_consume(kafka: &KafkaConfig, topic: &str, count: usize) -> Row {
    let consumer: BaseConsumer = kafka
        .consumer(&format!("bench.reference.{topic}"))
        .create()
        .expect("consumer");
    consumer.subscribe(&[topic]).expect("subscribe");
    let mut seen = 0;
    let mut started = None;
    let cpu_before = cpu_seconds(std::process::id());
    while seen < count {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume");
            std::hint::black_box(message.payload());
            started.get_or_insert_with(Instant::now);
            seen += 1;
        }
    }
    let seconds = started.expect("records were read").elapsed().as_secs_f64();
    let cpu = cpu_seconds(std::process::id())
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    Row {
        name: format!("reference: plain consumer of {topic}"),
        events: count,
        seconds,
        cpu_seconds: cpu,
        peak_rss_mib: None,
        reference_rate: count as f64 / seconds,
        ceiling_rate: None,
    }
}

/// Parallel POSTs of the receiver-ceiling reference: the one-event sink's `concurrency`.
const CEILING_CONCURRENCY: usize = 64;

/// The receiver's own ceiling for one event per POST: `count` POSTs of a 1 KB JSON body from
/// [`CEILING_CONCURRENCY`] loops of a plain reqwest client in this process, against a receiver
/// of its own. Nothing is read from Kafka, so this bounds what any one-event sink can reach here.
async fn receiver_ceiling(count: usize) -> Row {
    let receiver = Receiver::start(ReceiverOptions {
        count_only: true,
        ..ReceiverOptions::default()
    })
    .await
    .expect("receiver");
    let body = bytes_of_one_event();
    let client = reqwest::Client::new();
    let url = receiver.url();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let loops: Vec<_> = (0..CEILING_CONCURRENCY)
        .map(|_| {
            let (client, url, body, next) =
                (client.clone(), url.clone(), body.clone(), next.clone());
            tokio::spawn(async move {
                while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count {
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .expect("POST to the local receiver");
                    assert!(
                        response.status().is_success(),
                        "receiver answered {}",
                        response.status()
                    );
                    response.bytes().await.expect("answer");
                }
            })
        })
        .collect();
    for handle in loops {
        handle.await.expect("POST loop");
    }
    let seconds = started.elapsed().as_secs_f64();
    assert_eq!(
        receiver.envelopes() as usize,
        count,
        "every POST was counted"
    );
    Row {
        name: format!("reference: receiver ceiling, 1 KB POSTs, {CEILING_CONCURRENCY} in flight"),
        events: count,
        seconds,
        cpu_seconds: None,
        peak_rss_mib: None,
        reference_rate: count as f64 / seconds,
        ceiling_rate: None,
    }
}

/// A realistic ~1 KB JSON body (a generated gateway event).
fn bytes_of_one_event() -> Vec<u8> {
    serde_json::to_vec(&Generator::new(7).gateway()).expect("JSON")
}

/// Sum of high watermarks of a topic.
fn high_watermark(kafka: &KafkaConfig, topic: &str, partitions: i32) -> i64 {
    high_watermarks(kafka, topic, partitions).iter().sum()
}

/// Where each partition of `topic` ends now.
fn high_watermarks(kafka: &KafkaConfig, topic: &str, partitions: i32) -> Vec<i64> {
    let consumer: BaseConsumer = kafka.reader().create().expect("consumer");
    (0..partitions)
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, Duration::from_secs(5))
                .map_or(0, |(_, high)| high)
        })
        .collect()
}

/// Commits `offsets` (one per partition of `topic`) for `group`, which has no member yet, so
/// that its first member starts there.
fn start_group_at(kafka: &KafkaConfig, group: &str, topic: &str, offsets: &[i64]) {
    let consumer: BaseConsumer = kafka.consumer(group).create().expect("consumer");
    let mut start = TopicPartitionList::new();
    for (partition, &offset) in (0..).zip(offsets) {
        start
            .add_partition_offset(topic, partition, Offset::Offset(offset))
            .expect("partition");
    }
    consumer
        .commit(&start, CommitMode::Sync)
        .expect("commit start offsets");
}

/// Reads the envelope topic while a latency step runs and, for the envelopes of events dated from
/// `since_ms` on, records how long each took from its date to the router's produce call (the
/// envelope record's timestamp): the first half of the produce-to-receipt latency, through the
/// publisher, the broker and the router. What remains of the total is the router's producer, the
/// broker again, the sink and its POST. It reads live, not after the step, because the
/// [`Trimmer`] deletes what every reader has passed; `positions` is what it has passed.
struct StageReader {
    positions: Arc<Vec<AtomicI64>>,
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<i64>>,
}

impl StageReader {
    fn start(kafka: &KafkaConfig, since_ms: i64, count: usize) -> StageReader {
        let consumer: BaseConsumer = kafka.reader().create().expect("consumer");
        let mut assignment = TopicPartitionList::new();
        for partition in 0..PARTITIONS {
            assignment
                .add_partition_offset(topics::MODULE, partition, Offset::Beginning)
                .expect("partition");
        }
        consumer.assign(&assignment).expect("assign");
        let positions: Arc<Vec<AtomicI64>> =
            Arc::new((0..PARTITIONS).map(|_| AtomicI64::new(0)).collect());
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_positions, thread_stop) = (Arc::clone(&positions), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut delays = Vec::with_capacity(count);
            while delays.len() < count && !thread_stop.load(Ordering::Relaxed) {
                let Some(message) = consumer.poll(Duration::from_millis(100)) else {
                    continue;
                };
                let message = message.expect("consume");
                thread_positions[message.partition() as usize]
                    .store(message.offset() + 1, Ordering::Relaxed);
                let date_ms = message.headers().and_then(|headers| {
                    headers
                        .iter()
                        .find(|header| header.key == auditstream_schemas::headers::DATE_MS)
                        .and_then(|header| {
                            std::str::from_utf8(header.value?).ok()?.parse::<i64>().ok()
                        })
                });
                if let (Some(date_ms), Some(produced_ms)) =
                    (date_ms, message.timestamp().to_millis())
                {
                    if date_ms >= since_ms {
                        delays.push(produced_ms - date_ms);
                    }
                }
            }
            delays.sort_unstable();
            delays
        });
        StageReader {
            positions,
            stop,
            thread,
        }
    }

    /// The delays, sorted, once all `count` were read or 10 s have passed.
    fn finish(self) -> Vec<i64> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.thread.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("stage reader")
    }
}

/// Deletes, twice a second, the records of a latency step's topics that every reader has passed:
/// raw events below the router's committed offsets, envelopes below both the sink's committed
/// offsets and the [`StageReader`]'s positions.
///
/// nisshi's memory engine keeps each produced batch as an object and lists all of a partition's
/// objects on every fetch, so without this its CPU grows through a step (p50 at 10,000 events/s
/// rose from 24 to about 50 ms over 10 s, on two cores it shares with the pipeline). Kafka's
/// indexed logs do not slow down with what they hold; deleting consumed records is what
/// retention does there. Nothing unread is deleted, so every event is still measured.
struct Trimmer {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Trimmer {
    fn start(kafka: &KafkaConfig, router_group: &str, stage: &StageReader) -> Trimmer {
        let admin: AdminClient<DefaultClientContext> = kafka.admin().create().expect("admin");
        let router: BaseConsumer = kafka.consumer(router_group).create().expect("consumer");
        let sink: BaseConsumer = kafka
            .consumer(LATENCY_SINK_GROUP)
            .create()
            .expect("consumer");
        let stage_positions = Arc::clone(&stage.positions);
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            while !thread_stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(500));
                let raw = committed_offsets(&router, topics::RAW_GATEWAY);
                let envelopes = committed_offsets(&sink, topics::MODULE)
                    .into_iter()
                    .zip(stage_positions.iter())
                    .map(|(committed, read)| committed.min(read.load(Ordering::Relaxed)))
                    .collect();
                let mut cut = TopicPartitionList::new();
                for (topic, offsets) in [(topics::RAW_GATEWAY, raw), (topics::MODULE, envelopes)] {
                    for (partition, offset) in (0..).zip(offsets) {
                        if offset > 0 {
                            cut.add_partition_offset(topic, partition, Offset::Offset(offset))
                                .expect("offset");
                        }
                    }
                }
                if cut.count() > 0 {
                    // A failed deletion only leaves nisshi slower; the next round tries again.
                    let _ = futures::executor::block_on(
                        admin.delete_records(&cut, &AdminOptions::new()),
                    );
                }
            }
        });
        Trimmer { stop, thread }
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("trimmer");
    }
}

/// The offsets `consumer`'s group committed for each partition of `topic` (0 where none).
fn committed_offsets(consumer: &BaseConsumer, topic: &str) -> Vec<i64> {
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(topic, partition);
    }
    let committed = consumer
        .committed_offsets(partitions, Duration::from_secs(5))
        .unwrap_or_default();
    (0..PARTITIONS)
        .map(|partition| {
            match committed
                .find_partition(topic, partition)
                .map(|e| e.offset())
            {
                Some(Offset::Offset(offset)) => offset,
                _ => 0,
            }
        })
        .collect()
}

/// Latency from produce to receipt at `rate` events/s, one event per POST, on a fresh in-memory
/// broker with a router and a sink of its own; and of the first half, up to the router's output.
///
/// A broker per rate, because nisshi's memory storage lists every batch of a partition on each
/// fetch (its `fetch` walks the object store), so its CPU grows with what the earlier rate left.
async fn measure_latency(
    rate: u64,
    seconds: u64,
    properties: &std::collections::BTreeMap<String, String>,
    logs: &Path,
) -> Value {
    let broker = Broker::start_in_memory();
    let receiver = Receiver::start(ReceiverOptions {
        record_latency: true,
        ..ReceiverOptions::default()
    })
    .await
    .expect("receiver");
    let mut kafka = KafkaConfig::with_brokers(broker.brokers());
    kafka.properties = properties.clone();
    let config = write_config(
        logs,
        &format!("latency-{rate}.toml"),
        &kafka,
        PARTITIONS,
        &destination("latency", &receiver.url(), "concurrency = 64"),
    );
    run_command(&["--config", &config, "topics", "create"]);
    let router_group = format!("bench.latency.router.{rate}");
    let router = Process::start(
        &format!("latency-router-{rate}"),
        logs,
        &["--config", &config, "router"],
        &[("AUDITSTREAM_ROUTER__GROUP", router_group.as_str())],
    );
    let sink = Process::start(
        &format!("latency-sink-{rate}"),
        logs,
        &["--config", &config, "sink", "--destination", "latency"],
        &[],
    );
    let publisher = Publisher::new(&kafka).expect("publisher");
    // Warm up: once these arrive, the router and the sink have joined their groups and deliver
    // live traffic, so what follows measures live traffic only.
    let warm_up = 200;
    publish_paced(&publisher, rate, warm_up, 200).await;
    let deadline = Instant::now() + Duration::from_secs(120);
    while receiver.latency_samples() < warm_up && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let skip = receiver.latency_samples();
    let count = (rate * seconds) as usize;
    let since_ms = now_ms();
    let stage = StageReader::start(&kafka, since_ms, count);
    let trimmer = Trimmer::start(&kafka, &router_group, &stage);
    publish_paced(&publisher, rate, count, rate).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while receiver.latency_samples() < skip + count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut measured: Vec<i64> = receiver.latencies_ms()[skip..].to_vec();
    measured.sort_unstable();
    trimmer.stop();
    let router_out = stage.finish();
    sink.terminate();
    router.terminate();
    json!({
        "rate": rate, "events": measured.len(),
        "p50_ms": percentile(&measured, 0.50), "p99_ms": percentile(&measured, 0.99), "p999_ms": percentile(&measured, 0.999),
        "router_output_p50_ms": percentile(&router_out, 0.50), "router_output_p99_ms": percentile(&router_out, 0.99),
    })
}

/// Runs a process until `progress()` reaches `target`; times from the first progress to the end.
async fn measure(
    process: &Process,
    target: usize,
    progress: impl Fn() -> usize,
) -> (f64, Option<f64>, Option<f64>) {
    let deadline = Instant::now() + Duration::from_secs(1800);
    let (mut started, mut at_start) = (None, 0);
    loop {
        let done = progress();
        if done > 0 && started.is_none() {
            started = Some(Instant::now());
            at_start = done;
        }
        if done >= target {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no completion after 30 minutes ({done}/{target})"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = started.map_or(0.0, |s| s.elapsed().as_secs_f64());
    // Scale to the whole count: the events done before the first observation took no measured time.
    let seconds = seconds * target as f64 / (target - at_start).max(1) as f64;
    (
        seconds,
        cpu_seconds(process.pid()),
        peak_rss_mib(process.pid()),
    )
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    if sorted.is_empty() {
        return -1;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index]
}

fn destination(name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[destinations]]\nname = \"{name}\"\nurl = \"{url}\"\nstreams = [\"module\"]\n{extra}\n"
    )
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let args_events = args.events;
    const STEPS: [&str; 7] = [
        "router",
        "single",
        "json_array",
        "ndjson",
        "es_bulk",
        "scale",
        "latency",
    ];
    if let Some(unknown) = args.only.iter().find(|s| !STEPS.contains(&s.as_str())) {
        eprintln!(
            "--only {unknown}: not a step; the steps are {}",
            STEPS.join(", ")
        );
        std::process::exit(2);
    }
    let wanted = |step: &str| args.only.is_empty() || args.only.iter().any(|s| s == step);
    let broker = Broker::start_in_memory();
    let work = tempfile::tempdir().expect("temp dir");
    let logs = work.path();
    let mut kafka = KafkaConfig::with_brokers(broker.brokers());
    for pair in &args.kafka_properties {
        let (key, value) = pair
            .split_once('=')
            .unwrap_or_else(|| panic!("--kafka-property {pair}: expected KEY=VALUE"));
        kafka.properties.insert(key.to_owned(), value.to_owned());
    }

    let batched =
        "batch = { max_events = 500, max_bytes = 1048576, linger = \"5ms\" }\nconcurrency = 4";
    let modes = [
        (
            "single",
            "json",
            "concurrency = 64",
            args.single_events,
            false,
        ),
        ("json_array", "json_array", batched, args.events, false),
        ("ndjson", "ndjson", batched, args.events, false),
        ("es_bulk", "elasticsearch_bulk", batched, args.events, true),
    ];
    // Which build runs each router and sink measurement: with a baseline, the order baseline,
    // current, current, baseline. Later runs of a step are slower on this broker (about a fifth
    // for the same build run twice), so only the symmetric order gives a fair ratio.
    let runs: Vec<Option<&Path>> = match &args.baseline_binary {
        Some(baseline) => vec![Some(baseline), None, None, Some(baseline)],
        None => vec![None],
    };
    let run_name = |step: &str, run: usize| {
        if runs.len() == 1 {
            step.to_owned()
        } else {
            format!("{step}_{run}")
        }
    };
    let build_label = |binary: Option<&Path>| {
        binary.map_or_else(String::new, |b| format!(", baseline {}", b.display()))
    };
    let mut receivers = HashMap::new();
    let mut destinations = String::new();
    for (name, format, extra, _, bulk) in &modes {
        // A destination (so a consumer group) and a receiver per run, so that each run drains
        // the whole backlog.
        for run in 0..runs.len() {
            let receiver = Receiver::start(ReceiverOptions {
                count_only: true,
                bulk_responses: *bulk,
                ..ReceiverOptions::default()
            })
            .await
            .expect("receiver");
            let destination_name = run_name(name, run);
            destinations += &destination(
                &destination_name,
                &receiver.url(),
                &format!("format = \"{format}\"\n{extra}"),
            );
            receivers.insert(destination_name, receiver);
        }
    }
    let scale_receiver = Receiver::start(ReceiverOptions {
        count_only: true,
        ..ReceiverOptions::default()
    })
    .await
    .expect("receiver");
    destinations += &destination(
        "scale",
        &scale_receiver.url(),
        &format!("format = \"ndjson\"\n{batched}"),
    );

    let config = write_config(logs, "bench.toml", &kafka, PARTITIONS, &destinations);
    run_command(&["--config", &config, "topics", "create"]);
    let publisher = Publisher::new(&kafka).expect("publisher");
    let mut rows = Vec::new();

    eprintln!("publishing {} gateway events...", args.events);
    let started = Instant::now();
    publish(&publisher, 1, args.events).await;
    eprintln!("published in {:.1}s", started.elapsed().as_secs_f64());

    let raw_reference = reference_consume(&kafka, topics::RAW_GATEWAY, args.events);
    let raw_rate = raw_reference.rate();
    rows.push(raw_reference);

    // Where each router run's envelopes begin, for the sinks of the same build.
    let mut router_starts = Vec::new();
    for (run, &binary) in runs.iter().enumerate() {
        let name = format!("router (raw -> envelope){}", build_label(binary));
        eprintln!("{name}...");
        let group = format!("auditstream.router.bench{run}");
        let env = [("AUDITSTREAM_ROUTER__GROUP", group.as_str())];
        let args = ["--config", config.as_str(), "router"];
        let starts = high_watermarks(&kafka, topics::MODULE, PARTITIONS);
        let before = starts.iter().sum::<i64>() as usize;
        router_starts.push(starts);
        let process = match binary {
            Some(binary) => {
                Process::start_binary(binary, &format!("router-{run}"), logs, &args, &env)
            }
            None => Process::start(&format!("router-{run}"), logs, &args, &env),
        };
        let (seconds, cpu, rss) = measure(&process, args_events, || {
            (high_watermark(&kafka, topics::MODULE, PARTITIONS) as usize).saturating_sub(before)
        })
        .await;
        rows.push(Row {
            name,
            events: args_events,
            seconds,
            cpu_seconds: cpu,
            peak_rss_mib: rss,
            reference_rate: raw_rate,
            ceiling_rate: None,
        });
        process.terminate();
    }

    let envelope_reference = reference_consume(&kafka, topics::MODULE, args.events);
    let envelope_rate = envelope_reference.rate();
    rows.push(envelope_reference);

    let mut ceiling_rate = None;
    if wanted("single") {
        eprintln!("receiver ceiling...");
        let ceiling = receiver_ceiling(args.single_events).await;
        ceiling_rate = Some(ceiling.rate());
        rows.push(ceiling);
    }
    for (mode, _, _, count, _) in modes.iter().filter(|mode| wanted(mode.0)) {
        for (run, &binary) in runs.iter().enumerate() {
            let name = run_name(mode, run);
            eprintln!("sink {name}...");
            let receiver = &receivers[&name];
            if runs.len() > 1 {
                // The destination's consumer group, as `DestinationConfig::group` names it.
                let group = format!("auditstream.sink.{name}");
                start_group_at(&kafka, &group, topics::MODULE, &router_starts[run]);
            }
            let args = ["--config", config.as_str(), "sink", "--destination", &name];
            let log = format!("sink-{name}");
            let sink = match binary {
                Some(binary) => Process::start_binary(binary, &log, logs, &args, &[]),
                None => Process::start(&log, logs, &args, &[]),
            };
            let (seconds, cpu, rss) =
                measure(&sink, *count, || receiver.envelopes() as usize).await;
            rows.push(Row {
                name: format!(
                    "sink {mode} (drain of a {count}-event backlog){}",
                    build_label(binary)
                ),
                events: *count,
                seconds,
                cpu_seconds: cpu,
                peak_rss_mib: rss,
                reference_rate: envelope_rate,
                ceiling_rate: ceiling_rate.filter(|_| *mode == "single"),
            });
            sink.terminate();
        }
    }

    if wanted("scale") {
        eprintln!("scaling: two ndjson workers...");
        let workers = [
            Process::start(
                "scale-1",
                logs,
                &["--config", &config, "sink", "--destination", "scale"],
                &[],
            ),
            Process::start(
                "scale-2",
                logs,
                &["--config", &config, "sink", "--destination", "scale"],
                &[],
            ),
        ];
        let (seconds, cpu, _) = measure(&workers[0], args.events, || {
            scale_receiver.envelopes() as usize
        })
        .await;
        let cpu = cpu.zip(cpu_seconds(workers[1].pid())).map(|(a, b)| a + b);
        rows.push(Row {
            name: "sink ndjson, two workers".into(),
            events: args.events,
            seconds,
            cpu_seconds: cpu,
            peak_rss_mib: None,
            reference_rate: envelope_rate,
            ceiling_rate: None,
        });
        for worker in workers {
            worker.terminate();
        }
    }

    // The latency steps run on brokers of their own: the throughput steps leave gigabytes in the first one's
    // memory, which slows nisshi itself (its plain consume rate falls by half after a run of
    // 1,000,000 events), and live traffic should not be measured behind that.
    drop(publisher);
    drop(broker);
    let mut latencies = Vec::new();
    if wanted("latency") {
        for rate in LATENCY_RATES {
            eprintln!("latency at {rate}/s...");
            latencies
                .push(measure_latency(rate, args.latency_seconds, &kafka.properties, logs).await);
        }
    }

    print_table(&rows, &latencies);
    let results = json!({
        "events": args.events,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "rows": rows.iter().map(Row::json).collect::<Vec<_>>(),
        "latency": latencies,
    });
    std::fs::write(
        &args.out,
        serde_json::to_string_pretty(&results).expect("json"),
    )
    .expect("write results");
    eprintln!("results written to {}", args.out.display());
}

fn write_config(
    dir: &Path,
    name: &str,
    kafka: &KafkaConfig,
    partitions: i32,
    destinations: &str,
) -> String {
    let path = dir.join(name);
    let properties: String = kafka
        .properties
        .iter()
        .map(|(key, value)| format!("{key:?} = {value:?}\n"))
        .collect();
    let text = format!(
        "[kafka]\nbrokers = \"{}\"\n[kafka.properties]\n{properties}[topics]\npartitions = {partitions}\n{destinations}",
        kafka.brokers
    );
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

fn print_table(rows: &[Row], latencies: &[Value]) {
    println!("| stage | events | events/s | ratio to reference | ratio to receiver ceiling | CPU µs/event | peak RSS MiB |");
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for row in rows {
        println!(
            "| {} | {} | {:.0} | {:.2} | {} | {} | {} |",
            row.name,
            row.events,
            row.rate(),
            row.rate() / row.reference_rate,
            row.ceiling_rate
                .map_or("-".into(), |ceiling| format!("{:.2}", row.rate() / ceiling)),
            row.cpu_seconds.map_or("-".into(), |cpu| format!(
                "{:.1}",
                cpu * 1e6 / row.events as f64
            )),
            row.peak_rss_mib
                .map_or("-".into(), |rss| format!("{rss:.0}")),
        );
    }
    println!();
    println!("| rate (events/s, one event per POST) | events | p50 ms | p99 ms | p99.9 ms | of which to the router's output: p50 ms | p99 ms |");
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    for latency in latencies {
        println!(
            "| {} | {} | {} | {} | {} | {} | {} |",
            latency["rate"],
            latency["events"],
            latency["p50_ms"],
            latency["p99_ms"],
            latency["p999_ms"],
            latency["router_output_p50_ms"],
            latency["router_output_p99_ms"]
        );
    }
}
