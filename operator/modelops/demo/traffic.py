"""Real prediction traffic for the demo: held-out rows, shifted rows, and the two protocols.

Held-out rows come from :func:`modelops_runtime.train.pipeline.split_dataset` with the
ModelVersion's own ``testSize`` and ``randomState``, so they are exactly the rows the model
never saw during training.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import numpy as np
import pandas as pd

from ..api.modelversion import ModelVersionSpec
from ..settings import Settings


@dataclass(frozen=True)
class HeldOut:
    """Held-out features ``x`` (raw columns, as a client sends them) and true labels ``y``."""

    x: pd.DataFrame
    y: pd.Series


def held_out(spec: ModelVersionSpec) -> HeldOut:
    """The test split of a ModelVersion's dataset (same rows as its training run's evaluation)."""
    from modelops_runtime.train.data import load_dataset
    from modelops_runtime.train.pipeline import resolve_estimator, split_dataset, task_of

    estimator = resolve_estimator(spec.training.estimator, Settings().allowed_estimator_modules)
    frame = load_dataset(spec.training.data, Settings().data_policy)
    split = split_dataset(
        frame, spec.training.data, task_of(estimator()), spec.training.test_size, spec.training.random_state
    )
    return HeldOut(split.x_test.reset_index(drop=True), split.y_test.reset_index(drop=True))


def shifted(x: pd.DataFrame, columns: list[str], scale: float = 3.0) -> pd.DataFrame:
    """A copy of ``x`` with a known covariate shift: ``columns`` moved up by ``scale`` standard deviations.

    Rows are not resampled: repeated rows would inflate the drift tests' effective sample size
    and make untouched columns look drifted too.
    """
    out = x.copy()
    for col in columns:
        out[col] = out[col] + scale * float(x[col].std())
    return out


def _jsonable(frame: pd.DataFrame) -> list[list[Any]]:
    return [[None if isinstance(v, float) and np.isnan(v) else v for v in row] for row in frame.itertuples(index=False)]


def predict_v2(url: str, model: str, x: pd.DataFrame, client: httpx.Client) -> list[Any]:
    """POST column-wise tensors to the V2 Open Inference Protocol; returns the predictions."""
    inputs = []
    for col in x.columns:
        values = x[col]
        numeric = pd.api.types.is_numeric_dtype(values)
        inputs.append(
            {
                "name": col,
                "shape": [len(x)],
                "datatype": "FP64" if numeric else "BYTES",
                "data": [None if pd.isna(v) else (float(v) if numeric else str(v)) for v in values],
            }
        )
    response = client.post(f"{url}/v2/models/{model}/infer", json={"inputs": inputs})
    response.raise_for_status()
    outputs = {o["name"]: o for o in response.json()["outputs"]}
    return list(outputs["predict"]["data"])


def predict_invocations(url: str, x: pd.DataFrame, client: httpx.Client, batch: int = 100) -> list[Any]:
    """POST ``dataframe_split`` batches to MLflow's ``/invocations``; returns the predictions."""
    predictions: list[Any] = []
    for start in range(0, len(x), batch):
        part = x.iloc[start : start + batch]
        body = {"dataframe_split": {"columns": list(part.columns), "data": _jsonable(part)}}
        response = client.post(f"{url}/invocations", json=body)
        response.raise_for_status()
        predictions.extend(response.json()["predictions"])
    return predictions


def accuracy(y_true: pd.Series, y_pred: list[Any]) -> float:
    """Share of predictions equal to the true label (labels compared as strings)."""
    truth = [str(v) for v in y_true]
    return sum(t == str(p) for t, p in zip(truth, y_pred, strict=True)) / max(1, len(truth))


class Steady:
    """A client sending one row at a time, drawn at random from ``x``, to the V2 endpoint in a thread
    until the block ends (the router's shares are exact and periodic: rows in a fixed order would
    send the candidate a fixed subset of them).

    Counts requests (``sent``), answers that were not 200 or never came (``failures``, their text)
    and the ``model_version`` of each answer (``versions``). A request whose pooled keep-alive
    connection was closed by a terminating pod before any response (``RemoteProtocolError``, the
    HTTP/1.1 race of every rolling update) is sent once more on a new connection, as HTTP clients
    do for idempotent requests, and counted in ``resent``.
    """

    def __init__(self, url: str, model: str, x: pd.DataFrame, pause: float = 0.05, seed: int = 0) -> None:
        self.url, self.model, self.pause = url, model, pause
        self.bodies = [
            {"inputs": [{"name": c, "shape": [1], "datatype": "FP64", "data": [float(v)]} for c, v in row.items()]}
            for _, row in x.iterrows()
        ]
        self.sent = 0
        self.resent = 0
        self.failures: list[str] = []
        self.versions: Counter[str] = Counter()
        self._pick = random.Random(seed)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def errors(self) -> int:
        """Requests without a 200 answer."""
        return len(self.failures)

    def _run(self) -> None:
        with httpx.Client(timeout=30.0) as client:
            while not self._stop.is_set():
                self.sent += 1
                body = self._pick.choice(self.bodies)
                try:
                    try:
                        response = client.post(f"{self.url}/v2/models/{self.model}/infer", json=body)
                    except httpx.RemoteProtocolError:
                        self.resent += 1
                        response = client.post(f"{self.url}/v2/models/{self.model}/infer", json=body)
                except httpx.HTTPError as exc:
                    self.failures.append(repr(exc))
                else:
                    if response.status_code == 200:
                        self.versions[str(response.json()["model_version"])] += 1
                    else:
                        self.failures.append(f"{response.status_code} {response.text[:200]}")
                self._stop.wait(self.pause)

    def __enter__(self) -> Steady:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(60)
