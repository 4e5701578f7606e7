"""``modelops sandbox logs`` on a sandbox's state directory (the kubelet's files only, no API): kubectl's
``KIND/NAME`` form, and a hint when the name is a sandbox component rather than a workload."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from modelops.sandbox.cli import app


def _state(tmp_path: Path) -> Path:
    pod = tmp_path / "kubelet" / "pods" / "default" / "web-7f9c-abcde"
    pod.mkdir(parents=True)
    record = {"name": "web-7f9c-abcde", "owner": {"name": "web"}, "containers": ["server"], "created": 1}
    (pod / "pod.json").write_text(json.dumps(record))
    (pod / "server.log").write_text("serving on :8080\n")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "operator.log").write_text("operator ready\n")
    return tmp_path


def test_kubectl_kind_slash_name_finds_the_workloads_pods(tmp_path: Path) -> None:
    state = _state(tmp_path)
    for name in ("web", "deployment/web", "deploy/web"):
        done = CliRunner().invoke(app, ["logs", name, "--state-dir", str(state)])
        assert done.exit_code == 0, done.output
        assert "serving on :8080" in done.output


def test_a_component_name_without_component_says_how_to_read_its_log(tmp_path: Path) -> None:
    state = _state(tmp_path)
    done = CliRunner().invoke(app, ["logs", "operator", "--state-dir", str(state)])
    assert done.exit_code == 1
    assert "no pods of default/operator" in done.output
    assert "modelops sandbox logs --component operator" in done.output
    done = CliRunner().invoke(app, ["logs", "--component", "operator", "--state-dir", str(state)])
    assert done.exit_code == 0 and "operator ready" in done.output
    missing = CliRunner().invoke(app, ["logs", "job/nothing", "--state-dir", str(state)])
    assert missing.exit_code == 1 and "no pods of default/nothing" in missing.output
    assert "--component" not in missing.output
