//! The always-on redaction rules of the product design, applied to a normalized gateway payload.
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
//! Each rule errs on the side of removing: a false positive costs an auditor a body, a false
//! negative leaks a credential.

use auditstream_schemas::envelope::{GatewayPayload, HeaderMap};
use percent_encoding::percent_decode_str;

/// Canonical name of the request header that rule 1 removes.
pub const AUTHORIZATION: &str = "Authorization";
/// Canonical name of the header rule 3 reads.
pub const CONTENT_TYPE: &str = "Content-Type";
/// Path whose response body rule 2 clears, as segments.
const OAUTH_TOKEN_SEGMENTS: [&str; 4] = ["api", "auth", "oauth", "token"];

/// Applies the three always-on rules in place.
pub fn apply(payload: &mut GatewayPayload) {
    let request = &mut payload.http.request;
    let response = &mut payload.http.response;
    request.header.remove(AUTHORIZATION);
    if is_oauth_token_path(&request.path) {
        response.body.clear();
    }
    if is_streaming(&request.header) || is_streaming(&response.headers) {
        request.body.clear();
        response.body.clear();
    }
}

/// Whether `path` names the OAuth token endpoint, however it is spelled.
pub fn is_oauth_token_path(path: &str) -> bool {
    let without_query = path.split(['?', '#']).next().unwrap_or_default();
    let decoded = percent_decode_str(without_query).decode_utf8_lossy();
    let mut segments: Vec<&str> = Vec::with_capacity(4);
    // A decoded `%2F` or a backslash separates segments too: some servers route them as `/`.
    for segment in decoded.split(['/', '\\']) {
        match segment.trim() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    segments.len() == OAUTH_TOKEN_SEGMENTS.len()
        && segments
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
        .any(|content_type| is_streaming_media_type(content_type))
}

fn is_streaming_media_type(content_type: &str) -> bool {
    let media_type = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    media_type == "application/octet-stream"
        || (media_type.starts_with("application/vnd.formance") && media_type.ends_with("-stream"))
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
        ];
        for path in token_paths {
            assert!(is_oauth_token_path(path), "{path} should match");
        }
        for path in [
            "/api/auth/oauth/tokens",
            "/api/auth/oauth",
            "/v2/api/auth/oauth/token",
            "/api/ledger/token",
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
}
