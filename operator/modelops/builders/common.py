"""Pieces every child manifest shares: owners, names, labels, the restricted security profile, env.

Everything here is a pure function of its arguments (no I/O, no kopf, no clock), so the same
custom resource always yields byte-for-byte the same child manifests. ownerReferences are built
in exactly one place (:func:`owner_reference` / :func:`owner_references`), labels in one place
(:func:`standard_labels`), and the Pod Security "restricted" profile in one place
(:func:`pod_security_context`, :func:`container_security_context`, :func:`scratch_volumes`).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..api.common import GROUP, Resources
from ..api.modelversion import MlflowOverrides
from ..contract import ENV_TRACKING_SECRETS, ENV_TRACKING_URI, Owner
from ..settings import Settings

# --------------------------------------------------------------------------------------------
# Constants shared by all builders.
# --------------------------------------------------------------------------------------------

#: Numeric, non-root user and group the runtime image runs as (Pod Security "restricted" needs
#: ``runAsNonRoot``; a numeric uid lets the kubelet verify it without reading /etc/passwd).
RUNTIME_UID = 10001
RUNTIME_GID = 10001

#: Scratch and home directories backed by emptyDir volumes (the root filesystem is read-only).
SCRATCH_PATH = "/tmp"
HOME_PATH = "/home/modelops"
SCRATCH_SIZE_LIMIT = "2Gi"
HOME_SIZE_LIMIT = "256Mi"
SCRATCH_VOLUME = "tmp"
HOME_VOLUME = "home"
PREDICTION_LOG_VOLUME = "prediction-log"

#: Label keys. ``app.kubernetes.io/*`` are Kubernetes' recommended labels; the rest are ours.
LABEL_NAME = "app.kubernetes.io/name"
LABEL_INSTANCE = "app.kubernetes.io/instance"
LABEL_COMPONENT = "app.kubernetes.io/component"
LABEL_PART_OF = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_MODEL = f"{GROUP}/model"
LABEL_STAGE = f"{GROUP}/stage"
LABEL_VERSION = f"{GROUP}/version"

#: Annotation keys (values may hold characters labels cannot, e.g. ``1.0.0+build.7``).
ANNOTATION_VERSION = f"{GROUP}/version"
ANNOTATION_PARENT_VERSION = f"{GROUP}/parent-version"
ANNOTATION_REGISTRY_VERSION = f"{GROUP}/registry-version"
ANNOTATION_MODEL_URI = f"{GROUP}/model-uri"
ANNOTATION_SERVED_BY = f"{GROUP}/served-by"
#: On a training Job: the hash of the ``spec.training`` it trains (see ``builders.training.training_hash``).
ANNOTATION_TRAINING_HASH = f"{GROUP}/training-hash"
#: Hash of everything the builder set (see :func:`spec_hash`); lets the reconciler notice
#: fields that were removed from the desired state, which a subset comparison cannot.
ANNOTATION_DESIRED_HASH = f"{GROUP}/desired-hash"

APP_NAME = "modelops-runtime"
PART_OF = "modelops"
MANAGED_BY = "modelops-operator"

COMPONENT_TRAINING = "training"
COMPONENT_SERVING = "serving"
COMPONENT_MONITORING = "monitoring"

#: Longest name the API server accepts for most objects we create as DNS labels; the Job
#: controller copies a Job's name into a pod label value, which is also capped at 63.
MAX_NAME = 63
#: The CronJob controller appends ``-<11 digits>`` to the CronJob name for each Job, and the
#: Job name must stay within 63 characters, so CronJob names are capped at 52.
MAX_CRONJOB_NAME = 52
_HASH_LEN = 8

_LABEL_VALUE_BAD = re.compile(r"[^A-Za-z0-9._-]")
_DNS_BAD = re.compile(r"[^a-z0-9-]+")


# --------------------------------------------------------------------------------------------
# Owners.
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class ObjectRef:
    """Identity of a Kubernetes object: enough to point an ownerReference at it.

    ``order=True`` makes references sortable (by apiVersion, kind, name, namespace, uid), which
    keeps lists of owner references in a stable order whatever order the caller passes them in.
    """

    api_version: str
    kind: str
    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> ObjectRef:
        """Read the reference from an object body (a kopf ``body`` or any manifest dict).

        Raises ``ValueError`` naming the missing field when apiVersion, kind, metadata.name,
        metadata.namespace or metadata.uid is absent or empty (an object not yet created has no uid,
        and ownerReferences need one).
        """
        meta = body.get("metadata") or {}
        values = {
            "apiVersion": body.get("apiVersion"),
            "kind": body.get("kind"),
            "metadata.name": meta.get("name"),
            "metadata.namespace": meta.get("namespace"),
            "metadata.uid": meta.get("uid"),
        }
        missing = [key for key, value in values.items() if not value]
        if missing:
            raise ValueError(f"object body lacks {', '.join(missing)}; cannot reference it as an owner")
        return cls(
            api_version=str(values["apiVersion"]),
            kind=str(values["kind"]),
            name=str(values["metadata.name"]),
            namespace=str(values["metadata.namespace"]),
            uid=str(values["metadata.uid"]),
        )

    def to_owner(self) -> Owner:
        """The contract's :class:`~modelops.contract.Owner` (written as MLflow tags by the runtime).

        Raises ``pydantic.ValidationError`` when ``kind`` is neither ModelVersion nor ModelMonitor.
        """
        return Owner.model_validate(
            {"kind": self.kind, "namespace": self.namespace, "name": self.name, "uid": self.uid}
        )


def owner_reference(owner: ObjectRef, controller: bool = True, block_owner_deletion: bool = True) -> dict[str, Any]:
    """The ``metadata.ownerReferences`` entry pointing at ``owner``. The only place one is built.

    ``controller=True`` marks the owner as the managing controller (at most one per object);
    ``block_owner_deletion=True`` makes foreground deletion of the owner wait for this child.
    Garbage collection deletes the child once *all* of its owners are gone.
    """
    return {
        "apiVersion": owner.api_version,
        "kind": owner.kind,
        "name": owner.name,
        "uid": owner.uid,
        "controller": controller,
        "blockOwnerDeletion": block_owner_deletion,
    }


def owner_references(owners: Sequence[ObjectRef], controller: bool = False) -> list[dict[str, Any]]:
    """References to several owners, de-duplicated by uid and sorted, so the list is stable.

    With ``controller=True`` exactly one owner may be given (Kubernetes allows one controller).
    Raises ``ValueError`` when ``owners`` is empty, when owners live in different namespaces
    (cross-namespace owners are invalid) or when several owners would be controllers.
    """
    if not owners:
        raise ValueError("at least one owner is required")
    unique = sorted({o.uid: o for o in owners}.values())
    namespaces = {o.namespace for o in unique}
    if len(namespaces) > 1:
        raise ValueError(f"owners span several namespaces {sorted(namespaces)}; ownerReferences cannot")
    if controller and len(unique) > 1:
        raise ValueError("only one owner can be the controller")
    return [owner_reference(o, controller=controller) for o in unique]


# --------------------------------------------------------------------------------------------
# Names and label values.
# --------------------------------------------------------------------------------------------


def short_hash(text: str, length: int = _HASH_LEN) -> str:
    """First ``length`` hex digits of the SHA-256 of ``text`` (a stable, deterministic suffix)."""
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def dns_name(*parts: str, max_length: int = MAX_NAME) -> str:
    """A DNS-1123 label built from ``parts`` joined by ``-``, at most ``max_length`` characters.

    Lower-cases, turns every run of characters other than ``[a-z0-9-]`` (dots included) into
    one ``-`` and trims dashes at the ends. When the result is too long it is cut and suffixed
    with ``-<8 hex>`` (a hash of the *unsanitised* input), so distinct long inputs stay distinct
    and the same input always gives the same name. A name starting with a digit is valid for a
    DNS-1123 label but not for a Service (DNS-1035), so the result is prefixed with ``m-`` then.
    Raises ``ValueError`` when nothing name-worthy is left or ``max_length`` is below 16.
    """
    if max_length < 16:
        raise ValueError("max_length must be at least 16")
    raw = "-".join(parts)
    name = _DNS_BAD.sub("-", raw.lower()).strip("-")
    name = re.sub("-{2,}", "-", name)
    if not name:
        raise ValueError(f"cannot derive a DNS name from {parts!r}")
    if name[0].isdigit():
        name = f"m-{name}"
    if len(name) > max_length:
        keep = max_length - _HASH_LEN - 1
        name = f"{name[:keep].rstrip('-')}-{short_hash(raw)}"
    return name


def label_value(value: str) -> str:
    """A valid label value (``[A-Za-z0-9._-]``, alphanumeric ends, at most 63) from ``value``.

    Other characters (``+`` in ``1.0.0+build``) become ``_``; values that are too long are cut
    and suffixed with a hash of the original. The exact value belongs in an annotation.
    """
    out = _LABEL_VALUE_BAD.sub("_", value).strip("._-")
    if len(out) > MAX_NAME:
        out = f"{out[: MAX_NAME - _HASH_LEN - 1].rstrip('._-')}-{short_hash(value)}"
    return out


def train_job_name(mv_name: str, version: str) -> str:
    """Name of the training Job of ModelVersion ``mv_name`` at semantic ``version``.

    ``<mv_name>-<version with dots as dashes>``, bounded to 63 characters. The version is part
    of the name, so resolving a new version (a new CR) can never reuse an old Job.
    """
    return dns_name(mv_name, "v" + version)


def serving_name(model: str, stage: str) -> str:
    """Name shared by a model stage's Deployment, Service, PDB and HPA: ``<model>-<stage lower>``.

    The model name is at most 40 characters (CRD schema), so the result normally needs no
    hash; a model name starting with a digit is prefixed with ``m-`` (Services need a letter first).
    """
    return dns_name(model, stage.lower())


def drift_cronjob_name(mm_name: str) -> str:
    """Name of ModelMonitor ``mm_name``'s drift CronJob: ``<mm_name>-drift``, at most 52 chars."""
    return dns_name(mm_name, "drift", max_length=MAX_CRONJOB_NAME)


# --------------------------------------------------------------------------------------------
# Labels.
# --------------------------------------------------------------------------------------------


def selector_labels(component: str, model: str, stage: str | None = None) -> dict[str, str]:
    """The immutable subset of labels used in selectors: component, model and (optionally) stage.

    Never includes the version, so a promotion or rollback changes the pod template but not the
    Deployment's (immutable) selector.
    """
    labels = {LABEL_COMPONENT: component, LABEL_MODEL: label_value(model)}
    if stage is not None:
        labels[LABEL_STAGE] = label_value(stage)
    return labels


def standard_labels(
    *,
    component: str,
    instance: str,
    model: str,
    stage: str | None = None,
    version: str | None = None,
) -> dict[str, str]:
    """All labels of a child object and its pods. The one function that builds labels.

    ``component`` is training, serving or monitoring; ``instance`` the child's name; ``model``
    the registered model; ``stage`` the CR stage as written (e.g. ``Production``); ``version``
    the semantic version (made label-safe with :func:`label_value`). Returns a new dict.
    """
    labels = {
        LABEL_NAME: APP_NAME,
        LABEL_INSTANCE: label_value(instance),
        LABEL_PART_OF: PART_OF,
        LABEL_MANAGED_BY: MANAGED_BY,
        **selector_labels(component, model, stage),
    }
    if version is not None:
        labels[LABEL_VERSION] = label_value(version)
    return labels


# --------------------------------------------------------------------------------------------
# Security: the Pod Security Standards "restricted" profile.
# --------------------------------------------------------------------------------------------


def pod_security_context() -> dict[str, Any]:
    """Pod-level securityContext of the restricted profile.

    Non-root numeric uid/gid, ``fsGroup`` so mounted volumes (emptyDir, the prediction-log PVC)
    are writable by that group, and the container runtime's default seccomp profile.
    """
    return {
        "runAsNonRoot": True,
        "runAsUser": RUNTIME_UID,
        "runAsGroup": RUNTIME_GID,
        "fsGroup": RUNTIME_GID,
        "fsGroupChangePolicy": "OnRootMismatch",
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def job_pod_spec(container: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """The pod spec of a runtime Job (training, drift): one container, never restarted in place (the
    Job's backoffLimit and podFailurePolicy decide retries), no service-account token, no service
    links, the restricted Pod Security profile."""
    return {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": volumes,
    }


def container_security_context() -> dict[str, Any]:
    """Container-level securityContext of the restricted profile, with a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def scratch_volumes() -> list[dict[str, Any]]:
    """emptyDir volumes for ``/tmp`` and ``$HOME``: the only writable paths besides mounted data."""
    return [
        {"name": SCRATCH_VOLUME, "emptyDir": {"sizeLimit": SCRATCH_SIZE_LIMIT}},
        {"name": HOME_VOLUME, "emptyDir": {"sizeLimit": HOME_SIZE_LIMIT}},
    ]


#: Volume name of the data volume (settings.data_volume_claim) in training and drift pods.
DATA_VOLUME = "data"


def data_volume(settings: Settings) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(volumes, volumeMounts) of the data volume: ``settings.data_volume_claim`` mounted read-only
    at the first ``settings.data_path_prefixes`` entry (default /var/lib/modelops/data), or none."""
    if not (settings.data_volume_claim and settings.data_path_prefixes):
        return [], []
    claim = {"claimName": settings.data_volume_claim, "readOnly": True}
    return (
        [{"name": DATA_VOLUME, "persistentVolumeClaim": claim}],
        [{"name": DATA_VOLUME, "mountPath": settings.data_path_prefixes[0], "readOnly": True}],
    )


def scratch_mounts() -> list[dict[str, Any]]:
    """volumeMounts for :func:`scratch_volumes`."""
    return [
        {"name": SCRATCH_VOLUME, "mountPath": SCRATCH_PATH},
        {"name": HOME_VOLUME, "mountPath": HOME_PATH},
    ]


def base_env() -> list[dict[str, Any]]:
    """Env every runtime container gets: HOME and TMPDIR on the emptyDirs, no .pyc writes."""
    return [
        {"name": "HOME", "value": HOME_PATH},
        {"name": "TMPDIR", "value": SCRATCH_PATH},
        {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
    ]


# --------------------------------------------------------------------------------------------
# MLflow env, prediction log storage, resources.
# --------------------------------------------------------------------------------------------


def mlflow_env(settings: Settings, overrides: MlflowOverrides | None = None) -> list[dict[str, Any]]:
    """MLflow client env: the tracking URI, and credentials only as optional ``secretKeyRef``.

    The tracking URI is ``overrides.tracking_uri`` when set, else ``settings.mlflow_tracking_uri``.
    The credentials Secret is ``overrides.credentials_secret`` when set, else
    ``settings.mlflow_credentials_secret``; each of MLFLOW_TRACKING_USERNAME/PASSWORD/TOKEN is
    read from the key of the same name with ``optional: true`` (a Secret holding only a token, or
    only a username and password, works). Without a Secret no credential variable is set. No
    secret value ever appears in a manifest.
    """
    uri = (overrides.tracking_uri if overrides else None) or settings.mlflow_tracking_uri
    secret = (overrides.credentials_secret if overrides else None) or settings.mlflow_credentials_secret
    env: list[dict[str, Any]] = [{"name": ENV_TRACKING_URI, "value": uri}]
    if secret:
        env.extend(
            {"name": key, "valueFrom": {"secretKeyRef": {"name": secret, "key": key, "optional": True}}}
            for key in ENV_TRACKING_SECRETS
        )
    return env


def local_path(uri: str) -> str | None:
    """The filesystem path of a local fsspec URI (``/x`` or ``file:///x``); None for remote URIs."""
    if uri.startswith("file://"):
        return uri[len("file://") :] or None
    if "://" in uri:
        return None
    return uri if uri.startswith("/") else None


def resources_dict(resources: Resources | None, default: Resources | None = None) -> dict[str, Any]:
    """``resources`` as a container ResourceRequirements dict; ``default`` when it is None.

    The CR's value is used as a whole (never merged key by key with the default, which could
    produce a request above a limit). Returns ``{}`` when both are None.
    """
    chosen = resources if resources is not None else default
    return chosen.to_wire() if chosen is not None else {}


# --------------------------------------------------------------------------------------------
# Diffing desired against observed.
# --------------------------------------------------------------------------------------------

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][-+]?[0-9]+|[numkMGTPE]|[KMGTPE]i)?$")
_SUFFIX = {
    None: 1,
    "n": 10**-9,
    "u": 10**-6,
    "m": 10**-3,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
_QUANTITY_KEYS = {"sizeLimit"}


def _quantity(value: Any) -> float | None:
    """Numeric value of a Kubernetes quantity (``500m``, ``1Gi``, ``1e3``, 2), or None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        return None
    match = _QUANTITY.match(value)
    if not match:
        return None
    number, suffix = match.groups()
    try:
        base = float(number)
    except ValueError:
        return None
    if suffix and suffix[0] in "eE" and len(suffix) > 1:
        return base * 10 ** int(suffix[1:])
    return base * _SUFFIX[suffix]


def _canonical(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The manifest without status and without the desired-hash annotation (what the hash covers)."""
    out = {k: v for k, v in obj.items() if k != "status"}
    meta = dict(out.get("metadata") or {})
    annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k != ANNOTATION_DESIRED_HASH}
    if annotations:
        meta["annotations"] = annotations
    else:
        meta.pop("annotations", None)
    out["metadata"] = meta
    return out


def spec_hash(obj: Mapping[str, Any]) -> str:
    """Stable 16-hex-digit hash of everything a builder set in ``obj`` (status and the hash excluded).

    Key order does not matter (canonical JSON with sorted keys); list order does.
    """
    text = json.dumps(_canonical(obj), sort_keys=True, separators=(",", ":"), default=str)
    return short_hash(text, 16)


def with_desired_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """Set the :data:`ANNOTATION_DESIRED_HASH` annotation of ``obj`` in place and return it."""
    meta = obj.setdefault("metadata", {})
    meta.setdefault("annotations", {})[ANNOTATION_DESIRED_HASH] = spec_hash(obj)
    return obj


def _is_empty(value: Any) -> bool:
    # Go's ``omitempty`` drops empty strings, maps and lists from what the API server returns.
    return value is None or (isinstance(value, str | dict | list) and not value)


def _subset(desired: Any, observed: Any, key: str | None) -> bool:
    """True when every field set in ``desired`` has the same value in ``observed``.

    Like Kubernetes' ``equality.Semantic.DeepDerivative``: keys that ``desired`` does not set
    (or sets to None/empty) are ignored, so defaults filled in by the API server do not count;
    lists compare element-wise and must have the same length; quantities under requests, limits
    and sizeLimit compare by value (``1Gi`` == ``1024Mi``, ``0.5`` == ``500m``).
    """
    if _is_empty(desired):
        return True
    if isinstance(desired, Mapping):
        if not isinstance(observed, Mapping):
            return False
        return all(_subset(v, observed.get(k), k) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(observed, list) or len(desired) != len(observed):
            return False
        return all(_subset(d, o, key) for d, o in zip(desired, observed, strict=True))
    if key in _QUANTITY_KEYS or _parent_is_quantity_map(key):
        left, right = _quantity(desired), _quantity(observed)
        if left is not None and right is not None:
            return abs(left - right) <= 1e-9 * max(abs(left), abs(right), 1.0)
    return bool(desired == observed)


def _parent_is_quantity_map(key: str | None) -> bool:
    # Keys inside requests/limits maps: cpu, memory, ephemeral-storage, hugepages-*, vendor/gpu.
    return key in {"cpu", "memory", "ephemeral-storage"} or (key or "").startswith("hugepages-")


def desired_differs(desired: Mapping[str, Any], observed: Mapping[str, Any] | None) -> bool:
    """Whether the observed child must be updated to match the desired manifest.

    True when ``observed`` is None, when its :data:`ANNOTATION_DESIRED_HASH` differs from the
    desired one (the builder's output changed, including fields that were *removed*), or when
    any field the builder sets differs in ``observed`` (someone edited the child). Fields the
    API server or other controllers add (defaults, ``status``, extra labels and annotations,
    ``deployment.kubernetes.io/revision``, Job controller labels) are ignored, so comparing a
    freshly created child with its desired manifest is False and reconciling never loops.
    """
    if observed is None:
        return True
    want = (desired.get("metadata") or {}).get("annotations", {}).get(ANNOTATION_DESIRED_HASH)
    have = ((observed.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_DESIRED_HASH)
    if want is not None and want != have:
        return True
    return not _subset({k: v for k, v in desired.items() if k != "status"}, observed, None)
