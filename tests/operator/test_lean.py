"""The operator process runs without the data stack: MLflow's client then imports as under mlflow-skinny."""

from __future__ import annotations

import json
import subprocess
import sys

from modelops.lean import DATA_STACK

PROBE = """
import json, sys
from modelops.lean import data_stack_hidden
with data_stack_hidden():
    import modelops.runner  # everything the operator's handlers import
    from mlflow import MlflowClient
    MlflowClient("http://127.0.0.1:9")  # built, not called
    try:
        import pandas  # noqa: F401
        refused = False
    except ModuleNotFoundError:
        refused = True
loaded = [m for m in %r if sys.modules.get(m) is not None]
import modelops.rollout.analysis  # a rollout's analysis imports the stack when it needs it
print(json.dumps({"loaded": loaded, "refused": refused, "later": "pandas" in sys.modules}))
"""


def test_the_operator_imports_no_data_stack_and_mlflow_still_imports() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE % (DATA_STACK,)], capture_output=True, text=True, check=True, timeout=120
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result == {"loaded": [], "refused": True, "later": True}
