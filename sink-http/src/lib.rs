//! The HTTP sink: one destination, one consumer group, at-least-once delivery.
//!
//! Data flow of one worker ([`run`], stages in `worker.rs`):
//!
//! ```text
//! audit.v2.* --(consumer group auditstream.sink.<name>)--> record + routing metadata (Kafka headers)
//!   --> filter (stacks, organisations, type patterns)
//!   --> batch (max events, bytes, linger; never mixing apps)
//!   --> encode (the destination's format, envelope bytes as they are; optional gzip, HMAC signature)
//!   --> POST --> retry::classify: delivered | retried with backoff | dead-lettered (audit.dlq.<name>)
//!   --> offsets finished; committed on a timer, on revocation and on shutdown
//! ```
//!
//! The sink never parses the envelope: the router already validated and serialized it, and the
//! metadata travels in Kafka headers. An event's offset is finished only once it is delivered or
//! its dead letter is acknowledged. Memory is bounded by `max_in_flight` events and bytes: past
//! either, the worker stops reading; if that lasts (an outage) it pauses its partitions and polls
//! again, so that it stays in the group. [`replay`] sends dead letters again through the same
//! stages.
//!
//! Configuration is [`DestinationConfig`]; [`DestinationConfig::validate`] resolves secrets from
//! the environment and checks everything before a client is built.
#![deny(missing_docs)]

mod client;
mod config;
mod dlq;
pub mod encode;
mod error;
mod metrics;
mod replay;
pub mod retry;
pub mod sign;
mod worker;

pub use config::{
    BatchConfig, Destination, DestinationConfig, FilterConfig, RetryConfig, Secret, SigningKey,
    StreamName, TlsConfig,
};
pub use error::SinkError;
pub use metrics::SinkMetrics;
pub use replay::replay;
pub use worker::{run, EVENT_ID_HEADER};
