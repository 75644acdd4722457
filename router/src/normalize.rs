//! Validation and normalization of raw events into v2 envelopes.
//!
//! Rules, each tested below:
//! * the event id must be a UUID; for lifecycle events an `event_id` Kafka header, when present,
//!   must agree with the `id` field;
//! * the date becomes ISO 8601 UTC with exactly three fractional digits;
//! * header names are trimmed and canonicalized (`content-TYPE` -> `Content-Type`), and entries
//!   that differ only in spelling are merged, their values kept in arrival order;
//! * when `token_validation_error` is set (non-empty), `claims` are dropped;
//! * bodies that are not valid UTF-8 are converted lossily: each invalid sequence becomes U+FFFD,
//!   so the envelope stays valid JSON text and nothing panics;
//! * the redaction rules ([`crate::redact`]), always-on and configured, run before serialization.

use std::borrow::Cow;

use auditstream_kafka::topics;
use auditstream_schemas::avro;
use auditstream_schemas::envelope::{
    write_gateway_json, Actor, App, Envelope, GatewayPayload, HeaderMap, Http, HttpRequest,
    HttpResponse, LifecyclePayload, SchemaVersion, GATEWAY_EVENT_TYPE,
};
use auditstream_schemas::raw::{RawGatewayEvent, RawHeaders, RawLifecycleEvent};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::config::DEFAULT_MAX_MESSAGE_BYTES;
use crate::redact::{self, Applied, Redaction};

/// Which raw stream a record came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// `audit.raw.gateway`.
    Gateway,
    /// `audit.raw.lifecycle`.
    Lifecycle,
}

impl Stream {
    /// The stream a raw topic carries.
    pub fn of_topic(topic: &str) -> Option<Stream> {
        match topic {
            topics::RAW_GATEWAY => Some(Stream::Gateway),
            topics::RAW_LIFECYCLE => Some(Stream::Lifecycle),
            _ => None,
        }
    }
}

/// A normalized event ready to be produced.
#[derive(Debug, Clone, PartialEq)]
pub struct Routed {
    /// Output topic.
    pub topic: &'static str,
    /// Stable event id.
    pub event_id: String,
    /// Emitting app.
    pub app: App,
    /// Envelope type (the gateway's is a constant).
    pub event_type: Cow<'static, str>,
    /// Organisation id.
    pub organization_id: String,
    /// Stack id, when the event concerns one.
    pub stack_id: Option<String>,
    /// Event date, milliseconds since the Unix epoch.
    pub date_ms: i64,
    /// The serialized envelope.
    pub body: Vec<u8>,
    /// The redaction rules that changed it.
    pub redactions: Applied,
}

impl Routed {
    /// The partitioning key when the input record had none: the stack for gateway events, the
    /// organisation for lifecycle events.
    pub fn fallback_key(&self) -> &str {
        match (self.app, &self.stack_id) {
            (App::Gateway, Some(stack_id)) => stack_id,
            _ => &self.organization_id,
        }
    }
}

/// Why a raw record was not forwarded; it goes to the dead-letter topic with these.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Short reason, used as the `dlq_reason` header.
    pub reason: RejectReason,
    /// What exactly is wrong, for the operator.
    pub detail: String,
}

/// Categories of rejected raw records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// Not decodable as Avro or JSON of the topic's schema.
    Undecodable,
    /// Decoded, but breaks a rule of the schema (bad id, date, status...).
    Invalid,
    /// Larger than `router.max_message_bytes`.
    Oversized,
    /// Read from a topic the router does not know.
    UnknownTopic,
}

impl RejectReason {
    /// Every reason, so that each counter series exists from the start at 0.
    pub const ALL: [RejectReason; 4] = [
        RejectReason::Undecodable,
        RejectReason::Invalid,
        RejectReason::Oversized,
        RejectReason::UnknownTopic,
    ];

    /// The value of the `dlq_reason` header.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectReason::Undecodable => "undecodable",
            RejectReason::Invalid => "invalid",
            RejectReason::Oversized => "oversized",
            RejectReason::UnknownTopic => "unknown_topic",
        }
    }
}

fn invalid(detail: impl Into<String>) -> Rejection {
    Rejection {
        reason: RejectReason::Invalid,
        detail: detail.into(),
    }
}

/// Decodes, validates, normalizes and redacts one raw record.
///
/// The first call in a process also bounds Avro decoding allocations, unless
/// [`limit_avro_allocations`] was called before.
pub fn route(
    stream: Stream,
    bytes: &[u8],
    event_id_header: Option<&str>,
    redaction: &Redaction,
) -> Result<Routed, Rejection> {
    limit_avro_allocations(DEFAULT_MAX_MESSAGE_BYTES);
    let undecodable = |err: auditstream_schemas::SchemaError| Rejection {
        reason: RejectReason::Undecodable,
        detail: err.to_string(),
    };
    match stream {
        Stream::Gateway => gateway(
            avro::decode_gateway_any(bytes).map_err(undecodable)?,
            redaction,
        ),
        Stream::Lifecycle => lifecycle(
            avro::decode_lifecycle_any(bytes).map_err(undecodable)?,
            event_id_header,
            redaction,
        ),
    }
}

/// Bounds what apache-avro may reserve for one string, byte array, array or map of a record, and
/// returns the bound in force.
///
/// apache-avro reserves room as soon as it has read a length or an item count, before reading
/// what it announces, up to a limit whose default is 512 Mi bytes or items. With that default, a
/// 130-byte record announcing a header map of 120 million entries made it reserve 21 GB (found by
/// fuzzing): the router would abort, or be killed, and then read the same record again after every
/// restart. No length or count of the raw schemas can exceed the size of the record holding it,
/// so the bound is the largest record the router accepts; a record that announces more is
/// rejected as undecodable.
///
/// apache-avro keeps the first bound set in a process: [`crate::run`] sets it from
/// `router.max_message_bytes` before decoding anything, and [`route`] sets the default otherwise.
pub fn limit_avro_allocations(max_message_bytes: usize) -> usize {
    apache_avro::util::max_allocation_bytes(max_message_bytes)
}

/// Normalizes and redacts a raw gateway event.
pub fn gateway(raw: RawGatewayEvent, redaction: &Redaction) -> Result<Routed, Rejection> {
    let id = uuid_text(&raw.id)?;
    let date = iso_date(raw.timestamp)?;
    require("organization_id", &raw.organization_id)?;
    require("stack_id", &raw.stack_id)?;
    let status_code = u16::try_from(raw.response.status_code)
        .ok()
        .filter(|code| (100..=599).contains(code))
        .ok_or_else(|| {
            invalid(format!(
                "response.status_code {} is not an HTTP status",
                raw.response.status_code
            ))
        })?;
    let token_validation_error = raw
        .token_validation_error
        .filter(|reason| !reason.is_empty());
    let claims = if token_validation_error.is_some() {
        None
    } else {
        raw.claims
    };

    let mut payload = GatewayPayload {
        id,
        trace_id: raw.trace_id,
        actor: Actor {
            claims,
            token_validation_error,
            organization_id: raw.organization_id,
            stack_id: raw.stack_id,
            ip_address: raw.ip_address,
        },
        http: Http {
            request: HttpRequest {
                method: raw.request.method,
                path: raw.request.path,
                host: raw.request.host,
                header: canonical_headers(raw.request.headers),
                body: String::new(),
            },
            response: HttpResponse {
                status_code,
                headers: canonical_headers(raw.response.headers),
                body: String::new(),
            },
        },
    };
    // Room for the serialized envelope: the bodies (escaping grows JSON text a little) plus the
    // rest of the event, so that writing it does not grow the buffer again and again. The writer
    // is the hand-written one (`write_gateway_json`), byte for byte serde_json's output.
    let capacity = (raw.request.body.len() + raw.response.body.len()) * 5 / 4 + 1024;
    // Decide capture before converting bodies, so that bodies that are dropped are never copied.
    let streaming = redact::is_streaming(&payload.http.request.header)
        || redact::is_streaming(&payload.http.response.headers);
    if !streaming {
        payload.http.request.body = body_text(raw.request.body);
        payload.http.response.body = body_text(raw.response.body);
    }
    let redactions = redact::apply_gateway(&mut payload, redaction);

    let envelope = Envelope {
        date,
        app: App::Gateway,
        version: SchemaVersion::V2,
        event_type: GATEWAY_EVENT_TYPE.to_owned(),
        payload,
    };
    let mut body = Vec::with_capacity(capacity);
    write_gateway_json(&envelope, &mut body);
    // The envelope is written: its fields move into the routing metadata instead of being copied.
    let GatewayPayload { id, actor, .. } = envelope.payload;
    Ok(Routed {
        topic: topics::MODULE,
        event_id: id,
        app: App::Gateway,
        event_type: Cow::Borrowed(GATEWAY_EVENT_TYPE),
        organization_id: actor.organization_id,
        stack_id: Some(actor.stack_id),
        date_ms: raw.timestamp,
        body,
        redactions,
    })
}

/// Normalizes and redacts a raw lifecycle event.
pub fn lifecycle(
    raw: RawLifecycleEvent,
    event_id_header: Option<&str>,
    redaction: &Redaction,
) -> Result<Routed, Rejection> {
    let id = uuid_text(&raw.id)?;
    if let Some(header) = event_id_header {
        if Uuid::parse_str(header).map(|h| h.hyphenated().to_string()) != Ok(id.clone()) {
            return Err(invalid(format!(
                "event_id header {header:?} disagrees with id {id}"
            )));
        }
    }
    let date = iso_date(raw.timestamp)?;
    require("type", &raw.event_type)?;
    require("organization_id", &raw.organization_id)?;
    let mut payload = LifecyclePayload {
        owner_id: raw.owner_id,
        organization_id: raw.organization_id.clone(),
        subject: raw.subject,
        data: serde_json::Value::Object(raw.data),
    };
    let redactions = redact::apply_lifecycle(&mut payload, redaction);
    let envelope = Envelope {
        date,
        app: App::Membership,
        version: SchemaVersion::V2,
        event_type: raw.event_type.clone(),
        payload,
    };
    Ok(Routed {
        topic: topics::LIFECYCLE,
        event_id: id,
        app: App::Membership,
        event_type: Cow::Owned(raw.event_type),
        organization_id: raw.organization_id,
        stack_id: raw.stack_id.filter(|s| !s.is_empty()),
        date_ms: raw.timestamp,
        body: serde_json::to_vec(&envelope).expect("envelopes always serialize"),
        redactions,
    })
}

fn require(field: &str, value: &str) -> Result<(), Rejection> {
    if value.trim().is_empty() {
        Err(invalid(format!("{field} is empty")))
    } else {
        Ok(())
    }
}

/// The id in its canonical lowercase hyphenated form.
fn uuid_text(id: &str) -> Result<String, Rejection> {
    Uuid::parse_str(id)
        .map(|uuid| uuid.hyphenated().to_string())
        .map_err(|_| invalid(format!("id {id:?} is not a UUID")))
}

/// `2026-04-30T09:23:41.123Z` from epoch milliseconds.
///
/// The digits are placed by hand: `time`'s formatter, driven by a format description, took a
/// twentieth of the router's pure work per event; `time` still does the calendar arithmetic.
pub fn iso_date(millis: i64) -> Result<String, Rejection> {
    let date = OffsetDateTime::from_unix_timestamp(millis.div_euclid(1000))
        .ok()
        .filter(|date| (1970..=9999).contains(&date.year()))
        .ok_or_else(|| invalid(format!("timestamp {millis} ms is outside years 1970-9999")))?;
    let (year, month, day) = date.to_calendar_date();
    let (hour, minute, second) = date.to_hms();
    let fields = [
        (year as u32, 4),
        (u32::from(u8::from(month)), 2),
        (u32::from(day), 2),
        (u32::from(hour), 2),
        (u32::from(minute), 2),
        (u32::from(second), 2),
        (millis.rem_euclid(1000) as u32, 3),
    ];
    let mut text = String::with_capacity(24);
    for ((value, width), separator) in fields.into_iter().zip(['-', '-', 'T', ':', ':', '.', 'Z']) {
        for place in (0..width).rev() {
            let digit = value / 10u32.pow(place) % 10;
            text.push(char::from(b'0' + digit as u8));
        }
        text.push(separator);
    }
    Ok(text)
}

/// `content-TYPE ` -> `Content-Type`: ASCII letters upper-cased at the start and after `-`,
/// lower-cased elsewhere, surrounding whitespace removed (the canonical form Go's `net/http` uses).
pub fn canonical_header_name(name: &str) -> String {
    let mut canonical = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.trim().chars() {
        canonical.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    canonical
}

fn canonical_headers(raw: RawHeaders) -> HeaderMap {
    use std::collections::btree_map::Entry;
    let mut headers = HeaderMap::new();
    for (name, values) in raw.0 {
        // Most names come once: their decoded value list moves in as it is.
        match headers.entry(canonicalize(name)) {
            Entry::Vacant(entry) => {
                entry.insert(values);
            }
            Entry::Occupied(mut entry) => entry.get_mut().extend(values),
        }
    }
    headers
}

/// [`canonical_header_name`] reusing the name's own buffer: case changes of ASCII letters keep
/// every byte's length, so only surrounding whitespace ever needs a new string.
fn canonicalize(mut name: String) -> String {
    if name.trim().len() != name.len() {
        return canonical_header_name(&name);
    }
    let mut upper = true;
    for at in 0..name.len() {
        let byte = name.as_bytes()[at];
        if byte.is_ascii() {
            // One ASCII byte is a whole character, so this range is on character boundaries.
            let letter = &mut name[at..=at];
            if upper {
                letter.make_ascii_uppercase();
            } else {
                letter.make_ascii_lowercase();
            }
        }
        upper = byte == b'-';
    }
    name
}

fn body_text(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes)
        .unwrap_or_else(|err| String::from_utf8_lossy(err.as_bytes()).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "550e8400-e29b-41d4-a716-446655440000";

    fn gateway_json(extra_request_headers: &str, path: &str, response_body: &str) -> String {
        format!(
            r#"{{"id":"{ID}","trace_id":"t","timestamp":1777541021123,"organization_id":"o","stack_id":"s",
            "claims":{{"sub":"u"}},"ip_address":"10.0.0.1",
            "request":{{"method":"POST","path":"{path}","host":"h",
              "headers":{{"Content-Type":"application/json"{extra_request_headers}}},"body":"{{}}"}},
            "response":{{"status_code":200,"headers":{{"content-type":["application/json"]}},"body":"{response_body}"}}}}"#
        )
    }

    fn routed_text(json: &str) -> String {
        String::from_utf8(
            route(
                Stream::Gateway,
                json.as_bytes(),
                None,
                &Redaction::default(),
            )
            .unwrap()
            .body,
        )
        .unwrap()
    }

    #[test]
    fn dates_are_written_as_time_formats_them_within_years_1970_to_9999() {
        const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z"
        );
        let last = 253_402_300_799_999; // 9999-12-31T23:59:59.999Z
        let samples = [0, 1, 999, 1_000, 951_782_400_000, 1_777_541_021_123, last]
            .into_iter()
            .chain((0..2_000).map(|n: i64| n * 126_701_150_399 + n % 1_000));
        for millis in samples.filter(|millis| *millis <= last) {
            let expected =
                OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
                    .unwrap()
                    .format(FORMAT)
                    .unwrap();
            assert_eq!(iso_date(millis).unwrap(), expected, "{millis} ms");
        }
        assert_eq!(iso_date(last).unwrap(), "9999-12-31T23:59:59.999Z");
        for outside in [-1, last + 1, i64::MIN, i64::MAX] {
            let rejection = iso_date(outside).unwrap_err();
            assert_eq!(rejection.reason, RejectReason::Invalid);
            assert!(rejection.detail.contains("outside years 1970-9999"));
        }
    }

    #[test]
    fn gateway_event_becomes_the_documented_envelope() {
        let text = routed_text(&gateway_json("", "/api/ledger/v2/main/transactions", "ok"));
        assert_eq!(
            text,
            format!(
                r#"{{"date":"2026-04-30T09:23:41.123Z","app":"gateway","version":"v2","type":"AUDIT","payload":{{"id":"{ID}","trace_id":"t","actor":{{"claims":{{"sub":"u"}},"organization_id":"o","stack_id":"s","ip_address":"10.0.0.1"}},"http":{{"request":{{"method":"POST","path":"/api/ledger/v2/main/transactions","host":"h","header":{{"Content-Type":["application/json"]}},"body":"{{}}"}},"response":{{"status_code":200,"headers":{{"Content-Type":["application/json"]}},"body":"ok"}}}}}}}}"#
            )
        );
    }

    #[test]
    fn gateway_routing_metadata_comes_from_the_event() {
        let raw = gateway_json("", "/api/ledger", "ok");
        let routed = route(Stream::Gateway, raw.as_bytes(), None, &Redaction::default()).unwrap();
        assert_eq!(routed.topic, topics::MODULE);
        assert_eq!(routed.event_id, ID);
        assert_eq!(routed.event_type, GATEWAY_EVENT_TYPE);
        assert_eq!(routed.organization_id, "o");
        assert_eq!(routed.stack_id.as_deref(), Some("s"));
        assert_eq!(routed.fallback_key(), "s");
    }

    #[test]
    fn authorization_in_any_casing_and_duplicates_is_removed() {
        let text = routed_text(&gateway_json(
            r#","authorization":"Bearer s1"," AUTHORIZATION ":["Bearer s2","Basic s3"],"AuThOrIzAtIoN":"s4""#,
            "/api/ledger",
            "ok",
        ));
        for secret in ["s1", "s2", "s3", "s4", "uthorization", "UTHORIZATION"] {
            assert!(!text.contains(secret), "{secret} leaked in {text}");
        }
    }

    #[test]
    fn oauth_token_response_body_is_cleared() {
        let text = routed_text(&gateway_json(
            "",
            "/api/auth/oauth/token/?x=1",
            "access-token-xyz",
        ));
        assert!(!text.contains("access-token-xyz"), "{text}");
        assert!(text.contains(
            r#""status_code":200,"headers":{"Content-Type":["application/json"]},"body":"""#
        ));
    }

    #[test]
    fn streaming_bodies_are_not_captured() {
        let json = gateway_json(
            r#","CONTENT-type":"application/vnd.formance.ledger-stream; v=1""#,
            "/api/x",
            "chunk",
        );
        let text = routed_text(&json);
        assert!(!text.contains("chunk"), "{text}");
        assert!(text.contains(r#""body":"""#));
    }

    #[test]
    fn token_validation_error_drops_claims() {
        let json = gateway_json("", "/api/x", "ok").replace(
            r#""claims":{"sub":"u"}"#,
            r#""claims":{"sub":"u"},"token_validation_error":"token expired""#,
        );
        let text = routed_text(&json);
        assert!(!text.contains("claims"), "{text}");
        assert!(text.contains(r#""token_validation_error":"token expired""#));
    }

    #[test]
    fn invalid_utf8_body_is_replaced_not_fatal() {
        let mut raw: RawGatewayEvent =
            serde_json::from_str(&gateway_json("", "/api/x", "ok")).unwrap();
        raw.request.body = vec![b'a', 0xff, 0xfe, b'b'];
        let routed = gateway(raw, &Redaction::default()).unwrap();
        let text = String::from_utf8(routed.body).unwrap();
        assert!(text.contains("\"body\":\"a\u{fffd}\u{fffd}b\""), "{text}");
    }

    #[test]
    fn bad_records_are_rejected_with_reasons() {
        let good = gateway_json("", "/api/x", "ok");
        let cases = [
            (
                good.replace(ID, "not-a-uuid"),
                RejectReason::Invalid,
                "not a UUID",
            ),
            (
                good.replace("\"status_code\":200", "\"status_code\":42"),
                RejectReason::Invalid,
                "status",
            ),
            (
                good.replace("\"stack_id\":\"s\"", "\"stack_id\":\"\""),
                RejectReason::Invalid,
                "stack_id",
            ),
            (
                good.replace("1777541021123", "\"soon\""),
                RejectReason::Undecodable,
                "RFC 3339",
            ),
            (
                "garbage".to_owned(),
                RejectReason::Undecodable,
                "unknown encoding",
            ),
        ];
        for (input, reason, needle) in cases {
            let rejection = route(
                Stream::Gateway,
                input.as_bytes(),
                None,
                &Redaction::default(),
            )
            .unwrap_err();
            assert_eq!(rejection.reason, reason, "{input}");
            assert!(
                rejection.detail.contains(needle),
                "{} lacks {needle}",
                rejection.detail
            );
        }
    }

    #[test]
    fn lifecycle_event_envelope_and_id_header_check() {
        let json = format!(
            r#"{{"id":"{ID}","type":"stacks.created","timestamp":"2026-04-30T11:15:00+02:00","owner_id":"u",
            "organization_id":"o","stack_id":"s1","subject":"u","data":{{"id":"s1","name":"prod-stack","regionId":"r"}}}}"#
        );
        let routed = route(
            Stream::Lifecycle,
            json.as_bytes(),
            Some(ID),
            &Redaction::default(),
        )
        .unwrap();
        assert_eq!(routed.topic, topics::LIFECYCLE);
        assert_eq!(routed.fallback_key(), "o");
        assert_eq!(routed.stack_id.as_deref(), Some("s1"));
        assert_eq!(
            String::from_utf8(routed.body).unwrap(),
            r#"{"date":"2026-04-30T09:15:00.000Z","app":"membership","version":"v2","type":"stacks.created","payload":{"ownerId":"u","organizationId":"o","subject":"u","data":{"id":"s1","name":"prod-stack","regionId":"r"}}}"#
        );
        let other = "6ba7b810-9dad-11d1-80b4-00c04fd430c8";
        let rejection = route(
            Stream::Lifecycle,
            json.as_bytes(),
            Some(other),
            &Redaction::default(),
        )
        .unwrap_err();
        assert!(rejection.detail.contains("disagrees"), "{rejection:?}");
    }

    #[test]
    fn avro_records_announcing_huge_maps_are_rejected_not_allocated() {
        // The fuzzer's input (fuzz/fuzz_targets/route.rs), minimized: the request header map
        // after host "h" announces 120_528_444 entries (zig-zag varint f8 f8 f8 72).
        const FUZZED: &[u8] = &[
            195, 1, 142, 128, 229, 107, 45, 85, 255, 30, 72, 53, 53, 48, 101, 56, 52, 48, 48, 45,
            101, 50, 56, 98, 45, 52, 49, 100, 52, 45, 97, 55, 49, 54, 45, 52, 52, 54, 54, 53, 53,
            52, 52, 48, 48, 48, 48, 2, 116, 134, 155, 219, 187, 103, 2, 111, 2, 115, 2, 20, 49, 57,
            50, 46, 48, 46, 50, 46, 49, 55, 2, 22, 123, 34, 115, 117, 98, 34, 58, 34, 117, 34, 125,
            0, 8, 114, 101, 125, 84, 64, 47, 114, 22, 123, 34, 0, 0, 22, 123, 34, 111, 107, 34, 0,
            0, 0, 108, 101, 125, 47, 116, 114, 97, 110, 115, 97, 99, 116, 105, 111, 110, 115, 2,
            104, 248, 248, 248, 114, 101, 125,
        ];
        // The same announcement in an otherwise valid record.
        let mut raw: RawGatewayEvent =
            serde_json::from_str(&gateway_json("", "/api/x", "ok")).unwrap();
        raw.request.host = "host-before-headers".to_owned();
        raw.request.headers = RawHeaders::default();
        let mut built = avro::encode_gateway(&raw).unwrap();
        let host = raw.request.host.as_bytes();
        let at = built.windows(host.len()).position(|w| w == host).unwrap() + host.len();
        assert_eq!(built[at], 0, "an empty map is encoded as a zero count");
        built.splice(at..=at, [0xf8, 0xf8, 0xf8, 0x72]);

        for input in [FUZZED, &built] {
            let rejection = route(Stream::Gateway, input, None, &Redaction::default()).unwrap_err();
            assert_eq!(rejection.reason, RejectReason::Undecodable);
            assert!(
                // Refused by the direct decoder before any allocation.
                rejection
                    .detail
                    .contains("block of 120528444 items exceeds"),
                "{}",
                rejection.detail
            );
        }
    }

    #[test]
    fn header_names_are_canonical() {
        for name in [
            "content-TYPE",
            " x-api-KEY\t",
            "www-authenticate",
            "ÄCCEPT-ünicode-x",
            "-x--y-",
            "",
        ] {
            assert_eq!(
                canonicalize(name.to_owned()),
                canonical_header_name(name),
                "{name:?}"
            );
        }
        assert_eq!(canonical_header_name("content-TYPE"), "Content-Type");
        assert_eq!(canonical_header_name(" x-api-KEY\t"), "X-Api-Key");
        assert_eq!(
            canonical_header_name("www-authenticate"),
            "Www-Authenticate"
        );
    }
}
