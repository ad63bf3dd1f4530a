#!/usr/bin/env bash
# Validates every file in deploy/ with offline tools (CI stage "deploy files"):
#   promtool (Debian's `prometheus` package, installed by deploy/install.sh via compat/install.sh):
#     check config, check rules, test rules (alert unit tests), check metrics (a live scrape),
#     and every Grafana dashboard query parsed as PromQL (as a recording rule)
#   python3 + PyYAML: compose, Kubernetes manifests, Grafana provisioning and dashboard JSON
#     parse, and hold together (ports, probes, selectors, mounted files); every dlog_* metric
#     a dashboard or rule uses is one dlog defines (src/metrics/mod.rs); every property in the
#     shipped server.properties is one dlog knows (src/config.rs) or one issue 5 plans
#   systemd-analyze verify on the unit, when systemd-analyze exists
#   the Dockerfile: stages, COPY sources, exposed ports (no Docker needed)
#   a live run: target/release/dlog (when built) with deploy/server.properties on free ports;
#     /health, /ready and /metrics answer and promtool lints the exposition
# Usage: deploy/check.sh            (exit 0 when everything passes)
set -uo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
deploy="$root/deploy"
failures=0
passed=0
check() { # check NAME COMMAND...
  local name="$1"; shift
  local output
  if output="$("$@" 2>&1)"; then
    passed=$((passed + 1)); echo "ok    $name"
  else
    failures=$((failures + 1)); echo "FAIL  $name"; echo "$output" | sed 's/^/      /' | tail -n 30
  fi
}
skip() { echo "skip  $1: $2"; }

# ---------------------------------------------------------------- Prometheus
if command -v promtool >/dev/null; then
  check "promtool check config prometheus/prometheus.yml" promtool check config "$deploy/prometheus/prometheus.yml"
  check "promtool check rules prometheus/alerts.yml" promtool check rules "$deploy/prometheus/alerts.yml"
  check "promtool test rules prometheus/alerts_test.yml" bash -c "cd '$deploy/prometheus' && promtool test rules alerts_test.yml"
else
  failures=$((failures + 1)); echo "FAIL  promtool not found (compat/install.sh installs Debian's prometheus package)"
fi

# ---------------------------------------------------------------- YAML / JSON structure
check "compose, Kubernetes, Grafana, dashboards, properties (python)" python3 - "$root" <<'PY'
import json, pathlib, re, sys
import yaml

root = pathlib.Path(sys.argv[1]); deploy = root / "deploy"
problems = []
def problem(message): problems.append(message)

# Every metric name dlog defines: the string constants in src/metrics/mod.rs.
metrics_source = (root / "src/metrics/mod.rs").read_text()
defined = set(re.findall(r'"(dlog_[a-z0-9_]+)"', metrics_source))
if len(defined) < 20: problem(f"only {len(defined)} metric names found in src/metrics/mod.rs")
def check_metric_names(where, text):
    for name in sorted(set(re.findall(r"\bdlog_[a-z0-9_]+", text))):
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if name not in defined and base not in defined:
            problem(f"{where}: metric {name} is not defined in src/metrics/mod.rs")

# Every property dlog knows, plus the cluster ones issue 5 will add.
config_source = (root / "src/config.rs").read_text()
known = set(re.findall(r'(?:property|at_least)\(\s*"([a-z0-9._]+)"', config_source))
planned = {"controller.quorum.voters", "controller.listener.names", "broker.rack"}
def check_properties(where, text):
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line[0] in "#!": continue
        key = re.split(r"[=:]", line, 1)[0].strip()
        if key not in known and key not in planned:
            problem(f"{where}:{number}: unknown property {key}")

# YAML files parse.
documents = {}
for path in sorted(deploy.rglob("*.y*ml")):
    try:
        documents[path.relative_to(deploy).as_posix()] = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    except yaml.YAMLError as error:
        problem(f"{path}: {error}")

# server.properties shipped for containers and systemd.
check_properties("deploy/server.properties", (deploy / "server.properties").read_text())

# Compose: three dlog nodes with distinct ids, ready-based health checks, mounted files exist.
compose = documents["compose.yaml"][0]
services = compose["services"]
nodes = {name: s for name, s in services.items() if name.startswith("dlog-")}
if len(nodes) != 3: problem(f"compose: {len(nodes)} dlog nodes, want 3")
ids = set()
for name, service in nodes.items():
    command = " ".join(service.get("command", []))
    found = re.search(r"node\.id=(\d+)", command)
    if not found: problem(f"compose {name}: no node.id"); continue
    ids.add(found.group(1))
    if "/ready" not in " ".join(service.get("healthcheck", {}).get("test", [])):
        problem(f"compose {name}: health check does not use /ready")
    for pair in re.findall(r"--set ([^ ]+)", command):
        check_properties(f"compose {name}", pair)
    if service.get("build", {}).get("dockerfile") != "deploy/Dockerfile":
        problem(f"compose {name}: not built from deploy/Dockerfile")
if len(ids) != len(nodes): problem(f"compose: node ids not distinct: {ids}")
for name in ("prometheus", "grafana"):
    if name not in services: problem(f"compose: no {name} service"); continue
    for volume in services[name].get("volumes", []):
        source = volume.split(":")[0]
        if source.startswith("./") and not (deploy / source).exists():
            problem(f"compose {name}: mounts missing {source}")
targets = documents["prometheus/prometheus.yml"][0]["scrape_configs"][0]["static_configs"][0]["targets"]
for name in nodes:
    if f"{name}:9644" not in targets: problem(f"prometheus.yml does not scrape {name}:9644")

# Kubernetes: the objects exist and agree with each other.
objects = {}
for path, docs in documents.items():
    if path.startswith("kubernetes/") and not path.endswith("kustomization.yaml"):
        for doc in docs:
            for field in ("apiVersion", "kind", "metadata"):
                if field not in doc: problem(f"{path}: object without {field}")
            objects[(doc["kind"], doc["metadata"]["name"])] = doc
kustomization = documents["kubernetes/kustomization.yaml"][0]
for resource in kustomization["resources"]:
    if not (deploy / "kubernetes" / resource).exists(): problem(f"kustomization: missing {resource}")
statefulset = objects.get(("StatefulSet", "dlog"))
headless = objects.get(("Service", "dlog-headless"))
pdb = objects.get(("PodDisruptionBudget", "dlog"))
configmap = objects.get(("ConfigMap", "dlog-config"))
if not all([statefulset, headless, pdb, configmap]):
    problem(f"kubernetes: want StatefulSet, headless Service, PDB, ConfigMap; have {sorted(objects)}")
else:
    if headless["spec"].get("clusterIP") != "None": problem("dlog-headless is not headless")
    if statefulset["spec"]["serviceName"] != "dlog-headless": problem("StatefulSet serviceName is not the headless service")
    pod_labels = statefulset["spec"]["template"]["metadata"]["labels"]
    for name, selector in [("StatefulSet", statefulset["spec"]["selector"]["matchLabels"]),
                           ("PDB", pdb["spec"]["selector"]["matchLabels"]),
                           ("headless Service", headless["spec"]["selector"])]:
        if any(pod_labels.get(k) != v for k, v in selector.items()):
            problem(f"{name} selector {selector} does not match pod labels {pod_labels}")
    container = statefulset["spec"]["template"]["spec"]["containers"][0]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    for probe, path in (("readinessProbe", "/ready"), ("livenessProbe", "/health")):
        get = container.get(probe, {}).get("httpGet", {})
        if get.get("path") != path: problem(f"{probe} path is {get.get('path')}, want {path}")
        if get.get("port") not in ports: problem(f"{probe} port {get.get('port')} is not a container port")
    if ports.get("metrics") != 9644: problem("metrics container port is not 9644")
    properties = configmap["data"]["server.properties"]
    check_properties("ConfigMap server.properties", properties)
    if "metrics.listen=0.0.0.0:9644" not in properties: problem("ConfigMap: metrics.listen is not 0.0.0.0:9644")
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    if mounts.get("config") != "/etc/dlog": problem("ConfigMap not mounted at /etc/dlog")

# Grafana: provisioning points at the dashboards; the dashboard is well-formed.
datasource = documents["grafana/provisioning/datasources/prometheus.yml"][0]["datasources"][0]
if datasource["type"] != "prometheus": problem("Grafana datasource is not Prometheus")
provider = documents["grafana/provisioning/dashboards/dlog.yml"][0]["providers"][0]
if provider["options"]["path"] != "/var/lib/grafana/dashboards": problem("dashboard provider path changed; update compose")
for path in sorted((deploy / "grafana/dashboards").glob("*.json")):
    try:
        dashboard = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        problem(f"{path}: {error}"); continue
    for field in ("uid", "title", "panels", "schemaVersion"):
        if field not in dashboard: problem(f"{path.name}: no {field}")
    panel_ids = [p["id"] for p in dashboard["panels"]]
    if len(panel_ids) != len(set(panel_ids)): problem(f"{path.name}: duplicate panel ids")
    queries = 0
    for panel in dashboard["panels"]:
        if "gridPos" not in panel: problem(f"{path.name}: panel {panel.get('title')} has no gridPos")
        if panel["type"] == "row": continue
        if not panel.get("targets"): problem(f"{path.name}: panel {panel.get('title')} has no queries")
        for target in panel.get("targets", []):
            queries += 1
            expr = target.get("expr", "")
            if expr.count("(") != expr.count(")"): problem(f"{path.name}: unbalanced parentheses in {expr}")
    check_metric_names(f"grafana/dashboards/{path.name}", path.read_text())
    if queries < 20: problem(f"{path.name}: only {queries} queries")

check_metric_names("prometheus/alerts.yml", (deploy / "prometheus/alerts.yml").read_text())
alerts = {r["alert"] for g in documents["prometheus/alerts.yml"][0]["groups"] for r in g["rules"]}
for wanted in ("DlogBrokerDown", "DlogOfflinePartitions", "DlogUnderReplicatedPartitions",
               "DlogConsumerLagGrowing", "DlogDiskUsageHigh"):
    if wanted not in alerts: problem(f"alerts.yml: no {wanted}")

for message in problems: print(message)
sys.exit(1 if problems else 0)
PY

# ---------------------------------------------------------------- dashboard PromQL
# Every dashboard query, with Grafana's variables substituted, becomes a recording rule so that
# promtool parses it: a typo in a panel fails here instead of showing "no data".
dashboard_queries() {
  local rules; rules="$(mktemp --suffix=.yml)"
  python3 - "$deploy/grafana/dashboards" "$rules" <<'PY' || { rm -f "$rules"; return 1; }
import json, pathlib, sys, yaml
rules = []
for path in sorted(pathlib.Path(sys.argv[1]).glob("*.json")):
    for panel in json.loads(path.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"]
            for variable, value in (("$__rate_interval", "5m"), ("$instance", ".*"),
                                    ("$topic", ".*"), ("$group", ".*")):
                expr = expr.replace(variable, value)
            if "$" in expr:
                sys.exit(f"{path.name}: unknown variable in {expr}")
            rules.append({"record": f"dashboard:query_{len(rules)}", "expr": expr})
yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}, open(sys.argv[2], "w"))
print(f"{len(rules)} queries")
PY
  promtool check rules "$rules"; local status=$?
  rm -f "$rules"; return "$status"
}
if command -v promtool >/dev/null; then
  check "Grafana dashboard queries parse (promtool)" dashboard_queries
fi

# ---------------------------------------------------------------- Dockerfile
check "Dockerfile stages and sources" python3 - "$root" <<'PY'
import pathlib, re, sys
root = pathlib.Path(sys.argv[1]); text = (root / "deploy/Dockerfile").read_text()
lines = [l.strip() for l in re.sub(r"\\\n", " ", text).splitlines() if l.strip() and not l.strip().startswith("#")]
problems = []
stages = [l.split()[-1] for l in lines if l.upper().startswith("FROM ") and " AS " in l.upper()]
froms = [l for l in lines if l.upper().startswith("FROM ")]
if len(froms) < 2: problems.append("not a multi-stage build")
for line in lines:
    if line.upper().startswith("COPY --FROM="):
        stage = line.split()[1].split("=", 1)[1]
        if stage not in stages: problems.append(f"COPY from unknown stage {stage}")
    elif line.upper().startswith("COPY ") and not line.split()[1] == ".":
        source = line.split()[1]
        if not (root / source).exists(): problems.append(f"COPY source {source} missing")
for needed in ("EXPOSE 9092 9644", "ENTRYPOINT", "USER ", "HEALTHCHECK"):
    if not any(l.startswith(needed) for l in lines): problems.append(f"no {needed.strip()}")
if not (root / "deploy/Dockerfile.dockerignore").exists(): problems.append("no Dockerfile.dockerignore (target/ would be sent)")
for p in problems: print(p)
sys.exit(1 if problems else 0)
PY

# ---------------------------------------------------------------- systemd
if command -v systemd-analyze >/dev/null; then
  # verify wants ExecStart to exist: point it at the built binary (or any executable).
  unit_dir="$(mktemp -d)"
  binary="$root/target/release/dlog"; [ -x "$binary" ] || binary=/bin/true
  sed "s#/usr/local/bin/dlog#$binary#" "$deploy/systemd/dlog.service" >"$unit_dir/dlog.service"
  check "systemd-analyze verify systemd/dlog.service" systemd-analyze verify --man=no "$unit_dir/dlog.service"
  rm -rf "$unit_dir"
else
  skip "systemd-analyze verify" "systemd-analyze not installed"
fi
if command -v docker >/dev/null && docker compose version >/dev/null 2>&1; then
  check "docker compose config" docker compose -f "$deploy/compose.yaml" config --quiet
else
  skip "docker compose config" "docker not installed (compose checked by python above)"
fi

# ---------------------------------------------------------------- live scrape
live_check() {
  local binary="$root/target/release/dlog" work pid status port metrics_port i
  work="$(mktemp -d)"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  metrics_port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
  "$binary" --config "$deploy/server.properties" --listen "127.0.0.1:$port" --data-dir "$work/data" \
    --set "metrics.listen=127.0.0.1:$metrics_port" --set "advertised.listeners=PLAINTEXT://127.0.0.1:$port" \
    2>"$work/stderr" &
  pid=$!
  status=1
  for i in $(seq 1 100); do
    if curl -sf "http://127.0.0.1:$metrics_port/ready" >/dev/null 2>&1; then status=0; break; fi
    sleep 0.1
  done
  if [ "$status" = 0 ]; then
    curl -sf "http://127.0.0.1:$metrics_port/health" >/dev/null || { echo "/health failed"; status=1; }
    curl -sf "http://127.0.0.1:$metrics_port/metrics" >"$work/metrics.txt" || { echo "/metrics failed"; status=1; }
    if command -v promtool >/dev/null; then
      promtool check metrics <"$work/metrics.txt" || { echo "promtool check metrics found problems"; status=1; }
    fi
    grep -q '^dlog_ready 1' "$work/metrics.txt" || { echo "dlog_ready is not 1"; status=1; }
  else
    echo "dlog with deploy/server.properties never became ready:"; tail -n 20 "$work/stderr"
  fi
  kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null
  rm -rf "$work"
  return "$status"
}
if [ -x "$root/target/release/dlog" ] && command -v curl >/dev/null; then
  check "live: dlog --config deploy/server.properties serves /health /ready /metrics (promtool check metrics)" live_check
else
  skip "live scrape" "target/release/dlog not built or curl missing"
fi

echo "deploy checks: $passed passed, $failures failed"
[ "$failures" -eq 0 ]
