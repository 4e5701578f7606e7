"""Feedback accuracy of a rollout window from the prediction log (docs/rollout.md, "Where the numbers
come from"): the one number the serving pods' /metrics cannot give, since a label arrives later, by
request id, at any pod of the stage. Read only when the operator is set to read the log
(``MODELOPS_ROLLOUT_FEEDBACK_FROM_LOG``): an object-store log, or a folder the operator shares.

The incumbent's rows are its own partition's rows of its version; the candidate's rows are the
candidate partition (``<stage>-candidate``, written by the incumbent's router) of its version. Both
carry the request ids the incumbent assigned, so the feedback labels (sent to the stage's Service,
stored with the incumbent's log) apply to both sides. :func:`feedback_accuracy` is pure (DataFrames
in); :func:`read_accuracy` does the reading.
"""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd

from ..contract import LOG_STATUS_OK, candidate_log_stage
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


def feedback_accuracy(rows: pd.DataFrame, labels: pd.DataFrame) -> tuple[int, float | None]:
    """``(labelled rows, accuracy)`` of one side's successful log rows against the feedback labels.

    ``rows``: prediction-log rows (``request_id``, ``status``, ``prediction``); ``labels``: feedback
    (``request_id``, ``label``), the newest label per id wins. Accuracy is None without labelled rows.
    """
    if rows.empty or labels.empty:
        return 0, None
    ok = rows[(rows["status"].astype(str) == LOG_STATUS_OK) & rows["prediction"].notna()]
    newest = labels[["request_id", "label"]].drop_duplicates("request_id", keep="last")
    labelled = ok.merge(newest, on="request_id", how="inner")
    if labelled.empty:
        return 0, None
    return len(labelled), float((_labels(labelled["prediction"]) == _labels(labelled["label"])).mean())


def read_accuracy(
    base_uri: str,
    model: str,
    stage: str,
    candidate_version: str,
    incumbent_version: str,
    since: datetime,
    now: datetime,
) -> dict[str, tuple[int, float | None]]:
    """``{"candidate"|"incumbent": (labelled rows, accuracy)}`` of the rows logged in ``[since, now)``
    and the feedback labels logged since ``since``.

    Blocking file I/O (run it in a thread). Raises what the prediction-log readers raise (OSError).
    """
    incumbent = read_prediction_log(base_uri, model, stage, since, now)
    candidate = read_prediction_log(base_uri, model, candidate_log_stage(stage), since, now)
    feedback = read_feedback(base_uri, model, stage, since, None)
    incumbent = incumbent[incumbent["model_version"].astype(str) == incumbent_version]
    candidate = candidate[candidate["model_version"].astype(str) == candidate_version]
    return {"candidate": feedback_accuracy(candidate, feedback), "incumbent": feedback_accuracy(incumbent, feedback)}
