//! The router's Kafka loop: read raw records, route them, produce, commit behind acknowledgements.

use std::future::Future;
use std::pin::pin;
use std::time::Duration;

use auditstream_kafka::topics::{self, RAW_GATEWAY, RAW_LIFECYCLE};
use auditstream_kafka::{KafkaConfig, KafkaError, TrackingConsumer};
use auditstream_schemas::headers;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Header, Headers, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::Message;

use crate::normalize::{limit_avro_allocations, route, RejectReason, Rejection, Routed, Stream};
use crate::redact::Redaction;
use crate::{RouterConfig, RouterError};

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
    shutdown: impl Future<Output = ()>,
) -> Result<(), RouterError> {
    let consumer = kafka.tracking_consumer(&config.group)?;
    let producer: FutureProducer =
        kafka
            .producer()
            .create()
            .map_err(|source| KafkaError::CreateClient {
                kind: "producer",
                brokers: kafka.brokers.clone(),
                source,
            })?;
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
    let mut routed: u64 = 0;
    let mut rejected: u64 = 0;
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = commit_tick.tick() => commit(&consumer, CommitMode::Async),
            Some(source) = in_flight.next(), if !in_flight.is_empty() => finish(&consumer, source),
            message = consumer.recv(), if in_flight.len() < config.max_in_flight => {
                let message = message.map_err(RouterError::Consume)?;
                let (source, output) = process(&message, config, &redaction);
                if output.topic == topics::ROUTER_DLQ { rejected += 1 } else { routed += 1 }
                consumer.context().tracker().begin(&source.topic, source.partition, source.offset);
                in_flight.push(produce(producer.clone(), output, source));
            }
        }
    }

    tracing::info!(
        in_flight = in_flight.len(),
        routed,
        rejected,
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
) -> (Source, Output) {
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
    let output = match result {
        Ok(routed) => envelope_output(routed, message.key()),
        Err(rejection) => {
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
    (source, output)
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

/// Produces `output` until the broker acknowledges it. A failure after librdkafka's own retries is
/// retried here after a pause: the record must not be skipped, and the idempotent producer keeps
/// retries from duplicating what was already written.
async fn produce(producer: FutureProducer, output: Output, source: Source) -> Source {
    let mut pause = Duration::from_millis(100);
    loop {
        let mut record = FutureRecord::to(output.topic)
            .payload(&output.payload)
            .headers(output.headers.clone());
        if let Some(key) = &output.key {
            record = record.key(key);
        }
        match producer.send(record, Timeout::Never).await {
            Ok(_) => return source,
            Err((err, _)) => {
                tracing::warn!(error = %err, topic = output.topic, retry_in = ?pause, "produce failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
}
