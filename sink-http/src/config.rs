use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use auditstream_kafka::topics;
use reqwest::header::{HeaderName, HeaderValue};
use serde::Deserialize;

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
    /// Deliveries pending at once per worker; bounds memory. Default 64.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Timeout of one POST, e.g. `"10s"`. Default 10 seconds.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// How often finished offsets are committed. Default 1 second.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long a graceful shutdown waits for pending deliveries. Default 10 seconds.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Retry timing.
    #[serde(default)]
    pub retry: RetryConfig,
    /// TLS settings.
    #[serde(default)]
    pub tls: TlsConfig,
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

/// `[destinations.retry]`: capped exponential backoff with full jitter.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
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
}

fn default_streams() -> Vec<StreamName> {
    vec![StreamName::Lifecycle, StreamName::Module]
}
fn default_max_in_flight() -> usize {
    64
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
}

impl Destination {
    /// Consumer group of this destination's workers.
    pub fn group(&self) -> String {
        format!("auditstream.sink.{}", self.config.name)
    }

    /// Envelope topics this destination reads.
    pub fn topics(&self) -> Vec<&'static str> {
        self.config.streams.iter().map(|s| s.topic()).collect()
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
        if self.max_in_flight == 0 {
            return Err(fail("max_in_flight must be at least 1".to_owned()));
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
        Ok(Destination {
            config: self.clone(),
            url,
            headers,
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
        ];
        for (text, needle) in cases {
            let err = config(text).validate(env).unwrap_err().to_string();
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
            assert!(!err.contains("s3cr3t"), "{err}");
        }
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err =
            toml::from_str::<DestinationConfig>("name = \"a\"\nurl = \"https://x\"\nurll = 1")
                .unwrap_err();
        assert!(err.to_string().contains("unknown field"), "{err}");
    }
}
