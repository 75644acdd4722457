//! A sink worker: the consume -> batch -> POST -> commit pipeline of one destination.
//!
//! ```text
//! recv ─► metadata from headers ─► filter ─► batcher (per app) ─► ready batches
//!                                    │                               │ ≤ concurrency
//!                                    ▼                               ▼
//!                          finished at once            deliver(): expire? encode, POST,
//!                                                      classify, retry or dead-letter
//!                                                               │
//!                                   offsets finished ◄──────────┘ (delivered or dead-lettered)
//! ```
//!
//! Memory is bounded by `max_in_flight` events and `max_in_flight_bytes`: past either, the worker
//! stops reading until deliveries complete, and pauses its partitions only if that lasts (see
//! `PAUSE_AFTER`).

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use auditstream_kafka::{
    close_within, KafkaConfig, Prefetch, TrackingConsumer, TrackingContext, CONSUMER_CLOSE_TIMEOUT,
};
use auditstream_schemas::headers;
use bytes::Bytes;
use futures::{FutureExt, StreamExt};
use rdkafka::consumer::{CommitMode, Consumer, MessageStream};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_ENCODING, CONTENT_TYPE};
use reqwest::Client;
use tokio::task::{JoinError, JoinSet};
use tokio::time::Instant;

use crate::dlq::{DeadLetters, Reason};
use crate::encode::{self, Event, EventMeta, ItemOutcome};
use crate::metrics::{SinkMetrics, StatusClass};
use crate::retry::{classify, retry_after, Action, Backoff};
use crate::{client, sign, Destination, DestinationConfig, SinkError};

/// HTTP header carrying the stable event id of a one-event POST, so that receivers can
/// de-duplicate redeliveries.
pub const EVENT_ID_HEADER: &str = "x-auditstream-event-id";

/// Where a record came from.
#[derive(Debug, Clone)]
pub struct Source {
    /// Topic, shared by every record read from it (see [`TopicNames`]).
    pub topic: Arc<str>,
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
}

/// One event read and not yet finished.
pub struct Pending {
    /// Its origin, to finish its offset.
    pub source: Source,
    /// Kafka key, kept for dead letters.
    pub key: Option<Bytes>,
    /// The envelope and its routing metadata.
    pub event: Event,
}

/// What every POST of this destination shares, built once.
pub(crate) struct Target {
    pub(crate) destination: Destination,
    client: Client,
    headers: HeaderMap,
    dead_letters: DeadLetters,
    metrics: SinkMetrics,
    /// False for replays: an operator who replays an old event wants it delivered, not expired again.
    expire: bool,
}

impl Target {
    pub(crate) fn new(
        kafka: &KafkaConfig,
        destination: Destination,
        expire: bool,
        metrics: SinkMetrics,
    ) -> Result<Target, SinkError> {
        let client = client::build(&destination)?;
        let mut headers = HeaderMap::new();
        for (name, secret) in &destination.headers {
            headers.append(name.clone(), secret.header_value().clone());
        }
        if destination.config.gzip {
            headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
        }
        let dead_letters = DeadLetters::new(kafka, &destination.config.name)?;
        Ok(Target {
            destination,
            client,
            headers,
            dead_letters,
            metrics,
            expire,
        })
    }

    /// Writes a dead letter and counts it.
    async fn dead_letter(
        &self,
        pending: &Pending,
        reason: Reason,
        detail: &str,
        status: Option<u16>,
        attempts: u32,
    ) {
        self.dead_letters
            .write(pending, reason, detail, status, attempts)
            .await;
        self.metrics.dead_lettered(reason);
    }
}

/// When to stop reading.
pub(crate) enum Until {
    /// Until shutdown: the live worker.
    Shutdown,
    /// Until every partition reached the given end offset (exclusive): a replay.
    Ends(HashMap<i32, i64>),
}

/// Runs one worker of `destination` until `shutdown` resolves, then drains and commits.
pub async fn run(
    kafka: &KafkaConfig,
    destination: Destination,
    metrics: SinkMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SinkError> {
    let group = destination.group();
    let topics = destination.topics();
    let target = Arc::new(Target::new(kafka, destination, true, metrics)?);
    let consumer: TrackingConsumer = kafka.tracking_consumer(&group, Prefetch::Sink)?;
    consumer
        .subscribe(&topics)
        .map_err(|source| SinkError::Subscribe {
            topics: topics.join(","),
            source,
        })?;
    tracing::info!(
        destination = %target.destination.config.name, url = %target.destination.display_url(), group, ?topics,
        "sink worker started"
    );
    let result = pump(&consumer, target, Until::Shutdown, shutdown).await;
    close(consumer).await;
    result
}

/// Closes a worker's consumer (it leaves its group) within [`CONSUMER_CLOSE_TIMEOUT`], off the
/// runtime's threads: with the broker down the close may never end (see [`close_within`]).
pub(crate) async fn close(consumer: TrackingConsumer) {
    // The close runs on a thread of its own either way; a failure to wait for it changes nothing.
    let _ =
        tokio::task::spawn_blocking(move || close_within(consumer, CONSUMER_CLOSE_TIMEOUT)).await;
}

/// A batch still filling.
struct Filling {
    events: Vec<Pending>,
    bytes: usize,
    started: Instant,
}

impl Filling {
    /// The batch so far, leaving this one empty.
    fn take(&mut self) -> Vec<Pending> {
        self.bytes = 0;
        std::mem::take(&mut self.events)
    }
}

/// Batches waiting for a request slot, and the partial batches still filling, per app.
struct Batches {
    max_events: usize,
    max_bytes: usize,
    linger: Duration,
    filling: HashMap<String, Filling>,
    ready: VecDeque<Vec<Pending>>,
}

impl Batches {
    /// Adds an event. A batch never mixes apps, so that per-app framing (index, sourcetype) holds.
    fn push(&mut self, pending: Pending) {
        let size = pending.event.envelope.len();
        // Look up by &str so that only an app's first event allocates a key.
        let app = pending.event.meta.app();
        if !self.filling.contains_key(app) {
            let empty = Filling {
                events: Vec::new(),
                bytes: 0,
                started: Instant::now(),
            };
            self.filling.insert(app.to_owned(), empty);
        }
        let filling = self.filling.get_mut(app).expect("inserted above");
        if !filling.events.is_empty() && filling.bytes + size > self.max_bytes {
            self.ready.push_back(filling.take());
        }
        if filling.events.is_empty() {
            filling.started = Instant::now();
        }
        filling.events.push(pending);
        filling.bytes += size;
        if filling.events.len() >= self.max_events || filling.bytes >= self.max_bytes {
            self.ready.push_back(filling.take());
        }
    }

    /// When the oldest partial batch must be sent.
    fn next_deadline(&self) -> Option<Instant> {
        self.filling
            .values()
            .filter(|filling| !filling.events.is_empty())
            .map(|filling| filling.started + self.linger)
            .min()
    }

    /// Moves partial batches whose linger expired (all of them with `all`) to `ready`.
    fn close_due(&mut self, all: bool) {
        let now = Instant::now();
        for filling in self.filling.values_mut() {
            if !filling.events.is_empty() && (all || filling.started + self.linger <= now) {
                self.ready.push_back(filling.take());
            }
        }
    }
}

/// Events and bytes begun and not finished.
#[derive(Default)]
struct Held {
    events: usize,
    bytes: usize,
}

impl Held {
    /// Whether either bound of the destination is reached.
    fn full(&self, config: &DestinationConfig) -> bool {
        self.events >= config.max_in_flight || self.bytes >= config.max_in_flight_bytes
    }
}

/// How long the in-flight bounds may stay reached before the partitions are paused.
const PAUSE_AFTER: Duration = Duration::from_secs(5);

pub(crate) async fn pump(
    consumer: &TrackingConsumer,
    target: Arc<Target>,
    mut until: Until,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SinkError> {
    let config = target.destination.config.clone();
    let name = config.name.as_str();
    let mut batches = Batches {
        max_events: config.batch.max_events,
        max_bytes: config.batch.max_bytes,
        linger: config.batch.linger,
        filling: HashMap::new(),
        ready: VecDeque::new(),
    };
    // Deliveries run as tasks of their own, on the runtime's other threads: encoding, answers
    // and dead letters then leave this loop's thread to reading, which is what bounds a worker's
    // rate (docs/PERFORMANCE.md). Dropping the set on shutdown cancels them.
    let mut requests: JoinSet<Vec<(Source, usize)>> = JoinSet::new();
    let mut held = Held::default();
    // Backpressure in two steps. While the bounds are reached the worker stops reading: a
    // healthy destination frees room within milliseconds. Only if they stay reached for
    // PAUSE_AFTER (the destination is down or very slow) are the partitions paused, so that the
    // worker can poll again and stay in its group. Pausing is kept for outages because librdkafka
    // drops its prefetched records on pause and fetches them again on resume.
    let mut full_since: Option<Instant> = None;
    let mut paused = false;
    let mut commit_tick = tokio::time::interval(config.commit_interval);
    let mut shutdown = pin!(shutdown);
    let mut reading = !matches!(&until, Until::Ends(ends) if ends.is_empty());
    let mut topic_names = TopicNames::default();
    // One stream for the worker's life: each `recv()` would register and remove a waker of its
    // own, under a lock, per record.
    let mut records = consumer.stream();
    loop {
        start_ready(&mut requests, &mut batches, &target, config.concurrency);
        if !reading
            && requests.is_empty()
            && batches.ready.is_empty()
            && batches.next_deadline().is_none()
        {
            break;
        }
        let linger = batches.next_deadline();
        tokio::select! {
            () = &mut shutdown => break,
            _ = commit_tick.tick() => commit(consumer),
            Some(result) = requests.join_next(), if !requests.is_empty() => {
                let finished = delivered(result);
                finish_all(consumer, &finished);
                held.events -= finished.len();
                held.bytes -= finished.iter().map(|(_, size)| size).sum::<usize>();
                target.metrics.set_in_flight(held.events, held.bytes);
                if full_since.is_some() && !held.full(&config) {
                    full_since = None;
                }
                // Resume at half the bounds, so that an outage's end does not flap pause/resume.
                if paused && held.events <= config.max_in_flight / 2 && held.bytes <= config.max_in_flight_bytes / 2 {
                    set_paused(consumer, false, &target.metrics);
                    paused = false;
                }
            }
            () = sleep_until(full_since.map(|since| since + PAUSE_AFTER)), if full_since.is_some() && !paused => {
                tracing::warn!(destination = name, held = held.events, "deliveries are stalled: pausing partitions until they drain");
                set_paused(consumer, true, &target.metrics);
                paused = true;
            }
            () = sleep_until(linger), if linger.is_some() => batches.close_due(!reading),
            // Not read while full; read again once paused, because polling keeps this worker in
            // its group and serves rebalances (records of paused partitions do not arrive).
            (burst, error) = read_burst(&mut records, burst_limit(&until, &held, &config)), if reading && (full_since.is_none() || paused) => {
                begin_all(consumer, &burst);
                for message in &burst {
                    let pending = pending(message, &mut topic_names);
                    if let Until::Ends(ends) = &mut until {
                        if ends.get(&pending.source.partition).is_some_and(|&end| pending.source.offset + 1 >= end) {
                            ends.remove(&pending.source.partition);
                        }
                        reading = !ends.is_empty();
                    }
                    let meta = &pending.event.meta;
                    if meta.event_id().is_empty() {
                        // Not written by our router: set it aside rather than deliver it unlabelled.
                        target.dead_letter(&pending, Reason::MissingMetadata, "no event_id header", None, 0).await;
                        finish(consumer, &pending.source);
                    } else if !config.filter.accepts(meta.event_type(), meta.organization_id(), meta.stack_id()) {
                        finish(consumer, &pending.source);
                    } else {
                        held.events += 1;
                        held.bytes += pending.event.envelope.len();
                        batches.push(pending);
                        if !reading {
                            batches.close_due(true);
                        }
                    }
                }
                target.metrics.set_in_flight(held.events, held.bytes);
                if held.full(&config) {
                    full_since.get_or_insert_with(Instant::now);
                    // A rebalance may have assigned new, unpaused partitions: pause them too.
                    if paused {
                        set_paused(consumer, true, &target.metrics);
                    }
                }
                match error {
                    None => {}
                    // A broker outage: librdkafka reconnects by itself; keep polling.
                    Some(err) if auditstream_kafka::is_transient(&err) => {
                        tracing::warn!(error = %err, "broker unavailable; waiting for it to come back");
                    }
                    Some(err) => return Err(SinkError::Consume(err)),
                }
            }
        }
    }

    tracing::info!(
        destination = name,
        pending = held.events,
        "sink worker stopping: draining"
    );
    batches.close_due(true);
    let drain = async {
        loop {
            start_ready(&mut requests, &mut batches, &target, config.concurrency);
            let Some(result) = requests.join_next().await else {
                break;
            };
            finish_all(consumer, &delivered(result));
        }
    };
    if tokio::time::timeout(config.drain_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!(
            destination = name,
            "drain timed out; undelivered events will be delivered after restart"
        );
    }
    if let Err(err) = consumer.context().commit_before_close(consumer) {
        tracing::warn!(error = %err, "the final offset commit failed; records after the last committed offsets will be delivered again");
    }
    Ok(())
}

/// The most records one turn of the worker loop may read.
const BURST: usize = 256;

/// How many records the next turn may read: up to [`BURST`] while the in-flight bounds leave room
/// (at least one, so that a paused worker still polls), one at a time in a replay so that it
/// stops at its end offsets.
fn burst_limit(until: &Until, held: &Held, config: &DestinationConfig) -> Burst {
    match until {
        Until::Ends(_) => Burst {
            events: 1,
            bytes: usize::MAX,
        },
        Until::Shutdown => Burst {
            events: config
                .max_in_flight
                .saturating_sub(held.events)
                .clamp(1, BURST),
            bytes: config.max_in_flight_bytes.saturating_sub(held.bytes).max(1),
        },
    }
}

/// Bounds of one read.
struct Burst {
    events: usize,
    bytes: usize,
}

/// Waits for one record, then takes those already fetched, up to `limit`: the bytes bound is
/// checked after each record, so it is exceeded by one record at most, as a single read would.
/// Reading a burst per turn puts the cost of the worker's `select!` (its timers and futures) on
/// the burst instead of on every record. An error ends the burst and is returned beside it.
/// Safe to cancel in `select!`: the only await is the wait for the first record, and nothing is
/// taken from the stream before it completes.
async fn read_burst<'c>(
    records: &mut MessageStream<'c, TrackingContext>,
    limit: Burst,
) -> (Vec<BorrowedMessage<'c>>, Option<KafkaError>) {
    let mut burst = Vec::new();
    let mut bytes = 0;
    let mut next = records.next().await;
    loop {
        match next.expect("kafka streams never terminate") {
            Ok(message) => {
                bytes += message.payload_len();
                burst.push(message);
            }
            Err(err) => return (burst, Some(err)),
        }
        if burst.len() >= limit.events || bytes >= limit.bytes {
            return (burst, None);
        }
        match records.next().now_or_never() {
            Some(record) => next = record,
            None => return (burst, None),
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// The names of the topics read so far, so that each record's [`Source`] shares one instead of
/// allocating its own (a worker reads one or two topics).
#[derive(Default)]
struct TopicNames(Vec<Arc<str>>);

impl TopicNames {
    fn get(&mut self, topic: &str) -> Arc<str> {
        if let Some(name) = self.0.iter().find(|name| &***name == topic) {
            return Arc::clone(name);
        }
        let name: Arc<str> = Arc::from(topic);
        self.0.push(Arc::clone(&name));
        name
    }
}

fn pending(message: &BorrowedMessage<'_>, topics: &mut TopicNames) -> Pending {
    // One pass over the headers: librdkafka walks its header list on every lookup by name. The
    // values are borrowed from the record until `EventMeta::new` copies them, together.
    let (mut event_id, mut app, mut event_type, mut organization_id) = ("", "", "", "");
    let mut stack_id = None;
    let mut date_ms = None;
    if let Some(record_headers) = message.headers() {
        for header in record_headers.iter() {
            let Some(value) = header.value.and_then(|v| std::str::from_utf8(v).ok()) else {
                continue;
            };
            match header.key {
                headers::EVENT_ID => event_id = value,
                headers::APP => app = value,
                headers::TYPE => event_type = value,
                headers::ORGANIZATION_ID => organization_id = value,
                headers::STACK_ID => stack_id = Some(value),
                headers::DATE_MS => date_ms = value.parse().ok(),
                _ => {}
            }
        }
    }
    // Without a date header (records not from our router) the broker timestamp dates the event.
    let date_ms = date_ms
        .or_else(|| message.timestamp().to_millis())
        .unwrap_or_else(now_ms);
    let meta = EventMeta::new(
        event_id,
        app,
        event_type,
        organization_id,
        stack_id,
        date_ms,
    );
    Pending {
        source: Source {
            topic: topics.get(message.topic()),
            partition: message.partition(),
            offset: message.offset(),
        },
        key: message.key().map(Bytes::copy_from_slice),
        event: Event {
            meta,
            envelope: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
        },
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn finish(consumer: &TrackingConsumer, source: &Source) {
    consumer
        .context()
        .tracker()
        .finish(&source.topic, source.partition, source.offset);
}

/// Begins a burst's records under one lock of the tracker.
fn begin_all(consumer: &TrackingConsumer, burst: &[BorrowedMessage<'_>]) {
    let mut tracker = consumer.context().tracker();
    for message in burst {
        tracker.begin(message.topic(), message.partition(), message.offset());
    }
}

/// Finishes a delivered batch under one lock of the tracker.
fn finish_all(consumer: &TrackingConsumer, finished: &[(Source, usize)]) {
    let mut tracker = consumer.context().tracker();
    for (source, _) in finished {
        tracker.finish(&source.topic, source.partition, source.offset);
    }
}

fn commit(consumer: &TrackingConsumer) {
    if let Err(err) = consumer.context().commit(consumer, CommitMode::Async) {
        tracing::warn!(error = %err, "offset commit failed; it is retried on the next tick");
    }
}

fn set_paused(consumer: &TrackingConsumer, pause: bool, metrics: &SinkMetrics) {
    let result = consumer.assignment().and_then(|assignment| {
        if pause {
            consumer.pause(&assignment)?;
        } else {
            consumer.resume(&assignment)?;
        }
        Ok(assignment.count())
    });
    match result {
        Ok(partitions) => {
            metrics.set_paused_partitions(if pause { partitions } else { 0 });
            tracing::debug!(pause, "partitions paused/resumed for backpressure");
        }
        Err(err) => tracing::warn!(error = %err, pause, "cannot pause/resume partitions"),
    }
}

/// Starts deliveries of ready batches, oldest first, while fewer than `concurrency` run.
fn start_ready(
    requests: &mut JoinSet<Vec<(Source, usize)>>,
    batches: &mut Batches,
    target: &Arc<Target>,
    concurrency: usize,
) {
    while requests.len() < concurrency {
        let Some(batch) = batches.ready.pop_front() else {
            break;
        };
        requests.spawn(deliver(Arc::clone(target), batch));
    }
}

/// The events a delivery task finished. Its panic, if it had one, goes on here, as it would have
/// had the delivery run on the worker's own task; a task is cancelled only with its set.
fn delivered(result: Result<Vec<(Source, usize)>, JoinError>) -> Vec<(Source, usize)> {
    result.unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()))
}

/// Delivers a batch: each event ends delivered or dead-lettered, never dropped. Returns the
/// sources and sizes of all of them. Cancelled with the worker's set of deliveries on shutdown;
/// the events' offsets then stay uncommitted and they are delivered again after restart.
async fn deliver(target: Arc<Target>, mut batch: Vec<Pending>) -> Vec<(Source, usize)> {
    let config = &target.destination.config;
    let mut finished = Vec::with_capacity(batch.len());
    let mut backoff = Backoff::new(config.retry.initial_backoff, config.retry.max_backoff);
    loop {
        if target.expire {
            let oldest_allowed =
                now_ms() - i64::try_from(config.retention.as_millis()).unwrap_or(i64::MAX);
            let (expired, live): (Vec<_>, Vec<_>) = batch
                .into_iter()
                .partition(|p| p.event.meta.date_ms < oldest_allowed);
            for pending in expired {
                let detail = format!(
                    "older than retention {:?} after {} attempts",
                    config.retention,
                    backoff.attempts()
                );
                dead_letter(
                    &target,
                    pending,
                    Reason::Expired,
                    &detail,
                    None,
                    backoff.attempts(),
                    &mut finished,
                )
                .await;
            }
            batch = live;
        }
        if batch.is_empty() {
            return finished;
        }
        let started = Instant::now();
        let answer = post(&target, &batch).await;
        // One clock reading dates the delivery of the whole batch.
        let answered_ms = now_ms();
        let class = answer.as_ref().map_or(StatusClass::Error, |(status, ..)| {
            StatusClass::of_status(*status)
        });
        target.metrics.request(class, started.elapsed());
        let delay = match answer {
            Ok((status, retry_after_header, body)) => {
                match classify(status, &config.retry.permanent_statuses) {
                    Action::Delivered if target.destination.format.is_bulk() => {
                        match encode::parse_bulk_response(&body, batch.len()) {
                            Ok(outcomes) => {
                                let mut retry = Vec::new();
                                for (pending, outcome) in batch.into_iter().zip(outcomes) {
                                    match outcome {
                                        ItemOutcome::Delivered => finished.push(delivered_entry(
                                            &target,
                                            pending,
                                            answered_ms,
                                        )),
                                        ItemOutcome::Permanent { status, reason } => {
                                            let attempts = backoff.attempts() + 1;
                                            dead_letter(
                                                &target,
                                                pending,
                                                Reason::RejectedItem,
                                                &reason,
                                                Some(status),
                                                attempts,
                                                &mut finished,
                                            )
                                            .await;
                                        }
                                        ItemOutcome::Retry { .. } => retry.push(pending),
                                    }
                                }
                                batch = retry;
                                if batch.is_empty() {
                                    return finished;
                                }
                                target.metrics.retry(class);
                                backoff.next_delay(None)
                            }
                            Err(err) => {
                                tracing::warn!(destination = %config.name, error = %err, "bulk answer unreadable; retrying the batch");
                                target.metrics.retry(class);
                                backoff.next_delay(None)
                            }
                        }
                    }
                    Action::Delivered => {
                        finished.extend(
                            batch
                                .into_iter()
                                .map(|pending| delivered_entry(&target, pending, answered_ms)),
                        );
                        return finished;
                    }
                    Action::DeadLetter => {
                        let detail = format!("destination answered {status}: {}", snippet(&body));
                        for pending in batch {
                            let attempts = backoff.attempts() + 1;
                            dead_letter(
                                &target,
                                pending,
                                Reason::PermanentStatus,
                                &detail,
                                Some(status),
                                attempts,
                                &mut finished,
                            )
                            .await;
                        }
                        return finished;
                    }
                    action => {
                        let delay = backoff.next_delay(retry_after_header);
                        target.metrics.retry(class);
                        if action == Action::RetryAuthFailure {
                            target.metrics.auth_failure();
                            tracing::error!(
                                destination = %config.name, status, attempt = backoff.attempts(), retry_in = ?delay,
                                "destination refused our credentials; events are held back until they are fixed"
                            );
                        } else {
                            tracing::warn!(destination = %config.name, status, attempt = backoff.attempts(), retry_in = ?delay, "delivery refused; retrying");
                        }
                        delay
                    }
                }
            }
            Err(err) => {
                let delay = backoff.next_delay(None);
                target.metrics.retry(class);
                tracing::warn!(
                    destination = %config.name, error = %client::describe_error(err), attempt = backoff.attempts(), retry_in = ?delay,
                    "delivery failed; retrying"
                );
                delay
            }
        };
        tokio::time::sleep(delay).await;
    }
}

/// What a finished event hands back: its source, and its size for the in-flight bound.
fn finished_entry(pending: Pending) -> (Source, usize) {
    let size = pending.event.envelope.len();
    (pending.source, size)
}

/// Counts a delivered event, with its latency from its date to the destination's answer at
/// `answered_ms`, and finishes it.
fn delivered_entry(target: &Target, pending: Pending, answered_ms: i64) -> (Source, usize) {
    let age_ms = u64::try_from(answered_ms - pending.event.meta.date_ms).unwrap_or(0);
    target.metrics.delivered(Duration::from_millis(age_ms));
    finished_entry(pending)
}

/// Writes a dead letter, then counts the event as finished: its offset may move on only now.
async fn dead_letter(
    target: &Target,
    pending: Pending,
    reason: Reason,
    detail: &str,
    status: Option<u16>,
    attempts: u32,
    finished: &mut Vec<(Source, usize)>,
) {
    target
        .dead_letter(&pending, reason, detail, status, attempts)
        .await;
    finished.push(finished_entry(pending));
}

/// Sends one POST of `batch`; returns the status, any `Retry-After` and the body.
async fn post(
    target: &Target,
    batch: &[Pending],
) -> Result<(u16, Option<Duration>, Bytes), reqwest::Error> {
    let config = &target.destination.config;
    let events: Vec<&Event> = batch.iter().map(|p| &p.event).collect();
    let encoded = encode::encode(&target.destination.format, &events);
    let body = if config.gzip {
        encode::gzip(&encoded.body)
    } else {
        encoded.body
    };
    let mut request = target
        .client
        .post(target.destination.url.clone())
        .headers(target.headers.clone())
        .header(CONTENT_TYPE, encoded.content_type);
    if let [single] = batch {
        if let Ok(id) = HeaderValue::from_str(single.event.meta.event_id()) {
            request = request.header(EVENT_ID_HEADER, id);
        }
    }
    if let Some(key) = &target.destination.signing_key {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let signature = sign::signature_header(key.bytes(), now, &body);
        if let Ok(value) = HeaderValue::from_str(&signature) {
            request = request.header(HeaderName::from_static(sign::SIGNATURE_HEADER), value);
        }
    }
    let response = request.body(body).send().await?;
    let status = response.status().as_u16();
    let retry_after = retry_after(response.headers(), SystemTime::now());
    // Read the (small) body: bulk results live there, and the connection goes back to the pool.
    let body = response.bytes().await.unwrap_or_default();
    Ok((status, retry_after, body))
}

/// The start of a response body, for a dead letter's detail.
fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.chars().filter(|c| !c.is_control()).collect()
}
