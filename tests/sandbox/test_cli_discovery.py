"""While `make demo` runs, `modelops status` and `modelops sandbox …` find its sandbox without flags."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from modelops.api.common import API_VERSION
from modelops.sandbox.client import MODELMONITORS, Api
from modelops.sandbox.supervisor import DEMO_STATE_DIR, Supervisor, locate_state_dir


def _cli(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``modelops <args>`` run from ``cwd`` with no KUBECONFIG, no sandbox dir and an empty home."""
    env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG", "MODELOPS_SANDBOX_DIR")}
    env["HOME"] = str(home)  # no ~/.kube/config to fall back on
    return subprocess.run(
        [sys.executable, "-m", "modelops.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def test_commands_without_flags_find_the_demo_sandbox(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    checkout, home = tmp_path / "checkout", tmp_path / "home"
    home.mkdir()
    demo_dir = checkout / DEMO_STATE_DIR
    monkeypatch.chdir(checkout.parent)
    assert _cli(tmp_path, home, "sandbox", "status").returncode == 1  # nothing runs: .sandbox, clear message
    sup = Supervisor(demo_dir, pdeathsig=True)
    try:
        sup.up(mlflow=False)
        with Api(str(sup.state.api_url)) as api:
            api.create(
                MODELMONITORS,
                {
                    "apiVersion": API_VERSION,
                    "kind": "ModelMonitor",
                    "metadata": {"name": "breast-cancer-production"},
                    "spec": {"model": "breast-cancer", "stage": "Production", "schedule": "0 * * * *"},
                },
                "default",
            )
        monkeypatch.chdir(checkout)
        assert locate_state_dir() == demo_dir.resolve()
        status = _cli(checkout, home, "sandbox", "status")
        assert status.returncode == 0 and str(demo_dir.resolve()) in status.stdout, status.stderr
        report = _cli(checkout, home, "status", "breast-cancer-production", "-n", "default")
        assert report.returncode == 3, report.stderr  # no operator runs: not Ready, and the report says so
        assert "breast-cancer Production" in report.stdout and "Unknown NoStatus" in report.stdout
        assert f"using the local sandbox's kubeconfig {sup.state.kubeconfig}" in report.stderr
    finally:
        sup.down(grace=5)
