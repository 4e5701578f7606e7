"""The rollout router of the model server (serve/router.py): exact shares, shadow off the request
path, canary answers from the candidate with the incumbent as fallback, candidate rows in the log."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sklearn.base import clone

from modelops.contract import HEADER_ROUTED, RouterConfig, candidate_log_stage
from modelops.monitoring.prediction_log import read_prediction_log
from modelops_runtime.serve.router import Share
from modelops_runtime.serve.service import REQUEST_ID_HEADER

from .serve_support import (
    LIVENESS_SECONDS,
    Registered,
    Running,
    Store,
    config_for,
    metric,
    register,
    serving,
    use_store,
    v2_columns,
    wait_for_log,
)

# LIVENESS_SECONDS is also the time a candidate has to answer, and the wait for the shadow sender, in
# tests not about either: the sender runs at SCHED_IDLE, so on a machine whose CPUs other processes
# keep busy it gets almost no CPU (the product drops copies rather than delay clients); with one busy
# process on the test's CPU, 20 copies took more than 10 s, and a copy's exchange can outlast the
# default 5 s timeout.
#: A shadow setting whose candidate never answers (loopback's discard port, closed).
DOWN = RouterConfig(
    mode="shadow", url="http://127.0.0.1:9", version="2.0.0", registry_version="2", timeout_seconds=LIVENESS_SECONDS
)


@pytest.mark.parametrize("rate", [0.01, 0.1, 0.25, 0.333, 0.5, 0.9, 1.0])
def test_share_is_exact_in_every_hundred_calls(rate: float) -> None:
    share = Share(rate)
    taken = [share.take() for _ in range(100_000)]
    assert sum(taken) == round(rate * 100_000)
    if rate in (0.1, 0.25, 0.5):  # whole percents: exact in every window of 100 consecutive calls
        assert {sum(taken[i : i + 100]) for i in range(0, 100_000, 100)} == {round(rate * 100)}


@pytest.fixture(scope="module")
def shuffled(store: Store) -> Registered:
    """A second version of breast-cancer, trained on shuffled labels (a bad candidate)."""
    use_store(store)
    X, estimator = store.bc.X, store.bc.estimator
    y = estimator.predict(X)
    rng = np.random.default_rng(0)
    return register(store.bc.name, clone(estimator).fit(X, rng.permutation(y)), X)


@pytest.fixture(scope="module")
def candidate(store: Store, shuffled: Registered) -> Iterator[Running]:
    use_store(store)
    with serving(config_for(shuffled, version="2.0.0")) as running:
        running.wait_ready()
        yield running


def router_for(candidate_url: str, shuffled: Registered, **kwargs: Any) -> RouterConfig:
    kwargs.setdefault("timeout_seconds", LIVENESS_SECONDS)
    return RouterConfig(url=candidate_url, version="2.0.0", registry_version=shuffled.version, **kwargs)


def infer(running: Running, store: Store, i: int) -> Any:
    body = {"id": f"req-{i}", "inputs": v2_columns(store.bc.X.iloc[[i]])}
    return running.client.post(f"/v2/models/{store.bc.name}/infer", json=body)


@contextmanager
def routed(store: Store, router: RouterConfig, log: str | None = None) -> Iterator[Running]:
    """The incumbent (breast-cancer 1.0.0) with ``router``, ready; its log under ``store.root/<log>``."""
    use_store(store)
    base = str(store.root / log) if log else None
    with serving(config_for(store.bc, log_flush_seconds=0.2), log_uri=base, router=router) as incumbent:
        incumbent.wait_ready()
        yield incumbent


def test_shadow_copies_the_sampled_share_and_answers_with_the_incumbent(
    store: Store, shuffled: Registered, candidate: Running
) -> None:
    base = str(store.root / "shadow-log")
    with routed(store, router_for(candidate.url, shuffled, mode="shadow", sample_rate=0.5), "shadow-log") as incumbent:
        responses = [infer(incumbent, store, i) for i in range(40)]
        assert [r.status_code for r in responses] == [200] * 40
        assert {r.json()["model_version"] for r in responses} == {"1.0.0"}

        def copies(frame: Any) -> bool:
            return len(frame) == 20

        shadow_rows = wait_for_log(store, store.bc.name, candidate_log_stage("Production"), copies, base=base)
        assert metric(incumbent, "modelops_router_requests_total", route="shadow", outcome="sent") == 20
        agree = metric(incumbent, "modelops_router_shadow_rows_total", result="agree")
        disagree = metric(incumbent, "modelops_router_shadow_rows_total", result="disagree")
    own = read_prediction_log(base, store.bc.name, "Production", datetime.now(UTC) - timedelta(hours=1))
    assert len(own) == 40 and set(own["model_version"]) == {"1.0.0"}
    # Every other request, with the incumbent's request ids, the candidate's version and predictions.
    assert sorted(shadow_rows["request_id"]) == sorted(f"req-{i}" for i in range(1, 40, 2))
    assert set(shadow_rows["model_version"]) == {"2.0.0"} and set(shadow_rows["status"]) == {"ok"}
    joined = shadow_rows.merge(own, on="request_id", suffixes=("_c", "_i"))
    same = int((joined["prediction_c"].astype(str) == joined["prediction_i"].astype(str)).sum())
    assert (agree, disagree) == (same, 20 - same)
    assert "feature.mean radius" in shadow_rows.columns


def test_canary_answers_the_exact_weight_from_the_candidate(
    store: Store, shuffled: Registered, candidate: Running
) -> None:
    base = str(store.root / "canary-log")
    with routed(store, router_for(candidate.url, shuffled, mode="canary", weight=30), "canary-log") as incumbent:
        responses = [infer(incumbent, store, i) for i in range(50)]
        assert [r.status_code for r in responses] == [200] * 50
        versions = [r.json()["model_version"] for r in responses]
        assert versions.count("2.0.0") == 15 and versions.count("1.0.0") == 35
        assert all(r.headers["x-request-id"] == f"req-{i}" for i, r in enumerate(responses))
        assert metric(incumbent, "modelops_router_requests_total", route="canary", outcome="answered") == 15
    rows = read_prediction_log(
        base, store.bc.name, candidate_log_stage("Production"), datetime.now(UTC) - timedelta(hours=1)
    )
    own = read_prediction_log(base, store.bc.name, "Production", datetime.now(UTC) - timedelta(hours=1))
    answered = {f"req-{i}" for i, v in enumerate(versions) if v == "2.0.0"}
    assert set(rows["request_id"]) == answered and set(rows["status"]) == {"ok"}
    assert set(own["request_id"]).isdisjoint(answered) and len(own) == 35


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_canary_falls_back_to_the_incumbent_when_the_candidate_is_down(store: Store, shuffled: Registered) -> None:
    base = str(store.root / "fallback-log")
    router = router_for(f"http://127.0.0.1:{closed_port()}", shuffled, mode="canary", weight=50)
    with routed(store, router, "fallback-log") as incumbent:
        responses = [infer(incumbent, store, i) for i in range(10)]
        assert [r.status_code for r in responses] == [200] * 10
        assert {r.json()["model_version"] for r in responses} == {"1.0.0"}
        assert metric(incumbent, "modelops_router_requests_total", route="canary", outcome="fallback") == 5
    rows = read_prediction_log(
        base, store.bc.name, candidate_log_stage("Production"), datetime.now(UTC) - timedelta(hours=1)
    )
    assert len(rows) == 5 and set(rows["status"]) == {"error"} and rows["prediction"].isna().all()


def test_a_candidate_that_never_answers_does_not_hold_shadowed_requests(store: Store, shuffled: Registered) -> None:
    """One sender, a queue of one, a candidate that accepts connections and never answers: the
    client's requests are all answered while the copies beyond the queue are dropped."""
    use_store(store)
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        router = router_for(url, shuffled, mode="shadow", queue_size=1, concurrency=1, timeout_seconds=30)
        with routed(store, router) as incumbent:
            responses = [infer(incumbent, store, i) for i in range(10)]
            assert [r.status_code for r in responses] == [200] * 10
            # one copy in flight, one queued, the other eight dropped
            assert metric(incumbent, "modelops_router_requests_total", route="shadow", outcome="dropped") == 8


def test_invalid_requests_never_reach_the_candidate(store: Store, shuffled: Registered, candidate: Running) -> None:
    with routed(store, router_for(candidate.url, shuffled, mode="canary", weight=99)) as incumbent:
        response = incumbent.client.post(f"/v2/models/{store.bc.name}/infer", json={"inputs": []})
        assert response.status_code == 400
        assert metric(incumbent, "modelops_router_requests_total", route="canary", outcome="answered") == 0


def test_a_request_id_with_control_characters_reaches_the_candidate_percent_encoded(
    store: Store, shuffled: Registered, candidate: Running
) -> None:
    """A V2 body's ``id`` may hold any character, CR/LF included; an HTTP client refuses such a header
    value. The candidate gets it percent-encoded as the incumbent's own response header does, so the
    canary request is answered by the candidate (not a 500) with the id the incumbent would send."""
    with routed(store, router_for(candidate.url, shuffled, mode="canary", weight=100)) as incumbent:
        body = {"id": "a\r\nb", "inputs": v2_columns(store.bc.X.iloc[[0]])}
        response = incumbent.client.post(f"/v2/models/{store.bc.name}/infer", json=body)
        assert response.status_code == 200 and response.json()["model_version"] == "2.0.0"
        assert response.headers["x-request-id"] == "a%0D%0Ab"
        assert metric(incumbent, "modelops_router_requests_total", route="canary", outcome="answered") == 1


@contextmanager
def answering(answers: list[bytes], delay: float = 0.0) -> Iterator[tuple[str, list[Any]]]:
    """A candidate on loopback (aiohttp.web, in a thread) that answers each POST with the next of
    ``answers`` (200) after ``delay`` s; yields its URL and the headers of the requests it received
    (case-insensitive), appended when each request arrives."""
    import asyncio
    import threading

    from aiohttp import web

    pending, received = iter(answers), []
    ready, stop = threading.Event(), threading.Event()
    found: dict[str, str] = {}

    async def answer(request: web.Request) -> web.Response:
        received.append(request.headers.copy())
        await asyncio.sleep(delay)
        return web.Response(body=next(pending), content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_post("/{tail:.*}", answer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        found["url"] = f"http://127.0.0.1:{runner.addresses[0][1]}"
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.02)
        await runner.cleanup()

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(10), "the candidate did not start"
    try:
        yield found["url"], received
    finally:
        stop.set()
        thread.join(10)


@asynccontextmanager
async def shadowing(answers: list[bytes], delay: float = 0.0, **kwargs: Any) -> AsyncIterator[tuple[Any, list[Any]]]:
    """A shadow router (no log) started against :func:`answering`'s candidate; yields it and the
    candidate's received headers; stops it on exit."""
    from prometheus_client import CollectorRegistry

    from modelops_runtime.serve.router import Router

    with answering(answers, delay) as (url, received):
        kwargs.setdefault("timeout_seconds", LIVENESS_SECONDS)
        config = RouterConfig(mode="shadow", url=url, version="2.0.0", registry_version="2", **kwargs)
        router = Router(config, CollectorRegistry(), None)
        await router.start()
        try:
            yield router, received
        finally:
            await router.stop()


async def _shadow(router: Any, request_id: str, incumbent: tuple[Any, ...] | np.ndarray = (1, 1, 1)) -> None:
    """Hand the router an answered request of ``len(incumbent)`` rows, as the server's background task does."""
    from types import SimpleNamespace

    job = SimpleNamespace(request_id=request_id, batch=SimpleNamespace(n_rows=len(incumbent)))
    result = SimpleNamespace(forwarded=False, prediction=SimpleNamespace(predict=np.array(incumbent)))
    assert router.copies(result)
    await router.shadow(job, b"{}", "/invocations", {"content-type": "application/json"}, result)


def _count(router: Any, outcome: str) -> float:
    return float(router.requests.labels("shadow", outcome)._value.get())


async def _until(check: Any, what: str, seconds: float = LIVENESS_SECONDS) -> None:
    import asyncio

    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"not within {seconds} s: {what}"
        await asyncio.sleep(0.02)


async def test_shadow_rows_without_readable_predictions_are_neither_agreement_nor_disagreement() -> None:
    """A candidate answering rows it gives no readable prediction for (binary tensor data, a null) is
    counted as answered, but those rows are not compared: they must not count as disagreement."""
    answers = [b'{"outputs": [{"name": "predict", "data": [1, null, 0]}]}', b"\x00\x01"]
    async with shadowing(answers, concurrency=1) as (router, received):
        for request_id in ("a", "b"):
            await _shadow(router, request_id)
        await _until(lambda: _count(router, "sent") == 2, "both copies answered")
    assert router.rows.labels("agree")._value.get() == 1  # row 0 of "a"
    assert router.rows.labels("disagree")._value.get() == 1  # row 2 of "a"; its null row and all of "b": not compared
    # The candidate saw the incumbent's request id, the route and the client's content type.
    assert [(h[REQUEST_ID_HEADER], h[HEADER_ROUTED], h["content-type"]) for h in received] == [
        ("a", "shadow", "application/json"),
        ("b", "shadow", "application/json"),
    ]


async def test_a_shadow_copy_with_control_characters_in_its_request_id_is_sent() -> None:
    """A request id the HTTP client cannot send as a header (a V2 body's ``id`` with a newline) is
    sent percent-encoded; the copy is not counted as the candidate's failure."""
    async with shadowing([b'{"predictions": [1, 1, 1]}']) as (router, received):
        await _shadow(router, "a\nb")
        await _until(lambda: _count(router, "sent") + _count(router, "failed") == 1, "the copy's outcome")
    assert (_count(router, "sent"), _count(router, "failed")) == (1, 0)
    assert [h[REQUEST_ID_HEADER] for h in received] == ["a%0Ab"]


async def test_incumbent_predictions_of_any_type_its_response_encodes_are_compared() -> None:
    """The incumbent's predictions go to the sender encoded as its own response encodes them (numpy
    values in object arrays: datetimes as ISO text, arrays as lists), so they compare with the
    candidate's answer of the same model, and handing the copy over never raises."""
    dates = np.array([np.datetime64("2026-01-01T00:00:00"), np.datetime64("2026-01-02T00:00:00")], dtype=object)
    lists = np.empty(2, dtype=object)
    lists[0], lists[1] = np.array([1, 2]), np.array([3])
    answers = [b'{"predictions": ["2026-01-01T00:00:00", "2026-01-02T00:00:00"]}', b'{"predictions": [[1, 2], [3]]}']
    async with shadowing(answers, concurrency=1) as (router, _):
        await _shadow(router, "dates", dates)
        await _shadow(router, "lists", lists)
        await _until(lambda: _count(router, "sent") == 2, "both copies answered")
    assert (router.rows.labels("agree")._value.get(), router.rows.labels("disagree")._value.get()) == (4, 0)


async def test_copies_are_sent_while_the_serving_event_loop_is_busy() -> None:
    """The copy's exchange runs in the sender process: copies handed over reach the candidate while
    the serving process's event loop is held (here by a blocking sleep; in production by requests)."""
    answer = b'{"predictions": [1, 1, 1]}'
    async with shadowing([answer] * 4) as (router, received):
        await _shadow(router, "warm-up")
        await _until(lambda: _count(router, "sent") == 1, "the sender answered its first copy")
        for request_id in ("x", "y", "z"):
            await _shadow(router, request_id)
        deadline = time.monotonic() + LIVENESS_SECONDS
        while len(received) < 4:  # blocking: the event loop of this process does nothing meanwhile
            assert time.monotonic() < deadline, f"{len(received)} of 4 copies reached the candidate"
            time.sleep(0.02)
        await _until(lambda: _count(router, "sent") == 4, "the outcomes counted")
    assert router.rows.labels("agree")._value.get() == 12


async def test_stopping_waits_for_the_copies_in_flight() -> None:
    """A stopping server (SIGTERM, lifespan shutdown) counts and logs the copies the candidate is
    answering, instead of losing them."""
    answer = b'{"predictions": [1, 0, 1]}'
    async with shadowing([answer] * 2, delay=1.0) as (router, received):
        for request_id in ("a", "b"):
            await _shadow(router, request_id)
        await _until(lambda: len(received) == 2, "both copies in flight")
    assert (_count(router, "sent"), _count(router, "dropped")) == (2, 0)
    assert (router.rows.labels("agree")._value.get(), router.rows.labels("disagree")._value.get()) == (4, 2)


async def test_a_sender_that_dies_is_started_again_and_copies_reach_the_candidate() -> None:
    import os
    import signal

    answer = b'{"predictions": [1, 1, 1]}'
    async with shadowing([answer] * 2) as (router, received):
        await _shadow(router, "before")
        await _until(lambda: _count(router, "sent") == 1, "the first copy answered")
        sender = router._sender
        first = sender._process.pid
        os.kill(first, signal.SIGKILL)
        await _until(lambda: sender.restarts == 1, "the sender started again")
        assert sender._process.pid != first
        await _shadow(router, "after")
        await _until(lambda: _count(router, "sent") == 2, "a copy answered by the new sender")
    assert [h[REQUEST_ID_HEADER] for h in received] == ["before", "after"]


async def test_a_sender_that_stops_reading_holds_a_bounded_amount_of_the_serving_process_memory() -> None:
    """A sender that does not read its input (starved of CPU at idle priority, or hung): the copies
    written to its pipe wait in the serving process; once more than WRITE_BUFFER_LIMIT bytes wait,
    copies are refused (dropped) rather than buffered, whatever their number."""
    import os
    import signal
    import sys

    from modelops_runtime.serve.shadow import WRITE_BUFFER_LIMIT, Outcome, ShadowSender

    outcomes: list[Outcome] = []
    config = DOWN
    sender = ShadowSender(config, outcomes.append, command=(sys.executable, "-c", "import time; time.sleep(600)"))
    await sender.start()
    body = b"x" * 2**18  # 256 KiB: the copies the sender may hold (260) would be 65 MiB
    taken = [sender.send(i, "/invocations", {}, body, np.array([1])) for i in range(config.queue_size)]
    assert sender._process is not None and sender._process.stdin is not None
    waiting = sender._process.stdin.transport.get_write_buffer_size()
    os.kill(sender._process.pid, signal.SIGKILL)
    await sender.stop()
    assert waiting <= WRITE_BUFFER_LIMIT + len(body) + 1024
    assert 0 < sum(taken) < config.queue_size and taken.index(False) == sum(taken)
    assert len(outcomes) == sum(taken) and all(o.dropped for o in outcomes)


async def test_the_sender_queues_a_bounded_amount_of_request_bodies() -> None:
    """A candidate that does not answer (overloaded, timing out) while the clients send large
    requests: the sender queues copies up to QUEUE_BYTES_LIMIT of bodies, not ``queue_size`` of
    them (256 of 32 MiB: 8 GiB, where the pod's memory limit kills it); the later ones are dropped."""
    import os
    import signal

    from modelops_runtime.serve.shadow import QUEUE_BYTES_LIMIT, Outcome, ShadowSender

    outcomes: list[Outcome] = []
    body = b"x" * 2**23  # 8 MiB
    copies = QUEUE_BYTES_LIMIT // len(body) + 4
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        # The copy in flight never times out meanwhile: every outcome here is a dropped copy.
        config = DOWN.model_copy(update={"url": url, "concurrency": 1, "timeout_seconds": 10 * LIVENESS_SECONDS})
        sender = ShadowSender(config, outcomes.append)
        await sender.start()
        assert sender._process is not None and sender._process.stdin is not None
        process = sender._process
        try:
            for key in range(copies):
                assert sender.send(key, "/invocations", {}, body, np.array([1]))
                await _until(lambda: process.stdin.transport.get_write_buffer_size() == 0, "the copy written")
            await _until(lambda: any(o.key == copies - 1 for o in outcomes), "the last copy reported")
            dropped = sorted(o.key for o in outcomes)
        finally:
            os.kill(process.pid, signal.SIGKILL)
            await sender.stop()
    # One copy in flight, QUEUE_BYTES_LIMIT of them queued (one more if the first was not yet taken).
    assert all(o.dropped for o in outcomes) and len(dropped) in (3, 4) and dropped[-1] == copies - 1
    assert dropped == list(range(copies - len(dropped), copies))


@pytest.mark.parametrize("refusal", ["exec", "process group"])
async def test_a_sender_that_cannot_be_started_again_is_tried_again(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, refusal: str
) -> None:
    """Starting a sender again can fail (no process: a pids or memory limit, OSError; the child's
    setpgid refused, SubprocessError); it is tried again after the back-off, instead of ending the
    restarts (every later copy dropped) and failing the server's shutdown, which then skips the
    prediction log's last flush."""
    import os
    import signal

    from modelops_runtime.serve import shadow
    from modelops_runtime.serve.shadow import Outcome, ShadowSender

    outcomes: list[Outcome] = []
    sender = ShadowSender(DOWN, outcomes.append)
    await sender.start()
    command = sender.command
    if refusal == "exec":
        sender.command = ("/nonexistent/python",)
    else:

        def refuse() -> None:
            raise PermissionError(1, "Operation not permitted")

        monkeypatch.setattr(shadow, "_own_process_group", refuse)
    assert sender._process is not None and sender._task is not None
    os.kill(sender._process.pid, signal.SIGKILL)

    def refused() -> bool:
        return any("could not start the shadow sender" in r.getMessage() for r in caplog.records)

    await _until(lambda: sender._task.done() or refused(), "a start refused")
    assert not sender._task.done()
    sender.command = command
    monkeypatch.undo()
    await _until(lambda: sender.restarts == 1, "the sender started again")
    assert sender.send(0, "/invocations", {}, b"{}", np.array([1]))
    await sender.stop()  # returns: the copy is reported (failed: the candidate is down)
    assert [(o.key, o.dropped, o.predictions) for o in outcomes] == [(0, False, None)]


def test_the_sender_runs_at_idle_priority_ignores_group_signals_and_ends_with_its_serving_process() -> None:
    """SIGTERM or SIGINT sent to the process group (a terminal's Ctrl-C, a group kill) do not stop
    the sender before its serving process has drained; when the serving process is gone (even
    killed), the sender's input closes and it exits."""
    import os
    import signal
    import subprocess
    import sys

    config = DOWN
    parent = (
        "import subprocess, sys, os, signal\n"
        "p = subprocess.Popen([sys.executable, '-m', 'modelops_runtime.serve.shadow', sys.argv[1]],"
        " stdin=subprocess.PIPE, stdout=subprocess.PIPE)\n"
        "print(p.pid, flush=True)\n"
        "sys.stdin.readline()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    serving_process = subprocess.Popen(
        [sys.executable, "-c", parent, config.model_dump_json()], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert serving_process.stdout is not None and serving_process.stdin is not None
    sender = int(serving_process.stdout.readline())

    def running() -> bool:  # neither gone nor a zombie (reparented, it may not be reaped at once)
        try:
            stat = Path(f"/proc/{sender}/stat").read_text()
        except FileNotFoundError:
            return False
        return stat.rsplit(")", 1)[1].split()[0] != "Z"

    def ignored() -> int:  # the signals the sender ignores (/proc's SigIgn mask)
        status = Path(f"/proc/{sender}/status").read_text()
        return int(next(line.split()[1] for line in status.splitlines() if line.startswith("SigIgn:")), 16)

    deadline = time.monotonic() + 30
    while not ignored() & (1 << (signal.SIGTERM - 1)):  # until its imports are done
        assert time.monotonic() < deadline, "the sender did not start"
        time.sleep(0.05)
    # It runs at the lowest CPU priority, so it never takes the CPU from its serving process.
    policy = int(Path(f"/proc/{sender}/stat").read_text().rsplit(")", 1)[1].split()[38])  # field 41, sched(7)
    assert policy == os.SCHED_IDLE
    os.kill(sender, signal.SIGTERM)
    os.kill(sender, signal.SIGINT)
    time.sleep(0.5)
    assert running()
    serving_process.stdin.write(b"\n")
    serving_process.stdin.flush()
    assert serving_process.wait(10) == -signal.SIGKILL
    deadline = time.monotonic() + LIVENESS_SECONDS
    while running():
        assert time.monotonic() < deadline, "the sender outlived its serving process"
        time.sleep(0.05)


def test_a_ctrl_c_while_the_sender_starts_does_not_kill_it() -> None:
    """A terminal's Ctrl-C goes to the whole foreground process group, also in the second a sender
    takes to start (imports) before it could ignore SIGINT: it must not die of it (a KeyboardInterrupt
    traceback, a restart) while its serving process drains."""
    import subprocess
    import sys

    config = DOWN
    serving_process = (
        "import asyncio, os, signal, sys, uvloop\n"
        "from modelops.contract import RouterConfig\n"
        "from modelops_runtime.serve.shadow import ShadowSender\n"
        "signal.signal(signal.SIGINT, lambda *_: None)  # the serving process drains on SIGINT\n"
        "async def main():\n"
        "    sender = ShadowSender(RouterConfig.model_validate_json(sys.argv[1]), print)\n"
        "    await sender.start()\n"
        "    process = sender._process\n"
        "    os.killpg(os.getpgrp(), signal.SIGINT)  # Ctrl-C, while the sender imports its modules\n"
        "    group = os.getpgid(process.pid) == process.pid\n"
        "    ours = lambda pid: (os.getsid(pid), open(f'/proc/{pid}/autogroup').read().split()[0])\n"
        "    same = ours(process.pid) == ours(os.getpid())\n"
        "    print('own group', group, 'same session and autogroup', same, flush=True)\n"
        "    sender.send(0, '/invocations', {}, b'{}', __import__('numpy').array([1]))\n"
        "    await sender.stop()  # the sender reports the copy (the candidate is down) and exits\n"
        "    print('restarts', sender.restarts, 'exit', process.returncode, flush=True)\n"
        "uvloop.run(main())  # the server's event loop\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", serving_process, config.model_dump_json()],
        capture_output=True,
        text=True,
        timeout=3 * LIVENESS_SECONDS,  # the serving process's stop() waits up to the copy's timeout and 5 s
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )
    assert done.returncode == 0, done.stderr
    assert "KeyboardInterrupt" not in done.stderr and "exited with code" not in done.stderr
    assert "restarts 0 exit 0" in done.stdout and "dropped=True" not in done.stdout
    # Outside the foreground group, but in its serving process's session: a session is an autogroup
    # (sched(7)) with a weight of its own, which made SCHED_IDLE moot on a machine without a cgroup.
    assert "own group True same session and autogroup True" in done.stdout


def test_a_sender_that_logs_to_a_terminal_with_tostop_is_not_stopped() -> None:
    """In a process group of its own the sender is a background job of its serving process's terminal:
    with ``stty tostop`` a write of a background job to the terminal stops it (SIGTTOU). Its log goes
    to the serving process's stderr, that terminal: it must go on sending, not stop at its first log
    line while its copies are dropped and the server's shutdown waits for it."""
    import os
    import pty
    import subprocess
    import sys
    import threading

    serving_process = (
        "import asyncio, logging, os, sys, termios, numpy, uvloop\n"
        "from modelops.contract import RouterConfig\n"
        "from modelops_runtime.serve.shadow import ShadowSender\n"
        "os.close(os.open(os.ttyname(2), os.O_RDWR))  # a session leader: the terminal becomes its own\n"
        "attrs = termios.tcgetattr(2)\n"
        "attrs[3] |= termios.TOSTOP\n"
        "termios.tcsetattr(2, termios.TCSANOW, attrs)\n"
        "logging.basicConfig(level=logging.INFO)  # the sender logs its start at INFO\n"
        "async def main():\n"
        "    sender = ShadowSender(RouterConfig.model_validate_json(sys.argv[1]), print)\n"
        "    await sender.start()\n"
        "    process = sender._process\n"
        "    sender.send(0, '/invocations', {}, b'{}', numpy.array([1]))\n"
        "    await sender.stop()  # the sender reports the copy (the candidate is down) and exits\n"
        "    print('restarts', sender.restarts, 'exit', process.returncode, flush=True)\n"
        "uvloop.run(main())\n"
    )
    terminal, tty = pty.openpty()
    shown: list[bytes] = []

    def read_terminal() -> None:  # what the terminal shows, so that writes to it never block
        while True:
            try:
                data = os.read(terminal, 65536)
            except OSError:  # EIO: every process closed the terminal
                return
            if not data:
                return
            shown.append(data)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-c", serving_process, DOWN.model_dump_json()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=tty,
            text=True,
            timeout=3 * LIVENESS_SECONDS,  # the serving process's stop() waits up to the copy's timeout and 5 s
            start_new_session=True,  # the session of a terminal, its process the foreground job
        )
    finally:
        os.close(tty)
        reader.join(10)
        os.close(terminal)
    log = b"".join(shown).decode(errors="replace")
    assert done.returncode == 0, log
    assert "sending shadow copies" in log  # the sender wrote to the terminal
    assert "restarts 0 exit 0" in done.stdout and "dropped=True" not in done.stdout, (done.stdout, log)


def test_a_sender_whose_serving_process_is_gone_ends_quietly() -> None:
    """The serving process ends without stopping its sender (a second Ctrl-C forces uvicorn out
    without its shutdown; a worker killed): the sender finishes the copy in flight, finds nobody to
    report to, and exits without tracebacks on the terminal or in the pod's log."""
    import subprocess
    import sys

    serving_process = (
        "import sys, numpy, uvloop\n"
        "from modelops.contract import RouterConfig\n"
        "from modelops_runtime.serve.shadow import ShadowSender\n"
        "async def main():\n"
        "    sender = ShadowSender(RouterConfig.model_validate_json(sys.argv[1]), print)\n"
        "    await sender.start()\n"
        "    sender.send(0, '/invocations', {}, b'{}', numpy.array([1]))\n"
        "    await __import__('asyncio').sleep(600)\n"
        "uvloop.run(main())\n"
    )
    with answering([b'{"predictions": [1]}'], delay=1.0) as (url, received):
        config = DOWN.model_copy(update={"url": url})
        process = subprocess.Popen(
            [sys.executable, "-c", serving_process, config.model_dump_json()],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        deadline = time.monotonic() + LIVENESS_SECONDS
        while not received:  # the copy is in flight
            assert time.monotonic() < deadline and process.poll() is None, "the copy did not reach the candidate"
            time.sleep(0.02)
        process.kill()
        _, stderr = process.communicate(timeout=LIVENESS_SECONDS)  # until the sender, which shares stderr, has exited
    assert "Traceback" not in stderr and "BrokenPipeError" not in stderr, stderr


def test_the_copy_is_queued_only_after_the_response_was_sent(
    store: Store, shuffled: Registered, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nothing of the shadow copy (sampling, queueing, and so the sender's HTTP work) runs before the
    client's response has been handed to the server: the router is called after the last body message."""
    from starlette.testclient import TestClient

    from modelops_runtime.serve.main import build_server
    from modelops_runtime.serve.router import Router

    events: list[str] = []
    shadow = Router.shadow

    async def recorded_shadow(self: Router, *args: Any) -> None:
        events.append("copy queued")
        await shadow(self, *args)

    monkeypatch.setattr(Router, "shadow", recorded_shadow)
    use_store(store)
    router = router_for(f"http://127.0.0.1:{closed_port()}", shuffled, mode="shadow", sample_rate=1.0)
    app = build_server(config_for(store.bc), router=router).app

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        async def sent(message: Any) -> None:
            await send(message)
            if scope["type"] == "http" and scope["path"].endswith("/infer"):
                events.append(message["type"])

        await app(scope, receive, sent)

    with TestClient(recording) as client:
        deadline = time.monotonic() + 30
        while client.get("/v2/health/ready").status_code != 200:
            assert time.monotonic() < deadline, "the model did not load"
            time.sleep(0.05)
        body = {"id": "req-0", "inputs": v2_columns(store.bc.X.iloc[[0]])}
        response = client.post(f"/v2/models/{store.bc.name}/infer", json=body)
        assert response.status_code == 200
    assert events == ["http.response.start", "http.response.body", "copy queued"]
