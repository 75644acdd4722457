//! Redaction of normalized payloads: the always-on rules of the product design, then the rules an
//! operator configured (`[router.redaction]`, see [`crate::RedactionConfig`]).
//!
//! Always on, for gateway events:
//!
//! 1. The `Authorization` request header is removed. Header names were canonicalized by
//!    [`crate::normalize`] (every casing, padding and duplicate merged into one entry), so one
//!    removal catches them all.
//! 2. The response body of `/api/auth/oauth/token` is cleared. The path is compared after removing
//!    the query string and fragment, percent-decoding, dropping empty and `.` segments, resolving
//!    `..` and ignoring case, so no spelling of that path keeps the token.
//! 3. Request and response bodies of streaming endpoints are not captured: when any `Content-Type`
//!    value of the request or the response has the media type `application/octet-stream` or
//!    `application/vnd.formance…-stream` (parameters, case and spacing ignored), both bodies are
//!    emptied.
//!
//! Configured, each off until listed:
//!
//! 4. More headers are dropped: request headers from `http.request.header`, response headers from
//!    `http.response.headers`, names compared case-insensitively on the same merged entries as
//!    rule 1.
//! 5. JSON fields are masked in gateway bodies and in lifecycle `payload.data`, by the rules of
//!    [`mask`]: every value of a matching key becomes `"********"`, and text that cannot be
//!    parsed but mentions a name is replaced whole.
//! 6. The caller's IP address is kept, omitted, or truncated to its /24 (IPv4) or /48 (IPv6).
//!
//! Each rule errs on the side of removing: a false positive costs an auditor a body, a false
//! negative leaks a credential.

pub mod mask;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use auditstream_schemas::envelope::{GatewayPayload, HeaderMap, LifecyclePayload};
use percent_encoding::percent_decode_str;

use crate::config::{IpAddressRule, RedactionConfig};
use mask::Names;

/// Canonical name of the request header that rule 1 removes.
pub const AUTHORIZATION: &str = "Authorization";
/// Canonical name of the header rule 3 reads.
pub const CONTENT_TYPE: &str = "Content-Type";
/// Path whose response body rule 2 clears, as segments.
const OAUTH_TOKEN_SEGMENTS: [&str; 4] = ["api", "auth", "oauth", "token"];

/// The configured rules, compiled once from [`RedactionConfig`] (names trimmed and case-folded)
/// and shared by every routed record. The default is "always-on rules only".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Redaction {
    drop_request_headers: Names,
    drop_response_headers: Names,
    mask_body_fields: Names,
    ip_address: IpAddressRule,
    mask_data_fields: Names,
}

impl Redaction {
    /// Compiles the `[router.redaction]` section. Empty names, which
    /// [`RedactionConfig::validate`] rejects, are ignored here.
    pub fn new(config: &RedactionConfig) -> Redaction {
        let gateway = &config.gateway;
        Redaction {
            drop_request_headers: Names::new(&gateway.drop_request_headers),
            drop_response_headers: Names::new(&gateway.drop_response_headers),
            mask_body_fields: Names::new(&gateway.mask_body_fields),
            ip_address: gateway.ip_address,
            mask_data_fields: Names::new(&config.membership.mask_data_fields),
        }
    }
}

/// A redaction rule, as named in the `rule` label of `auditstream_router_redactions_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// Rule 1: the `Authorization` request header was removed.
    AuthorizationHeader,
    /// Rule 2: an OAuth token response body was cleared.
    OauthTokenBody,
    /// Rule 3: streaming bodies were emptied.
    StreamingBody,
    /// Rule 4: configured request headers were dropped.
    RequestHeaders,
    /// Rule 4: configured response headers were dropped.
    ResponseHeaders,
    /// Rule 5: fields of a gateway body were masked.
    BodyFields,
    /// Rule 6: the caller's IP address was omitted or truncated.
    IpAddress,
    /// Rule 5: fields of lifecycle `payload.data` were masked.
    DataFields,
}

impl Rule {
    /// Every rule, in the order of the bits of [`Applied`].
    pub const ALL: [Rule; 8] = [
        Rule::AuthorizationHeader,
        Rule::OauthTokenBody,
        Rule::StreamingBody,
        Rule::RequestHeaders,
        Rule::ResponseHeaders,
        Rule::BodyFields,
        Rule::IpAddress,
        Rule::DataFields,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Rule::AuthorizationHeader => "authorization_header",
            Rule::OauthTokenBody => "oauth_token_body",
            Rule::StreamingBody => "streaming_body",
            Rule::RequestHeaders => "request_headers",
            Rule::ResponseHeaders => "response_headers",
            Rule::BodyFields => "body_fields",
            Rule::IpAddress => "ip_address",
            Rule::DataFields => "data_fields",
        }
    }
}

/// The rules that changed one event (a rule that found nothing to remove is not listed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Applied(u8);

impl Applied {
    fn record(&mut self, rule: Rule, changed: bool) {
        if changed {
            self.0 |= 1 << rule as u8;
        }
    }

    /// The rules that changed the event.
    pub fn rules(self) -> impl Iterator<Item = Rule> {
        Rule::ALL
            .into_iter()
            .filter(move |rule| self.0 & (1 << *rule as u8) != 0)
    }
}

/// Applies the always-on rules, then the configured ones, to a gateway payload in place, and says
/// which of them changed it.
pub fn apply_gateway(payload: &mut GatewayPayload, redaction: &Redaction) -> Applied {
    let mut applied = Applied::default();
    let request = &mut payload.http.request;
    let response = &mut payload.http.response;
    applied.record(
        Rule::AuthorizationHeader,
        request.header.remove(AUTHORIZATION).is_some(),
    );
    if is_oauth_token_path(&request.path) {
        applied.record(Rule::OauthTokenBody, !response.body.is_empty());
        response.body.clear();
    }
    if is_streaming(&request.header) || is_streaming(&response.headers) {
        let captured = !request.body.is_empty() || !response.body.is_empty();
        applied.record(Rule::StreamingBody, captured);
        request.body.clear();
        response.body.clear();
    }

    applied.record(
        Rule::RequestHeaders,
        drop_headers(&mut request.header, &redaction.drop_request_headers),
    );
    applied.record(
        Rule::ResponseHeaders,
        drop_headers(&mut response.headers, &redaction.drop_response_headers),
    );
    let request_masked = mask::mask_body(&mut request.body, &redaction.mask_body_fields);
    let response_masked = mask::mask_body(&mut response.body, &redaction.mask_body_fields);
    applied.record(Rule::BodyFields, request_masked || response_masked);
    let ip_address = &mut payload.actor.ip_address;
    let ip_changed = match redaction.ip_address {
        IpAddressRule::Keep => false,
        IpAddressRule::Omit => ip_address.take().is_some(),
        IpAddressRule::Truncate => {
            let truncated = ip_address.as_deref().and_then(truncate_ip);
            let changed = truncated != *ip_address;
            *ip_address = truncated;
            changed
        }
    };
    applied.record(Rule::IpAddress, ip_changed);
    applied
}

/// Applies the configured rules to a lifecycle payload in place (no rule is always on there).
pub fn apply_lifecycle(payload: &mut LifecyclePayload, redaction: &Redaction) -> Applied {
    let mut applied = Applied::default();
    applied.record(
        Rule::DataFields,
        mask::mask_value(&mut payload.data, &redaction.mask_data_fields),
    );
    applied
}

/// Returns whether a header was dropped.
fn drop_headers(headers: &mut HeaderMap, names: &Names) -> bool {
    if names.is_empty() {
        return false;
    }
    let before = headers.len();
    headers.retain(|name, _| !names.matches(name));
    headers.len() != before
}

/// The network part of an address: `192.0.2.17` -> `192.0.2.0` (/24), `2001:db8:1:2::9` ->
/// `2001:db8:1::` (/48). An IPv4-mapped IPv6 address is treated as the IPv4 address it carries,
/// and a port (`192.0.2.17:443`, `[2001:db8::1]:443`) is dropped. `None` when nothing parses.
pub fn truncate_ip(address: &str) -> Option<String> {
    let address = address.trim();
    let ip = address
        .parse::<IpAddr>()
        .or_else(|_| address.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()?;
    let network = match ip {
        IpAddr::V4(v4) => IpAddr::V4(truncate_v4(v4)),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(truncate_v4(v4)),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !(u128::MAX >> 48))),
        },
    };
    Some(network.to_string())
}

fn truncate_v4(ip: Ipv4Addr) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(ip) & !(u32::MAX >> 24))
}

/// Whether `path` names the OAuth token endpoint, however it is spelled.
pub fn is_oauth_token_path(path: &str) -> bool {
    let without_query = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode_str(without_query).decode_utf8_lossy();
    // The resolved segments form a stack, of which only the bottom four can matter: `depth` counts
    // them all, `bottom` keeps those four, so that no path needs an allocation.
    let mut bottom = [""; OAUTH_TOKEN_SEGMENTS.len()];
    let mut depth = 0usize;
    // A decoded `%2F` or a backslash separates segments too: some servers route them as `/`.
    for segment in decoded.split(['/', '\\']) {
        match segment.trim() {
            "" | "." => {}
            ".." => depth = depth.saturating_sub(1),
            other => {
                if let Some(slot) = bottom.get_mut(depth) {
                    *slot = other;
                }
                depth += 1;
            }
        }
    }
    depth == OAUTH_TOKEN_SEGMENTS.len()
        && bottom
            .iter()
            .zip(OAUTH_TOKEN_SEGMENTS)
            .all(|(seen, expected)| seen.eq_ignore_ascii_case(expected))
}

/// Whether any `Content-Type` value names a streaming media type.
pub fn is_streaming(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .into_iter()
        .flatten()
        // A value may (wrongly) list several types separated by commas: check each.
        .flat_map(|value| value.split(','))
        .any(is_streaming_media_type)
}

fn is_streaming_media_type(content_type: &str) -> bool {
    let media_type = content_type.split(';').next().unwrap_or_default().trim();
    // Compared without a lower-cased copy: every routed event has a `Content-Type` or two.
    let starts_with = |prefix: &str| {
        media_type
            .get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    let ends_with = |suffix: &str| {
        media_type
            .len()
            .checked_sub(suffix.len())
            .and_then(|start| media_type.get(start..))
            .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
    };
    media_type.eq_ignore_ascii_case("application/octet-stream")
        || (starts_with("application/vnd.formance") && ends_with("-stream"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_token_path_spellings() {
        let token_paths = [
            "/api/auth/oauth/token",
            "/api/auth/oauth/token/",
            "/api/auth/oauth/token?grant_type=client_credentials",
            "/api/auth/oauth/token#x",
            "//api//auth/oauth/token",
            "/API/Auth/OAuth/Token",
            "/api/auth/./oauth/token",
            "/api/auth/x/../oauth/token",
            "/api/auth/oauth%2Ftoken",
            "/api/auth/oauth/%74oken",
            "api/auth/oauth/token",
            "/a/b/c/d/e/../../../../../api/auth/oauth/token",
            "/api/auth/oauth/token/x/y/z/../../..",
        ];
        for path in token_paths {
            assert!(is_oauth_token_path(path), "{path} should match");
        }
        for path in [
            "/api/auth/oauth/tokens",
            "/api/auth/oauth",
            "/v2/api/auth/oauth/token",
            "/api/ledger/token",
            "/api/auth/oauth/token/x/y/../z",
            "/x/y/z/w/../../../../../api/auth/oauth/x/token",
        ] {
            assert!(!is_oauth_token_path(path), "{path} should not match");
        }
    }

    #[test]
    fn streaming_media_types() {
        let streaming = [
            "application/octet-stream",
            "Application/Octet-Stream",
            " application/octet-stream ; charset=binary",
            "application/vnd.formance.ledger-stream",
            "application/vnd.formance-stream;v=2",
            "Application/VND.Formance.Ledger-STREAM",
            "text/plain, application/octet-stream",
        ];
        for value in streaming {
            let headers = HeaderMap::from([(CONTENT_TYPE.to_owned(), vec![value.to_owned()])]);
            assert!(is_streaming(&headers), "{value:?} should be streaming");
        }
        for value in [
            "application/json",
            "application/vnd.formance.ledger+json",
            "application/x-stream",
            "application/vnd.formance",
            "stream",
            "é-stream",
            "application/vnd.formancé-stream✓",
        ] {
            let headers = HeaderMap::from([(CONTENT_TYPE.to_owned(), vec![value.to_owned()])]);
            assert!(!is_streaming(&headers), "{value:?} should not be streaming");
        }
        let second_value = HeaderMap::from([(
            CONTENT_TYPE.to_owned(),
            vec![
                "application/json".to_owned(),
                "application/octet-stream".to_owned(),
            ],
        )]);
        assert!(is_streaming(&second_value));
    }

    fn payload(
        request_headers: &[(&str, &str)],
        response_headers: &[(&str, &str)],
    ) -> GatewayPayload {
        let headers = |pairs: &[(&str, &str)]| {
            pairs
                .iter()
                .map(|(name, value)| ((*name).to_owned(), vec![(*value).to_owned()]))
                .collect::<HeaderMap>()
        };
        serde_json::from_value(serde_json::json!({
            "id": "e", "trace_id": "t",
            "actor": {"organization_id": "o", "stack_id": "s", "ip_address": "192.0.2.17"},
            "http": {
                "request": {"method": "POST", "path": "/api/x", "host": "h",
                    "header": headers(request_headers), "body": r#"{"password":"p"}"#},
                "response": {"status_code": 200, "headers": headers(response_headers),
                    "body": r#"{"client_secret":"c"}"#},
            },
        }))
        .unwrap()
    }

    fn configured(edit: impl FnOnce(&mut RedactionConfig)) -> Redaction {
        let mut config = RedactionConfig::default();
        edit(&mut config);
        Redaction::new(&config)
    }

    #[test]
    fn default_redaction_applies_only_the_always_on_rules() {
        let mut redacted = payload(
            &[(AUTHORIZATION, "Bearer a"), ("Cookie", "c")],
            &[("Set-Cookie", "s")],
        );
        apply_gateway(&mut redacted, &Redaction::default());
        assert_eq!(
            redacted,
            payload(&[("Cookie", "c")], &[("Set-Cookie", "s")])
        );
    }

    #[test]
    fn configured_headers_are_dropped_whatever_their_spelling_in_config() {
        // Header maps hold canonical names (normalize merged every casing and padding already);
        // the configured names may be written any way.
        // (drop_request_headers, drop_response_headers, request headers kept, response headers kept)
        type List = &'static [&'static str];
        let cases: [(List, List, List, List); 4] = [
            (&["Cookie"], &[], &["Accept", "X-Api-Key"], &["Set-Cookie"]),
            (
                &[" x-API-key ", "COOKIE"],
                &[],
                &["Accept"],
                &["Set-Cookie"],
            ),
            (
                &[],
                &["set-cookie"],
                &["Accept", "Cookie", "X-Api-Key"],
                &[],
            ),
            (
                &["set-cookie"],
                &["cookie"],
                &["Accept", "Cookie", "X-Api-Key"],
                &["Set-Cookie"],
            ),
        ];
        for (request_names, response_names, kept_request, kept_response) in cases {
            let redaction = configured(|config| {
                config.gateway.drop_request_headers = request_names
                    .iter()
                    .map(|name| (*name).to_owned())
                    .collect();
                config.gateway.drop_response_headers = response_names
                    .iter()
                    .map(|name| (*name).to_owned())
                    .collect();
            });
            let mut redacted = payload(
                &[("Accept", "*/*"), ("Cookie", "c"), ("X-Api-Key", "k")],
                &[("Set-Cookie", "s")],
            );
            apply_gateway(&mut redacted, &redaction);
            let names = |headers: &HeaderMap| headers.keys().cloned().collect::<Vec<_>>();
            assert_eq!(
                names(&redacted.http.request.header),
                kept_request,
                "{request_names:?}"
            );
            assert_eq!(
                names(&redacted.http.response.headers),
                kept_response,
                "{response_names:?}"
            );
        }
    }

    #[test]
    fn configured_body_fields_are_masked_in_both_bodies() {
        let redaction = configured(|config| {
            config.gateway.mask_body_fields = vec!["PASSWORD".into(), "client_secret".into()];
        });
        let mut redacted = payload(&[], &[]);
        apply_gateway(&mut redacted, &redaction);
        assert_eq!(redacted.http.request.body, r#"{"password":"********"}"#);
        assert_eq!(
            redacted.http.response.body,
            r#"{"client_secret":"********"}"#
        );
    }

    #[test]
    fn ip_address_rules() {
        let cases = [
            (IpAddressRule::Keep, Some("192.0.2.17"), Some("192.0.2.17")),
            (IpAddressRule::Keep, None, None),
            (IpAddressRule::Omit, Some("192.0.2.17"), None),
            (
                IpAddressRule::Truncate,
                Some("192.0.2.17"),
                Some("192.0.2.0"),
            ),
            (IpAddressRule::Truncate, Some("not an address"), None),
            (IpAddressRule::Truncate, None, None),
        ];
        for (rule, ip_address, expected) in cases {
            let redaction = configured(|config| config.gateway.ip_address = rule);
            let mut redacted = payload(&[], &[]);
            redacted.actor.ip_address = ip_address.map(str::to_owned);
            apply_gateway(&mut redacted, &redaction);
            assert_eq!(
                redacted.actor.ip_address.as_deref(),
                expected,
                "{rule:?} {ip_address:?}"
            );
        }
    }

    #[test]
    fn truncated_addresses() {
        let cases = [
            ("192.0.2.17", Some("192.0.2.0")),
            (" 10.1.2.255 ", Some("10.1.2.0")),
            ("192.0.2.17:443", Some("192.0.2.0")),
            ("2001:db8:1:2:3:4:5:6", Some("2001:db8:1::")),
            ("2001:DB8:abcd:ffff::1", Some("2001:db8:abcd::")),
            ("[2001:db8:1:2::1]:443", Some("2001:db8:1::")),
            ("::ffff:192.0.2.17", Some("192.0.2.0")),
            ("::1", Some("::")),
            ("", None),
            ("192.0.2", None),
            ("192.0.2.17, 10.0.0.1", None),
            ("fe80::1%eth0", None),
            ("example.com", None),
        ];
        for (address, expected) in cases {
            assert_eq!(truncate_ip(address).as_deref(), expected, "{address:?}");
        }
    }

    #[test]
    fn lifecycle_data_fields_are_masked() {
        let redaction = configured(|config| {
            config.membership.mask_data_fields = vec!["email".into()];
        });
        let mut lifecycle: LifecyclePayload = serde_json::from_value(serde_json::json!({
            "ownerId": "u", "organizationId": "o", "subject": "u",
            "data": {"id": "i1", "invitee": {"EMAIL": "a@b.c"}},
        }))
        .unwrap();
        apply_lifecycle(&mut lifecycle, &redaction);
        assert_eq!(
            lifecycle.data,
            serde_json::json!({"id": "i1", "invitee": {"EMAIL": "********"}})
        );
        // The body rule is for gateway events only, and the reverse.
        let mut untouched = payload(&[], &[]);
        apply_gateway(&mut untouched, &redaction);
        assert_eq!(untouched.http.request.body, r#"{"password":"p"}"#);
    }
}
