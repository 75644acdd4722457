//! The router's Kafka loop: read raw records, route them, produce, commit behind acknowledgements.
//!
//! The loop runs on its own thread with librdkafka's plain clients: a `BaseConsumer` it polls for
//! records and a `BaseProducer` it polls for delivery reports, so that one record costs no task,
//! no channel and no cross-thread wake-up (the async clients spent about as much CPU on those as
//! the routing itself, docs/PERFORMANCE.md). Delivery reports are served on this same thread by
//! `producer.poll`, and each finishes its input offset in the tracker directly.

use std::borrow::Cow;
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditstream_kafka::topics::{self, RAW_GATEWAY, RAW_LIFECYCLE};
use auditstream_kafka::{
    close_within, KafkaConfig, Prefetch, TrackingContext, CONSUMER_CLOSE_TIMEOUT,
};
use auditstream_schemas::envelope::App;
use auditstream_schemas::{catalogue, headers};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientContext, Message};

use crate::metrics::{Outcome, RouterMetrics};
use crate::normalize::{limit_avro_allocations, route, RejectReason, Rejection, Routed, Stream};
use crate::redact::Redaction;
use crate::{RouterConfig, RouterError};

/// How often the router logs its counters.
const STATS_INTERVAL: Duration = Duration::from_secs(60);
/// Distinct unknown lifecycle types counted by name; more are counted together, so that a flood
/// of odd types cannot grow the map without bound.
const MAX_UNKNOWN_TYPES: usize = 100;
/// How long one poll of the consumer may block when no record is there: deliveries, commits and
/// the stop flag are looked at at least this often.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// First pause before producing a record again after the broker refused it; doubled up to
/// [`MAX_RETRY_PAUSE`].
const FIRST_RETRY_PAUSE: Duration = Duration::from_millis(100);
const MAX_RETRY_PAUSE: Duration = Duration::from_secs(10);
/// Room for headers on top of `router.max_message_bytes`: a dead letter is the raw record plus
/// the reason, the detail, the origin and the producer's own headers, and the producer's
/// `message.max.bytes` is set to leave this much room so that it never refuses one.
pub(crate) const DEAD_LETTER_ROOM: usize = 64 * 1024;
/// Longest rejection detail written to a dead letter's headers.
const MAX_DETAIL_BYTES: usize = 1024;

/// Lifecycle types outside the catalogue, by name, for the log line every [`STATS_INTERVAL`]
/// (their count is a metric; their names are not, since they are unbounded).
#[derive(Default)]
struct UnknownTypes {
    counts: HashMap<String, u64>,
    overflow: u64,
}

impl UnknownTypes {
    fn count(&mut self, event_type: String) {
        if let Some(count) = self.counts.get_mut(&event_type) {
            *count += 1;
        } else if self.counts.len() < MAX_UNKNOWN_TYPES {
            tracing::warn!(event_type = %event_type, "lifecycle type not in the catalogue; forwarded, and counted from now on");
            self.counts.insert(event_type, 1);
        } else {
            self.overflow += 1;
        }
    }

    fn log(&self, metrics: &RouterMetrics) {
        let (routed, dead_lettered) = metrics.totals();
        let unknown: u64 = self.counts.values().sum::<u64>() + self.overflow;
        tracing::info!(
            routed,
            dead_lettered,
            unknown_lifecycle_types = unknown,
            unknown_type_names = ?self.counts.keys().collect::<Vec<_>>(),
            "router counters since start"
        );
    }
}

/// Where a record came from, so that its offset can be finished once its output is durable. It
/// travels with the produced record as librdkafka's delivery opaque.
struct Source {
    /// Borrowed for the two raw topics; owned only for a record of an unexpected topic.
    topic: Cow<'static, str>,
    partition: i32,
    offset: i64,
}

/// One record to write: an envelope or a dead letter. Borrows what it can from the input record,
/// because librdkafka copies key and payload anyway.
struct Output<'a> {
    topic: &'static str,
    key: Option<Cow<'a, [u8]>>,
    payload: Cow<'a, [u8]>,
    headers: OwnedHeaders,
}

/// A record the broker did not take, to be produced again after a pause.
struct Refused {
    message: OwnedMessage,
    source: Box<Source>,
    due: Instant,
    pause: Duration,
}

/// The producer's context: delivery reports finish input offsets, refusals are kept for a retry.
struct Deliveries {
    offsets: TrackingContext,
    /// Records produced and not yet reported.
    in_flight: AtomicUsize,
    refused: Mutex<Vec<Refused>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = Box<Source>;

    fn delivery(&self, result: &DeliveryResult<'_>, source: Box<Source>) {
        match result {
            Ok(_) => {
                self.offsets
                    .tracker()
                    .finish(&source.topic, source.partition, source.offset);
                self.in_flight.fetch_sub(1, Ordering::Relaxed);
            }
            // The producer's drop purged it: the router is exiting after its drain timeout, and
            // the input offset stays unfinished, so the record is routed again after a restart.
            // A warning per record would only repeat the drain's.
            Err((
                KafkaError::MessageProduction(
                    RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight,
                ),
                _,
            )) => {}
            // librdkafka already retried for message.timeout.ms. Nothing may be skipped, so try
            // again after a pause; the input offset stays unfinished meanwhile.
            Err((err, message)) => {
                tracing::warn!(error = %err, topic = message.topic(), retry_in = ?FIRST_RETRY_PAUSE, "produce failed; retrying");
                self.refused
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .push(Refused {
                        message: message.detach(),
                        source,
                        due: Instant::now() + FIRST_RETRY_PAUSE,
                        pause: FIRST_RETRY_PAUSE,
                    });
            }
        }
    }
}

/// Runs the router until `shutdown` resolves, then drains in-flight records and commits.
pub async fn run(
    kafka: &KafkaConfig,
    config: &RouterConfig,
    metrics: &RouterMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RouterError> {
    let router = Router::new(kafka, config, metrics)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (done_sender, mut done) = tokio::sync::oneshot::channel();
    let thread_stop = Arc::clone(&stop);
    std::thread::Builder::new()
        .name("router".to_owned())
        .spawn(move || {
            // The receiver is gone only if `run` was dropped; there is no one left to tell.
            let _ = done_sender.send(router.run(&thread_stop));
        })
        .map_err(RouterError::Thread)?;
    tokio::select! {
        () = shutdown => stop.store(true, Ordering::Relaxed),
        result = &mut done => return result.unwrap_or(Ok(())),
    }
    done.await.unwrap_or(Ok(()))
}

/// The clients and settings of one router loop.
struct Router {
    consumer: BaseConsumer<TrackingContext>,
    producer: BaseProducer<Deliveries>,
    config: RouterConfig,
    redaction: Redaction,
    metrics: RouterMetrics,
}

impl Router {
    fn new(
        kafka: &KafkaConfig,
        config: &RouterConfig,
        metrics: &RouterMetrics,
    ) -> Result<Router, RouterError> {
        let consumer: BaseConsumer<TrackingContext> =
            kafka.tracking_consumer(&config.group, Prefetch::Router)?;
        // Raw records and envelopes are at most max_message_bytes and dead letters add headers:
        // librdkafka must accept both (its own default is 1,000,000), unless the operator set it.
        let mut kafka = kafka.clone();
        kafka
            .properties
            .entry("message.max.bytes".to_owned())
            .or_insert_with(|| (config.max_message_bytes + DEAD_LETTER_ROOM).to_string());
        let producer = kafka.producer_with_context(
            &kafka.forwarding_producer(),
            Deliveries {
                offsets: TrackingContext::clone(consumer.context()),
                in_flight: AtomicUsize::new(0),
                refused: Mutex::new(Vec::new()),
            },
        )?;
        consumer
            .subscribe(&[RAW_LIFECYCLE, RAW_GATEWAY])
            .map_err(RouterError::Subscribe)?;
        tracing::info!(group = %config.group, brokers = %kafka.brokers, "router started");
        let avro_limit = limit_avro_allocations(config.max_message_bytes);
        if avro_limit != config.max_message_bytes {
            tracing::warn!(
                avro_limit,
                max_message_bytes = config.max_message_bytes,
                "Avro allocation bound was set earlier in this process and differs from router.max_message_bytes"
            );
        }
        Ok(Router {
            consumer,
            producer,
            redaction: Redaction::new(&config.redaction),
            config: config.clone(),
            metrics: metrics.clone(),
        })
    }

    fn in_flight(&self) -> usize {
        self.producer.context().in_flight.load(Ordering::Relaxed)
    }

    /// The loop, until `stop` is set; then the drain and the final commit.
    fn run(self, stop: &AtomicBool) -> Result<(), RouterError> {
        let mut unknown_types = UnknownTypes::default();
        let mut next_commit = Instant::now() + self.config.commit_interval;
        let mut next_stats = Instant::now() + STATS_INTERVAL;
        while !stop.load(Ordering::Relaxed) {
            // Delivery reports: each finishes its input offset (see `Deliveries`).
            self.producer.poll(Duration::ZERO);
            self.produce_refused_again();
            let now = Instant::now();
            if now >= next_commit {
                self.commit();
                self.metrics.set_in_flight(self.in_flight());
                next_commit = now + self.config.commit_interval;
            }
            if now >= next_stats {
                unknown_types.log(&self.metrics);
                next_stats = now + STATS_INTERVAL;
            }
            if self.in_flight() >= self.config.max_in_flight {
                // Full: wait for acknowledgements rather than read more.
                self.producer.poll(POLL_INTERVAL);
                continue;
            }
            let message = match self.consumer.poll(POLL_INTERVAL) {
                None => continue,
                Some(Ok(message)) => message,
                // A broker outage: librdkafka reconnects by itself; keep polling.
                Some(Err(err)) if auditstream_kafka::is_transient(&err) => {
                    tracing::warn!(error = %err, "broker unavailable; waiting for it to come back");
                    continue;
                }
                Some(Err(err)) => return Err(RouterError::Consume(err)),
            };
            if let Some(event_type) = self.handle(&message, stop) {
                unknown_types.count(event_type);
            }
        }

        unknown_types.log(&self.metrics);
        tracing::info!(
            in_flight = self.in_flight(),
            "router stopping: draining in-flight records"
        );
        let deadline = Instant::now() + self.config.drain_timeout;
        while self.in_flight() > 0 && Instant::now() < deadline {
            self.producer.poll(POLL_INTERVAL);
            self.produce_refused_again();
        }
        if self.in_flight() > 0 {
            tracing::warn!(
                in_flight = self.in_flight(),
                "drain timed out; unfinished records will be routed again after restart"
            );
        }
        if let Err(err) = self.consumer.context().commit_before_close(&self.consumer) {
            tracing::warn!(error = %err, "the final offset commit failed; records after the last committed offsets will be routed again");
        }
        let Router {
            consumer, producer, ..
        } = self;
        // Purges what the broker has not acknowledged (see `Deliveries::delivery`).
        drop(producer);
        close_within(consumer, CONSUMER_CLOSE_TIMEOUT);
        Ok(())
    }

    /// Routes one record and produces its output; returns a lifecycle type outside the catalogue.
    fn handle(&self, message: &BorrowedMessage<'_>, stop: &AtomicBool) -> Option<String> {
        let topic = match message.topic() {
            RAW_GATEWAY => Cow::Borrowed(RAW_GATEWAY),
            RAW_LIFECYCLE => Cow::Borrowed(RAW_LIFECYCLE),
            other => Cow::Owned(other.to_owned()),
        };
        let source = Box::new(Source {
            topic,
            partition: message.partition(),
            offset: message.offset(),
        });
        self.consumer
            .context()
            .tracker()
            .begin(&source.topic, source.partition, source.offset);
        let (output, unknown_type) = process(message, &self.config, &self.redaction, &self.metrics);
        self.send(output, source, stop);
        unknown_type
    }

    /// Hands `output` to librdkafka. It only refuses at once when its queue is full (then the
    /// delivery reports are served until there is room) or for a malformed record; anything else
    /// comes back as a delivery report.
    fn send(&self, output: Output<'_>, source: Box<Source>, stop: &AtomicBool) {
        let mut record = BaseRecord::with_opaque_to(output.topic, source)
            .payload(output.payload.as_ref())
            .headers(output.headers);
        if let Some(key) = &output.key {
            record = record.key(key.as_ref());
        }
        let mut pause = FIRST_RETRY_PAUSE;
        loop {
            match self.producer.send(record) {
                Ok(()) => {
                    self.producer
                        .context()
                        .in_flight
                        .fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), back)) => {
                    record = back;
                    self.producer.poll(POLL_INTERVAL);
                }
                Err((err, back)) => {
                    // The offset stays unfinished, so on stop the record is routed again after
                    // restart; until then, keep trying: nothing may be skipped.
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    tracing::error!(error = %err, topic = output.topic, retry_in = ?pause, "librdkafka refused a record; retrying");
                    std::thread::sleep(pause);
                    pause = (pause * 2).min(MAX_RETRY_PAUSE);
                    record = back;
                }
            }
        }
    }

    /// Produces again the records whose delivery failed and whose pause is over.
    fn produce_refused_again(&self) {
        let due: Vec<Refused> = {
            let mut refused = self
                .producer
                .context()
                .refused
                .lock()
                .unwrap_or_else(|poison| poison.into_inner());
            if refused.is_empty() {
                return;
            }
            let now = Instant::now();
            let (due, waiting) = refused.drain(..).partition(|r| r.due <= now);
            *refused = waiting;
            due
        };
        for refused in due {
            let message = &refused.message;
            let mut record = BaseRecord::with_opaque_to(message.topic(), refused.source)
                .payload(message.payload().unwrap_or_default());
            if let Some(key) = message.key() {
                record = record.key(key);
            }
            if let Some(headers) = message.headers() {
                record = record.headers(headers.as_borrowed().detach());
            }
            if let Err((err, back)) = self.producer.send(record) {
                let pause = (refused.pause * 2).min(MAX_RETRY_PAUSE);
                tracing::warn!(error = %err, topic = message.topic(), retry_in = ?pause, "produce failed; retrying");
                self.producer
                    .context()
                    .refused
                    .lock()
                    .unwrap_or_else(|poison| poison.into_inner())
                    .push(Refused {
                        message: refused.message.clone(),
                        source: back.delivery_opaque,
                        due: Instant::now() + pause,
                        pause,
                    });
            }
        }
    }

    fn commit(&self) {
        if let Err(err) = self
            .consumer
            .context()
            .commit(&self.consumer, CommitMode::Async)
        {
            tracing::warn!(error = %err, "offset commit failed; it is retried on the next tick");
        }
    }
}

/// Routes one record: the envelope to its v2 topic, or the original bytes to the dead-letter topic.
fn process<'a>(
    message: &'a BorrowedMessage<'_>,
    config: &RouterConfig,
    redaction: &Redaction,
    metrics: &RouterMetrics,
) -> (Output<'a>, Option<String>) {
    let stream = Stream::of_topic(message.topic());
    let payload = message.payload().unwrap_or_default();
    let result = match stream {
        // Not possible with our subscription; handled so that no record can ever be skipped.
        None => Err(Rejection {
            reason: RejectReason::UnknownTopic,
            detail: format!("record from unexpected topic {}", message.topic()),
        }),
        Some(_) if payload.len() > config.max_message_bytes => Err(Rejection {
            reason: RejectReason::Oversized,
            detail: format!(
                "{} bytes exceeds router.max_message_bytes = {}",
                payload.len(),
                config.max_message_bytes
            ),
        }),
        Some(stream) => route(
            stream,
            payload,
            // Only lifecycle ids are checked against the header. Reading any header makes
            // librdkafka parse them all, an allocation each: 4 % of the router for gateway records.
            match stream {
                Stream::Lifecycle => header_text(message, headers::EVENT_ID),
                Stream::Gateway => None,
            },
            redaction,
        )
        .and_then(|routed| envelope_within_limit(routed, config.max_message_bytes)),
    };
    let mut unknown_type = None;
    let output = match result {
        Ok(routed) => {
            if routed.app == App::Membership
                && !catalogue::is_known_lifecycle_type(&routed.event_type)
            {
                metrics.unknown_lifecycle_type();
                // Producer-controlled text: bounded before it reaches logs.
                unknown_type = Some(routed.event_type.chars().take(100).collect());
            }
            metrics.event(stream, Outcome::Routed);
            metrics.redacted(stream, routed.redactions);
            envelope_output(routed, message.key())
        }
        Err(rejection) => {
            metrics.event(stream, Outcome::DeadLettered);
            metrics.dead_lettered(rejection.reason);
            // The detail may quote the record's content, so it goes to the dead-letter topic (as
            // sensitive as the raw topic) and not to the logs.
            tracing::warn!(
                reason = rejection.reason.as_str(),
                topic = message.topic(),
                partition = message.partition(),
                offset = message.offset(),
                "raw record dead-lettered; see `auditstream dlq inspect`"
            );
            dead_letter_output(rejection, message)
        }
    };
    (output, unknown_type)
}

/// Escaping can make an envelope larger than its raw record (a body of quotes doubles). One that
/// is over the limit is dead-lettered like an oversized raw record: produced, it would be refused
/// by librdkafka or the broker again and again, and hold back its partition.
fn envelope_within_limit(routed: Routed, max_message_bytes: usize) -> Result<Routed, Rejection> {
    if routed.body.len() > max_message_bytes {
        return Err(Rejection {
            reason: RejectReason::Oversized,
            detail: format!(
                "its envelope has {} bytes, over router.max_message_bytes = {} (JSON escaping grew it)",
                routed.body.len(),
                max_message_bytes
            ),
        });
    }
    Ok(routed)
}

fn header_text<'a>(message: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|header| header.key == name)
        .and_then(|header| std::str::from_utf8(header.value?).ok())
}

fn envelope_output(routed: Routed, input_key: Option<&[u8]>) -> Output<'_> {
    let date_ms = routed.date_ms.to_string();
    let mut headers = OwnedHeaders::new_with_capacity(6)
        .insert(Header {
            key: headers::EVENT_ID,
            value: Some(&routed.event_id),
        })
        .insert(Header {
            key: headers::APP,
            value: Some(routed.app.as_str()),
        })
        .insert(Header {
            key: headers::TYPE,
            value: Some(routed.event_type.as_ref()),
        })
        .insert(Header {
            key: headers::ORGANIZATION_ID,
            value: Some(&routed.organization_id),
        })
        .insert(Header {
            key: headers::DATE_MS,
            value: Some(&date_ms),
        });
    if let Some(stack_id) = &routed.stack_id {
        headers = headers.insert(Header {
            key: headers::STACK_ID,
            value: Some(stack_id),
        });
    }
    Output {
        topic: routed.topic,
        // Same key as the input, so the input's partitioning carries over (order too, but for a retry
        // among the producer's 5 requests in flight); the natural key when there was none.
        key: Some(input_key.map_or_else(
            || Cow::Owned(routed.fallback_key().as_bytes().to_vec()),
            Cow::Borrowed,
        )),
        payload: Cow::Owned(routed.body),
        headers,
    }
}

fn dead_letter_output<'a>(rejection: Rejection, message: &'a BorrowedMessage<'_>) -> Output<'a> {
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let mut headers = OwnedHeaders::new_with_capacity(8)
        .insert(Header {
            key: headers::dlq::REASON,
            value: Some(rejection.reason.as_str()),
        })
        .insert(Header {
            key: headers::dlq::DETAIL,
            value: Some(bounded(&rejection.detail)),
        })
        .insert(Header {
            key: headers::dlq::SOURCE_TOPIC,
            value: Some(message.topic()),
        })
        .insert(Header {
            key: headers::dlq::SOURCE_PARTITION,
            value: Some(&partition),
        })
        .insert(Header {
            key: headers::dlq::SOURCE_OFFSET,
            value: Some(&offset),
        });
    // Keep the producer's headers (the event id among them) for whoever replays the record.
    if let Some(original) = message.headers() {
        for header in original.iter() {
            headers = headers.insert(header);
        }
    }
    Output {
        topic: topics::ROUTER_DLQ,
        key: message.key().map(Cow::Borrowed),
        payload: Cow::Borrowed(message.payload().unwrap_or_default()),
        headers,
    }
}

/// At most [`MAX_DETAIL_BYTES`] of a rejection's detail, cut on a character boundary: decoder
/// messages may quote the record, and a dead letter must stay within the room
/// [`DEAD_LETTER_ROOM`] leaves for headers.
fn bounded(detail: &str) -> &str {
    let mut end = detail.len().min(MAX_DETAIL_BYTES);
    while !detail.is_char_boundary(end) {
        end -= 1;
    }
    &detail[..end]
}
