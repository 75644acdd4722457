//! JSON objects carried as their compact text.
//!
//! The gateway's claims arrive as JSON object text (Avro) or as an object (JSON), and the envelope
//! writes them back as an object; nothing in between reads them. So the router does not build a
//! tree of them: [`JsonObject::parse`] checks the text and writes it compactly in one pass, with
//! serde-transcode driving serde_json's serializer straight from its deserializer. The result is
//! byte for byte what parsing into a `serde_json::Map` and serializing it writes (same escapes,
//! same numbers, names in their order), with one difference: a name that appears twice in an
//! object is kept twice, as it came, where a map would keep one of them. A tree of the claims was
//! a tenth of the router's pure work per event.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// A JSON object, held as compact JSON text (`{"sub":"u","roles":["a"]}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonObject(String);

/// Why text is not a JSON object.
#[derive(Debug, thiserror::Error)]
pub enum JsonObjectError {
    /// The text is JSON, but of something else than an object.
    #[error("expected a JSON object")]
    NotAnObject,
    /// The text is not JSON.
    #[error("not JSON: {0}")]
    NotJson(#[from] serde_json::Error),
}

impl JsonObject {
    /// Checks that `text` is one JSON object (surrounding whitespace allowed) and keeps it
    /// compacted.
    pub fn parse(text: &str) -> Result<JsonObject, JsonObjectError> {
        if !text.trim_start().starts_with('{') {
            // Still report text that is not JSON at all as such.
            serde_json::from_str::<serde::de::IgnoredAny>(text)?;
            return Err(JsonObjectError::NotAnObject);
        }
        let mut compact = Vec::with_capacity(text.len());
        let mut reader = serde_json::Deserializer::from_str(text);
        serde_transcode::transcode(&mut reader, &mut serde_json::Serializer::new(&mut compact))?;
        reader.end()?;
        Ok(JsonObject(
            String::from_utf8(compact).expect("serde_json writes UTF-8"),
        ))
    }

    /// The compact text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&Map<String, Value>> for JsonObject {
    fn from(map: &Map<String, Value>) -> JsonObject {
        JsonObject(serde_json::to_string(map).expect("a JSON map always serializes"))
    }
}

/// Claims of string values, for the property tests of the formats that carry them.
#[cfg(test)]
pub(crate) fn of_strings(pairs: std::collections::BTreeMap<String, String>) -> JsonObject {
    let map: Map<String, Value> = pairs
        .into_iter()
        .map(|(key, value)| (key, Value::String(value)))
        .collect();
    JsonObject::from(&map)
}

impl fmt::Display for JsonObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Serializes as the object itself (not as a string of it), to any format.
impl Serialize for JsonObject {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut reader = serde_json::Deserializer::from_str(&self.0);
        serde_transcode::Transcoder::new(&mut reader).serialize(serializer)
    }
}

/// Deserializes from an object of any format. This is the slow path (a tree first), used where
/// envelopes are read back, not where they are routed.
impl<'de> Deserialize<'de> for JsonObject {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<JsonObject, D::Error> {
        Map::<String, Value>::deserialize(deserializer).map(|map| JsonObject::from(&map))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn text_is_compacted_as_serde_json_writes_it() {
        let text = " { \"sub\" : \"u\\u0041\" , \"n\" : 1.50, \"big\": 12345678901234567890,\n\
                    \"roles\": [ \"a\", { \"x\": null } ], \"e\": \"\\ud83d\\ude00\\/\" } ";
        let object = JsonObject::parse(text).unwrap();
        let through_a_map: Map<String, Value> = serde_json::from_str(text).unwrap();
        assert_eq!(
            object.as_str(),
            serde_json::to_string(&through_a_map).unwrap()
        );
        assert_eq!(
            object.as_str(),
            r#"{"sub":"uA","n":1.5,"big":12345678901234567890,"roles":["a",{"x":null}],"e":"😀/"}"#
        );
    }

    #[test]
    fn anything_but_one_object_is_refused() {
        for text in ["[1]", "\"{}\"", "1", "null", " true"] {
            let err = JsonObject::parse(text).unwrap_err();
            assert!(matches!(err, JsonObjectError::NotAnObject), "{text}: {err}");
        }
        for text in [
            "",
            "{",
            "{\"a\":}",
            "{} {}",
            "{}x",
            "not json",
            "{\"a\":1,}",
        ] {
            let err = JsonObject::parse(text).unwrap_err();
            assert!(matches!(err, JsonObjectError::NotJson(_)), "{text}: {err}");
            assert!(err.to_string().starts_with("not JSON"), "{err}");
        }
    }

    #[test]
    fn nesting_beyond_serde_jsons_limit_is_an_error_not_a_crash() {
        let deep = format!("{{\"a\":{}{}}}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(matches!(
            JsonObject::parse(&deep),
            Err(JsonObjectError::NotJson(_))
        ));
    }

    #[test]
    fn repeated_names_are_kept_as_they_came() {
        let object = JsonObject::parse(r#"{"a":1,"a":2}"#).unwrap();
        assert_eq!(object.as_str(), r#"{"a":1,"a":2}"#);
    }

    #[test]
    fn serializes_as_an_object_and_reads_back() {
        let object = JsonObject::parse(r#"{"sub":"u","n":[1,2]}"#).unwrap();
        let wrapped = serde_json::json!({ "claims": object });
        assert_eq!(wrapped.to_string(), r#"{"claims":{"sub":"u","n":[1,2]}}"#);
        let back: JsonObject = serde_json::from_value(wrapped["claims"].clone()).unwrap();
        assert_eq!(back, object);
    }

    fn json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("JSON has no NaN or infinity", |f| f.is_finite())
                .prop_map(Value::from),
            "\\PC{0,8}|[\"\\\\\u{0}-\u{1f}]{0,3}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::vec(("\\PC{0,6}", inner), 0..4)
                    .prop_map(|entries| Value::Object(entries.into_iter().collect())),
            ]
        })
    }

    proptest! {
        /// Pretty-printed text of any object compacts to what serde_json writes for its map.
        #[test]
        fn agrees_with_a_round_trip_through_a_map(
            entries in prop::collection::vec(("\\PC{0,6}", json()), 0..5)
        ) {
            let map: Map<String, Value> = entries.into_iter().collect();
            let pretty = serde_json::to_string_pretty(&map).unwrap();
            let object = JsonObject::parse(&pretty).unwrap();
            prop_assert_eq!(object.as_str(), serde_json::to_string(&map).unwrap());
            prop_assert_eq!(object, JsonObject::from(&map));
        }
    }
}
