//! Kafka plumbing shared by every auditstream process.
//!
//! * [`KafkaConfig`] turns the `[kafka]` section of the config file into librdkafka client
//!   configurations with the settings the pipeline relies on (manual offset storage, idempotent
//!   producer, low fetch wait).
//! * [`lag`] measures how far behind the pipeline's consumer groups are, from the broker alone.
//! * [`topics`] names the pipeline's topics and creates them with partitions and retention.
//! * [`scan`], [`scan_window`] and [`follow`] read topics without a consumer group, for the
//!   inspection commands.
//! * [`OffsetTracker`] and [`TrackingContext`] implement "commit only behind finished work":
//!   records may finish out of order, but the committed position of a partition never passes a
//!   record that is still in flight, and revoked partitions are committed before they move.
#![deny(missing_docs)]

mod config;
mod error;
pub mod lag;
mod offsets;
mod produce;
mod scan;
pub mod topics;

pub use config::{KafkaConfig, Prefetch};
pub use error::{is_transient, KafkaError};
pub use offsets::{
    close_within, OffsetTracker, TrackingConsumer, TrackingContext, CONSUMER_CLOSE_TIMEOUT,
};
pub use produce::produce_until_acked;
pub use scan::{follow, partitions_of, scan, scan_window, TimeWindow};
