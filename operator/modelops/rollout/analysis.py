"""The numbers of a rollout window, from the prediction log (docs/rollout.md, "Where the numbers come from").

The incumbent's rows are its own partition's rows of its version; the candidate's rows are the
candidate partition (``<stage>-candidate``, written by the incumbent's router) of its version. Both
carry the request ids the incumbent assigned, so shadowed rows are joined by id, and the feedback
labels (sent to the stage's Service, stored with the incumbent's log) apply to both sides.
:func:`window_numbers` is pure (DataFrames in); :func:`read_window` does the reading.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from scipy.stats import chi2_contingency

from ..api.modelversion import RolloutAnalysisStatus, WindowNumbers
from ..contract import LOG_STATUS_OK, candidate_log_stage
from ..monitoring.health import request_keys
from ..monitoring.prediction_log import read_feedback, read_prediction_log


def _labels(values: pd.Series) -> pd.Series:
    """Predictions and labels as text, so that 1, 1.0 and "1" compare equal."""

    def one(value: object) -> str | None:
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        if isinstance(value, float | np.floating) and float(value).is_integer():
            return str(int(value))
        return str(value)

    return values.map(one)


def side_numbers(rows: pd.DataFrame, labels: pd.DataFrame) -> WindowNumbers:
    """Requests, failed requests, p95 latency and feedback accuracy of one side's log rows.

    ``rows``: prediction-log rows (``request_id``, ``status``, ``latency_ms``, ``prediction``);
    ``labels``: feedback (``request_id``, ``label``), the newest label per id wins. A request is
    failed when any of its rows has a status other than ``ok``; its latency is its first row's.
    """
    if rows.empty:
        return WindowNumbers()
    keys = request_keys(rows["request_id"])
    per_request = rows.assign(_key=keys if keys is not None else rows["request_id"].astype(str))
    per_request = per_request.assign(_failed=per_request["status"].astype(str) != LOG_STATUS_OK)
    grouped = per_request.groupby("_key", sort=False)
    failed = grouped["_failed"].any()
    latency = grouped["latency_ms"].first().astype(float)
    ok = rows[rows["status"].astype(str) == LOG_STATUS_OK]
    labelled = ok.merge(labels.drop_duplicates("request_id", keep="last"), on="request_id", how="inner")
    labelled = labelled[labelled["prediction"].notna()]
    accuracy = float((_labels(labelled["prediction"]) == _labels(labelled["label"])).mean()) if len(labelled) else None
    requests = len(failed)
    return WindowNumbers(
        requests=requests,
        errors=int(failed.sum()),
        error_rate=float(failed.mean()) if requests else None,
        latency_p95_ms=float(np.percentile(latency.dropna(), 95)) if latency.notna().any() else None,
        labelled=len(labelled),
        accuracy=accuracy,
    )


def agreement(candidate: pd.DataFrame, incumbent: pd.DataFrame, shadow: bool) -> tuple[float | None, int, float | None]:
    """``(agreement, rows compared, p-value)`` of two sides' successful predictions (classifiers).

    Shadow: the share of request ids both answered whose predictions are equal (paired: no p-value).
    Canary (different requests): ``1 - total variation distance`` of the two predicted-class
    distributions over the candidate's rows, and the p-value of a chi-square test of homogeneity of
    the two sides' class counts (``scipy.stats.chi2_contingency``; 1.0 when a single class was
    predicted), so that a gap that sampling noise explains is not taken for a disagreement.
    ``(None, 0, None)`` when nothing can be compared.
    """
    cand = candidate[(candidate["status"].astype(str) == LOG_STATUS_OK) & candidate["prediction"].notna()]
    inc = incumbent[(incumbent["status"].astype(str) == LOG_STATUS_OK) & incumbent["prediction"].notna()]
    if cand.empty or inc.empty:
        return None, 0, None
    if shadow:
        both = cand[["request_id", "prediction"]].merge(
            inc[["request_id", "prediction"]], on="request_id", suffixes=("_c", "_i")
        )
        if both.empty:
            return None, 0, None
        same = _labels(both["prediction_c"]) == _labels(both["prediction_i"])
        return float(same.mean()), len(both), None
    counts = pd.DataFrame(
        {"c": _labels(cand["prediction"]).value_counts(), "i": _labels(inc["prediction"]).value_counts()}
    ).fillna(0.0)
    p, q = counts["c"] / counts["c"].sum(), counts["i"] / counts["i"].sum()
    distance = 0.5 * float((p - q).abs().sum())
    p_value = 1.0 if len(counts) < 2 else float(chi2_contingency(counts.T.to_numpy()).pvalue)
    return 1.0 - distance, len(cand), p_value


def window_numbers(
    candidate: pd.DataFrame,
    incumbent: pd.DataFrame,
    feedback: pd.DataFrame,
    *,
    shadow: bool,
    classifier: bool,
    window_start: datetime,
    time: datetime,
) -> RolloutAnalysisStatus:
    """The analysis of one window from both sides' rows and the feedback (agreement for classifiers only)."""
    labels = feedback[["request_id", "label"]] if not feedback.empty else pd.DataFrame(columns=["request_id", "label"])
    agree, compared, p_value = agreement(candidate, incumbent, shadow) if classifier else (None, 0, None)
    return RolloutAnalysisStatus(
        window_start=window_start,
        time=time,
        candidate=side_numbers(candidate, labels),
        incumbent=side_numbers(incumbent, labels),
        compared=compared,
        agreement=agree,
        agreement_p_value=p_value,
    )


def read_window(
    base_uri: str,
    model: str,
    stage: str,
    candidate_version: str,
    incumbent_version: str,
    since: datetime,
    *,
    shadow: bool,
    classifier: bool,
    now: datetime,
) -> RolloutAnalysisStatus:
    """Read both sides' rows and the feedback logged since ``since`` and compute the window's numbers.

    Blocking file I/O (run it in a thread). Raises what the prediction-log readers raise (OSError).
    """
    incumbent = read_prediction_log(base_uri, model, stage, since, now)
    candidate = read_prediction_log(base_uri, model, candidate_log_stage(stage), since, now)
    feedback = read_feedback(base_uri, model, stage, since, None)
    incumbent = incumbent[incumbent["model_version"].astype(str) == incumbent_version]
    candidate = candidate[candidate["model_version"].astype(str) == candidate_version]
    return window_numbers(
        candidate, incumbent, feedback, shadow=shadow, classifier=classifier, window_start=since, time=now
    )
