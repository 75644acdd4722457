//! The router: raw topics in, v2 envelope topics out.
//!
//! Every raw record goes through three pure steps and one Kafka step:
//!
//! 1. **decode** ([`auditstream_schemas::avro`]): Avro single-object or JSON bytes to a raw event;
//! 2. **normalize** ([`normalize`]): validation, timestamps to ISO 8601 UTC with milliseconds,
//!    header maps to `Canonical-Name -> [values]`, the envelope serialized once;
//! 3. **redact** ([`redact`]): the always-on rules, then the operator's `[router.redaction]`
//!    rules ([`RedactionConfig`], compiled once into a [`redact::Redaction`]), applied before
//!    anything is serialized;
//! 4. **forward** ([`run`]): the envelope goes to `audit.v2.*` with routing metadata in Kafka
//!    headers, a rejected record goes to `audit.dlq.router` with the reason; the input offset is
//!    committed only once that write is acknowledged.
//!
//! ```
//! use auditstream_router::normalize::{route, Stream};
//! use auditstream_router::redact::Redaction;
//! use auditstream_router::RedactionConfig;
//!
//! let mut config = RedactionConfig::default();
//! config.gateway.mask_body_fields = vec!["password".to_owned()];
//! let redaction = Redaction::new(&config);
//!
//! let raw = br#"{"id":"550e8400-e29b-41d4-a716-446655440000","trace_id":"t",
//!   "timestamp":"2026-04-30T09:23:41.123Z","organization_id":"o","stack_id":"s",
//!   "request":{"method":"POST","path":"/api/users","host":"h",
//!     "headers":{"AUTHORIZATION":"Bearer secret"},
//!     "body":"{\"user\":\"u\",\"Password\":\"hunter2\"}"},
//!   "response":{"status_code":200}}"#;
//! let routed = route(Stream::Gateway, raw, None, &redaction).unwrap();
//! let text = String::from_utf8(routed.body).unwrap();
//! assert!(text.starts_with(r#"{"date":"2026-04-30T09:23:41.123Z","app":"gateway""#));
//! assert!(!text.contains("secret"));
//! assert!(text.contains(r#""body":"{\"user\":\"u\",\"Password\":\"********\"}""#));
//! ```
#![deny(missing_docs)]

mod config;
mod error;
mod metrics;
pub mod normalize;
pub mod redact;
mod run;

pub use config::{
    GatewayRedactionConfig, IpAddressRule, MembershipRedactionConfig, RedactionConfig, RouterConfig,
};
pub use error::RouterError;
pub use metrics::RouterMetrics;
pub use run::run;
