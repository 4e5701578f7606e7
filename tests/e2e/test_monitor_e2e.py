"""ModelMonitor end to end: real predictions from the reference distribution, then shifted ones;
drift decided by the runtime's drift job, read back by the operator, counted once, retraining."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelops.api.common import API_VERSION
from modelops.api.modelversion import ModelVersionSpec
from modelops.demo import traffic
from modelops.sandbox.testing import Sandbox, condition
from tests.e2e.conftest import modelversion, phase

pytestmark = pytest.mark.e2e


def _monitor(name: str, model: str) -> dict:
    return {
        "apiVersion": API_VERSION,
        "kind": "ModelMonitor",
        "metadata": {"name": name},
        "spec": {
            "model": model,
            "stage": "Production",
            "schedule": "0 0 1 1 *",
            "current": {"window": "1h"},
            "drift": {"driftShare": 0.3, "minRows": 50},
            "health": {"maxLatencyP95Ms": 1000, "maxErrorRate": 0.5},
            "onDrift": "Retrain",
            "retrain": {"versionBump": "minor", "stage": "Staging", "maxPerDay": 1},
        },
    }


def _drift_counter(sb: Sandbox, model: str) -> float:
    url = sb.supervisor.state.processes["operator"].url
    text = httpx.get(str(url), timeout=10).text
    match = re.search(rf'ml_drift_detections_total{{[^}}]*model_name="{model}"[^}}]*}} ([0-9.]+)', text)
    return float(match.group(1)) if match else 0.0


def _rows_written(url: str) -> float:
    """The prediction-log rows the serving pod (one replica) has written, by its own counter."""
    text = httpx.get(f"{url}/metrics", timeout=30).text
    return sum(
        s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == "modelops_prediction_log_rows_total" and s.labels.get("outcome") == "written"
    )


def _run_monitor(sb: Sandbox, ns: str, name: str, url: str, rows: int) -> dict:
    """Run the monitor's drift job once the serving pod has written ``rows`` rows in all to its
    prediction log (it flushes every 5 s: a fixed wait of 6 s raced the write on a loaded machine)."""
    before = ((sb.get("modelmonitors", name, ns).get("status") or {}).get("lastRun") or {}).get("runId")
    sb.wait_for(lambda: _rows_written(url) >= rows, 60, message=f"{rows} rows in the prediction log")
    sb.trigger(f"{name}-drift", ns)
    return sb.wait_for_object(
        "modelmonitors",
        name,
        ns,
        lambda o: ((o.get("status") or {}).get("lastRun") or {}).get("runId") not in (None, before),
        180,
    )


def test_drift_detection_events_metrics_and_retraining(
    operated: Sandbox, namespace: str, model_name: str, events
) -> None:
    sb, ns, model = operated, namespace, model_name
    manifest = modelversion("v1", model, "1.0.0")
    sb.create(manifest, ns)
    sb.create(_monitor("watch", model), ns)
    waiting = sb.wait_for_object("modelmonitors", "watch", ns, lambda o: condition(o, "Scheduled"), 60)
    assert waiting["status"]["cronJob"] == "watch-drift"
    sb.wait_for_object("modelversions", "v1", ns, phase("v1", "Ready"), 240)
    url = sb.service_url(f"{model}-production", ns)
    data = traffic.held_out(ModelVersionSpec.model_validate(manifest["spec"]))

    with httpx.Client(timeout=30) as client:
        traffic.predict_invocations(url, data.x, client)
    status = _run_monitor(sb, ns, "watch", url, len(data.x))["status"]
    assert status["lastRun"]["result"] == "Completed", status["lastRun"]
    assert status["drift"]["detected"] is False and condition({"status": status}, "DriftDetected", "False")
    assert status["health"]["predictions"] == len(data.x)
    assert _drift_counter(sb, model) == 0

    shifted_columns = [c for c in data.x.columns if c.startswith("mean ")]
    with httpx.Client(timeout=30) as client:
        traffic.predict_invocations(url, traffic.shifted(data.x, shifted_columns), client)
    status = _run_monitor(sb, ns, "watch", url, 2 * len(data.x))["status"]
    assert status["drift"]["detected"] is True, status["drift"]
    assert set(shifted_columns) <= set(status["drift"]["driftedColumns"])
    assert condition({"status": status}, "DriftDetected", "True")
    sb.wait_for(lambda: any(e.get("reason") == "DriftDetected" for e in events("watch")), 30)
    sb.wait_for(lambda: _drift_counter(sb, model) == 1, 30)
    retrained = sb.wait_for(lambda: sb.list("modelversions", ns, {"ml.smarthr360.io/retrained-by": "watch"}), 30)
    assert len(retrained) == 1 and retrained[0]["spec"]["versionBump"] == "minor"
    time.sleep(8)  # several monitor polls later: still counted once, still one retraining version
    assert _drift_counter(sb, model) == 1
    assert len(sb.list("modelversions", ns, {"ml.smarthr360.io/retrained-by": "watch"})) == 1
