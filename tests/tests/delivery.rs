//! The delivery engine against a real broker and real HTTPS receivers: isolation between
//! destinations, dead letters and replay, retention expiry, and a worker killed mid-batch.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use auditstream_kafka::KafkaConfig;
use auditstream_producer::Publisher;
use auditstream_receiver::tls::SelfSignedCa;
use auditstream_receiver::{Receiver, ReceiverOptions};
use auditstream_tests::{dead_letters, publish_synthetic, run_command, Broker, Process};

/// A receiver with HTTPS, and the CA file that trusts it.
async fn https_receiver(dir: &Path, name: &str) -> (Receiver, String) {
    let tls = SelfSignedCa::generate().unwrap();
    let ca_file = dir.join(format!("{name}-ca.pem"));
    std::fs::write(&ca_file, &tls.ca_pem).unwrap();
    let receiver = Receiver::start(ReceiverOptions {
        tls: Some(tls),
        ..ReceiverOptions::default()
    })
    .await
    .unwrap();
    (receiver, ca_file.display().to_string())
}

/// A `[[destinations]]` table with fast retries.
fn destination(name: &str, receiver: &Receiver, ca_file: &str, extra: &str) -> String {
    format!(
        "[[destinations]]\nname = \"{name}\"\nurl = \"{url}\"\ncommit_interval = \"200ms\"\n\
         retry = {{ initial_backoff = \"20ms\", max_backoff = \"500ms\" }}\ntls = {{ ca_file = \"{ca_file}\" }}\n{extra}\n",
        url = receiver.url()
    )
}

fn write_config(dir: &Path, broker: &Broker, destinations: &[String]) -> String {
    let path = dir.join("auditstream.toml");
    let text = format!(
        "[kafka]\nbrokers = \"{}\"\n[topics]\npartitions = 6\n[router]\ncommit_interval = \"200ms\"\n{}",
        broker.brokers(),
        destinations.join("\n")
    );
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn sink(dir: &Path, name: &str, config: &str, destination: &str) -> Process {
    Process::start(
        name,
        dir,
        &["--config", config, "sink", "--destination", destination],
        &[],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_destination_never_holds_back_a_healthy_one() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (healthy, healthy_ca) = https_receiver(dir.path(), "healthy").await;
    let (flaky, flaky_ca) = https_receiver(dir.path(), "flaky").await;
    flaky.fail_with(Some(503));
    let config = write_config(
        dir.path(),
        &broker,
        &[
            destination("healthy", &healthy, &healthy_ca, ""),
            destination("flaky", &flaky, &flaky_ca, ""),
        ],
    );
    run_command(&["--config", &config, "topics", "create"]);
    let _router = Process::start("router", dir.path(), &["--config", &config, "router"], &[]);
    let _healthy_sink = sink(dir.path(), "sink-healthy", &config, "healthy");
    let _flaky_sink = sink(dir.path(), "sink-flaky", &config, "flaky");

    let publisher = Publisher::new(&KafkaConfig::with_brokers(broker.brokers())).unwrap();
    let published = publish_synthetic(&publisher, 21, 2_000, 1_000, false).await;
    // The healthy destination gets everything while the other one is still refusing.
    assert_eq!(
        healthy.wait_for(&published, Duration::from_secs(60)).await,
        Ok(()),
        "{:?}",
        healthy.snapshot()
    );
    let flaky_during = flaky.snapshot();
    assert_eq!(flaky_during.distinct, 0);
    assert!(
        flaky_during.requests > 0,
        "the failing destination was being retried"
    );

    flaky.fail_with(None);
    assert_eq!(
        flaky.wait_for(&published, Duration::from_secs(60)).await,
        Ok(()),
        "{:?}",
        flaky.snapshot()
    );
    assert!(
        dead_letters(&broker.brokers(), "audit.dlq.flaky")
            .await
            .is_empty(),
        "503 is retried, never dead-lettered"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn permanent_failures_are_dead_lettered_then_replayed() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (receiver, ca) = https_receiver(dir.path(), "siem").await;
    let config = write_config(
        dir.path(),
        &broker,
        &[destination("siem", &receiver, &ca, "")],
    );
    run_command(&["--config", &config, "topics", "create"]);
    let _router = Process::start("router", dir.path(), &["--config", &config, "router"], &[]);

    // Publish first, then pick the events the SIEM will refuse, then start the sink.
    let publisher = Publisher::new(&KafkaConfig::with_brokers(broker.brokers())).unwrap();
    let published = publish_synthetic(&publisher, 22, 500, 2_000, false).await;
    let refused: HashSet<String> = published.iter().take(40).cloned().collect();
    receiver.reject_ids(Some((400, refused.clone())));
    let sink = sink(dir.path(), "sink", &config, "siem");

    let accepted: HashSet<String> = published.difference(&refused).cloned().collect();
    assert_eq!(
        receiver.wait_for(&accepted, Duration::from_secs(60)).await,
        Ok(())
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    let mut dead = dead_letters(&broker.brokers(), "audit.dlq.siem").await;
    while dead.len() < refused.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        dead = dead_letters(&broker.brokers(), "audit.dlq.siem").await;
    }
    let dead_ids: HashSet<String> = dead.iter().map(|r| r["event_id"].clone()).collect();
    assert_eq!(
        dead_ids, refused,
        "exactly the refused events are dead-lettered"
    );
    for record in &dead {
        assert_eq!(record["dlq_reason"], "permanent_status");
        assert_eq!(record["dlq_status"], "400");
        assert_eq!(record["dlq_destination"], "siem");
        assert!(
            record["dlq_source_topic"].starts_with("audit.v2."),
            "{record:?}"
        );
    }
    assert!(receiver.ids().is_disjoint(&refused));
    let inspected = run_command(&[
        "--config",
        &config,
        "dlq",
        "inspect",
        "--destination",
        "siem",
    ]);
    assert!(
        inspected.contains("permanent_status")
            && inspected.contains("40 dead-lettered record(s) in audit.dlq.siem"),
        "{inspected}"
    );

    // The SIEM is fixed; a replay delivers exactly the dead letters, a second replay nothing.
    receiver.reject_ids(None);
    let before = receiver.snapshot().requests;
    let output = run_command(&["--config", &config, "replay", "--destination", "siem"]);
    assert!(
        output.contains("replayed 40 dead-lettered event(s)"),
        "{output}"
    );
    assert_eq!(
        receiver.wait_for(&published, Duration::from_secs(30)).await,
        Ok(())
    );
    assert_eq!(
        receiver.snapshot().requests - before,
        40,
        "one POST per replayed event"
    );
    let again = run_command(&["--config", &config, "replay", "--destination", "siem"]);
    assert!(
        again.contains("replayed 0 dead-lettered event(s)"),
        "{again}"
    );
    drop(sink);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_outliving_the_retention_window_are_dead_lettered_not_lost() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (receiver, ca) = https_receiver(dir.path(), "siem").await;
    receiver.fail_with(Some(503));
    let config = write_config(
        dir.path(),
        &broker,
        &[destination("siem", &receiver, &ca, "retention = \"2s\"")],
    );
    run_command(&["--config", &config, "topics", "create"]);
    let _router = Process::start("router", dir.path(), &["--config", &config, "router"], &[]);
    let _sink = sink(dir.path(), "sink", &config, "siem");

    let publisher = Publisher::new(&KafkaConfig::with_brokers(broker.brokers())).unwrap();
    let published = publish_synthetic(&publisher, 23, 60, 200, false).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let mut dead = Vec::new();
    while dead.len() < published.len() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(300)).await;
        dead = dead_letters(&broker.brokers(), "audit.dlq.siem").await;
    }
    let dead_ids: HashSet<String> = dead.iter().map(|r| r["event_id"].clone()).collect();
    assert_eq!(
        dead_ids, published,
        "every undeliverable event is dead-lettered once expired"
    );
    assert!(
        dead.iter().all(|r| r["dlq_reason"] == "expired"),
        "{dead:?}"
    );
    // Events in flight were retried until they expired; events queued behind them (concurrency
    // is bounded) may expire before their first attempt. Both are recorded.
    let attempts: Vec<u32> = dead
        .iter()
        .map(|r| r["dlq_attempts"].parse().unwrap())
        .collect();
    assert!(
        attempts.iter().any(|&a| a >= 2),
        "the outage was retried: {attempts:?}"
    );
    assert_eq!(receiver.snapshot().distinct, 0);

    // And they are recoverable: replay after the outage delivers all of them.
    receiver.fail_with(None);
    run_command(&["--config", &config, "replay", "--destination", "siem"]);
    assert_eq!(
        receiver.wait_for(&published, Duration::from_secs(30)).await,
        Ok(())
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_workers_one_killed_mid_batch_lose_nothing() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let (receiver, ca) = https_receiver(dir.path(), "siem").await;
    // Batched JSON arrays of gateway events: ids are read from each envelope's payload.id.
    let extra = "streams = [\"module\"]\nformat = \"json_array\"\nbatch = { max_events = 50, linger = \"20ms\" }";
    let config = write_config(
        dir.path(),
        &broker,
        &[destination("siem", &receiver, &ca, extra)],
    );
    run_command(&["--config", &config, "topics", "create"]);
    let _router = Process::start("router", dir.path(), &["--config", &config, "router"], &[]);
    let workers: Vec<Process> = (1..=3)
        .map(|i| sink(dir.path(), &format!("sink-{i}"), &config, "siem"))
        .collect();

    let publisher = Publisher::new(&KafkaConfig::with_brokers(broker.brokers())).unwrap();
    let load = {
        let publisher = publisher.clone();
        tokio::spawn(async move { publish_synthetic(&publisher, 24, 4_000, 800, true).await })
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while receiver.snapshot().distinct < 1_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?}",
            receiver.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut workers = workers.into_iter();
    let survivors = (workers.next().unwrap(), workers.next().unwrap());
    workers.next().unwrap().kill();

    let published = load.await.unwrap();
    assert_eq!(
        receiver.wait_for(&published, Duration::from_secs(90)).await,
        Ok(()),
        "{:?}",
        receiver.snapshot()
    );
    let snapshot = receiver.snapshot();
    assert_eq!(snapshot.without_id, 0);
    eprintln!(
        "published {}, delivered {}, duplicates {}",
        published.len(),
        snapshot.distinct,
        snapshot.duplicates
    );
    drop(survivors);
}
