"""Drift at scale: the ``modelops-runtime drift`` job on 10,000,000 rows x 100 columns of Parquet,
beside Evidently's own ``DataDriftPreset`` on the same files, and the detection power of the job's
sample.

What is measured (issue 18, item 5), in one run:

- **Data** (:func:`write_file`): a reference and a current Parquet file on local disk, ``rows``
  rows each (10,000,000), 80 numeric columns (``num_00`` ... ``num_79``: normal, log-normal,
  exponential and gamma, by column) and 20 categorical ones (``cat_00`` ... ``cat_19``: 3 to 40
  values, Zipf-like frequencies), written :data:`CHUNK_ROWS` rows per row group with a fixed seed;
  every fifth column has 2 % nulls. The current file shifts :data:`SHIFTS` columns by known amounts:
  normal columns by a graded location shift of ``delta`` reference standard deviations (whose
  normed Wasserstein distance, the job's score, is ``delta`` exactly), categorical columns by mixing
  a share of another frequency profile in (the Jensen-Shannon distance of the two profiles is
  computed exactly). The files go to ``~/.cache/modelops/bench-drift-scale`` (never the repository)
  and are deleted at the end unless ``--keep``.
- **The job**: the whole ``modelops-runtime drift`` command with the ``DriftSpec`` defaults
  (``maxRows`` 200,000: each file is streamed by record batches, only the features' columns, and
  only the 200,000 rows :func:`~modelops.monitoring.drift.sample_positions` picks are kept; the
  Evidently HTML report is rendered from 20,000 of them): wall time, peak RSS, the phases from its
  log, the columns found.
- **Power** (:func:`power`): the shifted columns' scores on uniform samples of 10,000 to 1,000,000
  rows of the same files, against the exact effect: which shifts each sample size still finds.
  The rule itself (normed Wasserstein >= 0.1, Jensen-Shannon >= 0.1) sets the smallest shift
  counted as drift whatever the sample; the sample adds noise around it.
- **Evidently** (:func:`evidently_worker`): ``Report([DataDriftPreset()]).run(current, reference)``
  on the whole files read with ``pandas.read_parquet``, in a fresh process whose resident memory
  is capped (``evidently_cap_gib``, killed above it, so a shared machine is not pushed into swap or
  the OOM killer) and whose time is capped (``evidently_timeout``); the phase it reached is
  recorded. Then the same on the first ``evidently_small_rows`` rows of each file, to show its
  cost where it does finish.

Targets (issue 18): the job within 10 minutes and under 2 GiB peak RSS on 2 cores, finding every
shifted column at or above the rule's threshold and no unshifted one.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .common import MIB, ROOT, Target, loadavg, log, machine_info, tree_rss_bytes, write_result

NAME = "driftscale"
NUMERIC = [f"num_{i:02d}" for i in range(80)]
CATEGORICAL = [f"cat_{i:02d}" for i in range(20)]
#: Rows generated and written at a time (one row group each).
CHUNK_ROWS = 500_000
#: Shifted columns: ("location", delta in reference standard deviations) for normal columns,
#: ("mix", share of the other profile) for categorical ones.
SHIFTS: dict[str, tuple[str, float]] = {
    "num_00": ("location", 0.02),
    "num_04": ("location", 0.05),
    "num_08": ("location", 0.08),
    "num_12": ("location", 0.095),
    "num_16": ("location", 0.105),
    "num_20": ("location", 0.12),
    "num_24": ("location", 0.15),
    "num_28": ("location", 0.2),
    "num_32": ("location", 0.5),
    "num_36": ("location", 1.0),
    "cat_00": ("mix", 0.1),
    "cat_04": ("mix", 0.3),
    "cat_08": ("mix", 0.5),
    "cat_12": ("mix", 1.0),
}
THRESHOLD = 0.1  # the default rule's threshold for both distances (above 1,000 reference rows)
NULL_SHARE = 0.02
MAX_ROWS = 200_000  # DriftSpec.max_rows default
GIB = 1024 * MIB


@dataclass
class Params:
    """Sizes of one run."""

    rows: int = 10_000_000
    seed: int = 11
    power_sizes: tuple[int, ...] = (10_000, 50_000, 200_000, 1_000_000)
    evidently: bool = True
    evidently_cap_gib: float = 8.0
    evidently_timeout: float = 1200.0
    evidently_small_rows: int = 500_000
    job_timeout: float = 1800.0
    data_dir: Path | None = None
    keep: bool = False

    @classmethod
    def quick(cls) -> Params:
        """1,000,000 rows, Evidently on 100,000."""
        return cls(rows=1_000_000, power_sizes=(10_000, 200_000), evidently_small_rows=100_000)

    @classmethod
    def tiny(cls) -> Params:
        """Smoke-test sizes."""
        return cls(rows=20_000, power_sizes=(5_000,), evidently=False)


# -- data -----------------------------------------------------------------------------------------


def _numeric_kind(index: int) -> str:
    """Distribution of ``num_<index>``: every column a shifted one is drawn from is normal."""
    if f"num_{index:02d}" in SHIFTS or index % 4 == 0:
        return "normal"
    return ("lognormal", "exponential", "gamma")[index % 3]


def _profile(index: int, shifted: bool) -> tuple[list[str], Any]:
    """Values and frequencies of ``cat_<index>`` (the other profile: the reversed Zipf weights)."""
    import numpy as np

    n = 3 + (index * 7) % 38
    weights = 1 / np.arange(1, n + 1)
    if shifted:
        weights = weights[::-1]
    return [f"v{j}" for j in range(n)], weights / weights.sum()


def category_probabilities(index: int, share: float) -> Any:
    """Frequencies of ``cat_<index>`` in the current file: ``share`` of the other profile mixed in."""
    _, base = _profile(index, False)
    _, other = _profile(index, True)
    return (1 - share) * base + share * other


def exact_effect(column: str) -> float:
    """The score the default rule computes for ``column`` on infinite data (0 for unshifted columns).

    Location shift of a normal column: normed Wasserstein distance = ``delta``. Mixed categories:
    Jensen-Shannon distance (natural log, as Evidently and scipy compute it) of the two profiles.
    """
    from scipy.spatial.distance import jensenshannon

    kind, amount = SHIFTS.get(column, ("none", 0.0))
    if kind == "location":
        return amount
    if kind == "mix":
        index = int(column.split("_")[1])
        return float(jensenshannon(category_probabilities(index, 0.0), category_probabilities(index, amount)))
    return 0.0


def _chunk(rng: Any, rows: int, shifted: bool) -> Any:
    """One row group of the file as an Arrow table."""
    import numpy as np
    import pyarrow as pa

    arrays, names = [], []
    for i, name in enumerate(NUMERIC):
        kind = _numeric_kind(i)
        if kind == "normal":
            values = rng.normal(10 * i, 1 + i % 5, rows)
            shift = SHIFTS.get(name)
            if shifted and shift:
                values += shift[1] * (1 + i % 5)
        elif kind == "lognormal":
            values = rng.lognormal(3, 0.7, rows)
        elif kind == "exponential":
            values = rng.exponential(20, rows)
        else:
            values = rng.gamma(2.0, 50.0, rows)
        mask = rng.random(rows) < NULL_SHARE if i % 5 == 0 else None
        arrays.append(pa.array(values, mask=mask))
        names.append(name)
    for i, name in enumerate(CATEGORICAL):
        values, _ = _profile(i, False)
        share = SHIFTS[name][1] if shifted and name in SHIFTS else 0.0
        p = category_probabilities(i, share)
        codes = np.searchsorted(np.cumsum(p), rng.random(rows) * p.sum()).astype(np.int32)
        codes = np.minimum(codes, len(values) - 1)
        mask = rng.random(rows) < NULL_SHARE if i % 5 == 0 else None
        indices = pa.array(codes, mask=mask)
        arrays.append(pa.DictionaryArray.from_arrays(indices, pa.array(values)))
        names.append(name)
    return pa.Table.from_arrays(arrays, names=names)


def write_file(path: Path, rows: int, seed: int, shifted: bool) -> int:
    """Write ``rows`` rows (see the module docstring) to ``path``; returns the file's size in bytes.

    Memory: one chunk of :data:`CHUNK_ROWS` rows (~0.4 GiB) at a time.
    """
    import numpy as np
    import pyarrow.parquet as pq

    rng = np.random.default_rng(seed)
    writer = None
    try:
        done = 0
        while done < rows:
            table = _chunk(rng, min(CHUNK_ROWS, rows - done), shifted)
            if writer is None:
                writer = pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=CHUNK_ROWS)
            done += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    return path.stat().st_size


# -- power ----------------------------------------------------------------------------------------


def power(ref: Path, cur: Path, sizes: tuple[int, ...], seed: int = 0) -> dict[str, Any]:
    """Scores of the shifted columns (and two unshifted ones) with ``detect_drift`` on uniform samples
    of each size in ``sizes`` (one read of the largest, smaller ones sampled from it, seed ``seed``)."""
    import numpy as np

    from modelops.monitoring.drift import detect_drift
    from modelops.monitoring.tables import read_parquet_sampled

    columns = [*SHIFTS, "num_01", "cat_01"]
    largest = max(sizes)
    reference = read_parquet_sampled(ref, columns=columns, max_rows=largest, random_state=seed).frame
    current = read_parquet_sampled(cur, columns=columns, max_rows=largest, random_state=seed).frame
    out: dict[str, Any] = {}
    for size in sorted(sizes):
        rng = np.random.default_rng(seed + size)
        pick_ref = np.sort(rng.choice(len(reference), min(size, len(reference)), replace=False))
        pick_cur = np.sort(rng.choice(len(current), min(size, len(current)), replace=False))
        result = detect_drift(reference.iloc[pick_ref], current.iloc[pick_cur], columns=columns, max_rows=max(size, 1))
        out[str(size)] = {c.name: {"score": c.score, "drifted": c.drifted} for c in result.columns}
    return out


def smallest_found(scores: dict[str, dict[str, Any]], kind: str) -> float | None:
    """The smallest shift amount of ``kind`` whose column was found (None when none was)."""
    found = [amount for col, (k, amount) in SHIFTS.items() if k == kind and scores.get(col, {}).get("drifted")]
    return min(found) if found else None


# -- Evidently -----------------------------------------------------------------------------------


def evidently_worker(ref: str, cur: str, rows: int | None) -> None:
    """``DataDriftPreset`` on the two files (their first ``rows`` rows when given); prints one JSON
    line per phase reached (``{"phase": ..., "s": ...}``) so a killed run still tells where it was."""
    import pandas as pd
    import pyarrow.parquet as pq

    def phase(name: str, began: float, **extra: Any) -> float:
        print(json.dumps({"phase": name, "s": time.perf_counter() - began, **extra}), flush=True)
        return time.perf_counter()

    def read(path: str) -> pd.DataFrame:
        if rows is None:
            return pd.read_parquet(path)
        parquet = pq.ParquetFile(path)
        groups: list[int] = []
        count = 0
        while count < rows and len(groups) < parquet.num_row_groups:
            count += parquet.metadata.row_group(len(groups)).num_rows
            groups.append(len(groups))
        return parquet.read_row_groups(groups).slice(0, rows).to_pandas()

    began = time.perf_counter()
    from evidently import Report
    from evidently.presets import DataDriftPreset

    began = phase("import", began)
    reference = read(ref)
    began = phase("read_reference", began, rows=len(reference))
    current = read(cur)
    began = phase("read_current", began, rows=len(current))
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    began = phase("run", began)
    drifted = []
    for metric in snapshot.dict()["metrics"]:
        config, value = metric.get("config", {}), metric.get("value")
        if not str(config.get("type", "")).endswith(":ValueDrift") or value is None:
            continue
        p_value = "p_value" in str(config.get("method"))  # p-value tests drift below it, distances at or above
        if (float(value) < config["threshold"]) if p_value else (float(value) >= config["threshold"]):
            drifted.append(config["column"])
    phase("result", began, drifted=sorted(drifted))


def run_capped(argv: list[str], cap_bytes: int, timeout: float) -> dict[str, Any]:
    """Run ``argv``; kill its process group when its resident memory passes ``cap_bytes`` or after
    ``timeout`` s. Returns wall time, peak RSS (sampled every 0.1 s), exit code, why it was stopped,
    and its JSON phase lines."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        began = time.perf_counter()
        process = subprocess.Popen(argv, stdout=out, stderr=err, cwd=ROOT, start_new_session=True)
        peak, stopped = 0, None
        while process.poll() is None:
            rss = tree_rss_bytes(process.pid)
            peak = max(peak, rss)
            if rss > cap_bytes:
                stopped = f"resident memory above the {cap_bytes / GIB:.1f} GiB cap"
            elif time.perf_counter() - began > timeout:
                stopped = f"still running after {timeout:.0f} s"
            if stopped:
                os.killpg(process.pid, 9)
                process.wait()
                break
            time.sleep(0.1)
        wall = time.perf_counter() - began
        out.seek(0)
        err.seek(0)
        phases = [json.loads(x) for x in out.read().decode(errors="replace").splitlines() if x.startswith("{")]
        tail = err.read().decode(errors="replace").strip().splitlines()[-3:]
    return {
        "wall_s": wall,
        "peak_rss_mib": peak / MIB,
        "returncode": process.returncode,
        "stopped": stopped,
        "phases": phases,
        "error": tail[-1] if process.returncode and not stopped and tail else None,
    }


# -- the run --------------------------------------------------------------------------------------


def _found(drifted: list[str]) -> dict[str, Any]:
    """Which shifted columns at or above the threshold were found, which below it were (not) found."""
    expected = {c for c in SHIFTS if exact_effect(c) >= THRESHOLD}
    return {
        "expected": sorted(expected),
        "missed": sorted(expected - set(drifted)),
        "below_threshold_found": sorted(set(drifted) & (set(SHIFTS) - expected)),
        "false_positives": sorted(set(drifted) - set(SHIFTS)),
    }


def run(params: Params | None = None) -> dict[str, Any]:
    """Run the benchmark; returns the result document (see the module docstring)."""
    from . import drift as small

    params = params or Params()
    machine = machine_info()
    data_dir = params.data_dir or Path.home() / ".cache" / "modelops" / "bench-drift-scale"
    data_dir.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"name": NAME, "machine": machine, "loadavg": {}}
    try:
        ref, cur = data_dir / "reference.parquet", data_dir / "current.parquet"
        log(f"driftscale: writing {params.rows:,} x 100 reference and current files into {data_dir}")
        began = time.perf_counter()
        sizes = [write_file(ref, params.rows, params.seed, False), write_file(cur, params.rows, params.seed + 1, True)]
        result["data"] = {"write_s": time.perf_counter() - began, "bytes": sizes, "dir": str(data_dir)}
        with tempfile.TemporaryDirectory(prefix="bench-driftscale-") as tmp:
            uri, model = small.prepare_store(Path(tmp), features=[*NUMERIC, *CATEGORICAL])
            log("driftscale: the drift job")
            result["loadavg"]["job_start"] = loadavg()
            job = small.run_job(uri, model, ref, cur, "bench-scale", params.job_timeout)
            result["loadavg"]["job_end"] = loadavg()
            job.update(_found(job["drifted"]))
            result["job"] = job
            log(f"driftscale: job {job['process_wall_s']:.0f} s, {job['peak_rss_mib']:.0f} MiB, {job['drifted']}")
        log("driftscale: power of the samples")
        began = time.perf_counter()
        result["power"] = power(ref, cur, params.power_sizes)
        result["power_s"] = time.perf_counter() - began
        if params.evidently:
            cap = int(params.evidently_cap_gib * GIB)
            runs = {}
            for label, rows in (("whole", None), ("first_rows", params.evidently_small_rows)):
                argv = [sys.executable, "-m", "benchmarks.drift_scale", "evidently", str(ref), str(cur)]
                argv += [str(rows)] if rows else []
                log(f"driftscale: Evidently DataDriftPreset ({label})")
                result["loadavg"][f"evidently_{label}_start"] = loadavg()
                runs[label] = run_capped(argv, cap, params.evidently_timeout)
                runs[label]["rows"] = rows or params.rows
                log(f"driftscale: Evidently {label}: {runs[label]}")
            result["evidently"] = runs
    finally:
        if not params.keep:
            for path in (data_dir / "reference.parquet", data_dir / "current.parquet"):
                path.unlink(missing_ok=True)
    result["params"] = {
        "rows": params.rows,
        "columns": {"numeric": len(NUMERIC), "categorical": len(CATEGORICAL)},
        "shifts": {c: [k, a, exact_effect(c)] for c, (k, a) in SHIFTS.items()},
        "null_share": NULL_SHARE,
        "max_rows": MAX_ROWS,
        "power_sizes": list(params.power_sizes),
        "evidently_cap_gib": params.evidently_cap_gib,
        "kept_files": params.keep,
    }
    result["targets"] = targets(result)
    return result


def targets(result: dict[str, Any]) -> list[Target]:
    """Issue 18's drift-at-scale targets."""
    job = result.get("job")
    if not job:
        return []
    rows = result["params"]["rows"]
    sampled = f"sampled to {job['rows_used']:,} rows" if job["sampled"] else "not sampled"
    found = len(job["expected"]) - len(job["missed"])
    return [
        Target(f"{rows:,} x 100: job wall time", job["process_wall_s"], "<=", 600, "s", "issue 18", sampled),
        Target(f"{rows:,} x 100: job peak RSS", job["peak_rss_mib"], "<=", 2048, "MiB", "issue 18"),
        Target(
            f"{rows:,} x 100: shifted columns at or above the threshold found, of {len(job['expected'])}",
            float(found),
            ">=",
            float(len(job["expected"])),
            "columns",
            "issue 18",
        ),
        Target(
            f"{rows:,} x 100: unshifted columns flagged", float(len(job["false_positives"])), "<=", 0, "", "issue 18"
        ),
    ]


def markdown(result: dict[str, Any]) -> str:
    """The drift-at-scale section of RESULTS.md."""
    p, job = result["params"], result.get("job", {})
    lines = [
        "## Drift at scale",
        "",
        f"{p['rows']:,} rows x 100 columns ({p['columns']['numeric']} numeric, {p['columns']['categorical']} "
        f"categorical, {100 * p['null_share']:.0f} % nulls in every fifth column) in each of two Parquet files "
        f"on local disk ({', '.join(f'{b / GIB:.1f} GiB' for b in result['data']['bytes'])}, written in "
        f"{result['data']['write_s']:.0f} s); {len(p['shifts'])} columns shifted by graded amounts. "
        "Load average (1 min): " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in result["loadavg"].items()) + ".",
        "",
    ]
    if job:
        phases = ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in job.get("phases", {}).items())
        lines += [
            "| | wall s | peak RSS MiB | CPU s | rows compared per file | found | missed | false positives |",
            "|---|---|---|---|---|---|---|---|",
            f"| `modelops-runtime drift` (defaults) | {job['process_wall_s']:.0f} | {job['peak_rss_mib']:.0f} | "
            f"{job['cpu_s']:.0f} | {job['rows_used']:,} of {job['rows']:,} | "
            f"{len(job['expected']) - len(job['missed'])}/{len(job['expected'])} | "
            f"{', '.join(job['missed']) or 'none'} | "
            f"{', '.join(job['false_positives']) or 'none'} |",
            "",
            f"Job phases (from its log): {phases}. Shifts below the threshold it flagged: "
            f"{', '.join(job['below_threshold_found']) or 'none'}.",
        ]
    power_ = result.get("power")
    if power_:
        sizes = list(power_)
        lines += [
            "",
            "Power: each shifted column's score (normed Wasserstein for `location`, Jensen-Shannon for `mix`; "
            f"drift at >= {THRESHOLD}) on uniform samples of each size, against the exact effect; "
            "**bold** = flagged.",
            "",
            "| column | shift | exact effect | " + " | ".join(f"{int(s):,} rows" for s in sizes) + " |",
            "|---|---|---|" + "---|" * len(sizes),
        ]
        for col, (kind, amount, effect) in p["shifts"].items():
            cells = []
            for size in sizes:
                entry = power_[size].get(col, {})
                score = entry.get("score")
                text = "-" if score is None else f"{score:.3f}"
                cells.append(f"**{text}**" if entry.get("drifted") else text)
            lines.append(f"| {col} | {kind} {amount:g} | {effect:.3f} | " + " | ".join(cells) + " |")
        for col in ("num_01", "cat_01"):
            cells = [f"{power_[s].get(col, {}).get('score') or 0:.4f}" for s in sizes]
            lines.append(f"| {col} | none | 0 | " + " | ".join(cells) + " |")
        smallest = ", ".join(
            f"{int(s):,} rows: location {smallest_found(power_[s], 'location')}, mix {smallest_found(power_[s], 'mix')}"
            for s in sizes
        )
        lines += ["", f"Smallest shift found per sample size: {smallest}."]
    ev = result.get("evidently")
    if ev:
        lines += [
            "",
            f"Evidently `DataDriftPreset` (`pandas.read_parquet`, then `Report.run`; resident memory capped at "
            f"{p['evidently_cap_gib']:g} GiB, killed above it):",
            "",
            "| input rows per file | outcome | last phase reached | wall s | peak RSS MiB | drifted found |",
            "|---|---|---|---|---|---|",
        ]
        for run_ in ev.values():
            last: dict[str, Any] = run_["phases"][-1] if run_["phases"] else {"phase": "start"}
            outcome = run_["stopped"] or run_["error"] or ("finished" if run_["returncode"] == 0 else "failed")
            drifted = last.get("drifted")
            found = "-" if drifted is None else f"{len(_found(drifted)['expected']) - len(_found(drifted)['missed'])}"
            phases = ", ".join(f"{x['phase']} {x['s']:.0f} s" for x in run_["phases"])
            lines.append(
                f"| {run_['rows']:,} | {outcome} | {phases or 'none'} | {run_['wall_s']:.0f} | "
                f"{run_['peak_rss_mib']:.0f} | {found} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m benchmarks.drift_scale [--rows N] [--keep] [--no-evidently]``; ``evidently`` is internal."""
    args = sys.argv[1:] if argv is None else argv
    if args[:1] == ["evidently"]:
        evidently_worker(args[1], args[2], int(args[3]) if len(args) > 3 else None)
        return 0
    parser = argparse.ArgumentParser(prog="python -m benchmarks.drift_scale", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--rows", type=int)
    parser.add_argument("--keep", action="store_true", help="keep the Parquet files")
    parser.add_argument("--no-evidently", action="store_true")
    parser.add_argument("--data-dir", type=Path)
    ns = parser.parse_args(args)
    params = Params.quick() if ns.quick else Params()
    if ns.rows:
        params.rows = ns.rows
    params.keep = ns.keep
    params.evidently = params.evidently and not ns.no_evidently
    params.data_dir = ns.data_dir
    print(write_result(NAME, run(params)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
