"""Reading drift inputs by column and sampled row (modelops.monitoring.tables)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from modelops.monitoring import tables
from modelops.monitoring.drift import detect_drift, sample_positions
from modelops.monitoring.tables import read_parquet_sampled


def _frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(3)
    return pd.DataFrame(
        {
            "x": rng.normal(size=rows),
            "n": rng.integers(0, 9, rows).astype(float),
            "c": rng.choice(["a", "b", None], rows),
            "extra": rng.normal(size=rows),
        },
        index=pd.RangeIndex(5, 5 + rows),
    )


def test_only_the_named_columns_are_read_and_missing_ones_listed(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    _frame(500).to_parquet(path)
    read = read_parquet_sampled(path, columns=["c", "x", "absent"])
    assert read.columns_read == ["x", "c"] and read.missing_columns == ["absent"]  # file order
    assert read.file_columns[:4] == ["x", "n", "c", "extra"] and read.total_rows == 500 and not read.sampled
    assert isinstance(read.frame["c"].dtype, pd.CategoricalDtype)
    whole = pd.read_parquet(path)
    assert read.frame["x"].tolist() == whole["x"].tolist()
    assert read.frame["c"].astype(object).where(read.frame["c"].notna(), None).tolist() == whole["c"].tolist()
    assert list(read.frame.index) == list(range(500))


def test_rows_above_max_rows_are_the_ones_detect_drift_samples(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tables, "BATCH_ROWS", 256)  # several batches, positions across them
    path = tmp_path / "f.parquet"
    frame = _frame(3000)
    pq.write_table(pa.Table.from_pandas(frame), path, row_group_size=1000)
    read = read_parquet_sampled(path, columns=["x", "n", "c"], max_rows=700, random_state=4)
    positions = sample_positions(3000, 700, 4)
    assert positions is not None and read.sampled and read.total_rows == 3000 and len(read.frame) == 700
    assert read.frame["x"].tolist() == frame["x"].iloc[positions].tolist()

    ref = _frame(3000)
    first = detect_drift(
        read.frame, ref, columns=["x", "n", "c"], max_rows=700, random_state=4, reference_total_rows=3000
    )
    second = detect_drift(frame, ref, columns=["x", "n", "c"], max_rows=700, random_state=4)
    assert first.model_dump() == second.model_dump()


def test_an_empty_file_reads_as_an_empty_frame(tmp_path: Path) -> None:
    path = tmp_path / "f.parquet"
    _frame(0).to_parquet(path)
    read = read_parquet_sampled(path, columns=["x"], max_rows=10)
    assert read.total_rows == 0 and list(read.frame.columns) == ["x"] and read.frame.empty
