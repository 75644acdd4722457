//! The v2 envelope that destinations receive.
//!
//! Field names and order follow the reference product's "Event format" examples exactly; the
//! golden tests at the bottom of this file keep them that way.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::json_object::JsonObject;

mod write;

pub use write::write_gateway_json;

/// Header map of a captured request or response: canonical header name -> values in wire order.
pub type HeaderMap = BTreeMap<String, Vec<String>>;

/// Which service emitted an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum App {
    /// Module HTTP audit events, type `AUDIT`.
    Gateway,
    /// Lifecycle events, types from the catalogue.
    Membership,
}

impl App {
    /// The name used in the envelope and in the `app` Kafka header.
    pub fn as_str(self) -> &'static str {
        match self {
            App::Gateway => "gateway",
            App::Membership => "membership",
        }
    }
}

/// Envelope schema version. Only `v2` exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SchemaVersion {
    /// The current, stable version.
    #[serde(rename = "v2")]
    V2,
}

/// Event type of every gateway event.
pub const GATEWAY_EVENT_TYPE: &str = "AUDIT";

/// The shared envelope around both payload kinds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<P> {
    /// ISO 8601 UTC timestamp; the router always writes milliseconds (`2026-04-30T09:23:41.123Z`).
    pub date: String,
    /// Emitting service.
    pub app: App,
    /// Always `v2`.
    pub version: SchemaVersion,
    /// `AUDIT` for gateway events, a catalogue type for lifecycle events.
    #[serde(rename = "type")]
    pub event_type: String,
    /// Stream-specific payload.
    pub payload: P,
}

/// Envelope of a module HTTP audit event.
pub type GatewayEnvelope = Envelope<GatewayPayload>;
/// Envelope of a lifecycle event.
pub type LifecycleEnvelope = Envelope<LifecyclePayload>;

/// Payload of a module HTTP audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayPayload {
    /// Event id (UUID), stable across redeliveries.
    pub id: String,
    /// Distributed trace id of the request.
    pub trace_id: String,
    /// Who made the call and against what.
    pub actor: Actor,
    /// The captured request and response.
    pub http: Http,
}

/// Caller identity of a module HTTP audit event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Actor {
    /// OIDC claims of the validated JWT; absent when validation failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub claims: Option<JsonObject>,
    /// Why the JWT could not be validated; absent when it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_validation_error: Option<String>,
    /// Organisation the call was made against.
    pub organization_id: String,
    /// Stack the call was made against.
    pub stack_id: String,
    /// Originating IP address; absent when an operator rule omits it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_address: Option<String>,
}

/// Captured request and response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Http {
    /// The request as received by the gateway.
    pub request: HttpRequest,
    /// The response as sent by the module.
    pub response: HttpResponse,
}

/// Captured request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpRequest {
    /// HTTP method, e.g. `POST`.
    pub method: String,
    /// Request path.
    pub path: String,
    /// Request host.
    pub host: String,
    /// Request headers (singular name, as in the reference product).
    pub header: HeaderMap,
    /// Request body; empty when not captured.
    pub body: String,
}

/// Captured response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HttpResponse {
    /// HTTP status code.
    pub status_code: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Response body; empty when cleared or not captured.
    pub body: String,
}

/// Payload of a lifecycle event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LifecyclePayload {
    /// User or system that owns the affected resource.
    pub owner_id: String,
    /// Organisation of the affected resource.
    pub organization_id: String,
    /// User or system that triggered the event.
    pub subject: String,
    /// Type-specific details.
    pub data: Value,
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The module audit example of the reference product's "Event format" section.
    pub(crate) const SEED_GATEWAY: &str = r#"{
"date": "2026-04-30T09:23:41.123Z",
"app": "gateway",
"version": "v2",
"type": "AUDIT",
"payload": {
"id": "550e8400-e29b-41d4-a716-446655440000",
"trace_id": "4bf92f3577b34da6a3ce929d0e0e4736",
"actor": {
"claims": { "sub": "...", "email": "...", "iss": "..." },
"organization_id": "...",
"stack_id": "...",
"ip_address": "..."
},
"http": {
"request": {
"method": "POST",
"path": "/api/ledger/v2/main/transactions",
"host": "...",
"header": { "Content-Type": ["application/json"] },
"body": "..."
},
"response": {
"status_code": 200,
"headers": { "Content-Type": ["application/json"] },
"body": "..."
}
}
}
}"#;

    /// The lifecycle example (a stack creation) of the same section.
    pub(crate) const SEED_LIFECYCLE: &str = r#"{
"date": "2026-04-30T09:15:00Z",
"app": "membership",
"version": "v2",
"type": "stacks.created",
"payload": {
"ownerId": "...",
"organizationId": "...",
"subject": "...",
"data": {
"id": "...",
"name": "prod-stack",
"regionId": "..."
}
}
}"#;

    /// The seed text with every insignificant space and newline removed.
    fn compact(json: &str) -> String {
        serde_json::to_string(&serde_json::from_str::<Value>(json).unwrap()).unwrap()
    }

    #[test]
    fn gateway_seed_example_round_trips_byte_for_byte() {
        let parsed: GatewayEnvelope = serde_json::from_str(SEED_GATEWAY).unwrap();
        assert_eq!(parsed.app, App::Gateway);
        assert_eq!(parsed.payload.http.response.status_code, 200);
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            compact(SEED_GATEWAY)
        );
    }

    #[test]
    fn lifecycle_seed_example_round_trips_byte_for_byte() {
        let parsed: LifecycleEnvelope = serde_json::from_str(SEED_LIFECYCLE).unwrap();
        assert_eq!(parsed.event_type, "stacks.created");
        assert_eq!(parsed.payload.data["name"], "prod-stack");
        assert_eq!(
            serde_json::to_string(&parsed).unwrap(),
            compact(SEED_LIFECYCLE)
        );
    }

    #[test]
    fn token_error_replaces_claims_in_the_output() {
        let mut parsed: GatewayEnvelope = serde_json::from_str(SEED_GATEWAY).unwrap();
        parsed.payload.actor.claims = None;
        parsed.payload.actor.token_validation_error = Some("token expired".into());
        let text = serde_json::to_string(&parsed).unwrap();
        assert!(!text.contains("claims"), "{text}");
        assert!(
            text.contains(r#""actor":{"token_validation_error":"token expired","organization_id""#),
            "{text}"
        );
    }
}
