"""Generate the CustomResourceDefinitions from the pydantic types (the single source of truth).

``python -m modelops.api.crdgen [--out crds/] [--check]`` writes ``crds/<plural>.yaml``; with
``--check`` it writes nothing and exits 1 when a file differs from what the types generate.

pydantic emits JSON Schema (draft 2020-12); Kubernetes wants a *structural* OpenAPI v3.0 schema
(https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema):
every node typed, no ``$ref``, nullable unions collapsed, boolean ``exclusiveMinimum``, and no
``additionalProperties: false`` beside ``properties`` (unknown fields are pruned, or rejected by
strict field validation).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel

from .common import GROUP, VERSION
from .modelmonitor import ModelMonitorSpec, ModelMonitorStatus
from .modelversion import ModelVersionSpec, ModelVersionStatus

_DROP = {"title", "discriminator"}


def _resolve(node: Any, defs: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        merged = {**_resolve(target, defs), **{k: v for k, v in node.items() if k != "$ref"}}
        return _resolve(merged, defs)
    return {k: _resolve(v, defs) for k, v in node.items() if k != "$defs"}


def _structural(node: dict[str, Any]) -> dict[str, Any]:
    """Turn one resolved pydantic schema node into a structural OpenAPI v3 node."""
    node = dict(node)
    for key in _DROP:
        node.pop(key, None)
    if "default" in node and node["default"] is None:
        node.pop("default")
    # Optional[X] → X (absence, not null, is how we say "unset").
    if node.get("x-kubernetes-int-or-string"):
        return dict(sorted(node.items()))
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"unsupported union in schema: {options}")
        inner = _structural(options[0])
        node = {**inner, **node}
    if "const" in node:
        node["enum"] = [node.pop("const")]
    if "enum" in node and "type" not in node:
        node["type"] = "string"
    for bound, base in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(node.get(bound), (int, float)) and not isinstance(node.get(bound), bool):
            node[base] = node.pop(bound)
            node[bound] = True
    if "properties" in node:
        node["type"] = "object"
        node.pop("additionalProperties", None)
        node["properties"] = {k: _structural(v) for k, v in node["properties"].items()}
    elif node.get("type") == "object" or (not node.get("type") and not node.get("x-kubernetes-int-or-string")):
        extra = node.get("additionalProperties")
        if isinstance(extra, dict) and extra:
            node["type"] = "object"
            node["additionalProperties"] = _structural(extra)
        else:
            node.pop("additionalProperties", None)
            if node.get("type") not in (None, "object"):
                pass
            elif not node.get("type") or node.get("type") == "object":
                node["type"] = "object"
                node["x-kubernetes-preserve-unknown-fields"] = True
    if "items" in node:
        node["items"] = _structural(node["items"])
    if node.get("format") == "date-time":
        node["type"] = "string"
    return dict(sorted(node.items()))


def openapi_schema(model: type[BaseModel]) -> dict[str, Any]:
    """Return the structural OpenAPI v3 schema for a pydantic model (wire names, camelCase)."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    return _structural(_resolve(raw, raw.get("$defs", {})))


def _printer(name: str, type_: str, path: str, description: str, priority: int = 0) -> dict[str, Any]:
    col: dict[str, Any] = {"name": name, "type": type_, "jsonPath": path, "description": description}
    if priority:
        col["priority"] = priority
    return col


# Rules that span fields, as CEL (https://kubernetes.io/docs/reference/using-api/cel/).
MODELVERSION_RULES = [
    {
        "rule": "has(self.version) != has(self.versionBump)",
        "message": "exactly one of spec.version and spec.versionBump must be set",
        "fieldPath": ".version",
        "reason": "FieldValueInvalid",
    },
    {
        "rule": "!has(oldSelf.version) || (has(self.version) && self.version == oldSelf.version)",
        "message": "spec.version is immutable once set; create a new ModelVersion for a new version",
        "fieldPath": ".version",
        "reason": "FieldValueForbidden",
    },
    {
        "rule": "self.model == oldSelf.model",
        "message": "spec.model is immutable",
        "fieldPath": ".model",
        "reason": "FieldValueForbidden",
    },
]
MONITOR_RULES = [
    {
        "rule": "!has(self.drift) || !has(self.drift.minRows) || !has(self.drift.maxRows) "
        "|| self.drift.minRows <= self.drift.maxRows",
        "message": "spec.drift.minRows must not exceed spec.drift.maxRows",
        "fieldPath": ".drift.minRows",
        "reason": "FieldValueInvalid",
    },
]
AUTOSCALING_RULE = {
    "rule": "self.minReplicas <= self.maxReplicas",
    "message": "minReplicas must not exceed maxReplicas",
}


def _crd(
    kind: str,
    plural: str,
    short: list[str],
    spec: type[BaseModel],
    status: type[BaseModel],
    columns: list[dict[str, Any]],
    spec_rules: list[dict[str, Any]],
) -> dict[str, Any]:
    spec_schema = openapi_schema(spec)
    spec_schema["x-kubernetes-validations"] = spec_rules
    if kind == "ModelVersion":
        spec_schema["properties"]["serving"]["properties"]["autoscaling"]["x-kubernetes-validations"] = [
            AUTOSCALING_RULE
        ]
    schema = {
        "type": "object",
        "description": f"{kind} (see docs/api.md).",
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": openapi_schema(status),
        },
    }
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}", "labels": {"app.kubernetes.io/part-of": "modelops"}},
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short,
                "categories": ["ml", "all"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def build_crds() -> dict[str, dict[str, Any]]:
    """Return ``{filename: CRD dict}`` for every kind of the API group."""
    mv = _crd(
        "ModelVersion",
        "modelversions",
        ["mv"],
        ModelVersionSpec,
        ModelVersionStatus,
        [
            _printer("Model", "string", ".spec.model", "Registered model name"),
            _printer("Version", "string", ".status.version", "Resolved semantic version"),
            _printer("Stage", "string", ".spec.stage", "Requested stage"),
            # The stage held (its MLflow alias points here), served or not (Development has no Deployment).
            _printer("Holds", "string", ".status.stage", "Stage this version holds (its MLflow alias points here)"),
            _printer("Phase", "string", ".status.phase", "Summary of the conditions"),
            _printer("Metric", "string", ".status.metricSummary", "Gate metric"),
            _printer("Rollout", "string", ".status.rollout.phase", "Progressive delivery phase as a candidate"),
            _printer("Step", "string", ".status.rollout.progress", "Rollout step of all, 1-based (shadow included)"),
            _printer("Weight", "integer", ".status.rollout.weight", "Percent of live requests the candidate answers"),
            _printer("Registry", "string", ".status.registry.version", "MLflow registry version", 1),
            _printer("URL", "string", ".status.serving.url", "Where this version serves (blank: not served)", 1),
            _printer("Age", "date", ".metadata.creationTimestamp", "Age"),
        ],
        MODELVERSION_RULES,
    )
    mm = _crd(
        "ModelMonitor",
        "modelmonitors",
        ["mm"],
        ModelMonitorSpec,
        ModelMonitorStatus,
        [
            _printer("Model", "string", ".spec.model", "Registered model name"),
            _printer("Stage", "string", ".spec.stage", "Monitored stage"),
            _printer("Schedule", "string", ".spec.schedule", "Cron schedule"),
            _printer("Drift", "boolean", ".status.drift.detected", "Dataset drift detected"),
            _printer("Share", "number", ".status.drift.share", "Drifted column share", 1),
            _printer("Health", "string", ".status.health.status", "Health verdict"),
            _printer("Last Run", "date", ".status.lastRun.time", "Newest monitoring run"),
            _printer("Age", "date", ".metadata.creationTimestamp", "Age"),
        ],
        MONITOR_RULES,
    )
    return {"modelversions.yaml": mv, "modelmonitors.yaml": mm}


def render(crd: dict[str, Any]) -> str:
    """Serialize a CRD as YAML with a generated-file header."""
    header = "# Generated by `make crds` (python -m modelops.api.crdgen) from operator/modelops/api. Do not edit.\n"
    return header + yaml.safe_dump(crd, sort_keys=False, width=120)


def main(argv: list[str] | None = None) -> int:
    """Write or check ``crds/*.yaml``. Returns the process exit code."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("crds"))
    parser.add_argument("--check", action="store_true", help="fail when the files are stale")
    args = parser.parse_args(argv)
    stale = []
    for filename, crd in build_crds().items():
        path = args.out / filename
        text = render(crd)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(str(path))
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale CRDs (run `make crds`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
