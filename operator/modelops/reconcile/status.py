"""Write a status through the status subresource only when it changed, and post transition Events."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ValidationError

from ..api.common import Condition, set_condition
from ..clients.kube import KubeClient, NotFound, Resource
from ..contract import REFUSAL_REASONS
from .context import EventPoster

#: Condition reporting whether MLflow answered the last reconcile (present once it failed).
REGISTRY_CONDITION = "RegistryReachable"
#: Registered=False reasons that keep a ModelVersion from training and from taking a stage.
ADMISSION_REASONS = ("VersionConflict", "ModelOwnedElsewhere")
#: Condition reasons that make a ModelVersion's phase Failed (see model.summarise; never read from Ready).
FAILED_REASONS = frozenset(
    {"InvalidSpec", "TrainingFailed", "VersionConflict", "ModelOwnedElsewhere", "RunNotFound", "VersionDeleted"}
)
#: Ready=False reasons of a ModelMonitor that are failures (Warning Events), not waiting.
MONITOR_FAILED_REASONS = frozenset({"RunFailed", "JobFailed", "ModelOwnedElsewhere"})


def mark_registry_reachable(conditions: list[Condition], generation: int | None) -> None:
    """Flip ``RegistryReachable`` back to True after an outage (no-op when it never failed)."""
    if any(c.type == REGISTRY_CONDITION and c.status != "True" for c in conditions):
        set_condition(conditions, REGISTRY_CONDITION, "True", "RegistryAvailable", "MLflow answers again", generation)


def mark_registry_unavailable(conditions: list[Condition], error: Exception, generation: int | None) -> None:
    """Set ``RegistryReachable=False`` with the error: the reconcile stops here and kopf retries with backoff."""
    set_condition(
        conditions,
        REGISTRY_CONDITION,
        "False",
        "RegistryUnavailable",
        f"MLflow unreachable, retrying with backoff: {error}",
        generation,
    )


def mark_invalid_spec(conditions: list[Condition], error: ValidationError | str, generation: int | None) -> None:
    """Set ``Ready=False, reason=InvalidSpec`` naming the first invalid field (``spec.<path>: <message>``).

    ``error``: the spec's ValidationError, or that message already formed (a check the CRD schema
    cannot make, e.g. against the operator's settings).
    """
    if isinstance(error, ValidationError):
        first = error.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        error = f"spec.{where}: {first['msg']}"
    set_condition(conditions, "Ready", "False", "InvalidSpec", error, generation)


def mark_invalid_field(conditions: list[Condition], field: str, message: str, generation: int | None) -> None:
    """Set ``Ready=False, reason=InvalidSpec`` with ``<field>: <message>`` (a field the operator's policy refuses)."""
    mark_invalid_spec(conditions, f"{field}: {message}", generation)


def parse_status(model: type[BaseModel], raw: Mapping[str, Any] | None) -> Any:
    """Parse a stored status; an unreadable one (written by another version) starts empty."""
    try:
        return model.model_validate(dict(raw or {}))
    except ValidationError:
        return model()


def status_patch(old: Mapping[str, Any] | None, new: dict[str, Any]) -> dict[str, Any] | None:
    """A JSON merge patch (RFC 7386) turning ``old`` into ``new``, or None when they are equal.

    Nested objects are diffed too, and keys dropped at any depth are set to null: a merge patch
    merges objects, so sending a nested object whole would keep the keys it no longer has
    (e.g. ``promotion.comparedTo`` once there is no incumbent).
    """
    old = dict(old or {})
    if old == new:
        return None
    patch: dict[str, Any] = {}
    for key, value in new.items():
        before = old.get(key)
        if before == value:
            continue
        nested = status_patch(before, value) if isinstance(before, Mapping) and isinstance(value, dict) else None
        patch[key] = nested if nested is not None else value
    for key in old.keys() - new.keys():
        patch[key] = None
    return patch or None


async def write_status(
    kube: KubeClient, res: Resource, body: Mapping[str, Any], status: BaseModel, *, precondition: bool = False
) -> dict[str, Any] | None:
    """Patch ``status`` of the object when it differs from the stored one.

    Returns the object as written (the PATCH response), or None when nothing was written
    (unchanged, or the object vanished: a 404 is not an error, there is nothing left to report on).
    With ``precondition`` the patch carries ``body``'s ``metadata.resourceVersion``, so a status
    computed from a stale body is refused instead of overwriting a newer one.

    Raises:
        Conflict: with ``precondition``, the object changed since ``body`` was read.
    """
    wire = status.model_dump(by_alias=True, exclude_none=True, mode="json")
    patch = status_patch(body.get("status"), wire)
    if patch is None:
        return None
    meta = body["metadata"]
    request: dict[str, Any] = {"status": patch}
    if precondition and meta.get("resourceVersion"):
        request["metadata"] = {"resourceVersion": meta["resourceVersion"]}
    try:
        return await kube.patch(res, meta["namespace"], meta["name"], request, subresource="status")
    except NotFound:
        return None


def post_transitions(post: EventPoster, body: Mapping[str, Any], old: list[Condition], new: list[Condition]) -> None:
    """Post one Event per condition whose status or reason changed (transitions only)."""
    before = {c.type: (c.status, c.reason) for c in old}
    for cond in new:
        if before.get(cond.type) == (cond.status, cond.reason):
            continue
        if cond.type == "RegistryDrift" and cond.status == "True":
            continue  # each repair posts its own Warning Event (model.plan_registry), not only the first
        warning = (
            (cond.status == "False" and cond.type in ("Trained", "Registered", "Serving", "Healthy", "DataQuality"))
            or (cond.type == "DriftDetected" and cond.status == "True")
            or (cond.status == "False" and cond.reason == "ChildNameConflict")  # an object in our way
            or (cond.type == "Rollout" and cond.status == "False")  # a rollout aborted or paused
            or (  # a failure, not progress (Training, RollingOut...)
                cond.type == "Ready"
                and cond.status == "False"
                and (
                    cond.reason in FAILED_REASONS | MONITOR_FAILED_REASONS
                    or cond.reason == "ProgressDeadlineExceeded"
                    or cond.reason in REFUSAL_REASONS  # the model server refused the model
                )
            )
        )
        post(body, "Warning" if warning else "Normal", cond.reason, f"{cond.type}={cond.status}: {cond.message}")
