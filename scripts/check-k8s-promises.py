#!/usr/bin/env python3
"""Reads an overlay's rendered manifests and checks what the deployment
promises (docs/deploy.md):

- every container has CPU and memory requests and limits;
- every mesh container declares the port the service really listens on
  (its binary's default, read from `<binary> --help`, unless the site's
  ConfigMap moves it); its probes are HTTP on the plaintext metrics port
  (`/readyz`, `/healthz`: the gRPC port speaks TLS, which kubelet's gRPC
  probes cannot), a port the container declares, and its metrics port and
  scrape annotations match the real metrics port;
- every probe of every container targets a port the container declares;
- TLS and credentials: every mesh service reads its certificate, key and
  mesh CA (Secret edge-tls) and the mesh token (Secret edge-mesh-token),
  store-svc also the operator token (Secret edge-operator-token), from
  files of Secrets mounted whole (no subPath, so a rotation reaches the
  running pod); nothing turns on --insecure-plaintext;
- pods run as non-root with no privilege escalation and a read-only root;
- every image is pulled IfNotPresent, every pod tolerates
  CriticalAddonsOnly=true:NoExecute and has the mesh's PriorityClass;
- no plaintext secret: no Secret with data in the manifests, no literal
  password, token or database URL in an env var or a ConfigMap (a `*_FILE`
  variable naming a file of a mounted Secret is a path, not a secret);
- store-svc is one replica replaced with Recreate; ingest-svc and health-svc
  are NodePorts with externalTrafficPolicy Local;
- the NetworkPolicies exist, and the gateways' range is the site's own;
- no PodDisruptionBudget can block draining the node for a single replica;
- the grace period covers the services' shutdown grace;
- each service's binary accepts the site's settings (`--check-config` with
  the container's environment: the ConfigMap, and stand-ins for secrets).

Usage: check-k8s-promises.py --bin-dir target/debug RENDERED.yaml
Prints each failure and exits 1 if any.
"""

import argparse
import re
import subprocess
import sys

import yaml

# The mesh's services: the binary, its listen-address flag and environment
# variable.
SERVICES = {
    "ingest-svc": ("ingest-addr", "EDGE_INGEST_ADDR"),
    "store-svc": ("store-addr", "EDGE_STORE_ADDR"),
    "sync-svc": ("sync-addr", "EDGE_SYNC_ADDR"),
    "health-svc": ("health-addr", "EDGE_HEALTH_ADDR"),
}
TOLERATION = {"key": "CriticalAddonsOnly", "operator": "Equal", "value": "true", "effect": "NoExecute"}
PLACEHOLDER_GATEWAYS = "192.0.2.0/24"
SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET|DATABASE_URL", re.I)
CREDENTIAL_URL = re.compile(r"://[^/\s:@]+:[^/\s@]+@")
REQUIRED_POLICIES = {"default-deny-ingress", "from-gateways", "within-the-mesh", "postgres-from-store"}
# Files every mesh service reads from Secrets: variable -> (Secret, key).
MESH_SECRET_FILES = {
    "EDGE_TLS_CERT": ("edge-tls", "tls.crt"),
    "EDGE_TLS_KEY": ("edge-tls", "tls.key"),
    "EDGE_MESH_CA": ("edge-tls", "ca.crt"),
    "EDGE_MESH_TOKEN_FILE": ("edge-mesh-token", "token"),
}
# … and those only some services read.
SERVICE_SECRET_FILES = {
    "store-svc": {"EDGE_OPERATOR_TOKEN_FILE": ("edge-operator-token", "token")},
}
# Probes and where each must look on the metrics port.
PROBE_PATHS = {"startupProbe": "/readyz", "readinessProbe": "/readyz", "livenessProbe": "/healthz"}
TRUE = {"true", "1", "yes", "on"}


def default_port(bin_dir: str, binary: str, flag: str) -> int:
    """The port `binary` listens on for `--flag` by default, from its help."""
    help_text = subprocess.run(
        [f"{bin_dir}/{binary}", "--help"], capture_output=True, text=True, check=True, env={}
    ).stdout
    block = help_text.split(f"--{flag} ", 1)[1]
    match = re.search(r"\[default: [^\]]*:(\d+)\]", block.split("\n      --", 1)[0])
    if not match:
        raise SystemExit(f"{binary} --help shows no default for --{flag}")
    return int(match.group(1))


def accepts_settings(bin_dir: str, binary: str, container: dict, config: dict) -> str:
    """Runs `binary --check-config` with the container's environment; the
    error it printed, or "" when it accepted every value."""
    env = dict(config)
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var.get("valueFrom", {}):
            # A stand-in of the right shape: the values are secrets.
            env[var["name"]] = "postgres://edge:secret@postgres:5432/edge" if "DATABASE_URL" in var["name"] else "secret"
    run = subprocess.run([f"{bin_dir}/{binary}", "--check-config"], capture_output=True, text=True, env=env)
    return "" if run.returncode == 0 else (run.stderr.strip().splitlines() or ["exit " + str(run.returncode)])[0]


def parse_duration_s(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", text.strip())
    if not match:
        raise SystemExit(f"cannot read the duration {text!r}")
    return int(match.group(1)) * units[match.group(2)]


def port_number(container: dict, port) -> int:
    """A probe's port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    for p in container.get("ports", []):
        if p.get("name") == port:
            return p["containerPort"]
    return -1


def secret_file(spec: dict, container: dict, path: str):
    """The (Secret, key) whose file `path` is in the container, when `path`
    lies in a Secret volume mounted whole (no subPath); else None."""
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    for mount in container.get("volumeMounts", []):
        secret = volumes.get(mount["name"], {}).get("secret")
        if secret is None or mount.get("subPath") or mount.get("subPathExpr"):
            continue
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        relative = path[len(prefix):]
        items = secret.get("items")
        if items is None:
            return (secret.get("secretName"), relative)
        for item in items:
            if item["path"] == relative:
                return (secret.get("secretName"), item["key"])
    return None


def check(objects: list, bin_dir: str) -> list:
    errors = []
    by_kind = {}
    for o in objects:
        by_kind.setdefault(o["kind"], []).append(o)
    config = {}
    for cm in by_kind.get("ConfigMap", []):
        if cm["metadata"]["name"].startswith("edge-config"):
            config = cm.get("data", {})
    if not config:
        errors.append("no edge-config ConfigMap")

    metrics_default = default_port(bin_dir, "store-svc", "metrics-addr")
    metrics_port = int(config.get("EDGE_METRICS_ADDR", f":{metrics_default}").rsplit(":", 1)[1])
    grace = parse_duration_s(config.get("EDGE_SHUTDOWN_GRACE", "20s"))

    # No plaintext secrets.
    for secret in by_kind.get("Secret", []):
        if secret.get("data") or secret.get("stringData"):
            errors.append(f"Secret/{secret['metadata']['name']} holds data in the manifests")
    for key, value in config.items():
        if SECRET_NAME.search(key) or CREDENTIAL_URL.search(str(value)):
            errors.append(f"ConfigMap edge-config holds a credential: {key}")
    if str(config.get("EDGE_INSECURE_PLAINTEXT", "")).lower() in TRUE:
        errors.append("ConfigMap edge-config turns TLS off (EDGE_INSECURE_PLAINTEXT)")

    workloads = by_kind.get("Deployment", []) + by_kind.get("StatefulSet", [])
    if not workloads:
        errors.append("no workloads rendered")
    for w in workloads:
        name = f"{w['kind']}/{w['metadata']['name']}"
        pod = w["spec"]["template"]
        spec = pod["spec"]
        labels = pod["metadata"].get("labels", {})
        if labels.get("app.kubernetes.io/part-of") != "edge-mesh":
            errors.append(f"{name}: pod not labelled app.kubernetes.io/part-of: edge-mesh")
        if TOLERATION not in spec.get("tolerations", []):
            errors.append(f"{name}: no toleration for CriticalAddonsOnly=true:NoExecute")
        if spec.get("priorityClassName") != "edge-mesh-critical":
            errors.append(f"{name}: not in the edge-mesh-critical PriorityClass")
        pod_security = spec.get("securityContext", {})
        if not pod_security.get("runAsNonRoot") or pod_security.get("runAsUser", 0) == 0:
            errors.append(f"{name}: the pod may run as root")
        containers = spec.get("containers", []) + spec.get("initContainers", [])
        for c in containers:
            cname = f"{name} container {c['name']}"
            if c.get("imagePullPolicy") != "IfNotPresent":
                errors.append(f"{cname}: imagePullPolicy is {c.get('imagePullPolicy')!r}, not IfNotPresent")
            resources = c.get("resources", {})
            for part in ("requests", "limits"):
                for res in ("cpu", "memory"):
                    if res not in resources.get(part, {}):
                        errors.append(f"{cname}: no {res} {part[:-1]}")
            security = c.get("securityContext", {})
            if security.get("allowPrivilegeEscalation") is not False:
                errors.append(f"{cname}: privilege escalation not refused")
            if security.get("readOnlyRootFilesystem") is not True:
                errors.append(f"{cname}: root file system not read-only")
            if security.get("runAsUser") == 0:
                errors.append(f"{cname}: runs as root")
            for env in c.get("env", []):
                if SECRET_NAME.search(env["name"]) and "value" in env:
                    if env["name"].endswith("_FILE") and secret_file(spec, c, env["value"]):
                        continue
                    errors.append(f"{cname}: {env['name']} is a literal, not a secretKeyRef")
            for probe in ("readinessProbe", "livenessProbe"):
                if probe not in c:
                    errors.append(f"{cname}: no {probe}")
            for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
                action = c.get(probe, {})
                for kind in ("httpGet", "grpc", "tcpSocket"):
                    if kind in action and port_number(c, action[kind].get("port")) not in [
                        p["containerPort"] for p in c.get("ports", [])
                    ]:
                        errors.append(f"{cname}: {probe} targets {action[kind].get('port')}, a port the container does not declare")
        app = labels.get("app")
        if app in SERVICES:
            flag, env = SERVICES[app]
            listen = config.get(env)
            port = int(listen.rsplit(":", 1)[1]) if listen else default_port(bin_dir, app, flag)
            c = next((c for c in spec["containers"] if c["name"] == app), None)
            if c is None:
                errors.append(f"{name}: no container named {app}")
                continue
            if c.get("command") != [app]:
                errors.append(f"{name}: runs {c.get('command')}, not {app}")
            refused = accepts_settings(bin_dir, app, c, config)
            if refused:
                errors.append(f"{name}: {app} refuses the site's settings: {refused}")
            for probe, path in PROBE_PATHS.items():
                if probe in c:
                    http = c[probe].get("httpGet")
                    if http is None:
                        errors.append(f"{name}: {probe} is not an HTTP check on the metrics port (the gRPC port speaks TLS)")
                    elif port_number(c, http.get("port")) != metrics_port:
                        errors.append(f"{name}: {probe} targets {http.get('port')}, the metrics port is {metrics_port}")
                    elif http.get("path") != path or http.get("scheme", "HTTP") != "HTTP":
                        errors.append(f"{name}: {probe} asks {http.get('scheme', 'HTTP')} {http.get('path')}, not HTTP {path}")
            env_values = {e["name"]: e.get("value") for e in c.get("env", [])}
            if str(env_values.get("EDGE_INSECURE_PLAINTEXT", "")).lower() in TRUE:
                errors.append(f"{name}: turns TLS off (EDGE_INSECURE_PLAINTEXT)")
            for var, (secret, key) in {**MESH_SECRET_FILES, **SERVICE_SECRET_FILES.get(app, {})}.items():
                path = env_values.get(var) or config.get(var)
                if not path:
                    errors.append(f"{name}: {var} is not set")
                elif secret_file(spec, c, path) != (secret, key):
                    errors.append(f"{name}: {var}={path} is not key {key} of Secret {secret} mounted whole (no subPath)")
            ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
            if ports.get("grpc") != port:
                errors.append(f"{name}: grpc containerPort {ports.get('grpc')}, {app} listens on {port}")
            if ports.get("metrics") != metrics_port:
                errors.append(f"{name}: metrics containerPort {ports.get('metrics')}, metrics are on {metrics_port}")
            annotations = pod["metadata"].get("annotations", {})
            if annotations.get("prometheus.io/scrape") != "true" or annotations.get("prometheus.io/port") != str(metrics_port):
                errors.append(f"{name}: scrape annotations do not point at port {metrics_port}")
            if spec.get("terminationGracePeriodSeconds", 30) <= grace:
                errors.append(f"{name}: terminationGracePeriodSeconds not above the shutdown grace {grace}s")

    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    store = deployments.get("store-svc")
    if store is None:
        errors.append("no store-svc Deployment")
    elif store["spec"].get("replicas") != 1 or store["spec"].get("strategy", {}).get("type") != "Recreate":
        errors.append("store-svc must be one replica with the Recreate strategy")

    services = {s["metadata"]["name"]: s for s in by_kind.get("Service", [])}
    for exposed in ("ingest-svc", "health-svc"):
        s = services.get(exposed, {}).get("spec", {})
        if s.get("type") != "NodePort" or s.get("externalTrafficPolicy") != "Local":
            errors.append(f"Service/{exposed}: not a NodePort with externalTrafficPolicy Local")

    policies = {p["metadata"]["name"]: p for p in by_kind.get("NetworkPolicy", [])}
    missing = REQUIRED_POLICIES - policies.keys()
    if missing:
        errors.append(f"NetworkPolicies missing: {sorted(missing)}")
    gateways = policies.get("from-gateways")
    if gateways:
        cidrs = [f["ipBlock"]["cidr"] for rule in gateways["spec"]["ingress"] for f in rule["from"] if "ipBlock" in f]
        if not cidrs or PLACEHOLDER_GATEWAYS in cidrs:
            errors.append("NetworkPolicy/from-gateways: the site's gateway range is not set")

    # A PDB must never block a drain for something that runs once.
    replicas = {}
    for w in workloads:
        replicas[w["spec"]["template"]["metadata"].get("labels", {}).get("app")] = w["spec"].get("replicas", 1)
    for pdb in by_kind.get("PodDisruptionBudget", []):
        app = pdb["spec"]["selector"].get("matchLabels", {}).get("app")
        count = replicas.get(app)
        if count is None:
            errors.append(f"PodDisruptionBudget/{pdb['metadata']['name']} selects no workload")
            continue
        spec = pdb["spec"]
        if "minAvailable" in spec and int(spec["minAvailable"]) >= count:
            errors.append(f"PodDisruptionBudget/{pdb['metadata']['name']}: minAvailable blocks every eviction")
        if "maxUnavailable" in spec and int(spec["maxUnavailable"]) < 1:
            errors.append(f"PodDisruptionBudget/{pdb['metadata']['name']}: maxUnavailable 0 blocks every eviction")
    return errors


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bin-dir", required=True)
    parser.add_argument("rendered")
    args = parser.parse_args()
    with open(args.rendered) as f:
        objects = [o for o in yaml.safe_load_all(f) if o]
    errors = check(objects, args.bin_dir)
    for e in errors:
        print(f"FAIL {args.rendered}: {e}")
    if not errors:
        print(f"ok {args.rendered}: {len(objects)} objects keep the deployment's promises")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
