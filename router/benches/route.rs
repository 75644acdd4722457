//! Cost of the router's pure work on one realistic ~1 KB gateway event: Avro decode, validation,
//! normalization, the always-on redaction rules and envelope serialization (`normalize::route`);
//! and, for the services' side, encoding the raw event before it is published. Kafka is not
//! involved. Run with `cargo bench -p auditstream-router --bench route`.
//!
//! Besides criterion's timings it prints the heap allocations per event, counted by a wrapping
//! global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use auditstream_producer::synthetic::{GatewayKind, Generator};
use auditstream_router::normalize::{gateway, route, Stream};
use auditstream_router::redact::Redaction;
use auditstream_schemas::avro;
use auditstream_schemas::envelope::{write_gateway_json, GatewayEnvelope};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};

/// Counts allocations so that the benchmark can report them per event.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded unchanged to the system allocator, with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with this layout, in `alloc` above.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn events() -> Vec<Vec<u8>> {
    let mut generator = Generator::new(42);
    (0..256)
        .map(|_| {
            avro::encode_gateway(&generator.gateway_of(GatewayKind::Ordinary)).expect("encode")
        })
        .collect()
}

fn bench_route(c: &mut Criterion) {
    let events = events();
    let mean_size = events.iter().map(Vec::len).sum::<usize>() / events.len();
    let redaction = Redaction::default();

    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for event in &events {
        std::hint::black_box(route(Stream::Gateway, event, None, &redaction).expect("valid"));
    }
    let per_event = (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / events.len() as f64;
    eprintln!("raw event size {mean_size} bytes; {per_event:.1} heap allocations per routed event");

    let mut group = c.benchmark_group("router");
    group.throughput(Throughput::Elements(1));
    let mut next = events.iter().cycle();
    group.bench_function("route_gateway_avro_1kb", |b| {
        b.iter(|| {
            route(
                Stream::Gateway,
                next.next().expect("cycle"),
                None,
                &redaction,
            )
            .expect("valid")
        })
    });
    // The stages apart, to see where the time goes: decoding alone, and normalizing, redacting
    // and serializing an already decoded event.
    group.bench_function("decode_only", |b| {
        b.iter(|| avro::decode_gateway(next.next().expect("cycle")).expect("valid"))
    });
    // The reference decoder the direct one replaced, side by side.
    group.bench_function("decode_only_generic_apache_avro", |b| {
        b.iter(|| avro::decode_gateway_generic(next.next().expect("cycle")).expect("valid"))
    });
    let decoded: Vec<_> = events
        .iter()
        .map(|e| avro::decode_gateway(e).expect("valid"))
        .collect();
    let mut next_decoded = decoded.iter().cycle();
    group.bench_function("normalize_redact_serialize_only", |b| {
        b.iter_batched(
            || next_decoded.next().expect("cycle").clone(),
            |raw| gateway(raw, &redaction).expect("valid"),
            BatchSize::SmallInput,
        )
    });
    // Writing the envelope: the hand-written writer the router uses, and serde_json, which
    // writes the same bytes, side by side.
    let envelopes: Vec<GatewayEnvelope> = events
        .iter()
        .map(|e| {
            let routed = route(Stream::Gateway, e, None, &redaction).expect("valid");
            serde_json::from_slice(&routed.body).expect("envelope")
        })
        .collect();
    let mut next_envelope = envelopes.iter().cycle();
    group.bench_function("serialize_only_writer", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(2048);
            write_gateway_json(next_envelope.next().expect("cycle"), &mut out);
            out
        })
    });
    group.bench_function("serialize_only_serde_json", |b| {
        b.iter(|| {
            let mut out = Vec::with_capacity(2048);
            serde_json::to_writer(&mut out, next_envelope.next().expect("cycle"))
                .expect("serializes");
            out
        })
    });
    group.finish();

    // The services' side: encoding a raw event before it is published, with the direct encoder
    // the publishers use and apache-avro's generic writer, side by side.
    let mut publisher = c.benchmark_group("publisher");
    publisher.throughput(Throughput::Elements(1));
    publisher.bench_function("encode_gateway_direct", |b| {
        b.iter(|| avro::encode_gateway(next_decoded.next().expect("cycle")).expect("encodes"))
    });
    publisher.bench_function("encode_gateway_generic_apache_avro", |b| {
        b.iter(|| {
            avro::encode_gateway_generic(next_decoded.next().expect("cycle")).expect("encodes")
        })
    });
    publisher.finish();
}

criterion_group!(benches, bench_route);
criterion_main!(benches);
