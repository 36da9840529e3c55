#!/usr/bin/env bash
# Checks the monitoring assets in monitoring/ (CI runs this from .ci/run):
#   1. prometheus.yml passes `promtool check config` (with its rule file);
#   2. alerts.yml passes `promtool check rules`, and `promtool test rules`
#      runs the alert unit tests in alerts.test.yml;
#   3. the Kubernetes pod job's relabelling does what prometheus.yml says: a
#      real Prometheus discovers made-up pods (file discovery carrying the
#      labels Kubernetes discovery would set) and its targets API must list
#      exactly the mesh pods that ask to be scraped, on the annotated port,
#      with namespace, pod and app labels;
#   4. the Grafana dashboard is valid JSON with the shape Grafana imports
#      (schemaVersion, a `datasource` variable of type prometheus, every panel
#      on it), and every PromQL expression in it parses: they are written into
#      a temporary rule file, one recording rule each, which `promtool check
#      rules` parses with Prometheus's own parser.
# Needs promtool and prometheus (Debian package `prometheus`), curl and jq.
set -euo pipefail
cd "$(dirname "$0")/.."

prom=monitoring/prometheus
dashboard=monitoring/grafana/edge-mesh.json

for tool in promtool prometheus curl jq; do
  if ! command -v "$tool" >/dev/null; then
    echo "check-monitoring: $tool is missing (apt-get install prometheus jq)" >&2
    exit 1
  fi
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf -- '-- %s\n' "$*"; }

# prometheus.yml with the pod discovery block swapped for file discovery of
# $work/pods.json (Debian builds Prometheus without Kubernetes discovery).
cp "$prom/alerts.yml" "$work/alerts.yml"
awk '
  /^    kubernetes_sd_configs:$/ { print "    file_sd_configs:"; swapped++; next }
  /^      - role: pod$/ && swapped == 1 && !done { print "      - files: [pods.json]"; done = 1; next }
  { print }
  END { if (swapped != 1 || !done) exit 1 }
' "$prom/prometheus.yml" >"$work/prometheus.yml" || {
  echo "check-monitoring: cannot find the kubernetes_sd_configs block (role: pod) in $prom/prometheus.yml" >&2
  exit 1
}

step "promtool check config $prom/prometheus.yml"
if ! promtool check config "$prom/prometheus.yml" >"$work/config.out" 2>&1; then
  if grep -q 'field kubernetes_sd_configs not found' "$work/config.out"; then
    # Everything but the discovery block (relabelling, rule files, globals)
    # is checked as shipped.
    echo "this promtool lacks Kubernetes service discovery: checking the config with"
    echo "kubernetes_sd_configs (role: pod) swapped for file_sd_configs"
    echo '[]' >"$work/pods.json"
    promtool check config "$work/prometheus.yml"
  else
    cat "$work/config.out" >&2
    exit 1
  fi
else
  cat "$work/config.out"
fi

step "promtool check rules $prom/alerts.yml"
promtool check rules "$prom/alerts.yml"

step "promtool test rules $prom/alerts.test.yml"
promtool test rules "$prom/alerts.test.yml"

step "relabelling of the edge-mesh-pods job, in a real Prometheus"
# Four pods: store-svc (app.kubernetes.io/name, port annotation overriding
# the declared 8080), sync-svc (plain `app` label, no declared port), a pod
# outside the mesh, and a mesh pod that opts out of scraping.
cat >"$work/pods.json" <<'EOF'
[
  {"targets": ["10.0.0.2:8080"], "labels": {
    "__meta_kubernetes_namespace": "site-a", "__meta_kubernetes_pod_name": "store-svc-0",
    "__meta_kubernetes_pod_phase": "Running", "__meta_kubernetes_pod_node_name": "node-1",
    "__meta_kubernetes_pod_label_app_kubernetes_io_part_of": "edge-mesh",
    "__meta_kubernetes_pod_label_app_kubernetes_io_name": "store-svc",
    "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
    "__meta_kubernetes_pod_annotation_prometheus_io_port": "9464"}},
  {"targets": ["10.0.0.3"], "labels": {
    "__meta_kubernetes_namespace": "site-a", "__meta_kubernetes_pod_name": "sync-svc-5d8f9-x2k4p",
    "__meta_kubernetes_pod_phase": "Running", "__meta_kubernetes_pod_node_name": "node-1",
    "__meta_kubernetes_pod_label_app_kubernetes_io_part_of": "edge-mesh",
    "__meta_kubernetes_pod_label_app": "sync-svc",
    "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true",
    "__meta_kubernetes_pod_annotation_prometheus_io_port": "9464"}},
  {"targets": ["10.0.0.4:9464"], "labels": {
    "__meta_kubernetes_namespace": "site-a", "__meta_kubernetes_pod_name": "not-ours",
    "__meta_kubernetes_pod_phase": "Running",
    "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "true"}},
  {"targets": ["10.0.0.5:9464"], "labels": {
    "__meta_kubernetes_namespace": "site-a", "__meta_kubernetes_pod_name": "ingest-svc-0",
    "__meta_kubernetes_pod_phase": "Running",
    "__meta_kubernetes_pod_label_app_kubernetes_io_part_of": "edge-mesh",
    "__meta_kubernetes_pod_annotation_prometheus_io_scrape": "false"}}
]
EOF
cat >"$work/expected-targets.json" <<'EOF'
[
  {"app": "store-svc", "instance": "10.0.0.2:9464", "job": "edge-mesh-pods", "namespace": "site-a", "node": "node-1", "pod": "store-svc-0"},
  {"app": "sync-svc", "instance": "10.0.0.3:9464", "job": "edge-mesh-pods", "namespace": "site-a", "node": "node-1", "pod": "sync-svc-5d8f9-x2k4p"}
]
EOF
# A free port is not known in advance: try a few random ones.
prom_pid=
for _ in 1 2 3 4 5; do
  port=$((20000 + RANDOM % 20000))
  prometheus --config.file="$work/prometheus.yml" --storage.tsdb.path="$work/tsdb" \
    --web.listen-address="127.0.0.1:$port" >"$work/prometheus.log" 2>&1 &
  prom_pid=$!
  for _ in $(seq 1 100); do
    curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null && break
    kill -0 "$prom_pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$prom_pid" 2>/dev/null && break
  prom_pid=
done
if [ -z "$prom_pid" ]; then
  cat "$work/prometheus.log" >&2
  echo "check-monitoring: Prometheus did not start" >&2
  exit 1
fi
trap 'kill "$prom_pid" 2>/dev/null; wait "$prom_pid" 2>/dev/null; rm -rf "$work"' EXIT
# Discovery runs in the background: poll the targets API with a deadline.
found=
for _ in $(seq 1 100); do
  curl -sf "http://127.0.0.1:$port/api/v1/targets" |
    jq -S '[.data.activeTargets[] | select(.scrapePool == "edge-mesh-pods") | .labels] | sort_by(.pod)' \
      >"$work/targets.json" || true
  if jq -e --slurpfile want "$work/expected-targets.json" '. == $want[0]' "$work/targets.json" >/dev/null; then
    found=1
    break
  fi
  sleep 0.1
done
if [ -z "$found" ]; then
  echo "check-monitoring: the edge-mesh-pods targets are not the expected ones; got:" >&2
  cat "$work/targets.json" >&2
  echo "expected:" >&2
  cat "$work/expected-targets.json" >&2
  exit 1
fi
echo "  SUCCESS: mesh pods kept with namespace, pod, app and the annotated port; others dropped"

step "dashboard $dashboard"
jq -e '
  (.schemaVersion | type == "number")
  and (.uid | type == "string")
  and ([.templating.list[] | select(.name == "datasource" and .type == "datasource" and .query == "prometheus")] | length == 1)
  and ([.panels[] | select(.type != "row")] | length > 0)
  and ([.panels[] | select(.type != "row") | .datasource.uid == "${datasource}"] | all)
  and ([.panels[] | select(.type != "row") | .targets[] | (.datasource.uid == "${datasource}") and (.expr | type == "string" and length > 0)] | all)
' "$dashboard" >/dev/null || {
  echo "check-monitoring: $dashboard is not a dashboard with a prometheus \${datasource} variable on every panel and target" >&2
  exit 1
}

# Grafana replaces $job by the selected jobs as a regex; "All" is `.*`.
jq -r '.panels[] | select(.type != "row") | .targets[].expr | gsub("\\$job"; ".*")' "$dashboard" >"$work/exprs"
if grep -n '\$' "$work/exprs" >&2; then
  echo "check-monitoring: the expressions above use a template variable this check does not know" >&2
  exit 1
fi
jq -n --rawfile exprs "$work/exprs" '
  { groups: [ { name: "dashboard",
      rules: [ $exprs | split("\n")[] | select(length > 0) ]
        | to_entries
        | map({ record: "dashboard_expr_\(.key)", expr: .value }) } ] }
' >"$work/dashboard-rules.json"
# A JSON document is valid YAML, which is what promtool reads.
promtool check rules "$work/dashboard-rules.json" >"$work/rules.out" 2>&1 || {
  cat "$work/rules.out" >&2
  exit 1
}
echo "  SUCCESS: $(grep -c . "$work/exprs") dashboard expressions parse"

echo "monitoring assets OK"
