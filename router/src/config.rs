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
    /// the router stops reading until acknowledgements come back. Default 20000.
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// Raw messages larger than this many bytes are dead-lettered as `oversized`. Default 1 MiB.
    #[serde(default = "default_max_message_bytes")]
    pub max_message_bytes: usize,
    /// How often finished offsets are committed, e.g. `"1s"`. Default 1 second.
    #[serde(default = "default_commit_interval", with = "humantime_serde")]
    pub commit_interval: Duration,
    /// How long a graceful shutdown waits for in-flight records. Default 10 seconds.
    #[serde(default = "default_drain_timeout", with = "humantime_serde")]
    pub drain_timeout: Duration,
}

fn default_group() -> String {
    "auditstream.router".to_owned()
}
fn default_max_in_flight() -> usize {
    20_000
}
fn default_max_message_bytes() -> usize {
    1024 * 1024
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
        Ok(())
    }
}
