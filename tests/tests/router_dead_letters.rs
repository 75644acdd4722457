//! The router against a real broker: bad raw records are dead-lettered with their reason and
//! origin, good ones keep flowing, and `auditstream dlq inspect` shows why each was rejected.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use auditstream_kafka::{scan, topics, KafkaConfig};
use auditstream_producer::synthetic::Generator;
use auditstream_producer::{Publisher, Stream};
use auditstream_schemas::{avro, headers};
use auditstream_tests::{run_command, Broker, Process};
use rdkafka::message::Headers;
use rdkafka::Message;

fn header(message: &impl Message, name: &str) -> Option<String> {
    let headers = message.headers()?;
    headers
        .iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .map(|v| String::from_utf8_lossy(v).into_owned())
}

/// Reads a whole topic: event id (or dead-letter reason and source) per record.
async fn read_topic(kafka: &KafkaConfig, topic: &str) -> Vec<HashMap<String, String>> {
    let mut records = Vec::new();
    scan(kafka, topic, |message| {
        let mut record = HashMap::new();
        for name in [
            headers::EVENT_ID,
            headers::dlq::REASON,
            headers::dlq::DETAIL,
            headers::dlq::SOURCE_TOPIC,
            headers::dlq::SOURCE_OFFSET,
        ] {
            if let Some(value) = header(message, name) {
                record.insert(name.to_owned(), value);
            }
        }
        record.insert(
            "payload".to_owned(),
            String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned(),
        );
        records.push(record);
        true
    })
    .await
    .expect("scan topic");
    records
}

async fn wait_for_records(
    kafka: &KafkaConfig,
    topic: &str,
    count: usize,
) -> Vec<HashMap<String, String>> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let records = read_topic(kafka, topic).await;
        if records.len() >= count || tokio::time::Instant::now() >= deadline {
            return records;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_records_are_dead_lettered_with_reasons_and_good_ones_flow() {
    let broker = Broker::start();
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("auditstream.toml");
    std::fs::write(
        &config,
        format!("[kafka]\nbrokers = \"{}\"\n[topics]\npartitions = 2\n[router]\nmax_message_bytes = 4096\ncommit_interval = \"200ms\"\n", broker.brokers()),
    )
    .unwrap();
    let config = config.display().to_string();
    run_command(&["--config", &config, "topics", "create"]);
    let router = Process::start("router", work.path(), &["--config", &config, "router"], &[]);

    let kafka = KafkaConfig::with_brokers(broker.brokers());
    let publisher = Publisher::new(&kafka).unwrap();
    let mut generator = Generator::new(11);
    let mut good = HashSet::new();
    for _ in 0..100 {
        good.insert(
            publisher
                .publish_gateway(generator.gateway())
                .await
                .unwrap(),
        );
        good.insert(
            publisher
                .publish_lifecycle(generator.lifecycle())
                .await
                .unwrap(),
        );
    }
    // A body that is not UTF-8 is a valid event: delivered with U+FFFD, not rejected.
    let mut binary_body = generator.gateway();
    binary_body.request.body = vec![b'{', 0xff, 0xfe, b'}'];
    binary_body
        .request
        .headers
        .0
        .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
    binary_body.response.headers.0.clear();
    let binary_id = publisher.publish_gateway(binary_body).await.unwrap();
    good.insert(binary_id.clone());

    let mut truncated_avro = avro::encode_gateway(&generator.gateway()).unwrap();
    truncated_avro.truncate(40);
    let lifecycle_json = serde_json::to_value(generator.lifecycle()).unwrap();
    let mut unknown_field = lifecycle_json.clone();
    unknown_field["colour"] = "red".into();
    let mut wrong_type = lifecycle_json.clone();
    wrong_type["timestamp"] = true.into();
    let mut bad_id = lifecycle_json.clone();
    bad_id["id"] = "not-a-uuid".into();
    let mut empty_id = lifecycle_json.clone();
    empty_id["id"] = "".into();
    // Under max_message_bytes as raw Avro, over it as an envelope: every quote is escaped.
    let mut quotes = generator.gateway();
    quotes.request.body = vec![b'"'; 3000];
    let quotes = avro::encode_gateway(&quotes).unwrap();
    assert!(quotes.len() < 4096);
    let mut no_id = serde_json::to_value(generator.gateway()).unwrap();
    no_id.as_object_mut().unwrap().remove("id");
    let poison: Vec<(Stream, Vec<u8>, &str)> = vec![
        (Stream::Gateway, b"garbage".to_vec(), "undecodable"),
        (Stream::Gateway, truncated_avro, "undecodable"),
        (Stream::Gateway, vec![b'x'; 5000], "oversized"),
        (Stream::Gateway, quotes, "oversized"),
        (
            Stream::Gateway,
            b"{\"id\": \"\xff\xfe\"}".to_vec(),
            "undecodable",
        ),
        (
            Stream::Lifecycle,
            unknown_field.to_string().into_bytes(),
            "undecodable",
        ),
        (
            Stream::Lifecycle,
            wrong_type.to_string().into_bytes(),
            "undecodable",
        ),
        (
            Stream::Lifecycle,
            bad_id.to_string().into_bytes(),
            "invalid",
        ),
        (Stream::Lifecycle, Vec::new(), "undecodable"),
        (
            Stream::Lifecycle,
            empty_id.to_string().into_bytes(),
            "invalid",
        ),
        (
            Stream::Gateway,
            no_id.to_string().into_bytes(),
            "undecodable",
        ),
    ];
    for (stream, bytes, _) in &poison {
        publisher
            .publish_bytes(*stream, "poison", None, bytes)
            .await
            .unwrap();
    }
    // A lifecycle type outside the catalogue is forwarded (forward compatibility) and counted.
    let mut future_type = generator.lifecycle();
    future_type.event_type = "stacks.teleported".to_owned();
    good.insert(publisher.publish_lifecycle(future_type).await.unwrap());
    // Good events after the poison still flow.
    for _ in 0..20 {
        good.insert(
            publisher
                .publish_gateway(generator.gateway())
                .await
                .unwrap(),
        );
    }

    let module = wait_for_records(&kafka, topics::MODULE, 121).await;
    let lifecycle = wait_for_records(&kafka, topics::LIFECYCLE, 101).await;
    let dead = wait_for_records(&kafka, topics::ROUTER_DLQ, poison.len()).await;
    let routed: HashSet<String> = module
        .iter()
        .chain(&lifecycle)
        .filter_map(|r| r.get(headers::EVENT_ID).cloned())
        .collect();
    assert_eq!(routed, good, "every good event is routed, nothing else");
    let binary = module
        .iter()
        .find(|r| r.get(headers::EVENT_ID) == Some(&binary_id))
        .unwrap();
    assert!(
        binary["payload"].contains("\"body\":\"{\u{fffd}\u{fffd}}\""),
        "{}",
        binary["payload"]
    );

    assert_eq!(dead.len(), poison.len(), "{dead:?}");
    let mut reasons: Vec<&str> = dead
        .iter()
        .map(|r| r[headers::dlq::REASON].as_str())
        .collect();
    let mut expected: Vec<&str> = poison.iter().map(|(_, _, reason)| *reason).collect();
    reasons.sort_unstable();
    expected.sort_unstable();
    assert_eq!(reasons, expected);
    for record in &dead {
        assert!(
            record[headers::dlq::SOURCE_TOPIC].starts_with("audit.raw."),
            "{record:?}"
        );
        assert!(
            record[headers::dlq::SOURCE_OFFSET].parse::<i64>().is_ok(),
            "{record:?}"
        );
        assert!(!record[headers::dlq::DETAIL].is_empty(), "{record:?}");
    }
    assert!(
        dead.iter()
            .any(|r| r[headers::dlq::DETAIL].contains("is not a UUID")),
        "{dead:?}"
    );
    assert!(
        dead.iter()
            .any(|r| r[headers::dlq::DETAIL].contains("max_message_bytes")),
        "{dead:?}"
    );
    assert!(
        dead.iter()
            .any(|r| r[headers::dlq::DETAIL].contains("its envelope has")),
        "{dead:?}"
    );

    // What an operator sees.
    let table = run_command(&["--config", &config, "dlq", "inspect"]);
    assert!(
        table.contains("REASON")
            && table.contains("oversized")
            && table.contains("audit.raw.lifecycle/"),
        "{table}"
    );
    assert!(
        table.contains(&format!(
            "{} dead-lettered record(s) in audit.dlq.router",
            poison.len()
        )),
        "{table}"
    );
    assert!(
        !table.contains("garbage"),
        "payloads stay hidden without --payload: {table}"
    );
    let json = run_command(&["--config", &config, "dlq", "inspect", "--json", "--payload"]);
    let lines: Vec<serde_json::Value> = json
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), poison.len());
    assert!(
        lines
            .iter()
            .any(|l| l["payload"] == "garbage" && l["reason"] == "undecodable"),
        "{json}"
    );

    let mut router = router;
    assert!(
        router.is_running(),
        "router survived the poison:\n{}",
        router.output()
    );
    assert!(router.output().contains("raw record dead-lettered"));
    assert!(
        router
            .output()
            .contains("lifecycle type not in the catalogue; forwarded")
            && router.output().contains("stacks.teleported"),
        "{}",
        router.output()
    );
}
