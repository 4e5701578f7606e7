"""Round trips the operator saves on its way to a Job and to Registered (issue 18): the ModelVersion
comes from what the operator already knows, a burst of new versions of a model shares one registry
read, and a stage without a winner checks its serving children at once."""

from __future__ import annotations

import asyncio
from typing import Any

from modelops.clients.kube import DEPLOYMENTS, MODELVERSIONS, SERVICES
from modelops.handlers import _owner_version
from modelops.reconcile import children, modelversion
from modelops.reconcile.context import Context
from modelops.reconcile.model import SERVING_KINDS
from modelops.settings import Settings
from tests.mlflow_testing import logged_runs, logged_runs_template, mlflow_store, mlflow_template  # noqa: F401
from tests.operator.fake_kube import FakeKube
from tests.operator.test_reconcile import NS, _ctx, _mv, owned_by
from tests.operator.test_versions_cache import FakeIndex


def _count_searches(client: Any) -> list[str]:
    """Record the filter of every ``search_model_versions`` call of ``client`` from now on."""
    searches: list[str] = []
    real = client.search_model_versions

    def counting(*args: Any, **kwargs: Any) -> Any:
        searches.append(str(args[0] if args else kwargs.get("filter_string")))
        return real(*args, **kwargs)

    client.search_model_versions = counting
    return searches


async def test_a_reconcile_with_the_index_reads_no_modelversion_and_a_jobs_event_finds_it_there(
    logged_runs,  # noqa: F811
) -> None:
    ctx, kube = _ctx(logged_runs.store)
    body = _mv(kube, "uid-new", "2.0.0", stage="Development")
    index = FakeIndex()
    index.put(body)
    ctx.versions.attach(index)

    await modelversion.reconcile(ctx, body)
    assert not [r for r in kube.reads if r[0] == "modelversions"]
    written = await kube.get(MODELVERSIONS, NS, "iris") or {}
    assert written["status"]["phase"] == "Training"  # Job created from the index's copy, status written

    kube.reads.clear()
    owner = owned_by("uid-new")[0]
    found = await _owner_version(ctx, NS, owner, "iris-model")
    assert found is not None and found["metadata"]["resourceVersion"] == written["metadata"]["resourceVersion"]
    assert not kube.reads  # the operator's own write, remembered: no GET
    assert await _owner_version(ctx, NS, {**owner, "name": "other", "uid": "uid-x"}, "iris-model") is None
    assert kube.reads == [("modelversions", "other")]  # not known: asked


async def test_new_explicit_versions_of_a_model_share_one_registry_read_until_a_registration(
    logged_runs,  # noqa: F811
) -> None:
    ctx, kube = _ctx(logged_runs.store)
    client = logged_runs.store.client
    searches = _count_searches(client)
    for i, version in enumerate(("2.0.0", "2.1.0", "2.2.0")):
        await modelversion.reconcile(ctx, _mv(kube, f"uid-n{i}", version, stage="Development", name=f"n{i}"))
    assert searches == ["name = 'iris-model'"]  # the other two used the same read
    assert kube.count("jobs") == 3

    ctx.registry_changed("iris-model")  # what register() calls after registering a version
    await modelversion.reconcile(ctx, _mv(kube, "uid-n3", "2.3.0", stage="Development", name="n3"))
    assert searches == ["name = 'iris-model'"] * 2


async def test_a_registry_read_begun_before_a_registration_is_not_kept() -> None:
    calls: list[str] = []
    release = asyncio.Event()

    class SlowRegistry:
        async def run(self, fn: Any, model: str) -> list[str]:
            calls.append(model)
            await release.wait()
            return [f"read {len(calls)}"]

    ctx = Context(settings=Settings(), kube=FakeKube(), registry=SlowRegistry())  # type: ignore[arg-type]
    reading = asyncio.ensure_future(ctx.registry_versions("m", 10))
    await asyncio.sleep(0)
    ctx.registry_changed("m")  # a registration lands while the read is in flight
    release.set()
    assert await reading == ["read 1"]
    assert await ctx.registry_versions("m", 10) == ["read 2"]  # the first read was not kept
    assert await ctx.registry_versions("m", 10) == ["read 2"]
    assert await ctx.registry_versions("m", 0) == ["read 3"]  # max_age 0: afresh
    assert calls == ["m"] * 3


async def test_removing_a_stages_serving_children_deletes_only_ours_dependents_first() -> None:
    kube = FakeKube()
    assert await children.remove_all(kube, SERVING_KINDS, NS, "m-staging", {"uid-a"}) == []
    assert len(kube.reads) == 4 and not kube.calls  # nothing there: four GETs, nothing deleted
    for res, kind in ((DEPLOYMENTS, "Deployment"), (SERVICES, "Service")):
        kube.put(
            res,
            {"kind": kind, "metadata": {"name": "m-staging", "namespace": NS, "ownerReferences": owned_by("uid-a")}},
        )
    assert await children.remove_all(kube, SERVING_KINDS, NS, "m-staging", {"uid-a"}) == ["Service", "Deployment"]
    assert [c for c in kube.calls if c[0] == "delete"] == [
        ("delete", "services", "m-staging"),
        ("delete", "deployments", "m-staging"),
    ]
    kube.put(DEPLOYMENTS, {"kind": "Deployment", "metadata": {"name": "m-staging", "namespace": NS}})  # not ours
    assert await children.remove_all(kube, SERVING_KINDS, NS, "m-staging", {"uid-a"}) == []
    assert await kube.get(DEPLOYMENTS, NS, "m-staging") is not None


async def test_a_jobs_event_after_registration_runs_no_model_pass_while_the_model_is_synced(
    logged_runs,  # noqa: F811
) -> None:
    from types import SimpleNamespace

    from modelops.builders.common import train_job_name
    from modelops.clients.kube import JOBS
    from modelops.handlers import _on_child
    from modelops.telemetry import OperatorMetrics
    from tests.operator.test_reconcile import _completed_job

    ctx, kube = _ctx(logged_runs.store)
    _mv(kube, "uid-1", "1.1.0", stage="Development")
    _completed_job(kube, "1.1.0", "uid-1")
    memo = SimpleNamespace(ctx=ctx, metrics=OperatorMetrics())
    job = await kube.get(JOBS, NS, train_job_name("iris", "1.1.0")) or {}
    await _on_child(ctx, memo, job, "MODIFIED")  # Complete: registers, then the model-level flow
    status = (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]
    assert status["registry"]["version"] == "1" and status["stage"] == "Development"

    client = logged_runs.store.client
    reads: list[str] = []
    for method in ("search_model_versions", "get_registered_model", "search_runs"):
        real = getattr(client, method)
        setattr(client, method, lambda *a, _real=real, _m=method, **k: reads.append(_m) or _real(*a, **k))
    writes = len(kube.calls)
    await _on_child(ctx, memo, job, "MODIFIED")  # a later event of the same Job
    assert reads == [] and len(kube.calls) == writes


async def test_registering_searches_the_semantic_version_once_and_never_registers_a_run_twice(
    logged_runs,  # noqa: F811
) -> None:
    from tests.operator.test_reconcile import _completed_job

    ctx, kube = _ctx(logged_runs.store)
    client = logged_runs.store.client
    _mv(kube, "uid-1", "1.1.0", stage="Development")
    _completed_job(kube, "1.1.0", "uid-1")
    real = client.search_model_versions
    searches = _count_searches(client)
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    assert not [s for s in searches if "run_id" in s]
    assert len([s for s in searches if "semver" in s]) == 1  # owner check and "already made from this run"

    # The status write was lost (an operator stopped before it): the next pass finds the version, no second one.
    body = await kube.get(MODELVERSIONS, NS, "iris") or {}
    kube.put(MODELVERSIONS, {**body, "status": {"version": "1.1.0", "trainingJob": body["status"]["trainingJob"]}})
    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    assert [str(v.version) for v in real("name = 'iris-model'")] == ["1"]
    assert (await kube.get(MODELVERSIONS, NS, "iris") or {})["status"]["registry"]["version"] == "1"
