use std::time::Duration;

use serde::Deserialize;

/// The `[router]` section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterConfig {
    /// Consumer group of the router processes. Default `auditstream.router`; start more
    /// processes with the same group to share the raw partitions.
    #[serde(default = "default_group")]
    pub group: String,
    /// Records read but not yet acknowledged by the broker, per process. Bounds memory; when full
    /// the router stops reading until acknowledgements come back. Default 5000: at 170,000
    /// events/s that is about 30 ms of acknowledgements, and side by side with 20000 it routed as
    /// fast with 25 MiB less resident memory (docs/PERFORMANCE.md).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Raw messages, and envelopes, larger than this many bytes are dead-lettered as `oversized`.
    /// Default 960 KiB (983,040 bytes). Keep it 64 KiB below the broker's `message.max.bytes`
    /// (Kafka's default is 1,048,588), the room a dead letter needs for its headers.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How often finished offsets are committed, e.g. `"1s"`. Default 1 second.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long a graceful shutdown waits for in-flight records. Default 10 seconds.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Operator redaction rules (`[router.redaction.*]`), applied after the always-on ones.
    /// Default: none, so events carry everything the always-on rules leave.
    #[serde(default)]
    pub redaction: RedactionConfig,
}

/// The `[router.redaction]` section: operator rules, each off until configured.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedactionConfig {
    /// Rules for module HTTP audit events (`app = "gateway"`). Default: none.
    #[serde(default)]
    pub gateway: GatewayRedactionConfig,
    /// Rules for lifecycle events (`app = "membership"`). Default: none.
    #[serde(default)]
    pub membership: MembershipRedactionConfig,
}

/// The `[router.redaction.gateway]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayRedactionConfig {
    /// Request header names removed from `http.request.header`, e.g. `["Cookie", "X-Api-Key"]`.
    /// Compared case-insensitively after trimming, against the canonicalized and merged headers,
    /// so every casing and duplicate goes. Default: none (only `Authorization`, always removed).
    #[serde(default)]
    pub drop_request_headers: Vec<String>,
    /// Response header names removed from `http.response.headers`, e.g. `["Set-Cookie"]`.
    /// Compared like `drop_request_headers`. Default: none.
    #[serde(default)]
    pub drop_response_headers: Vec<String>,
    /// JSON field names whose values are replaced by `"********"` in request and response
    /// bodies, at any depth, whatever the value's type; names are compared case-insensitively
    /// after trimming. A body (or a string inside one) that is not JSON but contains one of the
    /// names is replaced whole. Default: none.
    #[serde(default)]
    pub mask_body_fields: Vec<String>,
    /// What happens to `actor.ip_address`: `"keep"`, `"omit"` (the field is left out) or
    /// `"truncate"` (IPv4 to its /24, e.g. `a.b.c.0`; IPv6 to its /48; an address that does not
    /// parse is left out). Default `"keep"`.
    #[serde(default)]
    pub ip_address: IpAddressRule,
}

/// The `[router.redaction.membership]` section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MembershipRedactionConfig {
    /// Field names whose values are replaced by `"********"` in `payload.data`, at any depth,
    /// compared like `gateway.mask_body_fields`, e.g. `["email"]`. Default: none.
    #[serde(default)]
    pub mask_data_fields: Vec<String>,
}

/// What the router does with the caller's IP address of a gateway event.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IpAddressRule {
    /// Delivered as captured.
    #[default]
    Keep,
    /// Left out of the envelope.
    Omit,
    /// IPv4 keeps its /24 (`192.0.2.17` -> `192.0.2.0`), IPv6 its /48; unparsable: left out.
    Truncate,
}

fn default_group() -> String {
    "auditstream.router".to_owned()
}
fn default_max_in_flight() -> usize {
    5_000
}
/// Default of `router.max_message_bytes`: 960 KiB, so that a dead letter (the record plus at most
/// `DEAD_LETTER_ROOM` of headers) stays within Kafka's default `message.max.bytes` of 1,048,588.
pub(crate) const DEFAULT_MAX_MESSAGE_BYTES: usize = 960 * 1024;

fn default_max_message_bytes() -> usize {
    DEFAULT_MAX_MESSAGE_BYTES
}
fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for RouterConfig {
    fn default() -> Self {
        RouterConfig {
            group: default_group(),
            max_in_flight: default_max_in_flight(),
            max_message_bytes: default_max_message_bytes(),
            commit_interval: default_commit_interval(),
            drain_timeout: default_drain_timeout(),
            redaction: RedactionConfig::default(),
        }
    }
}

impl RouterConfig {
    /// Checks the values that serde cannot.
    pub fn validate(&self) -> Result<(), String> {
        if self.group.trim().is_empty() {
            return Err("router.group must not be empty".into());
        }
        if self.max_in_flight == 0 {
            return Err("router.max_in_flight must be at least 1".into());
        }
        if self.max_message_bytes == 0 {
            return Err("router.max_message_bytes must be at least 1".into());
        }
        self.redaction.validate()
    }
}

impl RedactionConfig {
    /// Rejects empty names: an empty field name would match every malformed body by substring,
    /// and an empty header name nothing at all, neither of which an operator means.
    pub fn validate(&self) -> Result<(), String> {
        let lists = [
            (
                "router.redaction.gateway.drop_request_headers",
                &self.gateway.drop_request_headers,
            ),
            (
                "router.redaction.gateway.drop_response_headers",
                &self.gateway.drop_response_headers,
            ),
            (
                "router.redaction.gateway.mask_body_fields",
                &self.gateway.mask_body_fields,
            ),
            (
                "router.redaction.membership.mask_data_fields",
                &self.membership.mask_data_fields,
            ),
        ];
        for (field, names) in lists {
            if let Some(index) = names.iter().position(|name| name.trim().is_empty()) {
                return Err(format!("{field}[{index}] must not be empty"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> Result<RouterConfig, String> {
        toml::from_str(toml_text).map_err(|err| err.to_string())
    }

    #[test]
    fn redaction_is_off_by_default() {
        let config = parse("").unwrap();
        assert_eq!(config.redaction, RedactionConfig::default());
        assert_eq!(config.redaction.gateway.ip_address, IpAddressRule::Keep);
        config.validate().unwrap();
    }

    #[test]
    fn the_documented_example_parses() {
        let config = parse(
            r#"
            [redaction.gateway]
            drop_request_headers = ["Cookie", "X-Api-Key"]
            drop_response_headers = ["Set-Cookie"]
            mask_body_fields = ["password", "client_secret"]
            ip_address = "truncate"
            [redaction.membership]
            mask_data_fields = ["email"]
            "#,
        )
        .unwrap();
        let gateway = &config.redaction.gateway;
        assert_eq!(gateway.drop_request_headers, ["Cookie", "X-Api-Key"]);
        assert_eq!(gateway.drop_response_headers, ["Set-Cookie"]);
        assert_eq!(gateway.mask_body_fields, ["password", "client_secret"]);
        assert_eq!(gateway.ip_address, IpAddressRule::Truncate);
        assert_eq!(config.redaction.membership.mask_data_fields, ["email"]);
        config.validate().unwrap();
    }

    #[test]
    fn bad_redaction_sections_are_rejected() {
        let cases = [
            (
                "[redaction.gateway]\nip_address = \"hash\"",
                "unknown variant",
            ),
            ("[redaction.gateway]\ndrop_headers = []", "unknown field"),
            (
                "[redaction.lifecycle]\nmask_data_fields = []",
                "unknown field",
            ),
        ];
        for (text, needle) in cases {
            let err = parse(text).unwrap_err();
            assert!(err.contains(needle), "{text}: {err}");
        }
    }

    #[test]
    fn empty_names_are_errors_naming_the_field() {
        let cases = [
            (
                "[redaction.gateway]\ndrop_request_headers = [\"Cookie\", \"\"]",
                "router.redaction.gateway.drop_request_headers[1] must not be empty",
            ),
            (
                "[redaction.gateway]\ndrop_response_headers = [\"  \"]",
                "router.redaction.gateway.drop_response_headers[0] must not be empty",
            ),
            (
                "[redaction.gateway]\nmask_body_fields = [\"\\t\"]",
                "router.redaction.gateway.mask_body_fields[0] must not be empty",
            ),
            (
                "[redaction.membership]\nmask_data_fields = [\"\"]",
                "router.redaction.membership.mask_data_fields[0] must not be empty",
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text).unwrap().validate(), Err(expected.to_owned()));
        }
    }
}
