//! Request bodies: the envelopes of one request framed in the destination's format.
//!
//! The router has already validated and serialized every envelope, and the routing metadata
//! travels in Kafka headers ([`EventMeta`]), so nothing here parses an envelope: [`encode`]
//! copies the envelope bytes into one buffer sized up front and writes the format's framing
//! around them. The only change ever made to envelope bytes is JSON string escaping, for Datadog,
//! whose `message` must be a string.
//!
//! | `format`             | body                                                   | `Content-Type`         |
//! |----------------------|--------------------------------------------------------|------------------------|
//! | `json` (default)     | the envelope; one event per request                    | `application/json`     |
//! | `json_array`         | `[e1,e2]`                                              | `application/json`     |
//! | `ndjson`             | `e1\ne2\n`                                             | `application/x-ndjson` |
//! | `splunk_hec`         | one HEC event object per envelope, each ending in `\n` | `application/json`     |
//! | `datadog`            | a JSON array of logs whose `message` is the envelope   | `application/json`     |
//! | `elasticsearch_bulk` | a `create` action line and the envelope, per event     | `application/x-ndjson` |
//!
//! Framing relies on what the router writes (`serde_json::to_vec`): each envelope is one compact
//! JSON object in valid UTF-8 with no raw newline. A record that breaks this (say, produced to an
//! envelope topic by hand) makes the whole body invalid, and the destination refuses it.
//!
//! [`gzip`] compresses a body for `Content-Encoding: gzip`; [`parse_bulk_response`] reads the
//! per-event outcome out of an Elasticsearch `_bulk` answer.

use std::borrow::Borrow;
use std::io::Write;

use auditstream_schemas::json_string::{push_escaped, push_string};
use bytes::Bytes;
use flate2::write::GzEncoder;
use flate2::Compression;
use serde::Deserialize;

/// Most log entries Datadog accepts in one request.
///
/// Datadog's "Send logs" API reference (`POST /api/v2/logs`, docs.datadoghq.com/api/latest/logs)
/// limits a request to an array of 1000 entries.
pub const DATADOG_MAX_ENTRIES: usize = 1000;

/// Largest uncompressed body Datadog accepts; a larger one is refused with `413`.
///
/// The same reference says "5MB"; this is the smaller reading, 5,000,000 bytes, so that a full
/// batch is never refused.
pub const DATADOG_MAX_PAYLOAD_BYTES: usize = 5_000_000;

/// Largest single log entry Datadog keeps whole ("1MB", read as 1,000,000 bytes).
///
/// A larger entry is not refused: Datadog answers 2xx and truncates it, so an event over this
/// would arrive cut short. It is measured on the entry as sent, where the escaped envelope is
/// larger than the envelope itself.
pub const DATADOG_MAX_LOG_BYTES: usize = 1_000_000;

const APPLICATION_JSON: &str = "application/json";
const APPLICATION_NDJSON: &str = "application/x-ndjson";

/// Routing metadata of one event, read from its Kafka headers (not from the envelope).
///
/// Its five texts share one allocation: a batched sink reads a few hundred thousand events a
/// second on one thread, and a `String` each was a measurable part of that thread's time
/// (docs/PERFORMANCE.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventMeta {
    /// Event id, app, type, organisation id and stack id, one after another.
    text: String,
    /// Where each of the five ends in `text`.
    ends: [usize; 5],
    has_stack_id: bool,
    /// Event time, milliseconds since the Unix epoch.
    pub date_ms: i64,
}

impl EventMeta {
    /// Metadata of one event; an empty `event_id` means the record carried none.
    pub fn new(
        event_id: &str,
        app: &str,
        event_type: &str,
        organization_id: &str,
        stack_id: Option<&str>,
        date_ms: i64,
    ) -> EventMeta {
        let fields = [
            event_id,
            app,
            event_type,
            organization_id,
            stack_id.unwrap_or_default(),
        ];
        let mut text = String::with_capacity(fields.iter().map(|field| field.len()).sum());
        let mut ends = [0; 5];
        for (end, field) in ends.iter_mut().zip(fields) {
            text.push_str(field);
            *end = text.len();
        }
        EventMeta {
            text,
            ends,
            has_stack_id: stack_id.is_some(),
            date_ms,
        }
    }

    fn field(&self, index: usize) -> &str {
        let start = if index == 0 { 0 } else { self.ends[index - 1] };
        &self.text[start..self.ends[index]]
    }

    /// Stable event id (UUID), the same on every redelivery; empty if the record had none.
    pub fn event_id(&self) -> &str {
        self.field(0)
    }

    /// Emitting service: `gateway` or `membership`.
    pub fn app(&self) -> &str {
        self.field(1)
    }

    /// Event type: `AUDIT`, or a lifecycle type such as `stacks.created`.
    pub fn event_type(&self) -> &str {
        self.field(2)
    }

    /// Organisation the event belongs to.
    pub fn organization_id(&self) -> &str {
        self.field(3)
    }

    /// Stack the event belongs to; absent for organisation-level events.
    pub fn stack_id(&self) -> Option<&str> {
        self.has_stack_id.then(|| self.field(4))
    }

    /// The bytes of the five texts together.
    fn text_len(&self) -> usize {
        self.text.len()
    }
}

/// One event to deliver: its metadata and its envelope exactly as the router serialized it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Routing metadata.
    pub meta: EventMeta,
    /// The v2 envelope: one compact JSON object.
    pub envelope: Bytes,
}

/// A request body and its `Content-Type`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// The body, uncompressed.
    pub body: Vec<u8>,
    /// Value of the `Content-Type` header.
    pub content_type: &'static str,
}

/// Body format of a destination, with the options of the vendor formats.
///
/// It is read from keys of the destination's table: `format` names the format, and the table
/// named after the vendor holds its options:
///
/// ```toml
/// format = "splunk_hec"
/// splunk = { host = "auditstream", source = "auditstream", sourcetype = "auditstream:v2", index = "audit" }
/// ```
///
/// `format` is one of `json` (the default), `json_array`, `ndjson`, `splunk_hec`, `datadog` and
/// `elasticsearch_bulk`. The `splunk`, `datadog` and `elasticsearch` tables are optional, since
/// every option has a default, and each is accepted only next to its own format: options of
/// another format are refused as a mistake rather than silently ignored. Unknown keys are refused.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "FormatTable")]
pub enum FormatConfig {
    /// `json`: the envelope as the body, one event per request (the caller never batches this
    /// format).
    #[default]
    Json,
    /// `json_array`: the envelopes as one JSON array.
    JsonArray,
    /// `ndjson`: one envelope per line.
    Ndjson,
    /// `splunk_hec`: events for Splunk's HTTP Event Collector, `/services/collector/event`.
    SplunkHec(SplunkOptions),
    /// `datadog`: logs for Datadog's logs intake, `POST /api/v2/logs`.
    Datadog(DatadogOptions),
    /// `elasticsearch_bulk`: `create` actions for Elasticsearch's `_bulk` API.
    ElasticsearchBulk(ElasticsearchOptions),
}

/// `splunk = { ... }`: the metadata of every HEC event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SplunkOptions {
    /// `host` of every event. Default `"auditstream"`.
    #[serde(default = "default_auditstream")]
    pub host: String,
    /// `source` of every event. Default `"auditstream"`.
    #[serde(default = "default_auditstream")]
    pub source: String,
    /// `sourcetype` of every event. Default `"auditstream:v2"`.
    #[serde(default = "default_sourcetype")]
    pub sourcetype: String,
    /// `index` of every event; it must be one the HEC token may write to. Default: none, so the
    /// event goes to the token's default index.
    #[serde(default)]
    pub index: Option<String>,
}

/// `datadog = { ... }`: the reserved attributes of every log entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatadogOptions {
    /// `ddsource`, the technology the logs come from. Default `"auditstream"`.
    #[serde(default = "default_auditstream")]
    pub ddsource: String,
    /// `service`. Default `"auditstream"`.
    #[serde(default = "default_auditstream")]
    pub service: String,
    /// `hostname`. Default: none, and the attribute is left out.
    #[serde(default)]
    pub hostname: Option<String>,
    /// Tags put first in `ddtags`, e.g. `["env:prod"]`, before the per-event tags `app`, `type`,
    /// `organization_id` and `stack_id`. A tag may not contain a comma (the tag separator).
    /// Default: none.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// `elasticsearch = { ... }`: where documents go.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticsearchOptions {
    /// Index (or alias) of every document. Default `"auditstream-events"`. A data stream works
    /// only with an ingest pipeline that sets `@timestamp` (e.g. from the envelope's `date`).
    #[serde(default = "default_index")]
    pub index: String,
}

fn default_auditstream() -> String {
    "auditstream".to_owned()
}
fn default_sourcetype() -> String {
    "auditstream:v2".to_owned()
}
fn default_index() -> String {
    "auditstream-events".to_owned()
}

impl Default for SplunkOptions {
    fn default() -> Self {
        SplunkOptions {
            host: default_auditstream(),
            source: default_auditstream(),
            sourcetype: default_sourcetype(),
            index: None,
        }
    }
}

impl Default for DatadogOptions {
    fn default() -> Self {
        DatadogOptions {
            ddsource: default_auditstream(),
            service: default_auditstream(),
            hostname: None,
            tags: Vec::new(),
        }
    }
}

impl Default for ElasticsearchOptions {
    fn default() -> Self {
        ElasticsearchOptions {
            index: default_index(),
        }
    }
}

/// The format keys of a destination table as written, before the checks of
/// `FormatConfig::try_from`: for a config struct that declares these keys itself rather than
/// flattening a [`FormatConfig`] into its table.
///
/// The checks refuse options of a format other than the chosen one (most likely a mistake, and
/// dead configuration otherwise), a Datadog tag with a comma and an empty Elasticsearch index.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FormatTable {
    /// `format`: the body format. Default `json`.
    #[serde(default)]
    pub format: FormatName,
    /// `splunk`: options of `splunk_hec`. Default: every option's default.
    #[serde(default)]
    pub splunk: Option<SplunkOptions>,
    /// `datadog`: options of `datadog`. Default: every option's default.
    #[serde(default)]
    pub datadog: Option<DatadogOptions>,
    /// `elasticsearch`: options of `elasticsearch_bulk`. Default: every option's default.
    #[serde(default)]
    pub elasticsearch: Option<ElasticsearchOptions>,
}

/// The value of a `format` key: a [`FormatConfig`] without its options.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FormatName {
    /// `json`, the default.
    #[default]
    Json,
    /// `json_array`.
    JsonArray,
    /// `ndjson`.
    Ndjson,
    /// `splunk_hec`.
    SplunkHec,
    /// `datadog`.
    Datadog,
    /// `elasticsearch_bulk`.
    ElasticsearchBulk,
}

impl TryFrom<FormatTable> for FormatConfig {
    type Error = String;

    fn try_from(table: FormatTable) -> Result<Self, String> {
        let FormatTable {
            format,
            splunk,
            datadog,
            elasticsearch,
        } = table;
        let misplaced = if splunk.is_some() && format != FormatName::SplunkHec {
            Some(("splunk", "splunk_hec"))
        } else if datadog.is_some() && format != FormatName::Datadog {
            Some(("datadog", "datadog"))
        } else if elasticsearch.is_some() && format != FormatName::ElasticsearchBulk {
            Some(("elasticsearch", "elasticsearch_bulk"))
        } else {
            None
        };
        if let Some((table, owner)) = misplaced {
            return Err(format!(
                "`{table}` options apply only to format = \"{owner}\"; remove them or change `format`"
            ));
        }
        Ok(match format {
            FormatName::Json => FormatConfig::Json,
            FormatName::JsonArray => FormatConfig::JsonArray,
            FormatName::Ndjson => FormatConfig::Ndjson,
            FormatName::SplunkHec => FormatConfig::SplunkHec(splunk.unwrap_or_default()),
            FormatName::Datadog => {
                let datadog = datadog.unwrap_or_default();
                if let Some(tag) = datadog.tags.iter().find(|tag| tag.contains(',')) {
                    return Err(format!(
                        "datadog.tags: {tag:?} contains a comma, which separates tags; list each tag on its own"
                    ));
                }
                FormatConfig::Datadog(datadog)
            }
            FormatName::ElasticsearchBulk => {
                let elasticsearch = elasticsearch.unwrap_or_default();
                if elasticsearch.index.is_empty() {
                    return Err("elasticsearch.index must not be empty".to_owned());
                }
                FormatConfig::ElasticsearchBulk(elasticsearch)
            }
        })
    }
}

impl FormatConfig {
    /// Whether a 2xx answer carries an outcome per event, to be read with
    /// [`parse_bulk_response`]: true for `elasticsearch_bulk`, whose 200 may hold refused items.
    pub fn is_bulk(&self) -> bool {
        matches!(self, FormatConfig::ElasticsearchBulk(_))
    }
}

/// Frames `events` into one request body of `format`.
///
/// Envelopes are copied as they are, in order; metadata and options are JSON-escaped. See the
/// module documentation for the shape of each format. `events` may hold events or references to
/// them, so that a batch need not be cloned.
///
/// # Panics
///
/// If `events` is empty, or if `format` is `json` and `events` holds more than one event: both
/// are bugs of the caller, which sends nothing for no events and never batches `json`.
pub fn encode<E: Borrow<Event>>(format: &FormatConfig, events: &[E]) -> Encoded {
    assert!(!events.is_empty(), "encode needs at least one event");
    let each = || events.iter().map(Borrow::borrow);
    let mut body = Vec::with_capacity(capacity(format, each()));
    let content_type = match format {
        FormatConfig::Json => {
            let [event] = events else {
                panic!("format json carries one event per request");
            };
            body.extend_from_slice(&event.borrow().envelope);
            APPLICATION_JSON
        }
        FormatConfig::JsonArray => {
            body.push(b'[');
            for (i, event) in each().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                body.extend_from_slice(&event.envelope);
            }
            body.push(b']');
            APPLICATION_JSON
        }
        FormatConfig::Ndjson => {
            for event in each() {
                body.extend_from_slice(&event.envelope);
                body.push(b'\n');
            }
            APPLICATION_NDJSON
        }
        FormatConfig::SplunkHec(splunk) => {
            for event in each() {
                push_splunk_event(&mut body, splunk, event);
            }
            APPLICATION_JSON
        }
        FormatConfig::Datadog(datadog) => {
            body.push(b'[');
            for (i, event) in each().enumerate() {
                if i > 0 {
                    body.push(b',');
                }
                push_datadog_log(&mut body, datadog, event);
            }
            body.push(b']');
            APPLICATION_JSON
        }
        FormatConfig::ElasticsearchBulk(elasticsearch) => {
            for event in each() {
                // `create`, not `index`: a redelivered event whose id is already indexed fails
                // with 409 instead of overwriting the document, and counts as delivered.
                body.extend_from_slice(br#"{"create":{"_index":"#);
                push_string(&mut body, elasticsearch.index.as_bytes());
                body.extend_from_slice(br#","_id":"#);
                push_string(&mut body, event.meta.event_id().as_bytes());
                body.extend_from_slice(b"}}\n");
                body.extend_from_slice(&event.envelope);
                body.push(b'\n');
            }
            APPLICATION_NDJSON
        }
    };
    Encoded { body, content_type }
}

/// One event for HEC's `/services/collector/event` endpoint.
///
/// What it relies on, from Splunk's "Format events for HTTP Event Collector" (Getting Data In
/// manual) and "Automate indexed field extractions with HTTP Event Collector":
/// - several event objects may be sent one after another in one request (batching);
/// - `time` is epoch time `<sec>.<ms>`; `host`, `source`, `sourcetype` and `index` are the
///   metadata keys, `index` being optional (the token's default index otherwise);
/// - `fields` holds flat custom fields indexed with the event (not shown in its text), which
///   only the `/collector/event` endpoint honours;
/// - `event` may be a JSON object, so the envelope goes in verbatim.
fn push_splunk_event(out: &mut Vec<u8>, splunk: &SplunkOptions, event: &Event) {
    let meta = &event.meta;
    out.extend_from_slice(br#"{"time":"#);
    push_epoch_seconds(out, meta.date_ms);
    out.extend_from_slice(br#","host":"#);
    push_string(out, splunk.host.as_bytes());
    out.extend_from_slice(br#","source":"#);
    push_string(out, splunk.source.as_bytes());
    out.extend_from_slice(br#","sourcetype":"#);
    push_string(out, splunk.sourcetype.as_bytes());
    if let Some(index) = &splunk.index {
        out.extend_from_slice(br#","index":"#);
        push_string(out, index.as_bytes());
    }
    out.extend_from_slice(br#","fields":{"event_id":"#);
    push_string(out, meta.event_id().as_bytes());
    out.extend_from_slice(br#","app":"#);
    push_string(out, meta.app().as_bytes());
    out.extend_from_slice(br#","type":"#);
    push_string(out, meta.event_type().as_bytes());
    out.extend_from_slice(br#","organization_id":"#);
    push_string(out, meta.organization_id().as_bytes());
    if let Some(stack_id) = meta.stack_id() {
        out.extend_from_slice(br#","stack_id":"#);
        push_string(out, stack_id.as_bytes());
    }
    out.extend_from_slice(br#"},"event":"#);
    out.extend_from_slice(&event.envelope);
    out.extend_from_slice(b"}\n");
}

/// One log entry for Datadog's `POST /api/v2/logs`.
///
/// Field names are those of the API's `HTTPLogItem` (docs.datadoghq.com/api/latest/logs):
/// `ddsource`, `ddtags` (comma-separated `key:value` tags), `hostname`, `service` and `message`,
/// a string that Datadog takes as the body of the log. The envelope becomes that string, escaped.
fn push_datadog_log(out: &mut Vec<u8>, datadog: &DatadogOptions, event: &Event) {
    let meta = &event.meta;
    out.extend_from_slice(br#"{"ddsource":"#);
    push_string(out, datadog.ddsource.as_bytes());
    out.extend_from_slice(br#","ddtags":""#);
    for tag in &datadog.tags {
        push_escaped(out, tag.as_bytes());
        out.push(b',');
    }
    out.extend_from_slice(b"app:");
    push_tag_value(out, meta.app());
    out.extend_from_slice(b",type:");
    push_tag_value(out, meta.event_type());
    out.extend_from_slice(b",organization_id:");
    push_tag_value(out, meta.organization_id());
    if let Some(stack_id) = meta.stack_id() {
        out.extend_from_slice(b",stack_id:");
        push_tag_value(out, stack_id);
    }
    out.push(b'"');
    if let Some(hostname) = &datadog.hostname {
        out.extend_from_slice(br#","hostname":"#);
        push_string(out, hostname.as_bytes());
    }
    out.extend_from_slice(br#","service":"#);
    push_string(out, datadog.service.as_bytes());
    out.extend_from_slice(br#","message":"#);
    push_string(out, &event.envelope);
    out.push(b'}');
}

/// A metadata value inside `ddtags`: a comma would split it into two tags, so it becomes `_`,
/// the character Datadog itself substitutes for characters not allowed in tags.
fn push_tag_value(out: &mut Vec<u8>, value: &str) {
    if value.contains(',') {
        push_escaped(out, value.replace(',', "_").as_bytes());
    } else {
        push_escaped(out, value.as_bytes());
    }
}

/// Bytes `encode` will need, so that the body is allocated once. Exact for `json`, `json_array`
/// and `ndjson`; for the other formats it counts metadata and options unescaped, and allows
/// Datadog's escaped envelopes a quarter more than their length: a gateway envelope whose bodies
/// hold JSON has about one quote or backslash in seven bytes.
fn capacity<'a>(format: &FormatConfig, events: impl Iterator<Item = &'a Event>) -> usize {
    let metadata = EventMeta::text_len;
    let per_event = |event: &Event| match format {
        FormatConfig::Json => 0,
        FormatConfig::JsonArray | FormatConfig::Ndjson => 1,
        FormatConfig::SplunkHec(splunk) => {
            192 + splunk.host.len()
                + splunk.source.len()
                + splunk.sourcetype.len()
                + splunk.index.as_ref().map_or(0, String::len)
                + metadata(&event.meta)
        }
        FormatConfig::Datadog(datadog) => {
            128 + datadog.ddsource.len()
                + datadog.service.len()
                + datadog.hostname.as_ref().map_or(0, String::len)
                + datadog.tags.iter().map(|tag| tag.len() + 1).sum::<usize>()
                + metadata(&event.meta)
                + event.envelope.len() / 4
        }
        FormatConfig::ElasticsearchBulk(elasticsearch) => {
            48 + elasticsearch.index.len() + event.meta.event_id().len()
        }
    };
    2 + events
        .map(|event| event.envelope.len() + per_event(event))
        .sum::<usize>()
}

/// Epoch milliseconds as epoch seconds with three decimals, e.g. `1777541022.005`.
fn push_epoch_seconds(out: &mut Vec<u8>, date_ms: i64) {
    if date_ms < 0 {
        out.push(b'-');
    }
    let millis = date_ms.unsigned_abs();
    push_decimal(out, millis / 1000);
    let fraction = millis % 1000;
    out.extend_from_slice(&[
        b'.',
        b'0' + (fraction / 100) as u8,
        b'0' + (fraction / 10 % 10) as u8,
        b'0' + (fraction % 10) as u8,
    ]);
}

fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// `body` compressed with gzip at the default level, for `Content-Encoding: gzip`.
///
/// Audit envelopes are repetitive JSON and usually shrink several times over; Splunk HEC, Datadog
/// and Elasticsearch all accept gzip request bodies.
pub fn gzip(body: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(body.len() / 4), Compression::default());
    encoder
        .write_all(body)
        .expect("compressing into a Vec cannot fail");
    encoder
        .finish()
        .expect("compressing into a Vec cannot fail")
}

/// What became of one event of an Elasticsearch `_bulk` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ItemOutcome {
    /// Indexed now (2xx), or already indexed by an earlier delivery (409 with
    /// `version_conflict_engine_exception`, the answer `create` gives for an existing `_id`).
    Delivered,
    /// Refused for now: 429 (a full write queue), a 5xx, or a status outside 2xx/4xx/5xx, which
    /// is not understood and so not given up on. Send the event again.
    Retry {
        /// HTTP status of the item.
        status: u16,
        /// Elasticsearch's error type and reason.
        reason: String,
    },
    /// Refused for good: any other 4xx, e.g. 400 `mapper_parsing_exception` when the document
    /// does not fit the index mapping. Sending it again cannot succeed.
    Permanent {
        /// HTTP status of the item.
        status: u16,
        /// Elasticsearch's error type and reason.
        reason: String,
    },
}

/// A `_bulk` answer that cannot be matched to the events sent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BulkResponseError {
    /// The body is not a `_bulk` response to `create` actions (e.g. an error page from a proxy).
    #[error("not an Elasticsearch bulk response: {source}")]
    NotBulkResponse {
        /// The JSON parser's error.
        #[source]
        source: serde_json::Error,
    },
    /// The response has a different number of items than events were sent.
    #[error("bulk response has {received} items for {sent} events sent")]
    ItemCount {
        /// Events in the request.
        sent: usize,
        /// Items in the response.
        received: usize,
    },
}

#[derive(Deserialize)]
struct BulkResponse {
    items: Vec<BulkItem>,
}

#[derive(Deserialize)]
struct BulkItem {
    create: BulkItemResult,
}

#[derive(Deserialize)]
struct BulkItemResult {
    status: u16,
    #[serde(default)]
    error: Option<BulkItemError>,
}

#[derive(Deserialize)]
struct BulkItemError {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    reason: Option<String>,
}

/// The outcome of each event of a `_bulk` request that `sent` events, in the order they were sent,
/// from the body of a 200 answer.
///
/// The HTTP status of a `_bulk` answer says little: a 200 may hold refused items, and each item
/// carries its own status (`{"errors":true,"items":[{"create":{"status":429,"error":{...}}}]}`).
/// Parsing with serde is fine here: answers are small and off the per-event path.
///
/// Reasons may quote the document: since 8.18 Elasticsearch includes the source in parsing errors
/// unless the request has `?include_source_on_error=false`. Treat a reason like event data.
pub fn parse_bulk_response(
    body: &[u8],
    sent: usize,
) -> Result<Vec<ItemOutcome>, BulkResponseError> {
    let response: BulkResponse = serde_json::from_slice(body)
        .map_err(|source| BulkResponseError::NotBulkResponse { source })?;
    if response.items.len() != sent {
        return Err(BulkResponseError::ItemCount {
            sent,
            received: response.items.len(),
        });
    }
    Ok(response
        .items
        .into_iter()
        .map(|item| item_outcome(item.create))
        .collect())
}

fn item_outcome(item: BulkItemResult) -> ItemOutcome {
    let status = item.status;
    let already_indexed = status == 409
        && item
            .error
            .as_ref()
            .is_some_and(|error| error.kind == "version_conflict_engine_exception");
    if (200..300).contains(&status) || already_indexed {
        return ItemOutcome::Delivered;
    }
    let reason = match item.error {
        Some(BulkItemError {
            kind,
            reason: Some(reason),
        }) => format!("{kind}: {reason}"),
        Some(BulkItemError { kind, reason: None }) => kind,
        None => format!("status {status} without error details"),
    };
    if (400..500).contains(&status) && status != 429 {
        ItemOutcome::Permanent { status, reason }
    } else {
        ItemOutcome::Retry { status, reason }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// A gateway event with a stack, whose envelope holds escaped characters, and a lifecycle
    /// event without a stack, whose envelope holds non-ASCII text and whose time has a
    /// millisecond part below 100.
    fn events() -> Vec<Event> {
        vec![
            Event {
                meta: EventMeta::new(
                    "id-1",
                    "gateway",
                    "AUDIT",
                    "org_1",
                    Some("stack_1"),
                    1_777_541_021_123,
                ),
                envelope: Bytes::from_static(
                    br#"{"date":"2026-04-30T09:23:41.123Z","app":"gateway","version":"v2","type":"AUDIT","payload":{"id":"id-1","note":"a \"b\" \\ c"}}"#,
                ),
            },
            Event {
                meta: EventMeta::new(
                    "id-2",
                    "membership",
                    "stacks.created",
                    "org_2",
                    None,
                    1_777_541_022_005,
                ),
                envelope: Bytes::from_static(
                    r#"{"date":"2026-04-30T09:23:42.005Z","app":"membership","version":"v2","type":"stacks.created","payload":{"name":"été"}}"#
                        .as_bytes(),
                ),
            },
        ]
    }

    fn format(toml_text: &str) -> Result<FormatConfig, String> {
        toml::from_str(toml_text).map_err(|err| err.to_string())
    }

    /// Encodes the two events, checks that the body is valid JSON (or NDJSON), that it fit the
    /// buffer sized up front, and returns it as text.
    fn encode_both(format: &FormatConfig, content_type: &str) -> String {
        let events = events();
        let encoded = encode(format, &events);
        assert_eq!(encoded.content_type, content_type);
        assert!(
            encoded.body.len() <= capacity(format, events.iter()),
            "the body outgrew its buffer"
        );
        let text = String::from_utf8(encoded.body).unwrap();
        if content_type == APPLICATION_NDJSON {
            for line in text.lines() {
                serde_json::from_str::<serde_json::Value>(line).unwrap();
            }
        } else {
            for value in serde_json::Deserializer::from_str(&text).into_iter::<serde_json::Value>()
            {
                value.unwrap();
            }
        }
        text
    }

    #[test]
    fn meta_gives_back_each_field_as_given() {
        let meta = EventMeta::new("id-1", "gateway", "AUDIT", "org_1", Some("stack_1"), 7);
        assert_eq!(
            (
                meta.event_id(),
                meta.app(),
                meta.event_type(),
                meta.organization_id(),
                meta.stack_id(),
                meta.date_ms
            ),
            ("id-1", "gateway", "AUDIT", "org_1", Some("stack_1"), 7)
        );
        // An empty stack id header is kept apart from no header at all.
        assert_eq!(
            EventMeta::new("", "a", "", "o", Some(""), 0).stack_id(),
            Some("")
        );
        let none = EventMeta::new("", "membership", "stacks.created", "", None, 0);
        assert_eq!(
            (
                none.event_id(),
                none.app(),
                none.event_type(),
                none.organization_id(),
                none.stack_id()
            ),
            ("", "membership", "stacks.created", "", None)
        );
    }

    #[test]
    fn json_is_the_envelope_itself() {
        let events = events();
        let encoded = encode(&FormatConfig::Json, &events[..1]);
        assert_eq!(encoded.body, events[0].envelope);
        assert_eq!(encoded.content_type, "application/json");
    }

    #[test]
    fn references_encode_like_events() {
        let events = events();
        let references: Vec<&Event> = events.iter().collect();
        let format = FormatConfig::ElasticsearchBulk(ElasticsearchOptions::default());
        assert_eq!(encode(&format, &references), encode(&format, &events));
        assert!(format.is_bulk());
        assert!(!FormatConfig::Ndjson.is_bulk());
    }

    #[test]
    #[should_panic(expected = "one event per request")]
    fn json_refuses_a_batch() {
        encode(&FormatConfig::Json, &events());
    }

    #[test]
    fn json_array() {
        let expected = r#"[{"date":"2026-04-30T09:23:41.123Z","app":"gateway","version":"v2","type":"AUDIT","payload":{"id":"id-1","note":"a \"b\" \\ c"}},{"date":"2026-04-30T09:23:42.005Z","app":"membership","version":"v2","type":"stacks.created","payload":{"name":"été"}}]"#;
        assert_eq!(
            encode_both(&FormatConfig::JsonArray, "application/json"),
            expected
        );
    }

    #[test]
    fn ndjson() {
        let expected = r#"{"date":"2026-04-30T09:23:41.123Z","app":"gateway","version":"v2","type":"AUDIT","payload":{"id":"id-1","note":"a \"b\" \\ c"}}
{"date":"2026-04-30T09:23:42.005Z","app":"membership","version":"v2","type":"stacks.created","payload":{"name":"été"}}
"#;
        assert_eq!(
            encode_both(&FormatConfig::Ndjson, "application/x-ndjson"),
            expected
        );
    }

    #[test]
    fn splunk_hec() {
        let format = format(
            r#"format = "splunk_hec"
               splunk = { host = "auditstream", source = "auditstream", sourcetype = "auditstream:v2", index = "audit" }"#,
        )
        .unwrap();
        let expected = r#"{"time":1777541021.123,"host":"auditstream","source":"auditstream","sourcetype":"auditstream:v2","index":"audit","fields":{"event_id":"id-1","app":"gateway","type":"AUDIT","organization_id":"org_1","stack_id":"stack_1"},"event":{"date":"2026-04-30T09:23:41.123Z","app":"gateway","version":"v2","type":"AUDIT","payload":{"id":"id-1","note":"a \"b\" \\ c"}}}
{"time":1777541022.005,"host":"auditstream","source":"auditstream","sourcetype":"auditstream:v2","index":"audit","fields":{"event_id":"id-2","app":"membership","type":"stacks.created","organization_id":"org_2"},"event":{"date":"2026-04-30T09:23:42.005Z","app":"membership","version":"v2","type":"stacks.created","payload":{"name":"été"}}}
"#;
        assert_eq!(encode_both(&format, "application/json"), expected);
    }

    #[test]
    fn splunk_hec_defaults_leave_index_out() {
        let format = format(r#"format = "splunk_hec""#).unwrap();
        let text = encode_both(&format, "application/json");
        assert!(text.starts_with(r#"{"time":1777541021.123,"host":"auditstream","source":"auditstream","sourcetype":"auditstream:v2","fields":{"#), "{text}");
    }

    #[test]
    fn datadog() {
        let format = format(
            r#"format = "datadog"
               datadog = { ddsource = "auditstream", service = "audit", hostname = "sink-1", tags = ["env:prod", "team:sec"] }"#,
        )
        .unwrap();
        let expected = r#"[{"ddsource":"auditstream","ddtags":"env:prod,team:sec,app:gateway,type:AUDIT,organization_id:org_1,stack_id:stack_1","hostname":"sink-1","service":"audit","message":"{\"date\":\"2026-04-30T09:23:41.123Z\",\"app\":\"gateway\",\"version\":\"v2\",\"type\":\"AUDIT\",\"payload\":{\"id\":\"id-1\",\"note\":\"a \\\"b\\\" \\\\ c\"}}"},{"ddsource":"auditstream","ddtags":"env:prod,team:sec,app:membership,type:stacks.created,organization_id:org_2","hostname":"sink-1","service":"audit","message":"{\"date\":\"2026-04-30T09:23:42.005Z\",\"app\":\"membership\",\"version\":\"v2\",\"type\":\"stacks.created\",\"payload\":{\"name\":\"été\"}}"}]"#;
        let text = encode_both(&format, "application/json");
        assert_eq!(text, expected);
        // The message decodes back to the envelope byte for byte.
        let logs: Vec<serde_json::Value> = serde_json::from_str(&text).unwrap();
        for (log, event) in logs.iter().zip(events()) {
            assert_eq!(log["message"].as_str().unwrap().as_bytes(), event.envelope);
        }
    }

    #[test]
    fn datadog_defaults_leave_hostname_out() {
        let text = encode_both(
            &format(r#"format = "datadog""#).unwrap(),
            "application/json",
        );
        assert!(
            text.starts_with(r#"[{"ddsource":"auditstream","ddtags":"app:gateway,type:AUDIT,organization_id:org_1,stack_id:stack_1","service":"auditstream","message":"#),
            "{text}"
        );
    }

    #[test]
    fn datadog_tag_values_cannot_add_tags() {
        let mut events = events();
        let meta = &events[0].meta;
        events[0].meta = EventMeta::new(
            meta.event_id(),
            meta.app(),
            meta.event_type(),
            "org,env:dev",
            meta.stack_id(),
            meta.date_ms,
        );
        let body = encode(&FormatConfig::Datadog(DatadogOptions::default()), &events).body;
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains(",organization_id:org_env:dev,"), "{text}");
    }

    #[test]
    fn elasticsearch_bulk() {
        let format = format(
            r#"format = "elasticsearch_bulk"
               elasticsearch = { index = "audit-events" }"#,
        )
        .unwrap();
        let expected = r#"{"create":{"_index":"audit-events","_id":"id-1"}}
{"date":"2026-04-30T09:23:41.123Z","app":"gateway","version":"v2","type":"AUDIT","payload":{"id":"id-1","note":"a \"b\" \\ c"}}
{"create":{"_index":"audit-events","_id":"id-2"}}
{"date":"2026-04-30T09:23:42.005Z","app":"membership","version":"v2","type":"stacks.created","payload":{"name":"été"}}
"#;
        assert_eq!(encode_both(&format, "application/x-ndjson"), expected);
    }

    #[test]
    fn metadata_and_options_are_escaped() {
        let mut events = events();
        let meta = &events[0].meta;
        events[0].meta = EventMeta::new(
            "quote\" back\\slash\nnew\u{1}line",
            meta.app(),
            meta.event_type(),
            meta.organization_id(),
            meta.stack_id(),
            meta.date_ms,
        );
        let format = FormatConfig::ElasticsearchBulk(ElasticsearchOptions {
            index: "in\"dex".to_owned(),
        });
        let body = encode(&format, &events[..1]).body;
        let first_line = body.split(|&b| b == b'\n').next().unwrap();
        assert_eq!(
            first_line,
            br#"{"create":{"_index":"in\"dex","_id":"quote\" back\\slash\nnew\u0001line"}}"#
        );
    }

    #[test]
    fn epoch_seconds_keep_three_decimals() {
        for (millis, expected) in [
            (0, "0.000"),
            (5, "0.005"),
            (1_777_541_021_123, "1777541021.123"),
            (1_777_541_022_050, "1777541022.050"),
            (-1, "-0.001"),
            (-1_500, "-1.500"),
            (i64::MIN, "-9223372036854775.808"),
        ] {
            let mut out = Vec::new();
            push_epoch_seconds(&mut out, millis);
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
    }

    #[test]
    fn config_shapes() {
        assert_eq!(format("").unwrap(), FormatConfig::Json);
        assert_eq!(FormatConfig::default(), FormatConfig::Json);
        assert_eq!(
            format(r#"format = "json_array""#).unwrap(),
            FormatConfig::JsonArray
        );
        assert_eq!(
            format(r#"format = "ndjson""#).unwrap(),
            FormatConfig::Ndjson
        );
        assert_eq!(
            format("format = \"splunk_hec\"\nsplunk = { index = \"audit\" }").unwrap(),
            FormatConfig::SplunkHec(SplunkOptions {
                index: Some("audit".to_owned()),
                ..SplunkOptions::default()
            })
        );
        assert_eq!(
            format("format = \"datadog\"\n[datadog]\ntags = [\"env:prod\"]").unwrap(),
            FormatConfig::Datadog(DatadogOptions {
                tags: vec!["env:prod".to_owned()],
                ..DatadogOptions::default()
            })
        );
        assert_eq!(
            format(r#"format = "elasticsearch_bulk""#).unwrap(),
            FormatConfig::ElasticsearchBulk(ElasticsearchOptions {
                index: "auditstream-events".to_owned()
            })
        );
    }

    /// The path of a config struct that declares the format keys itself.
    #[test]
    fn config_from_declared_keys() {
        let table = FormatTable {
            format: FormatName::Datadog,
            ..FormatTable::default()
        };
        assert_eq!(
            FormatConfig::try_from(table),
            Ok(FormatConfig::Datadog(DatadogOptions::default()))
        );
        let table = FormatTable {
            splunk: Some(SplunkOptions::default()),
            ..FormatTable::default()
        };
        assert!(FormatConfig::try_from(table).is_err());
    }

    #[test]
    fn config_mistakes_are_refused() {
        for (text, needle) in [
            (r#"format = "xml""#, "unknown variant `xml`"),
            (r#"formatt = "json""#, "unknown field `formatt`"),
            (
                "format = \"splunk_hec\"\nsplunk = { idx = \"a\" }",
                "unknown field `idx`",
            ),
            (
                "format = \"datadog\"\nsplunk = { index = \"a\" }",
                "`splunk` options apply only to format = \"splunk_hec\"",
            ),
            (
                "elasticsearch = { index = \"a\" }",
                "`elasticsearch` options apply only",
            ),
            (
                "format = \"datadog\"\ndatadog = { tags = [\"a,b\"] }",
                "contains a comma",
            ),
            (
                "format = \"elasticsearch_bulk\"\nelasticsearch = { index = \"\" }",
                "must not be empty",
            ),
        ] {
            let err = format(text).unwrap_err();
            assert!(err.contains(needle), "{text:?}: {err:?} lacks {needle:?}");
        }
    }

    /// How a destination table embeds the format: flattened beside its own keys. Unknown keys of
    /// the destination are still refused.
    #[test]
    fn config_embeds_in_a_destination_table() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Destination {
            url: String,
            #[serde(flatten)]
            format: FormatConfig,
        }
        let destination: Destination = toml::from_str(
            "url = \"https://x\"\nformat = \"elasticsearch_bulk\"\nelasticsearch = { index = \"audit\" }",
        )
        .unwrap();
        assert_eq!(destination.url, "https://x");
        assert_eq!(
            destination.format,
            FormatConfig::ElasticsearchBulk(ElasticsearchOptions {
                index: "audit".to_owned()
            })
        );
        let plain: Destination = toml::from_str("url = \"https://x\"").unwrap();
        assert_eq!(plain.format, FormatConfig::Json);
        let err = toml::from_str::<Destination>("url = \"https://x\"\nformatt = \"json\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `formatt`"), "{err}");
        let err = toml::from_str::<Destination>(
            "url = \"https://x\"\nformat = \"splunk_hec\"\nsplunk = { hots = \"a\" }",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("unknown field `hots`"), "{err}");
    }

    #[test]
    fn gzip_round_trip() {
        let body = encode(&FormatConfig::Ndjson, &events()).body.repeat(50);
        let compressed = gzip(&body);
        assert!(compressed.len() < body.len() / 10, "{}", compressed.len());
        let mut decompressed = Vec::new();
        flate2::read::GzDecoder::new(compressed.as_slice())
            .read_to_end(&mut decompressed)
            .unwrap();
        assert_eq!(decompressed, body);
    }

    #[test]
    fn bulk_responses() {
        let created = br#"{"took":3,"errors":false,"items":[
            {"create":{"_index":"a","_id":"id-1","_version":1,"result":"created","status":201}},
            {"create":{"_index":"a","_id":"id-2","_version":1,"result":"created","status":201}}]}"#;
        assert_eq!(
            parse_bulk_response(created, 2).unwrap(),
            [ItemOutcome::Delivered, ItemOutcome::Delivered]
        );

        let mixed = br#"{"took":9,"errors":true,"items":[
            {"create":{"_index":"a","_id":"1","status":201,"result":"created"}},
            {"create":{"_index":"a","_id":"2","status":409,"error":{"type":"version_conflict_engine_exception","reason":"[2]: version conflict, document already exists (current version [1])"}}},
            {"create":{"_index":"a","_id":"3","status":429,"error":{"type":"es_rejected_execution_exception","reason":"rejected execution"}}},
            {"create":{"_index":"a","_id":"4","status":400,"error":{"type":"mapper_parsing_exception","reason":"failed to parse field [date]"}}},
            {"create":{"_index":"a","_id":"5","status":503,"error":{"type":"unavailable_shards_exception"}}},
            {"create":{"_index":"a","_id":"6","status":409,"error":{"type":"other_conflict","reason":"r"}}},
            {"create":{"_index":"a","_id":"7","status":404}}]}"#;
        assert_eq!(
            parse_bulk_response(mixed, 7).unwrap(),
            [
                ItemOutcome::Delivered,
                ItemOutcome::Delivered,
                ItemOutcome::Retry {
                    status: 429,
                    reason: "es_rejected_execution_exception: rejected execution".to_owned()
                },
                ItemOutcome::Permanent {
                    status: 400,
                    reason: "mapper_parsing_exception: failed to parse field [date]".to_owned()
                },
                ItemOutcome::Retry {
                    status: 503,
                    reason: "unavailable_shards_exception".to_owned()
                },
                ItemOutcome::Permanent {
                    status: 409,
                    reason: "other_conflict: r".to_owned()
                },
                ItemOutcome::Permanent {
                    status: 404,
                    reason: "status 404 without error details".to_owned()
                },
            ]
        );

        assert!(matches!(
            parse_bulk_response(created, 3),
            Err(BulkResponseError::ItemCount {
                sent: 3,
                received: 2
            })
        ));
        for garbage in [
            b"<html>502 Bad Gateway</html>".as_slice(),
            b"",
            br#"{"error":{"type":"illegal_argument_exception"},"status":400}"#,
            br#"{"items":[{"index":{"status":201}}]}"#,
            br#"{"items":[{"create":{"result":"created"}}]}"#,
        ] {
            assert!(
                matches!(
                    parse_bulk_response(garbage, 1),
                    Err(BulkResponseError::NotBulkResponse { .. })
                ),
                "{}",
                String::from_utf8_lossy(garbage)
            );
        }
    }
}
