#!/usr/bin/env bash
# What CI checks of the deployment (k8s/, monitoring/kustomization.yaml,
# Dockerfile), all offline:
# - every overlay renders with `kubectl kustomize`, and the optional
#   cert-manager component on top of one;
# - every rendered object validates against the Kubernetes schemas, and the
#   custom ones against the CRD schemas kept in k8s/schemas;
# - the rendered manifests keep the deployment's promises
#   (scripts/check-k8s-promises.py; shown to refuse broken copies);
# - the cert-manager component's certificate names every Service the
#   services call each other by;
# - the K3s and kubelet configuration hold the settings an offline node needs;
# - the pre-cache script's image list is exactly the rendered images;
# - the PrometheusRule is generated from monitoring/prometheus/alerts.yml;
# - hadolint passes on the Dockerfile.
#
# Usage: scripts/check-k8s.sh [BIN_DIR]   (the built service binaries, default
# target/debug: the promises check reads their default ports from --help)
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir=${1:-target/debug}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
step() { printf -- '-- %s\n' "$*"; }
fail() { echo "FAIL $*" >&2; exit 1; }

step "render every overlay"
for dir in k8s/overlays/*/; do
  name=$(basename "$dir")
  kubectl kustomize "$dir" > "$out/$name.yaml"
  echo "rendered $name: $(grep -c '^kind:' "$out/$name.yaml") objects"
done
# The optional cert-manager component (no overlay enables it by default), on
# top of one overlay; validated below with the rest, but not part of the
# promises check, which reads each overlay on its own.
mkdir "$out/cert-manager"
{
  echo "apiVersion: kustomize.config.k8s.io/v1beta1"
  echo "kind: Kustomization"
  echo "resources: [$(realpath --relative-to="$out/cert-manager" k8s/overlays/disaster-response)]"
  echo "components: [$(realpath --relative-to="$out/cert-manager" k8s/components/cert-manager)]"
} > "$out/cert-manager/kustomization.yaml"
kubectl kustomize "$out/cert-manager" > "$out/with-cert-manager.rendered"
echo "rendered disaster-response with the cert-manager component: $(grep -c '^kind:' "$out/with-cert-manager.rendered") objects"

step "validate against the Kubernetes schemas and k8s/schemas"
python3 scripts/validate-k8s.py "$out"/*.yaml "$out/with-cert-manager.rendered"

step "the deployment's promises"
for rendered in "$out"/*.yaml; do
  python3 scripts/check-k8s-promises.py --bin-dir "$bin_dir" "$rendered"
done
# The check must be able to fail: a copy that would need a registry offline.
sed 's/IfNotPresent/Always/' "$out/ship.yaml" > "$out/broken.txt"
if python3 scripts/check-k8s-promises.py --bin-dir "$bin_dir" "$out/broken.txt" > /dev/null; then
  fail "the promises check passed manifests that pull Always"
fi
# … and a setting the services would refuse at start-up.
sed 's/EDGE_SYNC_BATCH_SIZE: "500"/EDGE_SYNC_BATCH_SIZE: "0"/' "$out/ship.yaml" > "$out/broken.txt"
if python3 scripts/check-k8s-promises.py --bin-dir "$bin_dir" "$out/broken.txt" > /dev/null; then
  fail "the promises check passed a batch size sync-svc refuses"
fi
# … probes on the gRPC port, which speaks TLS (kubelet's gRPC probes cannot).
sed 's/^\( *\)port: metrics$/\1port: grpc/' "$out/ship.yaml" > "$out/broken.txt"
if python3 scripts/check-k8s-promises.py --bin-dir "$bin_dir" "$out/broken.txt" > /dev/null; then
  fail "the promises check passed probes on the TLS port"
fi
# … TLS turned off.
sed 's/^\( *\)EDGE_LOG_FORMAT: json$/&\n\1EDGE_INSECURE_PLAINTEXT: "true"/' "$out/ship.yaml" > "$out/broken.txt"
if python3 scripts/check-k8s-promises.py --bin-dir "$bin_dir" "$out/broken.txt" > /dev/null; then
  fail "the promises check passed --insecure-plaintext"
fi
# … the mesh token mounted with subPath (a replaced Secret would never reach
# the running pod).
sed 's#^\( *\)- mountPath: /etc/edge/mesh$#&\n\1  subPath: token#' "$out/ship.yaml" > "$out/broken.txt"
if python3 scripts/check-k8s-promises.py --bin-dir "$bin_dir" "$out/broken.txt" > /dev/null; then
  fail "the promises check passed a Secret mounted with subPath"
fi

step "the cert-manager certificate names every Service"
python3 - "$out/with-cert-manager.rendered" <<'PY'
import sys
from urllib.parse import urlsplit

import yaml

objects = [o for o in yaml.safe_load_all(open(sys.argv[1])) if o]
(cert,) = [o for o in objects if o["kind"] == "Certificate" and o["spec"]["secretName"] == "edge-tls"]
names = set(cert["spec"].get("dnsNames", []))
wanted = set()
for o in objects:
    if o["kind"] == "Service" and o["metadata"]["name"].endswith("-svc"):
        svc, ns = o["metadata"]["name"], o["metadata"]["namespace"]
        wanted |= {svc, f"{svc}.{ns}.svc"}
    if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("edge-config"):
        for key, value in o.get("data", {}).items():
            if key.endswith("_URL") and key != "EDGE_CLOUD_URL":
                wanted.add(urlsplit(value).hostname)
missing = sorted(wanted - names)
if missing:
    sys.exit(f"FAIL Certificate/edge-tls does not name {missing}")
print(f"ok Certificate/edge-tls names all {len(wanted)} names the Services are dialled by")
PY

step "node configuration"
python3 scripts/check-k8s-node.py k8s/node/k3s-config.yaml k8s/node/kubelet-config.yaml "$out"/*.yaml

step "the pre-cache list is the set of rendered images"
k8s/airgap/precache.sh list > "$out/precache.txt"
python3 - "$out/precache.txt" "$out"/*.yaml <<'PY'
import sys
import yaml

listed = set(open(sys.argv[1]).read().split())
rendered = set()
for path in sys.argv[2:]:
    for o in yaml.safe_load_all(open(path)):
        if not o or o["kind"] not in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            continue
        spec = o["spec"]["template"]["spec"]
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            rendered.add(c["image"])
if listed != rendered:
    sys.exit(f"FAIL pre-cache list {sorted(listed)} != rendered images {sorted(rendered)}")
print(f"ok {len(listed)} images: {', '.join(sorted(listed))}")
PY

step "PrometheusRule generated from alerts.yml"
python3 scripts/gen-prometheus-rule.py --check

step "hadolint Dockerfile"
hadolint Dockerfile
echo "ok Dockerfile"
