//! Masking of configured field names in bodies and lifecycle data (redaction rule 5).
//!
//! * The value of every object key that matches a name (trimmed, case-insensitive) becomes
//!   `"********"`, whatever its type: string, number, boolean, null, object or array. Objects are
//!   walked at any depth, inside arrays too.
//! * Text that is not JSON (a truncated or malformed JSON body, a form body such as
//!   `user=bob&password=x`, plain text) and mentions a name anywhere, ignoring case, is replaced
//!   whole by `********`: without a parse there is no telling where a secret ends.
//! * A string inside JSON is text too: when it holds JSON (`"{\"password\":\"x\"}"`) it is
//!   masked the same way, and when it holds other text that mentions a name
//!   (`"password=x"`) it is replaced whole.
//! * "Mentions" is checked on the text as written and again after decoding JSON escapes
//!   (`pass\u0077ord`) and percent-encoding (`pass%77ord`), repeatedly, so an encoded name counts.
//! * Text that mentions no name is kept byte for byte. JSON text that mentions one is written back
//!   compactly from its parsed and masked value: a key repeated in one object keeps only its last
//!   value, the one that was checked, so an earlier duplicate cannot slip past.

use std::borrow::Cow;
use std::collections::BTreeSet;

use percent_encoding::percent_decode_str;
use serde_json::Value;

/// What a masked value becomes (the reference product's convention).
pub const MASK: &str = "********";

/// JSON text inside strings is parsed and walked this many levels deep. Deeper text that mentions
/// a name is replaced whole; the bound keeps the recursion small whatever the input.
const MAX_TEXT_DEPTH: usize = 8;

/// Rounds of decoding before a text that keeps changing is taken to mention a name: text encoded
/// that many times over is hiding something.
const DECODE_ROUNDS: usize = 8;

/// Configured names, trimmed and case-folded, compared with keys and searched for in text.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Names(BTreeSet<String>);

impl Names {
    /// The non-empty names of `names`.
    pub fn new(names: &[String]) -> Names {
        Names(
            names
                .iter()
                .map(|name| fold_case(name.trim()))
                .filter(|name| !name.is_empty())
                .collect(),
        )
    }

    /// Whether no name is configured, so that nothing is ever masked or dropped.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `key` is one of the names, ignoring case and surrounding whitespace.
    pub fn matches(&self, key: &str) -> bool {
        !self.is_empty() && self.0.contains(&fold_case(key.trim()))
    }

    /// Whether `text` contains a name, ignoring case, as written or once decoded.
    pub fn mentioned_in(&self, text: &str) -> bool {
        if self.is_empty() {
            return false;
        }
        let mut view = Cow::Borrowed(text);
        for _ in 0..DECODE_ROUNDS {
            if self.found_in(&view) {
                return true;
            }
            let unescaped = unescape_json(&view);
            if unescaped != view && self.found_in(&unescaped) {
                return true;
            }
            let decoded = percent_decode_str(&unescaped).decode_utf8_lossy();
            if decoded == view {
                return false;
            }
            view = Cow::Owned(decoded.into_owned());
        }
        true
    }

    fn found_in(&self, text: &str) -> bool {
        let folded = fold_case(text);
        self.0.iter().any(|name| folded.contains(name.as_str()))
    }
}

/// Masks a body in place; a body that mentions no name is left untouched. Returns whether the
/// body changed.
pub fn mask_body(body: &mut String, names: &Names) -> bool {
    match mask_text(body, names, 0) {
        Some(masked) if masked != *body => {
            *body = masked;
            true
        }
        _ => false,
    }
}

/// Masks a JSON value in place (lifecycle `data`). Returns whether a field was masked.
pub fn mask_value(value: &mut Value, names: &Names) -> bool {
    !names.is_empty() && walk(value, names, 0)
}

/// The masked form of `text`, or `None` when it mentions no name and stays as it is.
fn mask_text(text: &str, names: &Names, depth: usize) -> Option<String> {
    if !names.mentioned_in(text) {
        return None;
    }
    match serde_json::from_str::<Value>(text) {
        Ok(mut value) if depth < MAX_TEXT_DEPTH => {
            walk(&mut value, names, depth);
            Some(value.to_string())
        }
        _ => Some(MASK.to_owned()),
    }
}

/// `depth` counts levels of JSON text inside strings, not nesting inside one value: serde_json
/// already refuses values nested more than 128 deep.
/// Returns whether anything was masked.
fn walk(value: &mut Value, names: &Names, depth: usize) -> bool {
    match value {
        Value::Object(map) => {
            let mut masked = false;
            for (key, item) in map.iter_mut() {
                if names.matches(key) {
                    *item = Value::String(MASK.to_owned());
                    masked = true;
                } else {
                    masked |= walk(item, names, depth);
                }
            }
            masked
        }
        Value::Array(items) => items
            .iter_mut()
            .fold(false, |masked, item| walk(item, names, depth) | masked),
        Value::String(text) => match mask_text(text, names, depth + 1) {
            Some(masked) if masked != *text => {
                *text = masked;
                true
            }
            _ => false,
        },
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

/// Lower case, one character at a time. `str::to_lowercase` would lower a final `Σ` differently
/// depending on what follows it, and then a name could fail to be found inside a longer text.
fn fold_case(text: &str) -> String {
    text.chars().flat_map(char::to_lowercase).collect()
}

/// Decodes JSON string escapes wherever they appear in `text`. Inside valid JSON, escapes only
/// occur in strings and are read left to right, so a key decodes to what a parser would make of
/// it; an escape that is not valid JSON is kept as written.
fn unescape_json(text: &str) -> Cow<'_, str> {
    if !text.contains('\\') {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let escape = &rest[at + 1..];
        let (decoded, length) = match escape.chars().next() {
            Some(c @ ('"' | '\\' | '/')) => (c, 1),
            Some('b') => ('\u{8}', 1),
            Some('f') => ('\u{c}', 1),
            Some('n') => ('\n', 1),
            Some('r') => ('\r', 1),
            Some('t') => ('\t', 1),
            Some('u') => unicode_escape(escape).unwrap_or(('\\', 0)),
            _ => ('\\', 0),
        };
        out.push(decoded);
        rest = &escape[length..];
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// `u0077` -> `w`, and `uD83D\uDE00` (a surrogate pair) -> one character, with the length read.
fn unicode_escape(escape: &str) -> Option<(char, usize)> {
    let hex = |at: usize| {
        escape
            .get(at..at + 4)
            .filter(|digits| digits.bytes().all(|b| b.is_ascii_hexdigit()))
            .and_then(|digits| u32::from_str_radix(digits, 16).ok())
    };
    let first = hex(1)?;
    if (0xD800..0xDC00).contains(&first) && escape.get(5..7) == Some("\\u") {
        if let Some(second) = hex(7).filter(|low| (0xDC00..0xE000).contains(low)) {
            let code = 0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00);
            return char::from_u32(code).map(|c| (c, 11));
        }
    }
    Some((
        char::from_u32(first).unwrap_or(char::REPLACEMENT_CHARACTER),
        5,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn names(list: &[&str]) -> Names {
        Names::new(
            &list
                .iter()
                .map(|name| (*name).to_owned())
                .collect::<Vec<_>>(),
        )
    }

    fn masked_body(body: &str, list: &[&str]) -> String {
        let mut body = body.to_owned();
        mask_body(&mut body, &names(list));
        body
    }

    #[test]
    fn json_bodies_mask_every_type_at_any_depth() {
        let cases = [
            (r#"{"password":"s3"}"#, r#"{"password":"********"}"#),
            (r#"{"Password":123}"#, r#"{"Password":"********"}"#),
            (r#"{" PASSWORD ":true}"#, r#"{" PASSWORD ":"********"}"#),
            (r#"{"password":null}"#, r#"{"password":"********"}"#),
            (r#"{"password":{"a":1}}"#, r#"{"password":"********"}"#),
            (r#"{"password":[1,2]}"#, r#"{"password":"********"}"#),
            (
                r#"{"a":{"b":[{"c":1},{"client_SECRET":"s"}]}}"#,
                r#"{"a":{"b":[{"c":1},{"client_SECRET":"********"}]}}"#,
            ),
            (
                r#"[{"password":"a"},{"x":[{"password":"b"}]}]"#,
                r#"[{"password":"********"},{"x":[{"password":"********"}]}]"#,
            ),
            (r#"{"pass\u0077ord":"s"}"#, r#"{"password":"********"}"#),
            (
                r#"{"password":"a","user":"u","password":"b"}"#,
                r#"{"password":"********","user":"u"}"#,
            ),
            (
                r#"{"wrapped":"{\"password\":\"s\",\"n\":1}"}"#,
                r#"{"wrapped":"{\"password\":\"********\",\"n\":1}"}"#,
            ),
            (r#"{"form":"user=u&password=s"}"#, r#"{"form":"********"}"#),
            (
                r#"{"password_hint":"a pet"}"#,
                r#"{"password_hint":"a pet"}"#,
            ),
        ];
        for (body, expected) in cases {
            assert_eq!(
                masked_body(body, &["password", "client_secret"]),
                expected,
                "{body}"
            );
        }
    }

    #[test]
    fn bodies_that_mention_no_name_are_kept_byte_for_byte() {
        for body in [
            "",
            "{ \"user\" : 1.50 }",
            "not json",
            "[1, 2,\n 3]",
            r#"{"n":12345678901234567890123}"#,
        ] {
            assert_eq!(masked_body(body, &["password"]), body);
        }
    }

    #[test]
    fn text_that_is_not_json_but_mentions_a_name_is_replaced_whole() {
        let cases = [
            r#"{"password":"s3cr3t""#,
            r#"{"user":"u","PassWord":"s3cr3t","#,
            "user=bob&password=s3cr3t",
            "user=bob&pass%77ord=s3cr3t",
            "user=bob&pass%2577ord=s3cr3t",
            r#"{"pass\u0077ord":"s3cr3t""#,
            "password: s3cr3t",
            "PASSWORD",
        ];
        for body in cases {
            assert_eq!(masked_body(body, &["password"]), MASK, "{body}");
        }
    }

    #[test]
    fn no_names_means_no_change() {
        let mut body = r#"{"password":"x"}"#.to_owned();
        mask_body(&mut body, &Names::default());
        assert_eq!(body, r#"{"password":"x"}"#);
        let mut data = json!({"password": "x"});
        mask_value(&mut data, &Names::default());
        assert_eq!(data, json!({"password": "x"}));
    }

    #[test]
    fn lifecycle_values_are_walked() {
        let mut data = json!({
            "id": "u1",
            "Email": "a@b.c",
            "members": [{"email": ["x@y.z"]}, {"name": "n"}],
            "note": "{\"EMAIL\":\"q@r.s\"}",
        });
        mask_value(&mut data, &names(&["email"]));
        assert_eq!(
            data,
            json!({
                "id": "u1",
                "Email": MASK,
                "members": [{"email": MASK}, {"name": "n"}],
                "note": "{\"EMAIL\":\"********\"}",
            })
        );
    }

    #[test]
    fn names_are_trimmed_case_folded_and_never_empty() {
        let configured = names(&[" Cookie ", "", "  ", "ΣΑΣ"]);
        assert!(configured.matches("cookie"));
        assert!(configured.matches("COOKIE\t"));
        assert!(!configured.matches(""));
        assert!(configured.matches("σασ"));
        assert!(configured.mentioned_in("xxΣΑΣ"));
        assert!(!names(&[""]).mentioned_in("anything"));
    }

    #[test]
    fn escapes_decode_like_a_json_parser() {
        let cases = [
            (r#"pass\u0077ord"#, "password"),
            (r#"a\"b\\c\/d\te"#, "a\"b\\c/d\te"),
            (r#"\uD83D\uDE00!"#, "\u{1F600}!"),
            (r#"\uD83D"#, "\u{FFFD}"),
            (r#"\u12"#, r#"\u12"#),
            (r#"\x"#, r#"\x"#),
            ("trailing\\", "trailing\\"),
            ("\\u00e9t\\u00C9", "\u{e9}t\u{c9}"),
        ];
        for (text, expected) in cases {
            assert_eq!(unescape_json(text), expected, "{text}");
        }
    }

    #[test]
    fn endless_encoding_counts_as_a_mention() {
        let mut text = "x".to_owned();
        for _ in 0..DECODE_ROUNDS + 1 {
            text = text.replace('%', "%25") + "%25";
        }
        assert!(names(&["password"]).mentioned_in(&text));
        assert!(!names(&["password"]).mentioned_in("100%25 sure"));
    }

    #[test]
    fn json_nested_in_strings_too_deep_is_replaced_when_it_mentions_a_name() {
        let mut text = r#"{"password":"s"}"#.to_owned();
        for _ in 0..MAX_TEXT_DEPTH + 1 {
            text = json!({ "x": text }).to_string();
        }
        let masked = masked_body(&text, &["password"]);
        assert!(!masked.contains(r#"\"s\""#), "{masked}");
        assert!(masked.contains(MASK), "{masked}");
    }
}
