"""Kubeconfigs of the sandbox: the API emulator's (plain HTTP, a dummy bearer token) and the real
control plane's (HTTPS, client certificates or a ServiceAccount token), and reading one back."""

from __future__ import annotations

from pathlib import Path

import yaml

from .client import Connection

CONTEXT = "modelops-sandbox"


def write_kubeconfig(path: Path, server: str, namespace: str = "default") -> Path:
    """Write a kubeconfig pointing at ``server`` and return its path.

    kubectl, the ``kubernetes`` Python client and ``kopf run`` accept it: one cluster, user and
    context named ``modelops-sandbox`` (the current context), the server URL as given (``http://``
    is fine: the emulator does not authenticate), and a dummy token so that clients that insist
    on credentials have some. The file is written with mode 0600, parents created as needed.

    Args:
        path: where to write the file.
        server: the API server URL, e.g. ``http://127.0.0.1:34567``.
        namespace: the context's default namespace.
    """
    return _write(path, CONTEXT, {"server": server}, {"token": "modelops-sandbox"}, namespace)


def _write(path: Path, name: str, cluster: dict[str, str], user: dict[str, str], namespace: str) -> Path:
    """Write a one-cluster, one-user kubeconfig whose context ``name`` is current (mode 0600)."""
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": cluster}],
        "users": [{"name": name, "user": user}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}],
        "current-context": name,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def write_tls_kubeconfig(
    path: Path,
    server: str,
    ca: Path,
    *,
    cert: Path | None = None,
    key: Path | None = None,
    token: str | None = None,
    namespace: str = "default",
    name: str = CONTEXT,
) -> Path:
    """Write a kubeconfig for an HTTPS API server (the real control plane) and return its path.

    The user authenticates with a client certificate (``cert`` and ``key`` file paths) or a bearer
    ``token`` (a ServiceAccount's). The server is verified against ``ca``. Mode 0600.
    """
    user: dict[str, str] = {}
    if cert is not None and key is not None:
        user = {"client-certificate": str(cert), "client-key": str(key)}
    if token is not None:
        user["token"] = token
    return _write(path, name, {"server": server, "certificate-authority": str(ca)}, user, namespace)


def read_connection(path: Path) -> Connection:
    """The :class:`~.client.Connection` of a kubeconfig's current context.

    Supports what :func:`write_kubeconfig` and :func:`write_tls_kubeconfig` write (server URL,
    certificate-authority file, client-certificate/client-key files, token). Relative file paths
    are resolved against the kubeconfig's directory. Raises ValueError for a kubeconfig without a
    current context, cluster or user of that shape.
    """
    config = yaml.safe_load(Path(path).read_text()) or {}
    by_name = {kind: {item["name"]: item.get(kind[:-1], {}) for item in config.get(kind) or []}
               for kind in ("clusters", "users", "contexts")}
    context = by_name["contexts"].get(config.get("current-context"))
    if not context:
        raise ValueError(f"{path}: no current context")
    cluster = by_name["clusters"].get(context.get("cluster"))
    if not cluster or not cluster.get("server"):
        raise ValueError(f"{path}: context {config.get('current-context')!r} has no cluster server")
    user = by_name["users"].get(context.get("user")) or {}
    base = Path(path).resolve().parent

    def file(value: str | None) -> str | None:
        return str(base / value) if value else None

    return Connection(url=str(cluster["server"]), ca=file(cluster.get("certificate-authority")),
                      cert=file(user.get("client-certificate")), key=file(user.get("client-key")),
                      token=user.get("token"))
