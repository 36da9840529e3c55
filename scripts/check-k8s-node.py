#!/usr/bin/env python3
"""Parses the offline node's K3s server configuration and
KubeletConfiguration (k8s/node/) and checks the settings the deployment
relies on: no servicelb and no traefik, the CriticalAddonsOnly taint, image
GC at 85/80 %, the kubelet config passed on, hard and soft eviction
thresholds with a grace period for every soft one, soft thresholds looser
than the hard ones, and a pod grace period on soft eviction that covers the
mesh's own (read from the rendered manifests given).

Usage: check-k8s-node.py k8s/node/k3s-config.yaml k8s/node/kubelet-config.yaml RENDERED.yaml…
"""

import re
import sys

import yaml

TAINT = "CriticalAddonsOnly=true:NoExecute"


def quantity(value: str) -> float:
    """A threshold as a comparable number: a percentage or bytes."""
    value = str(value)
    if value.endswith("%"):
        return float(value[:-1])
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    match = re.fullmatch(r"(\d+)(Ki|Mi|Gi)?", value)
    if not match:
        raise ValueError(f"cannot read the threshold {value!r}")
    return int(match.group(1)) * units.get(match.group(2), 1)


def seconds(value: str) -> float:
    total = 0.0
    for amount, unit in re.findall(r"(\d+)(h|m|s)", value):
        total += int(amount) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


def check_k3s(config: dict) -> list:
    errors = []
    disabled = set(config.get("disable", []))
    for component in ("servicelb", "traefik"):
        if component not in disabled:
            errors.append(f"k3s: {component} is not disabled")
    if TAINT not in config.get("node-taint", []):
        errors.append(f"k3s: node-taint lacks {TAINT}")
    args = dict(a.split("=", 1) for a in config.get("kubelet-arg", []))
    if args.get("image-gc-high-threshold") != "85" or args.get("image-gc-low-threshold") != "80":
        errors.append("k3s: image GC thresholds are not 85/80")
    if args.get("config") != "/etc/rancher/k3s/kubelet-config.yaml":
        errors.append("k3s: the kubelet is not given kubelet-config.yaml")
    return errors


def check_kubelet(config: dict, grace_needed: int) -> list:
    errors = []
    if config.get("apiVersion") != "kubelet.config.k8s.io/v1beta1" or config.get("kind") != "KubeletConfiguration":
        errors.append("kubelet: not a kubelet.config.k8s.io/v1beta1 KubeletConfiguration")
    hard = config.get("evictionHard", {})
    soft = config.get("evictionSoft", {})
    periods = config.get("evictionSoftGracePeriod", {})
    for signal in ("memory.available", "nodefs.available", "imagefs.available"):
        if signal not in hard:
            errors.append(f"kubelet: no hard eviction threshold for {signal}")
        if signal not in soft:
            errors.append(f"kubelet: no soft eviction threshold for {signal}")
    for signal, threshold in soft.items():
        if signal not in periods or seconds(periods[signal]) <= 0:
            errors.append(f"kubelet: soft threshold {signal} has no grace period")
        if signal in hard and quantity(threshold) <= quantity(hard[signal]):
            errors.append(f"kubelet: soft {signal} ({threshold}) is not looser than hard ({hard[signal]})")
    max_grace = config.get("evictionMaxPodGracePeriod", 0)
    if max_grace < grace_needed:
        errors.append(f"kubelet: evictionMaxPodGracePeriod {max_grace}s cuts the mesh's {grace_needed}s grace short")
    if not config.get("evictionPressureTransitionPeriod"):
        errors.append("kubelet: no evictionPressureTransitionPeriod")
    return errors


def main() -> int:
    k3s_path, kubelet_path, *rendered = sys.argv[1:]
    grace_needed = 0
    for path in rendered:
        with open(path) as f:
            for o in yaml.safe_load_all(f):
                if o and o["kind"] in ("Deployment", "StatefulSet"):
                    grace_needed = max(grace_needed, o["spec"]["template"]["spec"].get("terminationGracePeriodSeconds", 30))
    with open(k3s_path) as f:
        errors = check_k3s(yaml.safe_load(f))
    with open(kubelet_path) as f:
        errors += check_kubelet(yaml.safe_load(f), grace_needed)
    for e in errors:
        print(f"FAIL {e}")
    if not errors:
        print(f"ok {k3s_path} and {kubelet_path}")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
