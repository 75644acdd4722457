use std::collections::{HashMap, HashSet};
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::header::AUTHORIZATION;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::any;
use axum::Router;
use axum_server::tls_rustls::RustlsConfig;
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
    /// Answer 401 to requests whose `Authorization` header is not exactly this, as a SIEM
    /// checking its token would.
    pub expect_authorization: Option<String>,
}

#[derive(Default)]
struct Recorded {
    counts: HashMap<String, u32>,
    bodies: Vec<Bytes>,
    without_id: u64,
}

struct Shared {
    options: ReceiverOptions,
    ids_out: Option<Mutex<std::fs::File>>,
    recorded: Mutex<Recorded>,
    requests: AtomicU64,
    /// Status to answer instead of 200; 0 means succeed.
    fail_with: AtomicU16,
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
            fail_with: AtomicU16::new(0),
        });
        let app = Router::new()
            .route("/", any(receive))
            .route("/{*path}", any(receive))
            .with_state(Arc::clone(&shared));
        let handle = Handle::new();
        let server_handle = handle.clone();
        match tls {
            Some(tls) => {
                let config =
                    RustlsConfig::from_pem(tls.cert_pem.into_bytes(), tls.key_pem.into_bytes())
                        .await?;
                let server = axum_server::from_tcp_rustls(listener, config).handle(server_handle);
                tokio::spawn(async move {
                    if let Err(err) = server.serve(app.into_make_service()).await {
                        tracing::error!(error = %err, "receiver stopped");
                    }
                });
            }
            None => {
                let server = axum_server::from_tcp(listener).handle(server_handle);
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

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> StatusCode {
    shared.requests.fetch_add(1, Ordering::SeqCst);
    if let Some(expected) = &shared.options.expect_authorization {
        if headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
            return StatusCode::UNAUTHORIZED;
        }
    }
    let fail_with = shared.fail_with.load(Ordering::SeqCst);
    if fail_with != 0 {
        return StatusCode::from_u16(fail_with).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
    }
    let id = headers
        .get(EVENT_ID_HEADER)
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned)
        .or_else(|| payload_id(&body));
    if shared.options.print {
        println!("{}", String::from_utf8_lossy(&body));
    }
    if let (Some(file), Some(id)) = (&shared.ids_out, &id) {
        let mut file = file.lock().unwrap_or_else(|poison| poison.into_inner());
        if let Err(err) = writeln!(file, "{id}") {
            tracing::error!(error = %err, "cannot record an event id");
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
    }
    let mut recorded = shared.recorded();
    match id {
        Some(id) => *recorded.counts.entry(id).or_default() += 1,
        None => recorded.without_id += 1,
    }
    if shared.options.keep_bodies {
        recorded.bodies.push(body);
    }
    StatusCode::OK
}

fn payload_id(body: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    value.pointer("/payload/id")?.as_str().map(str::to_owned)
}
