//! Realistic synthetic events for the demo, the tests and the benchmarks.
//!
//! Gateway events look like ledger, payments and wallets API calls of about 1 KB, and include the
//! cases redaction exists for: an `Authorization` header in varied casing on most calls, calls to
//! the OAuth token endpoint whose response carries an access token, and streaming calls. Every
//! value that redaction must remove contains [`SECRET_MARKER`], so a test can check delivered
//! bytes for that one string.

use auditstream_schemas::catalogue;
use auditstream_schemas::json_object::JsonObject;
use auditstream_schemas::raw::{
    RawGatewayEvent, RawHeaders, RawLifecycleEvent, RawRequest, RawResponse,
};
use rand::rngs::StdRng;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Map, Value};
use uuid::Uuid;

/// Substring of every synthetic secret. It must never reach a destination.
pub const SECRET_MARKER: &str = "s3cr3t";

const AUTHORIZATION_SPELLINGS: [&str; 5] = [
    "Authorization",
    "authorization",
    "AUTHORIZATION",
    "AuThOrIzAtIoN",
    " authorization ",
];
const OAUTH_PATHS: [&str; 4] = [
    "/api/auth/oauth/token",
    "/api/auth/oauth/token/",
    "/api/auth/oauth/token?grant_type=client_credentials",
    "/API/auth/oauth//token",
];
const STREAMING_TYPES: [&str; 3] = [
    "application/vnd.formance.ledger-stream",
    "application/octet-stream",
    "Application/Octet-Stream; charset=binary",
];

/// Which kind of gateway event [`Generator::gateway`] made; tests use it to aim assertions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayKind {
    /// An ordinary API call with a validated token.
    Ordinary,
    /// A call whose JWT did not validate.
    InvalidToken,
    /// A call to the OAuth token endpoint.
    OAuthToken,
    /// A call to a streaming endpoint.
    Streaming,
}

/// A seeded generator: the same seed gives the same sequence of kinds and contents, with fresh ids.
pub struct Generator {
    rng: StdRng,
    organizations: Vec<String>,
    stacks: Vec<(String, String)>,
}

impl Generator {
    /// A generator over 5 organisations with 4 stacks each.
    pub fn new(seed: u64) -> Generator {
        let mut rng = StdRng::seed_from_u64(seed);
        let organizations: Vec<String> = (0..5).map(|_| short_id(&mut rng)).collect();
        let stacks = organizations
            .iter()
            .flat_map(|org| (0..4).map(move |i| (org.clone(), format!("{org}-stk{i}"))))
            .collect();
        Generator {
            rng,
            organizations,
            stacks,
        }
    }

    /// The organisations this generator's events belong to (a destination filter can pick them).
    pub fn organizations(&self) -> &[String] {
        &self.organizations
    }

    /// A gateway event of a random kind.
    pub fn gateway(&mut self) -> RawGatewayEvent {
        let kind = match self.rng.random_range(0..100) {
            0..70 => GatewayKind::Ordinary,
            70..80 => GatewayKind::InvalidToken,
            80..90 => GatewayKind::OAuthToken,
            _ => GatewayKind::Streaming,
        };
        self.gateway_of(kind)
    }

    /// A gateway event of the given kind.
    pub fn gateway_of(&mut self, kind: GatewayKind) -> RawGatewayEvent {
        let (organization_id, stack_id) = self
            .stacks
            .choose(&mut self.rng)
            .expect("stacks exist")
            .clone();
        let user = format!("user-{}", self.rng.random_range(1..50));
        let secret_token = format!("Bearer eyJ{SECRET_MARKER}.{}", short_id(&mut self.rng));
        let mut request_headers = vec![
            ("Content-Type", "application/json".to_owned()),
            ("Accept", "application/json".to_owned()),
            ("User-Agent", "formance-sdk-go/v3.2.1".to_owned()),
            ("X-Request-Id", Uuid::new_v4().to_string()),
        ];
        if kind != GatewayKind::OAuthToken || self.rng.random_bool(0.5) {
            let spelling = AUTHORIZATION_SPELLINGS
                .choose(&mut self.rng)
                .expect("non-empty");
            request_headers.push((spelling, secret_token));
        }
        let amount = self.rng.random_range(1..1_000_000);
        let (method, path, request_body, status, response_body) = match kind {
            GatewayKind::Ordinary | GatewayKind::InvalidToken => {
                let reference = short_id(&mut self.rng);
                (
                    "POST",
                    "/api/ledger/v2/main/transactions".to_owned(),
                    json!({
                        "postings": [{"source": "world", "destination": format!("users:{user}:wallet"), "amount": amount, "asset": "USD/2"}],
                        "reference": reference,
                        "metadata": {"order_id": format!("ord_{reference}"), "channel": "checkout", "customer_tier": "gold"}
                    })
                    .to_string(),
                    if kind == GatewayKind::Ordinary { 200 } else { 401 },
                    json!({"data": {"id": self.rng.random_range(1..10_000_000), "postings": [{"source": "world", "destination": format!("users:{user}:wallet"), "amount": amount, "asset": "USD/2"}], "reference": reference, "timestamp": "2026-04-30T09:23:41.123Z", "reverted": false}})
                        .to_string(),
                )
            }
            GatewayKind::OAuthToken => (
                "POST",
                OAUTH_PATHS.choose(&mut self.rng).expect("non-empty").to_string(),
                "grant_type=client_credentials&client_id=svc-billing".to_owned(),
                200,
                json!({"access_token": format!("eyJ{SECRET_MARKER}{}", short_id(&mut self.rng)), "token_type": "Bearer", "expires_in": 3600}).to_string(),
            ),
            GatewayKind::Streaming => {
                let content_type = STREAMING_TYPES.choose(&mut self.rng).expect("non-empty").to_string();
                request_headers[0].1 = content_type;
                (
                    "POST",
                    "/api/ledger/v2/main/bulk".to_owned(),
                    format!("{{\"stream-chunk\":\"{SECRET_MARKER}-request\"}}\n"),
                    200,
                    format!("{{\"stream-chunk\":\"{SECRET_MARKER}-response\"}}\n"),
                )
            }
        };
        let streaming_response = kind == GatewayKind::Streaming && self.rng.random_bool(0.5);
        let response_type = if streaming_response {
            "application/octet-stream"
        } else {
            "application/json"
        };
        let claims = (kind != GatewayKind::InvalidToken).then(|| {
            let mut claims = Map::new();
            claims.insert("sub".into(), Value::String(user.clone()));
            claims.insert("email".into(), Value::String(format!("{user}@example.com")));
            claims.insert(
                "iss".into(),
                Value::String("https://auth.example.com".into()),
            );
            JsonObject::from(&claims)
        });
        RawGatewayEvent {
            id: Uuid::new_v4().to_string(),
            trace_id: Uuid::new_v4().simple().to_string(),
            timestamp: now_millis(),
            organization_id,
            stack_id: stack_id.clone(),
            ip_address: Some(format!("203.0.113.{}", self.rng.random_range(1..255))),
            claims,
            token_validation_error: (kind == GatewayKind::InvalidToken)
                .then(|| "token is expired".to_owned()),
            request: RawRequest {
                method: method.to_owned(),
                path,
                host: format!("{stack_id}.eu-west-1.formance.cloud"),
                headers: RawHeaders(
                    request_headers
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), vec![v]))
                        .collect(),
                ),
                body: request_body.into_bytes(),
            },
            response: RawResponse {
                status_code: status,
                headers: RawHeaders::from_pairs([
                    ("Content-Type", response_type),
                    ("Cache-Control", "no-store"),
                ]),
                body: response_body.into_bytes(),
            },
        }
    }

    /// A lifecycle event of a random catalogue type.
    pub fn lifecycle(&mut self) -> RawLifecycleEvent {
        let event_type = catalogue::lifecycle_types()
            .choose(&mut self.rng)
            .expect("catalogue is not empty");
        let organization_id = self
            .organizations
            .choose(&mut self.rng)
            .expect("organizations exist")
            .clone();
        let stack_index = self.rng.random_range(0..4);
        let stack_id = format!("{organization_id}-stk{stack_index}");
        let owner = format!("user-{}", self.rng.random_range(1..50));
        let data = match event_type.scope {
            "stacks" => {
                json!({"id": stack_id, "name": format!("prod-stack-{stack_index}"), "regionId": "eu-west-1"})
            }
            "organizations" => json!({"id": organization_id, "name": "Acme Corp"}),
            "invitations" => {
                json!({"id": short_id(&mut self.rng), "userEmail": "new.hire@example.com", "role": "GUEST"})
            }
            "regions" => json!({"id": "eu-west-1", "name": "Europe (Ireland)"}),
            _ => json!({"id": owner, "email": format!("{owner}@example.com")}),
        };
        RawLifecycleEvent {
            id: Uuid::new_v4().to_string(),
            event_type: event_type.name.to_owned(),
            timestamp: now_millis(),
            owner_id: owner.clone(),
            organization_id,
            stack_id: (event_type.scope == "stacks").then_some(stack_id),
            subject: owner,
            data: match data {
                Value::Object(map) => map,
                _ => unreachable!("json! objects"),
            },
        }
    }
}

fn short_id(rng: &mut StdRng) -> String {
    format!("{:012x}", rng.random::<u64>() & 0xffff_ffff_ffff)
}

fn now_millis() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use auditstream_schemas::avro;

    #[test]
    fn gateway_events_are_about_one_kilobyte_and_encode() {
        let mut generator = Generator::new(1);
        let sizes: Vec<usize> = (0..200)
            .map(|_| avro::encode_gateway(&generator.gateway()).unwrap().len())
            .collect();
        let mean = sizes.iter().sum::<usize>() / sizes.len();
        assert!((700..1400).contains(&mean), "mean encoded size {mean}");
    }

    #[test]
    fn every_kind_carries_a_secret_somewhere() {
        let mut generator = Generator::new(2);
        for kind in [
            GatewayKind::Ordinary,
            GatewayKind::InvalidToken,
            GatewayKind::OAuthToken,
            GatewayKind::Streaming,
        ] {
            let event = generator.gateway_of(kind);
            let text = serde_json::to_string(&event).unwrap()
                + &String::from_utf8_lossy(&event.request.body)
                + &String::from_utf8_lossy(&event.response.body);
            assert!(text.contains(SECRET_MARKER), "{kind:?}");
        }
    }

    #[test]
    fn lifecycle_events_use_catalogue_types() {
        let mut generator = Generator::new(3);
        for _ in 0..100 {
            let event = generator.lifecycle();
            assert!(catalogue::is_known_lifecycle_type(&event.event_type));
            avro::encode_lifecycle(&event).unwrap();
        }
    }
}
