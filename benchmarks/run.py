"""Run the benchmarks: ``python -m benchmarks.run [--quick] [--only NAME ...]`` (``make bench``).

Each benchmark writes ``benchmarks/results/<name>.json`` as soon as it finishes; a benchmark
that fails records its error there and the others still run (exit status 1). RESULTS.md is
regenerated at the end from every JSON present, so ``--only serving`` refreshes the serving
section and keeps the others.

Default sizes are the issues' (about an hour and a half on a 2-core machine, most of it the
operator's 1,000-ModelVersion scale run, bounded at 20 minutes, its resync, bounded at 10, and its
10-minute soak, and the drift job on 10,000,000 x 100 rows with Evidently beside it, 30 to 60
minutes, ~14 GB of Parquet under ``~/.cache/modelops`` while it runs; the serving peers' virtual
environments are created once under ``~/.cache/modelops/bench-venvs``); ``--quick`` shortens
repeats and durations, runs the operator at 500 ModelVersions with shorter bounds, skips the soak
and runs the drift job on 1,000,000 rows (up to about 40 minutes). ``--control-plane real`` runs the
operator benchmark on the real control plane instead of the API emulator; ``controlplane``
compares the two (start times and the operator latency phases, both in the same run; about 15
minutes; the real one only where its binaries are built). ``--baseline REV`` makes
``rollout_shadow`` also measure the runtime of git revision ``REV`` in the same rounds (before/after).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from . import report
from .common import RESULTS_DIR, log, machine_info, write_result

NAMES = ("serving", "serving_scale", "drift", "driftscale", "training", "operator", "controlplane", "rollout_shadow")


def _module(name: str) -> Any:
    from . import controlplane, drift, drift_scale, operator, rollout_shadow, serving, serving_scale, training

    modules = {"serving": serving, "serving_scale": serving_scale, "drift": drift, "driftscale": drift_scale}
    modules |= {"training": training, "operator": operator}
    return {**modules, "controlplane": controlplane, "rollout_shadow": rollout_shadow}[name]


def run_one(
    name: str, quick: bool, out_dir: Path, control_plane: str | None = None, baseline: str | None = None
) -> bool:
    """Run benchmark ``name`` and write its JSON; returns False when it failed.

    ``control_plane`` (``real`` or ``emulator``) is the sandbox's API server for the benchmarks that
    run one sandbox (the operator's); None keeps each benchmark's default. ``baseline``: a git
    revision for the benchmarks that compare with one (``rollout_shadow``).
    """
    module = _module(name)
    params = module.Params.quick() if quick else module.Params()
    if control_plane is not None and hasattr(params, "control_plane"):
        params.control_plane = control_plane
    if baseline is not None and hasattr(params, "baseline"):
        params.baseline = baseline
    began = time.monotonic()
    log(f"=== {name} ({'quick' if quick else 'full'}) ===")
    ok = True
    try:
        result = module.run(params)
    except Exception as exc:  # noqa: BLE001  (process boundary: a failed benchmark is recorded, the others run)
        traceback.print_exc()
        result = {"name": name, "machine": machine_info(), "error": f"{type(exc).__name__}: {exc}"}
        ok = False
    result["duration_s"] = time.monotonic() - began
    result["loadavg_end"] = round(os.getloadavg()[0], 2)
    result["mode"] = "quick" if quick else "full"
    path = write_result(name, result, out_dir)
    log(f"{name}: {path} ({result['duration_s']:.0f} s)")
    return ok


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns 0 when every selected benchmark ran."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter runs (see the module docstring)")
    parser.add_argument("--only", nargs="+", choices=NAMES, help="run only these benchmarks")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="directory of the JSON results")
    parser.add_argument("--no-report", action="store_true", help="do not regenerate RESULTS.md")
    parser.add_argument(
        "--control-plane", choices=("real", "emulator"), help="the operator benchmark's sandbox API server (emulator)"
    )
    parser.add_argument("--baseline", help="rollout_shadow: also measure the runtime of this git revision")
    ns = parser.parse_args(argv)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    results = [run_one(name, ns.quick, ns.out, ns.control_plane, ns.baseline) for name in (ns.only or NAMES)]
    if not ns.no_report:
        target = report.RESULTS_MD if ns.out.resolve() == RESULTS_DIR.resolve() else ns.out / "RESULTS.md"
        log(f"report: {report.write(ns.out, target)}")
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
