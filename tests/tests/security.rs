//! Transport security: certificate verification is on by default, and a refusal says why.

use std::time::Duration;

use auditstream_kafka::KafkaConfig;
use auditstream_producer::Publisher;
use auditstream_receiver::tls::SelfSignedCa;
use auditstream_receiver::{Receiver, ReceiverOptions};
use auditstream_tests::{publish_synthetic, run_command, Broker, Process};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_signed_destination_is_refused_without_its_ca() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(ReceiverOptions {
        tls: Some(SelfSignedCa::generate().unwrap()),
        ..ReceiverOptions::default()
    })
    .await
    .unwrap();
    // No `tls` table: the public roots only, verification on.
    let config = dir.path().join("auditstream.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\n[topics]\npartitions = 2\n[[destinations]]\nname = \"siem\"\nurl = \"{}\"\n\
             headers = {{ Authorization = \"Bearer ${{SECURITY_TOKEN}}\" }}\n\
             retry = {{ initial_backoff = \"50ms\", max_backoff = \"500ms\" }}\n",
            broker.brokers(),
            receiver.url()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    run_command(&["--config", &config, "topics", "create"]);
    let _router = Process::start("router", dir.path(), &["--config", &config, "router"], &[]);
    let token = "security-token-0b9e61";
    let mut sink = Process::start(
        "sink",
        dir.path(),
        &["--config", &config, "sink", "--destination", "siem"],
        &[("SECURITY_TOKEN", token)],
    );
    let publisher = Publisher::new(&KafkaConfig::with_brokers(broker.brokers())).unwrap();
    publish_synthetic(&publisher, 81, 20, 1_000, false).await;

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !sink.output().contains("UnknownIssuer") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no certificate error in the sink log:\n{}",
            sink.output()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let output = sink.output();
    let refusal = output
        .lines()
        .find(|line| line.contains("UnknownIssuer"))
        .unwrap();
    assert!(
        refusal.contains("destination=siem")
            && refusal.contains("invalid peer certificate")
            && refusal.contains("set tls.ca_file"),
        "{refusal}"
    );
    // The handshake failed, so no request (and no token) ever reached the endpoint.
    assert_eq!(receiver.snapshot().requests, 0);
    assert!(
        sink.is_running(),
        "a refused certificate is retried, not fatal"
    );
    assert!(!output.contains(token), "the sink logged its token");
}
