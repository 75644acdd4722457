#!/usr/bin/env bash
# README command 1: the whole pipeline on this machine, in one command.
#
#   scripts/demo.sh          build, start broker + router + sink + HTTPS receiver, publish demo
#                            events of both streams, and show the redacted envelopes as they arrive.
#                            Ctrl-C stops everything.
#   scripts/demo.sh --check  the same without the live view: wait until every event arrived, check
#                            that no secret got through, stop everything, exit 0 on success (CI).
#   scripts/demo.sh stop     stop whatever a previous run left behind.
#
# Environment: DEMO_EVENTS (default 200) events to publish, DEMO_RATE (default 40) per second.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

STATE=.local/demo
PORT=19092
CONFIG=config/demo.toml
# Where cargo put it: a CARGO_TARGET_DIR of the caller is honoured.
BIN=${CARGO_TARGET_DIR:-target}/debug/auditstream
EVENTS=${DEMO_EVENTS:-200}
RATE=${DEMO_RATE:-40}
# The demo destination's token (config/demo.toml reads it from here); it must never be logged.
export DEMO_SIEM_TOKEN=demo-token-never-logged

stop_all() {
  # SIGTERM first: router and sink drain and commit, which needs the broker, so wait for them
  # (SIGKILL after 15 s) before stopping it.
  for name in producer lag-exporter sink router receiver; do
    [[ -f "$STATE/$name.pid" ]] || continue
    local pid
    pid=$(cat "$STATE/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 150); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$STATE/$name.pid"
  done
  scripts/broker.sh stop "$STATE/broker" >/dev/null
}

start() {
  local name=$1
  shift
  "$BIN" "$@" >"$STATE/$name.out" 2>"$STATE/$name.log" &
  echo $! >"$STATE/$name.pid"
}

if [[ "${1:-}" == "stop" ]]; then
  stop_all
  echo "demo stopped"
  exit 0
fi
mode=${1:-live}

echo "== building auditstream (the first build takes a few minutes)"
cargo build -p auditstream-cli
mkdir -p "$STATE"
stop_all
rm -rf "$STATE/broker" "$STATE"/*.out "$STATE"/*.log "$STATE"/*.ids
trap 'stop_all; echo; echo "demo stopped"' EXIT

echo "== starting the broker on 127.0.0.1:$PORT"
scripts/broker.sh start "$PORT" "$STATE/broker"
"$BIN" --config "$CONFIG" topics create

echo "== starting the HTTPS receiver, the router, the sink and the lag exporter"
start receiver receiver --listen 127.0.0.1:8443 --tls-dir "$STATE/tls" --ids-out "$STATE/received.ids"
for _ in $(seq 1 100); do [[ -f "$STATE/tls/ca.pem" ]] && break; sleep 0.1; done
start router --config "$CONFIG" router
start sink --config "$CONFIG" sink --destination demo
start lag-exporter --config "$CONFIG" lag-exporter --interval 2s

echo "== publishing $EVENTS synthetic events at $RATE/s (9 gateway : 1 lifecycle; tokens, OAuth and streaming calls included)"
start producer --config "$CONFIG" produce --generate "$EVENTS" --rate "$RATE" --ids-out "$STATE/published.ids"

received() { sort -u "$STATE/received.ids" 2>/dev/null | wc -l | tr -d ' '; }
# The metrics endpoints (default ports: router 9460, sink 9461, lag exporter 9462).
metrics() { python3 -c 'import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1]).read().decode())' "http://127.0.0.1:$1/metrics"; }

if [[ "$mode" == "--check" ]]; then
  for _ in $(seq 1 600); do
    [[ "$(received)" -ge "$EVENTS" ]] && break
    sleep 0.2
  done
  wait "$(cat "$STATE/producer.pid")"
  missing=$(sort -u "$STATE/published.ids" | comm -23 - <(sort -u "$STATE/received.ids") | wc -l | tr -d ' ')
  if [[ "$missing" -ne 0 ]]; then
    echo "FAIL: $missing published events never reached the receiver" >&2; exit 1
  fi
  if grep -q "s3cr3t" "$STATE/receiver.out"; then
    echo "FAIL: a secret reached the receiver" >&2; exit 1
  fi
  if grep -q "$DEMO_SIEM_TOKEN" "$STATE"/*.log; then
    echo "FAIL: the destination token appears in a log" >&2; exit 1
  fi
  # Offsets are committed behind deliveries: the demo destination's lag must reach 0.
  lag=unknown
  for _ in $(seq 1 100); do
    exported=$(metrics 9462)
    if [[ "$exported" == *'auditstream_group_lag_events{destination="demo"'* ]]; then
      lag=$(awk '/^auditstream_group_lag_events\{destination="demo"/ { sum += $2 } END { print sum }' <<<"$exported")
      [[ "$lag" == 0 ]] && break
    fi
    sleep 0.3
  done
  if [[ "$lag" != 0 ]]; then
    echo "FAIL: the lag exporter still reports $lag undelivered events for demo" >&2; exit 1
  fi
  delivered=$(metrics 9461 | awk '/^auditstream_sink_delivered_events_total\{destination="demo"\}/ { print $2 }')
  if [[ "${delivered:-0}" -lt "$EVENTS" ]]; then
    echo "FAIL: the sink's metrics count ${delivered:-0} deliveries, expected at least $EVENTS" >&2; exit 1
  fi
  all_metrics=$(metrics 9460; metrics 9461; metrics 9462)
  if [[ "$all_metrics" == *"$DEMO_SIEM_TOKEN"* ]]; then
    echo "FAIL: the destination token appears in the metrics" >&2; exit 1
  fi
  "$BIN" --config "$CONFIG" status --window 1s
  echo "demo check passed: all $EVENTS events delivered ($(received) deliveries), no secret delivered, logged or in metrics, lag 0"
  exit 0
fi

echo
echo "== metrics: http://127.0.0.1:9460/metrics (router), :9461 (sink), :9462 (lag exporter)"
echo "   in another terminal: $BIN --config $CONFIG status"
echo "== redacted envelopes as the receiver gets them (Ctrl-C stops everything; logs in $STATE/)"
echo
tail -n +1 -f "$STATE/receiver.out"
