"""Defaulting and the few validations of built-in kinds that an operator most often trips over.

Defaults (a subset of kube-apiserver's, the ones that show up in objects an operator reads back
and compares): Namespace phase/finalizer/name label; Pod spec (``restartPolicy``,
``dnsPolicy``, ``schedulerName``, ``securityContext``, ``terminationGracePeriodSeconds``;
containers' ``imagePullPolicy``, ``terminationMessagePath/Policy``, ``resources``, port
``protocol``, probe timings; secret/configMap volume ``defaultMode``); Deployment
(``replicas``, ``revisionHistoryLimit``, ``progressDeadlineSeconds``, ``strategy``);
ReplicaSet ``replicas``; Job (``parallelism``, ``completions``, ``backoffLimit``,
``completionMode``, ``suspend``, ``podReplacementPolicy``, and the generated
``controller-uid``/``job-name`` selector and labels); CronJob (``concurrencyPolicy``,
``suspend``, history limits); Service (``type``, ``sessionAffinity``, an allocated
``clusterIP``, port ``protocol``/``targetPort``, IP family fields).

Validations: object names and labels; containers need a name and an image; a Job's (or a
CronJob's job template's) ``restartPolicy`` must be ``OnFailure`` or ``Never``; a Deployment or
ReplicaSet needs a selector that matches its template labels; a Service needs ports; the
immutable fields of Jobs (``selector``, ``template``, ``completions``), Deployments/ReplicaSets
(``selector``) and Services (``clusterIP``).
"""

from __future__ import annotations

import itertools
import re
from typing import Any

from ...api.openapi import FieldError, go_value
from .catalogue import ResourceType

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"
_QUALIFIED = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_IPS = itertools.count(10)


def _matches(regex: str, value: str) -> bool:
    return re.fullmatch(regex, value) is not None


_NAME_RULES = {
    "services": (
        _DNS1035,
        63,
        "RFC 1035 label",
        "'my-name',  or 'abc-123'",
        "consist of lower case alphanumeric characters or '-', start with an alphabetic character, "
        "and end with an alphanumeric character",
    ),
    "namespaces": (
        _LABEL,
        63,
        "RFC 1123 label",
        "'my-name',  or '123-abc'",
        "consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character",
    ),
    "": (
        _SUBDOMAIN,
        253,
        "RFC 1123 subdomain",
        "'example.com'",
        "consist of lower case alphanumeric characters, '-' or '.', and must start and end with an "
        "alphanumeric character",
    ),
}


def name_errors(rt: ResourceType, name: str) -> list[FieldError]:
    """Validate ``metadata.name`` as a DNS subdomain (labels for namespaces, DNS-1035 for services)."""
    regex, limit, what, example, rule = _NAME_RULES.get(rt.plural if not rt.group else "", _NAME_RULES[""])
    if len(name) > limit:
        message = f"Invalid value: {go_value(name)}: must be no more than {limit} characters"
        return [FieldError("metadata.name", message)]
    if not _matches(regex, name):
        message = f"a lowercase {what} must {rule} (e.g. {example}, regex used for validation is '{regex}')"
        return [FieldError("metadata.name", f"Invalid value: {go_value(name)}: {message}")]
    return []


def _key_errors(field: str, key: str) -> list[FieldError]:
    prefix, _, name = key.rpartition("/")
    ok = 0 < len(name) <= 63 and _matches(_QUALIFIED, name) and (not prefix or _matches(_SUBDOMAIN, prefix))
    if ok:
        return []
    message = (
        "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an "
        "alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', "
        f"regex used for validation is '{_QUALIFIED}')"
    )
    return [FieldError(field, f"Invalid value: {go_value(key)}: {message}")]


def metadata_errors(rt: ResourceType, obj: dict[str, Any]) -> list[FieldError]:
    """Validate name, label keys and values, and annotation keys of an object."""
    meta = obj.get("metadata") or {}
    errors = name_errors(rt, str(meta.get("name", "")))
    for key, value in (meta.get("labels") or {}).items():
        errors += _key_errors("metadata.labels", str(key))
        if not isinstance(value, str) or len(value) > 63 or not _matches(_LABEL_VALUE, value):
            message = (
                "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', "
                "and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or "
                f"'12345', regex used for validation is '{_LABEL_VALUE}')"
            )
            errors.append(FieldError("metadata.labels", f"Invalid value: {go_value(value)}: {message}"))
    for key, value in (meta.get("annotations") or {}).items():
        errors += _key_errors("metadata.annotations", str(key))
        if not isinstance(value, str):
            errors.append(FieldError("metadata.annotations", f"Invalid value: {go_value(value)}: must be a string"))
    return errors


# -- defaulting ------------------------------------------------------------------------------
def _probe(probe: Any) -> None:
    if isinstance(probe, dict):
        for key, value in (
            ("timeoutSeconds", 1),
            ("periodSeconds", 10),
            ("successThreshold", 1),
            ("failureThreshold", 3),
        ):
            probe.setdefault(key, value)
        if isinstance(probe.get("httpGet"), dict):
            probe["httpGet"].setdefault("scheme", "HTTP")


def _container(container: dict[str, Any]) -> None:
    image = str(container.get("image", ""))
    tag = image.rsplit("/", 1)[-1]
    untagged = ":" not in tag and "@" not in tag
    container.setdefault("imagePullPolicy", "Always" if untagged or tag.endswith(":latest") else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
    for key in ("readinessProbe", "livenessProbe", "startupProbe"):
        _probe(container.get(key))


def pod_spec_defaults(spec: Any) -> None:
    """Default a PodSpec in place (see the module docstring)."""
    if not isinstance(spec, dict):
        return
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("terminationGracePeriodSeconds", 30)
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        if isinstance(container, dict):
            _container(container)
    for volume in spec.get("volumes") or []:
        for source in ("secret", "configMap"):
            if isinstance(volume, dict) and isinstance(volume.get(source), dict):
                volume[source].setdefault("defaultMode", 420)


def _template_spec(spec: dict[str, Any]) -> None:
    template = spec.get("template")
    if isinstance(template, dict):
        pod_spec_defaults(template.get("spec"))


def _job_defaults(spec: dict[str, Any], meta: dict[str, Any], creating: bool) -> None:
    if "completions" not in spec and "parallelism" not in spec:
        spec["completions"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    if creating and not spec.get("manualSelector") and meta.get("uid"):
        generated = {
            "batch.kubernetes.io/controller-uid": meta["uid"],
            "batch.kubernetes.io/job-name": meta["name"],
            "controller-uid": meta["uid"],
            "job-name": meta["name"],
        }
        spec.setdefault("selector", {"matchLabels": {"batch.kubernetes.io/controller-uid": meta["uid"]}})
        template = spec.setdefault("template", {})
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        for key, value in generated.items():
            labels.setdefault(key, value)
    _template_spec(spec)


def _service_defaults(spec: dict[str, Any], old: dict[str, Any] | None) -> None:
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    old_spec = (old or {}).get("spec") or {}
    if spec["type"] != "ExternalName":
        if "clusterIP" not in spec and old_spec.get("clusterIP"):
            spec["clusterIP"] = old_spec["clusterIP"]
            spec.setdefault("clusterIPs", old_spec.get("clusterIPs") or [old_spec["clusterIP"]])
        if "clusterIP" not in spec:
            n = next(_IPS)
            spec["clusterIP"] = f"10.96.{n // 250}.{n % 250 + 1}"
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
        if spec["clusterIP"] != "None":
            spec.setdefault("ipFamilies", ["IPv4"])
            spec.setdefault("ipFamilyPolicy", "SingleStack")
        spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])


def apply_defaults(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    """Default a built-in object in place (``old`` is the stored object on updates, else None)."""
    meta = obj.setdefault("metadata", {})
    spec = obj.get("spec")
    creating = old is None
    if rt.key == ("", "namespaces"):
        meta.setdefault("labels", {}).setdefault("kubernetes.io/metadata.name", meta.get("name"))
        if creating:
            obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
            obj["status"] = {"phase": "Active"}
        return
    if not isinstance(spec, dict):
        return
    if rt.key == ("", "pods"):
        pod_spec_defaults(spec)
        if creating:
            obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif rt.key == ("apps", "deployments"):
        spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        spec.setdefault("progressDeadlineSeconds", 600)
        strategy = spec.setdefault("strategy", {"type": "RollingUpdate"})
        if strategy.get("type", "RollingUpdate") == "RollingUpdate":
            strategy.setdefault("type", "RollingUpdate")
            strategy.setdefault("rollingUpdate", {}).setdefault("maxUnavailable", "25%")
            strategy["rollingUpdate"].setdefault("maxSurge", "25%")
        _template_spec(spec)
    elif rt.key == ("apps", "replicasets"):
        spec.setdefault("replicas", 1)
        _template_spec(spec)
    elif rt.key == ("batch", "jobs"):
        _job_defaults(spec, meta, creating)
    elif rt.key == ("batch", "cronjobs"):
        spec.setdefault("concurrencyPolicy", "Allow")
        spec.setdefault("suspend", False)
        spec.setdefault("successfulJobsHistoryLimit", 3)
        spec.setdefault("failedJobsHistoryLimit", 1)
        job_template = spec.get("jobTemplate")
        if isinstance(job_template, dict) and isinstance(job_template.get("spec"), dict):
            _template_spec(job_template["spec"])
    elif rt.key == ("", "services"):
        _service_defaults(spec, old)


# -- validation ------------------------------------------------------------------------------
def _pod_spec_errors(spec: Any, field: str, restart: tuple[str, ...]) -> list[FieldError]:
    if not isinstance(spec, dict):
        return [FieldError(field, "Required value")]
    errors = []
    containers = spec.get("containers")
    if not containers:
        errors.append(FieldError(f"{field}.containers", "Required value", "FieldValueRequired"))
    for i, container in enumerate(containers or []):
        for key in ("name", "image"):
            if not isinstance(container, dict) or not container.get(key):
                errors.append(FieldError(f"{field}.containers[{i}].{key}", "Required value", "FieldValueRequired"))
    policy = spec.get("restartPolicy")
    if policy not in restart:
        supported = ", ".join(go_value(r) for r in restart)
        errors.append(
            FieldError(
                f"{field}.restartPolicy",
                f"Unsupported value: {go_value(policy)}: supported values: {supported}",
                "FieldValueNotSupported",
            )
        )
    return errors


def _selector_errors(spec: dict[str, Any]) -> list[FieldError]:
    selector = spec.get("selector")
    if not isinstance(selector, dict) or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        return [FieldError("spec.selector", "Required value", "FieldValueRequired")]
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    wanted = selector.get("matchLabels") or {}
    if any(labels.get(k) != v for k, v in wanted.items()):
        return [
            FieldError(
                "spec.template.metadata.labels",
                f"Invalid value: {go_value(labels)}: `selector` does not match template `labels`",
            )
        ]
    return []


def _immutable(spec: dict[str, Any], old: dict[str, Any], fields: tuple[str, ...]) -> list[FieldError]:
    old_spec = old.get("spec") or {}
    return [
        FieldError(f"spec.{f}", f"Invalid value: {go_value(spec.get(f))}: field is immutable")
        for f in fields
        if spec.get(f) != old_spec.get(f)
    ]


def validate(rt: ResourceType, obj: dict[str, Any], old: dict[str, Any] | None) -> list[FieldError]:
    """The validations listed in the module docstring; ``old`` is the stored object on updates."""
    errors = metadata_errors(rt, obj)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        return errors
    always = ("Always", "OnFailure", "Never")
    if rt.key == ("", "pods"):
        errors += _pod_spec_errors(spec, "spec", always)
    elif rt.key in (("apps", "deployments"), ("apps", "replicasets")):
        errors += _selector_errors(spec)
        errors += _pod_spec_errors((spec.get("template") or {}).get("spec"), "spec.template.spec", ("Always",))
        if old is not None:
            errors += _immutable(spec, old, ("selector",))
    elif rt.key == ("batch", "jobs"):
        errors += _pod_spec_errors(
            (spec.get("template") or {}).get("spec"), "spec.template.spec", ("OnFailure", "Never")
        )
        if old is not None:
            errors += _immutable(spec, old, ("selector", "template", "completions"))
    elif rt.key == ("batch", "cronjobs"):
        if not spec.get("schedule"):
            errors.append(FieldError("spec.schedule", "Required value", "FieldValueRequired"))
        job_spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        errors += _pod_spec_errors(
            (job_spec.get("template") or {}).get("spec"), "spec.jobTemplate.spec.template.spec", ("OnFailure", "Never")
        )
    elif rt.key == ("", "services"):
        if not spec.get("ports") and spec.get("clusterIP") != "None" and spec.get("type") != "ExternalName":
            errors.append(FieldError("spec.ports", "Required value", "FieldValueRequired"))
        if old is not None:
            errors += _immutable(spec, old, ("clusterIP",))
    return errors
