"""The operator benchmark's training image: Jobs that finish at once with a real MLflow run.

The operator benchmark maps an image repository (``spec.training.image`` of its ModelVersions)
to a script written by :func:`write_image` (the sandbox kubelet's ``--image REPO=ENTRYPOINT``).
The script is named ``modelops-runtime`` and put first on the pod's ``PATH``, so the Job's
unchanged command ``modelops-runtime train`` runs it; nothing in the operator changes.

What the script does, with the standard library only (an interpreter start of ~50 ms instead of
the seconds that importing MLflow and scikit-learn takes), through MLflow's REST API:

1. reads the operator's :class:`~modelops.contract.TrainJobConfig` from ``MODELOPS_JOB_CONFIG``;
2. creates a run in the config's experiment with the contract's tags (owner, semver, dataset,
   parent, ``model.*`` metadata of the small model);
3. creates a logged model ``model`` from that run and uploads the files of a real small model
   (a LogisticRegression on iris saved once by :func:`save_small_model`, skops format), then
   marks it ready;
4. logs the small model's real metrics and ends the run FINISHED.

The operator's side is unchanged and real: it finds the run by the owner uid, registers the logged
model (``register_run_model``), and fills the status. Only the fit is skipped: the training Job
itself is measured by :mod:`benchmarks.training`.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

#: Image repository the operator benchmark's ModelVersions name in ``spec.training.image``.
REPOSITORY = "bench.local/instant-train"
IMAGE = f"{REPOSITORY}:1"


def save_small_model(directory: Path) -> dict[str, Any]:
    """Fit LogisticRegression on iris, save it with MLflow (skops) into ``directory``.

    Returns the metrics and the ``model.*`` tags (:class:`~modelops.contract.TrainingResult`) that
    a training run of this model records.
    """
    import mlflow.sklearn
    import sklearn
    from mlflow.models import infer_signature
    from sklearn.datasets import load_iris
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.model_selection import train_test_split

    from modelops.contract import TrainingResult
    from modelops.registry.models import trusted_types_for

    X, y = load_iris(return_X_y=True, as_frame=True)
    x_train, x_test, y_train, y_test = train_test_split(X, y, test_size=0.25, random_state=42, stratify=y)
    model = LogisticRegression(max_iter=500).fit(x_train, y_train)
    predicted = model.predict(x_test)
    metrics = {
        "accuracy": float(accuracy_score(y_test, predicted)),
        "f1_macro": float(f1_score(y_test, predicted, average="macro")),
        "training_time_s": 0.0,
    }
    info = trusted_types_for(model)
    mlflow.sklearn.save_model(
        model,
        str(directory),
        serialization_format="skops",
        skops_trusted_types=info.trusted_types,
        signature=infer_signature(x_train, model.predict(x_train.head(5))),
        input_example=x_train.head(3),
        pip_requirements=[f"scikit-learn=={sklearn.__version__}"],
    )
    result = TrainingResult(
        framework_version=sklearn.__version__,
        algorithm="LogisticRegression",
        task="classification",
        size_bytes=info.size_bytes,
        training_rows=len(x_train),
        features=list(X.columns),
        classes=[str(c) for c in model.classes_],
    )
    return {"metrics": metrics, "tags": result.to_tags()}


_SCRIPT = '''#!{python} -S
"""Benchmark image (benchmarks/instant_image.py): finish a training Job at once with a real MLflow run."""
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

MODEL_DIR = {model_dir!r}
FILES = {files!r}
META_TAGS = {meta_tags!r}
METRICS = {metrics!r}
TAG_KEYS = {tag_keys!r}


def call(base, method, path, body=None, data=None, content_type="application/json"):
    payload = data if data is not None else (json.dumps(body).encode() if body is not None else None)
    request = urllib.request.Request(base + path, data=payload, method=method)
    if payload is not None:
        request.add_header("Content-Type", content_type)
    for attempt in range(20):
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                text = response.read()
                return json.loads(text) if text else {{}}
        except urllib.error.HTTPError as exc:
            text = exc.read()[:300]
            # A busy server's sqlite pool runs out: MLflow answers 400 BAD_REQUEST "QueuePool limit ... reached".
            if exc.code < 500 and exc.code != 429 and b"QueuePool limit" not in text:
                raise RuntimeError(f"{{method}} {{path}}: {{exc.code}} {{text!r}}") from exc
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(min(0.1 * 2 ** attempt, 2.0))
    raise RuntimeError(f"{{method}} {{path}}: MLflow kept failing")


def experiment_id(base, name):
    query = urllib.parse.urlencode({{"experiment_name": name}})
    try:
        return call(base, "GET", "/api/2.0/mlflow/experiments/get-by-name?" + query)["experiment"]["experiment_id"]
    except RuntimeError:
        pass
    try:
        return call(base, "POST", "/api/2.0/mlflow/experiments/create", {{"name": name}})["experiment_id"]
    except RuntimeError:  # created meanwhile by another Job
        return call(base, "GET", "/api/2.0/mlflow/experiments/get-by-name?" + query)["experiment"]["experiment_id"]


def main():
    if sys.argv[1:2] != ["train"]:
        print("usage: modelops-runtime train (benchmark image)", file=sys.stderr)
        return 2
    config = json.loads(os.environ["MODELOPS_JOB_CONFIG"])
    base = os.environ["MLFLOW_TRACKING_URI"].rstrip("/")
    owner = config["owner"]
    tags = {{
        TAG_KEYS["kind"]: owner["kind"], TAG_KEYS["namespace"]: owner["namespace"],
        TAG_KEYS["name"]: owner["name"], TAG_KEYS["uid"]: owner["uid"],
        TAG_KEYS["semver"]: config["version"], TAG_KEYS["dataset"]: config["data"]["uri"],
        **META_TAGS,
    }}
    if config.get("parent_version"):
        tags[TAG_KEYS["parent"]] = config["parent_version"]
    exp = experiment_id(base, config.get("experiment") or "model-training")
    now = int(time.time() * 1000)
    run = call(base, "POST", "/api/2.0/mlflow/runs/create", {{
        "experiment_id": exp, "start_time": now, "run_name": config["model"] + "-" + config["version"],
        "tags": [{{"key": k, "value": v}} for k, v in tags.items()],
    }})["run"]["info"]
    logged = call(base, "POST", "/api/2.0/mlflow/logged-models", {{
        "experiment_id": exp, "name": "model", "source_run_id": run["run_id"],
    }})["model"]["info"]
    location = logged["artifact_uri"]
    if not location.startswith("mlflow-artifacts:/"):
        raise RuntimeError("expected a proxied artifact store, got " + location)
    prefix = "/api/2.0/mlflow-artifacts/artifacts/" + location[len("mlflow-artifacts:/"):].strip("/")
    for name in FILES:
        with open(os.path.join(MODEL_DIR, name), "rb") as handle:
            call(base, "PUT", prefix + "/" + name, data=handle.read(), content_type="application/octet-stream")
    call(base, "PATCH", "/api/2.0/mlflow/logged-models/" + logged["model_id"],
         {{"model_id": logged["model_id"], "status": "LOGGED_MODEL_READY"}})
    call(base, "POST", "/api/2.0/mlflow/runs/log-batch", {{
        "run_id": run["run_id"],
        "metrics": [{{"key": k, "value": v, "timestamp": now, "step": 0}} for k, v in METRICS.items()],
    }})
    call(base, "POST", "/api/2.0/mlflow/runs/update", {{
        "run_id": run["run_id"], "status": "FINISHED", "end_time": int(time.time() * 1000),
    }})
    print("trained (benchmark image) " + config["model"] + " " + config["version"] + " in run " + run["run_id"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
'''


def write_image(directory: Path) -> Path:
    """Save the small model and write the ``modelops-runtime`` script under ``directory``.

    Returns the script's path: map :data:`REPOSITORY` to it in the sandbox kubelet's images.
    """
    from modelops import contract

    model_dir = directory / "small-model"
    saved = save_small_model(model_dir)
    files = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*") if p.is_file())
    tag_keys = {
        "kind": contract.TAG_KIND,
        "namespace": contract.TAG_NAMESPACE,
        "name": contract.TAG_NAME,
        "uid": contract.TAG_UID,
        "semver": contract.TAG_SEMVER,
        "parent": contract.TAG_PARENT,
        "dataset": contract.TAG_DATASET_URI,
    }
    bin_dir = directory / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / contract.RUNTIME_ENTRYPOINT
    script.write_text(
        _SCRIPT.format(
            python=sys.executable,
            model_dir=str(model_dir),
            files=files,
            meta_tags=saved["tags"],
            metrics=saved["metrics"],
            tag_keys=tag_keys,
        )
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return script


def image_mapping(script: Path) -> dict[str, str]:
    """The Supervisor's ``images=`` entry for the script."""
    return {REPOSITORY: str(script)}


__all__ = ["IMAGE", "REPOSITORY", "image_mapping", "save_small_model", "write_image"]

if __name__ == "__main__":  # pragma: no cover - manual use: write the image into a directory
    print(write_image(Path(sys.argv[1] if len(sys.argv) > 1 else os.getcwd())))
