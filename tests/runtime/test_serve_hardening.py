"""The model server against adversarial input: absent columns, NaN/Infinity, odd tensors and ids, limits."""

from __future__ import annotations

import gzip
import json
import logging
import select
import socket
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

import httpx
import mlflow
import orjson
import pytest
import uvicorn
from mlflow.models import infer_signature
from palmerpenguins import load_penguins

from modelops.contract import ENV_JOB_CONFIG, PROM_ERRORS, PROM_LATENCY, PROM_PREDICTIONS, parse_ready_refusal
from modelops_runtime.serve.httpserver import uvicorn_config
from modelops_runtime.serve.limits import ServeLimits
from modelops_runtime.serve.main import main as serve_main
from modelops_runtime.train.job import required_inputs

from .serve_support import (
    LIVENESS_SECONDS,
    Running,
    Store,
    breast_cancer_model,
    config_for,
    free_port,
    metric,
    records,
    register,
    serving,
    use_store,
    v2_columns,
    wait_for_log,
)

pytestmark = pytest.mark.filterwarnings("ignore:X does not have valid feature names")

LIMITS = ServeLimits(
    max_body_bytes=64 * 1024, max_rows=50, max_header_bytes=4096, request_timeout_seconds=1.0, keep_alive_seconds=5
)


@pytest.fixture(scope="module")
def limited(store: Store) -> Iterator[Running]:
    """The breast-cancer model behind small limits."""
    use_store(store)
    with serving(config_for(store.bc, stage="Staging"), limits=LIMITS) as running:
        running.wait_ready()
        yield running


def successes(running: Running, store: Store) -> float:
    return metric(running, f"{PROM_LATENCY}_count", model_name=store.bc.name, model_version="1.0.0")


def errors(running: Running, store: Store, error_type: str) -> float:
    return metric(running, PROM_ERRORS, model_name=store.bc.name, error_type=error_type)


# ----------------------------------------------------------------------- absent columns


def test_training_signature_requires_every_column() -> None:
    frame = load_penguins().drop(columns=["species"])
    inferred = infer_signature(frame)
    assert not all(c.required for c in inferred.inputs.inputs)  # MLflow: a column with NaN is optional
    assert all(c.required for c in required_inputs(inferred).inputs.inputs)


def test_absent_column_is_400_but_a_null_is_imputed(penguins: Running, bc: Running, store: Store) -> None:
    row = records(store.penguins.X.iloc[:1])[0]
    without_sex = {k: v for k, v in row.items() if k != "sex"}
    absent = penguins.client.post("/invocations", json={"dataframe_records": [without_sex]})
    assert absent.status_code == 400 and "'sex'" in absent.json()["message"], absent.text
    null = penguins.client.post("/invocations", json={"dataframe_records": [{**row, "sex": None}]})
    assert null.status_code == 200, null.text

    X = store.bc.X.iloc[:2]
    three_absent = X.drop(columns=list(X.columns[:3]))
    response = bc.client.post("/invocations", json={"dataframe_records": records(three_absent)})
    assert response.status_code == 400
    message = response.json()["message"]
    assert all(f"'{c}'" in message for c in X.columns[:3]), message
    v2 = bc.client.post(f"/v2/models/{store.bc.name}/infer", json={"inputs": v2_columns(X.iloc[:, 1:])})
    assert v2.status_code == 400 and f"'{X.columns[0]}'" in v2.json()["error"]


# ------------------------------------------------------------------------ NaN, Infinity


def test_bare_nan_is_a_missing_value_and_infinity_is_refused(penguins: Running, bc: Running, store: Store) -> None:
    X = store.penguins.X.iloc[:2].astype(object)
    X["bill_length_mm"] = float("nan")
    expected = store.penguins.estimator.predict(X).tolist()
    # What MLflow's serialisers write: Python's json with a bare NaN.
    body = json.dumps({"dataframe_split": {"columns": list(X.columns), "data": X.to_numpy().tolist()}})
    assert "NaN" in body
    response = penguins.client.post("/invocations", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == expected
    sex_nan = body.replace('"male"', "NaN").replace('"female"', "NaN")
    assert penguins.client.post("/invocations", content=sex_nan).status_code == 200

    row = records(store.bc.X.iloc[:1])[0]
    for literal in ("Infinity", "-Infinity", "1e999"):
        fields = ", ".join(f'"{k}": {literal if k == "mean texture" else v}' for k, v in row.items())
        text = '{"dataframe_records": [{' + fields + "}]}"
        refused = bc.client.post("/invocations", content=text)
        assert refused.status_code == 400, refused.text
        assert "'mean texture'" in refused.json()["message"] and "finite" in refused.json()["message"]


def test_an_integer_column_refuses_values_no_int64_holds(penguins: Running, store: Store) -> None:
    """'year' is a long column: "1e19", "1e300" and 9.3e18 were cast to int64 as -2**63 silently and
    predicted with; JSON integers beyond the range were already 400."""
    row = records(store.penguins.X.iloc[:1])[0]
    for year in ("1e19", "1e300", 9.3e18, -9.3e18, 2**63):
        response = penguins.client.post("/invocations", json={"dataframe_records": [{**row, "year": year}]})
        assert response.status_code == 400, (year, response.text)
        assert response.json()["message"] == "column 'year' has an integer out of the 64-bit range"
    for year in ("2007", 2007.0, "2.007e3", -(2**63)):
        response = penguins.client.post("/invocations", json={"dataframe_records": [{**row, "year": year}]})
        assert response.status_code == 200, (year, response.text)


def test_an_integer_column_refuses_integers_a_float_cannot_hold_exactly(penguins: Running, store: Store) -> None:
    """The JSON parser reads an integer beyond int64 as a float: -2**63 - 1 was taken as -2**63 and
    predicted with. Integers beyond ±2**53 that went through float64 (that one, floats, strings, a
    column with missing values) are 400; JSON integers in a complete column stay exact (int64)."""
    row = records(store.penguins.X.iloc[:1])[0]
    beyond = 2**53 + 1
    for text in (f"{-(2**63) - 1}", f"{float(2**60)}", f'"{beyond}"'):
        record = orjson.dumps({**row, "year": 0}).decode().replace('"year":0', f'"year":{text}')
        body = '{"dataframe_records": [' + record + "]}"
        response = penguins.client.post("/invocations", content=body, headers={"content-type": "application/json"})
        assert response.status_code == 400, (text, response.text)
        assert "beyond ±2**53" in response.json()["message"], response.text
    with_missing = [{**row, "year": beyond}, {**row, "year": None}]
    response = penguins.client.post("/invocations", json={"dataframe_records": with_missing})
    assert response.status_code == 400 and "beyond ±2**53" in response.json()["message"], response.text
    response = penguins.client.post("/invocations", json={"dataframe_records": [{**row, "year": beyond}]})
    assert response.status_code == 200, response.text


# ------------------------------------------------------------------- odd tensors and ids


def test_mixed_nesting_is_400_and_counted_as_such(bc: Running, store: Store) -> None:
    inputs = v2_columns(store.bc.X.iloc[:2])
    inputs[0]["data"] = [[2], 40]
    before_ok, before_err = successes(bc, store), errors(bc, store, "wrong_shape")
    response = bc.client.post(f"/v2/models/{store.bc.name}/infer", json={"inputs": inputs})
    assert response.status_code == 400 and "mixes nested arrays" in response.json()["error"]
    assert errors(bc, store, "wrong_shape") == before_err + 1
    assert successes(bc, store) == before_ok


@pytest.mark.parametrize("request_id", ["ид-☃-1", "line\r\nX-Injected: 1", " padded ", "%00-looks-encoded"])
def test_any_request_id_is_echoed_safely(bc: Running, store: Store, request_id: str) -> None:
    X = store.bc.X.iloc[:1]
    before = successes(bc, store)
    response = bc.client.post(f"/v2/models/{store.bc.name}/infer", json={"id": request_id, "inputs": v2_columns(X)})
    assert response.status_code == 200, response.text
    assert response.json()["id"] == request_id
    assert "x-injected" not in response.headers
    assert unquote(response.headers["x-request-id"]) == request_id
    assert successes(bc, store) == before + 1
    frame = wait_for_log(store, store.bc.name, "Production", lambda f: request_id in set(f["request_id"]))
    assert (frame["request_id"] == request_id).sum() == 1


def test_overlong_request_id_is_400_before_predicting(bc: Running, store: Store) -> None:
    before = successes(bc, store)
    response = bc.client.post(
        f"/v2/models/{store.bc.name}/infer", json={"id": "x" * 257, "inputs": v2_columns(store.bc.X.iloc[:1])}
    )
    assert response.status_code == 400 and "256" in response.json()["error"]
    assert successes(bc, store) == before


# -------------------------------------------------------------------------------- limits


def test_body_and_row_limits_are_413(limited: Running, store: Store) -> None:
    c = limited.client
    big = {"dataframe_records": records(store.bc.X.iloc[:100])}  # > 64 KiB of JSON
    response = c.post("/invocations", json=big)
    assert response.status_code == 413 and "max_body_bytes" in response.json()["message"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit applies while reading
        yield b'{"dataframe_records": ['
        for _ in range(5000):
            yield b'{"mean radius": 1.0},'
        yield b"{}]}"

    streamed = c.post("/invocations", content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413

    rows = store.bc.X.iloc[:51]
    split = {"dataframe_split": {"columns": list(rows.columns), "data": rows.round(2).to_numpy().tolist()}}
    too_many = c.post("/invocations", json=split)
    assert too_many.status_code == 413 and "max_rows" in too_many.json()["message"]
    assert errors(limited, store, "too_large") == 3


def test_gzip_and_deflate_bodies_and_a_bomb(limited: Running, store: Store) -> None:
    c = limited.client
    X = store.bc.X.iloc[:3]
    raw = json.dumps({"dataframe_records": records(X)}).encode()
    expected = store.bc.estimator.predict(X).tolist()
    for encoding, data in (("gzip", gzip.compress(raw)), ("deflate", zlib.compress(raw)), ("deflate", _raw(raw))):
        response = c.post("/invocations", content=data, headers={"content-encoding": encoding})
        assert response.status_code == 200, (encoding, response.text)
        assert response.json()["predictions"] == expected
    bomb = gzip.compress(b" " * (10 * 1024 * 1024))  # 10 MiB of spaces in about 10 KiB
    response = c.post("/invocations", content=bomb, headers={"content-encoding": "gzip"})
    assert response.status_code == 413 and "decompressed" in response.json()["message"]
    corrupt = c.post("/invocations", content=b"not gzip", headers={"content-encoding": "gzip"})
    assert corrupt.status_code == 400
    other = c.post("/invocations", content=raw, headers={"content-encoding": "br"})
    assert other.status_code == 415


def test_every_gzip_member_is_read_and_trailing_bytes_are_400(limited: Running, store: Store) -> None:
    """A gzip body of several members (RFC 1952; what concatenated gzip output is) was cut after the
    first: a CSV of 4 rows in two members was answered 200 with 2 predictions."""
    c = limited.client
    X = store.bc.X.iloc[:4]
    lines = X.to_csv(index=False).encode().splitlines(keepends=True)
    members = gzip.compress(b"".join(lines[:3])) + gzip.compress(b"".join(lines[3:]))
    headers = {"content-type": "text/csv", "content-encoding": "gzip"}
    response = c.post("/invocations", content=members, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["predictions"] == store.bc.estimator.predict(X).tolist()
    csv = X.to_csv(index=False).encode()
    trailing = (("gzip", gzip.compress(csv) + b"junk"), ("deflate", zlib.compress(csv) + zlib.compress(csv)))
    for encoding, data in trailing:
        response = c.post("/invocations", content=data, headers={**headers, "content-encoding": encoding})
        assert response.status_code == 400, response.text
        assert f"{encoding} data" in response.text or "after the end of its stream" in response.text
    bombs = gzip.compress(b" " * (40 * 1024)) * 2  # each member within max_body_bytes, not both
    response = c.post("/invocations", content=bombs, headers={**headers, "content-encoding": "gzip"})
    assert response.status_code == 413 and "decompressed" in response.json()["message"]


def _raw(data: bytes) -> bytes:
    compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return compressor.compress(data) + compressor.flush()


def _port(running: Running) -> int:
    return int(running.url.rsplit(":", 1)[1])


def _exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection and read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_oversized_headers_are_431(limited: Running) -> None:
    headers = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"a" * 100) for i in range(100))  # ~11 KiB > 4 KiB
    answer = _exchange(_port(limited), b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n")
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]
    fine = _exchange(_port(limited), b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert fine.startswith(b"HTTP/1.1 200 ")


def test_a_header_line_that_never_ends_is_431_once_past_the_limit(limited: Running) -> None:
    """httptools buffers a header line until its CRLF: one endless line was read (and held) until the
    request timeout, 177 MiB in 60 s with the default limits, and answered 408, not 431."""
    with socket.create_connection(("127.0.0.1", _port(limited)), timeout=30) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Endless: ")
        answer = b""
        for _ in range(64):  # up to 4 MiB in 64 KiB chunks, stopping once the server answers
            try:
                sock.sendall(b"a" * 65536)
            except (BrokenPipeError, ConnectionResetError):
                break
            if select.select([sock], [], [], 0)[0]:
                break
        try:
            while chunk := sock.recv(65536):
                answer += chunk
        except ConnectionResetError:
            pass
    assert answer.startswith(b"HTTP/1.1 431 "), answer[:200]


def test_slow_or_unfinished_clients_get_408(limited: Running, store: Store) -> None:
    port = _port(limited)
    headers_only = _exchange(port, b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n")  # never ends its headers
    assert headers_only.startswith(b"HTTP/1.1 408 "), headers_only[:200]
    silent = _exchange(port, b"")  # connects and says nothing
    assert silent.startswith(b"HTTP/1.1 408 ")
    before = errors(limited, store, "client_disconnected")
    unfinished = _exchange(
        port,
        b"POST /invocations HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{",
    )
    assert unfinished.startswith(b"HTTP/1.1 408 "), unfinished[:200]
    deadline = time.monotonic() + LIVENESS_SECONDS
    while errors(limited, store, "client_disconnected") == before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert errors(limited, store, "client_disconnected") == before + 1
    assert errors(limited, store, "internal") == 0


@pytest.mark.parametrize("content", ["", "flavors: [unclosed", "- just\n- a list\n", "flavors: 3\n"])
def test_unreadable_mlmodel_is_refused_not_crashed(store: Store, content: str) -> None:
    use_store(store)
    registered = register("broken-mlmodel", *breast_cancer_model())
    assert registered.model_id is not None
    location = mlflow.MlflowClient().get_logged_model(registered.model_id).artifact_location
    (Path(location.removeprefix("file://")) / "MLmodel").write_text(content)
    with serving(config_for(registered)) as running:
        deadline = time.monotonic() + LIVENESS_SECONDS
        while running.server.service.state.phase == "loading" and time.monotonic() < deadline:
            time.sleep(0.05)
        assert running.server.service.state.phase == "refused"
        ready = running.client.get("/v2/health/ready")
        assert ready.status_code == 503 and "MLmodel file is missing, empty or unreadable" in ready.json()["error"]
        reason, message = parse_ready_refusal(ready.content) or ("", "")
        assert reason == "IncompatibleModel" and message.startswith("the model's MLmodel file is missing, empty or")
        assert ready.json()["reason"] == "IncompatibleModel"
        assert running.client.get("/v2/health/live").status_code == 200
        assert running.client.get("/metrics").status_code == 200
        infer = running.client.post(f"/v2/models/{registered.name}/infer", json={"inputs": []})
        assert infer.status_code == 503 and "(IncompatibleModel)" in infer.json()["error"]
        assert running.client.post("/invocations", json={"dataframe_records": [{}]}).status_code == 503


def test_preds_counted_once_per_200(bc: Running, store: Store) -> None:
    X = store.bc.X.iloc[:4]
    before = {c: metric(bc, PROM_PREDICTIONS, model_name=store.bc.name, prediction_class=str(c)) for c in (0, 1)}
    assert bc.client.post("/invocations", json={"dataframe_records": records(X)}).status_code == 200
    after = {c: metric(bc, PROM_PREDICTIONS, model_name=store.bc.name, prediction_class=str(c)) for c in (0, 1)}
    assert sum(after.values()) - sum(before.values()) == 4


def test_invalid_limit_setting_is_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        ENV_JOB_CONFIG, '{"model": "m", "registry_version": "1", "version": "1.0.0", "stage": "Staging"}'
    )
    monkeypatch.setenv("MODELOPS_SERVE_MAX_ROWS", "0")
    assert serve_main([]) == 2
    monkeypatch.delenv("MODELOPS_SERVE_MAX_ROWS")
    assert serve_main(["--max-body-bytes", "-1"]) == 2


def test_a_pipelining_client_that_stops_reading_and_leaves_causes_no_server_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """uvicorn marks only the last parsed request of a connection as disconnected when it is lost: the
    request being answered, waiting for the client to read, then wrote to the closed transport
    ("Exception in ASGI application", RuntimeError: the handler is closed)."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def big(request: object) -> Response:
        return Response(b"x" * 65536)

    app = Starlette(routes=[Route("/big", big)])
    port = free_port()
    uv = uvicorn.Server(uvicorn_config(app, ServeLimits(), host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    try:
        _wait(lambda: uv.started, "the server to start")
        sock = socket.create_connection(("127.0.0.1", port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 400)  # 25 MiB of answers, never read
        paused = lambda: any(c.flow.write_paused for c in uv.server_state.connections)  # noqa: E731
        _wait(paused, "the server to wait for the client to read")
        sock.close()
        _wait(lambda: not uv.server_state.connections and not uv.server_state.tasks, "the connection to end")
    finally:
        uv.should_exit = True
        thread.join(15)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, [r.getMessage() for r in errors]


def _wait(condition: Callable[[], bool], what: str, timeout: float = LIVENESS_SECONDS) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"waited {timeout} s for {what}")
        time.sleep(0.01)


def test_a_client_that_never_reads_its_answers_is_disconnected(caplog: pytest.LogCaptureFixture) -> None:
    """A client that sends requests and never reads the answers held its connection (and the answers
    waiting for it) for as long as it kept the socket open: it is disconnected after
    request_timeout_seconds without reading."""
    from starlette.applications import Starlette
    from starlette.responses import Response
    from starlette.routing import Route

    async def big(request: object) -> Response:
        return Response(b"x" * 65536)

    app = Starlette(routes=[Route("/big", big)])
    port = free_port()
    limits = ServeLimits(request_timeout_seconds=1.0)
    uv = uvicorn.Server(uvicorn_config(app, limits, host="127.0.0.1", port=port, log_config=None))
    thread = threading.Thread(target=uv.run, daemon=True)
    thread.start()
    try:
        _wait(lambda: uv.started, "the server to start")
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * 400)  # 25 MiB of answers, never read
            _wait(lambda: bool(uv.server_state.connections), "the connection")
            _wait(lambda: not uv.server_state.connections and not uv.server_state.tasks, "the server to let go")
    finally:
        uv.should_exit = True
        thread.join(15)
    assert any("read nothing for 1 s" in r.getMessage() for r in caplog.records)
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_large_body_is_parsed_off_the_event_loop(store: Store) -> None:
    """32 MiB of empty BYTES elements took the event loop ~2.7 s to parse and check, so a liveness
    probe (3 s timeout) sent meanwhile waited behind it. Bodies above 1 MiB are parsed in a worker
    thread: the probe is answered while the big request is still being parsed."""
    use_store(store)
    n = (30 * 1024 * 1024) // 3
    body = b'{"inputs": [{"name": "x", "shape": [%d], "datatype": "BYTES", "data": [' % n
    body += b'"",' * (n - 1) + b'""]}]}'
    done: list[str] = []
    with serving(config_for(store.bc)) as running:
        running.wait_ready()

        def big() -> None:
            with httpx.Client(base_url=running.url, timeout=120) as client:
                response = client.post(f"/v2/models/{store.bc.name}/infer", content=body)
            done.append(f"big {response.status_code}")

        sender = threading.Thread(target=big)
        sender.start()
        time.sleep(0.5)  # the body is on the server (loopback) and being parsed
        with httpx.Client(base_url=running.url, timeout=30) as client:
            live = client.get("/v2/health/live")
        done.append(f"live {live.status_code}")
        sender.join()
    assert done[0] == "live 200", done  # answered while the big one was parsed
    assert done[1].startswith("big 4"), done  # the big request itself is a client error
