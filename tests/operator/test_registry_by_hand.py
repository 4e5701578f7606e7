"""The registry edited by hand in MLflow: versions deleted, aliases moved or deleted, stage tags
deleted or forged. Reported on the CR (condition + a Warning Event per repair), repaired by the
first settled timer one resync interval after the model's last registry read (so at most about two
intervals after the change), and never leaving aliases half-moved."""

from __future__ import annotations

import time
from typing import Any

from modelops.builders.common import train_job_name
from modelops.clients.kube import DEPLOYMENTS, JOBS, MODELVERSIONS
from modelops.reconcile import modelversion
from tests.mlflow_testing import logged_runs, logged_runs_template, mlflow_store, mlflow_template  # noqa: F401
from tests.operator.fake_kube import FakeKube
from tests.operator.test_reconcile import NS, _ctx, _mv, _ready_deployment, owned_by

MODEL = "iris-model"


class Index(dict[tuple[str, str], list[dict[str, Any]]]):
    """kopf's index of ModelVersions by (namespace, spec.model), fed from the fake API."""

    def __init__(self, kube: FakeKube) -> None:
        super().__init__()
        self.kube = kube

    def __contains__(self, key: object) -> bool:
        return True

    def __getitem__(self, key: tuple[str, str]) -> list[dict[str, Any]]:
        return [
            o
            for (plural, ns, _), o in self.kube.objects.items()
            if plural == "modelversions" and ns == key[0] and o["spec"]["model"] == key[1]
        ]


def _version(kube: FakeKube, name: str, uid: str, version: str, stage: str) -> None:
    _mv(kube, uid, version, stage, name, creationTimestamp=f"2026-01-01T00:00:0{uid[-1]}Z")
    kube.put(
        JOBS,
        {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {
                "name": train_job_name(name, version),
                "namespace": NS,
                "ownerReferences": owned_by(uid, name),
            },
            "spec": {},
            "status": {"succeeded": 1, "conditions": [{"type": "Complete", "status": "True"}]},
        },
    )


async def _reconcile(ctx: Any, kube: FakeKube, name: str, periodic: bool = False) -> dict[str, Any]:
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, name)) or {}, periodic)
    return (await kube.get(MODELVERSIONS, NS, name) or {})["status"]


def _events(ctx: Any) -> list[tuple[str, str, str]]:
    seen: list[tuple[str, str, str]] = []
    ctx.post_event = lambda body, type_, reason, message: seen.append((type_, reason, message))
    return seen


def _condition(status: dict[str, Any], ctype: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == ctype)


async def _two_registered_for_production(store: Any) -> tuple[Any, FakeKube, list[tuple[str, str, str]]]:
    """ModelVersions ``a`` (1.0.0) and ``b`` (1.1.0) both requesting Production, registered and
    reconciled; returns the context, the fake API and the Events posted from then on."""
    ctx, kube = _ctx(store)
    events = _events(ctx)
    _version(kube, "a", "uid-0", "1.0.0", "Production")
    _version(kube, "b", "uid-1", "1.1.0", "Production")
    await _reconcile(ctx, kube, "a")
    await _reconcile(ctx, kube, "b")
    return ctx, kube, events


async def test_a_version_deleted_in_mlflow_is_reported_and_the_stage_falls_back(logged_runs) -> None:  # noqa: F811
    ctx, kube, events = await _two_registered_for_production(logged_runs.store)
    client = logged_runs.store.client
    statuses = {n: (await kube.get(MODELVERSIONS, NS, n) or {})["status"] for n in "ab"}
    holder = next(n for n, s in statuses.items() if s.get("stage") == "Production")
    other = "a" if holder == "b" else "b"
    deleted = statuses[holder]["registry"]["version"]
    assert str(client.get_model_version_by_alias(MODEL, "production").version) == deleted

    client.delete_model_version(MODEL, deleted)  # by hand, the serving version
    status = await _reconcile(ctx, kube, other)  # any reconcile of the model: no error, no retry loop
    gone = (await kube.get(MODELVERSIONS, NS, holder) or {})["status"]
    registered = _condition(gone, "Registered")
    assert registered["status"] == "False" and registered["reason"] == "VersionDeleted"
    assert f"version {deleted} of registered model {MODEL}" in registered["message"]
    assert gone["phase"] == "Failed" and "stage" not in gone
    assert ("Warning", "VersionDeleted") in [(t, r) for t, r, _ in events]
    # The rest of the model carries on: the other version takes Production, alias and tag together.
    survivor = statuses[other]["registry"]["version"]
    assert status["stage"] == "Production"
    assert str(client.get_model_version_by_alias(MODEL, "production").version) == survivor
    assert client.get_model_version(MODEL, survivor).tags["stage"] == "Production"
    deployment = await kube.get(DEPLOYMENTS, NS, "iris-model-production") or {}
    assert f"models:/{MODEL}/{survivor}" in str(deployment["spec"]["template"])

    # Steady: further passes write nothing (the deleted version's condition does not flap).
    before = len(kube.calls)
    await _reconcile(ctx, kube, other)
    await _reconcile(ctx, kube, holder)
    assert [c for c in kube.calls[before:] if c[0].startswith("patch")] == []


async def test_registry_changes_by_hand_are_repaired_within_one_interval_and_reported(logged_runs) -> None:  # noqa: F811
    ctx, kube = _ctx(logged_runs.store)
    client = logged_runs.store.client
    ctx.versions.attach(Index(kube))
    _version(kube, "a", "uid-0", "1.0.0", "Staging")
    await _reconcile(ctx, kube, "a")
    _ready_deployment(kube, "iris-model-staging")  # rolled out: a settled version (not polled as a rollout)
    status = await _reconcile(ctx, kube, "a")
    mine = status["registry"]["version"]
    assert status["stage"] == "Staging" and modelversion.is_settled(await kube.get(MODELVERSIONS, NS, "a") or {})
    other = client.create_model_version(MODEL, client.get_model_version(MODEL, mine).source, run_id=None).version
    other = str(other)
    events = _events(ctx)

    def one_interval_later() -> None:  # the model was fully checked within 10 intervals, not within 1
        past = time.monotonic() - ctx.settings.reconcile_interval_seconds - 1
        ctx._model_synced[f"{NS}/{MODEL}"] = past
        getattr(ctx, "_registry_checked", {}).clear()

    # Nothing changed: the settled timer reads the registry once and writes nothing.
    one_interval_later()
    calls = len(kube.calls)
    assert await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "a")) or {}, True) is None
    assert len(kube.calls) == calls and events == []

    # A change right after a pass read the registry waits for the first timer one interval after
    # that read (docs/operator.md: at most about two intervals); that timer repairs it.
    ctx.mark_model_synced(NS, MODEL)
    client.set_registered_model_alias(MODEL, "staging", other)
    assert await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "a")) or {}, True) is None
    assert str(client.get_model_version_by_alias(MODEL, "staging").version) == other and events == []
    one_interval_later()
    await _reconcile(ctx, kube, "a", periodic=True)
    assert str(client.get_model_version_by_alias(MODEL, "staging").version) == mine
    assert [(t, r) for t, r, _ in events] == [("Warning", "AliasMovedByHand")], events

    cases = [
        ("AliasMovedByHand", lambda: client.set_registered_model_alias(MODEL, "staging", other)),
        ("AliasDeletedByHand", lambda: client.delete_registered_model_alias(MODEL, "staging")),
        ("TagChangedByHand", lambda: client.set_model_version_tag(MODEL, mine, "stage", "Archived")),
        ("TagChangedByHand", lambda: client.delete_model_version_tag(MODEL, mine, "stage")),
    ]
    for reason, edit in cases:
        edit()
        one_interval_later()
        events.clear()
        status = await _reconcile(ctx, kube, "a", periodic=True)  # the settled version's timer
        assert [(t, r) for t, r, _ in events] == [("Warning", reason)], (reason, events)
        drift = _condition(status, "RegistryDrift")
        assert drift["status"] == "True" and drift["reason"] == reason
        assert str(client.get_model_version_by_alias(MODEL, "staging").version) == mine
        assert client.get_model_version(MODEL, mine).tags.get("stage") == "Staging"


async def test_a_rollback_to_a_version_deleted_in_mlflow_moves_no_alias_half_way(logged_runs) -> None:  # noqa: F811
    """1.1.0 holds Production over 1.0.0, whose MLflow version is deleted by hand; a pull request
    sets 1.1.0 back to Staging: Production does not roll back to the deleted version, 1.0.0 is
    reported VersionDeleted, and both aliases end where the stage decisions put them."""
    ctx, kube, events = await _two_registered_for_production(logged_runs.store)
    client = logged_runs.store.client
    old, new = [kube.objects[("modelversions", NS, n)]["status"]["registry"]["version"] for n in "ab"]
    assert str(client.get_model_version_by_alias(MODEL, "production").version) == new

    client.delete_model_version(MODEL, old)  # by hand, the version a rollback would return to
    rolled_back = kube.objects[("modelversions", NS, "b")]
    rolled_back["spec"]["stage"] = "Staging"
    rolled_back["metadata"]["generation"] = rolled_back["metadata"].get("generation", 1) + 1
    status = await _reconcile(ctx, kube, "b")  # no RESOURCE_DOES_NOT_EXIST, no retry loop
    assert status["stage"] == "Staging", status
    gone = (await kube.get(MODELVERSIONS, NS, "a") or {})["status"]
    assert _condition(gone, "Registered")["reason"] == "VersionDeleted" and "stage" not in gone
    assert ("Warning", "VersionDeleted") in [(t, r) for t, r, _ in events]
    aliases = dict(client.get_registered_model(MODEL).aliases or {})
    assert str(aliases.get("staging")) == new and "production" not in aliases, aliases
    assert client.get_model_version(MODEL, new).tags["stage"] == "Staging"


async def test_a_stage_tag_written_by_the_finalizer_is_not_reported_as_changed_by_hand(logged_runs) -> None:  # noqa: F811
    """``kubectl delete`` of a registered version (its finalizer tags it stage=Archived) and the same
    manifest applied again (it adopts the version): the tag goes back to the stage, with no
    TagChangedByHand: the operator wrote Archived itself."""
    ctx, kube = _ctx(logged_runs.store)
    client = logged_runs.store.client
    _version(kube, "a", "uid-0", "1.0.0", "Staging")
    status = await _reconcile(ctx, kube, "a")
    mine = status["registry"]["version"]
    assert client.get_model_version(MODEL, mine).tags["stage"] == "Staging"

    await modelversion.finalize(ctx, (await kube.get(MODELVERSIONS, NS, "a")) or {})
    del kube.objects[("modelversions", NS, "a")]
    assert client.get_model_version(MODEL, mine).tags["stage"] == "Archived"
    events = _events(ctx)
    _mv(kube, "uid-again", "1.0.0", "Staging", "a")  # applied again: a new uid, the same name and version
    status = await _reconcile(ctx, kube, "a")
    assert status["registry"]["version"] == mine and status["stage"] == "Staging", status
    assert client.get_model_version(MODEL, mine).tags["stage"] == "Staging"
    assert [r for _, r, _ in events if r.endswith("ByHand")] == [], events
    assert _condition(status, "Ready")["reason"] != "TagChangedByHand"
    assert "RegistryDrift" not in {c["type"] for c in status["conditions"]}


async def test_an_alias_the_operator_moved_is_not_reported_as_moved_by_hand_when_a_status_write_is_lost(
    logged_runs,  # noqa: F811
) -> None:
    """``b`` is promoted to Production over ``a``; the pass moves the alias, and ``b``'s status write
    is refused because the promotion was rolled back meanwhile (spec.stage back to Staging). The
    repeated pass sets the alias back to ``a`` without calling the operator's own move a change by
    hand; a real move by hand afterwards is still reported."""
    ctx, kube = _ctx(logged_runs.store)
    client = logged_runs.store.client
    _version(kube, "a", "uid-0", "1.0.0", "Production")
    _version(kube, "b", "uid-1", "1.1.0", "Staging")
    a = (await _reconcile(ctx, kube, "a"))["registry"]["version"]
    b = (await _reconcile(ctx, kube, "b"))["registry"]["version"]
    assert str(client.get_model_version_by_alias(MODEL, "production").version) == a
    events = _events(ctx)

    promoted = kube.objects[("modelversions", NS, "b")]
    promoted["spec"]["stage"] = "Production"
    promoted["metadata"]["generation"] += 1
    real_patch = kube.patch
    race = {"armed": True}

    async def rolled_back_meanwhile(res: Any, namespace: str, name: str, patch: Any, subresource: Any = None) -> Any:
        if race["armed"] and subresource == "status" and name == "b" and (patch.get("status") or {}).get("stage"):
            race["armed"] = False  # the pull request is reverted before b's status says Production
            assert str(client.get_model_version_by_alias(MODEL, "production").version) == b
            await real_patch(res, namespace, name, {"spec": {"stage": "Staging"}})
            kube.objects[("modelversions", NS, "b")]["metadata"]["generation"] += 1
        return await real_patch(res, namespace, name, patch, subresource)

    kube.patch = rolled_back_meanwhile  # type: ignore[method-assign]
    await _reconcile(ctx, kube, "b")
    assert not race["armed"]
    assert str(client.get_model_version_by_alias(MODEL, "production").version) == a
    assert str(client.get_model_version_by_alias(MODEL, "staging").version) == b
    assert [r for _, r, _ in events if r.endswith("ByHand")] == [], events

    client.set_registered_model_alias(MODEL, "production", b)  # a real move by hand
    await _reconcile(ctx, kube, "a")
    assert [r for _, r, _ in events if r.endswith("ByHand")] == ["AliasMovedByHand"], events
    assert str(client.get_model_version_by_alias(MODEL, "production").version) == a
