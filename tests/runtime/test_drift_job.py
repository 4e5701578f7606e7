"""``modelops-runtime drift`` end to end against a sqlite MLflow store and a prediction log on disk.

The training-like run (reference sample artifact, ``model.features`` tag), the registered model
with its stage alias and the prediction log (contract layout) are built here directly, without
the training or serving runtime, so this test only depends on the contract.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from mlflow.entities import Run
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_breast_cancer

from modelops.api.modelmonitor import DriftSpec, HealthSpec
from modelops.contract import (
    ARTIFACT_DRIFT_REPORT,
    ARTIFACT_DRIFT_SUMMARY,
    ARTIFACT_REFERENCE,
    ENV_JOB_CONFIG,
    EXPERIMENT_MONITORING,
    LOG_COLUMNS,
    LOG_FEATURE_PREFIX,
    LOG_STATUS_OK,
    METRIC_ACCURACY,
    METRIC_CURRENT_ROWS,
    METRIC_DRIFT_SHARE,
    METRIC_DRIFTED_COLUMNS,
    METRIC_ERROR_RATE,
    METRIC_LATENCY_P50,
    METRIC_LATENCY_P95,
    METRIC_PREDICTIONS,
    TAG_FAILURE,
    TAG_MODEL_NAME,
    TAG_MODEL_STAGE,
    TAG_RESULT,
    TAG_SEMVER,
    TAG_UID,
    DriftJobConfig,
    Owner,
    TrainingResult,
    prediction_log_partition,
)
from modelops.datapolicy import DataUriPolicy
from modelops.monitoring.health import HealthReport
from modelops_runtime.drift import job

MODEL = "cancer"
FEATURES = ["mean radius", "mean texture", "mean perimeter", "mean area", "mean smoothness", "worst radius"]
SHIFTED = ["mean radius", "mean perimeter", "mean area", "worst radius"]


@dataclass
class Store:
    uri: str
    client: MlflowClient
    data: pd.DataFrame
    train_index: pd.Index


@pytest.fixture(scope="module")
def store(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    """A sqlite MLflow store with a training run (reference sample), a registered model in Production."""
    root = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    data = load_breast_cancer(as_frame=True).frame
    train = data.sample(frac=0.5, random_state=0)
    artifacts = (root / "artifacts").as_uri()
    exp = client.create_experiment("model-training", artifact_location=artifacts)
    client.create_experiment(EXPERIMENT_MONITORING, artifact_location=artifacts)
    meta = TrainingResult(task="classification", features=FEATURES, classes=["0", "1"])
    run = client.create_run(exp, tags={**meta.to_tags(), TAG_SEMVER: "1.2.0"})
    sample = root / "reference.parquet"
    train[[*FEATURES, "target"]].to_parquet(sample, index=False)
    client.log_artifact(run.info.run_id, str(sample), artifact_path=str(Path(ARTIFACT_REFERENCE).parent))
    client.set_terminated(run.info.run_id)
    client.create_registered_model(MODEL)
    mv = client.create_model_version(MODEL, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_model_version_tag(MODEL, mv.version, TAG_SEMVER, "1.2.0")
    client.set_registered_model_alias(MODEL, "production", mv.version)
    yield Store(uri, client, data, train.index)


def write_log(
    log_dir: Path,
    frame: pd.DataFrame,
    *,
    stage: str = "Production",
    latency_ms: float = 12.0,
    errors: int = 0,
    registry_version: str = "1",
    labels: pd.Series | None = None,
    now: datetime | None = None,
) -> None:
    """Write ``frame``'s features as prediction log rows of the last hour (contract layout), plus feedback."""
    now = now or datetime.now(UTC)
    n = len(frame)
    stamps = [now - timedelta(minutes=50) + timedelta(seconds=i) for i in range(n)]
    ids = [f"{registry_version}-{stage}-{now.timestamp()}-{i}" for i in range(n)]
    rows = pd.DataFrame(
        {
            "request_id": ids,
            "timestamp": pd.to_datetime(stamps, utc=True),
            "model_version": "1.2.0",
            "registry_version": registry_version,
            "latency_ms": latency_ms,
            "status": [LOG_STATUS_OK] * (n - errors) + ["error"] * errors,
            "prediction": frame["target"].astype(str).to_numpy(),  # a perfect model...
            "probability": 0.9,
        }
    )
    assert tuple(rows.columns) == LOG_COLUMNS
    for name in FEATURES:
        rows[LOG_FEATURE_PREFIX + name] = frame[name].to_numpy()
    rows["feature.session"] = "s"  # a column the model does not know
    part = Path(prediction_log_partition(str(log_dir), MODEL, stage, now.date()))
    part.mkdir(parents=True, exist_ok=True)
    name = f"pod-{registry_version}-{int(now.timestamp() * 1e6)}.parquet"
    rows.to_parquet(part / name, index=False)
    if labels is not None:
        fb = Path(prediction_log_partition(str(log_dir), MODEL, stage, now.date(), feedback=True))
        fb.mkdir(parents=True, exist_ok=True)
        feedback = pd.DataFrame({"request_id": ids, "label": labels.to_numpy(), "timestamp": pd.Timestamp(now)})
        feedback.to_parquet(fb / name, index=False)


def config(log_dir: Path, uid: str, **overrides: object) -> DriftJobConfig:
    values: dict[str, object] = {
        "owner": Owner(kind="ModelMonitor", namespace="ml", name=f"mon-{uid}", uid=uid),
        "model": MODEL,
        "stage": "Production",
        "window": "1h",
        "prediction_log_uri": str(log_dir),
        "drift": DriftSpec(min_rows=50),
        "health": HealthSpec(max_latency_p95_ms=100, min_accuracy=0.8),
        "data_policy": DataUriPolicy(local_path_prefixes=[str(log_dir)]),  # the test's folder is the data folder
    }
    values.update(overrides)
    return DriftJobConfig.model_validate(values)


def run_main(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], store: Store, cfg: DriftJobConfig | str
) -> tuple[int, str, str]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", store.uri)
    monkeypatch.setenv(ENV_JOB_CONFIG, cfg if isinstance(cfg, str) else cfg.to_env())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        code = job.main([])
    out = capsys.readouterr()
    return code, out.out, out.err


def monitoring_runs(store: Store, uid: str) -> list[Run]:
    exp = store.client.get_experiment_by_name(EXPERIMENT_MONITORING)
    assert exp is not None
    return list(
        store.client.search_runs(
            [exp.experiment_id], f"tags.`{TAG_UID}` = '{uid}'", order_by=["attributes.start_time DESC"]
        )
    )


def summary_of(store: Store, run: Run, tmp_path: Path) -> dict:
    path = store.client.download_artifacts(run.info.run_id, ARTIFACT_DRIFT_SUMMARY, str(tmp_path))
    return dict(json.loads(Path(path).read_text()))


def production(store: Store) -> pd.DataFrame:
    return store.data.drop(store.train_index)


# -- tests ----------------------------------------------------------------------------------------


def test_shifted_features_are_detected_and_written_to_mlflow(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    current = production(store).copy()
    for name in SHIFTED:
        current[name] += 3 * store.data[name].std()
    now = datetime.now(UTC)
    write_log(tmp_path, current, labels=current["target"], now=now, stage="Staging")
    write_log(tmp_path, current.iloc[:40], registry_version="0", now=now, stage="Staging")  # older version: left out
    store.client.set_registered_model_alias(MODEL, "staging", "1")

    code, out, err = run_main(monkeypatch, capsys, store, config(tmp_path, "uid-drift", stage="Staging"))
    assert code == 0, err
    assert "Completed" in out and "drift detected" in out

    (run,) = monitoring_runs(store, "uid-drift")
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags[TAG_RESULT] == "Completed"
    assert tags[TAG_MODEL_NAME] == MODEL and tags[TAG_MODEL_STAGE] == "Staging" and tags[TAG_SEMVER] == "1.2.0"
    assert tags["modelops.kind"] == "ModelMonitor" and tags["modelops.name"] == "mon-uid-drift"

    m = run.data.metrics
    n = len(current)
    assert m[METRIC_CURRENT_ROWS] == n and m[METRIC_PREDICTIONS] == n
    assert m[METRIC_DRIFTED_COLUMNS] == len(SHIFTED)
    assert m[METRIC_DRIFT_SHARE] == pytest.approx(len(SHIFTED) / len(FEATURES))
    assert m["drift_score.mean radius"] < 1e-10  # ks p-value
    assert {k for k in m if k.startswith("drift_score.")} == {f"drift_score.{f}" for f in FEATURES}
    assert m[METRIC_LATENCY_P50] == m[METRIC_LATENCY_P95] == 12.0
    assert m[METRIC_ERROR_RATE] == 0.0 and m[METRIC_ACCURACY] == 1.0

    summary = summary_of(store, run, tmp_path)
    drift = summary["drift"]
    assert drift["detected"] and sorted(drift["drifted_columns"]) == sorted(SHIFTED)
    assert drift["ignored_columns"] == ["session"]
    assert "target" not in [c["name"] for c in drift["columns"]]
    assert summary["health"]["status"] == "healthy" and summary["health"]["trend"] == "unknown"
    assert summary["rows_of_other_versions"] == 40
    assert summary["reference"]["source"].endswith(ARTIFACT_REFERENCE)
    assert summary["model_version"] == "1.2.0" and summary["registry_version"] == "1"
    report = store.client.download_artifacts(run.info.run_id, ARTIFACT_DRIFT_REPORT, str(tmp_path))
    page = Path(report).read_text()
    assert "modelops drift summary" in page and "mean radius" in page


def test_no_drift_and_accuracy_trend_across_runs(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    current = production(store)
    labels = current["target"].copy()
    wrong = labels.sample(frac=0.3, random_state=1).index
    labels.loc[wrong] = 1 - labels.loc[wrong]  # feedback disagrees on 30 %: accuracy 0.7 < 0.8
    write_log(tmp_path, current, labels=labels, latency_ms=30.0, errors=10)

    cfg = config(tmp_path, "uid-clean")
    assert run_main(monkeypatch, capsys, store, cfg)[0] == 0
    first = monitoring_runs(store, "uid-clean")[0]
    assert first.data.tags[TAG_RESULT] == "Completed"
    assert first.data.metrics[METRIC_DRIFTED_COLUMNS] <= 1 and first.data.metrics[METRIC_DRIFT_SHARE] < 0.5
    assert first.data.metrics[METRIC_ACCURACY] == pytest.approx(0.7, abs=0.01)
    summary = summary_of(store, first, tmp_path)
    assert not summary["drift"]["detected"]
    assert summary["health"]["status"] == "degraded"
    assert summary["health"]["issues"][0].startswith("accuracy decline")

    # A later run sees the earlier accuracy: 0.7 then 1.0 is improving.
    monkeypatch.setattr(job, "compute_health", _with_accuracy(1.0))
    assert run_main(monkeypatch, capsys, store, cfg)[0] == 0
    second = monitoring_runs(store, "uid-clean")[0]
    health = summary_of(store, second, tmp_path / "2")["health"]
    assert health["previous_accuracy"] == [pytest.approx(0.7, abs=0.01)]
    assert health["trend"] == "improving"


def _with_accuracy(value: float) -> Callable[..., HealthReport]:
    """compute_health whose window accuracy is forced to ``value`` (to age the model between runs)."""
    from modelops.monitoring import health as health_mod

    def compute(
        predictions: pd.DataFrame,
        spec: HealthSpec | None = None,
        *,
        feedback: pd.DataFrame | None = None,
        previous_accuracy: Sequence[float | None] = (),
        task: str | None = None,
    ) -> HealthReport:
        report = health_mod.measure_window(predictions, feedback=feedback, task=task)
        report.accuracy = value
        return health_mod.judge_health(report, spec, previous_accuracy)

    return compute


def test_no_serving_version_is_insufficient_data(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write_log(tmp_path, production(store), stage="Development")
    code, out, _ = run_main(monkeypatch, capsys, store, config(tmp_path, "uid-dev", stage="Development"))
    assert code == 0 and "InsufficientData" in out
    (run,) = monitoring_runs(store, "uid-dev")
    assert run.info.status == "FINISHED" and run.data.tags[TAG_RESULT] == "InsufficientData"
    assert TAG_SEMVER not in run.data.tags
    summary = summary_of(store, run, tmp_path)
    assert "alias 'development' unset" in summary["drift"]["message"]
    assert summary["health"]["status"] == "healthy"  # health is still judged from the log
    assert run.data.metrics[METRIC_PREDICTIONS] == len(production(store))


def test_too_few_rows_is_insufficient_data_with_health(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    write_log(tmp_path, production(store).iloc[:30])
    write_log(tmp_path, production(store), now=datetime.now(UTC) - timedelta(hours=2))  # before the window
    cfg = config(tmp_path, "uid-few", window="1h", drift=DriftSpec(min_rows=50))
    assert run_main(monkeypatch, capsys, store, cfg)[0] == 0
    (run,) = monitoring_runs(store, "uid-few")
    assert run.data.tags[TAG_RESULT] == "InsufficientData"
    assert METRIC_DRIFT_SHARE not in run.data.metrics and run.data.metrics[METRIC_PREDICTIONS] == 30
    summary = summary_of(store, run, tmp_path)
    assert "30 current rows, fewer than min_rows=50" in summary["drift"]["message"]
    written = [a.path for a in store.client.list_artifacts(run.info.run_id, "drift")]
    assert written == [ARTIFACT_DRIFT_SUMMARY]  # no HTML report without a comparison


def test_explicit_uris_without_the_features_tag(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    ref = tmp_path / "ref.csv"
    cur = tmp_path / "cur.parquet"
    store.data.loc[store.train_index].to_csv(ref, index=False)
    shifted = production(store).drop(columns=["target"])
    shifted["worst area"] *= 3
    shifted.to_parquet(cur)
    cfg = config(tmp_path, "uid-uri", reference_uri=str(ref), current_uri=cur.as_uri(), drift=DriftSpec(columns=None))
    monkeypatch.setattr(job, "resolve_served_version", _without_features(job.resolve_served_version))
    assert run_main(monkeypatch, capsys, store, cfg)[0] == 0
    (run,) = monitoring_runs(store, "uid-uri")
    summary = summary_of(store, run, tmp_path)
    drift = summary["drift"]
    assert "worst area" in drift["drifted_columns"]
    assert len(drift["columns"]) == 30  # every reference column present in current (not the target)
    assert any("no model.features" in note for note in drift["notes"])


def _without_features(real: Callable[..., job.ServedVersion | None]) -> Callable[..., job.ServedVersion | None]:
    def resolve(*args: Any) -> job.ServedVersion | None:
        served = real(*args)
        assert served is not None
        served.features = None
        return served

    return resolve


def test_invalid_config_exits_2_with_one_line(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run_main(monkeypatch, capsys, store, '{"model": "x"}')
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("drift failed: invalid job config: owner")
    monkeypatch.delenv(ENV_JOB_CONFIG)
    assert job.main([]) == 2
    assert capsys.readouterr().err.strip() == f"drift failed: {ENV_JOB_CONFIG} is not set"
    bad_stage = config(Path("log"), "u", stage="Archived").to_env()
    code, _, err = run_main(monkeypatch, capsys, store, bad_stage)
    assert code == 2 and "stage 'Archived' is not one of" in err
    assert job.load_config({ENV_JOB_CONFIG: config(Path("log"), "u", stage="staging").to_env()}).stage == "Staging"


def test_unreadable_reference_uri_is_a_failed_run_with_exit_2(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = config(tmp_path, "uid-bad-ref", reference_uri=str(tmp_path / "missing.parquet"))
    code, _, err = run_main(monkeypatch, capsys, store, cfg)
    assert code == 2 and "dataset not found" in err
    (run,) = monitoring_runs(store, "uid-bad-ref")
    assert run.info.status == "FAILED" and run.data.tags[TAG_RESULT] == "Failed"
    assert "dataset not found" in run.data.tags[TAG_FAILURE]


def test_storage_fault_is_a_failed_run_with_exit_1(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(Path("unused"), "uid-fault", prediction_log_uri="nosuchprotocol://bucket/log")
    code, _, err = run_main(monkeypatch, capsys, store, cfg)
    assert code == 1 and err.startswith("drift failed: ValueError") and err.count("\n") == 1
    (run,) = monitoring_runs(store, "uid-fault")
    assert run.info.status == "FAILED" and "nosuchprotocol" in run.data.tags[TAG_FAILURE]


def test_mlflow_unreachable_exits_1(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "2")
    cfg = DriftJobConfig(owner=Owner(kind="ModelMonitor", namespace="n", name="m", uid="u"), model="m", stage="Staging")
    monkeypatch.setenv(ENV_JOB_CONFIG, cfg.to_env())
    assert job.main([]) == 1
    assert "MLflow unreachable at http://127.0.0.1:9" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("column", "expected"),
    [
        ("mean radius", "drift_score.mean radius"),
        ("a/b:c", "drift_score.a_b_c"),
        ("ünïcode", "drift_score._n_code"),
        ("x..y", "drift_score.x_y"),
        ("", "drift_score._"),
    ],
)
def test_metric_keys_are_valid_for_mlflow(column: str, expected: str) -> None:
    from mlflow.utils.validation import _validate_metric_name

    key = job.metric_key(column, set())
    assert key == expected
    _validate_metric_name(key)


def test_metric_keys_stay_unique_and_short() -> None:
    taken: set[str] = set()
    first, second = job.metric_key("a/b", taken), job.metric_key("a:b", taken)
    assert first == "drift_score.a_b" and second.startswith("drift_score.a_b_") and first != second
    long_key = job.metric_key("x" * 400, taken)
    assert len(long_key) == job.MLFLOW_MAX_KEY
    assert np.unique([first, second, long_key]).size == 3


# -- reading by column and row, the report option -------------------------------------------------


def test_parquet_inputs_are_read_by_column_and_sampled_before_materialising(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """Above max_rows the job reads only the sampled rows of the feature columns and says it sampled."""
    ref = tmp_path / "ref.parquet"
    cur = tmp_path / "cur.parquet"
    store.data.loc[store.train_index].to_parquet(ref, index=False)  # 284 rows, with the target
    current = production(store).copy()
    current["session"] = "s"  # a column the model does not know
    current.to_parquet(cur, index=False)
    reads: list[tuple[int, list[str], int]] = []
    real = job.read_parquet_sampled

    def spy(source: Any, **kwargs: Any) -> Any:
        out = real(source, **kwargs)
        reads.append((len(out.frame), out.columns_read, out.total_rows))
        return out

    monkeypatch.setattr(job, "read_parquet_sampled", spy)
    drift = DriftSpec(min_rows=50, max_rows=100)
    cfg = config(tmp_path, "uid-sampled", reference_uri=str(ref), current_uri=str(cur), drift=drift)
    assert run_main(monkeypatch, capsys, store, cfg)[0] == 0
    assert reads == [(100, FEATURES, 284), (100, FEATURES, len(current))]  # features only, 100 rows each

    (run,) = monitoring_runs(store, "uid-sampled")
    summary = summary_of(store, run, tmp_path)
    result = summary["drift"]
    assert result["sampled"] and result["reference_rows_used"] == result["current_rows_used"] == 100
    assert (result["reference_rows"], result["current_rows"]) == (284, len(current))
    assert summary["reference"]["rows"] == 284 and summary["current"]["rows"] == len(current)
    assert any(f"current 100 of {len(current)}" in note for note in result["notes"])
    assert result["ignored_columns"] == [c for c in current.columns if c not in FEATURES]  # not read, still listed
    assert run.data.metrics[METRIC_CURRENT_ROWS] == len(current)

    # The same numbers as detect_drift sampling the whole frames in memory.
    from modelops.monitoring.drift import detect_drift

    whole = detect_drift(
        pd.read_parquet(ref), pd.read_parquet(cur), columns=FEATURES, min_rows=50, max_rows=100
    ).model_dump(mode="json")
    assert result == whole


@pytest.mark.parametrize(
    ("mode", "shift", "rendered"),
    [("Always", False, True), ("OnDrift", True, True), ("OnDrift", False, False), ("Never", True, False)],
)
def test_report_option_renders_evidently_or_a_short_page(
    store: Store,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    mode: str,
    shift: bool,
    rendered: bool,
) -> None:
    current = production(store).copy()
    if shift:
        current["mean radius"] += 3 * store.data["mean radius"].std()
    write_log(tmp_path, current)
    uid = f"uid-report-{mode}-{shift}"
    cfg = config(tmp_path, uid, drift=DriftSpec(min_rows=50, report=mode))
    assert run_main(monkeypatch, capsys, store, cfg)[0] == 0
    (run,) = monitoring_runs(store, uid)
    summary = summary_of(store, run, tmp_path)
    assert summary["report"]["mode"] == mode and summary["report"]["rendered"] is rendered
    page = Path(store.client.download_artifacts(run.info.run_id, ARTIFACT_DRIFT_REPORT, str(tmp_path))).read_text()
    assert "modelops drift summary" in page and "mean radius" in page  # the status link always opens a page
    if rendered:
        assert "plotly" in page.lower() and summary["report"]["plot_rows"] == [284, len(current)]
    else:
        assert "plotly" not in page.lower() and "was not rendered" in page
        assert summary["report"]["reason"] in page


def test_prediction_log_features_are_sampled_in_arrow_with_the_same_result(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """The job samples the log's feature columns before pandas; the result is detect_drift's on the whole window."""
    from modelops.monitoring.drift import detect_drift
    from modelops.monitoring.monitor import strip_feature_prefix
    from modelops.monitoring.prediction_log import read_prediction_log

    current = production(store).copy()
    current["mean area"] *= 1.5
    now = datetime.now(UTC)
    write_log(tmp_path, current, labels=current["target"], now=now)
    write_log(tmp_path, current.iloc[:40], registry_version="0", now=now)  # another version: left out
    drift = DriftSpec(min_rows=50, max_rows=100)
    assert run_main(monkeypatch, capsys, store, config(tmp_path, "uid-log-sampled", drift=drift))[0] == 0
    (run,) = monitoring_runs(store, "uid-log-sampled")
    summary = summary_of(store, run, tmp_path)
    result = summary["drift"]
    assert result["sampled"] and result["current_rows"] == len(current) and result["current_rows_used"] == 100
    assert summary["rows_of_other_versions"] == 40 and summary["health"]["predictions"] == len(current)
    assert summary["health"]["accuracy"] == 1.0  # health saw every row of the window, not the sample

    window = read_prediction_log(str(tmp_path), MODEL, "Production", now - timedelta(hours=1), now)
    window = window[window["registry_version"] == "1"].reset_index(drop=True)
    reference = pd.read_parquet(
        store.client.download_artifacts(
            store.client.get_model_version(MODEL, "1").run_id, ARTIFACT_REFERENCE, str(tmp_path / "ref")
        )
    )
    whole = detect_drift(reference, strip_feature_prefix(window), columns=FEATURES, min_rows=50, max_rows=100)
    assert result == whole.model_dump(mode="json")


def test_an_unparsable_reference_is_reported_by_its_error_class_not_its_content(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    secret = "AKIAFAKEFAKEFAKE1234"
    (tmp_path / "creds.parquet").write_text(f"aws_access_key_id={secret}\n")
    cfg = config(tmp_path, "uid-creds-ref", reference_uri=str(tmp_path / "creds.parquet"))
    code, _, err = run_main(monkeypatch, capsys, store, cfg)
    assert code == 2 and err.rstrip().endswith("creds.parquet: ArrowInvalid") and secret not in err
    (run,) = monitoring_runs(store, "uid-creds-ref")
    assert secret not in run.data.tags[TAG_FAILURE]


def test_a_current_uri_outside_the_data_policy_is_refused_before_it_is_read(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    cfg = config(tmp_path, "uid-etc", current_uri="/etc/os-release", current_format="csv", data_policy=DataUriPolicy())
    code, _, err = run_main(monkeypatch, capsys, store, cfg)
    assert code == 2 and "/etc/os-release refused by the data URI policy: local path" in err, err
    assert "PRETTY_NAME" not in err


def test_a_rollout_check_reads_the_candidate_partition_of_a_fixed_window_for_a_pinned_version(
    store: Store, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """A rollout's drift check (docs/rollout.md): the version is pinned (no alias points to it), the
    rows come from the candidate's partition over [window_start, window_end) only, and the run carries
    the window and side tags the operator searches by."""
    from modelops.contract import TAG_ROLLOUT_SIDE, TAG_ROLLOUT_WINDOW, candidate_log_stage

    shifted = production(store).copy()
    for name in SHIFTED:
        shifted[name] += 3 * store.data[name].std()
    now = datetime.now(UTC)
    partition = candidate_log_stage("Production")
    write_log(tmp_path, production(store), stage=partition, registry_version="1", now=now)  # in the window
    write_log(tmp_path, shifted, stage=partition, registry_version="1", now=now - timedelta(hours=2))  # before it
    write_log(tmp_path, shifted, stage="Production", registry_version="1", now=now)  # the stage's own rows
    store.client.delete_registered_model_alias(MODEL, "production")
    try:
        cfg = config(
            tmp_path,
            "uid-rollout",
            owner=Owner(kind="ModelVersion", namespace="ml", name="cancer-1-3-0", uid="uid-rollout"),
            registry_version="1",
            log_partition=partition,
            window_start=now - timedelta(hours=1),
            window_end=now,
            history_runs=0,
            run_tags={TAG_ROLLOUT_WINDOW: "w1", TAG_ROLLOUT_SIDE: "candidate"},
        )
        code, out, err = run_main(monkeypatch, capsys, store, cfg)
    finally:
        store.client.set_registered_model_alias(MODEL, "production", "1")
    assert code == 0, err
    (run,) = monitoring_runs(store, "uid-rollout")
    assert run.data.tags[TAG_RESULT] == "Completed"
    assert run.data.tags[TAG_ROLLOUT_WINDOW] == "w1" and run.data.tags[TAG_ROLLOUT_SIDE] == "candidate"
    assert run.data.metrics[METRIC_CURRENT_ROWS] == len(production(store))  # the window's rows of the partition
    assert run.data.metrics[METRIC_DRIFT_SHARE] == 0.0  # not the shifted rows before the window or of the stage
    summary = summary_of(store, run, tmp_path)
    assert summary["partition"] == partition and summary["registry_version"] == "1"

    # A version the registry does not have is InsufficientData, said plainly.
    cfg = cfg.model_copy(update={"registry_version": "99", "owner": cfg.owner.model_copy(update={"uid": "uid-gone"})})
    code, out, err = run_main(monkeypatch, capsys, store, cfg)
    assert code == 0, err
    (run,) = monitoring_runs(store, "uid-gone")
    assert run.data.tags[TAG_RESULT] == "InsufficientData" and "version 99" in out


def test_a_fixed_window_needs_both_ends(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="go together"):
        config(tmp_path, "x", window_start=datetime.now(UTC))
    with pytest.raises(ValueError, match="after window_start"):
        now = datetime.now(UTC)
        config(tmp_path, "x", window_start=now, window_end=now)
