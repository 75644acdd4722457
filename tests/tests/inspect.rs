//! `auditstream history` and `auditstream tail` against a real broker and router, with no sink
//! running: what they select, in which order and format, and that they leave no consumer group
//! and no committed offset behind.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant, SystemTime};

use auditstream_kafka::{scan, topics, KafkaConfig};
use auditstream_producer::synthetic::Generator;
use auditstream_producer::Publisher;
use auditstream_schemas::headers;
use auditstream_schemas::raw::RawLifecycleEvent;
use auditstream_tests::{auditstream_bin, run_command, Broker, Process};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{json, Value};

const HOUR_MS: i64 = 3_600_000;

fn now_ms() -> i64 {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    i64::try_from(since.as_millis()).unwrap()
}

fn rfc3339(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap()
}

/// Writes a configuration with one destination, whose sink is never started: history and tail
/// must not need it.
fn write_config(dir: &Path, broker: &Broker) -> String {
    let path = dir.join("auditstream.toml");
    std::fs::write(
        &path,
        format!(
            "[kafka]\nbrokers = \"{}\"\n[topics]\npartitions = 3\n[router]\ncommit_interval = \"200ms\"\n\
             [[destinations]]\nname = \"siem\"\nurl = \"https://127.0.0.1:9/events\"\n",
            broker.brokers()
        ),
    )
    .unwrap();
    path.display().to_string()
}

/// A lifecycle event of `organization` dated `date_ms`; `data.id` is its target.
fn lifecycle(
    organization: &str,
    stack: Option<&str>,
    event_type: &str,
    target: &str,
    date_ms: i64,
) -> RawLifecycleEvent {
    let data = json!({"id": target, "name": format!("name of {target}")});
    RawLifecycleEvent {
        id: uuid::Uuid::new_v4().to_string(),
        event_type: event_type.to_owned(),
        timestamp: date_ms,
        owner_id: "owner-1".to_owned(),
        organization_id: organization.to_owned(),
        stack_id: stack.map(str::to_owned),
        subject: format!("actor-of-{target}"),
        data: data.as_object().unwrap().clone(),
    }
}

/// Runs `auditstream <args>` and returns its output whatever the exit status.
fn auditstream(args: &[&str]) -> Output {
    Command::new(auditstream_bin())
        .args(args)
        .output()
        .expect("run auditstream")
}

/// `history ... --format json`, parsed.
fn history_json(config: &str, args: &[&str]) -> Vec<Value> {
    let mut all = vec!["--config", config, "history"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--format", "json"]);
    let output = auditstream(&all);
    assert!(output.status.success(), "{all:?}: {output:?}");
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|err| panic!("{all:?} printed no JSON array ({err}): {output:?}"))
}

/// The `data.id` of each event, in output order.
fn targets(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["payload"]["data"]["id"].as_str().unwrap())
        .collect()
}

/// Polls `history` until it lists `count` events.
fn wait_for_history(config: &str, args: &[&str], count: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = history_json(config, args);
        if events.len() >= count || Instant::now() >= deadline {
            return events;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Groups known to the broker. Inspection commands must add none.
fn group_names(brokers: &str) -> HashSet<String> {
    let consumer: BaseConsumer = KafkaConfig::with_brokers(brokers)
        .reader()
        .create()
        .unwrap();
    let groups = consumer
        .fetch_group_list(None, Duration::from_secs(10))
        .expect("list consumer groups");
    groups
        .groups()
        .iter()
        .map(|g| g.name().to_owned())
        .collect()
}

/// Committed offsets of `group` on the partitions of `topics` (three each).
fn commits(brokers: &str, group: &str, topics: &[&str]) -> Vec<(String, i32, Offset)> {
    let consumer: BaseConsumer = KafkaConfig::with_brokers(brokers)
        .consumer(group)
        .create()
        .unwrap();
    let mut partitions = TopicPartitionList::new();
    for topic in topics {
        for partition in 0..3 {
            partitions.add_partition(topic, partition);
        }
    }
    consumer
        .committed_offsets(partitions, Duration::from_secs(10))
        .expect("read committed offsets")
        .elements()
        .iter()
        .filter(|e| e.offset() != Offset::Invalid)
        .map(|e| (e.topic().to_owned(), e.partition(), e.offset()))
        .collect()
}

/// The broker's view after an inspection command: the router is the only group (which shows
/// that listing groups works), it has committed (which shows that reading commits works), and
/// the group name the inspection reader's clients carry has committed nothing.
fn assert_no_group_or_commit_of_inspection(brokers: &str, command: &str) {
    let groups = group_names(brokers);
    assert_eq!(
        groups,
        HashSet::from(["auditstream.router".to_owned()]),
        "{command} joined or created a group, or the router is missing"
    );
    assert!(!commits(brokers, "auditstream.router", &[topics::RAW_LIFECYCLE]).is_empty());
    let reader_group = KafkaConfig::with_brokers(brokers)
        .reader()
        .get("group.id")
        .unwrap()
        .to_owned();
    assert_eq!(
        commits(brokers, &reader_group, &[topics::LIFECYCLE, topics::MODULE]),
        [],
        "{command} committed offsets"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_selects_one_organisation_or_stack_newest_first_in_every_format() {
    let broker = Broker::start();
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), &broker);
    run_command(&["--config", &config, "topics", "create"]);
    let _router = Process::start("router", work.path(), &["--config", &config, "router"], &[]);
    let kafka = KafkaConfig::with_brokers(broker.brokers());
    let publisher = Publisher::new(&kafka).unwrap();

    // Two groups two hours apart by event date, for two organisations, plus gateway traffic of
    // the same organisations that must never show up in a lifecycle history.
    let now = now_ms();
    let old = now - 2 * HOUR_MS;
    let events = [
        lifecycle("org-a", None, "organizations.updated", "a-old-1", old),
        lifecycle("org-a", Some("stk-a1"), "stacks.created", "stk-a1", old + 1),
        lifecycle("org-b", Some("stk-b1"), "stacks.created", "stk-b1", old + 2),
        lifecycle("org-a", None, "invitations.created", "a-old-3", old + 3),
        lifecycle("org-a", Some("stk-a1"), "stacks.upgraded", "stk-a1", now),
        lifecycle("org-a", None, "invitations.accepted", "a-new-2", now + 1),
        lifecycle("org-b", None, "invitations.created", "b-new-1", now + 2),
        lifecycle("org-a", Some("stk-a2"), "stacks.created", "stk-a2", now + 3),
    ];
    for event in events {
        publisher.publish_lifecycle(event).await.unwrap();
    }
    let mut generator = Generator::new(5);
    for _ in 0..30 {
        let mut gateway = generator.gateway();
        gateway.organization_id = "org-a".to_owned();
        publisher.publish_gateway(gateway).await.unwrap();
    }

    // Exactly org-a's six lifecycle events, newest first.
    let org_a = wait_for_history(&config, &["org", "org-a"], 6);
    assert_eq!(
        targets(&org_a),
        ["stk-a2", "a-new-2", "stk-a1", "a-old-3", "stk-a1", "a-old-1"]
    );
    assert!(org_a
        .iter()
        .all(|e| e["app"] == "membership" && e["payload"]["organizationId"] == "org-a"));
    let dates: Vec<&str> = org_a.iter().map(|e| e["date"].as_str().unwrap()).collect();
    assert!(dates.windows(2).all(|w| w[0] >= w[1]), "{dates:?}");

    // --since and --until split the two groups by event date.
    let since = history_json(&config, &["org", "org-a", "--since", "1h"]);
    assert_eq!(targets(&since), ["stk-a2", "a-new-2", "stk-a1"]);
    let until = history_json(&config, &["org", "org-a", "--until", "1h"]);
    assert_eq!(targets(&until), ["a-old-3", "stk-a1", "a-old-1"]);
    let between = history_json(
        &config,
        &[
            "org",
            "org-a",
            "--since",
            &rfc3339(old + 1),
            "--until",
            &rfc3339(now),
        ],
    );
    assert_eq!(targets(&between), ["stk-a1", "a-old-3", "stk-a1"]);

    // --type and --target, alone and together.
    let stacks = history_json(&config, &["org", "org-a", "--type", "stacks.*"]);
    assert_eq!(targets(&stacks), ["stk-a2", "stk-a1", "stk-a1"]);
    let invitations = history_json(
        &config,
        &[
            "org",
            "org-a",
            "--type",
            "invitations.accepted,organizations.*",
        ],
    );
    assert_eq!(targets(&invitations), ["a-new-2", "a-old-1"]);
    let one_target = history_json(&config, &["org", "org-a", "--target", "stk-a1"]);
    assert_eq!(
        one_target
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["stacks.upgraded", "stacks.created"]
    );
    let both = history_json(
        &config,
        &[
            "org",
            "org-a",
            "--target",
            "stk-*",
            "--type",
            "stacks.created",
        ],
    );
    assert_eq!(targets(&both), ["stk-a2", "stk-a1"]);
    assert_eq!(
        history_json(&config, &["org", "org-a", "--limit", "2"]).len(),
        2
    );

    // A stack's history: its events only, organisation-level ones excluded.
    let stack = history_json(&config, &["stack", "stk-a1"]);
    assert_eq!(
        stack
            .iter()
            .map(|e| e["type"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["stacks.upgraded", "stacks.created"]
    );

    // CSV: a header row, then one row per event, newest first, that parses back.
    let csv_path = work.path().join("org-a.csv");
    let csv_file = csv_path.display().to_string();
    run_command(&[
        "--config", &config, "history", "org", "org-a", "--format", "csv", "--output", &csv_file,
    ]);
    let mut reader = csv::Reader::from_path(&csv_path).unwrap();
    assert_eq!(
        reader.headers().unwrap().iter().collect::<Vec<_>>(),
        [
            "date",
            "type",
            "event_id",
            "actor",
            "target",
            "organization_id",
            "stack_id",
            "owner_id",
            "data"
        ]
    );
    let rows: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    assert_eq!(
        rows.iter().map(|r| r[4].to_owned()).collect::<Vec<_>>(),
        targets(&org_a)
    );
    assert_eq!(&rows[0][1], "stacks.created");
    assert_eq!(&rows[0][3], "actor-of-stk-a2");
    assert_eq!(&rows[0][6], "stk-a2");
    assert_eq!(&rows[1][6], "", "an organisation-level event has no stack");
    assert!(uuid::Uuid::parse_str(&rows[0][2]).is_ok(), "{:?}", rows[0]);
    let data: Value = serde_json::from_str(&rows[0][8]).unwrap();
    assert_eq!(data["name"], "name of stk-a2");

    // The table: a heading and one aligned line per event.
    let table = auditstream(&[
        "--config", &config, "history", "org", "org-a", "--since", "1h",
    ]);
    let text = String::from_utf8(table.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(
        lines[0].starts_with("TIME") && lines[0].contains("SUMMARY"),
        "{text}"
    );
    let type_column = lines[0].find("TYPE").unwrap();
    assert!(
        lines[1][type_column..].starts_with("stacks.created "),
        "{text}"
    );
    assert!(lines[1].contains("actor-of-stk-a2") && lines[1].contains("name=name of stk-a2"));

    // Nothing to show is not a failure; bad input is a usage error (exit 2).
    let empty = auditstream(&["--config", &config, "history", "org", "org-nobody"]);
    assert_eq!(empty.status.code(), Some(0), "{empty:?}");
    assert!(empty.stdout.is_empty());
    assert!(String::from_utf8_lossy(&empty.stderr)
        .contains("no lifecycle events of organisation org-nobody"));
    for bad in [
        vec!["history", "org", "org a"],
        vec!["history", "stack", ""],
        vec!["history", "org", "org-a", "--since", "yesterday"],
        vec!["history", "org", "org-a", "--type", "*.created"],
        vec!["history", "org", "org-a", "--since", "1h", "--until", "2h"],
    ] {
        let mut args = vec!["--config", config.as_str()];
        args.extend(bad.iter().copied());
        let output = auditstream(&args);
        assert_eq!(output.status.code(), Some(2), "{bad:?}: {output:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("error: "));
    }

    // --since starts reading at the broker's offset for that time. An event dated after --since
    // but written by the router before it (a producer clock running an hour ahead) is found
    // within the default margin, and skipped without one: proof that the early records were
    // never read, since its date alone would select it.
    publisher
        .publish_lifecycle(lifecycle(
            "org-f",
            None,
            "users.created",
            "f-1",
            now_ms() + HOUR_MS,
        ))
        .await
        .unwrap();
    assert_eq!(wait_for_history(&config, &["org", "org-f"], 1).len(), 1);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let after_routing = rfc3339(now_ms() - 500);
    assert_eq!(
        history_json(&config, &["org", "org-f", "--since", &after_routing]).len(),
        1
    );
    assert!(history_json(
        &config,
        &["org", "org-f", "--since", &after_routing, "--margin", "0s"]
    )
    .is_empty());

    assert_no_group_or_commit_of_inspection(&broker.brokers(), "history");
}

/// The envelope bytes of every record of the envelope topics, by event id.
async fn envelopes_by_id(kafka: &KafkaConfig) -> HashMap<String, Vec<u8>> {
    let mut found = HashMap::new();
    for topic in [topics::LIFECYCLE, topics::MODULE] {
        scan(kafka, topic, |message| {
            let id = message
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == headers::EVENT_ID))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap();
            found.insert(id, message.payload().unwrap_or_default().to_vec());
            true
        })
        .await
        .unwrap();
    }
    found
}

/// `auditstream tail` with stdout and stderr in separate files.
struct Tail {
    child: std::process::Child,
    stdout: std::path::PathBuf,
    stderr: std::path::PathBuf,
}

impl Tail {
    fn start(dir: &Path, name: &str, config: &str, args: &[&str]) -> Tail {
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let child = Command::new(auditstream_bin())
            .args(["--config", config, "tail"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .unwrap();
        let tail = Tail {
            child,
            stdout,
            stderr,
        };
        // Every record written after this line is shown (the end offsets are resolved first).
        let deadline = Instant::now() + Duration::from_secs(30);
        while !tail.errors().contains("following") {
            assert!(
                Instant::now() < deadline,
                "tail did not start: {}",
                tail.errors()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        tail
    }

    fn lines(&self) -> Vec<String> {
        std::fs::read_to_string(&self.stdout)
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }

    fn wait_for_lines(&self, count: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.lines().len() < count && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
        self.lines()
    }

    /// SIGTERM, then the exit status.
    fn terminate(mut self) -> std::process::ExitStatus {
        Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        self.child.wait().unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tail_prints_new_filtered_envelopes_without_a_group_or_commits() {
    let broker = Broker::start();
    let work = tempfile::tempdir().unwrap();
    let config = write_config(work.path(), &broker);
    run_command(&["--config", &config, "topics", "create"]);
    let _router = Process::start("router", work.path(), &["--config", &config, "router"], &[]);
    let kafka = KafkaConfig::with_brokers(broker.brokers());
    let publisher = Publisher::new(&kafka).unwrap();

    // Routed before the tails start: not shown without --since.
    let now = now_ms();
    publisher
        .publish_lifecycle(lifecycle("org-t", None, "users.created", "before", now))
        .await
        .unwrap();
    assert_eq!(wait_for_history(&config, &["org", "org-t"], 1).len(), 1);

    let by_org = Tail::start(work.path(), "by-org", &config, &["--org", "org-t"]);
    let invitations = Tail::start(
        work.path(),
        "invitations",
        &config,
        &[
            "--stream",
            "lifecycle",
            "--type",
            "invitations.*",
            "--target",
            "inv-2",
        ],
    );
    let module = Tail::start(
        work.path(),
        "module",
        &config,
        &[
            "--stream",
            "module",
            "--stack",
            "stk-t",
            "--target",
            "/api/ledger/*",
        ],
    );

    let mut expected_by_org = Vec::new();
    for event in [
        lifecycle("org-t", Some("stk-t"), "stacks.created", "stk-t", now + 1),
        lifecycle("org-t", None, "invitations.created", "inv-1", now + 2),
        lifecycle("org-u", None, "invitations.created", "inv-2", now + 3),
    ] {
        let organization = event.organization_id.clone();
        let id = publisher.publish_lifecycle(event).await.unwrap();
        if organization == "org-t" {
            expected_by_org.push(id);
        }
    }
    let mut generator = Generator::new(9);
    let mut ledger_calls = HashSet::new();
    for i in 0..12 {
        let mut gateway = generator.gateway();
        gateway.organization_id = "org-t".to_owned();
        gateway.stack_id = if i % 2 == 0 { "stk-t" } else { "stk-other" }.to_owned();
        gateway.request.path = if i % 3 == 0 {
            "/api/payments/v3/payments".to_owned()
        } else {
            format!("/api/ledger/v2/main/transactions?page={i}")
        };
        let id = publisher.publish_gateway(gateway).await.unwrap();
        expected_by_org.push(id.clone());
        if i % 2 == 0 && i % 3 != 0 {
            ledger_calls.insert(id);
        }
    }

    // Every line is the envelope exactly as written to the envelope topic.
    let by_org_lines = by_org.wait_for_lines(expected_by_org.len());
    let envelopes = envelopes_by_id(&kafka).await;
    let line_of = |id: &String| String::from_utf8(envelopes[id].clone()).unwrap();
    let mut printed: Vec<String> = by_org_lines.clone();
    printed.sort();
    let mut expected: Vec<String> = expected_by_org.iter().map(line_of).collect();
    expected.sort();
    assert_eq!(printed, expected, "tail --org org-t");
    assert!(!by_org_lines.iter().any(|l| l.contains("\"before\"")));

    let invitation_lines = invitations.wait_for_lines(1);
    assert_eq!(invitation_lines.len(), 1, "{invitation_lines:?}");
    let invitation: Value = serde_json::from_str(&invitation_lines[0]).unwrap();
    assert_eq!(invitation["payload"]["data"]["id"], "inv-2");

    let module_lines = module.wait_for_lines(ledger_calls.len());
    let mut printed: Vec<String> = module_lines.clone();
    printed.sort();
    let mut expected: Vec<String> = ledger_calls.iter().map(line_of).collect();
    expected.sort();
    assert_eq!(
        printed, expected,
        "tail --stream module --stack stk-t --target /api/ledger/*"
    );

    // Neither a group member nor a committer while running, and a clean stop on SIGTERM.
    assert_no_group_or_commit_of_inspection(&broker.brokers(), "tail");
    for tail in [by_org, invitations, module] {
        let errors = tail.errors();
        let status = tail.terminate();
        assert!(status.success(), "{status:?}: {errors}");
    }
    assert_no_group_or_commit_of_inspection(&broker.brokers(), "tail");

    // --since replays what was written earlier; a closed pipe ends the tail quietly (exit 0).
    let piped = Command::new("bash")
        .args(["-o", "pipefail", "-c"])
        .arg(format!(
            "'{}' --config '{config}' tail --since 10m --org org-t --type users.created | head -n 1",
            auditstream_bin().display()
        ))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A tail learns that the reader left at its next write: give it one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    publisher
        .publish_lifecycle(lifecycle("org-t", None, "users.created", "after", now_ms()))
        .await
        .unwrap();
    let output = tokio::task::spawn_blocking(move || piped.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{output:?}");
    assert!(!stderr.contains("error"), "{stderr}");
    let lines: Vec<&str> = std::str::from_utf8(&output.stdout)
        .unwrap()
        .lines()
        .collect();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("\"before\""), "{lines:?}");

    let bad = auditstream(&["--config", &config, "tail", "--org", "a b"]);
    assert_eq!(bad.status.code(), Some(2), "{bad:?}");
}
