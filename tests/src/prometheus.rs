//! A real Prometheus server (Debian's `prometheus` package) scraping the pipeline's processes,
//! queried through its HTTP API.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::free_port;

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
        // The port is free when picked, but a process of another test may bind it before
        // Prometheus does: Prometheus then exits, and something else answers on the port. So
        // readiness is Prometheus's own answer, and a lost race is tried again on another port.
        for attempt in 1..=3 {
            let port = free_port();
            let log_path = dir.join(format!("prometheus-{attempt}.log"));
            let log = std::fs::File::create(&log_path).expect("prometheus log");
            let mut child = Command::new("prometheus")
                .arg(format!("--config.file={}", config.display()))
                .arg(format!(
                    "--storage.tsdb.path={}",
                    dir.join(format!("prometheus-data-{attempt}")).display()
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
            if wait_until_ready(&mut child, port, Duration::from_secs(30)) {
                return Prometheus {
                    child,
                    port,
                    client: reqwest::Client::new(),
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            eprintln!(
                "prometheus did not become ready on port {port} (attempt {attempt}); see {}",
                log_path.display()
            );
        }
        panic!(
            "prometheus did not become ready in 3 attempts; see the prometheus-*.log files in {}",
            dir.display()
        );
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

/// Whether the Prometheus of `child` answers `/-/ready` on `port` within `timeout`; false as soon
/// as it has exited.
fn wait_until_ready(child: &mut Child, port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !matches!(child.try_wait(), Ok(None)) {
            return false;
        }
        if ready_answer(port).is_some_and(|answer| {
            answer.starts_with("HTTP/1.1 200") && answer.contains("Prometheus")
        }) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    false
}

fn ready_answer(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    stream
        .write_all(b"GET /-/ready HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    Some(answer)
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
