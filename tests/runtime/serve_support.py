"""Helpers for the model server tests: real models in a sqlite MLflow store, a server on a free port."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import mlflow
import pandas as pd
import uvicorn
import yaml
from mlflow.models import infer_signature
from palmerpenguins import load_penguins
from prometheus_client.parser import text_string_to_metric_families
from sklearn.compose import ColumnTransformer
from sklearn.datasets import load_breast_cancer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from modelops.contract import ServeConfig
from modelops.monitoring.prediction_log import read_prediction_log
from modelops_runtime.serve.httpserver import uvicorn_config
from modelops_runtime.serve.limits import ServeLimits
from modelops_runtime.serve.main import Server, build_server
from modelops_runtime.train.job import required_inputs

#: The bound of the waits of these tests (a server's start, a model's load, a log flush): a liveness
#: bound only, generous for a machine whose CPUs other processes keep busy (CI's 2 cores with the
#: sandboxes running); the conditions waited for are what the tests check.
LIVENESS_SECONDS = 120.0
PENGUIN_NUMERIC = ["bill_length_mm", "bill_depth_mm", "flipper_length_mm", "body_mass_g", "year"]
PENGUIN_CATEGORICAL = ["island", "sex"]


@dataclass
class Registered:
    """A registered model version and its training data."""

    name: str
    version: str
    estimator: Any
    X: pd.DataFrame
    model_id: str | None = None


def mlflow_store(root: Path) -> str:
    """Point MLflow at a fresh sqlite store (artifacts under ``root``); returns the tracking URI."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    experiment = mlflow.create_experiment("serve-tests", artifact_location=(root / "artifacts").as_uri())
    mlflow.set_experiment(experiment_id=experiment)
    return uri


def register(name: str, estimator: Any, X: pd.DataFrame, *, example: bool = True) -> Registered:
    """Log ``estimator`` (skops, signature, input example) and register it as a new version of ``name``.

    The signature is the one the training job logs (every column required).
    """
    signature = required_inputs(infer_signature(X, estimator.predict(X)))
    with mlflow.start_run():
        info = mlflow.sklearn.log_model(
            estimator,
            name="model",
            signature=signature,
            input_example=X.head(3) if example else None,
            pip_requirements=["scikit-learn"],
            skops_trusted_types=["numpy.dtype"],
            registered_model_name=name,
        )
    return Registered(name, str(info.registered_model_version), estimator, X, info.model_id)


def breast_cancer_model() -> tuple[Any, pd.DataFrame]:
    """StandardScaler + LogisticRegression on scikit-learn's breast cancer data (30 float columns)."""
    X, y = load_breast_cancer(return_X_y=True, as_frame=True)
    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000)).fit(X, y), X


def penguins_model() -> tuple[Any, pd.DataFrame]:
    """Imputers + one-hot + LogisticRegression on palmerpenguins (numeric, categorical, missing values)."""
    df = load_penguins()
    X, y = df.drop(columns=["species"]), df["species"]
    pre = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(), StandardScaler()), PENGUIN_NUMERIC),
            (
                "cat",
                make_pipeline(SimpleImputer(strategy="most_frequent"), OneHotEncoder(handle_unknown="ignore")),
                PENGUIN_CATEGORICAL,
            ),
        ]
    )
    return make_pipeline(pre, LogisticRegression(max_iter=2000)).fit(X, y), X


def patch_recorded_sklearn_version(registered: Registered, version: str) -> None:
    """Rewrite the ``sklearn_version`` recorded in a registered version's MLmodel file (simulates an old model)."""
    assert registered.model_id is not None
    location = mlflow.MlflowClient().get_logged_model(registered.model_id).artifact_location
    mlmodel = Path(location.removeprefix("file://")) / "MLmodel"
    doc = yaml.safe_load(mlmodel.read_text())
    doc["flavors"]["sklearn"]["sklearn_version"] = version
    mlmodel.write_text(yaml.safe_dump(doc))


def free_port() -> int:
    """A free TCP port on localhost."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Running:
    """A server running in a background thread."""

    server: Server
    url: str
    client: httpx.Client

    def wait_ready(self, timeout: float = LIVENESS_SECONDS) -> None:
        """Wait until ``/v2/health/ready`` answers 200."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.client.get("/v2/health/ready").status_code == 200:
                return
            time.sleep(0.05)
        raise TimeoutError(self.client.get("/v2/health/ready").text)


@contextmanager
def serving(
    config: ServeConfig, *, log_uri: str | None = None, limits: ServeLimits | None = None, **kwargs: Any
) -> Iterator[Running]:
    """Run the app for ``config`` with uvicorn (as the command configures it) on a free port in a thread.

    Stops (lifespan shutdown) on exit.
    """
    limits = limits or ServeLimits()
    server = build_server(config, prediction_log_uri=log_uri, limits=limits, **kwargs)
    port = free_port()
    uv = uvicorn.Server(uvicorn_config(server.app, limits, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + LIVENESS_SECONDS
    while not uv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=10) as client:
        try:
            yield Running(server, url, client)
        finally:
            uv.should_exit = True
            thread.join(15)


def config_for(model: Registered, version: str = "1.0.0", stage: str = "Production", **kw: Any) -> ServeConfig:
    return ServeConfig(model=model.name, registry_version=model.version, version=version, stage=stage, **kw)


def metric(running: Running, name: str, **labels: str) -> float:
    """Value of one sample of ``/metrics`` (0 when absent)."""
    for family in text_string_to_metric_families(running.client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """JSON-ready records (NaN → None)."""
    return [{k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict(orient="records")]


def v2_columns(frame: pd.DataFrame, datatypes: dict[str, str] | None = None) -> list[dict[str, Any]]:
    out = []
    for name, values in frame.items():
        datatype = (datatypes or {}).get(str(name), "FP64")
        data = [None if pd.isna(v) else v for v in values.tolist()]
        out.append({"name": name, "datatype": datatype, "shape": [len(frame)], "data": data})
    return out


class Store:
    def __init__(
        self, root: Path, uri: str, bc: Registered, penguins: Registered, old: Registered, other_patch: Registered
    ) -> None:
        self.root, self.uri, self.bc, self.penguins, self.old = root, uri, bc, penguins, old
        self.other_patch = other_patch  # saved with the installed scikit-learn's next patch release


def next_patch_release() -> str:
    """The installed scikit-learn's version with the patch number plus one."""
    import sklearn
    from packaging.version import Version

    installed = Version(sklearn.__version__)
    return f"{installed.major}.{installed.minor}.{installed.micro + 1}"


def use_store(store: Store) -> None:
    """Point MLflow at ``store`` again (tests reset the process-wide URIs after each test)."""
    mlflow.set_tracking_uri(store.uri)
    mlflow.set_registry_uri(store.uri)


def wait_for_log(
    store: Store, model: str, stage: str, ready: Any, timeout: float = LIVENESS_SECONDS, base: str | None = None
) -> pd.DataFrame:
    """The last hour of ``model``/``stage``'s prediction log under ``base`` (default ``store.root/log``),
    once ``ready(frame)``."""
    deadline = time.monotonic() + timeout
    while True:
        frame = read_prediction_log(
            base or str(store.root / "log"), model, stage, datetime.now(UTC) - timedelta(hours=1)
        )
        if len(frame) and ready(frame):
            return frame
        if time.monotonic() > deadline:
            raise TimeoutError(f"prediction log has {len(frame)} rows")
        time.sleep(0.1)
