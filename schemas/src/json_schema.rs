//! JSON Schema (draft 2020-12) of the v2 envelope, for whoever receives it.
//!
//! The Rust types in [`envelope`](crate::envelope) describe what the router writes, but
//! destinations and auditors don't run our Rust: they get `schemas/json/envelope.v2.schema.json`
//! and can check every event they receive with any draft 2020-12 validator. The router's output is
//! tested against the same file through [`validate_envelope`], so the published schema and the
//! produced events can't drift apart unnoticed.
//!
//! The schema is self-contained (payloads are under `$defs`, its `$id` is a URN), so validation
//! never fetches anything: the `jsonschema` crate is built without its HTTP and file retrievers.
//!
//! ```
//! use auditstream_schemas::json_schema::validate_envelope;
//!
//! let event = serde_json::json!({
//!     "date": "2026-04-30T09:15:00.000Z", "app": "membership", "version": "v2",
//!     "type": "stacks.created",
//!     "payload": {"ownerId": "u1", "organizationId": "o1", "subject": "u1", "data": {}}
//! });
//! assert_eq!(validate_envelope(&event), Ok(()));
//!
//! let errors = validate_envelope(&serde_json::json!({"version": "v1"})).unwrap_err();
//! assert!(errors.iter().any(|e| e.starts_with("/version: ")), "{errors:?}");
//! ```

use std::sync::LazyLock;

use serde_json::Value;

/// The v2 envelope schema, both apps, as published in `schemas/json/envelope.v2.schema.json`.
pub const ENVELOPE_V2: &str = include_str!("../json/envelope.v2.schema.json");

/// Compiled once: building a validator parses the schema and checks it against the draft 2020-12
/// meta-schema, far more work than validating one event.
static ENVELOPE_V2_VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value =
        serde_json::from_str(ENVELOPE_V2).expect("envelope.v2.schema.json is valid JSON");
    jsonschema::draft202012::new(&schema).expect("envelope.v2.schema.json is a valid schema")
});

/// Checks `value` against the v2 envelope schema.
///
/// On failure, returns every violation as `<instance path>: <message>`, e.g.
/// `/payload/http/response/status_code: 42 is less than the minimum of 100`; the instance path is
/// a JSON pointer, `(root)` for the envelope itself.
pub fn validate_envelope(value: &Value) -> Result<(), Vec<String>> {
    let errors: Vec<String> = ENVELOPE_V2_VALIDATOR
        .iter_errors(value)
        .map(|error| {
            let path = error.instance_path().as_str();
            let path = if path.is_empty() { "(root)" } else { path };
            match error.kind() {
                // The crate's message ("False schema does not allow <value>") neither says why nor
                // keeps the value (claims, say) out of logs; the schema rule says why.
                jsonschema::error::ValidationErrorKind::FalseSchema => format!(
                    "{path}: must be absent here (schema rule {})",
                    error.schema_path()
                ),
                _ => format!("{path}: {error}"),
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue;
    use crate::envelope::GatewayEnvelope;

    use crate::envelope::tests::{SEED_GATEWAY, SEED_LIFECYCLE};

    fn seed(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    /// Asserts that `value` is rejected with an error whose text contains each of `needles`.
    #[track_caller]
    fn assert_rejected(value: &Value, needles: &[&str]) {
        let errors = validate_envelope(value).expect_err("should be rejected");
        assert!(
            errors
                .iter()
                .any(|error| needles.iter().all(|needle| error.contains(needle))),
            "no error mentions {needles:?}: {errors:#?}"
        );
    }

    #[test]
    fn schema_is_a_draft_2020_12_document_with_id_title_and_description() {
        let schema: Value = serde_json::from_str(ENVELOPE_V2).unwrap();
        assert_eq!(
            schema["$schema"],
            "https://json-schema.org/draft/2020-12/schema"
        );
        for key in ["$id", "title", "description"] {
            assert!(schema[key].is_string(), "missing {key}");
        }
        LazyLock::force(&ENVELOPE_V2_VALIDATOR);
    }

    #[test]
    fn seed_examples_validate() {
        assert_eq!(validate_envelope(&seed(SEED_GATEWAY)), Ok(()));
        assert_eq!(validate_envelope(&seed(SEED_LIFECYCLE)), Ok(()));
    }

    #[test]
    fn serialized_envelope_with_token_validation_error_validates() {
        let mut envelope: GatewayEnvelope = serde_json::from_str(SEED_GATEWAY).unwrap();
        envelope.payload.actor.claims = None;
        envelope.payload.actor.token_validation_error = Some("token expired".into());
        envelope.payload.actor.ip_address = None;
        let value = serde_json::to_value(&envelope).unwrap();
        assert!(value["payload"]["actor"].get("claims").is_none());
        assert_eq!(validate_envelope(&value), Ok(()));
    }

    #[test]
    fn router_date_format_validates_and_others_do_not() {
        for date in ["2026-04-30T09:23:41.123Z", "2026-04-30T09:15:00Z"] {
            let mut value = seed(SEED_LIFECYCLE);
            value["date"] = date.into();
            assert_eq!(validate_envelope(&value), Ok(()), "{date}");
        }
        for date in [
            "2026-04-30T09:23:41.123+02:00",
            "2026-04-30 09:23:41Z",
            "2026-13-30T09:23:41Z",
            "1777541021123",
        ] {
            let mut value = seed(SEED_LIFECYCLE);
            value["date"] = date.into();
            assert_rejected(&value, &["/date: "]);
        }
    }

    #[test]
    fn version_must_be_v2() {
        let mut value = seed(SEED_GATEWAY);
        value["version"] = "v1".into();
        assert_rejected(&value, &["/version: ", "v2"]);
    }

    #[test]
    fn gateway_type_must_be_audit() {
        let mut value = seed(SEED_GATEWAY);
        value["type"] = "stacks.created".into();
        assert_rejected(&value, &["/type: ", "AUDIT"]);
    }

    #[test]
    fn membership_type_must_be_dotted_lower_case() {
        let mut value = seed(SEED_LIFECYCLE);
        value["type"] = "AUDIT".into();
        assert_rejected(&value, &["/type: "]);
    }

    #[test]
    fn payload_must_match_the_app() {
        let mut value = seed(SEED_LIFECYCLE);
        value["payload"] = seed(SEED_GATEWAY)["payload"].take();
        assert_rejected(&value, &["/payload: ", "ownerId"]);
    }

    #[test]
    fn gateway_payload_id_is_required() {
        let mut value = seed(SEED_GATEWAY);
        value["payload"].as_object_mut().unwrap().remove("id");
        assert_rejected(&value, &["/payload: ", "\"id\""]);
    }

    #[test]
    fn status_code_must_be_an_http_status() {
        let mut value = seed(SEED_GATEWAY);
        value["payload"]["http"]["response"]["status_code"] = 42.into();
        assert_rejected(&value, &["/payload/http/response/status_code: ", "100"]);
    }

    #[test]
    fn claims_and_token_validation_error_are_exclusive() {
        let mut value = seed(SEED_GATEWAY);
        value["payload"]["actor"]["token_validation_error"] = "token expired".into();
        assert_rejected(
            &value,
            &[
                "/payload/actor/claims: must be absent",
                "token_validation_error",
            ],
        );
    }

    #[test]
    fn header_values_must_be_arrays() {
        let mut value = seed(SEED_GATEWAY);
        value["payload"]["http"]["request"]["header"]["Content-Type"] = "application/json".into();
        assert_rejected(
            &value,
            &["/payload/http/request/header/Content-Type: ", "array"],
        );
    }

    #[test]
    fn unknown_top_level_fields_are_rejected() {
        let mut value = seed(SEED_LIFECYCLE);
        value["extra"] = true.into();
        assert_rejected(&value, &["(root): ", "extra"]);
    }

    #[test]
    fn date_must_end_with_z() {
        let mut value = seed(SEED_GATEWAY);
        value["date"] = "2026-04-30T09:23:41.123".into();
        assert_rejected(&value, &["/date: "]);
    }

    #[test]
    fn every_catalogue_type_is_a_valid_membership_type() {
        let types = catalogue::lifecycle_types();
        assert!(!types.is_empty());
        for lifecycle_type in types {
            let mut value = seed(SEED_LIFECYCLE);
            value["type"] = lifecycle_type.name.into();
            assert_eq!(validate_envelope(&value), Ok(()), "{lifecycle_type:?}");
        }
    }

    /// Reads the directory rather than the bundled constants so that a new `.avsc` is covered too.
    #[test]
    fn every_avro_schema_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("avro");
        let mut parsed = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|ext| ext == "avsc") {
                let text = std::fs::read_to_string(&path).unwrap();
                if let Err(err) = apache_avro::Schema::parse_str(&text) {
                    panic!("{}: {err}", path.display());
                }
                parsed += 1;
            }
        }
        assert!(
            parsed >= 2,
            "expected the raw gateway and lifecycle schemas in {dir:?}"
        );
    }
}
