"""Loading the training dataset: files through fsspec/pandas and built-in real datasets.

Supported ``data.uri`` forms, each allowed only by the operator's data URI policy
(:mod:`modelops.datapolicy`, passed in the job config and enforced again here at fetch time):

* a local or mounted path or ``file://`` under the allowed folders (symbolic links resolved
  first), ``http(s)://`` (fetched by :func:`fetch_http`: every address a host resolves to and every
  redirect hop is checked, and the connection goes to the checked address), ``s3://`` (with
  ``s3fs``); CSV or Parquet, picked from the extension (``.csv``, ``.csv.gz``, ``.parquet``,
  ``.pq``) when ``data.format`` is ``auto``;
* ``sklearn://breast_cancer|wine|iris|digits|diabetes``: scikit-learn's bundled copies
  (``as_frame=True``); the label column is ``target`` (integer class labels for classification);
* ``penguins://``: the ``palmerpenguins`` package (numeric and categorical columns, with NaNs).

Nothing is downloaded for the built-in datasets. Error messages name the URI, the HTTP status,
the column count or the parser's error class, never content read from the dataset: they end up
in the ModelVersion's status.
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urljoin, urlsplit

import fsspec
import numpy as np
import pandas as pd

from modelops.api.modelversion import DataSpec
from modelops.datapolicy import (
    DataUriPolicy,
    DataUriRefused,
    check_address,
    check_local_path,
    classify,
    ip_literal,
    local_path_of,
)

from ..jobrun import one_line
from .errors import DatasetUnavailable, InvalidInput

SKLEARN_DATASETS = ("breast_cancer", "wine", "iris", "digits", "diabetes")
_CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz")
_PARQUET_SUFFIXES = (".parquet", ".pq", ".parquet.gz")


def _sklearn_loader(name: str) -> Callable[..., Any]:
    from sklearn import datasets

    loaders: dict[str, Callable[..., Any]] = {
        "breast_cancer": datasets.load_breast_cancer,
        "wine": datasets.load_wine,
        "iris": datasets.load_iris,
        "digits": datasets.load_digits,
        "diabetes": datasets.load_diabetes,
    }
    return loaders[name]


def load_builtin(uri: str) -> pd.DataFrame:
    """Load ``sklearn://<name>`` or ``penguins://`` as a frame; raises :class:`InvalidInput` for an unknown name."""
    scheme, _, rest = uri.partition("://")
    name = rest.strip("/")
    if scheme == "sklearn":
        if name not in SKLEARN_DATASETS:
            raise InvalidInput(f"unknown built-in dataset {uri!r}; known: sklearn://{{{','.join(SKLEARN_DATASETS)}}}")
        frame = _sklearn_loader(name)(as_frame=True).frame
        return pd.DataFrame(frame)
    if scheme == "penguins":
        if name not in ("", "penguins"):
            raise InvalidInput(f"unknown built-in dataset {uri!r}; use penguins://")
        from palmerpenguins import load_penguins

        return pd.DataFrame(load_penguins())
    raise InvalidInput(f"{uri!r} is not a built-in dataset")


def detect_format(uri: str, declared: str = "auto") -> str:
    """``csv`` or ``parquet``: ``declared`` unless ``auto``, else from the URI's extension.

    Raises :class:`InvalidInput` when ``auto`` cannot tell.
    """
    if declared != "auto":
        return declared
    path = uri.split("?", 1)[0].lower()
    if path.endswith(_CSV_SUFFIXES):
        return "csv"
    if path.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    raise InvalidInput(f"cannot tell the format of {uri!r} from its extension; set data.format to csv or parquet")


def unreachable(exc: BaseException) -> bool:
    """Whether ``exc`` or any exception it was raised from is a connection error or a timeout."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, (ConnectionError, TimeoutError)):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


def _root(exc: BaseException) -> BaseException:
    while (exc.__cause__ or exc.__context__) is not None:
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]
    return exc


def read_table(source: str, fmt: str, uri: str) -> pd.DataFrame:
    """Read a CSV or Parquet file (a local path or an fsspec URL; compression from its name).

    ``uri`` is what messages name. Raises :class:`InvalidInput` when missing or unreadable (the
    parser's error class, not its message: that may quote the file), :class:`DatasetUnavailable`
    on a connection error or timeout.
    """
    try:
        with fsspec.open(source, mode="rb", compression="infer") as handle:
            if fmt == "csv":
                return pd.read_csv(handle)
            return pd.read_parquet(handle)
    except FileNotFoundError as exc:
        if unreachable(exc):  # fsspec's HTTP filesystem: connection refused is "not found"
            root = _root(exc)
            raise DatasetUnavailable(f"cannot reach dataset {uri}: {type(root).__name__}: {one_line(root)}") from exc
        raise InvalidInput(f"dataset not found: {uri}") from exc
    except PermissionError as exc:
        raise InvalidInput(f"dataset not readable (permission denied): {uri}") from exc
    except IsADirectoryError as exc:
        raise InvalidInput(f"dataset {uri} is a directory, not a file") from exc
    except (ConnectionError, TimeoutError) as exc:  # transient: not invalid input, the Job may retry
        raise DatasetUnavailable(f"cannot reach dataset {uri}: {type(exc).__name__}") from exc
    except ImportError as exc:  # e.g. s3:// without s3fs
        raise InvalidInput(f"cannot read {uri}: {exc}") from exc
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        raise InvalidInput(f"cannot read {fmt} dataset {uri}: {type(exc).__name__}") from exc


#: HTTP statuses followed as redirects by :func:`fetch_http`, and how many hops at most.
REDIRECT_STATUSES = (301, 302, 303, 307, 308)
MAX_REDIRECTS = 5
#: Connect and read timeouts of dataset downloads, seconds.
HTTP_CONNECT_TIMEOUT, HTTP_READ_TIMEOUT = 10.0, 120.0

Resolver = Callable[..., list[Any]]


def resolve_checked(host: str, port: int, policy: DataUriPolicy, resolve: Resolver = socket.getaddrinfo) -> str:
    """The address to connect to for ``host``: a checked literal, or the first of its DNS answers
    once every answer passed :func:`~modelops.datapolicy.check_address`.

    Raises :class:`DataUriRefused` (an answer outside the policy) or :class:`InvalidInput`
    (the name does not resolve).
    """
    literal = ip_literal(host)
    if literal is not None:
        check_address(literal, policy)
        return str(literal)
    try:
        answers = resolve(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise InvalidInput(f"cannot resolve dataset host {host!r}") from exc
    addresses = list(dict.fromkeys(str(info[4][0]) for info in answers))
    if not addresses:
        raise InvalidInput(f"cannot resolve dataset host {host!r}")
    for address in addresses:
        try:
            check_address(address, policy)
        except DataUriRefused as exc:
            raise DataUriRefused(f"host {host!r} resolves to {exc}") from None
    return addresses[0]


def _pool(scheme: str, address: str, port: int, host: str) -> Any:
    """A one-use urllib3 pool connecting to ``address`` (already checked) for ``host``: TLS
    verifies the certificate against ``host`` (SNI too), not against the address."""
    import urllib3

    timeout = urllib3.Timeout(connect=HTTP_CONNECT_TIMEOUT, read=HTTP_READ_TIMEOUT)
    if scheme == "https":
        import certifi

        return urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=certifi.where(),
            server_hostname=host,
            assert_hostname=host,
        )
    return urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)


def fetch_http(url: str, policy: DataUriPolicy, dest: Path, resolve: Resolver = socket.getaddrinfo) -> None:
    """Download ``url`` into the file ``dest`` under ``policy``, following at most
    :data:`MAX_REDIRECTS` redirects.

    Each hop is checked like the original URI (scheme, host patterns, IP literals), its host is
    resolved and every answer checked (:func:`resolve_checked`), and the connection goes to the
    checked address (so a second DNS answer cannot differ). Credentials in the URL are sent to
    its own host only. ``resolve`` is ``socket.getaddrinfo``'s signature (tests pass their own).

    Raises:
        DataUriRefused: a hop or an address is outside the policy.
        InvalidInput: 404/410 (not found), another 4xx, TLS verification failure, a bad redirect.
        DatasetUnavailable: connection errors, timeouts, 5xx (a retry may help).
    """
    import urllib3
    from urllib3.exceptions import HTTPError as Urllib3Error
    from urllib3.exceptions import SSLError

    original = urlsplit(url)
    for _hop in range(MAX_REDIRECTS + 1):
        if classify(url, policy) != "http":
            raise DataUriRefused(f"a redirect to a non-http(s) URI ({urlsplit(url).scheme}://) is not allowed")
        parts = urlsplit(url)
        host = (parts.hostname or "").rstrip(".").lower()
        port = parts.port or (443 if parts.scheme == "https" else 80)
        address = resolve_checked(host, port, policy, resolve)
        headers = {"Host": parts.netloc.rpartition("@")[2], "Accept-Encoding": "identity"}
        if parts.username is not None and parts.hostname == original.hostname:
            auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers.update(urllib3.make_headers(basic_auth=auth))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        pool = _pool(parts.scheme, address, port, host)
        try:
            response = pool.urlopen(
                "GET",
                path,
                headers=headers,
                redirect=False,
                retries=False,
                preload_content=False,
                assert_same_host=False,
            )
            try:
                if response.status in REDIRECT_STATUSES:
                    location = response.headers.get("Location")
                    if not location:
                        raise InvalidInput(f"dataset {url}: HTTP {response.status} without a Location header")
                    url = urljoin(url, location)
                    continue
                if response.status in (404, 410):
                    raise InvalidInput(f"dataset not found: {url} (HTTP {response.status})")
                if response.status >= 500:
                    raise DatasetUnavailable(f"dataset {url}: HTTP {response.status}")
                if response.status >= 400:
                    raise InvalidInput(f"dataset {url}: HTTP {response.status}")
                with open(dest, "wb") as out:
                    for chunk in response.stream(1 << 16):
                        out.write(chunk)
                return
            finally:
                response.release_conn()
        except SSLError as exc:
            raise InvalidInput(f"dataset {url}: TLS verification of {host} failed") from exc
        except Urllib3Error as exc:
            raise DatasetUnavailable(f"cannot reach dataset {url}: {type(exc).__name__}") from exc
        finally:
            pool.close()
    raise InvalidInput(f"dataset {url}: more than {MAX_REDIRECTS} redirects")


def _download_name(uri: str, fmt: str) -> str:
    """A local file name for a download that keeps the URI's format and compression suffix."""
    name = urlsplit(uri).path.rsplit("/", 1)[-1].lower()
    suffixes = _CSV_SUFFIXES if fmt == "csv" else _PARQUET_SUFFIXES
    suffix = max((s for s in suffixes if name.endswith(s)), key=len, default=f".{fmt}")
    return f"dataset{suffix}"


@contextlib.contextmanager
def fetched(uri: str, fmt: str, policy: DataUriPolicy) -> Iterator[str]:
    """What to read a non-built-in ``uri`` from under ``policy``: the checked local path (symbolic
    links resolved), a downloaded copy of an http(s) URL (:func:`fetch_http`; removed afterwards),
    or the URI itself (s3).

    Raises :class:`DataUriRefused`, :class:`InvalidInput` or :class:`DatasetUnavailable`.
    """
    target = classify(uri, policy)
    if target == "local":
        yield check_local_path(local_path_of(uri), policy, resolve_links=True)
    elif target == "http":
        with tempfile.TemporaryDirectory(prefix="modelops-data-") as tmp:
            dest = Path(tmp) / _download_name(uri, fmt)
            fetch_http(uri, policy, dest)
            yield str(dest)
    else:
        yield uri


def load_dataset(spec: DataSpec, policy: DataUriPolicy) -> pd.DataFrame:
    """Load the frame ``spec`` points at under ``policy`` (see the module docstring).

    Raises :class:`InvalidInput` (also when the policy refuses the URI, a redirect or an address,
    and for an empty frame) or :class:`DatasetUnavailable`.
    """
    try:
        if classify(spec.uri, policy) == "builtin":
            frame = load_builtin(spec.uri)
        else:
            fmt = detect_format(spec.uri, spec.format)
            with fetched(spec.uri, fmt, policy) as source:
                frame = read_table(source, fmt, spec.uri)
    except DataUriRefused as exc:
        raise InvalidInput(f"data.uri refused by the data URI policy: {exc}") from exc
    if frame.empty:
        raise InvalidInput(f"dataset {spec.uri} has no rows")
    return frame


def dataset_hash(frame: pd.DataFrame) -> str:
    """SHA-256 (hex) of the frame's content: column names, dtypes and every value (row order matters).

    Uses ``pandas.util.hash_pandas_object`` per row, which is stable across processes and platforms.
    """
    digest = hashlib.sha256()
    digest.update("\x1f".join(f"{c}:{t}" for c, t in zip(frame.columns, frame.dtypes, strict=True)).encode())
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy(dtype=np.uint64)
    digest.update(row_hashes.tobytes())
    return digest.hexdigest()
