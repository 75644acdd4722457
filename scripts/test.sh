#!/usr/bin/env bash
# Runs every check and every test: formatting, clippy, unit tests, doc tests and the end-to-end
# tests against a real broker (installed first if needed). This is README command 2 and what CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

export PATH="$HOME/.cargo/bin:$PATH"
scripts/broker.sh install

echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "== cargo build (the end-to-end tests run the auditstream binary)"
cargo build --workspace --bins
echo "== deploy files (promtool, docker-compose config, dashboard structure)"
# Also installs Debian's prometheus package when missing: the end-to-end tests start a real one.
scripts/check-deploy.sh
echo "== cargo test"
cargo test --workspace
