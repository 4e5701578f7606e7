"""PredictionLogger and its readers: layout, columns, flushing, windows, feedback, failures."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from modelops.contract import LOG_COLUMNS, LOG_FEATURE_PREFIX, LOG_STATUS_OK, prediction_log_partition
from modelops.monitoring.prediction_log import (
    USER_ID_COLUMN,
    FeatureMatrix,
    PredictionLogger,
    read_feedback,
    read_prediction_log,
    read_prediction_log_table,
)

HOUR = timedelta(hours=1)


def _files(base: Path) -> list[Path]:
    return sorted(p for p in base.rglob("*.parquet") if not p.name.startswith("."))


def _wait_for(predicate, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.02)


def test_log_prediction_layout_columns_and_read_back(tmp_path: Path) -> None:
    base = str(tmp_path / "log")
    with PredictionLogger(base, "churn", "Production", pod="pod-a") as logger:
        rid = logger.log_prediction(
            model_name="churn",
            model_version="1.0.0",
            features={"tenure": 5, "plan": "gold", "spend": 12.5},
            prediction="yes",
            probability=0.93,
            prediction_time_ms=15.3,
            user_id="user123",
        )
        logger.log_prediction("churn", "1.0.0", {"tenure": 7, "plan": None, "spend": None}, "no", request_id="given-id")
    files = _files(tmp_path / "log")
    assert len(files) == 1
    frame = read_prediction_log(base, "churn", "Production", datetime.now(UTC) - HOUR)
    day = frame["timestamp"].iloc[0].date()  # the rows' own (UTC) day: not this test's clock, a midnight later
    assert str(files[0].parent) == prediction_log_partition(base, "churn", "Production", day)
    assert files[0].parent.parent.name == "production"
    assert files[0].name.startswith("pod-a-")
    schema_names = pq.read_schema(files[0]).names
    assert tuple(schema_names[: len(LOG_COLUMNS)]) == LOG_COLUMNS
    assert schema_names[len(LOG_COLUMNS)] == USER_ID_COLUMN
    assert {f"{LOG_FEATURE_PREFIX}tenure", f"{LOG_FEATURE_PREFIX}plan", f"{LOG_FEATURE_PREFIX}spend"} <= set(
        schema_names
    )

    assert list(frame["request_id"]) == [rid, "given-id"]
    first, second = frame.iloc[0], frame.iloc[1]
    assert first["prediction"] == "yes" and first["probability"] == pytest.approx(0.93)
    assert first["latency_ms"] == pytest.approx(15.3) and first["user_id"] == "user123"
    assert first["status"] == LOG_STATUS_OK and first["model_version"] == "1.0.0"
    assert first["feature.plan"] == "gold" and first["feature.tenure"] == 5
    assert pd.isna(second["probability"]) and pd.isna(second["feature.plan"]) and pd.isna(second["feature.spend"])
    assert str(frame["timestamp"].dt.tz) == "UTC"


def test_log_prediction_rejects_another_model(tmp_path: Path) -> None:
    with PredictionLogger(str(tmp_path), "churn", "staging") as logger, pytest.raises(ValueError, match="churn"):
        logger.log_prediction("other", "1.0.0", {"a": 1}, 0)


def test_batches_matrix_and_columns_mixed_with_row_ids(tmp_path: Path) -> None:
    base = str(tmp_path)
    now = time.time() - 5
    with PredictionLogger(base, "m", "Staging", pod="p") as logger:
        logger.log_batch(
            model_version="2.0.0",
            registry_version="7",
            features=FeatureMatrix(("a", "b"), np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]])),
            predictions=np.array([0, 1, 1]),
            probabilities=np.array([0.6, 0.7, 0.8]),
            latency_ms=2.5,
            request_id="req",
            timestamp=now,
        )
        logger.log_batch(
            model_version="2.0.0",
            features={"a": np.array([7.0]), "c": np.array(["x"], dtype=object)},
            predictions=np.array([1]),
            latency_ms=1.0,
            request_id="solo",
            timestamp=now + 1,
            status="error",
        )
    frame = read_prediction_log(base, "m", "Staging", datetime.now(UTC) - HOUR)
    assert list(frame["request_id"]) == ["req:0", "req:1", "req:2", "solo"]
    assert list(frame["feature.a"]) == [1.0, 3.0, 5.0, 7.0]
    assert list(frame["feature.b"][:3]) == [2.0, 4.0, 6.0] and pd.isna(frame["feature.b"].iloc[3])
    assert frame["feature.c"].iloc[3] == "x" and frame["feature.c"][:3].isna().all()
    assert list(frame["registry_version"][:3]) == ["7"] * 3
    assert list(frame["status"]) == ["ok", "ok", "ok", "error"]
    assert list(frame["latency_ms"]) == [2.5, 2.5, 2.5, 1.0]


def test_flush_rows_writes_without_close(tmp_path: Path) -> None:
    logger = PredictionLogger(str(tmp_path), "m", "production", pod="p", flush_rows=5, flush_seconds=60)
    try:
        for i in range(4):
            logger.log_prediction("m", "1", {"x": i}, i)
        time.sleep(0.2)
        assert _files(tmp_path) == []  # below flush_rows and before flush_seconds: nothing written yet
        logger.log_prediction("m", "1", {"x": 4}, 4)
        _wait_for(lambda: len(_files(tmp_path)) == 1)
        assert pq.read_table(_files(tmp_path)[0]).num_rows == 5
    finally:
        logger.close()
    assert logger.stats.rows_written == 5 and logger.stats.files_written == 1


def test_flush_seconds_writes_without_close(tmp_path: Path) -> None:
    logger = PredictionLogger(str(tmp_path), "m", "production", flush_rows=1000, flush_seconds=0.2)
    try:
        logger.log_prediction("m", "1", {"x": 1}, 1)
        _wait_for(lambda: len(_files(tmp_path)) == 1)
    finally:
        logger.close()


def test_days_are_partitioned_and_windows_filter(tmp_path: Path) -> None:
    base = str(tmp_path)
    day1 = datetime(2026, 3, 1, 23, 59, 0, tzinfo=UTC)
    day2 = datetime(2026, 3, 2, 0, 1, 0, tzinfo=UTC)
    with PredictionLogger(base, "m", "production", pod="p") as logger:
        for i, moment in enumerate([day1, day2]):
            logger.log_batch(
                model_version="1",
                features={"x": np.array([float(i)])},
                predictions=np.array([i]),
                latency_ms=1,
                request_id=f"r{i}",
                timestamp=moment.timestamp(),
            )
    dirs = sorted(p.parent.name for p in _files(tmp_path))
    assert dirs == ["date=2026-03-01", "date=2026-03-02"]
    everything = read_prediction_log(base, "m", "production", datetime(2026, 3, 1), datetime(2026, 3, 3))
    assert list(everything["request_id"]) == ["r0", "r1"]
    only_second = read_prediction_log(base, "m", "production", datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 3))
    assert list(only_second["request_id"]) == ["r1"]
    before = read_prediction_log(base, "m", "production", datetime(2026, 2, 1), day1)  # until is exclusive
    assert before.empty and tuple(before.columns[: len(LOG_COLUMNS)]) == LOG_COLUMNS


def test_read_missing_log_is_empty(tmp_path: Path) -> None:
    frame = read_prediction_log(str(tmp_path / "nothing"), "m", "production", datetime(2020, 1, 1))
    assert frame.empty and "timestamp" in frame.columns
    assert read_feedback(str(tmp_path), "m", "production", datetime(2020, 1, 1)).empty


def test_feedback_roundtrip(tmp_path: Path) -> None:
    base = str(tmp_path)
    with PredictionLogger(base, "m", "Production", pod="p") as logger:
        logger.log_feedback("r1", "yes")
        logger.log_feedback("r2:0", 1)
    frame = read_feedback(base, "m", "Production", datetime.now(UTC) - HOUR)
    day = frame["timestamp"].iloc[0].date()  # the labels' own UTC day (date.today() is the local one)
    feedback_dir = Path(prediction_log_partition(base, "m", "Production", day, feedback=True))
    assert feedback_dir.is_dir() and feedback_dir.parent.name == "feedback"
    assert list(frame["request_id"]) == ["r1", "r2:0"]
    assert list(frame["label"]) == ["yes", "1"]  # mixed label types in one file are stored as strings
    assert read_prediction_log(base, "m", "Production", datetime.now(UTC) - HOUR).empty


def test_restarted_writer_does_not_overwrite(tmp_path: Path) -> None:
    for i in range(2):
        with PredictionLogger(str(tmp_path), "m", "production", pod="same") as logger:
            logger.log_prediction("m", "1", {"x": i}, i)
    assert len(_files(tmp_path)) == 2
    assert len(read_prediction_log(str(tmp_path), "m", "production", datetime.now(UTC) - HOUR)) == 2


def test_object_store_path_is_written_directly() -> None:
    base = f"memory://predlog-{time.time_ns()}"
    with PredictionLogger(base, "m", "production", pod="p") as logger:
        logger.log_prediction("m", "1", {"x": 1.5}, 1)
    frame = read_prediction_log(base, "m", "production", datetime.now(UTC) - HOUR)
    assert list(frame["feature.x"]) == [1.5]


def test_write_failure_keeps_rows_then_counts_drops(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the log directory should be")
    logger = PredictionLogger(str(blocker), "m", "production", flush_rows=1, flush_seconds=0.05)
    logger.log_prediction("m", "1", {"x": 1}, 1)
    _wait_for(lambda: logger.stats.write_errors >= 1)
    assert logger.stats.rows_dropped == 0  # kept for the next attempt
    logger.close()
    assert logger.stats.rows_written == 0
    assert logger.stats.rows_dropped == 1
    assert logger.stats.last_error is not None


def test_full_buffer_drops_and_counts(tmp_path: Path) -> None:
    logger = PredictionLogger(str(tmp_path), "m", "production", flush_rows=100, flush_seconds=60, max_buffer_rows=3)
    try:
        for i in range(5):
            logger.log_prediction("m", "1", {"x": i}, i)
        assert logger.stats.rows_dropped == 2
    finally:
        logger.close()
    assert logger.stats.rows_written == 3
    logger.log_prediction("m", "1", {"x": 9}, 9)  # after close: dropped, never raises
    assert logger.stats.rows_dropped == 3


def test_default_buffer_bound_is_at_least_min_buffer_rows(tmp_path: Path) -> None:
    """The default bound holds MIN_BUFFER_ROWS rows, or ten files' worth when files are larger."""
    from modelops.monitoring.prediction_log import MIN_BUFFER_ROWS

    for flush_rows, bound in ((100, MIN_BUFFER_ROWS), (10_000, MIN_BUFFER_ROWS), (50_000, 500_000)):
        with PredictionLogger(str(tmp_path), "m", "production", flush_rows=flush_rows) as logger:
            assert logger.max_buffer_rows == bound


def test_files_with_other_columns_and_types_concatenate(tmp_path: Path) -> None:
    base = str(tmp_path)
    moment = datetime(2026, 3, 1, 12, tzinfo=UTC)
    with PredictionLogger(base, "m", "production", pod="p") as logger:
        logger.log_prediction("m", "1", {"x": 1, "plan": "gold"}, "yes", request_id="r0")
        logger.flush()
        logger.log_prediction("m", "1", {"x": 2.5, "plan": "free", "new": "n"}, "no", request_id="r1")
    frame = read_prediction_log(base, "m", "production", datetime(2020, 1, 1))
    assert list(frame["request_id"]) == ["r0", "r1"]
    assert frame[f"{LOG_FEATURE_PREFIX}x"].tolist() == [1.0, 2.5]  # int64 and float64 files unify
    assert frame[f"{LOG_FEATURE_PREFIX}new"].isna().tolist() == [True, False]  # missing in the first file
    table = read_prediction_log_table(base, "m", "production", datetime(2020, 1, 1))
    assert table is not None and table.num_rows == 2 and table.column_names == list(frame.columns)
    assert read_prediction_log_table(base, "m", "production", datetime(2030, 1, 1)) is None

    # Types Arrow cannot unify (numbers in one file, strings in another) are read as strings.
    with PredictionLogger(base, "m", "production", pod="q") as logger:
        logger.log_batch(
            model_version="1",
            features={"x": np.array(["text"], dtype=object)},
            predictions=np.array(["yes"], dtype=object),
            latency_ms=1,
            request_id="r2",
            timestamp=moment.timestamp(),
        )
    mixed = read_prediction_log(base, "m", "production", datetime(2020, 1, 1))
    assert list(mixed["request_id"]) == ["r2", "r0", "r1"]  # sorted by timestamp
    assert mixed[f"{LOG_FEATURE_PREFIX}x"].tolist() == ["text", "1", "2.5"]
