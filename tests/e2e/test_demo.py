"""`modelops demo --once` (what `make demo` runs, without waiting for Ctrl-C) does what it claims."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def test_demo_once(tmp_path: Path) -> None:
    out = tmp_path / "demo.json"
    exe = Path(sys.executable).with_name("modelops")
    proc = subprocess.run(
        [str(exe), "demo", "--once", "--state-dir", str(tmp_path / "sandbox"), "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    result = json.loads(out.read_text())
    # Served predictions on the held-out rows are as accurate as the training run said.
    assert result["rows"] > 100
    assert result["accuracy_v2"] == result["accuracy_invocations"] > 0.9
    statuses = result["statuses"]
    trained = statuses["breast-cancer-1-0-0"]["metrics"]["accuracy"]
    assert abs(result["accuracy_v2"] - trained) < 1e-9
    # The promotion decision, with its numbers, and the rollout to 1.1.0.
    promotion = result["promotion"]
    assert promotion["decision"] == "Promoted" and promotion["comparedTo"] == "1.0.0"
    assert promotion["value"] - promotion["comparedValue"] >= 0.01
    assert result["served_after_promotion"] == "1.1.0"
    assert statuses["breast-cancer-1-1-0"]["phase"] == "Ready"
    assert statuses["breast-cancer-1-0-0"]["phase"] == "Superseded"
    # Drift found in the shifted columns.
    drift = result["drift"]
    assert drift["result"] == "Completed" and drift["detected"] is True
    assert set(drift["shifted"]) <= set(drift["columns"])
    # A candidate that learned nothing passed its misconfigured gate, was shadowed on live traffic and aborted
    # on agreement; the incumbent answered every client request meanwhile.
    rollout = result["rollout"]
    assert rollout["phase"] == "RolloutAborted" and "agreement" in rollout["reason"]
    assert rollout["agreement"] < 0.9 and rollout["candidate_requests"] >= 50
    assert rollout["client_requests"] > 0 and rollout["client_errors"] == 0
    assert set(rollout["versions"]) == {"1.1.0"}
    assert statuses["breast-cancer-1-3-0"]["phase"] == "RolloutAborted"
    assert "RolloutAborted" in proc.stdout
    # Lines are the demo's own, not cut by the console at 80 columns (a cut left a trailing space).
    assert [line for line in proc.stdout.splitlines() if line != line.rstrip()] == []
    # The last section says where things are and how to reach them.
    assert "drift detected" in proc.stdout and "kubeconfig" in proc.stdout and "namespace:  default" in proc.stdout
    assert result["serving_url"].startswith("http://127.0.0.1:") and result["serving_url"] in proc.stdout
    status_command, url_command, _ = result["commands"]
    assert status_command.endswith(
        f"status breast-cancer-production -n default --kubeconfig {tmp_path / 'sandbox'}/kubeconfig"
    )
    assert f"sandbox url breast-cancer-production -n default --state-dir {tmp_path / 'sandbox'}" in url_command
    # Nothing is left running.
    status = subprocess.run(
        [str(exe), "sandbox", "status", "--state-dir", str(tmp_path / "sandbox")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert status.returncode == 1
