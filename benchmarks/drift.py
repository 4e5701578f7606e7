"""Drift benchmark: the drift library and the ``modelops-runtime drift`` job vs plain scipy.

What is measured (issue 9, item 4), side by side in one run, each variant in a fresh process
(peak RSS is the process's own ``ru_maxrss`` from ``wait4``):

- **Data**: a reference and a current frame of ``rows`` x 20 columns (16 numeric, 4 categorical)
  drawn with a fixed seed from distributions that real tabular features follow (normal, log-normal,
  exponential, gamma, beta, Poisson, negative binomial, Weibull, Student-t, a bimodal mixture;
  Zipf-like and skewed category frequencies). The current frame shifts :data:`SHIFTED` columns by
  a known amount (location/scale for numbers, frequencies for categories); the other 14 columns are
  fresh draws of the same distributions. Both are written to Parquet once.
- ``library``: :func:`modelops.monitoring.drift.detect_drift` (Evidently's stattests, default
  rule: ``wasserstein`` normed ≥ 0.1 for numbers, ``jensenshannon`` ≥ 0.1 for categories above
  1,000 reference rows) — compute time only (Parquet read and the Evidently import are reported apart).
- ``scipy`` (the baseline): the same tests written plainly with numpy and scipy
  (``scipy.stats.wasserstein_distance / std(reference)``, ``scipy.spatial.distance.jensenshannon`` on
  category frequencies), same missing-value handling, no sampling — compute time only.
- ``job``: the whole ``modelops-runtime drift`` command (``reference.uri``/``current.uri`` set to the
  Parquet files, a sqlite MLflow store holding the served version) with the ``DriftSpec`` defaults
  (``report: Always``, plots from ``reportRows`` 20,000 rows): process wall time including
  start-up, imports, reading, detection, the Evidently HTML report and the MLflow writes. Its
  phase times are read from its log. Compared with the ``scipy`` variant's whole process time
  (start-up + read + tests).
- ``job-noreport``: the same command with ``drift.report: Never`` (the short summary page instead
  of Evidently's report; what ``OnDrift`` does on a run where nothing drifted): what the job costs
  without the report.

Reported: medians over repeats of each time, peak RSS, the shifted columns found (recall) and
any unshifted column flagged (false positives). A ``large_rows`` run (1,000,000 by default) checks
that the job finishes; the library samples frames above ``max_rows`` (200,000, the ``DriftSpec``
default) and the result says so.

Targets (issue 9): the job at most 2x the scipy baseline's time, peak RSS under 1 GiB, the
shifted columns found; 1,000,000 rows finish.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import (
    MIB,
    ROOT,
    Target,
    log,
    machine_info,
    median,
    ratio,
    run_child,
    venv_bin,
    write_result,
)

NAME = "drift"
NUMERIC = (
    "age", "income", "tenure_months", "balance", "credit_score", "transactions", "session_seconds", "temperature",
    "latency_ms", "utilisation", "clicks", "distance_km", "rating", "height_cm", "weight_kg", "daily_return",
)  # fmt: skip
CATEGORICAL = ("country", "device", "plan", "channel")
#: Columns the current frame shifts, and how.
SHIFTED = {
    "income": "log-normal scale x1.3",
    "tenure_months": "exponential mean 24 -> 32",
    "credit_score": "beta(5, 2) -> beta(4, 2)",
    "temperature": "+0.5 standard deviation",
    "rating": "mixture weights 0.5/0.5 -> 0.35/0.65",
    "device": "mobile/desktop/tablet 0.60/0.30/0.10 -> 0.35/0.45/0.20",
}
WASSERSTEIN_THRESHOLD = 0.1
JENSENSHANNON_THRESHOLD = 0.1
MAX_ROWS = 200_000  # DriftSpec.max_rows default
#: Variants run per size (see the module docstring).
VARIANTS = ("library", "scipy", "job", "job-noreport")


@dataclass
class Params:
    """Sizes of one run."""

    rows: int = 100_000
    repeats: int = 3
    large_rows: int | None = 1_000_000
    seed: int = 7

    @classmethod
    def quick(cls) -> Params:
        """Two repeats; the 1,000,000-row run is kept (one pass)."""
        return cls(repeats=2)

    @classmethod
    def tiny(cls) -> Params:
        """Smoke-test sizes."""
        return cls(rows=3000, repeats=1, large_rows=5000)


# -- data -----------------------------------------------------------------------------------------


def make_frame(rows: int, seed: int, shifted: bool) -> Any:
    """A ``rows`` x 20 frame (see the module docstring); ``shifted`` applies :data:`SHIFTED`."""
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    s = shifted
    rating_mix = rng.random(rows) < (0.65 if s else 0.5)
    data: dict[str, Any] = {
        "age": np.clip(rng.normal(40, 12, rows), 18, 90).round(),
        "income": rng.lognormal(10.5 + (np.log(1.3) if s else 0.0), 0.6, rows),
        "tenure_months": rng.exponential(32 if s else 24, rows),
        "balance": rng.gamma(2.0, 1500.0, rows),
        "credit_score": 300 + 550 * rng.beta(4 if s else 5, 2, rows),
        "transactions": rng.poisson(12, rows).astype(float),
        "session_seconds": rng.lognormal(5, 1, rows),
        "temperature": rng.normal(20 + (2.5 if s else 0.0), 5, rows),
        "latency_ms": 100 * rng.weibull(1.5, rows),
        "utilisation": rng.beta(2, 5, rows),
        "clicks": rng.negative_binomial(5, 0.3, rows).astype(float),
        "distance_km": rng.lognormal(2, 1, rows),
        "rating": np.where(rating_mix, rng.normal(4.2, 0.4, rows), rng.normal(2.0, 0.6, rows)),
        "height_cm": rng.normal(170, 10, rows),
        "weight_kg": rng.gamma(9, 8, rows),
        "daily_return": rng.standard_t(3, rows) / 100,
    }
    countries = np.array(["US", "DE", "FR", "GB", "IN", "BR", "JP", "CA", "ES", "IT",
                          "NL", "SE", "PL", "MX", "KR", "AU", "CH", "BE", "AT", "NO"])  # fmt: skip
    zipf = 1 / np.arange(1, len(countries) + 1)
    data["country"] = rng.choice(countries, rows, p=zipf / zipf.sum())
    device_p = [0.35, 0.45, 0.20] if s else [0.60, 0.30, 0.10]
    data["device"] = rng.choice(np.array(["mobile", "desktop", "tablet"]), rows, p=device_p)
    data["plan"] = rng.choice(np.array(["free", "basic", "pro", "enterprise"]), rows, p=[0.5, 0.3, 0.15, 0.05])
    data["channel"] = rng.choice(np.array([f"ch{i}" for i in range(8)]), rows)
    frame = pd.DataFrame(data)
    # 1 % missing values in two columns, as real logs have.
    for name in ("income", "device"):
        frame.loc[rng.random(rows) < 0.01, name] = None
    return frame


def write_frames(directory: Path, rows: int, seed: int) -> tuple[Path, Path]:
    """Write ``reference.parquet`` and ``current.parquet`` of ``rows`` rows into ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    ref, cur = directory / "reference.parquet", directory / "current.parquet"
    make_frame(rows, seed, shifted=False).to_parquet(ref, index=False)
    make_frame(rows, seed + 1, shifted=True).to_parquet(cur, index=False)
    return ref, cur


# -- the scipy baseline ---------------------------------------------------------------------------


def scipy_drift(reference: Any, current: Any, columns: list[str]) -> dict[str, dict[str, Any]]:
    """The same tests as the library's default rule above 1,000 reference rows, in plain numpy/scipy.

    Numbers (more than 5 distinct values): Wasserstein distance normed by the reference standard
    deviation (at least 0.001), drift at ≥ 0.1. Categories (as strings) and numbers with at most 5
    distinct values: Jensen-Shannon distance (natural log) of the value frequencies over the union
    of values, drift at ≥ 0.1. Missing and infinite values are dropped per column.
    """
    import numpy as np
    import pandas as pd
    from scipy.spatial.distance import jensenshannon
    from scipy.stats import wasserstein_distance

    out: dict[str, dict[str, Any]] = {}
    for name in columns:
        ref_col, cur_col = reference[name], current[name]
        numeric = pd.api.types.is_numeric_dtype(ref_col.dtype) and not pd.api.types.is_bool_dtype(ref_col.dtype)
        if numeric:
            ref = ref_col.to_numpy(dtype=float, na_value=np.nan)
            cur = pd.to_numeric(cur_col, errors="coerce").to_numpy(dtype=float, na_value=np.nan)
            ref, cur = ref[np.isfinite(ref)], cur[np.isfinite(cur)]
            if len(np.unique(ref[:1000])) > 5 or len(np.unique(np.concatenate([ref, cur]))) > 5:
                score = float(wasserstein_distance(ref, cur)) / max(float(np.std(ref)), 0.001)
                out[name] = {"test": "wasserstein", "score": score, "drifted": bool(score >= WASSERSTEIN_THRESHOLD)}
                continue
            ref_values, cur_values = ref, cur
        else:
            ref_values = ref_col.dropna().astype(str).to_numpy()
            cur_values = cur_col.dropna().astype(str).to_numpy()
        keys, inverse = np.unique(np.concatenate([ref_values, cur_values]), return_inverse=True)
        ref_freq = np.bincount(inverse[: len(ref_values)], minlength=len(keys)) / len(ref_values)
        cur_freq = np.bincount(inverse[len(ref_values) :], minlength=len(keys)) / len(cur_values)
        score = float(jensenshannon(ref_freq, cur_freq))
        out[name] = {"test": "jensenshannon", "score": score, "drifted": bool(score >= JENSENSHANNON_THRESHOLD)}
    return out


# -- workers (each in its own process) ------------------------------------------------------------


def worker(variant: str, ref_path: str, cur_path: str) -> dict[str, Any]:
    """Run one in-process variant (``library`` or ``scipy``); times in seconds."""
    import pandas as pd

    started = time.perf_counter()
    reference, current = pd.read_parquet(ref_path), pd.read_parquet(cur_path)
    read_s = time.perf_counter() - started
    columns = [*NUMERIC, *CATEGORICAL]
    out: dict[str, Any] = {"variant": variant, "read_s": read_s, "rows": len(current)}
    if variant == "library":
        started = time.perf_counter()
        import evidently.legacy.calculations.stattests  # noqa: F401  (import timed apart)

        from modelops.monitoring.drift import detect_drift

        out["import_s"] = time.perf_counter() - started
        started = time.perf_counter()
        result = detect_drift(reference, current, columns=columns, max_rows=MAX_ROWS)
        out["compute_s"] = time.perf_counter() - started
        out["scores"] = {c.name: {"test": c.stattest, "score": c.score, "drifted": c.drifted} for c in result.columns}
        out["sampled"] = result.sampled
        out["rows_used"] = result.current_rows_used
    else:
        started = time.perf_counter()
        import scipy.spatial.distance
        import scipy.stats  # noqa: F401  (import timed apart, as the library's)

        out["import_s"] = time.perf_counter() - started
        started = time.perf_counter()
        out["scores"] = scipy_drift(reference, current, columns)
        out["compute_s"] = time.perf_counter() - started
        out["sampled"] = False
        out["rows_used"] = len(current)
    out["drifted"] = sorted(name for name, s in out["scores"].items() if s["drifted"])
    return out


def run_worker(variant: str, ref: Path, cur: Path, timeout: float) -> dict[str, Any]:
    """Run :func:`worker` in a fresh interpreter; adds wall time and peak RSS of that process."""
    argv = [sys.executable, "-m", "benchmarks.drift", "worker", variant, str(ref), str(cur)]
    child = run_child(argv, timeout=timeout, cwd=ROOT).check(f"drift worker {variant}")
    out: dict[str, Any] = json.loads(child.stdout.strip().splitlines()[-1])
    out.update(process_wall_s=child.wall_s, peak_rss_mib=child.peak_rss_bytes / MIB, cpu_s=child.cpu_s)
    return out


# -- the job --------------------------------------------------------------------------------------


def prepare_store(root: Path, features: list[str] | None = None) -> tuple[str, str]:
    """A sqlite MLflow store with a served version of model ``bench-drift`` (alias ``production``).

    Returns the tracking URI and the model name. The training run carries the ``model.features``
    tag (``features``, default the 20 columns above), as a real training run does.
    """
    from mlflow import MlflowClient

    from modelops.contract import EXPERIMENT_MONITORING, TAG_SEMVER, TrainingResult

    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri, registry_uri=uri)
    artifacts = (root / "artifacts").as_uri()
    exp = client.create_experiment("model-training", artifact_location=artifacts)
    client.create_experiment(EXPERIMENT_MONITORING, artifact_location=artifacts)
    meta = TrainingResult(task="classification", features=features or [*NUMERIC, *CATEGORICAL], classes=["0", "1"])
    run = client.create_run(exp, tags={**meta.to_tags(), TAG_SEMVER: "1.0.0"})
    client.set_terminated(run.info.run_id)
    model = "bench-drift"
    client.create_registered_model(model)
    mv = client.create_model_version(model, f"{run.info.artifact_uri}/model", run_id=run.info.run_id)
    client.set_model_version_tag(model, mv.version, TAG_SEMVER, "1.0.0")
    client.set_registered_model_alias(model, "production", mv.version)
    return uri, model


_PHASES = {
    "read_s": re.compile(r"current rows in ([\d.]+) s"),
    "evidently_import_s": re.compile(r"Evidently imported in ([\d.]+) s"),
    "detect_s": re.compile(r"drift of .* computed in ([\d.]+) s"),
    "html_report_s": re.compile(r"Evidently HTML report rendered in ([\d.]+) s"),
    "mlflow_write_s": re.compile(r"monitoring run \S+ written in ([\d.]+) s"),
}


def run_job(
    uri: str, model: str, ref: Path, cur: Path, uid: str, timeout: float, report: str = "Always"
) -> dict[str, Any]:
    """Run ``modelops-runtime drift`` once (``drift.report`` = ``report``); wall time, peak RSS, phases
    from its log, drifted columns."""
    from mlflow import MlflowClient

    from modelops.api.modelmonitor import DriftSpec
    from modelops.contract import (
        ARTIFACT_DRIFT_SUMMARY,
        ENV_JOB_CONFIG,
        EXPERIMENT_MONITORING,
        TAG_UID,
        DriftJobConfig,
        Owner,
    )
    from modelops.datapolicy import DataUriPolicy

    config = DriftJobConfig(
        owner=Owner(kind="ModelMonitor", namespace="bench", name="bench-drift", uid=uid),
        model=model,
        stage="Production",
        reference_uri=str(ref),
        current_uri=str(cur),
        data_policy=DataUriPolicy(local_path_prefixes=[str(Path(ref).parent), str(Path(cur).parent)]),
        drift=DriftSpec(max_rows=MAX_ROWS, report=report),
        history_runs=0,
    )
    env = {
        ENV_JOB_CONFIG: config.to_env(),
        "MLFLOW_TRACKING_URI": uri,
        "MLFLOW_REGISTRY_URI": uri,
        "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
    }
    child = run_child([str(venv_bin() / "modelops-runtime"), "drift"], env=env, timeout=timeout).check("drift job")
    phases = {}
    for key, pattern in _PHASES.items():
        found = pattern.search(child.stdout)
        if found:
            phases[key] = float(found.group(1))
    client = MlflowClient(uri, registry_uri=uri)
    experiment = client.get_experiment_by_name(EXPERIMENT_MONITORING)
    assert experiment is not None
    (run,) = client.search_runs([experiment.experiment_id], f"tags.`{TAG_UID}` = '{uid}'")
    with tempfile.TemporaryDirectory() as tmp:
        summary = json.loads(Path(client.download_artifacts(run.info.run_id, ARTIFACT_DRIFT_SUMMARY, tmp)).read_text())
    drift = summary["drift"]
    return {
        "variant": "job" if report == "Always" else "job-noreport",
        "report": summary.get("report"),
        "process_wall_s": child.wall_s,
        "peak_rss_mib": child.peak_rss_bytes / MIB,
        "cpu_s": child.cpu_s,
        "phases": phases,
        "drifted": sorted(drift["drifted_columns"]),
        "sampled": drift["sampled"],
        "rows_used": drift["current_rows_used"],
        "rows": drift["current_rows"],
        "notes": drift["notes"],
    }


# -- the run --------------------------------------------------------------------------------------


def _found(drifted: list[str]) -> dict[str, Any]:
    shifted = set(SHIFTED)
    return {
        "shifted_found": sorted(shifted & set(drifted)),
        "shifted_missed": sorted(shifted - set(drifted)),
        "false_positives": sorted(set(drifted) - shifted),
    }


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("compute_s", "read_s", "import_s", "process_wall_s", "peak_rss_mib", "cpu_s")
    out: dict[str, Any] = {k: median([r[k] for r in runs if k in r]) for k in keys if any(k in r for r in runs)}
    if runs and "phases" in runs[0]:
        out["phases"] = {p: median([r["phases"][p] for r in runs if p in r["phases"]]) for p in runs[0]["phases"]}
    last = runs[-1]
    out.update(_found(last["drifted"]))
    out.update(drifted=last["drifted"], sampled=last["sampled"], rows_used=last["rows_used"])
    if "scores" in last:
        out["scores"] = last["scores"]
    return out


def run(params: Params | None = None, workdir: Path | None = None) -> dict[str, Any]:
    """Run the drift benchmark; returns the result document (see the module docstring)."""
    params = params or Params()
    machine = machine_info()
    sizes: dict[str, Any] = {}
    with ExitStack() as stack:
        root = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-drift-")))
        uri, model = prepare_store(root / "mlflow")
        size_list = [params.rows] + ([params.large_rows] if params.large_rows else [])
        for rows in size_list:
            repeats = params.repeats if rows == params.rows else 1
            log(f"drift: writing {rows:,} x 20 reference and current frames")
            ref, cur = write_frames(root / f"data-{rows}", rows, params.seed)
            timeout = 120 + rows / 1000
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
            for repeat in range(repeats):
                order = list(VARIANTS) if repeat % 2 == 0 else list(reversed(VARIANTS))
                for variant in order:
                    if variant.startswith("job"):
                        report = "Always" if variant == "job" else "Never"
                        uid = f"bench-{rows}-{repeat}-{variant}"
                        runs[variant].append(run_job(uri, model, ref, cur, uid, timeout, report))
                    else:
                        runs[variant].append(run_worker(variant, ref, cur, timeout))
                    last = runs[variant][-1]
                    log(
                        f"drift: {rows:,} rows, {variant}: process {last['process_wall_s']:.2f} s"
                        + (f", compute {last['compute_s']:.2f} s" if "compute_s" in last else "")
                        + f", peak RSS {last['peak_rss_mib']:.0f} MiB, drifted {last['drifted']}"
                    )
            sizes[str(rows)] = {
                "rows": rows,
                "repeats": repeats,
                "variants": {v: _summarise(r) for v, r in runs.items()},
                "runs": runs,
            }
    result: dict[str, Any] = {
        "name": NAME,
        "machine": machine,
        "params": {
            "rows": params.rows,
            "large_rows": params.large_rows,
            "repeats": params.repeats,
            "columns": {"numeric": list(NUMERIC), "categorical": list(CATEGORICAL)},
            "shifted": SHIFTED,
            "max_rows": MAX_ROWS,
            "seed": params.seed,
        },
        "sizes": sizes,
    }
    result["targets"] = targets(result)
    return result


def targets(result: dict[str, Any]) -> list[Target]:
    """Issue 9's drift targets."""
    out = []
    main = result["sizes"].get(str(result["params"]["rows"]))
    if main:
        v = main["variants"]
        out.append(
            Target(
                f"{main['rows']:,} rows: job process time / scipy baseline process time",
                ratio(v["job"]["process_wall_s"], v["scipy"]["process_wall_s"]),
                "<=",
                2.0,
                "x",
                note="whole processes: start-up, imports, Parquet read, tests; the job also renders the HTML report "
                "and writes the MLflow run",
            )
        )
        out.append(
            Target(
                f"{main['rows']:,} rows: detect_drift compute / scipy compute",
                ratio(v["library"]["compute_s"], v["scipy"]["compute_s"]),
                "<=",
                2.0,
                "x",
                note="the tests only, frames already in memory",
            )
        )
        if "job-noreport" in v:
            out.append(
                Target(
                    f"{main['rows']:,} rows: job with report: Never / scipy baseline process time",
                    ratio(v["job-noreport"]["process_wall_s"], v["scipy"]["process_wall_s"]),
                    "<=",
                    2.0,
                    "x",
                    note="context for the target above: the job without Evidently's HTML report",
                )
            )
        out.append(Target(f"{main['rows']:,} rows: job peak RSS", v["job"]["peak_rss_mib"], "<=", 1024, "MiB"))
        found = len(v["job"]["shifted_found"]) - len(v["job"]["false_positives"])
        out.append(
            Target(
                f"{main['rows']:,} rows: shifted columns found by the job (found - false positives) of {len(SHIFTED)}",
                float(found),
                ">=",
                float(len(SHIFTED)),
                "columns",
            )
        )
    large = result["params"].get("large_rows")
    if large and str(large) in result["sizes"]:
        job = result["sizes"][str(large)]["variants"]["job"]
        sampled = f"sampled to {job['rows_used']:,} rows" if job["sampled"] else "not sampled"
        out.append(Target(f"{large:,} rows: the job finishes", 1.0, ">=", 1.0, "", note=sampled))
        out.append(
            Target(
                f"{large:,} rows: job peak RSS",
                job["peak_rss_mib"],
                "<=",
                1024,
                "MiB",
                note="the 1 GiB bound applied to the large run too",
            )
        )
    return out


def markdown(result: dict[str, Any]) -> str:
    """The drift section of RESULTS.md."""
    p = result["params"]
    lines = [
        "## Drift",
        "",
        f"Reference and current frames of 20 columns (16 numeric, 4 categorical), {len(p['shifted'])} columns "
        f"shifted ({', '.join(p['shifted'])}). Each variant in a fresh process; medians over the repeats. "
        "`compute` = the tests on frames in memory; `process` = the whole process (start-up, imports, "
        "Parquet read, tests, and for the job the HTML report and the MLflow run); `job-noreport` = the job "
        "with `drift.report: Never`.",
        "",
        "| rows | variant | compute s | process s | peak RSS MiB | shifted found | false positives | sampled |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size in result["sizes"].values():
        for variant in VARIANTS_SHOWN:
            if variant not in size["variants"]:
                continue
            v = size["variants"][variant]
            compute = v.get("compute_s", (v.get("phases") or {}).get("detect_s"))
            sampled = f"yes, {v['rows_used']:,} rows" if v["sampled"] else "no"
            lines.append(
                f"| {size['rows']:,} | {variant} | {_f(compute)} | {_f(v.get('process_wall_s'))} | "
                f"{_f(v.get('peak_rss_mib'), 0)} | {len(v['shifted_found'])}/{len(p['shifted'])} | "
                f"{', '.join(v['false_positives']) or 'none'} | {sampled} |"
            )
    for size in result["sizes"].values():
        for variant in ("job", "job-noreport"):
            phases = size["variants"].get(variant, {}).get("phases")
            if phases:
                text = ", ".join(f"{k.removesuffix('_s')} {_f(val)} s" for k, val in phases.items())
                lines.append(f"\n`{variant}` phases at {size['rows']:,} rows (from its log, medians): {text}.")
    return "\n".join(lines)


#: Table order of the variants.
VARIANTS_SHOWN = ("scipy", "library", "job", "job-noreport")


def _f(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.drift [--quick] [--rows N] [--repeats N] [--large-rows N]``; ``worker`` is internal."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["worker"]:
        print(json.dumps(worker(args[1], args[2], args[3]), default=float))
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--repeats", type=int)
    parser.add_argument("--large-rows", type=int, help="0 skips the large run")
    ns = parser.parse_args(args)
    params = Params.quick() if ns.quick else Params()
    if ns.rows:
        params.rows = ns.rows
    if ns.repeats:
        params.repeats = ns.repeats
    if ns.large_rows is not None:
        params.large_rows = ns.large_rows or None
    print(write_result(NAME, run(params)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
