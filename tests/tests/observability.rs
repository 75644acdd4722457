//! Metrics seen through a real Prometheus: while every worker of a destination is down, the lag
//! exporter keeps reporting its lag rising, and it returns to zero once the workers are back.
//! `auditstream status` tells the same story.

use std::path::Path;
use std::time::Duration;

use auditstream_kafka::KafkaConfig;
use auditstream_producer::Publisher;
use auditstream_receiver::tls::SelfSignedCa;
use auditstream_receiver::{Receiver, ReceiverOptions};
use auditstream_tests::{free_port, publish_synthetic, run_command, Broker, Process, Prometheus};

const LAG: &str = r#"sum(auditstream_group_lag_events{destination="siem"})"#;
const LAG_SECONDS: &str = r#"max(auditstream_group_lag_seconds{destination="siem"})"#;
const WAIT: Duration = Duration::from_secs(90);

fn sink(dir: &Path, config: &str, port: u16) -> Process {
    let listen = format!("127.0.0.1:{port}");
    Process::start(
        "sink",
        dir,
        &[
            "--config",
            config,
            "sink",
            "--destination",
            "siem",
            "--metrics-listen",
            &listen,
        ],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lag_rises_while_a_destination_is_down_and_returns_to_zero() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let tls = SelfSignedCa::generate().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, &tls.ca_pem).unwrap();
    let receiver = Receiver::start(ReceiverOptions {
        tls: Some(tls),
        ..ReceiverOptions::default()
    })
    .await
    .unwrap();
    let config = dir.path().join("auditstream.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\n[topics]\npartitions = 3\n[router]\ncommit_interval = \"200ms\"\n\
             [[destinations]]\nname = \"siem\"\nurl = \"{}\"\ncommit_interval = \"200ms\"\n\
             tls = {{ ca_file = \"{}\" }}\n",
            broker.brokers(),
            receiver.url(),
            ca_file.display()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    run_command(&["--config", &config, "topics", "create"]);

    let (router_port, sink_port, exporter_port) = (free_port(), free_port(), free_port());
    let listen = |port: u16| format!("127.0.0.1:{port}");
    let _router = Process::start(
        "router",
        dir.path(),
        &[
            "--config",
            &config,
            "router",
            "--metrics-listen",
            &listen(router_port),
        ],
        &[],
    );
    let _exporter = Process::start(
        "lag-exporter",
        dir.path(),
        &[
            "--config",
            &config,
            "lag-exporter",
            "--interval",
            "1s",
            "--metrics-listen",
            &listen(exporter_port),
        ],
        &[],
    );
    let mut worker = sink(dir.path(), &config, sink_port);
    let prometheus = Prometheus::start(
        dir.path(),
        &[
            ("router", router_port),
            ("sink", sink_port),
            ("lag_exporter", exporter_port),
        ],
    );

    // Steady state: everything delivered, and the sink's own counters agree through Prometheus.
    let publisher = Publisher::new(&KafkaConfig::with_brokers(broker.brokers())).unwrap();
    let first = publish_synthetic(&publisher, 41, 300, 1_000, false).await;
    assert_eq!(receiver.wait_for(&first, WAIT).await, Ok(()));
    prometheus
        .wait_until(
            r#"sum(auditstream_sink_delivered_events_total{destination="siem"})"#,
            |delivered| delivered >= 300.0,
            WAIT,
        )
        .await;
    prometheus
        .wait_until(
            r#"sum(auditstream_router_events_total{outcome="routed"})"#,
            |routed| routed >= 300.0,
            WAIT,
        )
        .await;
    prometheus.wait_until(LAG, |lag| lag == 0.0, WAIT).await;

    // Every worker of the destination down: the exporter still sees the lag, in events and in
    // seconds, and the sink's scrape target is down.
    worker.terminate();
    let second = publish_synthetic(&publisher, 42, 500, 1_000, false).await;
    let lag = prometheus.wait_until(LAG, |lag| lag >= 500.0, WAIT).await;
    assert_eq!(lag, 500.0, "exactly the events published while it was down");
    prometheus
        .wait_until(LAG_SECONDS, |seconds| seconds >= 2.0, WAIT)
        .await;
    prometheus
        .wait_until(r#"up{job="sink"}"#, |up| up == 0.0, WAIT)
        .await;
    assert_eq!(
        prometheus.value(r#"up{job="lag_exporter"}"#).await,
        Some(1.0),
        "the exporter does not depend on the workers"
    );
    let down = siem_status(&config);
    assert_eq!(down["state"], "down", "{down}");
    assert_eq!(down["workers"], 0, "{down}");
    assert_eq!(down["lag_events"], 500, "{down}");

    // Back up: it catches up, and the lag returns to zero.
    worker = sink(dir.path(), &config, sink_port);
    assert_eq!(receiver.wait_for(&second, WAIT).await, Ok(()));
    prometheus.wait_until(LAG, |lag| lag == 0.0, WAIT).await;
    prometheus
        .wait_until(LAG_SECONDS, |seconds| seconds == 0.0, WAIT)
        .await;
    prometheus
        .wait_until(r#"up{job="sink"}"#, |up| up == 1.0, WAIT)
        .await;
    let caught_up = siem_status(&config);
    assert_eq!(caught_up["state"], "ok", "{caught_up}");
    assert_eq!(caught_up["workers"], 1, "{caught_up}");
    assert_eq!(caught_up["dead_letters"], 0, "{caught_up}");
    drop(worker);
}

/// The `siem` stage of `auditstream status --json`.
fn siem_status(config: &str) -> serde_json::Value {
    let output = run_command(&["--config", config, "status", "--json", "--window", "1s"]);
    let start = output.find('[').expect("a JSON array");
    let stages: serde_json::Value =
        serde_json::from_str(&output[start..output.rfind(']').unwrap() + 1]).unwrap();
    stages
        .as_array()
        .unwrap()
        .iter()
        .find(|stage| stage["name"] == "siem")
        .cloned()
        .unwrap_or_else(|| panic!("no siem stage in {output}"))
}
