//! Publishing raw audit events to Kafka.
//!
//! Services create one [`Publisher`] and call [`Publisher::publish_gateway`] once per API call
//! and [`Publisher::publish_lifecycle`] once per administrative action. Each call encodes the
//! event as an Avro single-object message, keys it (by stack for gateway events, by organisation
//! for lifecycle events, so that one tenant's events stay in order), attaches the stable event id
//! as the `event_id` header, and resolves once the broker has acknowledged it. The underlying
//! producer is idempotent: librdkafka's retries never write an event twice.
//!
//! Calls may run concurrently; throughput comes from many calls in flight, not from awaiting
//! them one at a time. [`synthetic::Generator`] makes realistic events for demos and benchmarks.
//!
//! ```no_run
//! # async fn example() -> Result<(), auditstream_producer::PublishError> {
//! use auditstream_kafka::KafkaConfig;
//! use auditstream_producer::{synthetic::Generator, Publisher};
//!
//! let publisher = Publisher::new(&KafkaConfig::with_brokers("127.0.0.1:19092"))?;
//! let mut generator = Generator::new(7);
//! let id = publisher.publish_lifecycle(generator.lifecycle()).await?;
//! println!("published {id}");
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod publisher;
pub mod synthetic;

pub use publisher::{PublishError, Publisher, Stream};
