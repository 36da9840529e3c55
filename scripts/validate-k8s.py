#!/usr/bin/env python3
"""Offline validator for rendered Kubernetes manifests (for CI).

Usage:
    kubectl kustomize DIR | python3 scripts/validate-k8s.py -
    python3 scripts/validate-k8s.py [--k8s-version 1.37] FILE.yaml [FILE.yaml ...]

Every object of every (multi-document) YAML input is checked:

* ServiceMonitor / PrometheusRule (monitoring.coreos.com/v1), Certificate / Issuer
  (cert-manager.io/v1): JSON-schema validation
  (Draft 7, no format checking) against the CRD's openAPIV3Schema kept in
  k8s/schemas/, made strict: wherever the schema declares an object it does not
  open up (no additionalProperties, no x-kubernetes-preserve-unknown-fields), an
  undeclared field is an error, as with the API server's strict field validation.
  metadata must be a valid ObjectMeta and metadata.name must be set.
* Kinds built into Kubernetes: kubernetes_validate.validate(obj, version, strict=True).
* Anything else (other custom kinds, unknown groups/versions): an error.

One line is printed per object, `ok <kind>/<name>` or `FAIL <kind>/<name>: <reason>`;
the exit status is 1 if anything failed, 0 otherwise (2 for usage/setup errors).
No network access is needed: the schemas come from the pinned packages
(scripts/k8s-requirements.txt) and from k8s/schemas/.
"""

import argparse
import copy
import json
import re
import sys
from pathlib import Path

import importlib_resources
import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate import utils as kv_utils
from referencing import Registry, Resource

# Default Kubernetes version to validate against: the newest one the pinned
# kubernetes-validate ships schemas for. Override with --k8s-version.
K8S_VERSION = "1.37"

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "k8s" / "schemas"

# (apiVersion, kind) -> schema file in SCHEMA_DIR
CRD_SCHEMAS = {
    ("monitoring.coreos.com/v1", "ServiceMonitor"): "monitoring.coreos.com_servicemonitors.json",
    ("monitoring.coreos.com/v1", "PrometheusRule"): "monitoring.coreos.com_prometheusrules.json",
    ("cert-manager.io/v1", "Certificate"): "cert-manager.io_certificates.json",
    ("cert-manager.io/v1", "Issuer"): "cert-manager.io_issuers.json",
}

OBJECT_META_REF = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
MAX_ERRORS = 5
MAX_MESSAGE = 300


class SetupError(Exception):
    """Bad flag or missing schema: not a manifest problem (exit 2)."""


# --------------------------------------------------------------------------- YAML

class _Loader(yaml.SafeLoader):
    """SafeLoader closer to how kubectl reads YAML (sigs.k8s.io/yaml -> JSON).

    Timestamps stay strings, `=` is a plain string, duplicate keys are reported.
    """

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen = set()
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue
                if key_node.value in seen:
                    self.problems.append("line %d: duplicate key %r" % (key_node.start_mark.line + 1, key_node.value))
                seen.add(key_node.value)
        return super().construct_mapping(node, deep=deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def _json_keys(value):
    """Map keys become strings, as they do when Kubernetes turns YAML into JSON."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(k, bool):
                k = "true" if k else "false"
            elif k is None:
                k = "null"
            elif not isinstance(k, str):
                k = str(k)
            out[k] = _json_keys(v)
        return out
    if isinstance(value, list):
        return [_json_keys(v) for v in value]
    return value


def load_documents(text):
    """Yield (index, document, problems) for every non-empty document of a YAML stream."""
    loader = _Loader(text)
    loader.problems = []
    index = 0
    try:
        while True:
            try:
                if not loader.check_data():
                    return
                index += 1
                loader.problems = []
                doc = loader.get_data()
            except yaml.YAMLError as e:
                # The stream cannot be read past a syntax error.
                yield index, None, ["YAML error: %s" % " ".join(str(e).split())]
                return
            if doc is not None:
                yield index, _json_keys(doc), list(loader.problems)
    finally:
        loader.dispose()


# ------------------------------------------------------------------- CRD schemas

_INLINE_FLAGS = re.compile(r"\(\?[aiLmsux]+\)")


def _python_pattern(pattern):
    """CRD patterns are Go RE2; Python wants global flags such as (?i) first."""
    try:
        re.compile(pattern)
        return pattern
    except re.error:
        fixed = "".join(_INLINE_FLAGS.findall(pattern)) + _INLINE_FLAGS.sub("", pattern)
        re.compile(fixed)
        return fixed


def strictify(node):
    """Copy of a CRD structural schema in which undeclared fields are refused.

    Where an object schema declares `properties` (or nothing at all) and neither
    `additionalProperties` nor `x-kubernetes-preserve-unknown-fields` opens it up,
    add `additionalProperties: false`. Only structural positions (properties,
    additionalProperties, items) are walked; anyOf/allOf/oneOf/not are value
    validations in a structural schema and are left alone.
    """
    if not isinstance(node, dict):
        return node
    out = dict(node)
    if isinstance(node.get("pattern"), str):
        out["pattern"] = _python_pattern(node["pattern"])
    props = node.get("properties")
    if isinstance(props, dict):
        out["properties"] = {name: strictify(sub) for name, sub in props.items()}
    if node.get("x-kubernetes-embedded-resource"):
        embedded = dict(out.get("properties", {}))
        for name in ("apiVersion", "kind"):
            embedded.setdefault(name, {"type": "string"})
        embedded.setdefault("metadata", {"type": "object", "x-kubernetes-preserve-unknown-fields": True})
        out["properties"] = embedded
    if isinstance(node.get("additionalProperties"), dict):
        out["additionalProperties"] = strictify(node["additionalProperties"])
    if isinstance(node.get("items"), dict):
        out["items"] = strictify(node["items"])
    is_object = isinstance(props, dict) or node.get("type") == "object"
    if is_object and "additionalProperties" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    return out


def load_crd_validators(schema_dir):
    validators = {}
    for key, filename in CRD_SCHEMAS.items():
        path = schema_dir / filename
        try:
            schema = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise SetupError("cannot load CRD schema %s: %s" % (path, e))
        strict = strictify(schema)
        # metadata is checked as ObjectMeta separately (the CRD only says "type: object").
        strict["properties"]["metadata"] = {"type": "object"}
        jsonschema.Draft7Validator.check_schema(strict)
        validators[key] = jsonschema.Draft7Validator(strict)  # no format_checker: formats are not checked
    return validators


# ----------------------------------------------------------- Kubernetes schemas

def resolve_k8s_version(requested):
    """'1.37', 'v1.37' or '1.37.0' -> the kubernetes-validate version string, e.g. '1.37.0'."""
    wanted = kv_utils.major_minor(requested.lstrip("v"))
    for version in dict.fromkeys(kv_utils.all_versions()):
        if kv_utils.major_minor(version) == wanted:
            return version
    raise SetupError("kubernetes-validate %s has no schemas for Kubernetes %s (it has: %s)" % (
        kubernetes_validate.version.__version__, requested,
        ", ".join(kv_utils.major_minor(v) for v in dict.fromkeys(kv_utils.all_versions()))))


def load_k8s_definitions(version):
    """The strict _definitions.json that kubernetes-validate uses for this version."""
    ref = importlib_resources.files("kubernetes_validate").joinpath(
        "kubernetes-json-schema", "v%s-local-strict" % version, "_definitions.json")
    try:
        return json.loads(ref.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SetupError("cannot read kubernetes-validate definitions for %s: %s" % (version, e))


def builtin_kinds(definitions):
    """Every (group, version, kind) that is a top-level Kubernetes API object."""
    kinds = set()
    for definition in definitions.get("$defs", {}).values():
        for gvk in definition.get("x-kubernetes-group-version-kind", []):
            kinds.add((gvk.get("group", ""), gvk.get("version", ""), gvk.get("kind", "")))
    return kinds


def object_meta_validator(definitions):
    registry = Resource.from_contents(definitions) @ Registry()
    return jsonschema.Draft202012Validator({"$ref": OBJECT_META_REF}, registry=registry)


# ------------------------------------------------------------------- checking

def _where(path):
    out = ""
    for part in path:
        out += "[%d]" % part if isinstance(part, int) else (".%s" % part if out else str(part))
    return out or "(root)"


def _describe(error, prefix=()):
    message = error.message
    if len(message) > MAX_MESSAGE:
        message = message[:MAX_MESSAGE] + "..."
    return "%s: %s" % (_where(list(prefix) + list(error.absolute_path)), message)


def _schema_errors(validator, instance, prefix=()):
    errors = sorted(validator.iter_errors(instance), key=lambda e: [str(p) for p in e.absolute_path])
    return [_describe(e, prefix) for e in errors]


class Checker:
    def __init__(self, k8s_version, schema_dir):
        self.version = resolve_k8s_version(k8s_version)
        definitions = load_k8s_definitions(self.version)
        self.builtin = builtin_kinds(definitions)
        self.object_meta = object_meta_validator(definitions)
        self.crds = load_crd_validators(schema_dir)

    def check(self, obj):
        """List of problems with one object (empty if it is valid)."""
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not re.fullmatch(r"([a-z0-9.-]+/)?v[0-9]+((alpha|beta)[0-9]+)?", api_version):
            return ["apiVersion missing or malformed: %r" % (api_version,)]
        if not isinstance(kind, str) or not re.fullmatch(r"[A-Za-z][A-Za-z0-9]*", kind):
            return ["kind missing or malformed: %r" % (kind,)]
        meta = obj.get("metadata")
        if not isinstance(meta, dict):
            return ["metadata missing or not a mapping"]

        crd = self.crds.get((api_version, kind))
        if crd is not None:
            problems = []
            if not isinstance(meta.get("name"), str) or not meta["name"]:
                problems.append("metadata.name is not set")
            problems += _schema_errors(self.object_meta, meta, ("metadata",))
            problems += _schema_errors(crd, obj)
            return problems

        group, _, version = api_version.rpartition("/")
        if (group, version, kind) not in self.builtin:
            return ["unknown kind %s %s: not a Kubernetes %s kind and no CRD schema for it in k8s/schemas" % (
                api_version, kind, kv_utils.major_minor(self.version))]
        problems = []
        if not meta.get("name") and not meta.get("generateName"):
            problems.append("metadata.name is not set")
        try:
            kubernetes_validate.validate(obj, self.version, strict=True)
        except kubernetes_validate.ValidationError as e:
            problems.append(_describe(e))
        except kv_utils.SchemaNotFoundError as e:
            problems.append(e.message)
        except Exception as e:  # noqa: BLE001 - any other failure is a failure, never a pass
            problems.append("could not validate: %s: %s" % (type(e).__name__, e))
        return problems


def _label(obj):
    kind = obj.get("kind") if isinstance(obj, dict) else None
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    name = (meta.get("name") or meta.get("generateName")) if isinstance(meta, dict) else None
    return "%s/%s" % (kind if isinstance(kind, str) and kind else "?", name if isinstance(name, str) and name else "?")


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Validate rendered Kubernetes manifests offline (strict: unknown fields and unknown kinds fail).")
    parser.add_argument("files", nargs="+", metavar="FILE", help="multi-document YAML file, or - for stdin")
    parser.add_argument("--k8s-version", default=K8S_VERSION,
                        help="Kubernetes version to validate built-in kinds against (default: %(default)s)")
    parser.add_argument("--schema-dir", type=Path, default=SCHEMA_DIR,
                        help="directory holding the CRD schemas (default: k8s/schemas of this repo)")
    args = parser.parse_args(argv)

    try:
        checker = Checker(args.k8s_version, args.schema_dir)
    except SetupError as e:
        print("validate-k8s: %s" % e, file=sys.stderr)
        return 2

    total = failed = 0
    for filename in args.files:
        source = "<stdin>" if filename == "-" else filename
        try:
            text = sys.stdin.read() if filename == "-" else Path(filename).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            total += 1
            failed += 1
            print("FAIL ?/?: cannot read %s: %s" % (source, e))
            continue
        for index, obj, problems in load_documents(text):
            total += 1
            problems = list(problems)
            if obj is not None:
                if isinstance(obj, dict):
                    problems += checker.check(obj)
                else:
                    problems.append("document is not a mapping")
            if problems:
                failed += 1
                shown = problems[:MAX_ERRORS]
                if len(problems) > MAX_ERRORS:
                    shown.append("(%d more)" % (len(problems) - MAX_ERRORS))
                print("FAIL %s: %s (%s, document %d)" % (_label(obj), "; ".join(shown), source, index))
            else:
                print("ok %s" % _label(obj))

    if total == 0:
        print("FAIL ?/?: no Kubernetes objects found in the input", file=sys.stdout)
        failed = 1
    print("validate-k8s: %d object(s) checked against Kubernetes %s, %d failed" % (
        total, kv_utils.major_minor(checker.version), failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
