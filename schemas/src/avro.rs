//! Avro single-object encoding of raw events, and detection of the encoding of a raw message.
//!
//! A single-object message is `C3 01`, the 8-byte CRC-64-AVRO fingerprint of the writer schema
//! (little-endian), then the binary datum. The fingerprint identifies the schema, so a consumer
//! needs no registry: it holds the `.avsc` files of `schemas/avro/` itself.

use std::sync::LazyLock;

use apache_avro::headers::{HeaderBuilder, RabinFingerprintHeader};
use apache_avro::{GenericSingleObjectReader, Schema};
use serde::{de::DeserializeOwned, Serialize};

use crate::raw::{RawGatewayEvent, RawLifecycleEvent};

mod gateway_datum;
use crate::SchemaError;

/// Text of the raw gateway schema (`schemas/avro/raw_gateway.avsc`).
pub const RAW_GATEWAY_SCHEMA: &str = include_str!("../avro/raw_gateway.avsc");
/// Text of the raw lifecycle schema (`schemas/avro/raw_lifecycle.avsc`).
pub const RAW_LIFECYCLE_SCHEMA: &str = include_str!("../avro/raw_lifecycle.avsc");

/// First two bytes of every single-object encoded message.
pub const SINGLE_OBJECT_MARKER: [u8; 2] = [0xC3, 0x01];

/// One raw schema with its reader and its single-object header, computed once: the header holds
/// the schema's fingerprint, whose computation (canonical form, CRC-64) costs more than encoding
/// an event, so it must not be redone per event.
struct Codec {
    name: &'static str,
    schema: Schema,
    reader: GenericSingleObjectReader,
    header: Vec<u8>,
}

impl Codec {
    fn new(name: &'static str, text: &str) -> Codec {
        let schema = Schema::parse_str(text).expect("the bundled .avsc files are valid");
        let reader = GenericSingleObjectReader::new(schema.clone()).expect("valid schema");
        let header = RabinFingerprintHeader::from_schema(&schema).build_header();
        Codec {
            name,
            schema,
            reader,
            header,
        }
    }

    fn error(&self, source: apache_avro::Error) -> SchemaError {
        SchemaError::Avro {
            schema: self.name,
            source: Box::new(source),
        }
    }

    fn encode<T: Serialize>(&self, event: &T) -> Result<Vec<u8>, SchemaError> {
        let value = apache_avro::to_value(event)
            .and_then(|value| value.resolve(&self.schema))
            .map_err(|err| self.error(err))?;
        let datum =
            apache_avro::to_avro_datum(&self.schema, value).map_err(|err| self.error(err))?;
        let mut out = Vec::with_capacity(self.header.len() + datum.len());
        out.extend_from_slice(&self.header);
        out.extend_from_slice(&datum);
        Ok(out)
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, SchemaError> {
        let mut cursor = bytes;
        let value = self
            .reader
            .read_value(&mut cursor)
            .map_err(|err| self.error(err))?;
        if !cursor.is_empty() {
            return Err(SchemaError::TrailingBytes(cursor.len()));
        }
        apache_avro::from_value(&value).map_err(|err| self.error(err))
    }
}

static GATEWAY: LazyLock<Codec> =
    LazyLock::new(|| Codec::new("auditstream.raw.v1.RawGatewayEvent", RAW_GATEWAY_SCHEMA));
static LIFECYCLE: LazyLock<Codec> =
    LazyLock::new(|| Codec::new("auditstream.raw.v1.RawLifecycleEvent", RAW_LIFECYCLE_SCHEMA));

/// Encodes a raw gateway event as a single-object Avro message, with the direct encoder: header
/// order and repeated header names are kept. It never fails; the `Result` matches
/// [`encode_lifecycle`].
pub fn encode_gateway(event: &RawGatewayEvent) -> Result<Vec<u8>, SchemaError> {
    let request = &event.request;
    let response = &event.response;
    // Room for the bodies plus the rest, which is rarely more than a few hundred bytes.
    let mut out =
        Vec::with_capacity(GATEWAY.header.len() + request.body.len() + response.body.len() + 1024);
    out.extend_from_slice(&GATEWAY.header);
    gateway_datum::encode(event, &mut out);
    Ok(out)
}

/// Encodes a raw lifecycle event as a single-object Avro message.
pub fn encode_lifecycle(event: &RawLifecycleEvent) -> Result<Vec<u8>, SchemaError> {
    LIFECYCLE.encode(event)
}

/// Encodes a raw gateway event with apache-avro's generic writer: the reference that
/// [`encode_gateway`]'s direct encoder is tested and benchmarked against. It writes header maps
/// through a hash map (order is lost and a repeated name keeps its last values), so the
/// publishers do not use it.
pub fn encode_gateway_generic(event: &RawGatewayEvent) -> Result<Vec<u8>, SchemaError> {
    GATEWAY.encode(event)
}

/// Decodes a single-object Avro message of the raw gateway schema.
pub fn decode_gateway(bytes: &[u8]) -> Result<RawGatewayEvent, SchemaError> {
    let Some(datum) = bytes.strip_prefix(GATEWAY.header.as_slice()) else {
        // Another schema's fingerprint, or no header: the generic reader says which.
        return GATEWAY.decode(bytes);
    };
    let (event, read) = gateway_datum::decode(datum).map_err(|err| SchemaError::AvroDatum {
        schema: GATEWAY.name,
        reason: err.to_string(),
    })?;
    if read != datum.len() {
        return Err(SchemaError::TrailingBytes(datum.len() - read));
    }
    Ok(event)
}

/// Decodes a raw gateway message with apache-avro's generic reader: the reference that
/// [`decode_gateway`]'s direct decoder is tested and benchmarked against. It reads header maps
/// through a hash map (order and repeated names are lost), so the pipeline does not use it.
pub fn decode_gateway_generic(bytes: &[u8]) -> Result<RawGatewayEvent, SchemaError> {
    GATEWAY.decode(bytes)
}

/// Decodes a single-object Avro message of the raw lifecycle schema.
pub fn decode_lifecycle(bytes: &[u8]) -> Result<RawLifecycleEvent, SchemaError> {
    LIFECYCLE.decode(bytes)
}

/// How a raw message is encoded, told from its first bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// Avro single-object encoding.
    Avro,
    /// A JSON object (leading whitespace allowed).
    Json,
}

/// Tells the encoding of a raw message, or fails for anything else.
pub fn detect(bytes: &[u8]) -> Result<Encoding, SchemaError> {
    if bytes.starts_with(&SINGLE_OBJECT_MARKER) {
        return Ok(Encoding::Avro);
    }
    match bytes.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'{') => Ok(Encoding::Json),
        _ => Err(SchemaError::UnknownEncoding),
    }
}

/// Decodes a raw gateway message in either encoding.
pub fn decode_gateway_any(bytes: &[u8]) -> Result<RawGatewayEvent, SchemaError> {
    match detect(bytes)? {
        Encoding::Avro => decode_gateway(bytes),
        Encoding::Json => Ok(serde_json::from_slice(bytes)?),
    }
}

/// Decodes a raw lifecycle message in either encoding.
pub fn decode_lifecycle_any(bytes: &[u8]) -> Result<RawLifecycleEvent, SchemaError> {
    match detect(bytes)? {
        Encoding::Avro => decode_lifecycle(bytes),
        Encoding::Json => Ok(serde_json::from_slice(bytes)?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raw::{RawHeaders, RawRequest, RawResponse};

    fn gateway_event() -> RawGatewayEvent {
        RawGatewayEvent {
            id: "550e8400-e29b-41d4-a716-446655440000".into(),
            trace_id: "4bf92f3577b34da6a3ce929d0e0e4736".into(),
            timestamp: 1_777_541_021_123,
            organization_id: "org".into(),
            stack_id: "stack".into(),
            ip_address: Some("10.1.2.3".into()),
            claims: serde_json::from_str(r#"{"sub":"u","email":"a@b"}"#).unwrap(),
            token_validation_error: None,
            request: RawRequest {
                method: "POST".into(),
                path: "/api/ledger/v2/main/transactions".into(),
                host: "h".into(),
                headers: RawHeaders::from_pairs([("Content-Type", "application/json")]),
                body: vec![0xff, 0x00, b'{'],
            },
            response: RawResponse {
                status_code: 200,
                headers: RawHeaders::default(),
                body: b"{}".to_vec(),
            },
        }
    }

    #[test]
    fn gateway_round_trips_through_avro() {
        let event = gateway_event();
        let bytes = encode_gateway(&event).unwrap();
        assert_eq!(&bytes[..2], &SINGLE_OBJECT_MARKER);
        assert_eq!(decode_gateway(&bytes).unwrap(), event);
        assert_eq!(decode_gateway_any(&bytes).unwrap(), event);
    }

    #[test]
    fn wrong_schema_fingerprint_is_an_error_not_a_panic() {
        let bytes = encode_gateway(&gateway_event()).unwrap();
        let err = decode_lifecycle(&bytes).unwrap_err();
        assert!(err.to_string().contains("RawLifecycleEvent"), "{err}");
    }

    #[test]
    fn truncated_and_padded_messages_are_errors() {
        let bytes = encode_gateway(&gateway_event()).unwrap();
        for cut in [2, 10, bytes.len() - 1] {
            assert!(decode_gateway(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut padded = bytes.clone();
        padded.push(0);
        assert!(matches!(
            decode_gateway(&padded),
            Err(SchemaError::TrailingBytes(1))
        ));
    }

    #[test]
    fn detect_tells_encodings_apart() {
        assert_eq!(detect(b"  {\"a\":1}").unwrap(), Encoding::Json);
        assert_eq!(detect(&[0xC3, 0x01, 0]).unwrap(), Encoding::Avro);
        assert!(detect(b"hello").is_err());
        assert!(detect(b"").is_err());
    }
}

/// The direct gateway decoder against apache-avro's generic one, which stays the reference.
#[cfg(test)]
mod direct_decoder_agrees {
    use proptest::collection::{btree_map, vec};
    use proptest::option;
    use proptest::prelude::*;

    use super::*;
    use crate::raw::{RawHeaders, RawRequest, RawResponse};

    fn headers() -> impl Strategy<Value = RawHeaders> {
        // Repeated names on purpose: the raw form keeps duplicates.
        vec(("[A-Za-z-]{0,6}|\\PC{0,4}", vec("\\PC{0,12}", 0..3)), 0..6).prop_map(RawHeaders)
    }

    fn event() -> impl Strategy<Value = RawGatewayEvent> {
        let claims = option::of(btree_map("\\PC{0,6}", "\\PC{0,6}", 0..4))
            .prop_map(|claims| claims.map(crate::json_object::of_strings));
        (
            (
                "\\PC{0,40}",
                "\\PC{0,8}",
                any::<i64>(),
                "\\PC{0,8}",
                "\\PC{0,8}",
            ),
            (option::of("\\PC{0,15}"), claims, option::of("\\PC{0,10}")),
            (
                "[A-Z]{0,7}",
                "\\PC{0,30}",
                "\\PC{0,10}",
                headers(),
                vec(any::<u8>(), 0..300),
            ),
            (any::<i32>(), headers(), vec(any::<u8>(), 0..300)),
        )
            .prop_map(|(ids, actor, request, response)| RawGatewayEvent {
                id: ids.0,
                trace_id: ids.1,
                timestamp: ids.2,
                organization_id: ids.3,
                stack_id: ids.4,
                ip_address: actor.0,
                claims: actor.1,
                token_validation_error: actor.2,
                request: RawRequest {
                    method: request.0,
                    path: request.1,
                    host: request.2,
                    headers: request.3,
                    body: request.4,
                },
                response: RawResponse {
                    status_code: response.0,
                    headers: response.1,
                    body: response.2,
                },
            })
    }

    /// The event as apache-avro sees it: it reads and writes an Avro map through a hash map, so
    /// header order is lost and a repeated name keeps only its last values. The direct decoder
    /// keeps the order and repetitions of the wire, as `RawHeaders` promises; compare on what
    /// both keep.
    fn as_generic_reads_it(mut event: RawGatewayEvent) -> RawGatewayEvent {
        for headers in [&mut event.request.headers, &mut event.response.headers] {
            let merged: std::collections::BTreeMap<String, Vec<String>> =
                std::mem::take(&mut headers.0).into_iter().collect();
            headers.0 = merged.into_iter().collect();
        }
        event
    }

    /// At most one header per map, so that apache-avro's hash map writes them in our order.
    fn with_at_most_one_header(mut event: RawGatewayEvent) -> RawGatewayEvent {
        event.request.headers.0.truncate(1);
        event.response.headers.0.truncate(1);
        event
    }

    proptest! {
        #[test]
        fn on_every_event(event in event()) {
            let bytes = encode_gateway(&event).unwrap();
            let direct = decode_gateway(&bytes).unwrap();
            let generic = decode_gateway_generic(&bytes).unwrap();
            prop_assert_eq!(as_generic_reads_it(direct.clone()), as_generic_reads_it(generic));
            // The direct encoder and decoder keep header order and repeated names.
            prop_assert_eq!(direct, event);
        }

        #[test]
        fn direct_encoder_writes_apache_avros_bytes(event in event().prop_map(with_at_most_one_header)) {
            prop_assert_eq!(encode_gateway(&event).unwrap(), encode_gateway_generic(&event).unwrap());
        }

        #[test]
        fn on_damaged_messages(event in event(), at in any::<prop::sample::Index>(), byte in any::<u8>(), cut in any::<bool>()) {
            let mut bytes = encode_gateway(&event).unwrap();
            let at = 10 + at.index(bytes.len() - 10);
            if cut {
                bytes.truncate(at);
            } else {
                bytes[at] = byte;
            }
            // Never a panic; when both accept the bytes they read the same event.
            let direct = decode_gateway(&bytes);
            let generic = decode_gateway_generic(&bytes);
            if let (Ok(direct), Ok(generic)) = (direct, generic) {
                prop_assert_eq!(as_generic_reads_it(direct), as_generic_reads_it(generic));
            }
        }
    }
}
