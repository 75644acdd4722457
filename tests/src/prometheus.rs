//! A real Prometheus server (Debian's `prometheus` package) scraping the pipeline's processes,
//! queried through its HTTP API.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{free_port, wait_for_port};

/// A Prometheus scraping fixed targets every second, killed on drop.
pub struct Prometheus {
    child: Child,
    port: u16,
    client: reqwest::Client,
}

impl Prometheus {
    /// Starts Prometheus with its data in `dir`, scraping `targets` (job name, port on 127.0.0.1)
    /// every second. Panics with instructions when the binary is missing.
    pub fn start(dir: &Path, targets: &[(&str, u16)]) -> Prometheus {
        let jobs: String = targets
            .iter()
            .map(|(job, port)| {
                format!("  - job_name: {job}\n    static_configs:\n      - targets: ['127.0.0.1:{port}']\n")
            })
            .collect();
        let config = dir.join("prometheus.yml");
        std::fs::write(
            &config,
            format!("global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n{jobs}"),
        )
        .expect("write prometheus.yml");
        let port = free_port();
        let log = std::fs::File::create(dir.join("prometheus.log")).expect("prometheus log");
        let child = Command::new("prometheus")
            .arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("prometheus-data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .expect(
                "cannot start `prometheus`: install Debian's prometheus package \
                 (scripts/test.sh does: apt-get install prometheus)",
            );
        assert!(
            wait_for_port(port, Duration::from_secs(30)),
            "prometheus did not listen on {port}; see {}",
            dir.join("prometheus.log").display()
        );
        Prometheus {
            child,
            port,
            client: reqwest::Client::new(),
        }
    }

    /// The value of an instant query that yields one series (a `sum(...)`, say); `None` when it
    /// yields nothing (yet).
    pub async fn value(&self, query: &str) -> Option<f64> {
        let url = format!("http://127.0.0.1:{}/api/v1/query", self.port);
        let response = self
            .client
            .get(url)
            .query(&[("query", query)])
            .send()
            .await
            .ok()?;
        let body: serde_json::Value = serde_json::from_str(&response.text().await.ok()?).ok()?;
        assert_eq!(body["status"], "success", "query {query} failed: {body}");
        let text = body["data"]["result"].get(0)?["value"][1].as_str()?;
        text.parse().ok()
    }

    /// Polls `query` until `accept` holds for its value; returns that value, or panics after
    /// `timeout` with the last value seen.
    pub async fn wait_until(
        &self,
        query: &str,
        accept: impl Fn(f64) -> bool,
        timeout: Duration,
    ) -> f64 {
        let deadline = Instant::now() + timeout;
        let mut last = None;
        while Instant::now() < deadline {
            last = self.value(query).await;
            if let Some(value) = last.filter(|value| accept(*value)) {
                return value;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("{query} never reached the expected value within {timeout:?}; last value {last:?}");
    }
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
