//! Harness of the end-to-end tests: a throw-away broker, the `auditstream` binary as child
//! processes, and helpers to publish and verify events. Everything runs on 127.0.0.1 on free ports,
//! so tests run in parallel without sharing anything.

mod prometheus;

pub use prometheus::Prometheus;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free TCP port on 127.0.0.1 (free when asked; the broker binds it right after).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a free port on 127.0.0.1")
}

/// Waits until something accepts connections on `port`.
pub fn wait_for_port(port: u16, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// A nisshi broker with durable (sqlite) storage in its own temporary directory, killed on drop.
pub struct Broker {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    in_memory: bool,
}

impl Broker {
    /// Starts a broker on a free port. Panics with instructions when `nisshi` is not installed.
    pub fn start() -> Broker {
        Broker::start_with(false)
    }

    /// Starts a broker that keeps everything in memory: fast, so that benchmarks measure the
    /// pipeline rather than the broker's storage.
    pub fn start_in_memory() -> Broker {
        Broker::start_with(true)
    }

    fn start_with(in_memory: bool) -> Broker {
        let dir = tempfile::Builder::new()
            .prefix("auditstream-broker-")
            .tempdir()
            .expect("temp dir");
        let mut broker = Broker {
            port: free_port(),
            dir,
            child: None,
            in_memory,
        };
        broker.spawn();
        broker
    }

    fn spawn(&mut self) {
        let url = format!("tcp://127.0.0.1:{}", self.port);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("broker.log"))
            .expect("broker log");
        let child = Command::new("nisshi")
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .arg("--storage-engine")
            .arg(if self.in_memory {
                "memory://nisshi/".to_owned()
            } else {
                // nisshi reads `sqlite://PATH` relative to its working directory; an absolute
                // path needs the extra slash (`sqlite:////tmp/...`).
                format!("sqlite:///{}", self.dir.path().join("nisshi.db").display())
            })
            .args(["--group-initial-rebalance-delay", "0s"])
            .stdout(log.try_clone().expect("log handle"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start `nisshi` ({err}); install it with `scripts/broker.sh install`")
            });
        self.child = Some(child);
        if !wait_for_port(self.port, Duration::from_secs(30)) {
            let log =
                std::fs::read_to_string(self.dir.path().join("broker.log")).unwrap_or_default();
            panic!(
                "broker did not listen on 127.0.0.1:{}; its log:\n{log}",
                self.port
            );
        }
    }

    /// `host:port` for clients.
    pub fn brokers(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Stops the broker (SIGKILL) and starts it again on the same port and storage.
    pub fn restart(&mut self) {
        self.restart_after(Duration::ZERO);
    }

    /// Stops the broker (SIGKILL), leaves it down for `down`, then starts it again on the same
    /// port and storage.
    pub fn restart_after(&mut self, down: Duration) {
        self.kill();
        std::thread::sleep(down);
        self.start_again();
    }

    /// Stops the broker (SIGKILL) until [`Broker::start_again`].
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a killed broker again on the same port and storage.
    pub fn start_again(&mut self) {
        assert!(self.child.is_none(), "the broker is already running");
        self.spawn();
    }

    /// Directory of the broker's storage and log.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Path of the `auditstream` binary built next to this test executable.
pub fn auditstream_bin() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let name = format!("auditstream{}", std::env::consts::EXE_SUFFIX);
    // Tests run from target/<profile>/deps/, other tools (the benchmark) from target/<profile>/.
    let candidates: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(&name))
        .collect();
    candidates.iter().find(|bin| bin.exists()).cloned().unwrap_or_else(|| {
        panic!(
            "{} is missing: build it first with `cargo build -p auditstream-cli` (scripts/test.sh does)",
            candidates[0].display()
        )
    })
}

/// How long [`Process::terminate`] waits for an exit: far past any drain timeout of the tests and
/// the benchmark, so that a stage that never exits fails its test instead of hanging the run (a
/// router stuck closing its consumer did, before `auditstream_kafka::close_within`).
pub const EXIT_LIMIT: Duration = Duration::from_secs(120);

/// A running `auditstream` subcommand whose output goes to a log file; killed on drop.
pub struct Process {
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `auditstream <args>` with `env` added to its environment; output goes to `<name>.log`.
    pub fn start(name: &str, log_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Process {
        Process::start_binary(&auditstream_bin(), name, log_dir, args, env)
    }

    /// Like [`Process::start`], with another build of `auditstream` (the benchmark compares one
    /// with the current build side by side).
    pub fn start_binary(
        binary: &Path,
        name: &str,
        log_dir: &Path,
        args: &[&str],
        env: &[(&str, &str)],
    ) -> Process {
        let log = log_dir.join(format!("{name}.log"));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .expect("process log");
        let child = Command::new(binary)
            .args(args)
            // Any free port, so that parallel tests never clash; `env` may set a fixed one.
            .env("AUDITSTREAM_METRICS_LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log handle"))
            .stderr(file)
            .spawn()
            .expect("spawn auditstream");
        Process { child, log }
    }

    /// Asks the process to stop (SIGTERM) and waits for it.
    /// Past [`EXIT_LIMIT`] it is killed and the caller panics with the path of its log.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        // std can only SIGKILL; the `kill` command sends SIGTERM without unsafe code.
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let deadline = Instant::now() + EXIT_LIMIT;
        loop {
            match self.child.try_wait().expect("wait for process") {
                Some(status) => return status,
                None if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
                None => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    panic!(
                        "the process did not exit within {EXIT_LIMIT:?} of SIGTERM and was killed; its log is {}",
                        self.log.display()
                    );
                }
            }
        }
    }

    /// Kills the process with SIGKILL: no drain, no final commit.
    pub fn kill(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Operating-system process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the process printed so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `auditstream <args>` to completion and returns its combined output; panics on failure.
pub fn run_command(args: &[&str]) -> String {
    let output = Command::new(auditstream_bin())
        .args(args)
        .output()
        .expect("run auditstream");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "auditstream {args:?} failed: {text}"
    );
    text
}

/// Publishes `count` synthetic events (nine gateway for one lifecycle, or gateway only) at up
/// to `rate` per second and returns the acknowledged ids.
pub async fn publish_synthetic(
    publisher: &auditstream_producer::Publisher,
    seed: u64,
    count: usize,
    rate: u64,
    gateway_only: bool,
) -> std::collections::HashSet<String> {
    use futures::stream::{self, StreamExt};
    let mut generator = auditstream_producer::synthetic::Generator::new(seed);
    let events: Vec<_> = (0..count)
        .map(|i| {
            if !gateway_only && i % 10 == 9 {
                (Some(generator.lifecycle()), None)
            } else {
                (None, Some(generator.gateway()))
            }
        })
        .collect();
    let started = tokio::time::Instant::now();
    stream::iter(events.into_iter().enumerate())
        .map(|(i, (lifecycle, gateway))| async move {
            tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / rate as f64))
                .await;
            match (lifecycle, gateway) {
                (Some(event), _) => publisher.publish_lifecycle(event).await,
                (_, Some(event)) => publisher.publish_gateway(event).await,
                (None, None) => unreachable!("one of the two is set"),
            }
        })
        .buffer_unordered(2_000)
        .map(|result| result.expect("the broker acknowledges every event"))
        .collect()
        .await
}

/// Reads a dead-letter topic: one map of header name -> value per record.
pub async fn dead_letters(
    brokers: &str,
    topic: &str,
) -> Vec<std::collections::HashMap<String, String>> {
    use rdkafka::message::Headers;
    use rdkafka::Message;
    let kafka = auditstream_kafka::KafkaConfig::with_brokers(brokers);
    let mut records = Vec::new();
    auditstream_kafka::scan(&kafka, topic, |message| {
        let mut record = std::collections::HashMap::new();
        if let Some(headers) = message.headers() {
            for header in headers.iter() {
                if let Some(value) = header.value {
                    record.insert(
                        header.key.to_owned(),
                        String::from_utf8_lossy(value).into_owned(),
                    );
                }
            }
        }
        records.push(record);
        true
    })
    .await
    .expect("read dead-letter topic");
    records
}
