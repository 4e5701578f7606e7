"""The README documents every operator setting and every metric the code exports."""

from __future__ import annotations

from modelops.contract import PROM_ACCURACY, PROM_DRIFT, PROM_ERRORS, PROM_LATENCY, PROM_PREDICTIONS
from modelops.settings import Settings
from modelops.telemetry import OperatorMetrics
from tests.conftest import ROOT

README = (ROOT / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    missing = [f"MODELOPS_{n.upper()}" for n in Settings.model_fields if f"`MODELOPS_{n.upper()}`" not in README]
    assert not missing, f"README configuration table lacks {missing}"


def test_every_metric_is_in_the_readme() -> None:
    names = {PROM_ACCURACY, PROM_DRIFT, PROM_ERRORS, PROM_LATENCY, PROM_PREDICTIONS}
    for family in OperatorMetrics().registry.collect():
        names.add(family.name + ("_total" if family.type == "counter" else ""))
    missing = sorted(n for n in names if n not in README)
    assert not missing, f"README metrics reference lacks {missing}"


def test_readme_names_the_two_commands_and_ci_runs_the_test_command() -> None:
    assert "make demo" in README and "make test" in README
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_the_sandbox_docs_name_the_settings_the_demo_runs_the_operator_with() -> None:
    from modelops.demo.flow import OPERATOR_ENV

    sandbox = (ROOT / "docs" / "sandbox.md").read_text()
    missing = [f"{k}={v}" for k, v in OPERATOR_ENV.items() if f"`{k}={v}`" not in sandbox]
    assert not missing, f"docs/sandbox.md does not say the demo's operator runs with {missing}"
