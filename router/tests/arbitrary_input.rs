//! Whatever bytes arrive on a raw topic, `route` answers `Ok` or `Err` and never panics, and what
//! it accepts serializes to JSON.

use auditstream_router::normalize::{route, Stream};
use auditstream_router::redact::Redaction;
use auditstream_router::{IpAddressRule, RedactionConfig};
use auditstream_schemas::avro;
use auditstream_schemas::raw::RawGatewayEvent;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::Index;

use crate::util::{lifecycle_text, Gateway, Json};

/// Every rule switched on, so that arbitrary input reaches every redaction path too.
fn all_rules() -> Redaction {
    let mut config = RedactionConfig::default();
    config.gateway.drop_request_headers = vec!["Cookie".into()];
    config.gateway.drop_response_headers = vec!["Set-Cookie".into()];
    config.gateway.mask_body_fields = vec!["password".into(), "a".into()];
    config.gateway.ip_address = IpAddressRule::Truncate;
    config.membership.mask_data_fields = vec!["email".into(), "a".into()];
    Redaction::new(&config)
}

/// Routes `bytes` as both streams with and without the configured rules; whatever is accepted
/// must be a JSON envelope.
fn route_everywhere(bytes: &[u8]) -> Result<(), TestCaseError> {
    for redaction in [Redaction::default(), all_rules()] {
        for stream in [Stream::Gateway, Stream::Lifecycle] {
            if let Ok(routed) = route(stream, bytes, None, &redaction) {
                prop_assert!(
                    serde_json::from_slice::<serde_json::Value>(&routed.body).is_ok(),
                    "not JSON: {}",
                    String::from_utf8_lossy(&routed.body)
                );
            }
        }
    }
    Ok(())
}

/// Valid raw events of both streams in both encodings, to corrupt.
fn valid_messages() -> Vec<Vec<u8>> {
    let gateway = Gateway {
        request_headers: vec![("Cookie".into(), vec!["c".into()])],
        request_body: r#"{"password":"p","list":[{"a":1}]}"#.into(),
        response_body: "a=1&b=2".into(),
        ..Gateway::default()
    }
    .text();
    let lifecycle = lifecycle_text(
        &Json::Object(vec![(
            "email".into(),
            Json::Array(vec![Json::String("x".into())]),
        )]),
        false,
    );
    let raw: RawGatewayEvent = serde_json::from_str(&gateway).expect("the example parses");
    let avro = avro::encode_gateway(&raw).expect("the example encodes");
    vec![gateway.into_bytes(), lifecycle.into_bytes(), avro]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(
        prefix in proptest::sample::select(vec![&b""[..], b"{", b"\xC3\x01"]),
        tail in vec(any::<u8>(), 0..256),
    ) {
        route_everywhere(&[prefix, &tail].concat())?;
    }

    #[test]
    fn corrupted_events_never_panic(
        message in any::<Index>(),
        edits in vec((any::<Index>(), any::<u8>(), any::<bool>()), 1..6),
    ) {
        let messages = valid_messages();
        let mut bytes = message.get(&messages).clone();
        for (at, byte, insert) in edits {
            let at = at.index(bytes.len() + 1);
            if insert || at == bytes.len() {
                bytes.insert(at, byte);
            } else {
                bytes[at] = byte;
            }
        }
        route_everywhere(&bytes)?;
    }
}
