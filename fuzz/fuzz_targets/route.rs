//! `route` on arbitrary bytes, as both streams, with no operator rule and with all of them.
//!
//! Checked on every accepted input: the envelope is JSON; no request header named
//! `Authorization` is left (always on); with the operator rules, no `Cookie` or `Set-Cookie`
//! header is left and every `password` key of a body that is JSON is masked at any depth.
#![no_main]

use std::sync::LazyLock;

use auditstream_router::normalize::{route, Stream};
use auditstream_router::redact::Redaction;
use auditstream_router::{IpAddressRule, RedactionConfig};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

static ALL_RULES: LazyLock<Redaction> = LazyLock::new(|| {
    let mut config = RedactionConfig::default();
    config.gateway.drop_request_headers = vec!["Cookie".into()];
    config.gateway.drop_response_headers = vec!["Set-Cookie".into()];
    config.gateway.mask_body_fields = vec!["password".into()];
    config.gateway.ip_address = IpAddressRule::Truncate;
    config.membership.mask_data_fields = vec!["email".into()];
    Redaction::new(&config)
});

fuzz_target!(|bytes: &[u8]| {
    for configured in [false, true] {
        let redaction = if configured {
            &*ALL_RULES
        } else {
            &Redaction::default()
        };
        for stream in [Stream::Gateway, Stream::Lifecycle] {
            let Ok(routed) = route(stream, bytes, None, redaction) else {
                continue;
            };
            let envelope: Value = serde_json::from_slice(&routed.body).expect("envelope is JSON");
            let request_headers = header_names(&envelope, "/payload/http/request/header");
            assert!(
                !request_headers.iter().any(|name| is(name, "authorization")),
                "Authorization kept: {envelope}"
            );
            if configured {
                let response_headers = header_names(&envelope, "/payload/http/response/headers");
                assert!(!request_headers.iter().any(|name| is(name, "cookie")));
                assert!(!response_headers.iter().any(|name| is(name, "set-cookie")));
                for body in ["/payload/http/request/body", "/payload/http/response/body"] {
                    let text = envelope
                        .pointer(body)
                        .and_then(Value::as_str)
                        .unwrap_or_default();
                    if let Ok(json) = serde_json::from_str::<Value>(text) {
                        assert_masked(&json, "password");
                    }
                }
                if let Some(data) = envelope.pointer("/payload/data") {
                    assert_masked(data, "email");
                }
            }
        }
    }
});

fn is(name: &str, expected: &str) -> bool {
    name.trim().eq_ignore_ascii_case(expected)
}

fn header_names(envelope: &Value, pointer: &str) -> Vec<String> {
    envelope
        .pointer(pointer)
        .and_then(Value::as_object)
        .map(|headers| headers.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every value under a key named `name` (any case, any padding), at any depth, is the mask.
fn assert_masked(value: &Value, name: &str) {
    match value {
        Value::Object(map) => {
            for (key, item) in map {
                if key.trim().to_lowercase() == name {
                    assert_eq!(item, "********", "{name} not masked in {value}");
                } else {
                    assert_masked(item, name);
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| assert_masked(item, name)),
        _ => {}
    }
}
