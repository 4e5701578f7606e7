"""The resource types the emulator serves: built-in kinds and the kinds of registered CRDs."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

#: Verbs every served resource supports (as listed in discovery).
VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

#: (group, plural) — the storage identity of a resource, whatever version is requested.
ResourceKey = tuple[str, str]


@dataclass(frozen=True)
class ResourceType:
    """One served resource.

    Attributes:
        group: API group, ``""`` for the core group.
        versions: served versions; the first is the preferred (and storage) version.
        plural, kind, singular: names as in discovery.
        namespaced: whether objects live in namespaces.
        short_names, categories: discovery aliases (``mv``; ``all``).
        status: whether it has a ``status`` subresource (then writes to the main resource keep
            the stored status and ``/status`` writes change only status).
        generation: whether ``metadata.generation`` is maintained (bumped on spec changes).
        crd: the CustomResourceDefinition object for custom resources, else None.
    """

    group: str
    versions: tuple[str, ...]
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False
    generation: bool = False
    crd: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def key(self) -> ResourceKey:
        """The storage identity ``(group, plural)``."""
        return (self.group, self.plural)

    def api_version(self, version: str | None = None) -> str:
        """``group/version`` (or ``version`` for the core group) of ``version`` or the preferred one."""
        version = version or self.versions[0]
        return f"{self.group}/{version}" if self.group else version

    @property
    def is_custom(self) -> bool:
        """True for kinds defined by a CRD."""
        return self.crd is not None

    def crd_version(self, version: str | None = None) -> dict[str, Any]:
        """The CRD's ``spec.versions[]`` entry of ``version`` (or the preferred one); {} for built-ins."""
        version = version or self.versions[0]
        for entry in (self.crd or {}).get("spec", {}).get("versions", []):
            if entry.get("name") == version:
                return dict(entry)
        return {}

    def schema(self, version: str | None = None) -> dict[str, Any] | None:
        """The ``openAPIV3Schema`` of a custom resource version, or None."""
        return self.crd_version(version).get("schema", {}).get("openAPIV3Schema")


def _builtin(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    status: bool = False,
    generation: bool = False,
    categories: tuple[str, ...] = (),
) -> ResourceType:
    return ResourceType(
        group, (version,), plural, kind, namespaced, kind.lower(), short, categories, status, generation
    )


#: Built-in kinds used by the operator, kopf and kubectl.
BUILTINS: tuple[ResourceType, ...] = (
    _builtin("", "v1", "namespaces", "Namespace", namespaced=False, short=("ns",), status=True),
    _builtin("", "v1", "events", "Event", short=("ev",)),
    _builtin("", "v1", "secrets", "Secret"),
    _builtin("", "v1", "configmaps", "ConfigMap", short=("cm",)),
    _builtin("", "v1", "services", "Service", short=("svc",), status=True, categories=("all",)),
    _builtin("", "v1", "endpoints", "Endpoints", short=("ep",)),
    _builtin("", "v1", "pods", "Pod", short=("po",), status=True, categories=("all",)),
    _builtin("", "v1", "serviceaccounts", "ServiceAccount", short=("sa",)),
    _builtin("batch", "v1", "jobs", "Job", status=True, generation=True, categories=("all",)),
    _builtin("batch", "v1", "cronjobs", "CronJob", short=("cj",), status=True, generation=True, categories=("all",)),
    _builtin(
        "apps", "v1", "deployments", "Deployment", short=("deploy",), status=True, generation=True, categories=("all",)
    ),
    _builtin(
        "apps", "v1", "replicasets", "ReplicaSet", short=("rs",), status=True, generation=True, categories=("all",)
    ),
    _builtin(
        "policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",), status=True, generation=True
    ),
    _builtin(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        short=("hpa",),
        status=True,
        generation=True,
    ),
    _builtin("coordination.k8s.io", "v1", "leases", "Lease"),
    _builtin("events.k8s.io", "v1", "events", "Event", short=("ev",)),
    ResourceType(
        "apiextensions.k8s.io",
        ("v1",),
        "customresourcedefinitions",
        "CustomResourceDefinition",
        namespaced=False,
        singular="customresourcedefinition",
        short_names=("crd", "crds"),
        categories=("api-extensions",),
        status=True,
        generation=True,
    ),
)


class CrdError(ValueError):
    """A CRD object lacks what the emulator needs to serve it (group, names, versions)."""


def resource_from_crd(crd: dict[str, Any]) -> ResourceType:
    """Build the served resource of a ``CustomResourceDefinition`` object.

    Raises:
        CrdError: required fields are missing or no version is served.
    """
    try:
        spec = crd["spec"]
        names = spec["names"]
        group, plural, kind = spec["group"], names["plural"], names["kind"]
        entries = [v for v in spec["versions"] if v.get("served", True)]
    except (KeyError, TypeError) as exc:
        raise CrdError(f"CRD {crd.get('metadata', {}).get('name')!r} lacks {exc}") from exc
    if not entries:
        raise CrdError(f"CRD {crd.get('metadata', {}).get('name')!r} serves no version")
    entries.sort(key=lambda v: not v.get("storage"))  # storage version first
    return ResourceType(
        group=group,
        versions=tuple(v["name"] for v in entries),
        plural=plural,
        kind=kind,
        namespaced=spec.get("scope", "Namespaced") == "Namespaced",
        singular=names.get("singular") or kind.lower(),
        short_names=tuple(names.get("shortNames") or ()),
        categories=tuple(names.get("categories") or ()),
        status="status" in (entries[0].get("subresources") or {}),
        generation=True,
        crd=crd,
    )


def read_crds(directory: Path) -> list[dict[str, Any]]:
    """All ``CustomResourceDefinition`` documents of ``directory/*.yaml`` (sorted by file name)."""
    crds = []
    for path in sorted(directory.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                crds.append(doc)
    return crds


class Catalogue:
    """Lookup of served resources by URL parts and by storage key; CRDs can be added and removed."""

    def __init__(self, builtins: tuple[ResourceType, ...] = BUILTINS) -> None:
        self._by_key: dict[ResourceKey, ResourceType] = {}
        for rt in builtins:
            self.add(rt)

    def add(self, rt: ResourceType) -> None:
        """Serve ``rt`` (replacing a resource with the same group and plural)."""
        self._by_key[rt.key] = rt

    def remove(self, key: ResourceKey) -> None:
        """Stop serving the resource ``(group, plural)``; no error if it is not served."""
        self._by_key.pop(key, None)

    def get(self, key: ResourceKey) -> ResourceType | None:
        """The resource with storage key ``(group, plural)``, or None."""
        return self._by_key.get(key)

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The resource served at ``/apis/group/version/plural`` (or ``/api/version/plural``), or None."""
        rt = self._by_key.get((group, plural))
        return rt if rt is not None and version in rt.versions else None

    def __iter__(self) -> Iterator[ResourceType]:
        return iter(sorted(self._by_key.values(), key=lambda rt: (rt.group, rt.plural)))

    def groups(self) -> dict[str, list[str]]:
        """Served groups (without the core group) and their versions, preferred first."""
        out: dict[str, list[str]] = {}
        for rt in self:
            if rt.group:
                versions = out.setdefault(rt.group, [])
                versions += [v for v in rt.versions if v not in versions]
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        """Resources served in ``group/version``."""
        return [rt for rt in self if rt.group == group and version in rt.versions]
