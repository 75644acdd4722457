//! Probe: where does a consuming stage's time go? Times, against one in-memory broker and the
//! same N raw gateway records, the read loops a stage can use and the router's two halves (its pure
//! work and its produce path) on their own. Each loop uses a fresh consumer group.
//!
//!   cargo run --release -p auditstream-bench --example consume_probe -- 200000
//!   PROBE_MODES=AF PROBE_PROPS=fetch.queue.backoff.ms=1000 cargo run ... (same, chosen loops and settings)
//!
//! docs/PERFORMANCE.md ("What the profiles showed") quotes its output.
use std::time::{Duration, Instant};

use auditstream_kafka::{produce_until_acked, topics, KafkaConfig};
use auditstream_producer::synthetic::Generator;
use auditstream_producer::Publisher;
use auditstream_tests::{run_command, Broker};
use futures::stream::{self, FuturesUnordered, StreamExt};
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::message::OwnedHeaders;
use rdkafka::Message;

fn cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    (f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap()) / 100.0
}

fn report(name: &str, n: usize, started: Instant, cpu_before: f64) {
    let s = started.elapsed().as_secs_f64();
    println!(
        "{name:<55} {:>9.0} events/s  {:>6.2} µs CPU/event",
        n as f64 / s,
        (cpu() - cpu_before) * 1e6 / n as f64
    );
}

#[tokio::main]
async fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map_or(200_000, |a| a.parse().unwrap());
    let broker = Broker::start_in_memory();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\n[topics]\npartitions = 4\n",
            broker.brokers()
        ),
    )
    .unwrap();
    run_command(&["--config", config.to_str().unwrap(), "topics", "create"]);
    let mut kafka = KafkaConfig::with_brokers(broker.brokers());
    // PROBE_PROPS="key=value,..." overrides librdkafka settings of every client.
    for pair in std::env::var("PROBE_PROPS")
        .unwrap_or_default()
        .split(',')
        .filter(|p| !p.is_empty())
    {
        let (key, value) = pair.split_once('=').expect("key=value");
        kafka.properties.insert(key.into(), value.into());
    }
    // PROBE_MODES="ABCDFG" selects the loops to time.
    let modes = std::env::var("PROBE_MODES").unwrap_or_else(|_| "ABCDFG".into());
    let on = |mode: char| modes.contains(mode);
    let publisher = Publisher::new(&kafka).unwrap();
    let mut generator = Generator::new(1);
    let started = Instant::now();
    stream::iter(0..n)
        .map(|_| {
            let event = generator.gateway();
            let publisher = &publisher;
            async move {
                publisher.publish_gateway(event).await.unwrap();
            }
        })
        .buffer_unordered(20_000)
        .collect::<()>()
        .await;
    println!(
        "published {n} in {:.1}s ({:.0}/s)",
        started.elapsed().as_secs_f64(),
        n as f64 / started.elapsed().as_secs_f64()
    );

    // A: BaseConsumer::poll, one message per call (the bench reference).
    if on('A') {
        let c: BaseConsumer = kafka.consumer("probe.a").create().unwrap();
        c.subscribe(&[topics::RAW_GATEWAY]).unwrap();
        let (mut seen, mut t0, mut c0) = (0, None, 0.0);
        while seen < n {
            if let Some(m) = c.poll(Duration::from_millis(100)) {
                std::hint::black_box(m.unwrap().payload());
                if t0.is_none() {
                    t0 = Some(Instant::now());
                    c0 = cpu();
                }
                seen += 1;
            }
        }
        report("A BaseConsumer::poll loop", n, t0.unwrap(), c0);
    }
    // B: StreamConsumer::recv() in a plain loop.
    if on('B') {
        let c: StreamConsumer = kafka.consumer("probe.b").create().unwrap();
        c.subscribe(&[topics::RAW_GATEWAY]).unwrap();
        std::hint::black_box(c.recv().await.unwrap().payload());
        let (t0, c0) = (Instant::now(), cpu());
        for _ in 1..n {
            std::hint::black_box(c.recv().await.unwrap().payload());
        }
        report("B StreamConsumer::recv loop", n, t0, c0);
    }
    // C: the router's loop shape without producing: TrackingConsumer, select! with a commit
    // tick, begin on read and finish at once.
    if on('C') {
        let c: auditstream_kafka::TrackingConsumer = kafka
            .tracking_consumer("probe.c", auditstream_kafka::Prefetch::Sink)
            .unwrap();
        c.subscribe(&[topics::RAW_GATEWAY]).unwrap();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let (mut seen, mut t0, mut c0) = (0, None, 0.0);
        while seen < n {
            tokio::select! {
                _ = tick.tick() => { let _ = c.context().commit(&c, rdkafka::consumer::CommitMode::Async); }
                m = c.recv() => {
                    let m = m.unwrap();
                    let mut t = c.context().tracker();
                    t.begin(m.topic(), m.partition(), m.offset());
                    t.finish(m.topic(), m.partition(), m.offset());
                    if t0.is_none() { t0 = Some(Instant::now()); c0 = cpu(); }
                    seen += 1;
                }
            }
        }
        report("C router loop shape, no produce", n, t0.unwrap(), c0);
    }
    // D: the router's produce path: produce_until_acked per record, up to 20,000 in flight.
    if on('D') {
        let producer = kafka.future_producer().unwrap();
        let payload = vec![b'x'; 1000];
        let headers = OwnedHeaders::new();
        let mut in_flight = FuturesUnordered::new();
        let (t0, c0) = (Instant::now(), cpu());
        let mut sent = 0;
        let mut done = 0;
        while done < n {
            if sent < n && in_flight.len() < 20_000 {
                let (p, h, pl) = (&producer, &headers, &payload);
                in_flight.push(async move {
                    produce_until_acked(p, topics::MODULE, Some(b"k"), pl, h).await
                });
                sent += 1;
            } else if in_flight.next().await.is_some() {
                done += 1;
            }
        }
        report("D produce_until_acked, 20k in flight", n, t0, c0);
    }

    // F: the router's loop shape with its pure work inline (route()), no produce.
    if on('F') {
        let redaction = auditstream_router::redact::Redaction::new(&Default::default());
        let c: auditstream_kafka::TrackingConsumer = kafka
            .tracking_consumer("probe.f", auditstream_kafka::Prefetch::Sink)
            .unwrap();
        c.subscribe(&[topics::RAW_GATEWAY]).unwrap();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let (mut seen, mut t0, mut c0) = (0, None, 0.0);
        while seen < n {
            tokio::select! {
                _ = tick.tick() => {}
                m = c.recv() => {
                    let m = m.unwrap();
                    let routed = auditstream_router::normalize::route(
                        auditstream_router::normalize::Stream::Gateway,
                        m.payload().unwrap(), None, &redaction);
                    std::hint::black_box(routed.is_ok());
                    if t0.is_none() { t0 = Some(Instant::now()); c0 = cpu(); }
                    seen += 1;
                }
            }
        }
        report(
            "F router loop shape + route(), no produce",
            n,
            t0.unwrap(),
            c0,
        );
    }
    // G: the router's loop shape with its produce path (select! over recv and a FuturesUnordered
    // of produce_until_acked, 20k bound), copying the input as output, no route().
    if on('G') {
        let producer = kafka.future_producer().unwrap();
        let c: auditstream_kafka::TrackingConsumer = kafka
            .tracking_consumer("probe.g", auditstream_kafka::Prefetch::Sink)
            .unwrap();
        c.subscribe(&[topics::RAW_GATEWAY]).unwrap();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut in_flight = FuturesUnordered::new();
        let (mut seen, mut done, mut t0, mut c0) = (0, 0, None, 0.0);
        while done < n {
            tokio::select! {
                _ = tick.tick() => {}
                Some(()) = in_flight.next(), if !in_flight.is_empty() => done += 1,
                m = c.recv(), if seen < n && in_flight.len() < 20_000 => {
                    let m = m.unwrap();
                    let key = m.key().map(<[u8]>::to_vec);
                    let payload = m.payload().unwrap().to_vec();
                    let headers = OwnedHeaders::new();
                    let producer = producer.clone();
                    in_flight.push(async move {
                        produce_until_acked(&producer, topics::MODULE, key.as_deref(), &payload, &headers).await
                    });
                    if t0.is_none() { t0 = Some(Instant::now()); c0 = cpu(); }
                    seen += 1;
                }
            }
        }
        report(
            "G router loop shape + produce, no route()",
            n,
            t0.unwrap(),
            c0,
        );
    }
}
