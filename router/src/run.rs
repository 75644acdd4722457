//! The router's Kafka loop: read raw records, route them, produce, commit behind acknowledgements.

use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use auditstream_kafka::topics::{self, RAW_GATEWAY, RAW_LIFECYCLE};
use auditstream_kafka::{produce_until_acked, KafkaConfig, TrackingConsumer};
use auditstream_schemas::envelope::App;
use auditstream_schemas::{catalogue, headers};
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::FutureProducer;
use rdkafka::Message;

use crate::metrics::{Outcome, RouterMetrics};
use crate::normalize::{limit_avro_allocations, route, RejectReason, Rejection, Routed, Stream};
use crate::redact::Redaction;
use crate::{RouterConfig, RouterError};

/// How often the router logs its counters.
const STATS_INTERVAL: Duration = Duration::from_secs(60);
/// Distinct unknown lifecycle types counted by name; more are counted together, so that a flood
/// of odd types cannot grow the map without bound.
const MAX_UNKNOWN_TYPES: usize = 100;

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

/// Where a record came from, so that its offset can be finished once its output is durable.
struct Source {
    topic: String,
    partition: i32,
    offset: i64,
}

/// One record to write: an envelope or a dead letter.
struct Output {
    topic: &'static str,
    key: Option<Vec<u8>>,
    payload: Vec<u8>,
    headers: OwnedHeaders,
}

/// Runs the router until `shutdown` resolves, then drains in-flight records and commits.
pub async fn run(
    kafka: &KafkaConfig,
    config: &RouterConfig,
    metrics: &RouterMetrics,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RouterError> {
    let consumer = kafka.tracking_consumer(&config.group)?;
    let producer = kafka.future_producer()?;
    consumer
        .subscribe(&[RAW_LIFECYCLE, RAW_GATEWAY])
        .map_err(RouterError::Subscribe)?;
    tracing::info!(group = %config.group, brokers = %kafka.brokers, "router started");
    let redaction = Redaction::new(&config.redaction);
    let avro_limit = limit_avro_allocations(config.max_message_bytes);
    if avro_limit != config.max_message_bytes {
        tracing::warn!(
            avro_limit,
            max_message_bytes = config.max_message_bytes,
            "Avro allocation bound was set earlier in this process and differs from router.max_message_bytes"
        );
    }

    let mut in_flight = FuturesUnordered::new();
    let mut commit_tick = tokio::time::interval(config.commit_interval);
    let mut shutdown = pin!(shutdown);
    let mut unknown_types = UnknownTypes::default();
    let mut stats_tick = tokio::time::interval(STATS_INTERVAL);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = commit_tick.tick() => {
                commit(&consumer, CommitMode::Async);
                metrics.set_in_flight(in_flight.len());
            }
            _ = stats_tick.tick() => unknown_types.log(metrics),
            Some(source) = in_flight.next(), if !in_flight.is_empty() => finish(&consumer, source),
            message = consumer.recv(), if in_flight.len() < config.max_in_flight => {
                let message = match message {
                    Ok(message) => message,
                    // A broker outage: librdkafka reconnects by itself; keep polling.
                    Err(err) if auditstream_kafka::is_transient(&err) => {
                        tracing::warn!(error = %err, "broker unavailable; waiting for it to come back");
                        continue;
                    }
                    Err(err) => return Err(RouterError::Consume(err)),
                };
                let (source, output, unknown_type) = process(&message, config, &redaction, metrics);
                if let Some(event_type) = unknown_type {
                    unknown_types.count(event_type);
                }
                consumer.context().tracker().begin(&source.topic, source.partition, source.offset);
                in_flight.push(produce(producer.clone(), output, source));
            }
        }
    }

    unknown_types.log(metrics);
    tracing::info!(
        in_flight = in_flight.len(),
        "router stopping: draining in-flight records"
    );
    let drain = async {
        while let Some(source) = in_flight.next().await {
            finish(&consumer, source);
        }
    };
    if tokio::time::timeout(config.drain_timeout, drain)
        .await
        .is_err()
    {
        tracing::warn!("drain timed out; unfinished records will be routed again after restart");
    }
    commit(&consumer, CommitMode::Sync);
    Ok(())
}

fn finish(consumer: &TrackingConsumer, source: Source) {
    consumer
        .context()
        .tracker()
        .finish(&source.topic, source.partition, source.offset);
}

fn commit(consumer: &TrackingConsumer, mode: CommitMode) {
    if let Err(err) = consumer.context().commit(consumer, mode) {
        tracing::warn!(error = %err, "offset commit failed; it is retried on the next tick");
    }
}

/// Routes one record: the envelope to its v2 topic, or the original bytes to the dead-letter topic.
fn process(
    message: &BorrowedMessage<'_>,
    config: &RouterConfig,
    redaction: &Redaction,
    metrics: &RouterMetrics,
) -> (Source, Output, Option<String>) {
    let stream = Stream::of_topic(message.topic());
    let source = Source {
        topic: message.topic().to_owned(),
        partition: message.partition(),
        offset: message.offset(),
    };
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
            header_text(message, headers::EVENT_ID),
            redaction,
        ),
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
    (source, output, unknown_type)
}

fn header_text<'a>(message: &'a BorrowedMessage<'_>, name: &str) -> Option<&'a str> {
    message
        .headers()?
        .iter()
        .find(|header| header.key == name)
        .and_then(|header| std::str::from_utf8(header.value?).ok())
}

fn envelope_output(routed: Routed, input_key: Option<&[u8]>) -> Output {
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
            value: Some(&routed.event_type),
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
        // Same key as the input, so per-key order carries over; the natural key when there was none.
        key: Some(input_key.map_or_else(|| routed.key.into_bytes(), <[u8]>::to_vec)),
        payload: routed.body,
        headers,
    }
}

fn dead_letter_output(rejection: Rejection, message: &BorrowedMessage<'_>) -> Output {
    let partition = message.partition().to_string();
    let offset = message.offset().to_string();
    let mut headers = OwnedHeaders::new_with_capacity(8)
        .insert(Header {
            key: headers::dlq::REASON,
            value: Some(rejection.reason.as_str()),
        })
        .insert(Header {
            key: headers::dlq::DETAIL,
            value: Some(&rejection.detail),
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
        key: message.key().map(<[u8]>::to_vec),
        payload: message.payload().unwrap_or_default().to_vec(),
        headers,
    }
}

/// Writes `output` (see [`produce_until_acked`]) and hands back its source to be finished.
async fn produce(producer: FutureProducer, output: Output, source: Source) -> Source {
    produce_until_acked(
        &producer,
        output.topic,
        output.key.as_deref(),
        &output.payload,
        &output.headers,
    )
    .await;
    source
}
