# syntax=docker/dockerfile:1
#
# The `auditstream` image: one binary for every role (router, sink, lag-exporter, topics, produce,
# replay, dlq, receiver). Build: `docker build -t auditstream .` (or `docker compose build`).
#
# Stage 1 compiles the release binary. rdkafka builds its bundled librdkafka from source (the
# crate's default; Debian's librdkafka is too old for some brokers), which needs a C toolchain,
# make and zlib headers. No OpenSSL or SASL development files: TLS towards destinations is rustls,
# and the Kafka clients use PLAINTEXT unless `kafka.properties` says otherwise.
FROM rust:1-bookworm AS builder
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential cmake pkg-config zlib1g-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the crates.io downloads and the compiled dependencies between builds (BuildKit,
# the default builder of current Docker), so that editing a source file rebuilds only the workspace.
# The target directory is a cache, hence the copy out of it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p auditstream-cli \
 && install -m 0755 target/release/auditstream /usr/local/bin/auditstream

# Stage 2: a slim runtime. ca-certificates gives the public CAs that destinations' certificates
# chain to (a private CA is configured per destination with `tls.ca_file`). The demo receiver
# generates its own CA and certificate (`auditstream receiver --tls-dir DIR --tls-name NAME`) into
# /var/lib/auditstream/tls, which belongs to the runtime user so that a named volume mounted there
# is writable.
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 auditstream \
 && useradd --system --uid 10001 --gid auditstream --home-dir /var/lib/auditstream --shell /usr/sbin/nologin auditstream \
 && mkdir -p /etc/auditstream /var/lib/auditstream/tls \
 && chown -R auditstream:auditstream /var/lib/auditstream
COPY --from=builder /usr/local/bin/auditstream /usr/local/bin/auditstream
USER auditstream:auditstream
WORKDIR /var/lib/auditstream
# Metrics, /healthz and /readyz (pass --metrics-listen 0.0.0.0:9460 in a container: the default
# listens on 127.0.0.1 only). 8443 is the demo receiver.
EXPOSE 9460 8443
ENTRYPOINT ["auditstream"]
CMD ["--help"]
