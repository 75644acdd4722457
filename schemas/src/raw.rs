//! Raw events: the shapes services publish to `audit.raw.gateway` and `audit.raw.lifecycle`.
//!
//! The same Rust types decode both encodings. Avro carries the strict forms of the `.avsc` files in
//! `schemas/avro/`; JSON, written by hand or by a script, may also use the convenient forms:
//!
//! | field | Avro | JSON also accepts |
//! |---|---|---|
//! | `timestamp` | epoch milliseconds | an RFC 3339 string with any offset, e.g. `"2026-04-30T11:23:41.1+02:00"` |
//! | `claims` | JSON object text or null | a JSON object |
//! | `data` | JSON object text | a JSON object |
//! | header values | array of strings | a single string |
//! | bodies | bytes | a string |
//!
//! Header maps keep every entry in arrival order, duplicates and odd casings included: collapsing
//! them is the router's job, and redaction must see all of them.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::json_object::JsonObject;

/// One API call as the gateway saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGatewayEvent {
    /// Event id (UUID).
    pub id: String,
    /// Trace id of the request.
    pub trace_id: String,
    /// Completion time, milliseconds since the Unix epoch.
    #[serde(with = "lenient::timestamp")]
    pub timestamp: i64,
    /// Organisation the call was made against.
    pub organization_id: String,
    /// Stack the call was made against.
    pub stack_id: String,
    /// Originating IP address.
    #[serde(default)]
    pub ip_address: Option<String>,
    /// OIDC claims of the validated JWT.
    #[serde(default, with = "lenient::json_object_text")]
    pub claims: Option<JsonObject>,
    /// Why the JWT could not be validated.
    #[serde(default)]
    pub token_validation_error: Option<String>,
    /// The request.
    pub request: RawRequest,
    /// The response.
    pub response: RawResponse,
}

/// A request as captured by the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRequest {
    /// HTTP method.
    pub method: String,
    /// Path, possibly with a query string.
    pub path: String,
    /// Host.
    pub host: String,
    /// Headers as received.
    #[serde(default)]
    pub headers: RawHeaders,
    /// Body bytes, not necessarily UTF-8.
    #[serde(default, with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// A response as captured by the gateway.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponse {
    /// HTTP status code.
    pub status_code: i32,
    /// Headers as sent.
    #[serde(default)]
    pub headers: RawHeaders,
    /// Body bytes, not necessarily UTF-8.
    #[serde(default, with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// Header entries in arrival order: `(name as received, values)`. Names may repeat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawHeaders(pub Vec<(String, Vec<String>)>);

impl RawHeaders {
    /// Builds headers from `(name, value)` pairs, one value each.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        RawHeaders(
            pairs
                .into_iter()
                .map(|(name, value)| (name.to_owned(), vec![value.to_owned()]))
                .collect(),
        )
    }
}

/// One administrative action.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLifecycleEvent {
    /// Event id (UUID) assigned by the producer.
    pub id: String,
    /// Catalogue event type.
    #[serde(rename = "type")]
    pub event_type: String,
    /// When the action happened, milliseconds since the Unix epoch.
    #[serde(with = "lenient::timestamp")]
    pub timestamp: i64,
    /// Owner of the affected resource.
    pub owner_id: String,
    /// Organisation of the affected resource.
    pub organization_id: String,
    /// Stack concerned, if any.
    #[serde(default)]
    pub stack_id: Option<String>,
    /// Who triggered the action.
    pub subject: String,
    /// Type-specific details.
    #[serde(with = "lenient::json_object_text_required")]
    pub data: Map<String, Value>,
}

impl Serialize for RawHeaders {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (name, values) in &self.0 {
            map.serialize_entry(name, values)?;
        }
        map.end()
    }
}

impl<'de> Deserialize<'de> for RawHeaders {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = RawHeaders;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of header name to a string or an array of strings")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawHeaders, A::Error> {
                let mut entries = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((name, values)) = map.next_entry::<String, lenient::OneOrMany>()? {
                    entries.push((name, values.0));
                }
                Ok(RawHeaders(entries))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// Deserializers that accept both the strict Avro forms and the convenient JSON forms.
mod lenient {
    use serde::{de, Deserialize, Deserializer, Serializer};
    use serde_json::{Map, Value};
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;

    /// A header value list written either as `"v"` or `["v1", "v2"]`.
    pub struct OneOrMany(pub Vec<String>);

    impl<'de> Deserialize<'de> for OneOrMany {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            #[derive(Deserialize)]
            #[serde(untagged)]
            enum Form {
                One(String),
                Many(Vec<String>),
            }
            match Form::deserialize(deserializer) {
                Ok(Form::One(value)) => Ok(OneOrMany(vec![value])),
                Ok(Form::Many(values)) => Ok(OneOrMany(values)),
                Err(_) => Err(de::Error::custom(
                    "header values must be a string or an array of strings",
                )),
            }
        }
    }

    pub mod timestamp {
        use super::*;

        pub fn serialize<S: Serializer>(millis: &i64, serializer: S) -> Result<S::Ok, S::Error> {
            serializer.serialize_i64(*millis)
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i64, D::Error> {
            struct Visitor;
            impl de::Visitor<'_> for Visitor {
                type Value = i64;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("epoch milliseconds or an RFC 3339 timestamp")
                }
                fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
                    Ok(v)
                }
                fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
                    i64::try_from(v).map_err(|_| E::custom("timestamp out of range"))
                }
                fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
                    let parsed = OffsetDateTime::parse(v, &Rfc3339).map_err(|err| {
                        E::custom(format_args!("timestamp {v:?} is not RFC 3339: {err}"))
                    })?;
                    i64::try_from(parsed.unix_timestamp_nanos() / 1_000_000)
                        .map_err(|_| E::custom("timestamp out of range"))
                }
            }
            deserializer.deserialize_any(Visitor)
        }
    }

    fn parse_object_text<E: de::Error>(text: &str) -> Result<Map<String, Value>, E> {
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(map)) => Ok(map),
            Ok(_) => Err(E::custom("expected a JSON object")),
            Err(err) => Err(E::custom(format_args!("not JSON: {err}"))),
        }
    }

    /// `Option<JsonObject>` carried as JSON text in Avro; a plain object (or text) in JSON.
    pub mod json_object_text {
        use super::*;
        use crate::json_object::JsonObject;

        pub fn serialize<S: Serializer>(
            value: &Option<JsonObject>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            match value {
                Some(object) => serializer.serialize_some(object.as_str()),
                None => serializer.serialize_none(),
            }
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Option<JsonObject>, D::Error> {
            match Option::<Value>::deserialize(deserializer)? {
                None | Some(Value::Null) => Ok(None),
                Some(Value::Object(map)) => Ok(Some(JsonObject::from(&map))),
                Some(Value::String(text)) => JsonObject::parse(&text)
                    .map(Some)
                    .map_err(de::Error::custom),
                Some(_) => Err(de::Error::custom("expected a JSON object or its text")),
            }
        }
    }

    /// `Map` carried as JSON text in Avro; a plain object (or text) in JSON.
    pub mod json_object_text_required {
        use super::*;

        pub fn serialize<S: Serializer>(
            value: &Map<String, Value>,
            serializer: S,
        ) -> Result<S::Ok, S::Error> {
            serializer.serialize_str(&Value::Object(value.clone()).to_string())
        }

        pub fn deserialize<'de, D: Deserializer<'de>>(
            deserializer: D,
        ) -> Result<Map<String, Value>, D::Error> {
            match Value::deserialize(deserializer)? {
                Value::Object(map) => Ok(map),
                Value::String(text) => parse_object_text(&text),
                _ => Err(de::Error::custom("expected a JSON object or its text")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_gateway_accepts_convenient_forms_and_keeps_duplicate_headers() {
        let event: RawGatewayEvent = serde_json::from_str(
            r#"{"id":"e1","trace_id":"t","timestamp":"2026-04-30T11:23:41.123+02:00",
                "organization_id":"o","stack_id":"s","claims":{"sub":"u"},
                "request":{"method":"GET","path":"/","host":"h",
                  "headers":{"authorization":"Bearer a","Authorization":["Bearer b"]},"body":"hi"},
                "response":{"status_code":200}}"#,
        )
        .unwrap();
        assert_eq!(event.timestamp, 1_777_541_021_123);
        assert_eq!(event.claims.unwrap().as_str(), r#"{"sub":"u"}"#);
        assert_eq!(
            event.request.headers.0,
            vec![
                ("authorization".to_owned(), vec!["Bearer a".to_owned()]),
                ("Authorization".to_owned(), vec!["Bearer b".to_owned()]),
            ]
        );
        assert_eq!(event.request.body, b"hi");
        assert!(event.response.body.is_empty());
    }

    #[test]
    fn json_rejects_unknown_fields_and_bad_timestamps() {
        let bad_field = r#"{"id":"e","type":"stacks.created","timestamp":1,"owner_id":"o",
            "organization_id":"o","subject":"s","data":{},"colour":"red"}"#;
        assert!(serde_json::from_str::<RawLifecycleEvent>(bad_field).is_err());
        let bad_time = r#"{"id":"e","type":"stacks.created","timestamp":"yesterday","owner_id":"o",
            "organization_id":"o","subject":"s","data":{}}"#;
        let err = serde_json::from_str::<RawLifecycleEvent>(bad_time).unwrap_err();
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }

    #[test]
    fn lifecycle_data_must_be_an_object() {
        let text = r#"{"id":"e","type":"stacks.created","timestamp":1,"owner_id":"o",
            "organization_id":"o","subject":"s","data":[1,2]}"#;
        assert!(serde_json::from_str::<RawLifecycleEvent>(text).is_err());
    }
}
