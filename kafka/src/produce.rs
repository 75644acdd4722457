//! Producing a record that must not be lost.

use std::time::Duration;

use rdkafka::message::OwnedHeaders;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;

/// Produces one record and returns only once the broker acknowledged it. A failure after
/// librdkafka's own retries (broker down longer than `message.timeout.ms`) is retried here with a
/// doubling pause capped at 10 s: callers commit their input offset behind this call, so giving
/// up would mean either blocking forever anyway or losing the record. With the idempotent
/// producer, a retry duplicates at most what the broker had already written.
pub async fn produce_until_acked(
    producer: &FutureProducer,
    topic: &str,
    key: Option<&[u8]>,
    payload: &[u8],
    headers: &OwnedHeaders,
) {
    let mut pause = Duration::from_millis(100);
    loop {
        let mut record = FutureRecord::to(topic)
            .payload(payload)
            .headers(headers.clone());
        if let Some(key) = key {
            record = record.key(key);
        }
        match producer.send(record, Timeout::Never).await {
            Ok(_) => return,
            Err((err, _)) => {
                tracing::warn!(error = %err, topic, retry_in = ?pause, "produce failed; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(10));
            }
        }
    }
}
