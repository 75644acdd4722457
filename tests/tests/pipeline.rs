//! Producer -> router -> sink-http -> HTTPS receiver, with restarts of the sink mid-stream.

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use auditstream_kafka::KafkaConfig;
use auditstream_producer::synthetic::{GatewayKind, Generator, SECRET_MARKER};
use auditstream_producer::{Publisher, Stream};
use auditstream_receiver::tls::SelfSignedCa;
use auditstream_receiver::{Receiver, ReceiverOptions};
use auditstream_schemas::json_schema;
use auditstream_tests::{run_command, Broker, Process};
use futures::stream::{self, StreamExt};

/// Token configured as the destination's Authorization header; it must reach the receiver and
/// appear in no log.
const SINK_TOKEN: &str = "e2e-sink-token-4f1b9c";

fn write_config(dir: &Path, broker: &Broker, receiver: &Receiver, ca_file: &Path) -> String {
    let path = dir.join("auditstream.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[kafka]
brokers = "{brokers}"

[topics]
partitions = 4

[router]
commit_interval = "200ms"

[[destinations]]
name = "siem"
url = "{url}"
streams = ["lifecycle", "module"]
headers = {{ Authorization = "Bearer ${{E2E_SINK_TOKEN}}" }}
max_in_flight = 32
commit_interval = "200ms"
retry = {{ initial_backoff = "50ms", max_backoff = "1s" }}
# The JSON raw event below is dated 2026-04-30: keep it inside the retention window.
retention = "3650d"
tls = {{ ca_file = "{ca}" }}
"#,
            brokers = broker.brokers(),
            url = receiver.url(),
            ca = ca_file.display(),
        ),
    )
    .expect("write config");
    path.display().to_string()
}

/// Publishes `count` synthetic events (nine gateway for one lifecycle, plus every special gateway
/// kind) at up to `rate` per second, recording every acknowledged id.
async fn publish(
    publisher: &Publisher,
    seed: u64,
    count: usize,
    rate: u64,
    ids: &Mutex<HashSet<String>>,
) {
    let mut generator = Generator::new(seed);
    let kinds = [
        GatewayKind::Ordinary,
        GatewayKind::InvalidToken,
        GatewayKind::OAuthToken,
        GatewayKind::Streaming,
    ];
    let events: Vec<_> = (0..count)
        .map(|i| match i % 10 {
            9 => (Stream::Lifecycle, Some(generator.lifecycle()), None),
            n => (
                Stream::Gateway,
                None,
                Some(generator.gateway_of(kinds[n % kinds.len()])),
            ),
        })
        .collect();
    let started = tokio::time::Instant::now();
    stream::iter(events.into_iter().enumerate())
        .map(|(i, (stream, lifecycle, gateway))| async move {
            tokio::time::sleep_until(started + Duration::from_secs_f64(i as f64 / rate as f64))
                .await;
            match stream {
                Stream::Lifecycle => {
                    publisher
                        .publish_lifecycle(lifecycle.expect("lifecycle"))
                        .await
                }
                Stream::Gateway => publisher.publish_gateway(gateway.expect("gateway")).await,
            }
        })
        .buffer_unordered(2_000)
        .for_each(|result| async {
            ids.lock()
                .unwrap()
                .insert(result.expect("broker acknowledges every event"));
        })
        .await;
}

/// A JSON raw event, as a script would publish it, with every redaction case in it.
async fn publish_json(publisher: &Publisher, ids: &Mutex<HashSet<String>>) {
    let id = "0b6f9d5e-8f1a-4c1e-9b7a-3f2e1d0c9b8a";
    let line = format!(
        r#"{{"id":"{id}","trace_id":"t-json","timestamp":"2026-04-30T11:23:41.123+02:00",
        "organization_id":"org-json","stack_id":"stk-json","claims":{{"sub":"shell"}},
        "request":{{"method":"POST","path":"/api/auth/oauth/token?x=1","host":"h",
          "headers":{{"authorization":"Basic {SECRET_MARKER}1","AUTHORIZATION":["Bearer {SECRET_MARKER}2"]}},"body":"grant_type=client_credentials"}},
        "response":{{"status_code":200,"headers":{{"content-type":"application/json"}},"body":"{{\"access_token\":\"{SECRET_MARKER}3\"}}"}}}}"#
    );
    publisher
        .publish_bytes(
            Stream::Gateway,
            "stk-json",
            Some(id.to_owned()),
            line.as_bytes(),
        )
        .await
        .expect("json event published");
    ids.lock().unwrap().insert(id.to_owned());
}

async fn wait_until_received(receiver: &Receiver, at_least: usize) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while receiver.snapshot().distinct < at_least {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {:?} after 120 s",
            receiver.snapshot()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_redacted_across_sink_restarts() {
    let broker = Broker::start();
    let work = tempfile::tempdir().unwrap();
    let tls = SelfSignedCa::generate().unwrap();
    let ca_file = work.path().join("ca.pem");
    std::fs::write(&ca_file, &tls.ca_pem).unwrap();
    let receiver = Receiver::start(ReceiverOptions {
        tls: Some(tls),
        keep_bodies: true,
        expect_authorization: Some(format!("Bearer {SINK_TOKEN}")),
        ..ReceiverOptions::default()
    })
    .await
    .unwrap();
    let config = write_config(work.path(), &broker, &receiver, &ca_file);
    let created = run_command(&["--config", &config, "topics", "create"]);
    assert!(
        created.contains("audit.v2.module") && created.contains("audit.dlq.siem"),
        "{created}"
    );

    let env = [("E2E_SINK_TOKEN", SINK_TOKEN)];
    let logs = work.path();
    let router = Process::start("router", logs, &["--config", &config, "router"], &[]);
    let sink_args = ["--config", config.as_str(), "sink", "--destination", "siem"];
    let sink = Process::start("sink-1", logs, &sink_args, &env);

    let publisher = Publisher::new(&KafkaConfig::with_brokers(broker.brokers())).unwrap();
    let published = Arc::new(Mutex::new(HashSet::new()));
    publish_json(&publisher, &published).await;
    // Steady load for the whole test, so that the restarts below happen mid-stream.
    let load = {
        let (publisher, published) = (publisher.clone(), Arc::clone(&published));
        tokio::spawn(async move { publish(&publisher, 7, 6_000, 400, &published).await })
    };

    // Graceful restart: SIGTERM drains and commits, the next worker resumes behind it.
    wait_until_received(&receiver, 800).await;
    let first_output = sink.output();
    assert!(sink.terminate().success(), "sink exits cleanly on SIGTERM");
    let sink = Process::start("sink-2", logs, &sink_args, &env);

    // Crash: SIGKILL mid-stream, no drain, no final commit; the group hands the partitions over.
    wait_until_received(&receiver, 2_500).await;
    let second_output = sink.output();
    sink.kill();
    let mut sink = Process::start("sink-3", logs, &sink_args, &env);

    load.await.unwrap();
    let published = published.lock().unwrap().clone();
    assert_eq!(published.len(), 6_001);
    let outcome = receiver
        .wait_for(&published, Duration::from_secs(180))
        .await;
    let snapshot = receiver.snapshot();
    assert_eq!(
        outcome,
        Ok(()),
        "events missing at the receiver; {snapshot:?}"
    );
    assert!(sink.is_running(), "sink-3 died:\n{}", sink.output());
    assert_eq!(
        snapshot.without_id, 0,
        "every delivery carries its event id"
    );
    let received = receiver.ids();
    assert!(
        received.is_subset(&published),
        "the receiver got ids nobody published"
    );
    eprintln!(
        "published {}, delivered {}, duplicates {}",
        published.len(),
        received.len(),
        snapshot.duplicates
    );

    // Redaction held on the delivered bytes.
    let bodies = receiver.bodies();
    for body in &bodies {
        let text = std::str::from_utf8(body).expect("envelopes are UTF-8");
        assert!(
            !text.contains(SECRET_MARKER),
            "a secret reached the destination: {text}"
        );
        assert!(
            !text.to_ascii_lowercase().contains("\"authorization\""),
            "Authorization header delivered: {text}"
        );
        let envelope: serde_json::Value = serde_json::from_str(text).expect("envelopes are JSON");
        if let Err(errors) = json_schema::validate_envelope(&envelope) {
            panic!("delivered envelope breaks schemas/json/envelope.v2.schema.json: {errors:?}\n{text}");
        }
    }
    let json_event = bodies
        .iter()
        .map(|b| serde_json::from_slice::<serde_json::Value>(b).unwrap())
        .find(|e| e["payload"]["id"] == "0b6f9d5e-8f1a-4c1e-9b7a-3f2e1d0c9b8a")
        .expect("the JSON raw event was delivered");
    assert_eq!(json_event["date"], "2026-04-30T09:23:41.123Z");
    assert_eq!(json_event["payload"]["http"]["response"]["body"], "");

    // The sink's credential never appears in any log.
    let third_output = sink.output();
    for (name, output) in [
        ("sink-1", &first_output),
        ("sink-2", &second_output),
        ("sink-3", &third_output),
    ] {
        assert!(
            output.contains("sink worker started"),
            "{name} log:\n{output}"
        );
        assert!(
            !output.contains(SINK_TOKEN),
            "{name} logged the destination token"
        );
    }
    let router_output = router.output();
    assert!(
        !router_output.contains(SECRET_MARKER),
        "the router logged a secret"
    );
    drop(router);
    drop(broker);
}
