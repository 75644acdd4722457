#!/usr/bin/env bash
# Local Kafka-compatible broker (nisshi) for the demo and the tests.
#
#   scripts/broker.sh install            install nisshi with cargo unless it is already on PATH
#   scripts/broker.sh start PORT DIR     start a durable broker on 127.0.0.1:PORT with its data in DIR
#   scripts/broker.sh stop DIR           stop the broker started with that DIR
#
# The install compiles nisshi from crates.io: about 11 minutes on 2 cores, once per machine.
set -euo pipefail

NISSHI_VERSION=0.8.1

install() {
  if command -v nisshi >/dev/null 2>&1; then
    echo "nisshi already installed: $(command -v nisshi)"
    return
  fi
  echo "installing nisshi $NISSHI_VERSION (about 11 minutes on 2 cores, once per machine)..."
  # --ignore-rust-version: nisshi declares an MSRV check that rejects newer toolchains it builds fine with.
  cargo install "nisshi@$NISSHI_VERSION" --locked --ignore-rust-version \
    --no-default-features --features libsql,dynostore
}

wait_for_port() {
  local port=$1
  for _ in $(seq 1 300); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
      return 0
    fi
    sleep 0.1
  done
  return 1
}

start() {
  local port=${1:?usage: broker.sh start PORT DIR} dir=${2:?usage: broker.sh start PORT DIR}
  install
  mkdir -p "$dir"
  if [[ -f "$dir/broker.pid" ]] && kill -0 "$(cat "$dir/broker.pid")" 2>/dev/null; then
    echo "broker already running (pid $(cat "$dir/broker.pid")) on 127.0.0.1:$port"
    return
  fi
  local url="tcp://127.0.0.1:$port"
  nohup nisshi broker --listener-url "$url" --advertised-listener-url "$url" \
    --storage-engine "sqlite:///$(cd "$dir" && pwd)/nisshi.db" \
    --group-initial-rebalance-delay 0s >"$dir/broker.log" 2>&1 &
  echo $! >"$dir/broker.pid"
  if ! wait_for_port "$port"; then
    echo "broker did not start on 127.0.0.1:$port; its log:" >&2
    tail -n 20 "$dir/broker.log" >&2
    exit 1
  fi
  echo "broker listening on 127.0.0.1:$port (pid $(cat "$dir/broker.pid"), data in $dir)"
}

stop() {
  local dir=${1:?usage: broker.sh stop DIR}
  if [[ -f "$dir/broker.pid" ]]; then
    kill "$(cat "$dir/broker.pid")" 2>/dev/null || true
    rm -f "$dir/broker.pid"
    echo "broker stopped"
  fi
}

case "${1:-}" in
  install) install ;;
  start) shift; start "$@" ;;
  stop) shift; stop "$@" ;;
  *) sed -n '2,8p' "$0" >&2; exit 2 ;;
esac
