"""Each benchmark runs on tiny sizes and produces a complete result; no timing is asserted.

The fast checks (load generator, the scipy drift baseline against the library) run in the unit
suite; the ones that start servers, jobs or the sandbox are marked ``e2e``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from benchmarks import (
    controlplane,
    drift,
    drift_scale,
    loadgen,
    operator,
    peers,
    report,
    rollout_shadow,
    run,
    serving,
    serving_scale,
    training,
)


def _complete_targets(result: dict[str, Any]) -> None:
    assert result["targets"], "no target was evaluated"
    for target in result["targets"]:
        assert target.value is not None, target.name  # measured (whatever the value)


def test_python_load_generator_against_the_fixed_response_server() -> None:
    body = b'{"dataframe_split": {"columns": ["a"], "data": [[1.0]]}}'
    result = loadgen.ceiling("python", body, "application/json", connections=2, duration=0.3)
    assert result.generator == "python"
    assert result.requests > 0 and result.errors == 0
    assert result.p50_ms is not None and result.p99_ms is not None


def test_open_loop_counts_the_wait_of_requests_due_while_the_server_stalls() -> None:
    """At 10 req/s for 0.5 s, 5 requests are due (at 0, 0.1, ... 0.4 s). The server holds its first
    answer for 0.5 s, so on one connection requests 1-4 are sent late and each latency runs from its
    due time: at least 0.5, 0.4, 0.3, 0.2 and 0.1 s (a closed loop would report them as fast)."""
    import asyncio

    async def scenario() -> dict[str, Any]:
        answered = 0

        async def stall_first(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            nonlocal answered
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = next(
                        int(x.split(b":")[1]) for x in head.split(b"\r\n") if x.lower().startswith(b"content-length")
                    )
                    await reader.readexactly(length)
                    if answered == 0:
                        await asyncio.sleep(0.5)
                    answered += 1
                    writer.write(loadgen._ECHO_RESPONSE)
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(stall_first, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        async with server:
            url = f"http://127.0.0.1:{port}/invocations"
            return await loadgen.load(url, b"{}", "application/json", 1, 0.5, 10.0, rate=10.0)

    result = asyncio.run(scenario())
    assert (result["requests"], result["errors"], result["rate"]) == (5, 0, 10.0)
    assert result["late"] >= 4  # requests 1-4 (request 0 too if the client itself woke up late)
    assert result["max_ms"] >= 500 and result["p50_ms"] >= 300
    assert result["lag_p99_ms"] >= 300  # request 4 went out 0.1 s late or more, request 1 0.4 s


def test_rollout_shadow_places_incumbent_and_candidate_on_different_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks.common import Placement

    params = rollout_shadow.Params(candidate_nice=10, priority=-5)

    def cpus(where: dict[str, Placement]) -> dict[str, frozenset[int] | None]:
        return {who: p.cpus for who, p in where.items()}

    monkeypatch.setattr(rollout_shadow.os, "geteuid", lambda: 0)
    monkeypatch.setattr(rollout_shadow.os, "sched_getaffinity", lambda pid: {0, 1})
    where = rollout_shadow.placements(params)
    # The candidate alone on its core (its work must not delay the client's sends); the client beside
    # the incumbents on a machine without a third core.
    assert cpus(where) == {"incumbent": {0}, "candidate": {1}, "loadgen": {0}, "sender": {0}}
    assert {who: p.nice for who, p in where.items()} == {"incumbent": -5, "candidate": 10, "loadgen": -5, "sender": -5}
    monkeypatch.setattr(rollout_shadow.os, "sched_getaffinity", lambda pid: {2, 5, 7, 9})
    expected = {"incumbent": {2}, "candidate": {5}, "loadgen": {7}, "sender": {2}}
    assert cpus(rollout_shadow.placements(params)) == expected
    params.sender_apart = True  # a pod with CPU to spare: the sender on a core of its own
    assert cpus(rollout_shadow.placements(params))["sender"] == {9}
    assert rollout_shadow.placements(params)["sender"].nice == 10
    params.client_with_candidate = True
    assert cpus(rollout_shadow.placements(params))["loadgen"] == {5}
    monkeypatch.setattr(rollout_shadow.os, "sched_getaffinity", lambda pid: {3})
    assert set(cpus(rollout_shadow.placements(params)).values()) == {None}
    monkeypatch.setattr(rollout_shadow.os, "geteuid", lambda: 1000)  # no negative niceness without root
    assert rollout_shadow.placements(params)["incumbent"].nice is None


def test_rollout_shadow_exports_the_runtime_of_a_baseline_revision(tmp_path: Path) -> None:
    runtime = rollout_shadow.export_runtime("HEAD", tmp_path / "baseline")
    assert (runtime / "modelops_runtime" / "serve" / "router.py").is_file()
    with pytest.raises(RuntimeError, match="no-such-revision"):
        rollout_shadow.export_runtime("no-such-revision", tmp_path / "missing")


def test_scipy_baseline_computes_the_same_tests_as_the_library() -> None:
    from modelops.monitoring.drift import detect_drift

    reference = drift.make_frame(3000, seed=1, shifted=False)
    current = drift.make_frame(3000, seed=2, shifted=True)
    columns = [*drift.NUMERIC, *drift.CATEGORICAL]
    ours = detect_drift(reference, current, columns=columns)
    baseline = drift.scipy_drift(reference, current, columns)
    for col in ours.columns:
        assert col.stattest == baseline[col.name]["test"], col.name
        assert col.score == pytest.approx(baseline[col.name]["score"], rel=1e-9, abs=1e-12), col.name
        assert col.drifted == baseline[col.name]["drifted"], col.name
    assert set(ours.drifted_columns) == set(drift.SHIFTED)


@pytest.mark.parametrize("protocol", ["v2", "v1", "bento", "invocations"])
def test_peer_request_bodies_carry_the_frame_rows(protocol: str) -> None:
    """Each peer's body holds the frame's rows in column order (what its minimal predictor turns into
    the 2-D array the pipeline was fitted on)."""
    frame = serving.feature_frame().head(3)
    body = json.loads(peers.request_body(protocol, frame))
    if protocol == "v2":
        (tensor,) = body["inputs"]
        assert tensor["shape"] == [3, 30] and tensor["datatype"] == "FP64"
        rows = [tensor["data"][i * 30 : (i + 1) * 30] for i in range(3)]
    elif protocol == "invocations":
        assert body["dataframe_split"]["columns"] == list(frame.columns)
        rows = body["dataframe_split"]["data"]
    else:
        rows = body["instances"]
    assert rows == frame.to_numpy().tolist()
    answer = {"outputs": [{"data": [1, 0]}]} if protocol == "v2" else {"predictions": [1, 0]}
    assert peers.predictions(protocol, answer) == [1, 0]


def test_peer_environments_live_outside_the_repository() -> None:
    from benchmarks.common import ROOT

    for peer in peers.peers().values():
        where = peers.venv_dir(peer)
        assert ROOT not in where.parents and peer.name in where.name
        assert any(r.startswith("scikit-learn==") for r in peer.requirements)  # the pickle's version


def test_drift_scale_data_shifts_by_the_stated_effect() -> None:
    """The generator's shifted columns score their exact effect (within sampling noise) and the
    unshifted ones about 0, with the library's default tests: the benchmark's ground truth."""
    import numpy as np

    from modelops.monitoring.drift import detect_drift

    rows = 100_000
    reference = drift_scale._chunk(np.random.default_rng(1), rows, shifted=False).to_pandas()
    current = drift_scale._chunk(np.random.default_rng(2), rows, shifted=True).to_pandas()
    columns = [*drift_scale.SHIFTS, "num_01", "num_02", "cat_01"]
    result = detect_drift(reference, current, columns=columns)
    for col in result.columns:
        expected = drift_scale.exact_effect(col.name)
        assert col.score == pytest.approx(expected, abs=0.02), col.name
    assert reference["num_05"].isna().mean() == pytest.approx(drift_scale.NULL_SHARE, abs=0.005)


@pytest.mark.e2e
def test_drift_scale_benchmark_runs_on_tiny_sizes(tmp_path: Path) -> None:
    params = drift_scale.Params.tiny()
    params.data_dir = tmp_path
    result = drift_scale.run(params)
    job = result["job"]
    clear = {c for c in drift_scale.SHIFTS if drift_scale.exact_effect(c) >= 0.15}  # well above the noise of 20k rows
    assert clear <= set(job["drifted"]) and job["false_positives"] == []
    assert set(result["power"]) == {str(s) for s in params.power_sizes}
    assert not list(tmp_path.glob("*.parquet"))  # the data is deleted at the end
    _complete_targets(result)
    assert "## Drift at scale" in drift_scale.markdown(result)


@pytest.mark.e2e
def test_serving_benchmark_runs_on_tiny_sizes() -> None:
    result = serving.run(serving.Params.tiny())
    servers = {(c["server"], c["rows"]) for c in result["cells"]}
    assert servers == {(s, r) for s in (serving.OURS, serving.MLFLOW) for r in serving.ROWS}
    assert all(c["errors"] == 0 and c["rps"] > 0 for c in result["cells"])
    assert result["servers"]["logistic_regression"][serving.OURS]["prediction_log_rows"]["written"] > 0
    _complete_targets(result)
    assert "## Serving" in serving.markdown(json.loads(json.dumps(result, default=vars)))


@pytest.mark.e2e
def test_serving_scale_benchmark_runs_on_tiny_sizes() -> None:
    result = serving_scale.run(serving_scale.Params.tiny())
    for part, labels in (
        ("workers", {serving_scale.ONE, serving_scale.TWO}),
        ("batching", {serving_scale.UNBATCHED, serving_scale.BATCHED}),
    ):
        assert set(result[part]) == labels
        assert all(s["errors"] == 0 and s["rps"] > 0 for s in result[part].values())
    assert result["batching"][serving_scale.BATCHED]["mean_batch_rows"] >= 1
    _complete_targets(result)
    assert "## Serving: workers" in serving_scale.markdown(json.loads(json.dumps(result, default=vars)))


@pytest.mark.e2e
def test_run_cli_writes_json_and_results_md(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``python -m benchmarks.run --quick --only drift`` with tiny drift sizes, into a temporary directory."""
    monkeypatch.setattr(drift.Params, "quick", classmethod(lambda cls: cls.tiny()))
    assert run.main(["--quick", "--only", "drift", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "drift.json").read_text())
    variants = result["sizes"][str(drift.Params.tiny().rows)]["variants"]
    for variant in ("library", "scipy", "job"):
        assert variants[variant]["shifted_missed"] == [], variant
        assert variants[variant]["peak_rss_mib"] > 0
    assert all(t["value"] is not None for t in result["targets"])
    text = (tmp_path / "RESULTS.md").read_text()
    assert "## Drift" in text and "## Targets" in text and report.NOTES_MARKER in text


@pytest.mark.e2e
def test_training_benchmark_runs_on_tiny_sizes() -> None:
    result = training.run(training.Params.tiny())
    (config,) = result["configs"].values()
    assert config["jobs"][0]["registered_version"]
    assert config["bare_fit_evaluate_s"] > 0
    assert config["imports_s"] > 0 and config["log_model_s"] > 0  # both read from the job's log
    _complete_targets(result)
    assert "## Training overhead" in training.markdown(result)


@pytest.mark.e2e
def test_operator_benchmark_runs_on_tiny_sizes() -> None:
    params = operator.Params.tiny()
    result = operator.run(params)
    assert result["baseline"]["create_to_job"]["n"] == params.count
    assert result["latency"]["create_to_registered"]["n"] == params.count
    assert result["resync"]["count"] == params.scale
    assert result["soak"]["spec_updates"] > 0
    _complete_targets(result)
    assert "## Operator (sandbox)" in operator.markdown(json.loads(json.dumps(result, default=vars)))


@pytest.mark.e2e
def test_controlplane_benchmark_runs_on_tiny_sizes() -> None:
    """Both control planes where the real one's binaries are built; the emulator alone otherwise."""
    params = controlplane.Params.tiny()
    result = controlplane.run(params)
    measured = result["params"]["control_planes"]
    assert measured == [cp for cp in controlplane.CONTROL_PLANES if cp not in result["skipped"]]
    assert "emulator" in measured
    for cp in measured:
        start = result["start"][cp]
        assert start["bare_up_s"] > 0 and start["full_up_s"] > 0 and start["operator_start_s"] > 0
        assert start["rss_mib"]["kubelet"] > 0
        latency = result["latency"][cp]
        assert latency["baseline"]["create_to_job"]["n"] == params.count
        assert latency["latency"]["create_to_job"]["n"] == params.count
        assert latency["latency"]["create_to_registered"]["n"] == params.count
    if "real" in measured:
        assert result["start"]["real"]["steps"]["of which install (kubectl: CRDs, RBAC, token)"] > 0
        assert result["ratios"]["real / emulator ours p99"] is not None
    assert "## Control planes" in controlplane.markdown(json.loads(json.dumps(result, default=vars)))


@pytest.mark.e2e
def test_rollout_shadow_benchmark_runs_on_tiny_sizes() -> None:
    result = rollout_shadow.run(rollout_shadow.Params.tiny())
    for mode in ("saturated", "fixed_rate"):
        cells = result[mode]["cells"]
        assert set(cells) == {"without", rollout_shadow.CONTROL, "shadow 0.5"}
        assert all(c["errors"] == 0 and c["rps"] > 0 and c["server_cpu_ms_per_request"] for c in cells.values())
        assert result[mode]["ratios"]["shadow 0.5"]["p99"]["median"] is not None
    assert result["fixed_rate"]["rate"] > 0
    # each fixed-rate repeat pools its slices (the incumbents took turns twice)
    assert all(r["rate"] == result["fixed_rate"]["rate"] for r in result["fixed_rate"]["runs"]["without"])
    assert all(r["slices"] == 2 and "latencies_ms" not in r for r in result["fixed_rate"]["runs"]["shadow 0.5"])
    # The control incumbent's candidate got the outside client's requests (fixed rate only).
    # The pod's CPU split: the sender's part only where there is a sender.
    (plain,), (shadowed,) = (result["fixed_rate"]["runs"][k] for k in ("without", "shadow 0.5"))
    assert plain["sender_cpu_s"] == 0 and plain["serving_cpu_ms_per_request"] == plain["server_cpu_ms_per_request"]
    assert shadowed["sender_cpu_s"] > 0
    assert shadowed["serving_cpu_ms_per_request"] < shadowed["server_cpu_ms_per_request"]
    (control,) = result["fixed_rate"]["runs"][rollout_shadow.CONTROL]
    assert control["outside_requests"] > 0 and control["outside_errors"] == 0
    # Every copy the router took in a mode is counted in that mode (sent, dropped or failed), also those
    # still in the sender when a slice's load ended: the router takes exactly every other request at 0.5
    # (Share), less the requests a client cut at a slice's end (at most one per connection).
    params = rollout_shadow.Params.tiny()
    for mode, cut in (("saturated", 1), ("fixed_rate", params.slices * params.open_connections)):
        share = result["shares"][mode]["0.5"]
        copies = share["sent"] + share["dropped"] + share["failed"]
        assert share["answered"] > 0 and abs(copies - share["answered"] / 2) <= cut + 1, (mode, share)
    _complete_targets(result)
    assert "## Rollout shadow" in rollout_shadow.markdown(json.loads(json.dumps(result, default=vars)))
