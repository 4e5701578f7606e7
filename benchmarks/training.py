"""Training benchmark: the training Job's wall time vs a bare in-process fit and evaluate.

What is measured (issue 9, item 3), side by side in one run, per configuration and repeat:

- ``job``: ``modelops-runtime train`` as the kubelet runs it (a fresh process, config in
  ``MODELOPS_JOB_CONFIG``) against an ``mlflow server`` (sqlite + local artifacts, as the sandbox
  runs it; ``--tracking sqlite`` uses the sqlite store directly): process wall time, which covers
  interpreter start-up, imports, data loading, fit, evaluation and every MLflow write (params,
  metrics, profile, reference sample, the skops model with signature and input example, tags).
  ``log_model`` time and the time to import the training stack (MLflow, skops, scikit-learn,
  pandas) are read from its log.
- ``register``: the operator's registration of that run (``registry.operations.register_run_model``,
  what the operator calls once the Job completed), timed in this process.
- ``bare`` (the baseline): a fresh process that loads the same data and runs the same code path
  (``pipeline.split_dataset``, ``pipeline.build_pipeline``, ``fit``, ``metrics.evaluate``) without
  MLflow. Its in-process fit + evaluate time is the issue's baseline; its process wall time and
  its import time split the overhead into start-up and MLflow.

Overhead = job wall + registration - bare fit + evaluate (median over repeats). Target (issue 9):
under 3 s per run on a small dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    MIB,
    ROOT,
    Target,
    background,
    free_port,
    log,
    machine_info,
    median,
    mlflow_uris,
    profile_markdown,
    pyspy_path,
    pyspy_record,
    run_child,
    venv_bin,
    write_result,
)

NAME = "training"
MODEL = "bench-training"

#: Configurations: (name, data spec, estimator, hyperparameters).
CONFIGS: dict[str, dict[str, Any]] = {
    "breast_cancer_logreg": {
        "data": {"uri": "sklearn://breast_cancer", "target": "target"},
        "estimator": "sklearn.linear_model.LogisticRegression",
        "hyperparameters": {"C": 0.05, "max_iter": 500},
    },
    "penguins_random_forest": {
        "data": {"uri": "penguins://", "target": "species"},
        "estimator": "sklearn.ensemble.RandomForestClassifier",
        "hyperparameters": {"n_estimators": 100},
    },
}


@dataclass
class Params:
    """Sizes of one run."""

    repeats: int = 3
    configs: tuple[str, ...] = tuple(CONFIGS)
    tracking: str = "server"  # server | sqlite
    profile: bool = True  # one more job of the first configuration under py-spy (when installed), not timed

    @classmethod
    def quick(cls) -> Params:
        """Two repeats."""
        return cls(repeats=2)

    @classmethod
    def tiny(cls) -> Params:
        """Smoke-test sizes: one repeat of one configuration against a sqlite store."""
        return cls(repeats=1, configs=("breast_cancer_logreg",), tracking="sqlite", profile=False)


def job_config(name: str, version: str, uid: str) -> Any:
    """The :class:`~modelops.contract.TrainJobConfig` of configuration ``name``."""
    from modelops.contract import Owner, TrainJobConfig

    spec = CONFIGS[name]
    return TrainJobConfig(
        owner=Owner(kind="ModelVersion", namespace="bench", name=f"bench-{name}", uid=uid),
        model=MODEL,
        version=version,
        data=spec["data"],
        estimator=spec["estimator"],
        hyperparameters=spec["hyperparameters"],
    )


# -- the bare baseline (its own process) ----------------------------------------------------------


def bare(name: str) -> dict[str, Any]:
    """Load, split, build, fit and evaluate configuration ``name`` with the runtime's code; seconds."""
    started = time.perf_counter()
    from modelops_runtime.train import data as data_mod
    from modelops_runtime.train import metrics as metrics_mod
    from modelops_runtime.train import pipeline as pipe

    import_s = time.perf_counter() - started
    config = job_config(name, "0.0.0", "bare")
    started = time.perf_counter()
    frame = data_mod.load_dataset(config.data, config.data_policy)
    estimator_cls = pipe.resolve_estimator(config.estimator, config.allowed_estimator_modules)
    estimator = pipe.make_estimator(estimator_cls, config.hyperparameters, config.random_state)
    task = pipe.task_of(estimator)
    split = pipe.split_dataset(frame, config.data, task, config.test_size, config.random_state)
    load_s = time.perf_counter() - started
    started = time.perf_counter()
    model = pipe.build_pipeline(split.features, estimator)
    model.fit(split.x_train, split.y_train)
    metrics, _ = metrics_mod.evaluate(task, model, split.x_test, split.y_test)
    fit_evaluate_s = time.perf_counter() - started
    return {"import_s": import_s, "load_s": load_s, "fit_evaluate_s": fit_evaluate_s, "metrics": metrics}


def run_bare(name: str) -> dict[str, Any]:
    """:func:`bare` in a fresh interpreter, plus its process wall time and peak RSS."""
    child = run_child([sys.executable, "-m", "benchmarks.training", "bare", name], timeout=300, cwd=ROOT)
    child.check("bare fit")
    out: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    out.update(process_wall_s=child.wall_s, peak_rss_mib=child.peak_rss_bytes / MIB)
    return out


# -- the job and the registration -----------------------------------------------------------------

_LOG_MODEL = re.compile(r"log_model took ([\d.]+) s")
_IMPORTS = re.compile(r"training stack imported in ([\d.]+) s")


def run_job(name: str, tracking_uri: str, version: str) -> dict[str, Any]:
    """Run ``modelops-runtime train`` once, then register its run as the operator does."""
    from mlflow import MlflowClient

    from modelops.contract import ENV_JOB_CONFIG, EXPERIMENT_TRAINING, TAG_NAME, TAG_NAMESPACE, TAG_SEMVER, TAG_UID
    from modelops.registry import operations as ops

    uid = str(uuid.uuid4())
    config = job_config(name, version, uid)
    env = {
        ENV_JOB_CONFIG: config.to_env(),
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLFLOW_REGISTRY_URI": tracking_uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        "PYTHONUNBUFFERED": "1",
    }
    child = run_child([str(venv_bin() / "modelops-runtime"), "train"], env=env, timeout=600).check("training job")
    found = _LOG_MODEL.search(child.stdout)
    imports = _IMPORTS.search(child.stdout)
    client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
    started = time.perf_counter()
    run = ops.find_run_by_uid(client, EXPERIMENT_TRAINING, uid, status="FINISHED")
    if run is None:
        raise RuntimeError(f"no finished run tagged {uid}")
    tags = {TAG_SEMVER: version, TAG_NAMESPACE: "bench", TAG_NAME: config.owner.name, TAG_UID: uid}
    mv = ops.register_run_model(client, MODEL, run, tags)
    register_s = time.perf_counter() - started
    return {
        "process_wall_s": child.wall_s,
        "peak_rss_mib": child.peak_rss_bytes / MIB,
        "cpu_s": child.cpu_s,
        "log_model_s": float(found.group(1)) if found else None,
        "imports_s": float(imports.group(1)) if imports else None,
        "training_time_s": run.data.metrics.get("training_time_s"),
        "register_s": register_s,
        "registered_version": str(mv.version),
    }


def run(params: Params | None = None, workdir: Path | None = None) -> dict[str, Any]:
    """Run the training benchmark; returns the result document (see the module docstring)."""
    from modelops.contract import ENV_JOB_CONFIG
    from modelops.sandbox import mlflow_server

    params = params or Params()
    machine = machine_info()
    configs: dict[str, Any] = {}
    with ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-training-")))
        if params.tracking == "server":
            port = free_port()
            mlflow_server.mlflow_dir(root).joinpath("artifacts").mkdir(parents=True, exist_ok=True)
            log_path = root / "mlflow.log"
            process = stack.enter_context(
                background(mlflow_server.command(root, port, 1), env=mlflow_server.ENV, log=log_path, cwd=root)
            )
            tracking_uri = mlflow_server.url_for(port)
            waited = mlflow_server.wait_healthy(tracking_uri, process, 180, log_path)
            log(f"training: mlflow server healthy after {waited:.1f} s")
        else:
            tracking_uri = f"sqlite:///{root / 'mlflow.db'}"
            from mlflow import MlflowClient

            from modelops.contract import EXPERIMENT_TRAINING

            client = MlflowClient(tracking_uri, registry_uri=tracking_uri)
            client.search_experiments()  # migrate the schema before timing
            # A sqlite store's default artifact root is ./mlruns of the job's working directory:
            # the experiment keeps its artifacts in the benchmark's own directory instead.
            client.create_experiment(EXPERIMENT_TRAINING, artifact_location=(root / "artifacts").as_uri())
        # MLflow's sqlite registry resolves a ``models:/<id>`` source through the process-wide tracking URI.
        stack.enter_context(mlflow_uris(tracking_uri))
        counter = 0
        for name in params.configs:
            jobs, bares = [], []
            for repeat in range(params.repeats):
                order = ["job", "bare"] if repeat % 2 == 0 else ["bare", "job"]
                for variant in order:
                    if variant == "job":
                        counter += 1
                        jobs.append(run_job(name, tracking_uri, f"1.0.{counter}"))
                    else:
                        bares.append(run_bare(name))
                log(
                    f"training: {name}: job {jobs[-1]['process_wall_s']:.2f} s + register "
                    f"{jobs[-1]['register_s']:.2f} s; bare fit+evaluate {bares[-1]['fit_evaluate_s']:.3f} s "
                    f"(process {bares[-1]['process_wall_s']:.2f} s)"
                )
            job_wall = median([j["process_wall_s"] for j in jobs]) or 0.0
            register = median([j["register_s"] for j in jobs]) or 0.0
            fit = median([b["fit_evaluate_s"] for b in bares]) or 0.0
            bare_wall = median([b["process_wall_s"] for b in bares]) or 0.0
            configs[name] = {
                "spec": CONFIGS[name],
                "job_wall_s": job_wall,
                "register_s": register,
                "log_model_s": median([j["log_model_s"] for j in jobs if j["log_model_s"] is not None]),
                "imports_s": median([j["imports_s"] for j in jobs if j.get("imports_s") is not None]),
                "job_peak_rss_mib": median([j["peak_rss_mib"] for j in jobs]),
                "bare_fit_evaluate_s": fit,
                "bare_process_wall_s": bare_wall,
                "bare_import_s": median([b["import_s"] for b in bares]),
                "bare_load_s": median([b["load_s"] for b in bares]),
                "overhead_s": job_wall + register - fit,
                "overhead_beyond_bare_process_s": job_wall + register - bare_wall,
                "jobs": jobs,
                "bares": bares,
            }
        profile = None
        if params.profile and pyspy_path() is not None:
            name = params.configs[0]
            log(f"training: profiling one more {name} job with py-spy (not timed)")
            config = job_config(name, f"1.0.{counter + 1}", str(uuid.uuid4()))
            env = {
                ENV_JOB_CONFIG: config.to_env(),
                "MLFLOW_TRACKING_URI": tracking_uri,
                "MLFLOW_REGISTRY_URI": tracking_uri,
            }
            with _env(env):
                profile = pyspy_record([str(venv_bin() / "modelops-runtime"), "train"])
    result: dict[str, Any] = {
        "name": NAME,
        "machine": machine,
        "params": {"repeats": params.repeats, "configs": list(params.configs), "tracking": params.tracking},
        "configs": configs,
        "profile": profile,
    }
    result["targets"] = targets(result)
    return result


@contextmanager
def _env(values: dict[str, str]) -> Iterator[None]:
    """Set environment variables for the block (py-spy passes its environment to the job)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def targets(result: dict[str, Any]) -> list[Target]:
    """Issue 9's training target: overhead under 3 s per run."""
    return [
        Target(
            f"{name}: job + registration - bare fit+evaluate",
            c["overhead_s"],
            "<=",
            3.0,
            "s",
            note=f"of which interpreter start-up + data load + imports without MLflow: "
            f"{c['bare_process_wall_s'] - c['bare_fit_evaluate_s']:.2f} s",
        )
        for name, c in result["configs"].items()
    ]


def markdown(result: dict[str, Any]) -> str:
    """The training section of RESULTS.md."""
    lines = [
        "## Training overhead",
        "",
        f"`modelops-runtime train` as a fresh process against MLflow ({result['params']['tracking']}), then the "
        "operator's registration call, vs the same code path without MLflow in a fresh process "
        f"(medians of {result['params']['repeats']} repeats).",
        "",
        "| config | job wall s | (imports s) | (log_model s) | register s | bare fit+evaluate s | bare process s "
        "| overhead s | job peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, c in result["configs"].items():
        lines.append(
            f"| {name} | {c['job_wall_s']:.2f} | {_f(c.get('imports_s'))} | {_f(c['log_model_s'])} | "
            f"{c['register_s']:.2f} | "
            f"{c['bare_fit_evaluate_s']:.3f} | {c['bare_process_wall_s']:.2f} | {c['overhead_s']:.2f} | "
            f"{c['job_peak_rss_mib']:.0f} |"
        )
    lines += profile_markdown(result.get("profile"), "One training job profiled")
    return "\n".join(lines)


def _f(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.training [--quick] [--repeats N] [--tracking server|sqlite]``; ``bare`` is internal."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["bare"]:
        print(json.dumps(bare(args[1])))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.training", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--tracking", choices=["server", "sqlite"])
    ns = parser.parse_args(args)
    params = Params.quick() if ns.quick else Params()
    if ns.repeats:
        params.repeats = ns.repeats
    if ns.tracking:
        params.tracking = ns.tracking
    print(write_result(NAME, run(params)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
