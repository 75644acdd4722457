use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use auditstream_kafka::topics;
use auditstream_schemas::pattern;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;

use crate::encode::{
    DatadogOptions, ElasticsearchOptions, FormatConfig, FormatName, FormatTable, SplunkOptions,
};
use crate::SinkError;

/// One `[[destinations]]` entry of the config file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationConfig {
    /// Name: letters, digits, `.`, `_`, `-`. Names the consumer group `auditstream.sink.<name>`.
    pub name: String,
    /// Endpoint that receives one POST per event, e.g. `https://siem.example.com/hec`.
    pub url: String,
    /// Headers sent with every POST. A value may reference environment variables as `${NAME}`,
    /// e.g. `Authorization = "Splunk ${SPLUNK_HEC_TOKEN}"`; values are never logged.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Streams to deliver: `lifecycle`, `module`, or both (the default).
    #[serde(default = "default_streams")]
    pub streams: Vec<StreamName>,
    /// Narrows the streams to some stacks, organisations or event types. Empty lists (the
    /// default) let everything through. Events filtered out are counted, not dead-lettered.
    #[serde(default)]
    pub filter: FilterConfig,
    /// Body format: `json` (default, one envelope per POST), `json_array`, `ndjson`,
    /// `splunk_hec`, `datadog` or `elasticsearch_bulk`. See [`FormatConfig`].
    #[serde(default)]
    pub format: FormatName,
    /// Options of `splunk_hec` (host, source, sourcetype, index).
    #[serde(default)]
    pub splunk: Option<SplunkOptions>,
    /// Options of `datadog` (ddsource, service, hostname, tags).
    #[serde(default)]
    pub datadog: Option<DatadogOptions>,
    /// Options of `elasticsearch_bulk` (index).
    #[serde(default)]
    pub elasticsearch: Option<ElasticsearchOptions>,
    /// How events are grouped into POSTs. Default: one event per POST.
    #[serde(default)]
    pub batch: BatchConfig,
    /// POSTs in flight at once per worker. Default 16.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Events read but not yet delivered or dead-lettered, per worker. When reached, the worker
    /// pauses its partitions (and keeps polling) until deliveries complete. Default 2000.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Same bound in envelope bytes. Default 32 MiB.
    #[serde(default = "default_max_in_flight_bytes")]
    pub max_in_flight_bytes: usize,
    /// Timeout of one POST, e.g. `"10s"`. Default 10 seconds.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How often finished offsets are committed. Default 1 second.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long a graceful shutdown waits for pending deliveries. Default 10 seconds.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Events whose date is older than this are no longer retried: they go to the dead-letter
    /// topic with reason `expired`. Keep it below the topics' retention. Default 72 hours.
    #[serde(default = "default_retention", with = "humantime_serde")]
    pub retention: Duration,
    /// Compress request bodies with gzip (`Content-Encoding: gzip`). Default false.
    #[serde(default)]
    pub gzip: bool,
    /// Key of the `X-Auditstream-Signature` HMAC-SHA256 header, usually `"${VAR}"` so that it
    /// comes from the environment. No signature when absent. Never logged.
    #[serde(default)]
    pub signing_key: Option<String>,
    /// Retry timing and which statuses are permanent.
    #[serde(default)]
    pub retry: RetryConfig,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsConfig,
}

/// `[destinations.filter]`: which events of the subscribed streams to deliver.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterConfig {
    /// Stack ids to deliver; events without a stack are excluded when this is set.
    #[serde(default)]
    pub stacks: Vec<String>,
    /// Organisation ids to deliver.
    #[serde(default)]
    pub organizations: Vec<String>,
    /// Event type patterns: exact (`AUDIT`, `stacks.created`) or a prefix ending in `*` (`stacks.*`).
    #[serde(default)]
    pub types: Vec<String>,
}

impl FilterConfig {
    /// Whether an event with this metadata passes the filter.
    pub fn accepts(&self, event_type: &str, organization_id: &str, stack_id: Option<&str>) -> bool {
        let type_ok = self.types.is_empty()
            || self
                .types
                .iter()
                .any(|pattern| pattern::matches(pattern, event_type));
        let organization_ok = self.organizations.is_empty()
            || self.organizations.iter().any(|o| o == organization_id);
        let stack_ok =
            self.stacks.is_empty() || stack_id.is_some_and(|s| self.stacks.iter().any(|x| x == s));
        type_ok && organization_ok && stack_ok
    }
}

/// `[destinations.batch]`: grouping of events into one POST.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchConfig {
    /// Most events per POST. Default 1 (one event per POST, as the reference product does).
    #[serde(default = "default_batch_events")]
    pub max_events: usize,
    /// Most envelope bytes per POST (before framing and compression). Default 1 MiB.
    #[serde(default = "default_batch_bytes")]
    pub max_bytes: usize,
    /// How long a partial batch waits for more events. Default 20 ms.
    #[serde(default = "default_linger", with = "humantime_serde")]
    pub linger: Duration,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            max_events: default_batch_events(),
            max_bytes: default_batch_bytes(),
            linger: default_linger(),
        }
    }
}

/// A stream a destination subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamName {
    /// Lifecycle events (`audit.v2.lifecycle`).
    Lifecycle,
    /// Module HTTP audit events (`audit.v2.module`).
    Module,
}

impl StreamName {
    /// The envelope topic of the stream.
    pub fn topic(self) -> &'static str {
        match self {
            StreamName::Lifecycle => topics::LIFECYCLE,
            StreamName::Module => topics::MODULE,
        }
    }
}

/// `[destinations.retry]`: capped exponential backoff with full jitter, and which statuses are
/// permanent (see [`crate::retry`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Statuses dead-lettered at once instead of retried. Default 400, 404, 405, 410, 411, 413,
    /// 414, 415, 422. 401 and 403 are refused here: they are always retried (with an alarm).
    #[serde(default = "default_permanent_statuses")]
    pub permanent_statuses: Vec<u16>,
    /// Upper bound of the first retry's delay. Default 200 ms.
    #[serde(default = "default_initial_backoff", with = "humantime_serde")]
    pub initial_backoff: Duration,
    /// Cap of any delay, `Retry-After` included. Default 60 seconds.
    #[serde(default = "default_max_backoff", with = "humantime_serde")]
    pub max_backoff: Duration,
}

/// `[destinations.tls]`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of CA certificates to trust in addition to the public roots, for endpoints with a
    /// private or self-signed CA. Server certificates are always verified.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate (chain) for mutual TLS; needs `client_key_file`.
    #[serde(default)]
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of `client_cert_file`.
    #[serde(default)]
    pub client_key_file: Option<PathBuf>,
    /// Accept any server certificate. Dangerous: anyone on the path can read and alter events.
    /// Off by default; a warning is logged at every start when on.
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

fn default_streams() -> Vec<StreamName> {
    vec![StreamName::Lifecycle, StreamName::Module]
}
fn default_max_in_flight() -> usize {
    2000
}
fn default_max_in_flight_bytes() -> usize {
    32 * 1024 * 1024
}
fn default_concurrency() -> usize {
    16
}
fn default_retention() -> Duration {
    Duration::from_secs(72 * 3600)
}
fn default_batch_events() -> usize {
    1
}
fn default_batch_bytes() -> usize {
    1024 * 1024
}
fn default_linger() -> Duration {
    Duration::from_millis(20)
}
fn default_permanent_statuses() -> Vec<u16> {
    crate::retry::DEFAULT_PERMANENT_STATUSES.to_vec()
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_commit_interval() -> Duration {
    Duration::from_secs(1)
}
fn default_drain_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_initial_backoff() -> Duration {
    Duration::from_millis(200)
}
fn default_max_backoff() -> Duration {
    Duration::from_secs(60)
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            permanent_statuses: default_permanent_statuses(),
            initial_backoff: default_initial_backoff(),
            max_backoff: default_max_backoff(),
        }
    }
}

/// A header value that may hold a credential: shown as `<redacted>` by `Debug` and `Display`.
#[derive(Clone)]
pub struct Secret(HeaderValue);

impl Secret {
    /// The value to put on the wire.
    pub fn header_value(&self) -> &HeaderValue {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// A destination whose configuration was checked and whose secrets were resolved.
#[derive(Debug, Clone)]
pub struct Destination {
    /// The configuration as written.
    pub config: DestinationConfig,
    /// `url` parsed.
    pub url: reqwest::Url,
    /// Headers with `${VAR}` references resolved.
    pub headers: Vec<(HeaderName, Secret)>,
    /// HMAC key with `${VAR}` references resolved.
    pub signing_key: Option<SigningKey>,
    /// Body format with its options.
    pub format: FormatConfig,
}

/// An HMAC key: shown as `<redacted>` by `Debug`.
#[derive(Clone)]
pub struct SigningKey(Vec<u8>);

impl SigningKey {
    /// The key bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Destination {
    /// Consumer group of this destination's workers.
    pub fn group(&self) -> String {
        self.config.group()
    }

    /// Envelope topics this destination reads.
    pub fn topics(&self) -> Vec<&'static str> {
        self.config.topics()
    }

    /// The URL without credentials, query or fragment: safe to log.
    pub fn display_url(&self) -> String {
        let mut url = self.url.clone();
        let _ = url.set_username("");
        let _ = url.set_password(None);
        url.set_query(None);
        url.set_fragment(None);
        url.to_string()
    }
}

impl DestinationConfig {
    /// Consumer group of this destination's workers: `auditstream.sink.<name>`.
    pub fn group(&self) -> String {
        format!("auditstream.sink.{}", self.name)
    }

    /// Envelope topics this destination reads.
    pub fn topics(&self) -> Vec<&'static str> {
        self.streams.iter().map(|s| s.topic()).collect()
    }

    /// Checks every field and resolves secrets. `env` looks up environment variables (a parameter
    /// so that tests need not touch the process environment).
    pub fn validate(&self, env: impl Fn(&str) -> Option<String>) -> Result<Destination, SinkError> {
        let fail = |message: String| SinkError::Config {
            destination: self.name.clone(),
            message,
        };
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return Err(fail(format!(
                "name {:?} must be non-empty and use only letters, digits, '.', '_' and '-'",
                self.name
            )));
        }
        let url = reqwest::Url::parse(&self.url).map_err(|err| {
            fail(format!(
                "url is not a valid URL ({err}); expected e.g. https://siem.example.com/events"
            ))
        })?;
        if !matches!(url.scheme(), "https" | "http") || url.host_str().is_none() {
            return Err(fail(
                "url must be an http:// or https:// URL with a host".to_owned(),
            ));
        }
        if url.scheme() == "http" {
            tracing::warn!(destination = %self.name, "url uses plain http: events and headers travel unencrypted");
        }
        if self.streams.is_empty() {
            return Err(fail(
                "streams must name at least one of \"lifecycle\", \"module\"".to_owned(),
            ));
        }
        for type_pattern in &self.filter.types {
            pattern::check(type_pattern).map_err(|err| fail(format!("filter.types: {err}")))?;
        }
        for (field, value) in [
            ("max_in_flight", self.max_in_flight),
            ("max_in_flight_bytes", self.max_in_flight_bytes),
            ("concurrency", self.concurrency),
            ("batch.max_events", self.batch.max_events),
            ("batch.max_bytes", self.batch.max_bytes),
        ] {
            if value == 0 {
                return Err(fail(format!("{field} must be at least 1")));
            }
        }
        let format = FormatConfig::try_from(FormatTable {
            format: self.format,
            splunk: self.splunk.clone(),
            datadog: self.datadog.clone(),
            elasticsearch: self.elasticsearch.clone(),
        })
        .map_err(fail)?;
        if format == FormatConfig::Json && self.batch.max_events > 1 {
            return Err(fail(
                "format \"json\" sends one envelope per POST: keep batch.max_events = 1, or use json_array, ndjson or a vendor format".to_owned(),
            ));
        }
        if matches!(format, FormatConfig::Datadog(_))
            && (self.batch.max_events > crate::encode::DATADOG_MAX_ENTRIES
                || self.batch.max_bytes > crate::encode::DATADOG_MAX_PAYLOAD_BYTES)
        {
            return Err(fail(format!(
                "Datadog's intake takes at most {} logs and {} bytes per request: lower batch.max_events / batch.max_bytes",
                crate::encode::DATADOG_MAX_ENTRIES,
                crate::encode::DATADOG_MAX_PAYLOAD_BYTES
            )));
        }
        if self.batch.max_events > self.max_in_flight {
            return Err(fail(
                "batch.max_events must not exceed max_in_flight".to_owned(),
            ));
        }
        if let Some(status) = self
            .retry
            .permanent_statuses
            .iter()
            .find(|s| crate::retry::ALWAYS_RETRIED.contains(s))
        {
            return Err(fail(format!(
                "retry.permanent_statuses must not contain {status}: authentication failures are always retried (and alarmed), never dead-lettered"
            )));
        }
        if let Some(status) = self
            .retry
            .permanent_statuses
            .iter()
            .find(|s| !(300..=599).contains(*s))
        {
            return Err(fail(format!(
                "retry.permanent_statuses: {status} is not an HTTP error status"
            )));
        }
        if self.retention.is_zero() {
            return Err(fail("retention must be greater than zero".to_owned()));
        }
        if self.tls.client_cert_file.is_some() != self.tls.client_key_file.is_some() {
            return Err(fail(
                "tls.client_cert_file and tls.client_key_file go together".to_owned(),
            ));
        }
        if self.tls.insecure_skip_verify {
            tracing::warn!(destination = %self.name, "tls.insecure_skip_verify is on: server certificates are NOT verified");
        }
        if self.timeout.is_zero() {
            return Err(fail("timeout must be greater than zero".to_owned()));
        }
        if self.retry.initial_backoff.is_zero()
            || self.retry.max_backoff < self.retry.initial_backoff
        {
            return Err(fail(
                "retry.initial_backoff must be > 0 and <= retry.max_backoff".to_owned(),
            ));
        }
        let mut headers = Vec::with_capacity(self.headers.len());
        for (name, template) in &self.headers {
            let header_name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| fail(format!("headers: {name:?} is not a valid header name")))?;
            let value = interpolate(template, &env)
                .map_err(|message| fail(format!("headers.{name}: {message}")))?;
            let mut header_value = HeaderValue::from_str(&value).map_err(|_| {
                fail(format!(
                    "headers.{name}: the value (not shown) has characters not allowed in a header"
                ))
            })?;
            header_value.set_sensitive(true);
            headers.push((header_name, Secret(header_value)));
        }
        let signing_key = match &self.signing_key {
            Some(template) => {
                let key = interpolate(template, &env)
                    .map_err(|message| fail(format!("signing_key: {message}")))?;
                if key.is_empty() {
                    return Err(fail("signing_key resolves to an empty key".to_owned()));
                }
                Some(SigningKey(key.into_bytes()))
            }
            None => None,
        };
        Ok(Destination {
            config: self.clone(),
            url,
            headers,
            signing_key,
            format,
        })
    }
}

/// Replaces `${NAME}` with the value of environment variable `NAME`; `$$` is a literal `$`.
fn interpolate(template: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(dollar) = rest.find('$') {
        out.push_str(&rest[..dollar]);
        let after = &rest[dollar + 1..];
        if let Some(stripped) = after.strip_prefix('$') {
            out.push('$');
            rest = stripped;
        } else if let Some(body) = after.strip_prefix('{') {
            let end = body
                .find('}')
                .ok_or_else(|| "unterminated ${...} reference".to_owned())?;
            let name = &body[..end];
            let value =
                env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&value);
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_text: &str) -> DestinationConfig {
        toml::from_str(toml_text).unwrap()
    }

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "s3cr3t".to_owned())
    }

    #[test]
    fn secrets_are_resolved_and_never_printed() {
        let destination = config(
            r#"name = "splunk"
               url = "https://user:pw@siem.example.com/hec?token=abc"
               headers = { Authorization = "Splunk ${TOKEN}", X-Price = "$$5" }"#,
        )
        .validate(env)
        .unwrap();
        let (name, value) = &destination.headers[0];
        assert_eq!(name, "authorization");
        assert_eq!(value.header_value(), "Splunk s3cr3t");
        assert_eq!(destination.headers[1].1.header_value(), "$5");
        let debug = format!("{destination:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert_eq!(destination.display_url(), "https://siem.example.com/hec");
        assert_eq!(destination.group(), "auditstream.sink.splunk");
        assert_eq!(destination.topics(), [topics::LIFECYCLE, topics::MODULE]);
    }

    #[test]
    fn errors_name_the_field_and_hide_values() {
        let cases = [
            (
                r#"name = "a b"
                url = "https://x""#,
                "name",
            ),
            (
                r#"name = "a"
                url = "not a url""#,
                "url is not a valid URL",
            ),
            (
                r#"name = "a"
                url = "ftp://x""#,
                "http:// or https://",
            ),
            (
                r#"name = "a"
                url = "https://x"
                headers = { Authorization = "Bearer ${MISSING}" }"#,
                "MISSING is not set",
            ),
            (
                r#"name = "a"
                url = "https://x"
                streams = []"#,
                "streams",
            ),
            (
                r#"name = "a"
                url = "https://x"
                headers = { Authorization = "${TOKEN}\n" }"#,
                "not shown",
            ),
            (
                r#"name = "a"
                url = "https://x"
                filter = { types = ["stacks.*.created"] }"#,
                "filter.types",
            ),
        ];
        for (text, needle) in cases {
            let err = config(text).validate(env).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn filters_match_types_organisations_and_stacks() {
        let filter = FilterConfig {
            stacks: vec!["s1".into()],
            organizations: vec![],
            types: vec!["stacks.*".into(), "AUDIT".into()],
        };
        assert!(filter.accepts("stacks.created", "o", Some("s1")));
        assert!(filter.accepts("AUDIT", "o", Some("s1")));
        assert!(!filter.accepts("AUDITX", "o", Some("s1")));
        assert!(!filter.accepts("invitations.created", "o", Some("s1")));
        assert!(!filter.accepts("stacks.created", "o", Some("s2")));
        assert!(
            !filter.accepts("stacks.created", "o", None),
            "a stack filter excludes events without a stack"
        );
        assert!(FilterConfig::default().accepts("anything", "o", None));
        let by_org = FilterConfig {
            organizations: vec!["o1".into()],
            ..FilterConfig::default()
        };
        assert!(by_org.accepts("AUDIT", "o1", None));
        assert!(!by_org.accepts("AUDIT", "o2", None));
    }

    #[test]
    fn signing_key_is_resolved_and_hidden() {
        let destination = config("name = \"a\"\nurl = \"https://x\"\nsigning_key = \"${TOKEN}\"")
            .validate(env)
            .unwrap();
        assert_eq!(destination.signing_key.as_ref().unwrap().bytes(), b"s3cr3t");
        assert!(!format!("{destination:?}").contains("s3cr3t"));
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err =
            toml::from_str::<DestinationConfig>("name = \"a\"\nurl = \"https://x\"\nurll = 1")
                .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
