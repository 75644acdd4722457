#!/usr/bin/env bash
# Benchmarks the pipeline on this machine: one command, a table on stdout, JSON in bench/results.json.
#
#   bench/run.sh                          1,000,000 events for the router and batched sinks (a few minutes)
#   bench/run.sh --events 200000 --single-events 50000 --latency-seconds 5    a quicker run
#
# It builds release binaries, installs the broker if needed, and runs target/release/auditstream-bench,
# which starts its own in-memory broker and receivers. docs/PERFORMANCE.md explains every figure.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
scripts/broker.sh install >/dev/null
cargo build --release -p auditstream-cli -p auditstream-bench
exec "${CARGO_TARGET_DIR:-target}/release/auditstream-bench" "$@"
