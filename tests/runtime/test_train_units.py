"""The training runtime's pure pieces: estimator allowlist, hyperparameters, features, data helpers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier

from modelops.api.modelversion import DataSpec
from modelops.datapolicy import DataUriPolicy
from modelops_runtime.train import data, metrics, pipeline
from modelops_runtime.train.errors import InvalidInput


@pytest.mark.parametrize(
    ("path", "prefixes", "message"),
    [
        ("sklearnx.ensemble.Forest", ["sklearn."], "outside the allowed modules"),  # prefix is a module boundary
        ("os.system", ["sklearn"], "outside the allowed modules"),
        ("sklearn.ensemble.Nope", ["sklearn"], "has no 'Nope'"),
        ("sklearn.nope.Forest", ["sklearn."], "module 'sklearn.nope' not found"),
        ("sklearn.pipeline.make_pipeline", ["sklearn."], "not a scikit-learn estimator class"),
    ],
)
def test_estimator_refusals(path: str, prefixes: list[str], message: str) -> None:
    with pytest.raises(InvalidInput, match=message):
        pipeline.resolve_estimator(path, prefixes)


def test_estimator_checks() -> None:
    cls = pipeline.resolve_estimator("sklearn.ensemble.RandomForestClassifier", ["sklearn"])
    assert cls is RandomForestClassifier
    est = pipeline.make_estimator(cls, {"n_estimators": 5}, random_state=7)
    assert est.get_params()["random_state"] == 7 and est.get_params()["n_estimators"] == 5
    assert pipeline.make_estimator(cls, {"random_state": 1}, 7).get_params()["random_state"] == 1
    with pytest.raises(InvalidInput, match=r"unknown hyperparameters 'a', 'b' for RandomForestClassifier; valid: "):
        pipeline.make_estimator(cls, {"a": 1, "b": 2}, 0)
    scaler = pipeline.resolve_estimator("sklearn.preprocessing.StandardScaler", ["sklearn."])
    with pytest.raises(InvalidInput, match="neither a classifier nor a regressor"):
        pipeline.make_estimator(scaler, {}, 0)


def test_feature_selection() -> None:
    frame = pd.DataFrame(
        {
            "n": [1, 2],
            "f": [0.1, None],
            "s": ["a", None],
            "b": [True, False],
            "c": pd.Categorical(["x", "y"]),
            "t": pd.to_datetime(["2024-01-01", "2024-01-02"]),
            "y": [0, 1],
        }
    )
    features = pipeline.select_features(frame, DataSpec(uri="x.csv", target="y"))
    assert features.numeric == ["n", "f"] and features.categorical == ["s", "b", "c"] and features.ignored == ["t"]
    listed = pipeline.select_features(frame, DataSpec(uri="x.csv", target="y", categorical_features=["s"]))
    assert (listed.numeric, listed.categorical) == ([], ["s"])
    with pytest.raises(InvalidInput, match="feature column not in dataset: zz"):
        pipeline.select_features(frame, DataSpec(uri="x.csv", target="y", numeric_features=["zz"]))
    with pytest.raises(InvalidInput, match="not numeric: s"):
        pipeline.select_features(frame, DataSpec(uri="x.csv", target="y", numeric_features=["s"]))
    with pytest.raises(InvalidInput, match="also listed as a feature"):
        pipeline.select_features(frame, DataSpec(uri="x.csv", target="y", numeric_features=["y"]))
    prepared = pipeline.prepare_frame(frame, features)
    assert prepared["n"].dtype == np.float64
    assert prepared["s"].dtype == object and prepared["s"].isna().tolist() == [False, True]
    assert pipeline.prepare_target(pd.Series([1.0, 0.0], name="y"), "classification").dtype == np.int64
    with pytest.raises(InvalidInput, match="must be numeric for a regressor"):
        pipeline.prepare_target(pd.Series(["a", "b"], name="y"), "regression")


def test_formats_builtins_and_hash(tmp_path: Path) -> None:
    assert data.detect_format("s3://b/k/train.CSV") == "csv"
    assert data.detect_format("/d/train.csv.gz") == "csv"
    assert data.detect_format("https://h/x.parquet?sig=1") == "parquet"
    assert data.detect_format("/d/blob", "parquet") == "parquet"
    with pytest.raises(InvalidInput, match=r"set data\.format"):
        data.detect_format("/d/blob")
    with pytest.raises(InvalidInput, match="unknown built-in dataset 'sklearn://mnist'"):
        data.load_builtin("sklearn://mnist")
    iris = data.load_dataset(DataSpec(uri="sklearn://iris", target="target"), DataUriPolicy())
    assert iris.shape == (150, 5) and "target" in iris.columns

    frame = pd.DataFrame({"a": [1, 2], "b": ["x", None]})
    digest = data.dataset_hash(frame)
    assert digest == data.dataset_hash(frame.copy())
    assert digest != data.dataset_hash(frame.assign(a=[1, 3]))
    assert digest != data.dataset_hash(frame.iloc[::-1])  # row order is content
    assert digest != data.dataset_hash(frame.rename(columns={"a": "A"}))

    local = DataUriPolicy(local_path_prefixes=[str(tmp_path)])  # the test's data folder
    empty = tmp_path / "empty.csv"
    empty.write_text("a,b\n")
    with pytest.raises(InvalidInput, match="has no rows"):
        data.load_dataset(DataSpec(uri=str(empty), target="b"), local)
    broken = tmp_path / "broken.parquet"
    broken.write_text("not parquet")
    with pytest.raises(InvalidInput, match="cannot read parquet dataset"):
        data.load_dataset(DataSpec(uri=str(broken), target="b"), local)


def test_metrics_and_profile() -> None:
    m = metrics.classification_metrics([0, 1, 1, 0], [0, 1, 0, 0], [0.1, 0.9, 0.4, 0.2])
    assert m["accuracy"] == 0.75 and m["roc_auc"] == 1.0
    assert m["f1_score"] == m["f1_weighted"]
    r = metrics.regression_metrics([1.0, 2.0, 3.0], [1.0, 2.0, 5.0])
    assert r["mae"] == pytest.approx(2 / 3) and r["rmse"] == pytest.approx(np.sqrt(4 / 3))
    profile = metrics.profile_frame(pd.DataFrame({"x": [1.0, None, 3.0, 4.0], "c": ["a", "a", "b", None]}))
    assert profile["rows"] == 4
    assert profile["columns"]["x"]["missing_share"] == 0.25 and profile["columns"]["x"]["p50"] == 3.0
    assert profile["columns"]["c"]["top"] == {"a": 2, "b": 1} and profile["columns"]["c"]["distinct"] == 2


def test_gc_paused_restores_the_collector_and_freezes_what_it_imported() -> None:
    import gc

    from modelops_runtime.jobrun import gc_paused

    assert gc.isenabled()
    try:
        with gc_paused():
            assert not gc.isenabled()
            inside = [[]]  # allocated in the block: frozen on exit
        assert gc.isenabled() and gc.get_freeze_count() > 0
        assert inside
        gc.disable()
        with gc_paused():
            pass
        assert not gc.isenabled()  # a collector disabled by the caller stays disabled
    finally:
        gc.enable()
        gc.unfreeze()


def test_training_stack_imports_scipy_special_before_mlflow_and_skops() -> None:
    """The order that keeps skops' import short (see ``import_training_stack``), in a fresh interpreter."""
    import subprocess
    import sys

    code = (
        "import gc, sys\n"
        "from modelops_runtime.train.job import TRAINING_STACK, import_training_stack\n"
        "assert 'mlflow' not in sys.modules and 'skops.io' not in sys.modules\n"
        "import_training_stack()\n"
        "names = list(sys.modules)\n"
        "assert all(name in sys.modules for name in TRAINING_STACK)\n"
        "assert names.index('scipy.special') < names.index('skops.io') < names.index('mlflow')\n"
        "assert gc.isenabled()\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_a_dataset_server_refusing_connections_is_unavailable_not_missing(tmp_path: Path) -> None:
    """fsspec reports a refused HTTP connection as FileNotFoundError: it must stay a transient
    failure (exit code 1, retried by the Job), not invalid input (exit code 2, final)."""
    import socket

    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(data.DatasetUnavailable, match=r"cannot reach dataset .*ConnectionRefusedError"):
        url = f"http://127.0.0.1:{port}/iris.csv"
        data.read_table(url, "csv", url)
    with pytest.raises(InvalidInput, match="dataset not found"):
        data.read_table(str(tmp_path / "absent.csv"), "csv", "absent.csv")


def test_the_admission_ranges_name_metrics_the_runtime_computes_and_hold_for_them() -> None:
    """``METRIC_RANGES`` (the CRD's refusal of an unreachable ``promotion.minValue``) names only
    metrics the runtime logs, and every value the runtime computes, on good and on useless
    predictions, lies in its range."""
    import numpy as np

    from modelops.api.modelversion import METRIC_RANGES
    from modelops_runtime.train.metrics import classification_metrics, regression_metrics

    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 200)
    computed: dict[str, list[float]] = {}
    for pred, score in ((y, y * 0.9 + 0.05), (1 - y, rng.random(200))):
        for name, value in classification_metrics(y, pred, score).items():
            computed.setdefault(name, []).append(value)
    target = rng.normal(100, 30, 200)
    for pred in (target + rng.normal(0, 1, 200), rng.normal(0, 1000, 200)):
        for name, value in regression_metrics(target, pred).items():
            computed.setdefault(name, []).append(value)
    computed["training_time_s"] = computed["inference_time_ms"] = [0.0]  # wall times: never negative
    assert set(METRIC_RANGES) <= set(computed)
    for name, (low, high) in METRIC_RANGES.items():
        assert all((low is None or v >= low) and (high is None or v <= high) for v in computed[name]), name
    assert min(computed["r2"]) < 0  # why R² has no lower bound
