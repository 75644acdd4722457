//! Every redaction rule, always-on and configured, on generated spellings, duplicates, nestings
//! and malformed bodies. Each secret carries [`MARKER`], which must never reach the envelope.

use auditstream_router::normalize::{route, Stream};
use auditstream_router::redact::Redaction;
use auditstream_router::RedactionConfig;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;

use crate::util::{
    clean_envelope, header_names, lifecycle_text, route_gateway, Gateway, Headers, Json, CASES,
    MARKER,
};

/// Field names the body properties configure.
const BODY_FIELDS: &[&str] = &["password", "client_secret"];
/// Field names the lifecycle property configures.
const DATA_FIELDS: &[&str] = &["email"];

/// `word` with each ASCII letter in a random case.
fn casing(word: &'static str) -> impl Strategy<Value = String> {
    vec(any::<bool>(), word.len()).prop_map(move |upper| {
        word.chars()
            .zip(upper)
            .map(|(c, up)| {
                if up {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                }
            })
            .collect()
    })
}

/// Whitespace that trimming removes, ASCII and not.
fn padding() -> impl Strategy<Value = String> {
    vec(
        select(vec![" ", "\t", "\n", "\r", "\u{a0}", "\u{2003}"]),
        0..3,
    )
    .prop_map(|parts| parts.concat())
}

/// `word` in a random case with random whitespace around it.
fn padded(word: &'static str) -> impl Strategy<Value = String> {
    (padding(), casing(word), padding()).prop_map(|(before, word, after)| before + &word + &after)
}

/// A secret: the marker with printable noise around it.
fn secret() -> impl Strategy<Value = String> {
    ("[ -~]{0,6}", "[ -~]{0,6}").prop_map(|(before, after)| format!("{before}{MARKER}{after}"))
}

/// One to three entries named some spelling of `word`: duplicates in one JSON object, each with
/// one value (written as a string) or several (an array), all secret.
fn secret_headers(word: &'static str) -> impl Strategy<Value = Headers> {
    vec((padded(word), vec(secret(), 1..4)), 1..4)
}

/// Harmless headers that must survive.
fn plain_headers() -> impl Strategy<Value = Headers> {
    vec(
        (
            select(vec!["Accept", "x-request-id", "USER-AGENT"]).prop_map(str::to_owned),
            vec("[a-z0-9/]{1,8}", 1..3),
        ),
        0..3,
    )
}

/// The concatenation of header lists, in a random order.
fn mixed(lists: Vec<Headers>) -> impl Strategy<Value = Headers> {
    Just(lists.concat()).prop_shuffle()
}

/// Names of `headers` canonicalized, as the envelope must show them.
fn canonical_names(headers: &Headers) -> Vec<String> {
    let mut names: Vec<String> = headers
        .iter()
        .map(|(name, _)| auditstream_router::normalize::canonical_header_name(name))
        .collect();
    names.sort();
    names.dedup();
    names
}

fn redaction(edit: impl FnOnce(&mut RedactionConfig)) -> Redaction {
    let mut config = RedactionConfig::default();
    edit(&mut config);
    assert_eq!(config.validate(), Ok(()));
    Redaction::new(&config)
}

// --- JSON bodies ---

fn plain_key() -> impl Strategy<Value = String> {
    "[a-z]{1,6}"
}

fn plain_leaf() -> impl Strategy<Value = Json> {
    prop_oneof![
        Just(Json::Null),
        any::<bool>().prop_map(Json::Bool),
        any::<i64>().prop_map(Json::Number),
        "[a-z ]{0,8}".prop_map(Json::String),
    ]
}

/// JSON without any configured name or secret.
fn plain_tree() -> impl Strategy<Value = Json> {
    plain_leaf().prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Json::Array),
            vec((plain_key(), inner), 0..4).prop_map(Json::Object),
        ]
    })
}

/// What may sit under a masked key: every JSON type, the marker wherever one can hold it.
fn secret_value() -> impl Strategy<Value = Json> {
    let secret_object = || {
        (plain_key(), secret())
            .prop_map(|(key, secret)| Json::Object(vec![(key, Json::String(secret))]))
    };
    prop_oneof![
        secret().prop_map(Json::String),
        any::<i64>().prop_map(Json::Number),
        any::<bool>().prop_map(Json::Bool),
        Just(Json::Null),
        vec(secret().prop_map(Json::String), 1..3).prop_map(Json::Array),
        secret_object(),
        vec(secret_object(), 1..3).prop_map(Json::Array),
    ]
}

/// `word` in a random case with some characters written as JSON `\u` escapes.
fn escaped(word: &'static str) -> impl Strategy<Value = String> {
    vec((any::<bool>(), prop::bool::weighted(0.15)), word.len()).prop_map(move |flags| {
        word.chars()
            .zip(flags)
            .map(|(c, (upper, escape))| {
                let c = if upper { c.to_ascii_uppercase() } else { c };
                if escape {
                    format!("\\u{:04X}", u32::from(c))
                } else {
                    c.to_string()
                }
            })
            .collect()
    })
}

/// An entry whose key is one of `names` in a random case, maybe with escapes, maybe padded.
fn masked_entry(names: &'static [&'static str]) -> impl Strategy<Value = (String, Json)> {
    (
        select(names).prop_flat_map(escaped),
        select(vec!["", " "]),
        secret_value(),
    )
        .prop_map(|(key, pad, value)| (format!("{pad}{key}{pad}"), value))
}

/// JSON with masked entries at random depths, inside arrays, inside JSON text held by strings,
/// and under keys that repeat (the secret first, a harmless value last: what a parser keeps).
fn tree_with_secrets(names: &'static [&'static str]) -> impl Strategy<Value = Json> {
    let leaf = prop_oneof![
        plain_leaf(),
        masked_entry(names).prop_map(|entry| Json::Object(vec![entry])),
    ];
    leaf.prop_recursive(6, 48, 4, move |inner| {
        prop_oneof![
            vec(inner.clone(), 0..4).prop_map(Json::Array),
            vec(
                prop_oneof![(plain_key(), inner.clone()), masked_entry(names)],
                0..4
            )
            .prop_map(Json::Object),
            inner.clone().prop_map(|json| Json::String(json.text())),
            (inner, plain_key(), plain_leaf()).prop_map(|(first, key, last)| {
                Json::Object(vec![(key.clone(), first), (key, last)])
            }),
        ]
    })
}

/// A form body (`a=1&Password=...`) where the name may be percent-encoded too.
fn form_body(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    let plain = ("[a-z]{1,5}", "[a-z0-9]{0,5}").prop_map(|(key, value)| format!("{key}={value}"));
    let masked = (select(names).prop_flat_map(casing), any::<bool>(), secret()).prop_map(
        |(key, encode, secret)| {
            let key = if encode {
                key.bytes().map(|b| format!("%{b:02X}")).collect()
            } else {
                key
            };
            format!("{key}={secret}")
        },
    );
    vec(prop_oneof![plain, masked], 1..5).prop_map(|pairs| pairs.join("&"))
}

/// A body carrying secrets: JSON, JSON cut short, JSON inside a JSON string, or a form.
fn secret_body(names: &'static [&'static str]) -> impl Strategy<Value = String> {
    prop_oneof![
        tree_with_secrets(names).prop_map(|json| json.text()),
        (tree_with_secrets(names), any::<prop::sample::Index>()).prop_map(|(json, cut)| {
            let text = json.text();
            let cut = cut.index(text.len() + 1);
            text.get(..cut).unwrap_or(&text).to_owned()
        }),
        tree_with_secrets(names).prop_map(|json| Json::String(json.text()).text()),
        form_body(names),
    ]
}

// --- Content types and paths ---

/// A streaming media type in a random case with random parameters and spacing.
fn streaming_content_type() -> impl Strategy<Value = String> {
    let media_type = prop_oneof![
        casing("application/octet-stream"),
        (
            casing("application/vnd.formance"),
            "[a-zA-Z0-9.+-]{0,12}",
            casing("-stream")
        )
            .prop_map(|(start, middle, end)| start + &middle + &end),
    ];
    let parameter = (
        select(vec![";", " ;", "; ", " ;  ", "\t;"]),
        "[a-z]{1,6}",
        "[a-zA-Z0-9\"]{0,6}",
    )
        .prop_map(|(separator, name, value)| format!("{separator}{name}={value}"));
    (
        select(vec!["", " ", "\t"]),
        media_type,
        vec(parameter, 0..3),
        select(vec!["", " "]),
    )
        .prop_map(|(before, media_type, parameters, after)| {
            format!("{before}{media_type}{}{after}", parameters.concat())
        })
}

/// `word` in a random case with some characters percent-encoded.
fn spelled(word: &'static str) -> impl Strategy<Value = String> {
    vec((any::<bool>(), prop::bool::weighted(0.15)), word.len()).prop_map(move |flags| {
        word.chars()
            .zip(flags)
            .map(|(c, (upper, encode))| {
                let c = if upper { c.to_ascii_uppercase() } else { c };
                if encode {
                    format!("%{:02X}", u32::from(c))
                } else {
                    c.to_string()
                }
            })
            .collect()
    })
}

/// A spelling of `/api/auth/oauth/token`: slashes doubled, `.` segments, case changes,
/// percent-encoding, trailing slashes, a query string and a fragment.
fn oauth_token_path() -> impl Strategy<Value = String> {
    let separator = || select(vec!["/", "//", "/./", "///", "/x/../", "%2F"]);
    (
        select(vec!["", "/", "//"]),
        [
            spelled("api"),
            spelled("auth"),
            spelled("oauth"),
            spelled("token"),
        ],
        [separator(), separator(), separator()],
        select(vec!["", "/", "//", "/."]),
        proptest::option::of("[a-z0-9=&_]{0,12}"),
        proptest::option::of("[a-z]{0,5}"),
    )
        .prop_map(
            |(leading, [api, auth, oauth, token], [s1, s2, s3], trailing, query, fragment)| {
                let mut path = format!("{leading}{api}{s1}{auth}{s2}{oauth}{s3}{token}{trailing}");
                if let Some(query) = query {
                    path = format!("{path}?{query}");
                }
                if let Some(fragment) = fragment {
                    path = format!("{path}#{fragment}");
                }
                path
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn authorization_never_leaks(
        request_headers in (secret_headers("authorization"), plain_headers())
            .prop_flat_map(|(secret, plain)| mixed(vec![secret, plain])),
    ) {
        let event = Gateway { request_headers: request_headers.clone(), ..Gateway::default() };
        for envelope in route_gateway(&event, &Redaction::default())? {
            let names = header_names(&envelope, "/payload/http/request/header");
            prop_assert!(!names.iter().any(|name| name.eq_ignore_ascii_case("authorization")));
        }
    }

    #[test]
    fn configured_headers_never_leak(
        request_headers in (
            secret_headers("authorization"),
            secret_headers("cookie"),
            secret_headers("x-api-key"),
            plain_headers(),
        ).prop_flat_map(|(a, b, c, plain)| mixed(vec![a, b, c, plain])),
        response_headers in (secret_headers("set-cookie"), plain_headers())
            .prop_flat_map(|(secret, plain)| mixed(vec![secret, plain])),
        configured in (padded("Cookie"), padded("X-Api-Key"), padded("Set-Cookie")),
    ) {
        let (cookie, api_key, set_cookie) = configured;
        let redaction = redaction(|config| {
            config.gateway.drop_request_headers = vec![cookie, api_key];
            config.gateway.drop_response_headers = vec![set_cookie];
        });
        let event = Gateway {
            request_headers: request_headers.clone(),
            response_headers: response_headers.clone(),
            ..Gateway::default()
        };
        let plain = |headers: &Headers| {
            let kept: Headers = headers
                .iter()
                .filter(|(_, values)| !values.iter().any(|value| value.contains(MARKER)))
                .cloned()
                .collect();
            canonical_names(&kept)
        };
        for envelope in route_gateway(&event, &redaction)? {
            // Only the harmless headers are left, so the rule removed no more than it should.
            prop_assert_eq!(
                header_names(&envelope, "/payload/http/request/header"),
                plain(&request_headers)
            );
            prop_assert_eq!(
                header_names(&envelope, "/payload/http/response/headers"),
                plain(&response_headers)
            );
        }
    }

    #[test]
    fn masked_body_fields_never_leak(
        request_body in secret_body(BODY_FIELDS),
        response_body in secret_body(BODY_FIELDS),
        configured in (padded("password"), padded("client_secret")),
        content_type in select(vec!["application/json", "application/x-www-form-urlencoded", "text/plain"]),
    ) {
        let redaction = redaction(|config| {
            config.gateway.mask_body_fields = vec![configured.0, configured.1];
        });
        let event = Gateway {
            request_headers: vec![("Content-Type".to_owned(), vec![content_type.to_owned()])],
            request_body,
            response_body,
            ..Gateway::default()
        };
        route_gateway(&event, &redaction)?;
    }

    #[test]
    fn bodies_without_configured_names_pass_unchanged(
        request_body in plain_tree().prop_map(|json| json.text()),
        response_body in "[a-z0-9 =&{}\":,]{0,40}",
    ) {
        let redaction = redaction(|config| {
            config.gateway.mask_body_fields = BODY_FIELDS.iter().map(|name| (*name).to_owned()).collect();
        });
        let event = Gateway {
            request_body: request_body.clone(),
            response_body: response_body.clone(),
            ..Gateway::default()
        };
        for envelope in route_gateway(&event, &redaction)? {
            prop_assert_eq!(
                envelope.pointer("/payload/http/request/body").and_then(|body| body.as_str()),
                Some(request_body.as_str())
            );
            prop_assert_eq!(
                envelope.pointer("/payload/http/response/body").and_then(|body| body.as_str()),
                Some(response_body.as_str())
            );
        }
    }

    #[test]
    fn masked_lifecycle_data_never_leaks(
        entries in vec(
            prop_oneof![(plain_key(), tree_with_secrets(DATA_FIELDS)), masked_entry(DATA_FIELDS)],
            0..5,
        ),
        data_as_text in any::<bool>(),
        configured in padded("email"),
    ) {
        let redaction = redaction(|config| config.membership.mask_data_fields = vec![configured]);
        let raw = lifecycle_text(&Json::Object(entries), data_as_text);
        let routed = route(Stream::Lifecycle, raw.as_bytes(), None, &redaction)
            .map_err(|rejection| TestCaseError::fail(format!("rejected: {rejection:?}")))?;
        clean_envelope(&routed.body)?;
    }

    #[test]
    fn streaming_bodies_never_leak(
        content_type in streaming_content_type(),
        header_name in padded("content-type"),
        after_a_json_value in any::<bool>(),
        on_the_request in any::<bool>(),
        request_body in secret(),
        response_body in secret(),
    ) {
        let values = if after_a_json_value {
            vec!["application/json".to_owned(), content_type]
        } else {
            vec![content_type]
        };
        let headers = vec![(header_name, values)];
        let (request_headers, response_headers) = if on_the_request {
            (headers, Vec::new())
        } else {
            (Vec::new(), headers)
        };
        let event = Gateway {
            request_headers,
            request_body,
            response_headers,
            response_body,
            ..Gateway::default()
        };
        route_gateway(&event, &Redaction::default())?;
    }

    #[test]
    fn oauth_token_responses_never_leak(path in oauth_token_path(), response_body in secret()) {
        let event = Gateway { path, response_body, ..Gateway::default() };
        route_gateway(&event, &Redaction::default())?;
    }
}
