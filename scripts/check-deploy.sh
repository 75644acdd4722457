#!/usr/bin/env bash
# Validates the deployment files without a Docker engine: docker-compose.yml, the Prometheus
# configuration and alert rules (with their unit tests), the Grafana provisioning and dashboard,
# config/compose.toml and the demo receiver's TLS set-up. See deploy/README.md.
#
#   scripts/check-deploy.sh
#
# Needs promtool (Debian package `prometheus`), docker-compose (Debian package `docker-compose`)
# and python3. Missing tools are installed with apt-get when running as root; otherwise the
# script fails, unless CHECK_DEPLOY_ALLOW_MISSING=1, which skips the checks that need them.
# Exits 0 when every check passed, 1 when one failed, 2 when a tool is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

ALLOW_MISSING=${CHECK_DEPLOY_ALLOW_MISSING:-0}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
: >"$work/empty.env"
failures=()
skipped=()

step() { echo "== $*"; }
fail() {
  echo "FAIL: $*" >&2
  failures+=("$1")
}
skip() {
  echo "SKIP: $2"
  skipped+=("$1")
}
# run NAME COMMAND...: runs a check, records a failure with its output.
run() {
  local name=$1
  shift
  local output
  if output=$("$@" 2>&1); then
    [[ -n "$output" ]] && sed 's/^/   /' <<<"$output"
    echo "   ok: $name"
  else
    sed 's/^/   /' <<<"$output" >&2
    fail "$name"
  fi
}

# --- tools ---------------------------------------------------------------------------------------

install_packages() {
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing $* with apt-get..."
    # The package's post-installation step cannot start a Prometheus server in a container
    # without an init system; that does not matter, only promtool is used.
    DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
      echo "apt-get install $* failed" >&2
  fi
}

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v python3 >/dev/null 2>&1 || need+=(python3)
if [[ ${#need[@]} -gt 0 ]]; then
  install_packages "${need[@]}"
fi

# PyYAML for the cross-file checks: from PyPI when the python3 on PATH lacks it.
if command -v python3 >/dev/null 2>&1 && ! python3 -c 'import yaml' 2>/dev/null; then
  python3 -m pip install --quiet pyyaml >/dev/null 2>&1 || echo "pip install pyyaml failed" >&2
fi

have() { command -v "$1" >/dev/null 2>&1; }
missing_tool() {
  local tool=$1 package=$2
  if [[ "$ALLOW_MISSING" == 1 ]]; then
    skip "$tool" "$tool not found (Debian package $package); its checks are skipped (CHECK_DEPLOY_ALLOW_MISSING=1)"
  else
    echo "ERROR: $tool not found. Install the Debian package $package (apt-get install -y $package)," >&2
    echo "       run this script as root to have it installed, or set CHECK_DEPLOY_ALLOW_MISSING=1 to skip." >&2
    exit 2
  fi
}
have promtool || missing_tool promtool prometheus
have docker-compose || missing_tool docker-compose docker-compose
have python3 || missing_tool python3 python3
HAVE_YAML=0
if have python3 && python3 -c 'import yaml' 2>/dev/null; then
  HAVE_YAML=1
fi

# --- Prometheus ----------------------------------------------------------------------------------

if have promtool; then
  step "promtool $(promtool --version 2>&1 | head -n 1 | awk '{print $3}'): Prometheus configuration (rule files resolve relative to it)"
  run "promtool check config" promtool check config deploy/prometheus/prometheus.yml
  step "promtool: alert rules"
  run "promtool check rules" promtool check rules deploy/prometheus/alerts.yml
  step "promtool: alert rule unit tests"
  run "promtool test rules" promtool test rules deploy/prometheus/alerts_test.yml
fi

# --- docker-compose ------------------------------------------------------------------------------

if have docker-compose; then
  step "docker-compose $(docker-compose version --short 2>/dev/null || echo '?'): docker-compose.yml"
  # An empty env file: a developer's .env must not make the check pass or fail. The defaults in
  # the file cover every variable.
  run "docker-compose config" docker-compose --env-file "$work/empty.env" -f docker-compose.yml config -q
fi
if have docker && docker compose version >/dev/null 2>&1; then
  step "docker compose (v2): docker-compose.yml"
  run "docker compose config" docker compose --env-file "$work/empty.env" -f docker-compose.yml config -q
fi

# --- structure, metric names, consistency (python) -----------------------------------------------

if have python3; then
  step "python3: dashboard JSON, provisioning YAML, metric names, cross-file consistency"
  if [[ "$HAVE_YAML" != 1 ]]; then
    echo "   note: PyYAML is not installed: YAML files are checked by docker-compose and promtool only," \
      "and the consistency checks that read YAML are skipped"
  fi
  promql_rules=$work/dashboard-queries.rules.yml
  run "structure and metric names" env HAVE_YAML="$HAVE_YAML" PROMQL_RULES_OUT="$promql_rules" python3 - <<'PY'
import json, os, re, sys, tomllib

HAVE_YAML = os.environ["HAVE_YAML"] == "1"
errors = []
def error(msg):
    errors.append(msg)

# Which metric names exist is checked against the code's own registries by the Rust test
# cli/src/deploy_queries.rs (run by scripts/test.sh); here only how histograms are queried.
HISTOGRAMS = {"auditstream_sink_request_duration_seconds", "auditstream_sink_delivery_latency_seconds"}
NAME = re.compile(r"\b((?:auditstream|process)_[a-zA-Z0-9_]+)")

def check_names(where, expr):
    if re.search(r"\bup\b", expr) is None and not NAME.search(expr):
        error(f"{where}: queries no auditstream metric: {expr}")
    for h in HISTOGRAMS:
        if re.search(rf"\b{h}\b(?!_)", expr):
            error(f"{where}: histogram {h} used without _bucket/_sum/_count")

# Dashboard.
DASHBOARD = "deploy/grafana/dashboards/auditstream.json"
try:
    with open(DASHBOARD) as f:
        dashboard = json.load(f)
except (OSError, ValueError) as e:
    print(f"{DASHBOARD}: not valid JSON: {e}")
    sys.exit(1)
for key in ("uid", "title", "schemaVersion", "panels"):
    if key not in dashboard:
        error(f"{DASHBOARD}: no {key}")
variables = {v.get("name"): v for v in dashboard.get("templating", {}).get("list", [])}
dest = variables.get("destination")
if dest is None:
    error(f"{DASHBOARD}: no templating variable `destination`")
else:
    query = dest.get("query")
    query = query.get("query") if isinstance(query, dict) else query
    if query != "label_values(auditstream_group_lag_events, destination)":
        error(f"{DASHBOARD}: variable destination queries {query!r}")

datasource_uids = set()
exprs = []
def walk(panels, path):
    ids = []
    for panel in panels:
        title = panel.get("title", "?")
        ids.append(panel.get("id"))
        if panel.get("type") == "row":
            walk(panel.get("panels", []), path)
            continue
        ds = panel.get("datasource") or {}
        datasource_uids.add(ds.get("uid"))
        targets = panel.get("targets") or []
        if not targets:
            error(f"{DASHBOARD}: panel {title!r} has no query")
        for target in targets:
            datasource_uids.add((target.get("datasource") or ds).get("uid"))
            expr = target.get("expr", "")
            if not expr:
                error(f"{DASHBOARD}: panel {title!r} target {target.get('refId')} has no expr")
                continue
            check_names(f"{DASHBOARD}: panel {title!r}", expr)
            exprs.append((title, expr))
    return ids
ids = walk(dashboard.get("panels", []), "")
if len(ids) != len(set(ids)):
    error(f"{DASHBOARD}: duplicate panel ids")

# Every dashboard query as a recording rule, for `promtool check rules` (PromQL syntax), with the
# Grafana variables replaced by what Grafana sends.
def substitute(expr):
    return (expr.replace("$__rate_interval", "1m").replace("$__interval", "1m")
                .replace("$destination", ".+"))
with open(os.environ["PROMQL_RULES_OUT"], "w") as out:
    out.write("groups:\n  - name: dashboard\n    rules:\n")
    for i, (title, expr) in enumerate(exprs):
        out.write(f"      - record: dashboard:query_{i}\n        expr: {json.dumps(substitute(expr))}\n")

# Alert rules: metric names.
if HAVE_YAML:
    import yaml
    def load(path):
        try:
            with open(path) as f:
                return yaml.safe_load(f)
        except (OSError, yaml.YAMLError) as e:
            error(f"{path}: {e}")
            return None

    rules = load("deploy/prometheus/alerts.yml") or {}
    alert_names = []
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            if "alert" in rule:
                alert_names.append(rule["alert"])
                check_names(f"alerts.yml: {rule['alert']}", rule["expr"])
                ann = rule.get("annotations", {})
                if not ann.get("summary") or not ann.get("description"):
                    error(f"alerts.yml: {rule['alert']} lacks a summary or description")
    # Every alert has a test where it fires and one where it does not.
    tests = load("deploy/prometheus/alerts_test.yml") or {}
    fires, quiet = set(), set()
    for test in tests.get("tests", []):
        for case in test.get("alert_rule_test", []) or []:
            (fires if case.get("exp_alerts") else quiet).add(case.get("alertname"))
    for name in sorted(set(alert_names)):
        if name not in fires:
            error(f"alerts_test.yml: no case where {name} fires")
        if name not in quiet:
            error(f"alerts_test.yml: no case where {name} stays silent")

    # Grafana provisioning: the datasource uid the dashboard uses exists, the dashboard folder is
    # the one docker-compose.yml mounts.
    ds_file = load("deploy/grafana/provisioning/datasources/prometheus.yml") or {}
    provisioned = {d.get("uid") for d in ds_file.get("datasources", [])}
    for uid in datasource_uids - provisioned:
        error(f"{DASHBOARD}: datasource uid {uid!r} is not provisioned (provisioned: {sorted(provisioned)})")
    dash_file = load("deploy/grafana/provisioning/dashboards/auditstream.yml") or {}
    paths = [p.get("options", {}).get("path") for p in dash_file.get("providers", [])]

    compose = load("docker-compose.yml") or {}
    services = compose.get("services", {})
    grafana_mounts = [v.split(":")[1] for v in services.get("grafana", {}).get("volumes", [])]
    for path in paths:
        if path not in grafana_mounts:
            error(f"dashboard provider path {path} is not mounted in the grafana service")
    home = services.get("grafana", {}).get("environment", {}).get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home and os.path.dirname(home) not in grafana_mounts:
        error(f"grafana home dashboard {home} is not in a mounted directory")

    # Compose against config/compose.toml and prometheus.yml: every sink service names a
    # configured destination and is scraped; every auditstream role serves metrics on 9460.
    with open("config/compose.toml", "rb") as f:
        config = tomllib.load(f)
    destinations = {d["name"] for d in config.get("destinations", [])}
    sink_services = {}
    for name, svc in services.items():
        command = svc.get("command") or []
        if "sink" in command:
            sink_services[name] = command[command.index("--destination") + 1]
        if any(role in command for role in ("router", "sink", "lag-exporter")):
            if "0.0.0.0:9460" not in command:
                error(f"docker-compose.yml: service {name} does not serve metrics on 0.0.0.0:9460")
    for service, destination in sink_services.items():
        if destination not in destinations:
            error(f"docker-compose.yml: service {service} runs destination {destination!r}, "
                  f"not in config/compose.toml ({sorted(destinations)})")
    for destination in destinations - set(sink_services.values()):
        error(f"config/compose.toml: destination {destination} has no sink service in docker-compose.yml")

    # The demo receiver's TLS: it generates its CA and a certificate for the name `receiver` into
    # a volume it mounts read-write; the sinks mount that volume read-only, trust its ca.pem, and
    # start only once the receiver's health check has seen the files.
    receiver = services.get("receiver", {})
    rcommand = receiver.get("command") or []
    def flag(command, name):
        return command[command.index(name) + 1] if name in command[:-1] else None
    tls_dir = flag(rcommand, "--tls-dir")
    tls_names = [rcommand[i + 1] for i, arg in enumerate(rcommand[:-1]) if arg == "--tls-name"]
    if tls_dir is None:
        error("docker-compose.yml: the receiver has no --tls-dir")
    if "receiver" not in tls_names:
        error(f"docker-compose.yml: the receiver's certificate does not name `receiver` (--tls-name: {tls_names})")
    def mounts(svc):
        found = {}
        for volume in svc.get("volumes", []):
            parts = volume.split(":")
            found[parts[1]] = (parts[0], "ro" in parts[2:])
        return found
    rmount = mounts(receiver).get(tls_dir)
    if rmount is None or rmount[1]:
        error(f"docker-compose.yml: the receiver does not mount {tls_dir} read-write")
    rtest = " ".join((receiver.get("healthcheck") or {}).get("test") or [])
    if f"{tls_dir}/ca.pem" not in rtest:
        error(f"docker-compose.yml: the receiver's health check does not wait for {tls_dir}/ca.pem")
    for service in sink_services:
        svc = services[service]
        smount = mounts(svc).get(tls_dir)
        if smount is None or rmount is None or smount[0] != rmount[0] or not smount[1]:
            error(f"docker-compose.yml: {service} does not mount the receiver's {tls_dir} read-only")
        condition = ((svc.get("depends_on") or {}).get("receiver") or {}).get("condition")
        if condition != "service_healthy":
            error(f"docker-compose.yml: {service} does not wait for the receiver to be healthy ({condition})")
    for d in config.get("destinations", []):
        ca_file = (d.get("tls") or {}).get("ca_file")
        if d.get("url", "").startswith("https://receiver:") and ca_file != f"{tls_dir}/ca.pem":
            error(f"config/compose.toml: {d['name']} does not trust {tls_dir}/ca.pem (ca_file {ca_file!r})")
    prom = load("deploy/prometheus/prometheus.yml") or {}
    scraped = set()
    for job in prom.get("scrape_configs", []):
        for sd in job.get("dns_sd_configs", []):
            if sd.get("port") != 9460:
                error(f"prometheus.yml: job {job['job_name']} scrapes port {sd.get('port')}, not 9460")
            scraped.update(sd.get("names", []))
    jobs = {job.get("job_name") for job in prom.get("scrape_configs", [])}
    for group in rules.get("groups", []):
        for rule in group.get("rules", []):
            for job in re.findall(r'job="([^"]+)"', rule.get("expr", "")):
                if job not in jobs:
                    error(f"alerts.yml: {rule.get('alert')} selects job {job!r}, not a job of prometheus.yml")
    for name in ["router", "lag-exporter", *sink_services]:
        if name not in services:
            error(f"prometheus.yml scrapes {name}, which is not a compose service")
        if name not in scraped:
            error(f"prometheus.yml does not scrape the compose service {name}")
    print(f"{len(exprs)} dashboard queries, {len(set(alert_names))} alerts, "
          f"{len(sink_services)} sink services for {len(destinations)} destinations")
else:
    with open("config/compose.toml", "rb") as f:
        tomllib.load(f)
    print(f"{len(exprs)} dashboard queries")

if errors:
    print("\n".join(errors))
    sys.exit(1)
PY
  if have promtool; then
    run "dashboard PromQL syntax (promtool check rules)" promtool check rules "$promql_rules"
  fi
fi

# --- config/compose.toml with the real configuration loader --------------------------------------

step "config/compose.toml"
bin=""
# The most recently built one.
target=${CARGO_TARGET_DIR:-target}
for candidate in $(ls -t "$target/release/auditstream" "$target/debug/auditstream" 2>/dev/null); do
  if [[ -x "$candidate" ]]; then
    bin=$candidate
    break
  fi
done
if [[ -n "$bin" ]]; then
  # `topics plan` loads and validates the whole configuration, every destination included,
  # without contacting the broker. The secrets are resolved only by a sink, so none is needed.
  run "auditstream topics plan --config config/compose.toml ($bin)" \
    env AUDITSTREAM_KAFKA__BROKERS=kafka:9092 "$bin" --config config/compose.toml topics plan
else
  skip "auditstream config" "no built auditstream binary ($target/*/auditstream): config/compose.toml was only parsed as TOML"
fi

# --- demo receiver certificate ------------------------------------------------------------------

# The receiver generates its certificate itself (`--tls-name receiver`, as in docker-compose.yml);
# the sinks connect to https://receiver:8443 and must accept it for that name.
step "demo receiver certificate (auditstream receiver --tls-name receiver)"
if [[ -z "$bin" ]]; then
  skip "receiver certificate" "no built auditstream binary: the receiver's certificate was not generated"
elif ! "$bin" receiver --help 2>/dev/null | grep -q -- '--tls-name'; then
  skip "receiver certificate" "$bin has no receiver --tls-name (built before it was added): rebuild to check the certificate"
elif ! have openssl; then
  skip "receiver certificate" "openssl not found: the receiver's certificate was not verified"
else
  receiver_cert_ok() {
    local dir=$work/receiver-tls pid i
    "$bin" receiver --quiet --listen 127.0.0.1:0 --tls-dir "$dir" --tls-name receiver >"$work/receiver.log" 2>&1 &
    pid=$!
    # The files exist before it listens; key.pem is written last.
    for i in $(seq 1 100); do
      [[ -f "$dir/key.pem" ]] && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    [[ -f "$dir/key.pem" ]] || { cat "$work/receiver.log"; return 1; }
    openssl verify -CAfile "$dir/ca.pem" -verify_hostname receiver -purpose sslserver "$dir/cert.pem"
  }
  run "receiver certificate for host receiver, verified against its ca.pem ($bin)" receiver_cert_ok
fi

# --- Dockerfile ----------------------------------------------------------------------------------

step "Dockerfile and .dockerignore"
if have hadolint; then
  run "hadolint" hadolint Dockerfile
else
  echo "   hadolint is not installed: the Dockerfile is not linted; checking its essentials only"
fi
dockerfile_ok() {
  grep -q '^FROM rust:1-bookworm AS builder' Dockerfile &&
    grep -q 'cargo build --release --locked -p auditstream-cli' Dockerfile &&
    grep -q '^FROM debian:bookworm-slim' Dockerfile &&
    grep -q '^USER ' Dockerfile &&
    grep -q '^ENTRYPOINT \["auditstream"\]' Dockerfile &&
    grep -q '^name = "auditstream-cli"' cli/Cargo.toml &&
    grep -q '^name = "auditstream"' cli/Cargo.toml &&
    for entry in target fuzz/target .local .git; do grep -qx "$entry" .dockerignore || return 1; done
}
run "Dockerfile builds auditstream-cli's auditstream binary; .dockerignore excludes target, fuzz/target, .local, .git" dockerfile_ok
echo "   not checked here: building the image and starting the stack (no Docker engine)"

# --- summary -------------------------------------------------------------------------------------

echo
if [[ ${#skipped[@]} -gt 0 ]]; then
  echo "skipped: ${skipped[*]}"
fi
if [[ ${#failures[@]} -gt 0 ]]; then
  echo "check-deploy FAILED: ${#failures[@]} check(s): " >&2
  printf '  - %s\n' "${failures[@]}" >&2
  exit 1
fi
echo "check-deploy passed"
