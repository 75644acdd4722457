//! The JSON bytes of a gateway envelope, written by hand.
//!
//! Every routed gateway event is serialized once, and most of its bytes are bodies and header
//! values. serde_json escapes strings one byte at a time, and its `Formatter` hooks cannot replace
//! that loop, so this writer escapes with [`crate::json_string`], which copies runs of bytes that
//! need no escaping eight at a time. The output is byte for byte what `serde_json::to_vec` writes for
//! the same envelope (same field order, same escapes, same omitted fields): a property test
//! compares the two on random envelopes.

use std::io::Write;

use super::{GatewayEnvelope, HeaderMap, SchemaVersion};

/// Appends the envelope's JSON to `out`, exactly as `serde_json::to_writer` would.
pub fn write_gateway_json(envelope: &GatewayEnvelope, out: &mut Vec<u8>) {
    let payload = &envelope.payload;
    let actor = &payload.actor;
    let request = &payload.http.request;
    let response = &payload.http.response;
    out.extend_from_slice(b"{\"date\":");
    string(out, &envelope.date);
    out.extend_from_slice(b",\"app\":");
    string(out, envelope.app.as_str());
    out.extend_from_slice(b",\"version\":");
    string(out, version(envelope.version));
    out.extend_from_slice(b",\"type\":");
    string(out, &envelope.event_type);
    out.extend_from_slice(b",\"payload\":{\"id\":");
    string(out, &payload.id);
    out.extend_from_slice(b",\"trace_id\":");
    string(out, &payload.trace_id);
    out.extend_from_slice(b",\"actor\":{");
    // The optional fields are omitted when absent, so the first one written opens the object.
    if let Some(claims) = &actor.claims {
        out.extend_from_slice(b"\"claims\":");
        out.extend_from_slice(claims.as_str().as_bytes());
        out.push(b',');
    }
    if let Some(error) = &actor.token_validation_error {
        out.extend_from_slice(b"\"token_validation_error\":");
        string(out, error);
        out.push(b',');
    }
    out.extend_from_slice(b"\"organization_id\":");
    string(out, &actor.organization_id);
    out.extend_from_slice(b",\"stack_id\":");
    string(out, &actor.stack_id);
    if let Some(ip_address) = &actor.ip_address {
        out.extend_from_slice(b",\"ip_address\":");
        string(out, ip_address);
    }
    out.extend_from_slice(b"},\"http\":{\"request\":{\"method\":");
    string(out, &request.method);
    out.extend_from_slice(b",\"path\":");
    string(out, &request.path);
    out.extend_from_slice(b",\"host\":");
    string(out, &request.host);
    out.extend_from_slice(b",\"header\":");
    headers(out, &request.header);
    out.extend_from_slice(b",\"body\":");
    string(out, &request.body);
    out.extend_from_slice(b"},\"response\":{\"status_code\":");
    write!(out, "{}", response.status_code).expect("writing to memory");
    out.extend_from_slice(b",\"headers\":");
    headers(out, &response.headers);
    out.extend_from_slice(b",\"body\":");
    string(out, &response.body);
    out.extend_from_slice(b"}}}}");
}

fn version(version: SchemaVersion) -> &'static str {
    match version {
        SchemaVersion::V2 => "v2",
    }
}

fn headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    out.push(b'{');
    for (index, (name, values)) in headers.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        string(out, name);
        out.extend_from_slice(b":[");
        for (index, value) in values.iter().enumerate() {
            if index > 0 {
                out.push(b',');
            }
            string(out, value);
        }
        out.push(b']');
    }
    out.push(b'}');
}

/// `text` as a JSON string literal.
fn string(out: &mut Vec<u8>, text: &str) {
    crate::json_string::push_string(out, text.as_bytes());
}

#[cfg(test)]
mod tests {
    use proptest::collection::{btree_map, vec};
    use proptest::option;
    use proptest::prelude::*;

    use super::*;
    use crate::envelope::{Actor, App, GatewayPayload, Http, HttpRequest, HttpResponse};

    /// Text with plenty of what needs escaping: quotes, backslashes, every control character,
    /// and multi-byte characters next to them.
    fn text() -> impl Strategy<Value = String> {
        vec(
            prop_oneof![
                4 => "[a-zA-Z0-9 /:.{}-]{1,12}",
                1 => prop::sample::select(vec!["\"", "\\", "\u{7f}", "é", "😀", "\u{2028}"]).prop_map(str::to_owned),
                1 => (0u8..0x20).prop_map(|byte| char::from(byte).to_string()),
            ],
            0..12,
        )
        .prop_map(|parts| parts.concat())
    }

    fn header_map() -> impl Strategy<Value = HeaderMap> {
        btree_map(text(), vec(text(), 0..3), 0..4)
    }

    fn envelope() -> impl Strategy<Value = GatewayEnvelope> {
        let claims = option::of(btree_map(text(), text(), 0..3))
            .prop_map(|claims| claims.map(crate::json_object::of_strings));
        (
            (text(), text(), text(), text()),
            (
                claims,
                option::of(text()),
                text(),
                text(),
                option::of(text()),
            ),
            (text(), text(), text(), header_map(), text()),
            (any::<u16>(), header_map(), text()),
        )
            .prop_map(|(top, actor, request, response)| GatewayEnvelope {
                date: top.0,
                app: App::Gateway,
                version: SchemaVersion::V2,
                event_type: top.1,
                payload: GatewayPayload {
                    id: top.2,
                    trace_id: top.3,
                    actor: Actor {
                        claims: actor.0,
                        token_validation_error: actor.1,
                        organization_id: actor.2,
                        stack_id: actor.3,
                        ip_address: actor.4,
                    },
                    http: Http {
                        request: HttpRequest {
                            method: request.0,
                            path: request.1,
                            host: request.2,
                            header: request.3,
                            body: request.4,
                        },
                        response: HttpResponse {
                            status_code: response.0,
                            headers: response.1,
                            body: response.2,
                        },
                    },
                },
            })
    }

    proptest! {
        #[test]
        fn writes_exactly_what_serde_json_writes(envelope in envelope()) {
            let mut written = Vec::new();
            write_gateway_json(&envelope, &mut written);
            prop_assert_eq!(
                String::from_utf8(written).unwrap(),
                serde_json::to_string(&envelope).unwrap()
            );
        }
    }

    #[test]
    fn the_seed_example_round_trips() {
        let envelope: GatewayEnvelope =
            serde_json::from_str(crate::envelope::tests::SEED_GATEWAY).unwrap();
        let mut written = Vec::new();
        write_gateway_json(&envelope, &mut written);
        assert_eq!(written, serde_json::to_vec(&envelope).unwrap());
    }
}
