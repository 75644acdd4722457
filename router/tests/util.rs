//! Raw events written as JSON text by hand, so that what a serde round trip would merge (a name
//! repeated in one JSON object) reaches the router the way a producer could send it, plus the
//! checks every property makes on the router's output.

use auditstream_router::normalize::{route, Stream};
use auditstream_router::redact::Redaction;
use auditstream_schemas::avro;
use auditstream_schemas::raw::RawGatewayEvent;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::Value;

/// Part of every generated secret; it must never appear in the router's output.
pub const MARKER: &str = "SECRETMARK";

/// Cases per property: enough to explore, few enough for `cargo test` to stay quick in debug.
pub const CASES: u32 = 256;

/// A JSON value whose objects keep their entries in order, duplicate keys included. Object keys
/// are written between quotes as given, so that a test can spell them with escapes (`pass\u0077ord`).
#[derive(Debug, Clone)]
pub enum Json {
    Null,
    Bool(bool),
    Number(i64),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    /// The JSON text, duplicates kept.
    pub fn text(&self) -> String {
        match self {
            Json::Null => "null".to_owned(),
            Json::Bool(value) => value.to_string(),
            Json::Number(value) => value.to_string(),
            Json::String(value) => quoted(value),
            Json::Array(items) => {
                let items: Vec<String> = items.iter().map(Json::text).collect();
                format!("[{}]", items.join(","))
            }
            Json::Object(entries) => {
                let entries: Vec<String> = entries
                    .iter()
                    .map(|(key, value)| format!("\"{key}\":{}", value.text()))
                    .collect();
                format!("{{{}}}", entries.join(","))
            }
        }
    }
}

/// `text` as a JSON string literal.
pub fn quoted(text: &str) -> String {
    Value::String(text.to_owned()).to_string()
}

/// Header entries in the raw JSON form: one value as a string, several as an array.
pub type Headers = Vec<(String, Vec<String>)>;

fn headers_text(headers: &Headers) -> String {
    let entries: Vec<String> = headers
        .iter()
        .map(|(name, values)| {
            let values = match values.as_slice() {
                [one] => quoted(one),
                many => Json::Array(many.iter().cloned().map(Json::String).collect()).text(),
            };
            format!("{}:{values}", quoted(name))
        })
        .collect();
    format!("{{{}}}", entries.join(","))
}

/// The parts of a raw gateway event that the properties vary.
#[derive(Debug, Clone)]
pub struct Gateway {
    pub path: String,
    pub ip_address: Option<String>,
    pub request_headers: Headers,
    pub request_body: String,
    pub response_headers: Headers,
    pub response_body: String,
}

impl Default for Gateway {
    fn default() -> Self {
        Gateway {
            path: "/api/ledger/v2/main/transactions".to_owned(),
            ip_address: Some("192.0.2.17".to_owned()),
            request_headers: Vec::new(),
            request_body: String::new(),
            response_headers: Vec::new(),
            response_body: String::new(),
        }
    }
}

impl Gateway {
    /// The raw event as JSON text, written by hand.
    pub fn text(&self) -> String {
        let ip_address = self.ip_address.as_deref().map_or("null".to_owned(), quoted);
        format!(
            r#"{{"id":"550e8400-e29b-41d4-a716-446655440000","trace_id":"t","timestamp":1777541021123,
            "organization_id":"o","stack_id":"s","ip_address":{ip_address},"claims":{{"sub":"u"}},
            "request":{{"method":"POST","path":{},"host":"h","headers":{},"body":{}}},
            "response":{{"status_code":200,"headers":{},"body":{}}}}}"#,
            quoted(&self.path),
            headers_text(&self.request_headers),
            quoted(&self.request_body),
            headers_text(&self.response_headers),
            quoted(&self.response_body),
        )
    }
}

/// A raw lifecycle event whose `data` is `data` (an object, written as JSON or as JSON text).
pub fn lifecycle_text(data: &Json, data_as_text: bool) -> String {
    let data = if data_as_text {
        quoted(&data.text())
    } else {
        data.text()
    };
    format!(
        r#"{{"id":"550e8400-e29b-41d4-a716-446655440000","type":"invitations.created",
        "timestamp":"2026-04-30T11:15:00+02:00","owner_id":"u","organization_id":"o",
        "subject":"u","data":{data}}}"#
    )
}

/// Routes `event` written as JSON and again encoded as Avro (where repeated header names are
/// merged by the encoder), and returns both envelopes, each checked by [`clean_envelope`].
pub fn route_gateway(event: &Gateway, redaction: &Redaction) -> Result<Vec<Value>, TestCaseError> {
    let json = event.text();
    let raw: RawGatewayEvent = serde_json::from_str(&json)
        .map_err(|err| TestCaseError::fail(format!("generated event does not parse: {err}")))?;
    let avro = avro::encode_gateway(&raw)
        .map_err(|err| TestCaseError::fail(format!("cannot encode as Avro: {err}")))?;
    [json.into_bytes(), avro]
        .iter()
        .map(|bytes| {
            let routed = route(Stream::Gateway, bytes, None, redaction)
                .map_err(|rejection| TestCaseError::fail(format!("rejected: {rejection:?}")))?;
            clean_envelope(&routed.body)
        })
        .collect()
}

/// The envelope parsed, after checking that it is JSON and that no byte of a secret is in it.
pub fn clean_envelope(body: &[u8]) -> Result<Value, TestCaseError> {
    let text = String::from_utf8_lossy(body);
    prop_assert!(!text.contains(MARKER), "a secret leaked: {text}");
    serde_json::from_slice(body)
        .map_err(|err| TestCaseError::fail(format!("envelope is not JSON ({err}): {text}")))
}

/// The header names of an envelope's `http.request.header` or `http.response.headers`.
pub fn header_names(envelope: &Value, pointer: &str) -> Vec<String> {
    envelope
        .pointer(pointer)
        .and_then(Value::as_object)
        .map(|headers| headers.keys().cloned().collect())
        .unwrap_or_default()
}
