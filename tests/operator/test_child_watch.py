"""Every kind of child the operator owns is watched, and a deletion or an edit by hand triggers
the reconcile that restores it (no resync timer needed); status-only updates do not."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import kopf

from modelops import handlers
from modelops.clients.kube import BY_KIND, HPAS, MODELVERSIONS, PDBS, SERVICES
from modelops.reconcile.children import EditWatch
from modelops.settings import Settings
from modelops.telemetry import OperatorMetrics
from tests.mlflow_testing import logged_runs, logged_runs_template, mlflow_store, mlflow_template  # noqa: F401
from tests.operator.test_reconcile import NS, _completed_job, _ctx, _mv


def test_every_owned_child_kind_is_watched() -> None:
    registry = kopf.OperatorRegistry()
    handlers.register(registry, Settings())
    watched = {
        (h.selector.group or "", h.selector.plural or h.selector.any_name)
        for h in registry._watching.get_all_handlers()
        if h.selector is not None
    }
    owned = {(r.group, r.plural) for kind, r in BY_KIND.items() if kind not in ("ModelVersion", "ModelMonitor")}
    assert owned <= watched, owned - watched


def test_edits_and_deletions_need_a_reconcile_status_updates_do_not() -> None:
    watch = EditWatch()
    svc = {"kind": "Service", "metadata": {"uid": "u1", "labels": {"a": "1"}}, "spec": {"ports": [{"port": 80}]}}
    assert not watch.needs_reconcile(svc, None)  # first sighting (listing or our own creation)
    assert not watch.needs_reconcile({**svc, "status": {"loadBalancer": {}}}, "MODIFIED")
    assert watch.needs_reconcile({**svc, "spec": {"ports": [{"port": 81}]}}, "MODIFIED")
    assert watch.needs_reconcile(svc, "DELETED")


async def test_a_deleted_service_pdb_or_hpa_is_restored_by_its_watch_event(logged_runs) -> None:  # noqa: F811
    ctx, kube = _ctx(logged_runs.store)
    mv = _mv(kube, "uid-2", "1.2.0")  # Staging, served
    mv["spec"]["serving"] = {"replicas": 2, "autoscaling": {"minReplicas": 2, "maxReplicas": 4}}
    kube.put(MODELVERSIONS, mv)
    _completed_job(kube, "1.2.0", "uid-2")
    from modelops.reconcile import modelversion

    await modelversion.reconcile(ctx, (await kube.get(MODELVERSIONS, NS, "iris")) or {})
    memo = SimpleNamespace(metrics=OperatorMetrics(), ctx=ctx)
    for res in (SERVICES, PDBS, HPAS):
        child = await kube.get(res, NS, "iris-model-staging")
        assert child is not None, res
        child.setdefault("kind", {v: k for k, v in BY_KIND.items()}[res])
        await handlers._on_child(ctx, memo, child, None)  # the initial listing
        await kube.delete(res, NS, "iris-model-staging")
        await handlers._on_child(ctx, memo, child, "DELETED")
        restored: dict[str, Any] | None = await kube.get(res, NS, "iris-model-staging")
        assert restored is not None and restored["metadata"]["uid"] != child["metadata"]["uid"], res


async def test_a_deleted_drift_cronjob_is_restored_by_its_watch_event(mlflow_store) -> None:  # noqa: F811
    from modelops.api.common import API_VERSION
    from modelops.clients.kube import CRONJOBS, MODELMONITORS
    from modelops.reconcile import modelmonitor

    ctx, kube = _ctx(mlflow_store)
    kube.put(
        MODELMONITORS,
        {
            "apiVersion": API_VERSION,
            "kind": "ModelMonitor",
            "metadata": {"name": "watch", "namespace": NS, "uid": "uid-monitor"},
            "spec": {"model": "iris-model", "stage": "Production", "schedule": "*/5 * * * *"},
        },
    )
    await modelmonitor.reconcile(ctx, (await kube.get(MODELMONITORS, NS, "watch")) or {})
    cronjob = await kube.get(CRONJOBS, NS, "watch-drift") or {}
    memo = SimpleNamespace(metrics=OperatorMetrics(), ctx=ctx)
    await kube.delete(CRONJOBS, NS, "watch-drift")
    await handlers._on_child(ctx, memo, cronjob, "DELETED")
    restored = await kube.get(CRONJOBS, NS, "watch-drift")
    assert restored is not None and restored["metadata"]["uid"] != cronjob["metadata"]["uid"]
