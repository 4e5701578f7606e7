"""The ModelMonitor reconcile against an in-memory API: every path records the generation it handled."""

from __future__ import annotations

from typing import Any

from modelops.api.common import API_VERSION
from modelops.clients.kube import MODELMONITORS
from modelops.reconcile import modelmonitor
from modelops.reconcile.context import Context
from modelops.settings import Settings
from tests.operator.fake_kube import FakeKube

NS = "team-a"


def _monitor(kube: FakeKube, spec: dict[str, Any], generation: int, status: dict[str, Any]) -> dict[str, Any]:
    return kube.put(
        MODELMONITORS,
        {
            "apiVersion": API_VERSION,
            "kind": "ModelMonitor",
            "metadata": {"name": "mon", "namespace": NS, "uid": "uid-mon", "generation": generation},
            "spec": spec,
            "status": status,
        },
    )


async def test_an_invalid_spec_records_the_generation_it_judged() -> None:
    """Generation 2 is invalid: Ready=False InvalidSpec *for generation 2*, so GitOps tools do not
    wait for the operator forever (Argo CD shows Degraded, not Progressing)."""
    kube = FakeKube()
    ctx = Context(settings=Settings(), kube=kube, registry=None)  # type: ignore[arg-type]  # never reached
    _monitor(
        kube,
        {"model": "iris-model", "stage": "Production", "schedule": "61 * * * *"},
        generation=2,
        status={"observedGeneration": 1},
    )
    await modelmonitor.reconcile(ctx, (await kube.get(MODELMONITORS, NS, "mon")) or {})
    status = (await kube.get(MODELMONITORS, NS, "mon") or {})["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "InvalidSpec") and "spec.schedule" in ready["message"]
    assert status["observedGeneration"] == 2 and ready["observedGeneration"] == 2
