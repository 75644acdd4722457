//! The HTTP sink: one destination, one consumer group, at-least-once delivery.
//!
//! Data flow of one worker ([`run`]):
//!
//! ```text
//! audit.v2.* --(consumer group auditstream.sink.<name>)--> record
//!   --> request  (envelope bytes as they are, configured headers, event id header)
//!   --> POST, retried with capped exponential backoff and jitter until 2xx (Retry-After honoured)
//!   --> offset finished; committed on a timer, on revocation and on shutdown
//! ```
//!
//! The sink never parses the envelope: the router already validated and serialized it, and the
//! event id travels in a Kafka header. Memory is bounded by `max_in_flight`: when that many
//! deliveries are pending the worker pauses its partitions, keeps polling (so it stays in the
//! group), and resumes once deliveries complete.
//!
//! Configuration is [`DestinationConfig`]; [`DestinationConfig::validate`] resolves secrets from
//! the environment and checks everything before a client is built.
#![deny(missing_docs)]

mod client;
mod config;
mod dlq;
pub mod encode;
mod error;
mod replay;
pub mod retry;
pub mod sign;
mod worker;

pub use config::{
    BatchConfig, Destination, DestinationConfig, FilterConfig, RetryConfig, Secret, SigningKey,
    StreamName, TlsConfig,
};
pub use error::SinkError;
pub use replay::replay;
pub use worker::{run, EVENT_ID_HEADER, SIGNATURE_HEADER};
