"""hack/kind-e2e.sh cannot run here (no kind node images): lint it and check what it and the scenario it
shares with hack/node-e2e.sh (hack/e2e/scenario.sh, run for real by tests/realnode) assume."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from modelops.builders.common import drift_cronjob_name, serving_name
from modelops.builders.serving import SERVICE_PORT
from tests.install.helpers import ROOT, kustomize

SCRIPT = ROOT / "hack" / "kind-e2e.sh"
SCENARIO = ROOT / "hack" / "e2e" / "scenario.sh"
NODE_SCRIPT = ROOT / "hack" / "node-e2e.sh"


def _var(name: str) -> str:
    match = re.search(rf"""^{name}=["'](?:\$\{{{name}:-)?([^"'}}]*)""", SCENARIO.read_text(), re.M)
    assert match, name
    return match.group(1)


@pytest.mark.parametrize(
    "script", [SCRIPT, SCENARIO, NODE_SCRIPT, ROOT / "hack/images/build.sh", ROOT / "hack/kube/build.sh"], ids=str
)
def test_shellcheck_is_clean(script: Path) -> None:
    shellcheck = shutil.which("shellcheck")
    if shellcheck is None:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck)")
    result = subprocess.run([shellcheck, "-x", "-S", "style", str(script)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_script_is_wired_into_make() -> None:
    assert SCRIPT.stat().st_mode & 0o111, "executable"
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^kind-e2e:\n\tbash hack/kind-e2e\.sh$", makefile, re.M)
    assert re.search(r"^node-e2e: .*\n\tbash hack/node-e2e\.sh$", makefile, re.M) and NODE_SCRIPT.stat().st_mode & 0o111
    text = SCRIPT.read_text()
    assert text.startswith("#!/usr/bin/env bash\n") and "set -euo pipefail" in text
    assert "trap cleanup EXIT" in text and 'kind delete cluster --name "${CLUSTER}"' in text


def test_script_matches_the_chart_and_the_samples() -> None:
    for dockerfile in ("operator/Dockerfile", "serving_image/Dockerfile"):
        assert f'"${{ROOT}}/{dockerfile}"' in SCRIPT.read_text() and (ROOT / dockerfile).is_file()
    for script in (SCRIPT, NODE_SCRIPT):
        assert 'source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/e2e/scenario.sh"' in script.read_text()
        assert "\n  run_scenario\n" in script.read_text()
    text = SCENARIO.read_text()
    assert '"${ROOT}/helm/modelops"' in text and "--set mlflow.enabled=true" in text
    assert "operator.image.tag=" in text and "runtime.image.tag=" in text
    values = yaml.safe_load((ROOT / "helm" / "modelops" / "values.yaml").read_text())
    assert _var("OPERATOR_IMAGE").startswith(values["operator"]["image"]["repository"] + ":")
    assert _var("RUNTIME_IMAGE").startswith(values["runtime"]["image"]["repository"] + ":")
    # the sample it waits for, and the Service the operator creates for it
    samples = {o["metadata"]["name"]: o for o in kustomize(ROOT / "manifests" / "samples")}
    mv = samples[_var("MODEL_VERSION")]
    assert _var("SERVING_SERVICE") == serving_name(mv["spec"]["model"], mv["spec"]["stage"])
    mm = samples[_var("MODEL_MONITOR")]
    assert mm["kind"] == "ModelMonitor" and _var("DRIFT_CRONJOB") == drift_cronjob_name(mm["metadata"]["name"])
    assert f':{SERVICE_PORT}" >/dev/null' in text
    assert 'kubectl -n "${MODELS_NAMESPACE}" wait --for=condition=Ready' in text
    # the row it sends is the first row of the sample's dataset, in the dataset's column order
    assert mv["spec"]["training"]["data"]["uri"] == "sklearn://breast_cancer"
    from sklearn.datasets import load_breast_cancer

    first = load_breast_cancer(as_frame=True).data.iloc[0].tolist()
    assert [float(x) for x in _var("ROW").strip("[]").split(",")] == pytest.approx(first)


def test_release_name_matches_the_diagnostics() -> None:
    text = SCENARIO.read_text()
    assert "helm install modelops " in text
    assert "logs deploy/modelops " in text and "logs deploy/modelops-mlflow " in text
