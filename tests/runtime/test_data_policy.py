"""The data URI policy where the training pod fetches: IP literals, DNS answers, redirects, symbolic
links, and error messages that never quote what was read."""

from __future__ import annotations

import http.server
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from modelops.api.modelversion import DataSpec
from modelops.datapolicy import DataUriPolicy, DataUriRefused, classify
from modelops.settings import Settings
from modelops_runtime.train import data
from modelops_runtime.train.errors import InvalidInput

SECRET = "AKIAFAKEFAKEFAKE1234"
#: What a cloud metadata endpoint or an internal service might answer (fake credentials).
CREDENTIALS = f"aws_access_key_id={SECRET}\naws_secret_access_key=wJalrXUtnFEMI/K7MDENG\n"


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
    seen: list[tuple[str, str]] = []

    def do_GET(self) -> None:
        self.seen.append((self.path, self.headers.get("Host", "")))
        status, headers, body = self.routes.get(self.path, (404, {}, b"not found"))
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@contextmanager
def serving(address: str, routes: dict[str, tuple[int, dict[str, str], bytes]]) -> Iterator[tuple[int, list[Any]]]:
    """An HTTP server on ``address`` (a loopback address) answering ``routes``; yields (port, requests seen)."""
    handler = type("Handler", (_Handler,), {"routes": routes, "seen": []})
    server = http.server.ThreadingHTTPServer((address, 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1], handler.seen
    finally:
        server.shutdown()
        server.server_close()


def resolver(table: dict[str, str]) -> Any:
    """A ``getaddrinfo`` answering names from ``table`` (DNS for tests; unknown names fail)."""

    def resolve(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        if host not in table:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (table[host], port))]

    return resolve


IRIS_CSV = pd.DataFrame({"x": [1.0, 2.0, 3.0, 4.0], "y": [0, 1, 0, 1]}).to_csv(index=False).encode()


def test_production_default_refuses_internal_targets_and_allows_builtins() -> None:
    policy = Settings().data_policy
    for uri in ("sklearn://breast_cancer", "penguins://", "https://data.example.com/train.csv"):
        classify(uri, policy)
    refused = {
        "http://127.0.0.1:18999/latest/meta-data": "loopback",
        "http://169.254.169.254/latest/meta-data/iam": "link-local",
        "http://10.96.0.1/x.csv": "private",
        "http://[::1]:8080/x.csv": "loopback",
        "http://[::ffff:127.0.0.1]/x.csv": "loopback",
        "http://2130706433/x.csv": "loopback",  # 127.0.0.1 as the resolver would read it
        "http://mlflow:5000/x.csv": "cluster-internal",
        "http://mlflow.modelops.svc.cluster.local/x.csv": "denied",
        "http://localhost/x.csv": "denied",
        "/etc/os-release": "outside the allowed data folders",
        "file:///etc/group": "outside the allowed data folders",
        "/var/lib/modelops/data/../../../../etc/passwd": "outside the allowed data folders",
        "train.csv": "not absolute",
        "ftp://example.com/x.csv": "scheme 'ftp' is not allowed",
        "simplecache::https://example.com/x.csv": "chained",
    }
    for uri, why in refused.items():
        with pytest.raises(DataUriRefused, match=why):
            classify(uri, policy)
    assert classify("/var/lib/modelops/data/team-a/train.csv", policy) == "local"


def test_loopback_credentials_endpoint_is_refused_before_any_request() -> None:
    with serving("127.0.0.1", {"/latest": (200, {}, CREDENTIALS.encode())}) as (port, seen):
        spec = DataSpec(uri=f"http://127.0.0.1:{port}/latest", format="csv", target="y")
        refusal = r"refused by the data URI policy: address 127\.0\.0\.1 is loopback"
        with pytest.raises(InvalidInput, match=refusal) as err:
            data.load_dataset(spec, Settings().data_policy)
    assert seen == [] and SECRET not in str(err.value)


def test_a_name_resolving_to_loopback_is_refused_and_an_allowed_one_is_fetched_from_the_checked_address(
    tmp_path: Path,
) -> None:
    with serving("127.0.0.1", {"/train.csv": (200, {}, IRIS_CSV)}) as (port, seen):
        url = f"http://data.example.test:{port}/train.csv"
        resolve = resolver({"data.example.test": "127.0.0.1"})
        with pytest.raises(DataUriRefused, match=r"'data\.example\.test' resolves to address 127\.0\.0\.1 is loopback"):
            data.fetch_http(url, DataUriPolicy(), tmp_path / "a.csv", resolve)
        assert seen == []
        allowing = DataUriPolicy(allowed_networks=["127.0.0.0/8"])
        data.fetch_http(url, allowing, tmp_path / "b.csv", resolve)
        assert (tmp_path / "b.csv").read_bytes() == IRIS_CSV
        assert seen == [("/train.csv", f"data.example.test:{port}")]  # the name went in the Host header


def test_a_redirect_from_an_allowed_host_to_loopback_is_refused(tmp_path: Path) -> None:
    # The "allowed" data host lives at 127.0.0.2 (the policy allows that one address); the
    # internal service with credentials at 127.0.0.1 must never be asked.
    with serving("127.0.0.1", {"/latest": (200, {}, CREDENTIALS.encode())}) as (internal, internal_seen):
        redirects = {
            "/literal.csv": (302, {"Location": f"http://127.0.0.1:{internal}/latest"}, b""),
            "/named.csv": (301, {"Location": f"http://metadata.example.test:{internal}/latest"}, b""),
            "/internal-name.csv": (307, {"Location": f"http://mlflow:{internal}/latest"}, b""),
            "/file.csv": (302, {"Location": "file:///etc/os-release"}, b""),
            "/ok.csv": (302, {"Location": "/train.csv"}, b""),
            "/train.csv": (200, {}, IRIS_CSV),
        }
        with serving("127.0.0.2", redirects) as (port, seen):
            policy = DataUriPolicy(allowed_networks=["127.0.0.2/32"])
            resolve = resolver({"data.example.test": "127.0.0.2", "metadata.example.test": "127.0.0.1"})
            base = f"http://data.example.test:{port}"
            cases = {
                "/literal.csv": "address 127.0.0.1 is loopback",
                "/named.csv": "'metadata.example.test' resolves to address 127.0.0.1",
                "/internal-name.csv": "cluster-internal",
                "/file.csv": "outside the allowed data folders",
            }
            for path, why in cases.items():
                with pytest.raises(DataUriRefused, match=why) as err:
                    data.fetch_http(base + path, policy, tmp_path / "x.csv", resolve)
                assert SECRET not in str(err.value)
            data.fetch_http(base + "/ok.csv", policy, tmp_path / "ok.csv", resolve)
            assert (tmp_path / "ok.csv").read_bytes() == IRIS_CSV
            assert [p for p, _ in seen] == [*cases, "/ok.csv", "/train.csv"]
    assert internal_seen == []


def test_local_paths_resolve_links_and_errors_never_quote_the_file(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    outside = tmp_path / "secret.csv"
    outside.write_text(f"key,value\n{SECRET},1\n")
    (folder / "link.csv").symlink_to(outside)
    policy = DataUriPolicy(local_path_prefixes=[str(folder)])
    with pytest.raises(InvalidInput, match="outside the allowed data folders"):
        data.load_dataset(DataSpec(uri=str(folder / "link.csv"), target="value"), policy)
    with pytest.raises(InvalidInput, match="outside the allowed data folders"):
        data.load_dataset(DataSpec(uri=str(outside), target="value"), policy)

    # Inside the folder: a file that is not CSV/Parquet, or lacks the target, is reported
    # without its content (the parser's error class, the column count).
    (folder / "creds.parquet").write_text(CREDENTIALS)
    with pytest.raises(InvalidInput, match=r"cannot read parquet dataset .*creds\.parquet: ArrowInvalid$") as err:
        data.load_dataset(DataSpec(uri=str(folder / "creds.parquet"), target="y"), policy)
    assert SECRET not in str(err.value)
    (folder / "creds.csv").write_text(CREDENTIALS)
    frame = data.load_dataset(DataSpec(uri=f"file://{folder}/creds.csv", target="y"), policy)
    from modelops_runtime.train.pipeline import select_features

    with pytest.raises(InvalidInput, match=r"^target column 'y' not in dataset \(it has 1 columns\)$") as err:
        select_features(frame, DataSpec(uri="x.csv", target="y"))
    assert SECRET not in str(err.value)
