//! Wire formats of auditstream.
//!
//! Two families of shapes travel through the pipeline:
//!
//! * **Raw events** ([`raw`]): what services publish to `audit.raw.*`. They are the producers' own
//!   shapes, encoded as Avro single-object messages ([`avro`]) so that any consumer can decode them
//!   without a schema registry; JSON with the same field names is accepted too.
//! * **The v2 envelope** ([`envelope`]): what destinations receive, produced by the router on
//!   `audit.v2.*`. Its field names and order follow the reference product byte for byte.
//!
//! Destinations can check what they receive against the JSON Schema of the envelope published in
//! `schemas/json/` ([`json_schema`]).
//!
//! Routing metadata that lets sinks filter without parsing the envelope travels in Kafka headers
//! whose names are in [`headers`]. The lifecycle event types are in [`catalogue`]; [`pattern`]
//! matches them (`stacks.*`) for destination filters and inspection commands.
//!
//! ```
//! use auditstream_schemas::{avro, raw::RawLifecycleEvent};
//!
//! let event: RawLifecycleEvent = serde_json::from_str(r#"{
//!     "id": "7b0c7d5e-2b7e-4c43-a1d4-0c6d1e3f1a11", "type": "stacks.created",
//!     "timestamp": "2026-04-30T11:15:00+02:00", "owner_id": "u1",
//!     "organization_id": "org1", "subject": "u1", "data": {"name": "prod-stack"}
//! }"#).unwrap();
//! let bytes = avro::encode_lifecycle(&event).unwrap();
//! assert_eq!(avro::decode_lifecycle(&bytes).unwrap(), event);
//! ```
#![deny(missing_docs)]

pub mod avro;
pub mod catalogue;
pub mod envelope;
mod error;
pub mod headers;
pub mod json_object;
pub mod json_schema;
pub mod json_string;
pub mod pattern;
pub mod raw;

pub use error::SchemaError;
