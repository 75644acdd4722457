//! A destination to point sinks at when there is no SIEM: it accepts JSON POSTs on any path,
//! over HTTP or HTTPS, and records what arrived.
//!
//! * Every request's event id (the `x-auditstream-event-id` header, else `payload.id` of the
//!   body) is counted, so tests can tell missing events from duplicates.
//! * Bodies can be kept for inspection (e.g. to check that no secret survived).
//! * [`Receiver::fail_with`] makes it answer a chosen status, to simulate an outage;
//!   [`Receiver::set_delay`] makes it slow, and [`Receiver::drop_connections`] breaks each
//!   connection mid-response.
//! * [`verify`] compares the ids a producer published with the ids a receiver recorded:
//!   published, delivered, missing, duplicates.
//! * [`tls::SelfSignedCa`] makes a throw-away CA and a certificate for `127.0.0.1`/`localhost`,
//!   so that the sink can be tested with certificate verification on.
//!
//! ```no_run
//! # async fn example() -> std::io::Result<()> {
//! use auditstream_receiver::{Receiver, ReceiverOptions};
//!
//! let receiver = Receiver::start(ReceiverOptions::default()).await?;
//! println!("point a destination at {}", receiver.url());
//! # Ok(()) }
//! ```
#![deny(missing_docs)]

mod count;
mod server;
pub mod tls;
pub mod verify;

pub use server::{Receiver, ReceiverOptions, Snapshot};

/// Header the sink puts the event id in (mirrors `auditstream_sink_http::EVENT_ID_HEADER`).
pub const EVENT_ID_HEADER: &str = "x-auditstream-event-id";
