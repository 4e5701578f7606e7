"""The serving benchmark's peers: MLServer (scikit-learn and MLflow runtimes), KServe's Python model
server and BentoML, each in its own virtual environment, started on loopback for one model.

Each peer's environment is created by :func:`ensure_venv` under ``~/.cache/modelops/bench-venvs``
(``$MODELOPS_BENCH_VENVS`` overrides it; never inside the repository), named by the peer and a
hash of its requirements and Python version, so a changed pin makes a new one and an unchanged one
is reused (``pip install`` once, 1 to 3 minutes each with pip's cache warm). Every environment
pins the driver's scikit-learn, numpy and scipy so the one pipeline object loads the same way
everywhere; the MLflow runtime's also pins the driver's MLflow and skops.

What each peer serves (one worker process each, their defaults otherwise: request logging and
metrics as they ship):

- ``mlserver-sklearn``: MLServer's ``SKLearnModel`` on ``model.joblib``, the registered pipeline
  loaded by the driver and dumped with joblib (the runtime cannot read MLflow's skops files);
  ``parallel_workers: 0`` (inference in the server process, like ours; MLServer's default of one
  separate inference process was measured slower here). Open Inference Protocol (V2), one 2-D
  ``FP64`` tensor.
- ``mlserver-mlflow``: MLServer's ``MLflowRuntime`` on the registered model's own directory
  (downloaded from the registry), ``POST /invocations`` with the same ``dataframe_split`` body as
  ours.
- ``kserve``: a minimal ``kserve.Model`` (``joblib.load`` in ``load``, ``predict`` on
  ``numpy.asarray(instances)``), ``kserve.ModelServer(workers=1)``, V1 ``{"instances": ...}``.
- ``bentoml``: a minimal ``@bentoml.service`` with one ``@bentoml.api`` taking
  ``instances: list[list[float]]``, ``bentoml serve`` (one worker; BentoML adds its supervisor).

None of the minimal predictors validates input against a signature or logs predictions; ours does
both (see the serving benchmark's notes).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from .common import background, free_port, log, wait_http

VENVS_ENV = "MODELOPS_BENCH_VENVS"
MODEL_NAME = "m"  # the name each peer serves the model under


def venvs_root() -> Path:
    """Where the peers' environments live: ``$MODELOPS_BENCH_VENVS`` or ``~/.cache/modelops/bench-venvs``."""
    explicit = os.environ.get(VENVS_ENV)
    return Path(explicit) if explicit else Path.home() / ".cache" / "modelops" / "bench-venvs"


def _pins(*names: str) -> list[str]:
    return [f"{name}=={version(name)}" for name in names]


@dataclass(frozen=True)
class Peer:
    """One peer: its name, the packages of its environment and how a request reaches it.

    ``protocol`` is ``v2`` (one 2-D tensor), ``v1`` (``instances``), ``bento`` (``instances`` as
    the API's argument) or ``invocations`` (MLflow ``dataframe_split``).
    """

    name: str
    requirements: tuple[str, ...]
    protocol: str

    def path(self) -> str:
        """The request path (after the base URL)."""
        return {
            "v2": f"/v2/models/{MODEL_NAME}/infer",
            "v1": f"/v1/models/{MODEL_NAME}:predict",
            "bento": "/predict",
            "invocations": "/invocations",
        }[self.protocol]


def peers() -> dict[str, Peer]:
    """The peers, by name, with their requirements pinned to the driver's numeric stack."""
    stack = _pins("scikit-learn", "numpy", "scipy")
    return {
        "mlserver-sklearn": Peer("mlserver-sklearn", ("mlserver==1.7.1", "mlserver-sklearn==1.7.1", *stack), "v2"),
        "mlserver-mlflow": Peer(
            "mlserver-mlflow",
            ("mlserver==1.7.1", "mlserver-mlflow==1.7.1", *stack, *_pins("mlflow", "skops")),
            "invocations",
        ),
        "kserve": Peer("kserve", ("kserve==0.21.0", "joblib", *stack), "v1"),
        "bentoml": Peer("bentoml", ("bentoml==1.4.40", "joblib", *stack), "bento"),
    }


def venv_dir(peer: Peer) -> Path:
    """The environment's directory: the peer's name and a hash of its requirements and Python."""
    key = json.dumps([sys.version_info[:2], sorted(peer.requirements)]).encode()
    return venvs_root() / f"{peer.name}-{hashlib.sha256(key).hexdigest()[:10]}"


def ensure_venv(peer: Peer, timeout: float = 1800) -> Path:
    """Create ``peer``'s environment when it is missing (idempotent); returns its ``bin`` directory.

    A finished environment has a ``.installed`` stamp; one without it (an interrupted install) is
    installed again. Raises ``subprocess.CalledProcessError`` when pip fails (its output in
    ``<venv>/install.log``).
    """
    target = venv_dir(peer)
    stamp = target / ".installed"
    if stamp.exists():
        return target / "bin"
    target.parent.mkdir(parents=True, exist_ok=True)
    log(f"peers: creating {target} ({' '.join(peer.requirements)})")
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True, timeout=300)
    with open(target / "install.log", "wb") as out:
        subprocess.run(
            [str(target / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", *peer.requirements],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    stamp.write_text("\n".join(peer.requirements) + "\n")
    return target / "bin"


# -- request bodies -------------------------------------------------------------------------------


def request_body(protocol: str, frame: Any) -> bytes:
    """The body carrying ``frame``'s rows for ``protocol`` (see :class:`Peer`)."""
    rows = frame.to_numpy().tolist()
    if protocol == "v2":
        flat = [x for row in rows for x in row]
        tensor = {"name": "input-0", "shape": [len(rows), frame.shape[1]], "datatype": "FP64", "data": flat}
        return json.dumps({"inputs": [tensor]}).encode()
    if protocol in ("v1", "bento"):
        return json.dumps({"instances": rows}).encode()
    if protocol == "invocations":
        return json.dumps({"dataframe_split": {"columns": list(frame.columns), "data": rows}}).encode()
    raise ValueError(f"unknown protocol {protocol!r}")


def predictions(protocol: str, answer: dict[str, Any]) -> list[Any]:
    """The predictions in a peer's JSON answer."""
    if protocol == "v2":
        return list(answer["outputs"][0]["data"])
    if protocol == "bento":
        return list(answer) if isinstance(answer, list) else list(answer["predictions"])
    return list(answer["predictions"])


# -- servers --------------------------------------------------------------------------------------

_KSERVE_SERVER = """\
import sys

import joblib
import kserve
import numpy as np


class Pipeline(kserve.Model):
    def __init__(self, name, path):
        super().__init__(name)
        self.path = path
        self.load()

    def load(self):
        self.model = joblib.load(self.path)
        self.ready = True
        return self.ready

    def predict(self, payload, headers=None):
        return {"predictions": self.model.predict(np.asarray(payload["instances"])).tolist()}


if __name__ == "__main__":
    model = Pipeline(sys.argv[1], sys.argv[2])
    kserve.ModelServer(http_port=int(sys.argv[3]), grpc_port=int(sys.argv[4]), workers=1).start([model])
"""

_BENTO_SERVICE = """\
import os

import bentoml
import joblib
import numpy as np


@bentoml.service(workers=1)
class Pipeline:
    def __init__(self) -> None:
        self.model = joblib.load(os.environ["BENCH_MODEL_PATH"])

    @bentoml.api
    def predict(self, instances: list[list[float]]) -> list[int]:
        return self.model.predict(np.asarray(instances)).tolist()
"""


@dataclass
class PeerModel:
    """The files a peer loads: ``joblib_path`` (the pipeline object), ``mlflow_dir`` (the registered
    model's directory as MLflow stores it)."""

    joblib_path: Path
    mlflow_dir: Path


def export_model(estimator: Any, model_uri: str, directory: Path) -> PeerModel:
    """Write ``estimator`` with joblib and download ``model_uri``'s directory into ``directory``."""
    import joblib
    import mlflow

    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "model.joblib"
    joblib.dump(estimator, path)
    mlflow_dir = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(directory / "mlflow-model")))
    return PeerModel(path, mlflow_dir)


@dataclass
class Launch:
    """How to start one peer: argv, environment, working directory, readiness path."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    ready_path: str
    port: int


def _mlserver(bin_dir: Path, workdir: Path, implementation: str, uri: Path) -> Launch:
    port, grpc, metrics = free_port(), free_port(), free_port()
    model_dir = workdir / MODEL_NAME
    model_dir.mkdir(parents=True, exist_ok=True)
    settings = {"http_port": port, "grpc_port": grpc, "metrics_port": metrics, "host": "127.0.0.1"}
    settings["parallel_workers"] = 0
    (workdir / "settings.json").write_text(json.dumps(settings))
    model_settings = {"name": MODEL_NAME, "implementation": implementation, "parameters": {"uri": str(uri)}}
    (model_dir / "model-settings.json").write_text(json.dumps(model_settings))
    return Launch([str(bin_dir / "mlserver"), "start", str(workdir)], {}, workdir, "/v2/health/ready", port)


def launch(peer: Peer, bin_dir: Path, model: PeerModel, workdir: Path) -> Launch:
    """The command that serves ``model`` with ``peer`` from ``bin_dir`` (files written under ``workdir``)."""
    workdir.mkdir(parents=True, exist_ok=True)
    if peer.name == "mlserver-sklearn":
        return _mlserver(bin_dir, workdir, "mlserver_sklearn.SKLearnModel", model.joblib_path)
    if peer.name == "mlserver-mlflow":
        return _mlserver(bin_dir, workdir, "mlserver_mlflow.MLflowRuntime", model.mlflow_dir)
    if peer.name == "kserve":
        script = workdir / "kserve_server.py"
        script.write_text(_KSERVE_SERVER)
        port = free_port()
        argv = [str(bin_dir / "python"), str(script), MODEL_NAME, str(model.joblib_path), str(port), str(free_port())]
        return Launch(argv, {}, workdir, f"/v1/models/{MODEL_NAME}", port)
    if peer.name == "bentoml":
        (workdir / "service.py").write_text(_BENTO_SERVICE)
        port = free_port()
        argv = [str(bin_dir / "bentoml"), "serve", "service:Pipeline", "--host", "127.0.0.1", "--port", str(port)]
        env = {"BENCH_MODEL_PATH": str(model.joblib_path), "BENTOML_DO_NOT_TRACK": "true"}
        return Launch(argv, env, workdir, "/readyz", port)
    raise ValueError(f"unknown peer {peer.name!r}")


@contextmanager
def serve(
    peer: Peer, bin_dir: Path, model: PeerModel, workdir: Path, timeout: float
) -> Iterator[tuple[str, int, float]]:
    """Start ``peer`` serving ``model``; yields ``(base URL, pid, seconds to ready)``; stops it after."""
    import time

    spec = launch(peer, bin_dir, model, workdir)
    logfile = workdir / "server.log"
    env = {"PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONUNBUFFERED": "1", **spec.env}
    env.pop("VIRTUAL_ENV", None)
    began = time.monotonic()
    with background(spec.argv, env=env, log=logfile, cwd=spec.cwd) as process:
        url = f"http://127.0.0.1:{spec.port}"
        wait_http(url + spec.ready_path, process, timeout, logfile)
        yield url, process.pid, time.monotonic() - began


def prepare(names: list[str], on_error: Callable[[str, BaseException], None]) -> dict[str, tuple[Peer, Path]]:
    """Ensure the environments of the peers ``names``; a peer whose install fails is reported through
    ``on_error`` and left out."""
    out = {}
    for name in names:
        peer = peers()[name]
        try:
            out[name] = (peer, ensure_venv(peer))
        except (subprocess.SubprocessError, OSError) as exc:
            on_error(name, exc)
    return out


def describe() -> str:
    """One line per peer: its requirements (for RESULTS.md)."""
    return "\n".join(f"- `{p.name}`: {', '.join(p.requirements)}" for p in peers().values())


__all__ = ["Peer", "PeerModel", "describe", "ensure_venv", "export_model", "peers", "prepare", "serve", "venvs_root"]
