//! The fault suite: each scenario runs steady load through the whole pipeline (producer, router,
//! sink workers, HTTPS destination) while it injects one kind of fault, then checks by event id
//! that nothing was lost (`missing = 0`, duplicates reported), that redaction held on every
//! delivered byte, and that no process printed the destination's token.
//!
//! Every scenario appends one JSON line to `target/faults/results.jsonl` (or `$FAULTS_RESULTS`);
//! `scripts/faults.sh` turns the lines into the table of `docs/RELIABILITY.md`. `FAULTS_SCALE=N`
//! multiplies the events published and the faults injected (the long form).

use std::collections::HashSet;
use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use auditstream_kafka::KafkaConfig;
use auditstream_producer::synthetic::{GatewayKind, Generator, SECRET_MARKER};
use auditstream_producer::{Publisher, Stream};
use auditstream_receiver::tls::SelfSignedCa;
use auditstream_receiver::verify::{read_ids, Verdict};
use auditstream_receiver::{Receiver, ReceiverOptions};
use auditstream_tests::{dead_letters, run_command, Broker, Process};
use futures::stream::{self, StreamExt};

/// The destinations' credential: it must reach the receiver and appear in no process output.
const TOKEN: &str = "faults-token-7c41e9a2";
const TOKEN_VAR: &str = "FAULTS_SINK_TOKEN";

/// `FAULTS_SCALE` (default 1): multiplies events and faults.
fn scale() -> u32 {
    std::env::var("FAULTS_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(1)
}

/// Steady load: events per second of every scenario.
const RATE: u64 = 200;

/// A destination: an HTTPS receiver that checks the token, keeps bodies and appends every
/// accepted id to a file before it answers. The file is what counts as arrived: it survives a
/// restart of the receiver and it also holds the ids of requests that were being answered
/// while the receiver was stopped, which the sink rightly counts as delivered.
struct Siem {
    name: String,
    tls: SelfSignedCa,
    ca_file: PathBuf,
    ids_file: PathBuf,
    addr: SocketAddr,
    receiver: Option<Receiver>,
}

impl Siem {
    async fn start(dir: &Path, name: &str) -> Siem {
        let tls = SelfSignedCa::generate().unwrap();
        let ca_file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&ca_file, &tls.ca_pem).unwrap();
        let mut siem = Siem {
            name: name.to_owned(),
            tls,
            ca_file,
            ids_file: dir.join(format!("{name}-received.ids")),
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            receiver: None,
        };
        siem.open().await;
        siem
    }

    /// Starts a receiver on `self.addr` (the same port after a restart).
    async fn open(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        let receiver = loop {
            let started = Receiver::start(ReceiverOptions {
                listen: Some(self.addr),
                tls: Some(self.tls.clone()),
                keep_bodies: true,
                ids_out: Some(self.ids_file.clone()),
                expect_authorization: Some(format!("Bearer {TOKEN}")),
                ..ReceiverOptions::default()
            })
            .await;
            match started {
                Ok(receiver) => break receiver,
                // The previous instance may still hold the port for a moment.
                Err(err) if Instant::now() < deadline => {
                    eprintln!("{}: cannot bind {} yet: {err}", self.name, self.addr);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!("{}: cannot bind {}: {err}", self.name, self.addr),
            }
        };
        self.addr = receiver.addr();
        self.receiver = Some(receiver);
    }

    fn live(&self) -> &Receiver {
        self.receiver.as_ref().expect("the receiver is running")
    }

    /// Stops the receiver: the port refuses connections until [`Siem::open`]. Requests being
    /// answered at that moment may still complete (the server's connection tasks notice the
    /// shutdown a little later), so arrivals are read from the ids file, not from this instance.
    fn close(&mut self) {
        let receiver = self.receiver.take().expect("the receiver is running");
        check_redaction(&self.name, &receiver);
    }

    /// Every id accepted so far, by this instance and the earlier ones.
    fn accepted(&self) -> HashSet<String> {
        match read_ids(&self.ids_file) {
            Ok(ids) => ids.into_iter().collect(),
            Err(err) => panic!("{}: cannot read the accepted ids: {err}", self.name),
        }
    }

    fn distinct(&self) -> usize {
        self.accepted().len()
    }

    /// Waits until every id of `ids` arrived; returns how long it took, or panics.
    async fn wait_for(&self, ids: &HashSet<String>, timeout: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let accepted = self.accepted();
            let arrived = ids.iter().filter(|id| accepted.contains(*id)).count();
            if arrived == ids.len() {
                return started.elapsed();
            }
            assert!(
                started.elapsed() < timeout,
                "{}: {arrived} of {} events arrived after {timeout:?}",
                self.name,
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// A `[[destinations]]` table for this receiver, with fast retries and the token from the
    /// environment; `extra` adds or overrides fields.
    fn destination(&self, extra: &str) -> String {
        format!(
            "[[destinations]]\nname = \"{name}\"\nurl = \"https://{addr}/events\"\n\
             headers = {{ Authorization = \"Bearer ${{{TOKEN_VAR}}}\" }}\ncommit_interval = \"200ms\"\n\
             retry = {{ initial_backoff = \"20ms\", max_backoff = \"500ms\" }}\n\
             tls = {{ ca_file = \"{ca}\" }}\n{extra}\n",
            name = self.name,
            addr = self.addr,
            ca = self.ca_file.display(),
        )
    }
}

/// No delivered envelope carries a secret of the synthetic events.
fn check_redaction(name: &str, receiver: &Receiver) {
    for body in receiver.bodies() {
        let text = String::from_utf8_lossy(&body);
        assert!(
            !text.contains(SECRET_MARKER),
            "{name}: a secret reached the destination: {text}"
        );
        assert!(
            !text.to_ascii_lowercase().contains("\"authorization\""),
            "{name}: an Authorization header reached the destination: {text}"
        );
    }
}

/// A broker, a configuration and the processes of one scenario, all logging into one directory.
struct Rig {
    broker: Broker,
    dir: tempfile::TempDir,
    config: String,
    publisher: Publisher,
}

impl Rig {
    async fn start(destinations: &[String]) -> Rig {
        let broker = Broker::start();
        let dir = tempfile::Builder::new()
            .prefix("auditstream-faults-")
            .tempdir()
            .unwrap();
        let publisher = Publisher::new(&KafkaConfig::with_brokers(broker.brokers())).unwrap();
        let mut rig = Rig {
            broker,
            dir,
            config: String::new(),
            publisher,
        };
        rig.configure(destinations);
        run_command(&["--config", &rig.config, "topics", "create"]);
        rig
    }

    fn configure(&mut self, destinations: &[String]) {
        let path = self.dir.path().join("auditstream.toml");
        std::fs::write(
            &path,
            format!(
                "[kafka]\nbrokers = \"{}\"\n[topics]\npartitions = 4\n[router]\ncommit_interval = \"200ms\"\n{}",
                self.broker.brokers(),
                destinations.join("\n")
            ),
        )
        .unwrap();
        self.config = path.display().to_string();
    }

    fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn router(&self, name: &str) -> Process {
        Process::start(name, self.dir(), &["--config", &self.config, "router"], &[])
    }

    fn sink(&self, name: &str, destination: &str) -> Process {
        Process::start(
            name,
            self.dir(),
            &[
                "--config",
                &self.config,
                "sink",
                "--destination",
                destination,
            ],
            &[(TOKEN_VAR, TOKEN)],
        )
    }

    /// Everything every process of the scenario printed (`*.log` of the directory).
    fn all_output(&self) -> Vec<(String, String)> {
        let mut logs: Vec<(String, String)> = std::fs::read_dir(self.dir())
            .unwrap()
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .map(|path| {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                (
                    path.file_name().unwrap().to_string_lossy().into_owned(),
                    text,
                )
            })
            .collect();
        logs.sort();
        logs
    }

    /// The token and the synthetic secrets appear in no process output.
    fn check_logs(&self) {
        let logs = self.all_output();
        assert!(!logs.is_empty());
        for (name, text) in logs {
            assert!(
                !text.contains(TOKEN),
                "{name} printed the destination token"
            );
            assert!(!text.contains(SECRET_MARKER), "{name} printed a secret");
            assert!(!text.contains("panicked"), "{name} panicked:\n{text}");
        }
    }
}

/// Events published at a steady rate in the background; the acknowledged ids are shared.
struct Load {
    ids: Arc<Mutex<HashSet<String>>>,
    task: tokio::task::JoinHandle<()>,
    count: usize,
    gateway_only: bool,
}

impl Load {
    /// Publishes `count` events at [`RATE`]: nine gateway events of every kind (each carrying
    /// secrets for redaction to remove) for one lifecycle event, or gateway events only for
    /// batched formats (whose bodies carry no lifecycle id).
    fn start(publisher: &Publisher, seed: u64, count: usize, gateway_only: bool) -> Load {
        let ids = Arc::new(Mutex::new(HashSet::new()));
        let task = {
            let (publisher, ids) = (publisher.clone(), Arc::clone(&ids));
            tokio::spawn(async move {
                let mut generator = Generator::new(seed);
                let kinds = [
                    GatewayKind::Ordinary,
                    GatewayKind::InvalidToken,
                    GatewayKind::OAuthToken,
                    GatewayKind::Streaming,
                ];
                let events: Vec<_> = (0..count)
                    .map(|i| match i % 10 {
                        9 if !gateway_only => {
                            (Stream::Lifecycle, Some(generator.lifecycle()), None)
                        }
                        n => (
                            Stream::Gateway,
                            None,
                            Some(generator.gateway_of(kinds[n % kinds.len()])),
                        ),
                    })
                    .collect();
                let started = tokio::time::Instant::now();
                let publisher = &publisher;
                stream::iter(events.into_iter().enumerate())
                    .map(|(i, (stream, lifecycle, gateway))| async move {
                        let due = Duration::from_secs_f64(i as f64 / RATE as f64);
                        tokio::time::sleep_until(started + due).await;
                        match stream {
                            Stream::Lifecycle => {
                                publisher
                                    .publish_lifecycle(lifecycle.expect("lifecycle"))
                                    .await
                            }
                            Stream::Gateway => {
                                publisher.publish_gateway(gateway.expect("gateway")).await
                            }
                        }
                    })
                    .buffer_unordered(2_000)
                    .for_each(|result| async {
                        ids.lock()
                            .unwrap()
                            .insert(result.expect("the broker acknowledges every event"));
                    })
                    .await;
            })
        };
        Load {
            ids,
            task,
            count,
            gateway_only,
        }
    }

    /// Ids acknowledged so far.
    fn so_far(&self) -> HashSet<String> {
        self.ids.lock().unwrap().clone()
    }

    fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    fn describe(&self) -> String {
        format!(
            "{} {} events at {RATE}/s",
            self.count,
            if self.gateway_only {
                "gateway"
            } else {
                "mixed"
            }
        )
    }

    /// Waits for the last acknowledgement; returns every id published.
    async fn finish(self) -> HashSet<String> {
        self.task.await.expect("the load task completes");
        let ids = self.ids.lock().unwrap().clone();
        assert_eq!(ids.len(), self.count, "every event was acknowledged");
        ids
    }
}

/// How many events keep the load running for `seconds` (times the scale).
fn events_for(seconds: u64) -> usize {
    (RATE * seconds) as usize
}

/// Sleeps until the destination got at least `count` distinct events, so a fault hits live
/// traffic.
async fn wait_until_flowing(siem: &Siem, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while siem.distinct() < count {
        assert!(
            Instant::now() < deadline,
            "{}: the pipeline never started flowing",
            siem.name
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Call when a fault ends: waits until the destination holds every event published so far and
/// returns how long that took from `fault_ended`.
async fn recovery(siem: &Siem, load: &Load, fault_ended: Instant) -> Duration {
    let published = load.so_far();
    siem.wait_for(&published, Duration::from_secs(180)).await;
    fault_ended.elapsed()
}

/// Sleeps what is left of `period` after `spent`.
async fn rest(period: Duration, spent: Duration) {
    tokio::time::sleep(period.saturating_sub(spent)).await;
}

/// One row of the results table.
struct Outcome<'a> {
    scenario: &'a str,
    load: String,
    faults: String,
    verdict: Verdict,
    recovery: Duration,
    started: Instant,
}

/// Waits until every published id arrived, then verifies: by id (the ids files, through the
/// same verifier as `auditstream verify`), redaction on the delivered bytes, and the logs.
/// Records the result row.
async fn finish(
    rig: &Rig,
    siem: &mut Siem,
    load: Load,
    scenario: &str,
    faults: String,
    recovery: Duration,
    started: Instant,
) -> Verdict {
    let describe = load.describe();
    let published = load.finish().await;
    siem.wait_for(&published, Duration::from_secs(180)).await;
    let published_file = rig.dir().join("published.ids");
    let mut lines: Vec<&str> = published.iter().map(String::as_str).collect();
    lines.sort_unstable();
    std::fs::write(&published_file, lines.join("\n")).unwrap();
    // Let in-flight redeliveries land, so that duplicates are counted.
    tokio::time::sleep(Duration::from_millis(500)).await;
    siem.close();
    let verdict = Verdict::compare_files(&published_file, &siem.ids_file).unwrap();
    eprintln!("{scenario}: {verdict}");
    assert_eq!(
        verdict.missing(),
        0,
        "{scenario}: {verdict}, missing {:?}",
        verdict.missing_ids
    );
    // The command an operator runs says the same.
    let printed = run_command(&[
        "verify",
        "--published",
        &published_file.display().to_string(),
        "--received",
        &siem.ids_file.display().to_string(),
    ]);
    assert!(printed.starts_with(&format!("{verdict}\n")), "{printed}");
    assert!(
        verdict.unexpected_ids.is_empty(),
        "{scenario}: ids nobody published: {:?}",
        verdict.unexpected_ids
    );
    rig.check_logs();
    record(&Outcome {
        scenario,
        load: describe,
        faults,
        verdict: verdict.clone(),
        recovery,
        started,
    });
    verdict
}

/// `target/faults/results.jsonl`, or `$FAULTS_RESULTS`.
fn results_file() -> PathBuf {
    if let Some(path) = std::env::var_os("FAULTS_RESULTS") {
        return PathBuf::from(path);
    }
    // The test runs from target/<profile>/deps/.
    let exe = std::env::current_exe().unwrap();
    let target = exe.ancestors().nth(3).expect("target directory");
    target.join("faults").join("results.jsonl")
}

fn record(outcome: &Outcome<'_>) {
    let path = results_file();
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let row = serde_json::json!({
        "scenario": outcome.scenario,
        "scale": scale(),
        "load": outcome.load,
        "faults": outcome.faults,
        "published": outcome.verdict.published,
        "delivered": outcome.verdict.delivered,
        "missing": outcome.verdict.missing(),
        "duplicates": outcome.verdict.duplicates,
        "recovery_s": (outcome.recovery.as_secs_f64() * 10.0).round() / 10.0,
        "duration_s": outcome.started.elapsed().as_secs(),
        "unix_time": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs(),
    });
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    // One write per row: parallel scenarios never interleave within a line.
    file.write_all(format!("{row}\n").as_bytes()).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_sink_worker_killed_mid_batch() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut siem = Siem::start(dir.path(), "siem").await;
    // Batches of up to 50 gateway events: every kill lands with batches in flight.
    let extra = "streams = [\"module\"]\nformat = \"json_array\"\nbatch = { max_events = 50, linger = \"50ms\" }";
    let rig = Rig::start(&[siem.destination(extra)]).await;
    let _router = rig.router("router");
    let kills = 10 * scale() as usize;
    let interval = Duration::from_millis(1_500);
    let mut workers: Vec<Process> = (0..2)
        .map(|i| rig.sink(&format!("sink-{i}"), "siem"))
        .collect();
    let load = Load::start(
        &rig.publisher,
        61,
        events_for(5) + kills * events_for(2) * 3 / 4,
        true,
    );
    wait_until_flowing(&siem, 200).await;
    let mut last_kill = Instant::now();
    for kill in 0..kills {
        let victim = kill % workers.len();
        last_kill = Instant::now();
        let worker = workers.remove(victim);
        worker.kill();
        workers.insert(victim, rig.sink(&format!("sink-{}", kill + 2), "siem"));
        if kill + 1 < kills {
            tokio::time::sleep(interval).await;
        }
    }
    let recovered = recovery(&siem, &load, last_kill).await;
    finish(
        &rig,
        &mut siem,
        load,
        "sink worker SIGKILL mid-batch",
        format!("{kills} SIGKILLs of one of 2 workers, every {interval:?} (batches of 50)"),
        recovered,
        started,
    )
    .await;
    for mut worker in workers {
        assert!(worker.is_running(), "{}", worker.output());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_router_killed() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut siem = Siem::start(dir.path(), "siem").await;
    let rig = Rig::start(&[siem.destination("")]).await;
    let mut routers: Vec<Process> = (0..2).map(|i| rig.router(&format!("router-{i}"))).collect();
    let _sink = rig.sink("sink", "siem");
    let kills = 6 * scale() as usize;
    let interval = Duration::from_secs(2);
    let load = Load::start(
        &rig.publisher,
        62,
        events_for(5) + kills * events_for(2),
        false,
    );
    wait_until_flowing(&siem, 200).await;
    let mut last_kill = Instant::now();
    for kill in 0..kills {
        let victim = kill % routers.len();
        last_kill = Instant::now();
        routers.remove(victim).kill();
        routers.insert(victim, rig.router(&format!("router-{}", kill + 2)));
        if kill + 1 < kills {
            tokio::time::sleep(interval).await;
        }
    }
    let recovered = recovery(&siem, &load, last_kill).await;
    finish(
        &rig,
        &mut siem,
        load,
        "router SIGKILL",
        format!("{kills} SIGKILLs of one of 2 routers, every {interval:?}"),
        recovered,
        started,
    )
    .await;
}

/// What a destination does wrong for a while.
#[derive(Clone, Copy, Debug)]
enum Outage {
    /// Answers 500.
    Status500,
    /// Answers after 1.5 s, past the destination's 500 ms timeout.
    Timeout,
    /// Breaks each connection mid-response.
    DropConnections,
    /// Stopped: connections are refused; restarted on the same port.
    Unreachable,
}

async fn destination_outage(outage: Outage, seed: u64) {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut siem = Siem::start(dir.path(), "siem").await;
    let rig = Rig::start(&[siem.destination("timeout = \"500ms\"")]).await;
    let _router = rig.router("router");
    let _sink = rig.sink("sink", "siem");
    let rounds = 2 * scale() as usize;
    let (down, up) = (Duration::from_secs(4), Duration::from_secs(3));
    let load = Load::start(
        &rig.publisher,
        seed,
        events_for(3) + rounds * events_for(7),
        false,
    );
    wait_until_flowing(&siem, 200).await;
    let mut recovered = Duration::ZERO;
    for _ in 0..rounds {
        match outage {
            Outage::Status500 => siem.live().fail_with(Some(500)),
            Outage::Timeout => siem.live().set_delay(Some(Duration::from_millis(1_500))),
            Outage::DropConnections => siem.live().drop_connections(true),
            Outage::Unreachable => siem.close(),
        }
        tokio::time::sleep(down).await;
        match outage {
            Outage::Status500 => siem.live().fail_with(None),
            Outage::Timeout => siem.live().set_delay(None),
            Outage::DropConnections => siem.live().drop_connections(false),
            Outage::Unreachable => siem.open().await,
        }
        let this = recovery(&siem, &load, Instant::now()).await;
        recovered = recovered.max(this);
        rest(up, this).await;
    }
    let what = match outage {
        Outage::Status500 => "answers 500",
        Outage::Timeout => "answers after 1.5 s (timeout 500 ms)",
        Outage::DropConnections => "breaks connections mid-response",
        Outage::Unreachable => "stopped (connection refused), restarted on the same port",
    };
    finish(
        &rig,
        &mut siem,
        load,
        &format!("destination {what}"),
        format!("{rounds} outages of {down:?}, {up:?} apart"),
        recovered,
        started,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_destination_500s() {
    destination_outage(Outage::Status500, 63).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_destination_timeouts() {
    destination_outage(Outage::Timeout, 64).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_destination_drops_connections() {
    destination_outage(Outage::DropConnections, 65).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_destination_unreachable() {
    destination_outage(Outage::Unreachable, 66).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_broker_restarted() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut siem = Siem::start(dir.path(), "siem").await;
    let mut rig = Rig::start(&[siem.destination("")]).await;
    let mut router = rig.router("router");
    let mut sink = rig.sink("sink", "siem");
    let restarts = 2 * scale() as usize;
    let (down, up) = (Duration::from_secs(3), Duration::from_secs(5));
    let load = Load::start(
        &rig.publisher,
        67,
        events_for(3) + restarts * events_for(8),
        false,
    );
    wait_until_flowing(&siem, 200).await;
    let mut recovered = Duration::ZERO;
    for _ in 0..restarts {
        tokio::task::block_in_place(|| rig.broker.restart_after(down));
        let this = recovery(&siem, &load, Instant::now()).await;
        recovered = recovered.max(this);
        rest(up, this).await;
    }
    finish(
        &rig,
        &mut siem,
        load,
        "broker killed and restarted",
        format!("{restarts} SIGKILLs of the broker (sqlite storage), down {down:?} each"),
        recovered,
        started,
    )
    .await;
    assert!(router.is_running(), "router died:\n{}", router.output());
    assert!(sink.is_running(), "sink died:\n{}", sink.output());
}

/// How long a stage may take to exit after SIGTERM with the broker down, beyond its drain
/// timeout: librdkafka fails the final commit after `session.timeout.ms` (10 s) of waiting for a
/// coordinator, and closing takes a moment more.
const EXIT_MARGIN: Duration = Duration::from_secs(13);

/// A rollout during a broker outage: the router and the sink get SIGTERM while the broker is
/// down. Each must exit within its drain timeout plus [`EXIT_MARGIN`] (an orchestrator's grace
/// period is bounded, and a stage stuck on a broker that never answers would be SIGKILLed), and
/// what they could not commit is delivered by the next router and sink once the broker is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_stopped_during_broker_outage() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut siem = Siem::start(dir.path(), "siem").await;
    let drain = Duration::from_secs(2);
    let mut rig = Rig::start(&[siem.destination(&format!("drain_timeout = \"{drain:?}\""))]).await;
    let stops = scale() as usize;
    let load = Load::start(
        &rig.publisher,
        71,
        events_for(4) + stops * events_for(6),
        false,
    );
    let mut stages = (rig.router("router-0"), rig.sink("sink-0", "siem"));
    wait_until_flowing(&siem, 200).await;
    let mut recovered = Duration::ZERO;
    let mut slowest_exit = Duration::ZERO;
    for stop in 0..stops {
        rig.broker.kill();
        let (router, sink) = stages;
        let exits = tokio::task::block_in_place(|| {
            std::thread::scope(|scope| {
                let timed = |process: Process| {
                    scope.spawn(move || {
                        let since = Instant::now();
                        let status = process.terminate();
                        (status, since.elapsed())
                    })
                };
                let (router, sink) = (timed(router), timed(sink));
                [
                    ("router", router.join().unwrap()),
                    ("sink", sink.join().unwrap()),
                ]
            })
        });
        let mut failures = Vec::new();
        for (stage, (status, took)) in exits {
            eprintln!("{stage} exited with {status} {took:?} after SIGTERM, the broker down");
            // The router's default drain timeout is 10 s, the sink's is set to `drain` above.
            let drain = if stage == "router" {
                Duration::from_secs(10)
            } else {
                drain
            };
            if took >= drain + EXIT_MARGIN || !status.success() {
                let log = std::fs::read_to_string(rig.dir().join(format!("{stage}-{stop}.log")))
                    .unwrap_or_default();
                failures.push(format!(
                    "{stage} exited with {status} {took:?} after SIGTERM with the broker down \
                     (bound {:?}):\n{log}",
                    drain + EXIT_MARGIN
                ));
            }
            slowest_exit = slowest_exit.max(took);
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        tokio::task::block_in_place(|| rig.broker.start_again());
        let back = Instant::now();
        stages = (
            rig.router(&format!("router-{}", stop + 1)),
            rig.sink(&format!("sink-{}", stop + 1), "siem"),
        );
        let this = recovery(&siem, &load, back).await;
        recovered = recovered.max(this);
        rest(Duration::from_secs(4), this).await;
    }
    finish(
        &rig,
        &mut siem,
        load,
        "router and sink stopped during a broker outage",
        format!(
            "{stops} SIGKILL(s) of the broker, then SIGTERM of the router and the sink; \
             slowest exit {:.1} s",
            slowest_exit.as_secs_f64()
        ),
        recovered,
        started,
    )
    .await;
    let (mut router, mut sink) = stages;
    assert!(router.is_running(), "router died:\n{}", router.output());
    assert!(sink.is_running(), "sink died:\n{}", sink.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_sink_workers_scaled() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut siem = Siem::start(dir.path(), "siem").await;
    let rig = Rig::start(&[siem.destination("")]).await;
    let _router = rig.router("router");
    let _first = rig.sink("sink-0", "siem");
    let cycles = scale() as usize;
    let hold = Duration::from_secs(5);
    let load = Load::start(
        &rig.publisher,
        68,
        events_for(3) + cycles * events_for(10),
        false,
    );
    wait_until_flowing(&siem, 200).await;
    let mut recovered = Duration::ZERO;
    for cycle in 0..cycles {
        let extra: Vec<Process> = (1..=2)
            .map(|i| rig.sink(&format!("sink-{cycle}-{i}"), "siem"))
            .collect();
        tokio::time::sleep(hold).await;
        for mut worker in extra {
            assert!(worker.is_running(), "{}", worker.output());
            assert!(
                worker.terminate().success(),
                "a worker stops cleanly on SIGTERM"
            );
        }
        let this = recovery(&siem, &load, Instant::now()).await;
        recovered = recovered.max(this);
        rest(hold, this).await;
    }
    finish(
        &rig,
        &mut siem,
        load,
        "sink workers scaled 1 -> 3 -> 1",
        format!("{cycles} cycle(s): 2 workers added, SIGTERM after {hold:?}"),
        recovered,
        started,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_poison_messages() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut siem = Siem::start(dir.path(), "siem").await;
    let rig = Rig::start(&[siem.destination("")]).await;
    let mut router = rig.router("router");
    let _sink = rig.sink("sink", "siem");
    let rounds = 5 * scale() as usize;
    let load = Load::start(
        &rig.publisher,
        69,
        events_for(3) + rounds * events_for(1),
        false,
    );
    wait_until_flowing(&siem, 200).await;
    let poison: [(Stream, &[u8]); 4] = [
        (Stream::Gateway, b"\xc3\x01not avro at all"),
        (Stream::Gateway, b"{\"id\": 42, \"request\": \"x\"}"),
        (Stream::Lifecycle, b"{\"type\": \"stacks.created\""),
        (Stream::Lifecycle, b"\xff\xfe\x00binary"),
    ];
    for _ in 0..rounds {
        for (stream, bytes) in &poison {
            rig.publisher
                .publish_bytes(*stream, "poison", None, bytes)
                .await
                .unwrap();
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let recovered = recovery(&siem, &load, Instant::now()).await;
    let injected = rounds * poison.len();
    finish(
        &rig,
        &mut siem,
        load,
        "poison messages in raw topics",
        format!(
            "{injected} undecodable records, {} per second",
            poison.len()
        ),
        recovered,
        started,
    )
    .await;
    let dead = dead_letters(&rig.broker.brokers(), "audit.dlq.router").await;
    assert_eq!(
        dead.len(),
        injected,
        "every poison record is dead-lettered once"
    );
    assert!(
        dead.iter().all(|r| r["dlq_reason"] == "undecodable"),
        "{dead:?}"
    );
    assert!(router.is_running(), "router died:\n{}", router.output());
}

/// Resident and peak memory of a process, in KiB, from /proc.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.split_whitespace().nth(1))
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fault_slow_destination() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut slow = Siem::start(dir.path(), "slow").await;
    let mut fast = Siem::start(dir.path(), "fast").await;
    // A small in-flight bound, so that the backlog builds up in Kafka rather than in memory.
    let rig = Rig::start(&[
        slow.destination("concurrency = 4\nmax_in_flight = 100\ntimeout = \"30s\""),
        fast.destination(""),
    ])
    .await;
    let _router = rig.router("router");
    let slow_sink = rig.sink("sink-slow", "slow");
    let _fast_sink = rig.sink("sink-fast", "fast");
    let seconds = 20 * u64::from(scale());
    let load = Load::start(&rig.publisher, 70, events_for(seconds), false);
    wait_until_flowing(&fast, 200).await;
    wait_until_flowing(&slow, 1).await;
    let delay = Duration::from_secs(2);
    slow.live().set_delay(Some(delay));
    let mut peak_rss = 0;
    let mut fast_lag_max = 0usize;
    while !load.is_finished() {
        let (rss, _) = memory_kib(slow_sink.pid());
        peak_rss = peak_rss.max(rss);
        fast_lag_max = fast_lag_max.max(load.so_far().len().saturating_sub(fast.distinct()));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The fast destination keeps up while the slow one is far behind.
    let published = load.so_far();
    fast.wait_for(&published, Duration::from_secs(20)).await;
    let behind = published.len() - slow.distinct();
    assert!(
        behind > published.len() / 2,
        "the slow destination was slow: {behind} behind"
    );
    let (_, hwm) = memory_kib(slow_sink.pid());
    eprintln!(
        "slow sink: peak RSS {} MiB (VmHWM {} MiB) with {behind} events behind; fast destination lag at most {fast_lag_max} events",
        peak_rss / 1024,
        hwm / 1024
    );
    assert!(
        hwm < 128 * 1024,
        "the slow sink's memory stays bounded: VmHWM {hwm} KiB"
    );
    slow.live().set_delay(None);
    let recovered = recovery(&slow, &load, Instant::now()).await;
    let fast_verdict = {
        let load_ids = load.so_far();
        let fast_file = rig.dir().join("fast-published.ids");
        std::fs::write(
            &fast_file,
            load_ids.into_iter().collect::<Vec<_>>().join("\n"),
        )
        .unwrap();
        fast.close();
        Verdict::compare_files(&fast_file, &fast.ids_file).unwrap()
    };
    assert_eq!(fast_verdict.missing(), 0, "fast: {fast_verdict}");
    finish(
        &rig,
        &mut slow,
        load,
        "slow destination",
        format!(
            "{delay:?} per response for the whole load; slow sink peak RSS {} MiB, {behind} events behind; other destination at most {fast_lag_max} behind",
            hwm / 1024
        ),
        recovered,
        started,
    )
    .await;
}
