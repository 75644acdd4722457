use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use axum::Router;
use axum_server::accept::NoDelayAcceptor;
use axum_server::tls_rustls::{RustlsAcceptor, RustlsConfig};
use axum_server::Handle;

use crate::tls::SelfSignedCa;
use crate::EVENT_ID_HEADER;

/// How to run a receiver.
#[derive(Clone, Default)]
pub struct ReceiverOptions {
    /// Address to listen on; port 0 picks a free port. Default `127.0.0.1:0`.
    pub listen: Option<SocketAddr>,
    /// Serve HTTPS with this certificate; plain HTTP when `None`.
    pub tls: Option<SelfSignedCa>,
    /// Keep every body received (for tests that inspect content).
    pub keep_bodies: bool,
    /// Print every body received to stdout, one line each (for the demo).
    pub print: bool,
    /// Append the event id of every accepted request to this file, one per line.
    pub ids_out: Option<PathBuf>,
    /// Only count envelopes (no ids, no bodies): the cheapest possible destination, for benchmarks.
    pub count_only: bool,
    /// Answer every request as Elasticsearch's `_bulk` API would, with one `201` item per action
    /// line, so that a sink in `elasticsearch_bulk` format can be measured against it.
    pub bulk_responses: bool,
    /// Record, per envelope, the time from its `date` to its arrival (for latency benchmarks).
    pub record_latency: bool,
    /// Answer 401 to requests whose `Authorization` header is not exactly this, as a SIEM
    /// checking its token would.
    pub expect_authorization: Option<String>,
}

#[derive(Default)]
struct Recorded {
    latencies_ms: Vec<i64>,
    counts: HashMap<String, u32>,
    bodies: Vec<Bytes>,
    without_id: u64,
}

struct Shared {
    options: ReceiverOptions,
    ids_out: Option<Mutex<std::fs::File>>,
    recorded: Mutex<Recorded>,
    requests: AtomicU64,
    /// Envelopes accepted (all modes).
    envelopes: AtomicU64,
    /// Status to answer instead of 200; 0 means succeed.
    fail_with: AtomicU16,
    /// Event ids refused with a status, as a SIEM refusing some events would.
    reject: Mutex<Option<(u16, HashSet<String>)>>,
    /// Milliseconds to wait before handling each request; 0 means answer at once.
    delay_ms: AtomicU64,
    /// Break every connection in the middle of its response, storing nothing.
    drop_connections: AtomicBool,
}

impl Shared {
    fn recorded(&self) -> MutexGuard<'_, Recorded> {
        self.recorded
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

/// Counters of what a receiver got so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// Requests received, failed ones included.
    pub requests: u64,
    /// Distinct event ids accepted.
    pub distinct: usize,
    /// Accepted events beyond the first delivery of their id.
    pub duplicates: u64,
    /// Accepted requests whose event id could not be determined.
    pub without_id: u64,
}

/// A running receiver; stops when dropped.
pub struct Receiver {
    shared: Arc<Shared>,
    addr: SocketAddr,
    handle: Handle,
}

impl Receiver {
    /// Binds and starts serving in the background.
    pub async fn start(options: ReceiverOptions) -> io::Result<Receiver> {
        // One process-wide rustls provider; a second install fails harmlessly.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let listener = std::net::TcpListener::bind(
            options
                .listen
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        )?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let tls = options.tls.clone();
        let ids_out = match &options.ids_out {
            Some(path) => Some(Mutex::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
            None => None,
        };
        let shared = Arc::new(Shared {
            ids_out,
            options,
            recorded: Mutex::new(Recorded::default()),
            requests: AtomicU64::new(0),
            envelopes: AtomicU64::new(0),
            fail_with: AtomicU16::new(0),
            reject: Mutex::new(None),
            delay_ms: AtomicU64::new(0),
            drop_connections: AtomicBool::new(false),
        });
        let app = Router::new()
            .route("/", any(receive))
            .route("/{*path}", any(receive))
            .with_state(Arc::clone(&shared));
        let handle = Handle::new();
        let server_handle = handle.clone();
        // TCP_NODELAY: without it, Nagle's algorithm and the client's delayed ACK hold each small
        // response back for tens of milliseconds, which caps any sink measured against this.
        match tls {
            Some(tls) => {
                let config =
                    RustlsConfig::from_pem(tls.cert_pem.into_bytes(), tls.key_pem.into_bytes())
                        .await?;
                let acceptor = RustlsAcceptor::new(config).acceptor(NoDelayAcceptor::new());
                let server = axum_server::from_tcp(listener)
                    .acceptor(acceptor)
                    .handle(server_handle);
                tokio::spawn(async move {
                    if let Err(err) = server.serve(app.into_make_service()).await {
                        tracing::error!(error = %err, "receiver stopped");
                    }
                });
            }
            None => {
                let server = axum_server::from_tcp(listener)
                    .acceptor(NoDelayAcceptor::new())
                    .handle(server_handle);
                tokio::spawn(async move {
                    if let Err(err) = server.serve(app.into_make_service()).await {
                        tracing::error!(error = %err, "receiver stopped");
                    }
                });
            }
        }
        Ok(Receiver {
            shared,
            addr,
            handle,
        })
    }

    /// The URL to configure as a destination.
    pub fn url(&self) -> String {
        let scheme = if self.shared.options.tls.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}/events", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Answer `status` to every request from now on (`None`: accept again).
    pub fn fail_with(&self, status: Option<u16>) {
        self.shared
            .fail_with
            .store(status.unwrap_or(0), Ordering::SeqCst);
    }

    /// Wait `delay` before handling each request from now on (`None`: answer at once), as a slow
    /// SIEM would. The request is handled after the wait even if the client gave up meanwhile,
    /// so a client timeout shorter than `delay` turns into a duplicate when it retries.
    pub fn set_delay(&self, delay: Option<Duration>) {
        let ms = delay.map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        self.shared.delay_ms.store(ms, Ordering::SeqCst);
    }

    /// From now on (`true`), store nothing and break each connection in the middle of its
    /// response: the status line and part of the body go out, then the connection closes. The
    /// status is 500, so a client that ignores the broken body still does not count the request
    /// as accepted.
    pub fn drop_connections(&self, on: bool) {
        self.shared.drop_connections.store(on, Ordering::SeqCst);
    }

    /// Answer `status` to any request carrying one of `ids` (`None`: accept them again).
    pub fn reject_ids(&self, rule: Option<(u16, HashSet<String>)>) {
        *self
            .shared
            .reject
            .lock()
            .unwrap_or_else(|poison| poison.into_inner()) = rule;
    }

    /// Counters so far.
    pub fn snapshot(&self) -> Snapshot {
        let recorded = self.shared.recorded();
        let accepted: u64 = recorded.counts.values().map(|&n| u64::from(n)).sum();
        Snapshot {
            requests: self.shared.requests.load(Ordering::SeqCst),
            distinct: recorded.counts.len(),
            duplicates: accepted - recorded.counts.len() as u64,
            without_id: recorded.without_id,
        }
    }

    /// Envelopes accepted so far, duplicates included.
    pub fn envelopes(&self) -> u64 {
        self.shared.envelopes.load(Ordering::SeqCst)
    }

    /// Milliseconds from each accepted envelope's `date` to its arrival (with `record_latency`).
    pub fn latencies_ms(&self) -> Vec<i64> {
        self.shared.recorded().latencies_ms.clone()
    }

    /// How many latencies were recorded so far (cheaper than cloning them to count).
    pub fn latency_samples(&self) -> usize {
        self.shared.recorded().latencies_ms.len()
    }

    /// Every distinct event id accepted so far.
    pub fn ids(&self) -> HashSet<String> {
        self.shared.recorded().counts.keys().cloned().collect()
    }

    /// Every body accepted so far (only with `keep_bodies`).
    pub fn bodies(&self) -> Vec<Bytes> {
        self.shared.recorded().bodies.clone()
    }

    /// Waits until every id in `expected` arrived; returns how many are still missing on timeout.
    pub async fn wait_for(
        &self,
        expected: &HashSet<String>,
        timeout: Duration,
    ) -> Result<(), usize> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let missing = {
                let recorded = self.shared.recorded();
                expected
                    .iter()
                    .filter(|id| !recorded.counts.contains_key(*id))
                    .count()
            };
            if missing == 0 {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(missing);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    let delay_ms = shared.delay_ms.load(Ordering::SeqCst);
    if delay_ms == 0 {
        return handle(&shared, &headers, &body);
    }
    // A slow SIEM finishes its work even when the client has given up: handle the request in
    // its own task, which the server does not cancel when the connection closes.
    let task = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(delay_ms)).await;
        handle(&shared, &headers, &body)
    });
    task.await
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

fn handle(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> Response {
    if shared.drop_connections.load(Ordering::SeqCst) {
        return broken_response();
    }
    if shared.options.bulk_responses {
        return bulk_answer(shared, body);
    }
    accept(shared, headers, body).into_response()
}

/// A 500 that announces a body it never finishes: the head and a first chunk are flushed, then
/// the body fails and the server closes the connection.
fn broken_response() -> Response {
    let chunks = futures::stream::unfold(0u8, |step| async move {
        match step {
            0 => Some((Ok(Bytes::from_static(b"{\"error\":\"conn")), 1)),
            1 => {
                // Let the head and the first chunk reach the client before breaking off.
                tokio::time::sleep(Duration::from_millis(20)).await;
                Some((Err(io::Error::other("connection dropped on purpose")), 2))
            }
            _ => None,
        }
    });
    Response::builder()
        .status(StatusCode::INTERNAL_SERVER_ERROR)
        .header(CONTENT_TYPE, "application/json")
        .header(CONTENT_LENGTH, "1000")
        .body(axum::body::Body::from_stream(chunks))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// An Elasticsearch `_bulk`-style answer: every `create` action line gets a `201` item.
fn bulk_answer(shared: &Shared, body: &Bytes) -> Response {
    let actions = body
        .split(|&b| b == b'\n')
        .filter(|line| line.starts_with(b"{\"create\""))
        .count();
    shared
        .envelopes
        .fetch_add(actions as u64, Ordering::Relaxed);
    let mut answer = String::with_capacity(32 + actions * 24);
    answer.push_str("{\"errors\":false,\"items\":[");
    for i in 0..actions {
        if i > 0 {
            answer.push(',');
        }
        answer.push_str("{\"create\":{\"status\":201}}");
    }
    answer.push_str("]}");
    ([(CONTENT_TYPE, "application/json")], answer).into_response()
}

fn accept(shared: &Shared, headers: &HeaderMap, body: &Bytes) -> StatusCode {
    if shared.options.count_only {
        let envelopes = count_envelopes(body) as u64;
        shared.envelopes.fetch_add(envelopes, Ordering::Relaxed);
        return StatusCode::OK;
    }
    if let Some(expected) = &shared.options.expect_authorization {
        if headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return StatusCode::UNAUTHORIZED;
        }
    }
    let fail_with = shared.fail_with.load(Ordering::SeqCst);
    if fail_with != 0 {
        return StatusCode::from_u16(fail_with).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    }
    let envelopes = split_envelopes(body);
    // One event per POST names its id in a header; batched envelopes carry `payload.id` (gateway
    // events) and are counted without an id otherwise.
    let ids: Vec<Option<String>> = match headers.get(EVENT_ID_HEADER).and_then(|v| v.to_str().ok())
    {
        Some(id) if envelopes.len() <= 1 => vec![Some(id.to_owned())],
        _ => envelopes.iter().map(|e| payload_id(e)).collect(),
    };
    if let Some((status, rejected)) = &*shared
        .reject
        .lock()
        .unwrap_or_else(|poison| poison.into_inner())
    {
        if ids.iter().flatten().any(|id| rejected.contains(id)) {
            return StatusCode::from_u16(*status).unwrap_or(StatusCode::BAD_REQUEST);
        }
    }
    if let Some(file) = &shared.ids_out {
        let mut file = file.lock().unwrap_or_else(|poison| poison.into_inner());
        for id in ids.iter().flatten() {
            if let Err(err) = writeln!(file, "{id}") {
                tracing::error!(error = %err, "cannot record an event id");
                return StatusCode::INTERNAL_SERVER_ERROR;
            }
        }
    }
    if shared.options.print {
        for envelope in &envelopes {
            println!("{}", String::from_utf8_lossy(envelope));
        }
    }
    shared
        .envelopes
        .fetch_add(envelopes.len() as u64, Ordering::Relaxed);
    let mut recorded = shared.recorded();
    if shared.options.record_latency {
        let now = now_ms();
        recorded.latencies_ms.extend(
            envelopes
                .iter()
                .filter_map(|e| envelope_date_ms(e))
                .map(|date| now - date),
        );
    }
    for id in ids {
        match id {
            Some(id) => *recorded.counts.entry(id).or_default() += 1,
            None => recorded.without_id += 1,
        }
    }
    if shared.options.keep_bodies {
        recorded
            .bodies
            .extend(envelopes.into_iter().map(|e| body.slice_ref(e)));
    }
    StatusCode::OK
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The envelope's `date` in epoch milliseconds; it is the first field the router writes.
fn envelope_date_ms(envelope: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(envelope.get(9..33)?).ok()?;
    let date =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(date.unix_timestamp_nanos() / 1_000_000).ok()
}

/// The envelopes of a body: one JSON object, a JSON array of them, or NDJSON.
fn split_envelopes(body: &Bytes) -> Vec<&[u8]> {
    let trimmed = body.trim_ascii();
    if trimmed.starts_with(b"[") {
        if let Ok(items) = serde_json::from_slice::<Vec<&serde_json::value::RawValue>>(trimmed) {
            // Borrowed raw values are slices of the body itself: no copy, no re-serialization.
            return items
                .into_iter()
                .map(|item| item.get().as_bytes())
                .collect();
        }
    }
    lines(trimmed).collect()
}

/// The non-blank lines of a body, trimmed: one JSON object, or NDJSON.
fn lines(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == b'\n')
        .map(<[u8]>::trim_ascii)
        .filter(|line| !line.is_empty())
}

/// How many envelopes a body holds, as [`split_envelopes`] would split a well-formed one, without
/// parsing them (see [`crate::count`]).
fn count_envelopes(body: &[u8]) -> usize {
    crate::count::count_array_elements(body).unwrap_or_else(|| lines(body).count())
}

fn payload_id(envelope: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(envelope).ok()?;
    value.pointer("/payload/id")?.as_str().map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_gives_what_splitting_gives() {
        // Arrays are counted by `count::count_array_elements` (tested there); the rest by lines.
        let bodies: [&[u8]; 5] = [
            br#" [ {"a":"\\"} , {"b":"}"} ] "#,
            b"{\"a\":1}\n{\"b\":2}\n\n",
            br#"{"single":"[1,2]"}"#,
            // Not a whole array: counted as lines, as splitting does.
            br#"[{"a":1},{"b":"#,
            b"",
        ];
        for body in bodies {
            let body = Bytes::from_static(body);
            assert_eq!(
                count_envelopes(&body),
                split_envelopes(&body).len(),
                "{}",
                String::from_utf8_lossy(&body)
            );
        }
    }

    #[test]
    fn envelope_dates_are_read_from_the_fixed_position() {
        let envelope = br#"{"date":"2026-04-30T09:23:41.123Z","app":"gateway"}"#;
        assert_eq!(envelope_date_ms(envelope), Some(1_777_541_021_123));
        assert_eq!(envelope_date_ms(b"{}"), None);
    }

    #[test]
    fn bodies_split_into_envelopes() {
        let one = Bytes::from_static(br#"{"a":1}"#);
        assert_eq!(split_envelopes(&one), [br#"{"a":1}"#.as_slice()]);
        let array = Bytes::from_static(br#" [{"a":1}, {"b":[2]}] "#);
        assert_eq!(
            split_envelopes(&array),
            [br#"{"a":1}"#.as_slice(), br#"{"b":[2]}"#.as_slice()]
        );
        let ndjson = Bytes::from_static(b"{\"a\":1}\n{\"b\":2}\n");
        assert_eq!(
            split_envelopes(&ndjson),
            [br#"{"a":1}"#.as_slice(), br#"{"b":2}"#.as_slice()]
        );
    }

    async fn post(receiver: &Receiver, id: &str, timeout: Duration) -> Result<u16, String> {
        let client = reqwest::Client::builder().timeout(timeout).build().unwrap();
        let response = client
            .post(receiver.url())
            .header(EVENT_ID_HEADER, id)
            .body("{}")
            .send()
            .await
            .map_err(|err| format!("send: {err}"))?;
        let status = response.status().as_u16();
        response
            .bytes()
            .await
            .map_err(|err| format!("body of {status}: {err}"))?;
        Ok(status)
    }

    #[tokio::test]
    async fn a_delay_holds_the_answer_back_then_records() {
        let receiver = Receiver::start(ReceiverOptions::default()).await.unwrap();
        receiver.set_delay(Some(Duration::from_millis(300)));
        let started = std::time::Instant::now();
        assert_eq!(
            post(&receiver, "slow", Duration::from_secs(5)).await,
            Ok(200)
        );
        assert!(started.elapsed() >= Duration::from_millis(300));
        // A client that gives up earlier gets a timeout; the receiver still stores the event
        // once its delay is over, as a slow SIEM would.
        let err = post(&receiver, "late", Duration::from_millis(50))
            .await
            .unwrap_err();
        assert!(err.contains("send"), "{err}");
        receiver.set_delay(None);
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            receiver.ids(),
            HashSet::from(["slow".to_owned(), "late".to_owned()])
        );
    }

    #[tokio::test]
    async fn dropped_connections_break_mid_response_and_store_nothing() {
        let receiver = Receiver::start(ReceiverOptions::default()).await.unwrap();
        receiver.drop_connections(true);
        for _ in 0..3 {
            let err = post(&receiver, "lost", Duration::from_secs(5))
                .await
                .unwrap_err();
            assert!(err.starts_with("body of 500"), "{err}");
        }
        assert_eq!(receiver.snapshot().distinct, 0);
        assert_eq!(receiver.snapshot().requests, 3);
        receiver.drop_connections(false);
        assert_eq!(
            post(&receiver, "kept", Duration::from_secs(5)).await,
            Ok(200)
        );
        assert_eq!(receiver.ids(), HashSet::from(["kept".to_owned()]));
    }
}
