//! A destination's filter through the real router and sink: the router labels every envelope
//! with routing headers, and the sink delivers exactly the events its filter accepts, judged on
//! those headers alone.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use auditstream_kafka::KafkaConfig;
use auditstream_producer::Publisher;
use auditstream_receiver::{Receiver, ReceiverOptions};
use auditstream_schemas::raw::RawLifecycleEvent;
use auditstream_tests::{run_command, Broker, Process};

fn lifecycle(organization: &str, stack: Option<&str>, event_type: &str) -> RawLifecycleEvent {
    let date_ms = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let data = serde_json::json!({"id": stack.unwrap_or(organization)});
    RawLifecycleEvent {
        id: uuid::Uuid::new_v4().to_string(),
        event_type: event_type.to_owned(),
        timestamp: i64::try_from(date_ms).unwrap(),
        owner_id: "owner-1".to_owned(),
        organization_id: organization.to_owned(),
        stack_id: stack.map(str::to_owned),
        subject: "user-1".to_owned(),
        data: data.as_object().unwrap().clone(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_destination_receives_exactly_what_its_filter_accepts() {
    let broker = Broker::start();
    let dir = tempfile::tempdir().unwrap();
    let receiver = Receiver::start(ReceiverOptions::default()).await.unwrap();
    // One partition and one request at a time: deliveries arrive in the order of the records,
    // so once the last event has arrived, every earlier one has been judged and, if accepted,
    // delivered.
    let config = dir.path().join("auditstream.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\n[topics]\npartitions = 1\n[router]\ncommit_interval = \"200ms\"\n\
             [[destinations]]\nname = \"org-a-stacks\"\nurl = \"{}\"\nstreams = [\"lifecycle\"]\n\
             commit_interval = \"200ms\"\nconcurrency = 1\n\
             filter = {{ organizations = [\"org-a\"], types = [\"stacks.*\"] }}\n",
            broker.brokers(),
            receiver.url()
        ),
    )
    .unwrap();
    let config = config.display().to_string();
    run_command(&["--config", &config, "topics", "create"]);
    let _router = Process::start("router", dir.path(), &["--config", &config, "router"], &[]);
    let _sink = Process::start(
        "sink",
        dir.path(),
        &["--config", &config, "sink", "--destination", "org-a-stacks"],
        &[],
    );

    let events = [
        lifecycle("org-a", Some("stk-1"), "stacks.created"),
        lifecycle("org-a", None, "invitations.created"),
        lifecycle("org-b", Some("stk-2"), "stacks.created"),
        lifecycle("org-a", None, "organizations.updated"),
        lifecycle("org-b", None, "invitations.created"),
        lifecycle("org-a", Some("stk-1"), "stacks.deleted"),
    ];
    let publisher = Publisher::new(&KafkaConfig::with_brokers(broker.brokers())).unwrap();
    let mut expected = HashSet::new();
    for event in events {
        let accepted = event.organization_id == "org-a" && event.event_type.starts_with("stacks.");
        let id = publisher.publish_lifecycle(event).await.unwrap();
        if accepted {
            expected.insert(id);
        }
    }
    assert_eq!(expected.len(), 2);

    assert_eq!(
        receiver.wait_for(&expected, Duration::from_secs(60)).await,
        Ok(()),
        "{:?}",
        receiver.snapshot()
    );
    assert_eq!(
        receiver.ids(),
        expected,
        "events of other organisations or types were delivered"
    );
    assert_eq!(receiver.snapshot().duplicates, 0);
}
