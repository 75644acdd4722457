//! A sink worker: the consume -> POST -> commit pipeline of one destination.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::time::SystemTime;

use auditstream_kafka::{KafkaConfig, TrackingConsumer};
use auditstream_schemas::headers;
use bytes::Bytes;
use futures::stream::FuturesUnordered;
use futures::StreamExt;
use rdkafka::consumer::{CommitMode, Consumer};
use rdkafka::message::{BorrowedMessage, Headers};
use rdkafka::Message;
use reqwest::header::{HeaderMap, HeaderValue, CONTENT_TYPE};
use reqwest::Client;

use crate::retry::{retry_after, Backoff};
use crate::{client, Destination, SinkError};

/// HTTP header carrying the stable event id, so that receivers can de-duplicate redeliveries.
pub const EVENT_ID_HEADER: &str = "x-auditstream-event-id";

/// Where a record came from.
struct Source {
    topic: String,
    partition: i32,
    offset: i64,
}

/// One event to deliver.
struct Delivery {
    source: Source,
    event_id: Option<HeaderValue>,
    body: Bytes,
}

/// What every POST of this destination carries, built once.
struct Target {
    destination: Destination,
    client: Client,
    headers: HeaderMap,
}

/// Runs one worker of `destination` until `shutdown` resolves, then drains and commits.
pub async fn run(
    kafka: &KafkaConfig,
    destination: Destination,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SinkError> {
    let client = client::build(&destination)?;
    let mut base_headers = HeaderMap::new();
    base_headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    for (name, secret) in &destination.headers {
        base_headers.append(name.clone(), secret.header_value().clone());
    }
    let group = destination.group();
    let topics = destination.topics();
    let max_in_flight = destination.config.max_in_flight;
    let commit_interval = destination.config.commit_interval;
    let drain_timeout = destination.config.drain_timeout;
    let target = Arc::new(Target {
        destination,
        client,
        headers: base_headers,
    });
    let name = target.destination.config.name.as_str();

    let consumer = kafka.tracking_consumer(&group)?;
    consumer
        .subscribe(&topics)
        .map_err(|source| SinkError::Subscribe {
            topics: topics.join(","),
            source,
        })?;
    tracing::info!(destination = name, url = %target.destination.display_url(), group, ?topics, "sink worker started");

    let mut pending = FuturesUnordered::new();
    let mut paused = false;
    // Resume below three quarters of the bound, so that one completion does not flap pause/resume.
    let resume_below = (max_in_flight * 3 / 4).max(1);
    let mut commit_tick = tokio::time::interval(commit_interval);
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = commit_tick.tick() => commit(&consumer, CommitMode::Async),
            Some(source) = pending.next(), if !pending.is_empty() => {
                finish(&consumer, source);
                if paused && pending.len() < resume_below {
                    set_paused(&consumer, false);
                    paused = false;
                }
            }
            // Polled even while paused: polling keeps this worker in the group and serves rebalances.
            message = consumer.recv() => {
                let message = message.map_err(SinkError::Consume)?;
                let delivery = delivery(&message);
                consumer.context().tracker().begin(&delivery.source.topic, delivery.source.partition, delivery.source.offset);
                pending.push(deliver(Arc::clone(&target), delivery));
                // Re-pause on every record that arrives while full: a rebalance may have assigned
                // new, unpaused partitions.
                if pending.len() >= max_in_flight {
                    set_paused(&consumer, true);
                    paused = true;
                }
            }
        }
    }

    tracing::info!(
        destination = name,
        pending = pending.len(),
        "sink worker stopping: draining"
    );
    let drain = async {
        while let Some(source) = pending.next().await {
            finish(&consumer, source);
        }
    };
    if tokio::time::timeout(drain_timeout, drain).await.is_err() {
        tracing::warn!(
            destination = name,
            "drain timed out; undelivered events will be delivered after restart"
        );
    }
    commit(&consumer, CommitMode::Sync);
    Ok(())
}

fn delivery(message: &BorrowedMessage<'_>) -> Delivery {
    let event_id = message
        .headers()
        .and_then(|h| h.iter().find(|header| header.key == headers::EVENT_ID))
        .and_then(|header| HeaderValue::from_bytes(header.value?).ok());
    Delivery {
        source: Source {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
        },
        event_id,
        body: Bytes::copy_from_slice(message.payload().unwrap_or_default()),
    }
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

fn set_paused(consumer: &TrackingConsumer, pause: bool) {
    let result = consumer.assignment().and_then(|assignment| {
        if pause {
            consumer.pause(&assignment)
        } else {
            consumer.resume(&assignment)
        }
    });
    match result {
        Ok(()) => tracing::debug!(pause, "partitions paused/resumed for backpressure"),
        Err(err) => tracing::warn!(error = %err, pause, "cannot pause/resume partitions"),
    }
}

/// POSTs one event until the destination answers 2xx. Cancelled (by dropping) on shutdown; the
/// event's offset then stays uncommitted and the event is delivered again after restart.
async fn deliver(target: Arc<Target>, delivery: Delivery) -> Source {
    let config = &target.destination.config;
    let mut backoff = Backoff::new(config.retry.initial_backoff, config.retry.max_backoff);
    loop {
        let mut request = target
            .client
            .post(target.destination.url.clone())
            .headers(target.headers.clone())
            .body(delivery.body.clone());
        if let Some(event_id) = &delivery.event_id {
            request = request.header(EVENT_ID_HEADER, event_id.clone());
        }
        let delay = match request.send().await {
            Ok(response) if response.status().is_success() => {
                // Read the (small) body so that the connection goes back to the pool.
                let _ = response.bytes().await;
                return delivery.source;
            }
            Ok(response) => {
                let delay = backoff.next_delay(retry_after(response.headers(), SystemTime::now()));
                tracing::warn!(
                    destination = %config.name, status = response.status().as_u16(),
                    attempt = backoff.attempts(), retry_in = ?delay, "delivery refused; retrying"
                );
                delay
            }
            Err(err) => {
                let delay = backoff.next_delay(None);
                // `without_url`: the URL may carry a credential in its query string.
                tracing::warn!(
                    destination = %config.name, error = %err.without_url(),
                    attempt = backoff.attempts(), retry_in = ?delay, "delivery failed; retrying"
                );
                delay
            }
        };
        tokio::time::sleep(delay).await;
    }
}
