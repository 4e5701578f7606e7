"""The ModelVersions of one model without listing the namespace: kopf's index plus our own reads and writes.

kopf keeps an index of every watched ModelVersion by ``(namespace, spec.model)`` (registered in
``handlers.py``), filled from the watch stream; kopf starts no handler before the initial listing
is indexed. The watch lags the operator's own writes by a few milliseconds, which is enough for
one model-level pass to miss what the previous one just wrote, so every ModelVersion body the
operator reads (GET) or writes (status PATCH) is remembered as well, and of the two copies of an
object the fresher one is used.

"Fresher" compares ``metadata.resourceVersion`` as integers. Kubernetes documents resource
versions as opaque; kube-apiserver's are etcd revisions and the sandbox's a global counter, both
increasing integers, and nothing depends on the comparison for safety: every ModelVersion status
write carries its ``resourceVersion`` as a precondition (409 Conflict when stale, then re-read).
Where a version is not an integer, the remembered copy wins for :data:`REMEMBER_SECONDS`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

#: How long a remembered copy may stand in for the index's (watch lag, or a deletion we missed).
REMEMBER_SECONDS = 60.0

Key = tuple[str, str]


class Index(Protocol):
    """What the cache needs of ``kopf.Index``: ``key in index`` and ``index[key]`` (iterable of bodies)."""

    def __contains__(self, key: object) -> bool: ...

    def __getitem__(self, key: Key) -> Iterable[Mapping[str, Any]]: ...


def model_key(body: Mapping[str, Any]) -> Key | None:
    """``(namespace, spec.model)`` of a ModelVersion body, or None when it names no model."""
    model = (body.get("spec") or {}).get("model")
    namespace = (body.get("metadata") or {}).get("namespace")
    return (str(namespace), str(model)) if model and namespace else None


def _rv(body: Mapping[str, Any]) -> int | None:
    value = str((body.get("metadata") or {}).get("resourceVersion") or "")
    return int(value) if value.isdigit() else None


def at_least_as_fresh(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool | None:
    """Whether copy ``a`` of an object is at least as recent as copy ``b``; None when undecidable."""
    ra, rb = _rv(a), _rv(b)
    if ra is None or rb is None:
        return True if ra is not None and ra == rb else None
    return ra >= rb


class VersionCache:
    """ModelVersion bodies by model: the attached kopf index merged with the freshest bodies seen.

    Without an attached index (unit tests, tools), :meth:`bodies` returns None and callers list
    through the API instead.
    """

    def __init__(self) -> None:
        self._index: Index | None = None
        self._seen: dict[Key, dict[str, tuple[dict[str, Any], float]]] = {}
        self._gone: dict[str, float] = {}  # uids of finalized objects (never reused) -> when

    def attach(self, index: Index) -> None:
        """Use kopf's live index (the same object for the operator's lifetime)."""
        self._index = index

    @property
    def attached(self) -> bool:
        """Whether a kopf index is attached (else :meth:`bodies` returns None)."""
        return self._index is not None

    def remember(self, body: Mapping[str, Any]) -> None:
        """Remember a body just read or written (a status PATCH response is a whole body)."""
        key = model_key(body)
        uid = (body.get("metadata") or {}).get("uid")
        if key is None or not uid or uid in self._gone:
            return
        for other, seen in self._seen.items():  # spec.model is immutable; be exact anyway
            if other != key:
                seen.pop(uid, None)
        seen = self._seen.setdefault(key, {})
        previous = seen.get(uid)
        if previous is None or at_least_as_fresh(body, previous[0]) is not False:
            seen[uid] = (dict(body), time.monotonic())

    def forget(self, uid: str) -> None:
        """The object was finalized: drop its copies and ignore it from now on (also in the index,
        which keeps it until the watch reports the deletion); remembered for 10 minutes."""
        now = time.monotonic()
        self._gone = {u: t for u, t in self._gone.items() if now - t < 10 * REMEMBER_SECONDS}
        self._gone[uid] = now
        for seen in self._seen.values():
            seen.pop(uid, None)

    def latest(self, body: Mapping[str, Any]) -> dict[str, Any]:
        """The freshest of ``body``, the index's copy and the remembered copy of the same object.

        (kopf hands a timer the body of the last event it processed for the object, which can be
        older than what the index and the operator's own writes have seen since.)
        """
        key = model_key(body)
        uid = (body.get("metadata") or {}).get("uid")
        best = dict(body)
        if key is None or not uid or uid in self._gone:
            return best
        candidates: list[Mapping[str, Any]] = []
        if self._index is not None and key in self._index:  # this object's copy only, nothing copied
            candidates.extend(b for b in self._index[key] if b["metadata"].get("uid") == uid)
        remembered = self._seen.get(key, {}).get(uid)
        if remembered is not None and time.monotonic() - remembered[1] <= REMEMBER_SECONDS:
            candidates.append(remembered[0])  # last: it wins when freshness is undecidable, as in bodies()
        for candidate in candidates:
            if at_least_as_fresh(best, candidate) is not True:
                best = dict(candidate)
        return best

    def bodies(self, namespace: str, model: str) -> list[dict[str, Any]] | None:
        """Every ModelVersion of ``model`` in ``namespace`` (fresher copy of each), or None without an index."""
        if self._index is None:
            return None
        key = (namespace, model)
        found: dict[str, dict[str, Any]] = {}
        if key in self._index:
            for body in self._index[key]:
                if body["metadata"]["uid"] not in self._gone:
                    found[str(body["metadata"]["uid"])] = dict(body)
        seen = self._seen.get(key, {})
        now = time.monotonic()
        for uid, (remembered, at) in list(seen.items()):
            indexed = found.get(uid)
            fresher = at_least_as_fresh(indexed, remembered) if indexed is not None else None
            if fresher is True or now - at > REMEMBER_SECONDS:
                del seen[uid]  # the watch caught up (or the copy is too old to trust)
            else:
                found[uid] = remembered
        if not seen:
            self._seen.pop(key, None)
        return list(found.values())


__all__ = ["REMEMBER_SECONDS", "VersionCache", "at_least_as_fresh", "model_key"]
