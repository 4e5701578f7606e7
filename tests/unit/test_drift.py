"""Drift detection (modelops.monitoring.drift): Evidently's tests per column, edge cases as results."""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
from palmerpenguins import load_penguins
from sklearn.datasets import load_breast_cancer

from modelops.api.modelmonitor import DriftStatus
from modelops.monitoring import drift as drift_mod
from modelops.monitoring.drift import DriftResult, default_stattest_name, detect_drift

PENGUIN_FEATURES = ["island", "bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "sex"]


@pytest.fixture(autouse=True)
def _quiet_scipy() -> None:
    # scipy warns about precision loss on near-constant samples; the results are still checked.
    warnings.simplefilter("ignore", RuntimeWarning)


@pytest.fixture(scope="module")
def cancer() -> pd.DataFrame:
    return load_breast_cancer(as_frame=True).data


@pytest.fixture(scope="module")
def penguins() -> pd.DataFrame:
    return load_penguins()


def split(frame: pd.DataFrame, seed: int = 7) -> tuple[pd.DataFrame, pd.DataFrame]:
    order = np.random.default_rng(seed).permutation(len(frame))
    half = len(frame) // 2
    return frame.iloc[order[:half]], frame.iloc[order[half:]]


def assert_share_sane(result: DriftResult) -> None:
    if result.share is not None:
        assert math.isfinite(result.share) and 0 <= result.share <= 1
    for col in result.columns:
        assert col.score is None or math.isfinite(col.score)


# -- real data, known drift ----------------------------------------------------------------------


SEEDS = range(5)


@pytest.mark.parametrize("seed", SEEDS)
def test_breast_cancer_random_split_is_not_drift(cancer: pd.DataFrame, seed: int) -> None:
    ref, cur = split(cancer, seed)
    result = detect_drift(ref, cur)
    assert result.result == "Completed"
    assert not result.detected
    # ks at p < 0.05 on 30 columns: a false positive column now and then is expected, not more
    assert result.share is not None and result.share <= 0.1
    assert {c.stattest for c in result.columns} == {"ks"}  # <= 1000 reference rows, many values
    assert_share_sane(result)


@pytest.mark.parametrize("seed", SEEDS)
def test_breast_cancer_shifted_feature_is_named(cancer: pd.DataFrame, seed: int) -> None:
    ref, cur = split(cancer, seed)
    cur = cur.copy()
    cur["mean radius"] += 3 * cancer["mean radius"].std()
    result = detect_drift(ref, cur)
    assert "mean radius" in result.drifted_columns
    col = result.column("mean radius")
    assert col.drifted and col.stattest == "ks" and col.score is not None and col.score < 1e-10
    assert col.threshold == pytest.approx(0.05)
    clean = detect_drift(ref, split(cancer, seed)[1])
    assert len(result.drifted_columns) == len(clean.drifted_columns) + 1 - ("mean radius" in clean.drifted_columns)
    assert not result.detected  # one column of 30 is below the 50 % dataset share
    assert detect_drift(ref, cur, drift_share=0.03).detected


def test_large_frames_use_distances_and_find_the_shift(cancer: pd.DataFrame) -> None:
    ref = cancer.sample(n=3000, replace=True, random_state=1)
    cur = cancer.sample(n=3000, replace=True, random_state=2)
    cur["mean texture"] += 3 * cancer["mean texture"].std()
    result = detect_drift(ref, cur)
    assert result.column("mean radius").stattest == "wasserstein"
    assert result.drifted_columns == ["mean texture"]
    assert (result.column("mean texture").score or 0.0) > 1.0  # normed Wasserstein distance ~ 3 std


@pytest.mark.parametrize("seed", SEEDS)
def test_penguins_random_split_is_not_drift(penguins: pd.DataFrame, seed: int) -> None:
    ref, cur = split(penguins, seed)
    result = detect_drift(ref, cur, columns=PENGUIN_FEATURES)
    assert not result.detected and len(result.drifted_columns) <= 1
    assert result.column("island").stattest == "chisquare"
    assert result.column("sex").stattest == "z"  # two values
    assert result.column("bill_length_mm").reason is None  # a few missing values are dropped, not fatal
    assert result.ignored_columns == ["species", "year"]


@pytest.mark.parametrize("seed", SEEDS)
def test_penguins_reweighted_island_is_named(penguins: pd.DataFrame, seed: int) -> None:
    ref, cur = split(penguins, seed)
    weights = cur["island"].map({"Biscoe": 0.1, "Dream": 1.0, "Torgersen": 3.0}).to_numpy()
    shifted = cur.sample(n=len(cur), replace=True, weights=weights / weights.sum(), random_state=seed)
    result = detect_drift(ref, shifted, columns=PENGUIN_FEATURES)
    assert "island" in result.drifted_columns
    island = result.column("island")
    assert island.kind == "categorical" and island.score is not None and island.score < 1e-4
    assert result.detected  # island drags the body measurements with it: most features move


# -- Evidently's default test choice --------------------------------------------------------------


@pytest.mark.parametrize("rows", [200, 1000, 1001, 3000])
@pytest.mark.parametrize("distinct", [1, 2, 3, 5, 6, 40])
@pytest.mark.parametrize("kind", ["numerical", "categorical"])
def test_default_test_mirrors_evidently(rows: int, distinct: int, kind: str) -> None:
    from evidently.legacy.calculations.stattests import get_stattest
    from evidently.legacy.core import ColumnType

    values = np.arange(rows) % distinct
    ref = pd.Series(values if kind == "numerical" else values.astype(str))
    cur = ref.iloc[::-1].reset_index(drop=True)
    ctype = ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical
    expected = get_stattest(ref, cur, ctype, None).name
    assert default_stattest_name(kind, rows, distinct) == expected  # type: ignore[arg-type]
    assert drift_mod._distinct_capped(ref, cur, 5) == min(distinct, 6)


# -- edge cases are results ------------------------------------------------------------------------


def frames(rows_ref: int = 200, rows_cur: int = 200, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)

    def make(n: int) -> pd.DataFrame:
        return pd.DataFrame({"x": rng.normal(size=n), "y": rng.gamma(2.0, size=n), "c": rng.choice(list("abc"), n)})

    return make(rows_ref), make(rows_cur)


def test_too_few_current_rows_is_insufficient_data() -> None:
    ref, cur = frames(rows_cur=49)
    result = detect_drift(ref, cur, min_rows=50)
    assert result.result == "InsufficientData"
    assert "49 current rows" in (result.message or "")
    assert result.share is None and not result.detected and result.columns == []
    assert detect_drift(ref, cur, min_rows=49).result == "Completed"


def test_empty_window_and_empty_reference_are_insufficient_data() -> None:
    ref, cur = frames()
    empty = detect_drift(ref, cur.iloc[0:0])
    assert empty.result == "InsufficientData" and empty.current_rows == 0
    no_ref = detect_drift(ref.iloc[0:0], cur)
    assert no_ref.result == "InsufficientData" and "reference" in (no_ref.message or "")


def test_constant_in_both_is_skipped_and_share_stays_finite() -> None:
    ref, cur = frames()
    ref["k"], cur["k"] = 3.0, 3.0
    ref["kc"], cur["kc"] = "same", "same"
    result = detect_drift(ref, cur)
    for name in ("k", "kc"):
        col = result.column(name)
        assert col.reason is not None and "constant" in col.reason
        assert col.score is None and not col.drifted
    assert sorted(result.compared_columns) == ["c", "x", "y"]
    assert result.share is not None and math.isfinite(result.share)
    assert_share_sane(result)


def test_constant_with_different_values_is_compared_and_drifts() -> None:
    ref, cur = frames()
    ref["k"], cur["k"] = 1.0, 2.0
    col = detect_drift(ref, cur).column("k")
    assert col.reason is None and col.drifted and col.stattest == "z"


@pytest.mark.parametrize("side", ["reference", "current"])
def test_all_missing_column_is_skipped(side: str) -> None:
    ref, cur = frames()
    (ref if side == "reference" else cur)["x"] = np.nan
    result = detect_drift(ref, cur)
    col = result.column("x")
    assert col.reason == f"all values missing in the {side} data"
    assert "x" not in result.compared_columns
    assert_share_sane(result)


def test_infinities_count_as_missing() -> None:
    ref, cur = frames()
    cur["x"] = np.inf
    assert detect_drift(ref, cur).column("x").reason == "all values missing in the current data"


def test_nothing_comparable_is_insufficient_data_not_nan() -> None:
    ref, cur = frames()
    cur[["x", "y"]] = np.nan
    cur["c"] = None
    result = detect_drift(ref, cur)
    assert result.result == "InsufficientData"
    assert result.share is None and not result.detected
    assert "no feature column" in (result.message or "")


def test_unknown_columns_are_ignored_and_listed() -> None:
    ref, cur = frames()
    cur["session_id"] = np.arange(len(cur))
    cur["debug"] = "x"
    result = detect_drift(ref, cur)
    assert result.ignored_columns == ["session_id", "debug"]
    assert [c.name for c in result.columns] == ["x", "y", "c"]


def test_only_named_features_are_compared_and_missing_ones_reported() -> None:
    ref, cur = frames()
    ref["target"] = np.arange(len(ref)) % 2
    cur = cur.drop(columns=["y"])
    result = detect_drift(ref, cur, columns=["x", "y", "c"])
    assert [c.name for c in result.columns] == ["x", "y", "c"]
    assert result.column("y").reason == "missing from the current data"
    assert "target" not in [c.name for c in result.columns]
    assert result.share == 0.0


def test_non_numeric_current_values_in_a_numeric_column() -> None:
    ref, cur = frames()
    cur["x"] = "oops"
    assert detect_drift(ref, cur).column("x").reason == "current values are not numeric"
    ref2, cur2 = frames()
    cur2["x"] = cur2["x"].astype(object)
    cur2.loc[:9, "x"] = "n/a"
    result = detect_drift(ref2, cur2)
    assert result.column("x").compared
    assert any("10 current values are not numbers" in note for note in result.notes)


def test_categorical_values_compare_by_value_across_types() -> None:
    ref = pd.DataFrame({"level": pd.Series([1, 2, 3] * 40, dtype="category")})
    cur = pd.DataFrame({"level": ["1", "2", "3"] * 40})
    col = detect_drift(ref, cur).column("level")
    assert col.kind == "categorical" and not col.drifted and col.score == pytest.approx(1.0)


def test_datetime_columns_are_skipped() -> None:
    ref, cur = frames()
    ref["when"] = pd.Timestamp("2024-01-01")
    cur["when"] = pd.Timestamp("2024-02-01")
    assert (detect_drift(ref, cur).column("when").reason or "").startswith("unsupported dtype datetime64")


def test_frames_above_max_rows_are_sampled_and_say_so() -> None:
    ref, cur = frames(rows_ref=3000, rows_cur=2500)
    result = detect_drift(ref, cur, max_rows=1000)
    assert result.sampled
    assert (result.reference_rows, result.reference_rows_used) == (3000, 1000)
    assert (result.current_rows, result.current_rows_used) == (2500, 1000)
    assert any("sampled" in note for note in result.notes)
    again = detect_drift(ref, cur, max_rows=1000)
    assert [c.score for c in again.columns] == [c.score for c in result.columns]  # seeded
    assert not detect_drift(ref, cur).sampled


def test_method_and_threshold_apply_to_every_column() -> None:
    ref, cur = frames()
    result = detect_drift(ref, cur, method="psi", threshold=0.3)
    assert {c.stattest for c in result.columns} == {"psi"}
    assert {c.threshold for c in result.columns} == {0.3}
    ks = detect_drift(ref, cur, method="ks")
    assert ks.column("x").stattest == "ks"
    assert ks.column("c").stattest == "chisquare"  # ks does not apply to categories: default, noted
    assert any("'ks' does not apply to categorical" in note for note in ks.notes)


def test_unknown_method_and_bad_arguments_raise() -> None:
    ref, cur = frames()
    with pytest.raises(ValueError, match="unknown drift method"):
        detect_drift(ref, cur, method="nonsense")
    with pytest.raises(ValueError, match="drift_share"):
        detect_drift(ref, cur, drift_share=0)


def test_non_finite_test_score_is_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    @dataclass
    class Outcome:
        drift_score: float
        drifted: bool
        actual_threshold: float

    class NanTest:
        name = "nan_test"

        def __call__(self, *args: object) -> Outcome:
            return Outcome(float("nan"), True, 0.05)

    monkeypatch.setattr(drift_mod, "_default_stattest", lambda *a: NanTest())
    result = detect_drift(*frames())
    assert all(c.reason == "test nan_test returned a non-finite score" for c in result.columns)
    assert result.result == "InsufficientData" and result.share is None


def test_status_and_html_report(cancer: pd.DataFrame) -> None:
    ref, cur = split(cancer)
    cur = cur.copy()
    cur["mean radius"] += 3 * cancer["mean radius"].std()
    ref["constant"], cur["constant"] = 1.0, 1.0
    result = detect_drift(ref, cur, columns=["mean radius", "mean texture", "constant"])
    status = result.to_status(report_uri="file:///r.html")
    DriftStatus.model_validate(status.to_wire())
    assert status.drifted_columns == ["mean radius"] and status.report_uri == "file:///r.html"
    assert [c.name for c in status.columns] == ["mean radius", "mean texture", "constant"]
    page = result.report_html()
    assert page.lstrip().lower().startswith("<html") or "<html" in page[:500].lower()
    assert "modelops drift summary" in page
    assert "constant: constant (1.0) in both" in page
    assert "mean texture" in page
    with pytest.raises(ValueError, match="no compared columns"):
        detect_drift(ref, cur.iloc[:3]).report_html()


def test_evidently_report_has_the_same_numbers(penguins: pd.DataFrame) -> None:
    """The HTML report's Evidently run tests exactly the values the result was computed on."""
    ref = penguins.sample(n=3000, replace=True, random_state=0).reset_index(drop=True)
    cur = penguins.sample(n=2500, replace=True, random_state=1).reset_index(drop=True)
    cur.loc[:99, "bill_length_mm"] = np.inf  # dropped like missing values
    cur["bill_depth_mm"] = cur["bill_depth_mm"].astype(object)
    cur.loc[100:109, "bill_depth_mm"] = "n/a"  # non-numbers dropped too
    cur["island"] = cur["island"].astype("category")
    ref["year"] = ref["year"].astype(str)  # categorical in the reference, numbers in current
    ref["k"], cur["k"] = 1.0, 1.0  # skipped: not in the report
    columns = [*PENGUIN_FEATURES, "year", "k"]
    for kwargs in ({}, {"max_rows": 2000}, {"method": "psi", "threshold": 0.05}):
        result = detect_drift(ref, cur, columns=columns, **kwargs)
        table = result.evidently_report(pin_numbers=False).as_dict()["metrics"][0]["result"]["drift_by_columns"]
        assert sorted(table) == sorted(result.compared_columns) and "k" not in table
        for name, theirs in table.items():
            ours = result.column(name)
            assert theirs["drift_score"] == pytest.approx(ours.score, rel=1e-9), (kwargs, name)
            assert theirs["drift_detected"] == ours.drifted
            assert theirs["stattest_threshold"] == pytest.approx(ours.threshold)


# -- sampling before materialising, the report's plot sample --------------------------------------


def test_pre_sampled_frames_give_the_whole_frames_result() -> None:
    ref, cur = frames(rows_ref=3000, rows_cur=2500)
    ref_rows, cur_rows = drift_mod.sample_positions(3000, 1000, 0), drift_mod.sample_positions(2500, 1000, 0)
    assert ref_rows is not None and cur_rows is not None and drift_mod.sample_positions(1000, 1000, 0) is None
    whole = detect_drift(ref, cur, max_rows=1000)
    pre = detect_drift(
        ref.iloc[ref_rows], cur.iloc[cur_rows], max_rows=1000, reference_total_rows=3000, current_total_rows=2500
    )
    assert pre.model_dump() == whole.model_dump() and pre.sampled
    with pytest.raises(ValueError, match="does not fit"):
        detect_drift(ref, cur, max_rows=1000, reference_total_rows=10)


def test_current_columns_name_the_ignored_columns_of_a_partial_read() -> None:
    ref, cur = frames()
    result = detect_drift(ref, cur[["x"]], columns=["x"], current_columns=["x", "y", "not_read"])
    assert result.ignored_columns == ["y", "not_read"]


def test_report_plots_a_sample_but_shows_the_results_numbers(penguins: pd.DataFrame) -> None:
    ref = penguins.sample(n=3000, replace=True, random_state=0).reset_index(drop=True)
    cur = penguins.sample(n=2500, replace=True, random_state=1).reset_index(drop=True)
    cur["bill_length_mm"] += 3.0
    result = detect_drift(ref, cur, columns=PENGUIN_FEATURES)
    report = result.evidently_report(max_rows=1000)
    table = report.as_dict()["metrics"][0]["result"]
    for name, theirs in table["drift_by_columns"].items():
        ours = result.column(name)
        assert (theirs["drift_score"], theirs["drift_detected"]) == (ours.score, ours.drifted)
    assert table["number_of_drifted_columns"] == len(result.drifted_columns)
    page = result.report_html(max_rows=1000)
    assert "drawn from a sample of 1000 reference and 1000 current rows" in page
    assert "drawn from a sample" not in result.report_html(max_rows=None)
    summary = result.summary_html("not rendered: because")
    assert "modelops drift summary" in summary and "not rendered: because" in summary and "bill_length_mm" in summary
    with pytest.raises(ValueError, match="max_rows"):
        result.report_html(max_rows=0)


def test_missing_shares_are_reported_per_column_and_frame() -> None:
    ref, cur = frames()
    ref.loc[: len(ref) // 10 - 1, "x"] = np.nan  # 10 % of the reference
    cur.loc[: len(cur) // 4 - 1, "y"] = np.nan  # 25 % of the current data
    result = detect_drift(ref, cur)
    assert result.column("x").reference_missing_share == pytest.approx(0.1)
    assert result.column("x").current_missing_share == 0
    assert result.column("y").current_missing_share == pytest.approx(0.25)
    assert result.column("y").compared and result.missing_columns == []  # within max_missing_share (0.5)
    status = result.to_status().model_dump(by_alias=True)
    assert status["columns"][1]["currentMissingShare"] == pytest.approx(0.25)


def test_a_feature_missing_above_the_bound_is_not_counted_as_not_drifted() -> None:
    ref, cur = frames()
    cur.loc[: int(len(cur) * 0.8) - 1, "x"] = np.nan  # 80 % missing: the rest would look "not drifted"
    cur = cur.drop(columns=["c"])
    result = detect_drift(ref, cur, max_missing_share=0.5)
    assert result.missing_columns == ["x", "c"]
    assert not result.column("x").compared and "80% of current values missing" in (result.column("x").reason or "")
    assert result.column("c").current_missing_share == 1.0
    assert result.compared_columns == ["y"]
    assert result.to_status().missing_columns == ["x", "c"]
    assert detect_drift(ref, cur, max_missing_share=0.9).column("x").compared  # a looser bound compares it
    with pytest.raises(ValueError, match="max_missing_share"):
        detect_drift(ref, cur, max_missing_share=1.5)


def test_an_entirely_missing_feature_is_listed_whatever_the_bound() -> None:
    ref, cur = frames()
    cur["x"] = np.nan
    result = detect_drift(ref, cur, max_missing_share=1.0)
    assert result.missing_columns == ["x"] and result.column("x").current_missing_share == 1.0
