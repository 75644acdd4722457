//! The configuration file: `[kafka]`, `[topics]`, `[router]` and `[[destinations]]`.
//!
//! Sources, later ones winning: built-in defaults, the TOML file (`--config`), then environment
//! variables `AUDITSTREAM_<SECTION>__<FIELD>` (e.g. `AUDITSTREAM_KAFKA__BROKERS=10.0.0.5:9092`).
//! Unknown fields are errors, so a typo never silently falls back to a default.

use std::path::Path;

use anyhow::{bail, Context};
use auditstream_kafka::lag::GroupSpec;
use auditstream_kafka::topics::{TopicsConfig, RAW_GATEWAY, RAW_LIFECYCLE};
use auditstream_kafka::KafkaConfig;
use auditstream_router::RouterConfig;
use auditstream_sink_http::{Destination, DestinationConfig};
use figment::providers::{Env, Format, Toml};
use figment::Figment;
use serde::Deserialize;

/// The whole configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Broker connection.
    #[serde(default)]
    pub kafka: KafkaConfig,
    /// Topic creation settings.
    #[serde(default)]
    pub topics: TopicsConfig,
    /// Router settings.
    #[serde(default)]
    pub router: RouterConfig,
    /// Delivery destinations, one sink worker group each.
    #[serde(default)]
    pub destinations: Vec<DestinationConfig>,
}

impl Config {
    /// Loads and validates the configuration.
    pub fn load(path: Option<&Path>) -> anyhow::Result<Config> {
        Self::load_with(
            path,
            Env::prefixed("AUDITSTREAM_")
                .filter(|key| key.as_str().contains("__"))
                .split("__"),
        )
    }

    fn load_with(path: Option<&Path>, env: Env) -> anyhow::Result<Config> {
        let mut figment = Figment::new();
        if let Some(path) = path {
            if !path.exists() {
                bail!("config file {} does not exist", path.display());
            }
            figment = figment.merge(Toml::file(path));
        }
        let config: Config = figment
            .merge(env)
            .extract()
            .map_err(|err| anyhow::anyhow!("{}", describe(err)))
            .with_context(|| match path {
                Some(path) => format!("invalid configuration in {}", path.display()),
                None => "invalid configuration".to_owned(),
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what serde cannot: the router section, destination names being unique, and the
    /// shape of every destination (URL, header names, limits). Secrets are resolved later, by
    /// [`Config::destination`], for the one destination a sink runs.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.router.validate().map_err(anyhow::Error::msg)?;
        if self.topics.partitions < 1 || self.topics.replication_factor < 1 {
            bail!("topics.partitions and topics.replication_factor must be at least 1");
        }
        let mut names = std::collections::HashSet::new();
        for destination in &self.destinations {
            if !names.insert(destination.name.as_str()) {
                bail!(
                    "two destinations are named {:?}; names must be unique",
                    destination.name
                );
            }
            // Structure only: every command checks every destination, but only the sink that
            // runs a destination needs its secrets, so `${VAR}`s resolve to a placeholder here.
            destination.validate(|_| Some("placeholder".to_owned()))?;
        }
        Ok(())
    }

    /// Every consumer group of the pipeline, with the topics it reads: the router's, then one
    /// per destination. This is what the lag exporter and `status` watch.
    pub fn pipeline_groups(&self) -> Vec<GroupSpec> {
        let router = GroupSpec {
            group: self.router.group.clone(),
            destination: None,
            topics: vec![RAW_LIFECYCLE.to_owned(), RAW_GATEWAY.to_owned()],
        };
        let sinks = self.destinations.iter().map(|destination| GroupSpec {
            group: destination.group(),
            destination: Some(destination.name.clone()),
            topics: destination
                .topics()
                .into_iter()
                .map(str::to_owned)
                .collect(),
        });
        std::iter::once(router).chain(sinks).collect()
    }

    /// The named destination, validated, with secrets resolved.
    pub fn destination(&self, name: &str) -> anyhow::Result<Destination> {
        let Some(config) = self.destinations.iter().find(|d| d.name == name) else {
            let known: Vec<&str> = self.destinations.iter().map(|d| d.name.as_str()).collect();
            bail!("no destination named {name:?} in the configuration (configured: {known:?})");
        };
        Ok(config.validate(|name| std::env::var(name).ok())?)
    }
}

/// Figment's errors name the field path; keep every one of them.
fn describe(error: figment::Error) -> String {
    error
        .into_iter()
        .map(|err| {
            let path = err.path.join(".");
            if path.is_empty() {
                err.kind.to_string()
            } else {
                format!("{path}: {}", err.kind)
            }
        })
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod reference;

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> anyhow::Result<Config> {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), text).unwrap();
        Config::load_with(
            Some(file.path()),
            Env::prefixed("AUDITSTREAM_TEST_UNUSED_").split("__"),
        )
    }

    #[test]
    fn defaults_apply_without_a_file() {
        let config = Config::load_with(None, Env::prefixed("AUDITSTREAM_TEST_UNUSED_")).unwrap();
        assert_eq!(config.kafka.brokers, "127.0.0.1:19092");
        assert_eq!(config.router.group, "auditstream.router");
        assert!(config.destinations.is_empty());
    }

    #[test]
    fn a_full_file_loads() {
        let config = load(
            r#"
            [kafka]
            brokers = "127.0.0.1:9999"
            [topics]
            partitions = 3
            retention = "2d"
            [router]
            max_in_flight = 10
            [[destinations]]
            name = "siem"
            url = "https://127.0.0.1:8443/events"
            streams = ["module"]
            timeout = "5s"
            "#,
        )
        .unwrap();
        assert_eq!(config.kafka.brokers, "127.0.0.1:9999");
        assert_eq!(config.topics.retention.as_secs(), 2 * 86400);
        assert_eq!(config.destinations[0].timeout.as_secs(), 5);
        assert_eq!(
            config.destination("siem").unwrap().group(),
            "auditstream.sink.siem"
        );
        let err = config.destination("other").unwrap_err().to_string();
        assert!(err.contains("\"siem\""), "{err}");
    }

    #[test]
    fn errors_name_the_bad_field() {
        let cases = [
            ("[kafka]\nbrokerz = \"x\"", "brokerz"),
            ("[topics]\nretention = \"forever\"", "topics.retention"),
            ("[[destinations]]\nname = \"a\"\nurl = \"nope\"", "url is not a valid URL"),
            ("[[destinations]]\nname = \"a\"\nurl = \"https://x\"\n[[destinations]]\nname = \"a\"\nurl = \"https://y\"", "unique"),
            ("[router]\nmax_in_flight = 0", "router.max_in_flight"),
            // Garbage instead of TOML, a section of the wrong shape, URLs without a host.
            ("\u{0}\u{1}\u{fffd} [[[ not toml", "invalid configuration in"),
            ("destinations = \"splunk\"", "destinations: invalid type"),
            ("[kafka]\nbrokers = 9092", "kafka.brokers: invalid type"),
            ("[[destinations]]\nname = \"a\"\nurl = \"https://\"", "url is not a valid URL"),
            ("[[destinations]]\nname = \"a b\"\nurl = \"https://x\"", "name"),
        ];
        for (text, needle) in cases {
            let err = format!("{:#}", load(text).unwrap_err());
            assert!(err.contains(needle), "{err:?} lacks {needle:?}");
        }
    }

    #[test]
    fn environment_overrides_the_file() {
        let file = tempfile::Builder::new().suffix(".toml").tempfile().unwrap();
        std::fs::write(file.path(), "[kafka]\nbrokers = \"127.0.0.1:1\"").unwrap();
        // Only this test reads the real AUDITSTREAM_ environment (the others use an unused prefix).
        std::env::set_var("AUDITSTREAM_KAFKA__BROKERS", "127.0.0.1:2");
        std::env::set_var("AUDITSTREAM_CONFIG", "ignored: not a section");
        let config = Config::load(Some(file.path()));
        std::env::remove_var("AUDITSTREAM_KAFKA__BROKERS");
        std::env::remove_var("AUDITSTREAM_CONFIG");
        assert_eq!(config.unwrap().kafka.brokers, "127.0.0.1:2");
    }
}
