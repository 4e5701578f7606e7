"""A kubeconfig for the sandbox's API emulator (plain HTTP, a dummy bearer token)."""

from __future__ import annotations

from pathlib import Path

import yaml

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
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server}}],
        "users": [{"name": CONTEXT, "user": {"token": "modelops-sandbox"}}],
        "contexts": [{"name": CONTEXT, "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace}}],
        "current-context": CONTEXT,
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
