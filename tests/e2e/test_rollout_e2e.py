"""Progressive delivery end to end in the sandbox: a good candidate goes through shadow then canary
steps and is promoted, across an operator restart mid-rollout; a candidate that learned nothing is
aborted on live agreement numbers; clients see no errors during either (docs/rollout.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sklearn.datasets import load_breast_cancer

from modelops.api.crdgen import build_crds
from modelops.api.openapi import crd_schema, validate
from modelops.demo.traffic import Steady
from modelops.sandbox.client import ApiError
from modelops.sandbox.testing import Sandbox, WaitTimeout, condition
from tests.e2e.conftest import modelversion, phase

pytestmark = pytest.mark.e2e
MV_STATUS_SCHEMA = crd_schema(build_crds()["modelversions.yaml"])["properties"]["status"]
TIMEOUT = 300.0
#: Short windows for tests; the rules are the same as with production-length pauses.
ANALYSIS = {"minRequests": 20, "minAgreement": 0.9, "maxLatencyP95Ratio": 5, "latencySlackMs": 250}


def _rollout(sb: Sandbox, name: str, ns: str) -> dict[str, Any]:
    return (sb.get("modelversions", name, ns).get("status") or {}).get("rollout") or {}


def _reasons(events: Any, name: str) -> list[str]:
    return [f"{e['reason']}: {e.get('message', '')}" for e in events(name)]


def test_invalid_step_lists_are_refused_at_admission(operated: Sandbox, namespace: str, model_name: str) -> None:
    steps = [{"weight": 50, "pauseSeconds": 5}, {"weight": 10, "pauseSeconds": 5}]
    with pytest.raises(ApiError) as refused:
        operated.create(
            modelversion("bad-steps", model_name, "1.0.0", rollout={"strategy": "Canary", "steps": steps}), namespace
        )
    assert refused.value.status == 422 and "step weights must increase" in refused.value.message
    with pytest.raises(ApiError) as refused:
        operated.create(modelversion("no-steps", model_name, "1.0.0", rollout={"strategy": "Canary"}), namespace)
    assert refused.value.status == 422 and "needs at least one step" in refused.value.message


def _incumbent(sb: Sandbox, ns: str, model: str) -> str:
    """1.0.0 serving Production; returns its Service's local URL."""
    sb.create(modelversion("v1", model, "1.0.0"), ns)
    sb.wait_for_object("modelversions", "v1", ns, phase("v1", "Ready"), TIMEOUT)
    return sb.service_url(f"{model}-production", ns)


def _clients(url: str, model: str) -> Steady:
    return Steady(url, model, load_breast_cancer(as_frame=True).data, pause=0.02)


@pytest.mark.timeout(1200)  # three model servers and two trainings on a shared 2-core machine
def test_shadow_then_canary_promote_a_good_candidate_across_an_operator_restart(
    operated: Sandbox, namespace: str, model_name: str, events: Any
) -> None:
    sb, ns, model = operated, namespace, model_name
    with _clients(_incumbent(sb, ns, model), model) as traffic:
        rollout = {
            "strategy": "Canary",
            "shadow": {"sampleRate": 0.5, "pauseSeconds": 5},
            "steps": [{"weight": 20, "pauseSeconds": 5}, {"weight": 50, "pauseSeconds": 5}],
            # Canary agreement compares two samples of predicted classes: with 200 requests a side, two
            # good models differ by 15 points in fewer than 1 in 300 windows (with 20, about 1 in 20).
            "analysis": {**ANALYSIS, "minRequests": 200, "minAgreement": 0.85},
        }
        sb.create(modelversion("v2", model, "1.1.0", hyperparameters={"C": 0.1, "max_iter": 500}, rollout=rollout), ns)
        # The operator restarts in the canary steps: the rollout resumes from its status, not from the shadow.
        _wait_for_step(sb, "v2", ns, 1)
        assert sb.get("modelversions", "v1", ns)["status"]["stage"] == "Production"
        sb.supervisor.restart_operator()
        promoted = sb.wait_for_object(
            "modelversions", "v2", ns, lambda o: phase("v2", "Ready")(o) and condition(o, "Rollout"), TIMEOUT
        )
        st = promoted["status"]
        assert validate(MV_STATUS_SCHEMA, st, prefix="status") == []
        assert st["rollout"]["phase"] == "Promoted" and st["rollout"]["weight"] == 100
        _numbers_from_metrics(st["rollout"], canary=True)
        assert st["promotionHistory"][-1]["decision"] == "Promoted"
        assert "rollout: step 3/3 (canary 50%) passed" in st["promotionHistory"][-1]["reason"]
        steps = [r for r in _reasons(events, "v2") if r.startswith("RolloutStep")]
        assert sorted(s.split(" passed")[0] for s in steps) == [
            "RolloutStep: step 1/3 (shadow 50%)",
            "RolloutStep: step 2/3 (canary 20%)",
        ]
        assert any(r.startswith("RolloutPromoted: step 3/3 (canary 50%) passed") for r in _reasons(events, "v2"))
        sb.wait_for_object("modelversions", "v1", ns, phase("v1", "Superseded"), 60)
        sb.wait_for(lambda: _served(sb, model, ns) == ("1.1.0", None), 90, message="1.1.0 served without router")
        assert sb.find("deployments", f"{model}-production-candidate", ns) is None
    assert traffic.versions["1.1.0"] > 0  # canary answers reached clients before the promotion
    assert traffic.sent > 0 and traffic.failures == []


@pytest.mark.timeout(1200)
def test_a_candidate_that_learned_nothing_is_aborted_on_live_agreement(
    operated: Sandbox, namespace: str, model_name: str, events: Any
) -> None:
    """Random labels at the class prior (as if trained on shuffled labels) pass an offline gate set the
    wrong way round and are aborted in shadow on agreement. (A training-time gate made this test
    flaky: under load the dummy's fit was once slower than the incumbent's and never rolled out.)"""
    sb, ns, model = operated, namespace, model_name
    with _clients(_incumbent(sb, ns, model), model) as traffic:
        bad = modelversion(
            "v3",
            model,
            "1.2.0",
            estimator="sklearn.dummy.DummyClassifier",
            hyperparameters={"strategy": "stratified"},
            promotion={"metric": "accuracy", "direction": "minimize"},  # the gate's slip: lower passes
            rollout={"strategy": "Shadow", "shadow": {"sampleRate": 1.0, "pauseSeconds": 600}, "analysis": ANALYSIS},
        )
        sb.create(bad, ns)
        aborted = sb.wait_for_object("modelversions", "v3", ns, phase("v3", "RolloutAborted"), TIMEOUT)
        rollout_condition = condition(aborted, "Rollout", "False")
        assert rollout_condition["reason"] == "Aborted" and "agreement" in rollout_condition["message"]
        numbers = aborted["status"]["rollout"]["analysis"]
        assert numbers["candidate"]["requests"] >= 20 and numbers["agreement"] < 0.9
        _numbers_from_metrics(aborted["status"]["rollout"], canary=False)
        assert validate(MV_STATUS_SCHEMA, aborted["status"], prefix="status") == []
        assert any(e["reason"] == "RolloutAborted" and e["type"] == "Warning" for e in events("v3"))
        # Traffic returns to the incumbent only: the candidate's children go, the router setting too.
        sb.wait_for(lambda: sb.find("deployments", f"{model}-production-candidate", ns) is None, 60)
        assert sb.get("modelversions", "v1", ns)["status"]["stage"] == "Production"
        sb.wait_for(lambda: _served(sb, model, ns) == ("1.0.0", None), 90, message="router setting removed")
    assert traffic.versions["1.2.0"] == 0  # a shadow candidate never answers a client
    assert traffic.sent > 0 and traffic.failures == []


@pytest.mark.timeout(1200)
def test_a_candidate_trained_on_other_data_is_aborted_on_the_drift_of_its_inputs(
    operated: Sandbox, namespace: str, model_name: str, events: Any, tmp_path: Path
) -> None:
    """A candidate trained on data unlike the live traffic (every feature scaled by 1.5, as a wrong
    unit or a stale export would) passes its offline gate and every live bound but drift: at the end
    of the shadow window the two drift Jobs find its inputs drifted against its own training
    reference and the incumbent's not against its own, and the rollout is aborted with both shares."""
    sb, ns, model = operated, namespace, model_name
    data = load_breast_cancer(as_frame=True).frame
    features = [c for c in data.columns if c != "target"]
    data[features] = data[features] * 1.5
    (tmp_path / "scaled.csv").write_text(data.to_csv(index=False))
    before = sb.supervisor.operator_extra_env
    # The operator's data URI policy reads local datasets from its data folders only.
    sb.supervisor.restart_operator(env={**before, "MODELOPS_DATA_PATH_PREFIXES": str(tmp_path)})
    try:
        with _clients(_incumbent(sb, ns, model), model) as traffic:
            analysis = {**ANALYSIS, "minRequests": 50, "minAgreement": 0, "maxDriftShareIncrease": 0.3}
            rollout = {"strategy": "Shadow", "shadow": {"sampleRate": 1.0, "pauseSeconds": 10}, "analysis": analysis}
            sb.create(modelversion("v4", model, "1.3.0", uri=str(tmp_path / "scaled.csv"), rollout=rollout), ns)
            aborted = sb.wait_for_object("modelversions", "v4", ns, phase("v4", "RolloutAborted"), TIMEOUT)
            rs = aborted["status"]["rollout"]
            drift = rs["drift"]
            assert drift["state"] == "Completed", drift
            assert drift["candidateShare"] >= 0.9 and drift["incumbentShare"] <= 0.1, drift
            assert "input drift share" in condition(aborted, "Rollout", "False")["message"]
            assert validate(MV_STATUS_SCHEMA, aborted["status"], prefix="status") == []
            # Both runs are in MLflow (the candidate's with Evidently's report), and the Jobs ran once each.
            assert drift["candidateRun"] and drift["incumbentRun"] and len(drift["jobs"]) == 2
            assert sorted(j["metadata"]["name"] for j in sb.list("jobs", ns) if "-drift-" in j["metadata"]["name"]) \
                == sorted(drift["jobs"])
            assert any(e["reason"] == "RolloutAborted" and "drift" in e.get("message", "") for e in events("v4"))
            sb.wait_for(lambda: _served(sb, model, ns) == ("1.0.0", None), 90, message="router setting removed")
        assert traffic.versions["1.3.0"] == 0 and traffic.sent > 0 and traffic.failures == []
    finally:
        sb.supervisor.restart_operator(env=before)


def _wait_for_step(sb: Sandbox, name: str, ns: str, step: int) -> None:
    """Wait until the rollout of ``name`` reached ``step``; a timeout says where it stood."""
    try:
        sb.wait_for(lambda: _rollout(sb, name, ns).get("step", 0) >= step, TIMEOUT, message=f"{name} at step {step}")
    except WaitTimeout as exc:
        raise AssertionError(f"{exc}; status.rollout: {_rollout(sb, name, ns)}") from exc


def _numbers_from_metrics(rollout: dict[str, Any], canary: bool) -> None:
    """The last window's numbers are the increases of the serving pods' counters (status.rollout.counters):
    the operator here never reads the prediction log (MODELOPS_ROLLOUT_FEEDBACK_FROM_LOG is off, as in a
    cluster where the log is a volume of the model's namespace), so no feedback accuracy either."""
    numbers, counters = rollout["analysis"], rollout["counters"]
    inc = counters["incumbent"]["increase"]
    route, answered, failed = ("canary", "answered", "fallback") if canary else ("shadow", "sent", "failed")
    assert numbers["candidate"]["requests"] == inc.get(f"{route}:{answered}", 0) + inc.get(f"{route}:{failed}", 0)
    assert numbers["incumbent"]["requests"] == inc.get("ok", 0) + inc.get("err", 0)
    assert counters["incumbent"]["pods"], "the incumbent's pods were scraped"
    if canary:
        assert counters["candidate"]["pods"] and numbers["compared"] == sum(
            v for k, v in counters["candidate"]["increase"].items() if k.startswith("class:")
        )
    assert "accuracy" not in numbers["candidate"] and "accuracy" not in numbers["incumbent"]


def _served(sb: Sandbox, model: str, ns: str) -> tuple[str, str | None] | None:
    """(version, router setting) of the production Deployment once it is rolled out; None before."""
    dep = sb.get("deployments", f"{model}-production", ns)
    env = {e["name"]: e.get("value") for e in dep["spec"]["template"]["spec"]["containers"][0]["env"]}
    status = dep.get("status") or {}
    want = status.get("replicas")
    if status.get("updatedReplicas") != want or status.get("readyReplicas") != want:
        return None
    return dep["metadata"]["annotations"]["ml.smarthr360.io/version"], env.get("MODELOPS_ROUTER")
