"""Data drift between a reference frame (what the model learned from) and a current frame.

:func:`detect_drift` compares the model's input features column by column with Evidently's
statistical tests (``evidently.legacy.calculations.stattests``, the registry behind
``DataDriftPreset``, ``ValueDrift`` and ``DataDriftTable``), with the test chosen per column by
Evidently's default rule unless a method is named, and decides dataset drift by the share of
drifted columns, as ``DataDriftPreset`` does. Edge cases (too few rows, constant or all-missing
columns, columns the model does not know) are results, never exceptions. The Evidently HTML report
is rendered on demand (:meth:`DriftResult.report_html`), from the same prepared frames and with the
same tests and thresholds pinned per column, so its numbers equal the result's.

No kopf import; usable from a notebook.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr

from ..api.modelmonitor import ColumnDrift, DriftStatus

if TYPE_CHECKING:  # Evidently is imported lazily: importing it costs ~4 s.
    from evidently.legacy.calculations.stattests import StatTest
    from evidently.legacy.core import ColumnType

ColumnKind = Literal["numerical", "categorical"]
DriftOutcome = Literal["Completed", "InsufficientData"]

#: Evidently's default test choice switches from p-value tests to distances above this many
#: reference rows (``evidently.legacy.calculations.stattests.registry._get_default_stattest``).
EVIDENTLY_SMALL_REFERENCE_ROWS = 1000
#: Rows of a column probed for distinct values before counting them all (see ``_distinct_capped``).
_DISTINCT_PROBE_ROWS = 1000
#: Rows per frame the HTML report's plots are drawn from by default (see :meth:`DriftResult.report_html`).
REPORT_MAX_ROWS = 20_000


class ColumnResult(ColumnDrift):
    """Drift of one column: the status type :class:`~modelops.api.modelmonitor.ColumnDrift` plus its kind.

    ``score`` is what the test returns (a p-value for ``ks``, ``chisquare``, ``z``...; a distance
    for ``wasserstein``, ``jensenshannon``, ``psi``...); ``drifted`` is Evidently's verdict against
    ``threshold``. A skipped column has ``stattest``/``score`` unset, ``drifted`` false and a
    ``reason``; it does not count in the dataset's drift share.
    """

    kind: ColumnKind | None = Field(default=None, description="How the column was compared.")

    @property
    def compared(self) -> bool:
        """Whether a test ran and produced a finite score (the column counts in the share)."""
        return self.reason is None and self.score is not None


class DriftResult(BaseModel):
    """Outcome of :func:`detect_drift`.

    ``share`` is drifted columns / compared columns (``None`` when nothing was compared, never
    NaN); ``detected`` is ``share >= drift_share``. ``reference_rows``/``current_rows`` count the
    input frames, ``*_rows_used`` the rows after sampling (``sampled`` tells whether any frame was
    sampled). ``notes`` explains anything the caller should know (sampling, fallbacks).
    """

    model_config = ConfigDict(extra="forbid")

    result: DriftOutcome
    message: str | None = None
    detected: bool = False
    share: float | None = Field(default=None, ge=0, le=1)
    drift_share: float = Field(description="Dataset drift threshold on the share of drifted columns.")
    drifted_columns: list[str] = Field(default_factory=list)
    columns: list[ColumnResult] = Field(default_factory=list)
    ignored_columns: list[str] = Field(default_factory=list, description="Current columns the model does not know.")
    missing_columns: list[str] = Field(
        default_factory=list, description="Features absent from the current data or missing above max_missing_share."
    )
    max_missing_share: float = 0.5
    reference_rows: int = 0
    current_rows: int = 0
    reference_rows_used: int = 0
    current_rows_used: int = 0
    sampled: bool = False
    random_state: int = 0
    notes: list[str] = Field(default_factory=list)

    _frames: tuple[pd.DataFrame, pd.DataFrame] | None = PrivateAttr(default=None)

    @property
    def compared_columns(self) -> list[str]:
        """Names of the columns that counted in the share."""
        return [c.name for c in self.columns if c.compared]

    def column(self, name: str) -> ColumnResult:
        """The result of one column; raises ``KeyError`` when it was not a feature."""
        for col in self.columns:
            if col.name == name:
                return col
        raise KeyError(name)

    def to_status(self, report_uri: str | None = None) -> DriftStatus:
        """The ModelMonitor ``status.drift`` shape of this result."""
        return DriftStatus(
            detected=self.detected,
            share=self.share,
            drifted_columns=self.drifted_columns,
            columns=[ColumnDrift.model_validate(c.model_dump(exclude={"kind"})) for c in self.columns],
            ignored_columns=self.ignored_columns,
            missing_columns=self.missing_columns,
            report_uri=report_uri,
        )

    def report_html(self, max_rows: int | None = REPORT_MAX_ROWS) -> str:
        """Render Evidently's data drift report (HTML, self-contained) for the compared columns.

        Evidently's ``DataDriftTable`` (the table ``DataDriftPreset`` renders) runs on the same
        prepared frames with each column's test and threshold pinned. Its plots (distributions,
        the current values over the index) are drawn from at most ``max_rows`` rows per frame
        (a seeded sample of the rows this result used; ``None``: all of them); the table's scores
        and verdicts are always this result's (computed on all the rows it used), so they equal
        the run's metrics. A banner on top states the dataset verdict, skipped columns, sampling
        and the rows the plots show. Evidently's cost grows with the rows (about 2.5 s for
        200,000 rows per frame, 0.6 s for 20,000, plus ~1 s of plotly figures for 20 columns;
        see docs/monitoring.md). Raises ``ValueError`` when no column was compared (nothing to
        render), when the result was not produced by :func:`detect_drift` in this process, or
        for ``max_rows`` < 1.
        """
        report = self.evidently_report(max_rows=max_rows)
        page: str = report.get_html()
        marker = page.find("<body>")
        at = marker + len("<body>") if marker >= 0 else 0
        return page[:at] + self._banner(report_rows=self._report_rows(max_rows)) + page[at:]

    def evidently_report(self, max_rows: int | None = None, *, pin_numbers: bool = True) -> Any:
        """The run Evidently legacy ``Report`` with one ``DataDriftTable`` behind :meth:`report_html`.

        ``max_rows`` bounds the rows per frame Evidently sees (a sample seeded by ``random_state``;
        ``None``: every row this result used). With ``pin_numbers`` each column's score, threshold
        and verdict in the report's result (``as_dict()["metrics"][0]["result"]["drift_by_columns"]``)
        and the dataset counts are overwritten with this result's; with all rows Evidently computes
        the same numbers itself (``pin_numbers=False`` shows them; a unit test compares them).
        Raises ``ValueError`` like :meth:`report_html`.
        """
        compared = [c for c in self.columns if c.compared]
        if not compared or self._frames is None:
            raise ValueError("no compared columns to render (result is " + self.result + ")")
        if max_rows is not None and max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        from evidently.legacy.metrics import DataDriftTable
        from evidently.legacy.pipeline.column_mapping import ColumnMapping
        from evidently.legacy.report import Report

        kinds = {c.name: c.kind or "categorical" for c in compared}
        reference, current = (
            _report_frame(_sample(frame, list(kinds), max_rows, self.random_state)[0] if max_rows else frame, kinds)
            for frame in self._frames
        )
        mapping = ColumnMapping(
            target=None,
            prediction=None,
            datetime=None,
            user_id=None,
            item_id=None,
            numerical_features=[c.name for c in compared if c.kind == "numerical"],
            categorical_features=[c.name for c in compared if c.kind == "categorical"],
        )
        table = DataDriftTable(
            columns=list(kinds),
            per_column_stattest={c.name: c.stattest for c in compared if c.stattest},
            per_column_stattest_threshold={c.name: c.threshold for c in compared if c.threshold is not None},
        )
        report = Report(metrics=[table])
        report.run(reference_data=reference, current_data=current, column_mapping=mapping)
        if pin_numbers:
            self._pin_report_numbers(table.get_result())
        return report

    def summary_html(self, note: str | None = None) -> str:
        """A small self-contained HTML page with the banner of :meth:`report_html` (dataset verdict,
        per-column scores, skipped columns, sampling) and ``note``; no Evidently involved. What the
        drift job writes as its report when Evidently's report is not rendered for a run."""
        rows = "".join(
            f"<tr><td>{html.escape(c.name)}</td><td>{c.kind or ''}</td><td>{c.stattest or ''}</td>"
            f"<td>{'' if c.score is None else f'{c.score:.6g}'}</td>"
            f"<td>{'' if c.threshold is None else f'{c.threshold:g}'}</td>"
            f"<td>{'drifted' if c.drifted else ('skipped' if not c.compared else 'not drifted')}</td></tr>"
            for c in self.columns
        )
        extra = f"<p>{html.escape(note)}</p>" if note else ""
        table = (
            '<table border="1" cellpadding="4" style="border-collapse:collapse;font-family:sans-serif">'
            "<tr><th>column</th><th>kind</th><th>test</th><th>score</th><th>threshold</th><th>verdict</th></tr>"
            f"{rows}</table>"
        )
        head = "<!DOCTYPE html><html><head><meta charset='utf-8'><title>modelops drift</title></head>"
        return f"{head}<body>{self._banner()}{extra}{table}</body></html>"

    def _report_rows(self, max_rows: int | None) -> tuple[int, int]:
        """Rows per frame (reference, current) the report's plots are drawn from."""
        if max_rows is None:
            return self.reference_rows_used, self.current_rows_used
        return min(self.reference_rows_used, max_rows), min(self.current_rows_used, max_rows)

    def _pin_report_numbers(self, table: Any) -> None:
        """Write this result's scores, thresholds and verdicts into Evidently's ``DataDriftTableResults``
        (what the report renders), so a report drawn from a sample shows the run's numbers."""
        for col in self.columns:
            theirs = table.drift_by_columns.get(col.name)
            if theirs is None or not col.compared:
                continue
            theirs.drift_score = col.score
            theirs.drift_detected = col.drifted
            theirs.stattest_threshold = col.threshold
        table.number_of_drifted_columns = len(self.drifted_columns)
        table.share_of_drifted_columns = self.share if self.share is not None else 0.0
        table.dataset_drift = self.detected

    def _banner(self, report_rows: tuple[int, int] | None = None) -> str:
        """A short HTML summary of the dataset verdict prepended to Evidently's report."""
        share = "n/a" if self.share is None else f"{self.share:.1%}"
        lines = [
            f"Dataset drift: {'detected' if self.detected else 'not detected'} "
            f"({len(self.drifted_columns)} of {len(self.compared_columns)} compared columns drifted, "
            f"share {share}, threshold {self.drift_share:.0%}).",
            f"Reference rows: {self.reference_rows_used} of {self.reference_rows}; "
            f"current rows: {self.current_rows_used} of {self.current_rows}.",
        ]
        if report_rows is not None and report_rows != (self.reference_rows_used, self.current_rows_used):
            lines.append(
                f"The plots below are drawn from a sample of {report_rows[0]} reference and {report_rows[1]} "
                f"current rows (random_state={self.random_state}); every score and verdict is this run's, "
                "computed on all the rows above."
            )
        skipped = [c for c in self.columns if not c.compared]
        if skipped:
            lines.append("Skipped: " + "; ".join(f"{c.name}: {c.reason}" for c in skipped) + ".")
        if self.ignored_columns:
            lines.append("Ignored (unknown to the model): " + ", ".join(self.ignored_columns) + ".")
        lines.extend(self.notes)
        items = "".join(f"<li>{html.escape(line)}</li>" for line in lines)
        return f'<div style="font-family:sans-serif;margin:12px"><h3>modelops drift summary</h3><ul>{items}</ul></div>'


def detect_drift(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    *,
    columns: Sequence[str] | None = None,
    method: str | None = None,
    threshold: float | None = None,
    drift_share: float = 0.5,
    min_rows: int = 50,
    max_rows: int = 200_000,
    max_missing_share: float = 0.5,
    random_state: int = 0,
    reference_total_rows: int | None = None,
    current_total_rows: int | None = None,
    current_columns: Sequence[str] | None = None,
) -> DriftResult:
    """Compare ``current`` with ``reference`` column by column and decide dataset drift.

    - ``columns``: the model's input features (compared by name); default all reference columns.
      Current columns outside this set are listed in ``ignored_columns``; a feature missing from
      either frame is reported with a reason.
    - Column kind comes from the reference dtype: numeric (not bool) is numerical, anything else
      (object, string, category, bool) categorical, compared as strings. Datetime columns are skipped.
    - ``method``: an Evidently stattest name (``ks``, ``chisquare``, ``wasserstein``, ``psi``...)
      for every column; unset, Evidently's default per column: with at most 1,000 reference rows
      ``ks`` (numerical, >5 distinct values), ``chisquare`` (3+ values) or ``z`` (2 values);
      above that ``wasserstein`` (numerical, >5 values) or ``jensenshannon``. A method that does not
      apply to a column's kind falls back to the default for that column (noted).
    - ``threshold``: per-column threshold for every test (p-value or distance), else the test's default.
    - ``drift_share``: dataset drift when drifted/compared columns reach it.
    - Fewer than ``min_rows`` current rows (or no reference rows) gives ``InsufficientData``;
      frames above ``max_rows`` are sampled (without replacement, ``random_state``: the rows
      :func:`sample_positions` picks) and noted.
    - ``reference_total_rows``/``current_total_rows``: the caller already sampled that frame, before
      materialising it, from this many rows with ``sample_positions(total, max_rows, random_state)``
      (what :func:`~modelops.monitoring.tables.read_parquet_sampled` does). The result then counts
      the total as the frame's rows and says it sampled, exactly as if the whole frame had been
      passed. ``None``: the frame is the whole input.
    - ``current_columns``: every column of the current input when ``current`` holds only some of
      them (read by column); ``ignored_columns`` lists those outside ``columns``. Default:
      ``current``'s columns.
    - Missing values and infinities are dropped per column before testing (as Evidently does). A
      column all-missing in either frame, constant with the same value in both, or whose test
      returns a non-finite score is skipped with a reason and excluded from the share.
    - Data quality: each column reports the share of reference and current rows without a usable
      value (missing, infinite, not a number). A feature absent from the current data, or missing
      in more than ``max_missing_share`` of its rows, is not compared (never "not drifted") and is
      listed in ``missing_columns``.

    Shapes: any row counts; columns by name. Raises ``ValueError`` for an unknown ``method`` or
    bad arguments (``drift_share`` outside (0, 1], ``min_rows`` < 1, ``max_rows`` < 1, a total
    smaller than its frame, or a pre-sampled frame larger than ``max_rows``).
    """
    if not 0 < drift_share <= 1:
        raise ValueError(f"drift_share must be in (0, 1], got {drift_share}")
    if not 0 <= max_missing_share <= 1:
        raise ValueError(f"max_missing_share must be in [0, 1], got {max_missing_share}")
    if min_rows < 1 or max_rows < 1:
        raise ValueError("min_rows and max_rows must be at least 1")
    ref_total = _total_rows("reference", reference, reference_total_rows, max_rows)
    cur_total = _total_rows("current", current, current_total_rows, max_rows)
    if method is not None:
        _validate_method(method)

    features = list(dict.fromkeys(columns)) if columns is not None else [str(c) for c in reference.columns]
    feature_set = set(features)
    all_current = current.columns if current_columns is None else current_columns
    ignored = [str(c) for c in all_current if str(c) not in feature_set]
    base = {
        "drift_share": drift_share,
        "ignored_columns": ignored,
        "reference_rows": ref_total,
        "current_rows": cur_total,
        "random_state": random_state,
        "max_missing_share": max_missing_share,
    }
    if cur_total < min_rows or ref_total == 0:
        which = (
            "the reference frame is empty"
            if ref_total == 0
            else f"{cur_total} current rows, fewer than min_rows={min_rows}"
        )
        return DriftResult(result="InsufficientData", message=which, **base)

    notes: list[str] = []
    present = [f for f in features if f in reference.columns and f in current.columns]
    ref, ref_sampled = _sample(reference, present, max_rows, random_state)
    cur, cur_sampled = _sample(current, present, max_rows, random_state)
    ref_sampled = ref_sampled or ref_total > len(reference)
    cur_sampled = cur_sampled or cur_total > len(current)
    if ref_sampled or cur_sampled:
        notes.append(
            f"sampled to at most {max_rows} rows per frame (random_state={random_state}): "
            f"reference {len(ref)} of {ref_total}, current {len(cur)} of {cur_total}"
        )

    results: list[ColumnResult] = []
    for name in features:
        if name not in reference.columns:
            results.append(ColumnResult(name=name, reason="missing from the reference data"))
            continue
        if name not in current.columns:
            results.append(ColumnResult(name=name, reason="missing from the current data", current_missing_share=1.0))
            continue
        results.append(_compare_column(name, ref[name], cur[name], method, threshold, max_missing_share, notes))

    compared = [c for c in results if c.compared]
    missing = [
        c.name
        for c in results
        if c.current_missing_share is not None
        and (c.current_missing_share == 1.0 or c.current_missing_share > max_missing_share)
    ]
    drifted = [c.name for c in compared if c.drifted]
    out = DriftResult(
        result="Completed",
        columns=results,
        drifted_columns=drifted,
        missing_columns=missing,
        reference_rows_used=len(ref),
        current_rows_used=len(cur),
        sampled=ref_sampled or cur_sampled,
        notes=notes,
        **base,
    )
    if not compared:
        out.result = "InsufficientData"
        out.message = "no feature column could be compared"
        return out
    out.share = len(drifted) / len(compared)
    out.detected = out.share >= drift_share
    out.message = f"{len(drifted)} of {len(compared)} columns drifted"
    out._frames = (ref, cur)  # the (sampled) inputs, kept by reference for report_html()
    return out


def sample_positions(n_rows: int, max_rows: int, random_state: int) -> np.ndarray | None:
    """Row positions :func:`detect_drift` keeps of a frame of ``n_rows`` rows: ``max_rows`` positions
    drawn without replacement with ``numpy.random.default_rng(random_state)``, sorted ascending
    (int64 array of shape ``(max_rows,)``); ``None`` when ``n_rows <= max_rows`` (nothing sampled).

    Readers that sample before materialising a frame use it so that the rows they keep are the
    rows :func:`detect_drift` would have kept of the whole frame. Raises ``ValueError`` for
    negative ``n_rows`` or ``max_rows`` < 1.
    """
    if n_rows < 0 or max_rows < 1:
        raise ValueError(f"need n_rows >= 0 and max_rows >= 1, got {n_rows} and {max_rows}")
    if n_rows <= max_rows:
        return None
    rng = np.random.default_rng(random_state)
    return np.sort(rng.choice(n_rows, size=max_rows, replace=False))


def _total_rows(which: str, frame: pd.DataFrame, total: int | None, max_rows: int) -> int:
    """Rows the input had: ``total`` for a frame sampled by the caller, else the frame's length."""
    if total is None:
        return len(frame)
    if total < len(frame) or (total > len(frame) and len(frame) > max_rows):
        raise ValueError(f"{which}_total_rows={total} does not fit a pre-sampled frame of {len(frame)} rows")
    return total


def _sample(frame: pd.DataFrame, names: list[str], max_rows: int, random_state: int) -> tuple[pd.DataFrame, bool]:
    """``frame`` itself when it has at most ``max_rows`` rows (no copy: columns are read by name),
    else its named columns sampled without replacement to ``max_rows`` rows (one copy)."""
    rows = sample_positions(len(frame), max_rows, random_state)
    if rows is None:
        return frame, False
    return frame.iloc[rows, frame.columns.get_indexer(names)], True


def _report_frame(frame: pd.DataFrame, kinds: dict[str, ColumnKind]) -> pd.DataFrame:
    """The compared columns as :func:`_compare_column` sees them, rows kept aligned: numbers as
    floats with non-numbers and infinities missing, categories as strings; Evidently drops the
    missing values per column, so it tests exactly the values the result was computed on."""
    out: dict[str, Any] = {}
    for name, kind in kinds.items():
        raw = frame[name]
        if kind == "numerical":
            values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            out[name] = np.where(np.isfinite(values), values, np.nan)
        else:
            present = raw.notna().to_numpy()
            text = raw.astype(object).astype(str).to_numpy(dtype=object)
            out[name] = np.where(present, text, None)
    return pd.DataFrame(out)


def _kind(series: pd.Series) -> ColumnKind | None:
    """Numerical for numeric non-bool dtypes, None for datetimes/timedeltas, else categorical."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "categorical"
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return None
    if pd.api.types.is_numeric_dtype(dtype):
        return "numerical"
    return "categorical"


def _numeric_values(series: pd.Series) -> tuple[pd.Series, int]:
    """Finite float values of a column (missing and infinite dropped), and the count of non-numbers dropped."""
    if pd.api.types.is_numeric_dtype(series.dtype) and not pd.api.types.is_bool_dtype(series.dtype):
        values = series.to_numpy(dtype=float, na_value=np.nan)
        bad = 0
    else:
        coerced = pd.to_numeric(series, errors="coerce")
        bad = int(coerced.isna().sum() - series.isna().sum())
        values = coerced.to_numpy(dtype=float, na_value=np.nan)
    finite = np.isfinite(values)
    return pd.Series(values if finite.all() else values[finite], copy=False), bad


def _categorical_values(series: pd.Series) -> pd.Series:
    """Non-missing values of a column as strings (so mixed types and categories compare by value)."""
    kept = series.dropna()
    if isinstance(kept.dtype, pd.CategoricalDtype):
        kept = kept.astype(object)
    if pd.api.types.infer_dtype(kept, skipna=False) != "string":
        kept = kept.astype(str)
    return kept.reset_index(drop=True)


def _distinct_capped(ref: pd.Series, cur: pd.Series, cap: int) -> int:
    """Distinct values in ``ref`` and ``cur`` together, exact up to ``cap`` (larger counts return ``cap + 1``).

    A prefix of the reference is probed first: numerical features usually have many distinct
    values, so the full hash over both frames (what Evidently computes) is rarely needed.
    """
    probe = pd.unique(ref.to_numpy()[:_DISTINCT_PROBE_ROWS])
    if len(probe) > cap:
        return cap + 1
    both = np.concatenate([ref.to_numpy(), cur.to_numpy()])
    return min(len(pd.unique(both)), cap + 1)


def default_stattest_name(kind: ColumnKind, reference_rows: int, distinct_values: int) -> str:
    """Evidently's default test for a column (mirror of ``stattests.registry._get_default_stattest``).

    ``reference_rows`` counts non-missing reference values, ``distinct_values`` the distinct
    non-missing values of reference and current together. Kept in step with Evidently by a unit
    test that compares it with ``evidently.legacy.calculations.stattests.get_stattest``.
    """
    if reference_rows <= EVIDENTLY_SMALL_REFERENCE_ROWS:
        if distinct_values <= 2:
            return "z"
        if kind == "numerical" and distinct_values > 5:
            return "ks"
        return "chisquare"
    if kind == "numerical" and distinct_values > 5:
        return "wasserstein"
    return "jensenshannon"


def _default_stattest(kind: ColumnKind, reference_rows: int, distinct_values: int) -> StatTest:
    """Evidently's test object for :func:`default_stattest_name` (taken as Evidently's default rule
    takes it, without the registry's kind check: ``z`` and ``chisquare`` also serve numbers)."""
    from evidently.legacy.calculations import stattests

    by_name = {
        "z": stattests.z_stat_test,
        "chisquare": stattests.chi_stat_test,
        "ks": stattests.ks_stat_test,
        "wasserstein": stattests.wasserstein_stat_test,
        "jensenshannon": stattests.jensenshannon_stat_test,
    }
    return by_name[default_stattest_name(kind, reference_rows, distinct_values)]


def _column_type(kind: ColumnKind) -> ColumnType:
    from evidently.legacy.core import ColumnType

    return ColumnType.Numerical if kind == "numerical" else ColumnType.Categorical


def _lookup_stattest(name: str, kind: ColumnKind) -> StatTest | None:
    """Evidently's registered test ``name`` for ``kind``; None when it does not apply to that kind."""
    from evidently.legacy.calculations.stattests.registry import (
        StatTestInvalidFeatureTypeError,
        get_registered_stattest,
    )

    try:
        return get_registered_stattest(name, _column_type(kind))
    except StatTestInvalidFeatureTypeError:
        return None


def _validate_method(method: str) -> None:
    """Raise ``ValueError`` unless Evidently knows ``method`` for at least one column kind."""
    from evidently.legacy.calculations.stattests.registry import StatTestNotFoundError

    try:
        found = [_lookup_stattest(method, kind) for kind in ("numerical", "categorical")]
    except StatTestNotFoundError as err:
        raise ValueError(f"unknown drift method {method!r}") from err
    if not any(found):
        raise ValueError(f"drift method {method!r} applies to neither numerical nor categorical columns")


def _compare_column(
    name: str,
    ref_raw: pd.Series,
    cur_raw: pd.Series,
    method: str | None,
    threshold: float | None,
    max_missing_share: float,
    notes: list[str],
) -> ColumnResult:
    """Prepare one column (see :func:`detect_drift`) and run its test."""
    kind = _kind(ref_raw)
    if kind is None:
        return ColumnResult(name=name, reason=f"unsupported dtype {ref_raw.dtype}")
    bad = 0
    if kind == "numerical":
        ref, _ = _numeric_values(ref_raw)
        cur, bad = _numeric_values(cur_raw)
        if bad and len(cur):
            notes.append(f"{name}: {bad} current values are not numbers and were treated as missing")
    else:
        ref, cur = _categorical_values(ref_raw), _categorical_values(cur_raw)
    shares = {
        "reference_missing_share": _missing_share(len(ref), len(ref_raw)),
        "current_missing_share": _missing_share(len(cur), len(cur_raw)),
    }
    if ref.empty:
        return ColumnResult(name=name, kind=kind, reason="all values missing in the reference data", **shares)
    if cur.empty:
        reason = "current values are not numeric" if bad else "all values missing in the current data"
        return ColumnResult(name=name, kind=kind, reason=reason, **shares)
    cur_missing = shares["current_missing_share"]
    if cur_missing is not None and cur_missing > max_missing_share:
        reason = f"{cur_missing:.0%} of current values missing, above max_missing_share {max_missing_share:g}"
        return ColumnResult(name=name, kind=kind, reason=reason, **shares)
    ref_constant, cur_constant = _constant_value(ref), _constant_value(cur)
    if ref_constant is not None and ref_constant == cur_constant:
        reason = f"constant ({ref_constant!r}) in both reference and current data"
        return ColumnResult(name=name, kind=kind, reason=reason, **shares)

    test = _lookup_stattest(method, kind) if method is not None else None
    if method is not None and test is None:
        notes.append(f"{name}: method {method!r} does not apply to {kind} columns; used Evidently's default")
    if test is None:
        # Distinct values only matter for numbers and for small references (see default_stattest_name).
        counted = kind == "numerical" or len(ref) <= EVIDENTLY_SMALL_REFERENCE_ROWS
        test = _default_stattest(kind, len(ref), _distinct_capped(ref, cur, 5) if counted else 6)
    outcome = test(ref, cur, _column_type(kind), threshold)
    score = float(outcome.drift_score)
    if not math.isfinite(score):
        reason = f"test {test.name} returned a non-finite score"
        return ColumnResult(name=name, kind=kind, stattest=test.name, reason=reason, **shares)
    result = ColumnResult(
        name=name,
        kind=kind,
        stattest=test.name,
        score=score,
        threshold=float(outcome.actual_threshold),
        drifted=bool(outcome.drifted),
        **shares,
    )
    return result


def _missing_share(usable: int, rows: int) -> float | None:
    """Share of ``rows`` without a usable value, rounded to 6 digits; None for an empty frame."""
    return round(1 - usable / rows, 6) if rows else None


def _constant_value(values: pd.Series) -> Any:
    """The single value of a constant non-empty column, else None (a min/max check for numbers)."""
    if pd.api.types.is_numeric_dtype(values.dtype):
        low, high = values.min(), values.max()
        return float(low) if low == high else None
    first = values.iloc[0]
    if (values.iloc[:_DISTINCT_PROBE_ROWS] != first).any():  # most columns: settled by a prefix
        return None
    return first if (values == first).all() else None
