//! Consumer groups against a real broker: the pipeline's rebalance handling (which applies
//! assignments without asking librdkafka for the protocol, see `TrackingContext::rebalance`)
//! shares the partitions under both the eager and the cooperative protocol, and two members
//! that close at the same moment both finish closing.

use std::collections::HashSet;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use auditstream_kafka::topics::{self, TopicSpec};
use auditstream_kafka::{KafkaConfig, Prefetch, TrackingContext};
use auditstream_tests::Broker;
use rdkafka::consumer::{BaseConsumer, Consumer};

const TOPIC: &str = "rebalance.test";
const PARTITIONS: i32 = 4;

type Member = BaseConsumer<TrackingContext>;

/// The partitions a member holds.
fn held(member: &Member) -> HashSet<i32> {
    member
        .assignment()
        .expect("assignment")
        .elements()
        .iter()
        .map(|element| element.partition())
        .collect()
}

/// Polls the members until each holds some partitions and together they hold them all, once.
fn wait_for_shared_assignment(members: &[&Member]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        for member in members {
            // Rebalance callbacks run inside poll; the topic holds no records.
            let _ = member.poll(Duration::from_millis(100));
        }
        let holdings: Vec<HashSet<i32>> = members.iter().map(|member| held(member)).collect();
        let total: usize = holdings.iter().map(HashSet::len).sum();
        let union: HashSet<i32> = holdings.iter().flatten().copied().collect();
        if holdings.iter().all(|h| !h.is_empty())
            && total == PARTITIONS as usize
            && union.len() == PARTITIONS as usize
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no shared assignment after 60 s: {holdings:?}"
        );
    }
}

fn member(kafka: &KafkaConfig, group: &str) -> Member {
    let member: Member = kafka
        .tracking_consumer(group, Prefetch::Sink)
        .expect("consumer");
    member.subscribe(&[TOPIC]).expect("subscribe");
    member
}

fn share_then_close_together(kafka: &KafkaConfig, group: &str) {
    let first = member(kafka, group);
    let second = member(kafka, group);
    wait_for_shared_assignment(&[&first, &second]);

    // A third member joins and leaves: the partitions move and come back.
    let third = member(kafka, group);
    wait_for_shared_assignment(&[&first, &second, &third]);
    drop(third);
    wait_for_shared_assignment(&[&first, &second]);

    // Both leave at once: each close then sees a rebalance caused by the other.
    let (closed, closes) = mpsc::channel();
    for member in [first, second] {
        let closed = closed.clone();
        std::thread::spawn(move || {
            drop(member);
            let _ = closed.send(());
        });
    }
    for _ in 0..2 {
        closes
            .recv_timeout(Duration::from_secs(30))
            .expect("a consumer did not finish closing within 30 s");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn members_share_partitions_and_close_together_under_both_protocols() {
    let broker = Broker::start_in_memory();
    let kafka = KafkaConfig::with_brokers(broker.brokers());
    topics::create(
        &kafka,
        &[TopicSpec {
            name: TOPIC.to_owned(),
            partitions: PARTITIONS,
            replication_factor: 1,
            retention: Duration::from_secs(3600),
        }],
    )
    .await
    .expect("create topic");

    tokio::task::spawn_blocking(move || {
        share_then_close_together(&kafka, "rebalance.eager");
        let mut cooperative = kafka.clone();
        cooperative.properties.insert(
            "partition.assignment.strategy".into(),
            "cooperative-sticky".into(),
        );
        share_then_close_together(&cooperative, "rebalance.cooperative");
    })
    .await
    .expect("rebalance scenario");
}
