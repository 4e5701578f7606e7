"""The upstream binaries (etcd, kube-apiserver, kube-controller-manager, kube-scheduler).

They are built from their published Go modules by ``hack/kube/build.sh`` (its ``go.mod`` pins the
Kubernetes release and, through it, etcd) into ``$MODELOPS_KUBE_CACHE`` (default
``~/.cache/modelops/kube``)``/<release>/bin``, never into the repository. A cold build takes about
ten minutes on two cores (docs/sandbox.md has the measured numbers); later starts reuse the cache.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

NAMES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
#: The real node's (``build.sh --node``): kubelet, kube-proxy, CoreDNS (``hack/coredns``) and the
#: pod sandbox's pause binary.
NODE_NAMES = ("kubelet", "kube-proxy", "coredns", "pause")


class BinariesError(RuntimeError):
    """The binaries are missing and cannot be built here (no checkout, no Go, or a failed build)."""


def hack_dir() -> Path | None:
    """``hack/kube`` of this checkout, or None when installed without one."""
    candidate = Path(__file__).resolve().parents[4] / "hack" / "kube"
    return candidate if (candidate / "go.mod").is_file() else None


def release() -> str | None:
    """The pinned Kubernetes release (``v1.37.2``) from ``hack/kube/go.mod``; None without a checkout."""
    hack = hack_dir()
    if hack is None:
        return None
    for line in (hack / "go.mod").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "k8s.io/kubernetes":
            return parts[1]
    return None


def bin_dir() -> Path | None:
    """Where the binaries of the pinned release live (whether built or not); None without a checkout."""
    rel = release()
    if rel is None:
        return None
    cache = Path(os.environ.get("MODELOPS_KUBE_CACHE") or Path.home() / ".cache" / "modelops" / "kube")
    return cache / rel / "bin"


def built(node: bool = False) -> bool:
    """Whether the control plane's four binaries (and with ``node`` the node's) are in the cache."""
    directory = bin_dir()
    names = NAMES + (NODE_NAMES if node else ())
    return directory is not None and all(os.access(directory / n, os.X_OK) for n in names)


def go_available() -> bool:
    """Whether the Go toolchain is on PATH (then a missing binary can be built)."""
    return shutil.which("go") is not None


def available() -> bool:
    """Whether the real control plane can run here: built already, or buildable (checkout + Go)."""
    return built() or (hack_dir() is not None and go_available())


def ensure(echo: Callable[[str], None] = lambda line: print(line, file=sys.stderr), node: bool = False) -> Path:
    """Build what is missing (progress lines go to ``echo``) and return the bin directory; with
    ``node`` also the real node's kubelet, kube-proxy and pause (``build.sh --node``).

    Raises BinariesError when there is no checkout, no Go toolchain, or the build fails (with the
    end of its output).
    """
    hack, directory = hack_dir(), bin_dir()
    if hack is None or directory is None:
        raise BinariesError("the real control plane is built from hack/kube of a modelops checkout; none found")
    if built(node):
        return directory
    if not go_available():
        raise BinariesError("the real control plane is built from Go modules, and `go` is not on PATH "
                            "(install Go, or use --control-plane emulator)")
    started = time.monotonic()
    echo(f"building the Kubernetes control plane {release()} from its Go modules into {directory} "
         "(once; 10-25 min on 2 cores)")
    tail: list[str] = []
    argv = ["bash", str(hack / "build.sh"), *(["--node"] if node else [])]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip()
            tail = ([*tail, line])[-30:]
            if line.startswith("kube build:"):
                echo(f"  {line} [{time.monotonic() - started:.0f}s]")
    if proc.returncode != 0 or not built(node):
        raise BinariesError(f"hack/kube/build.sh failed (exit {proc.returncode}):\n" + "\n".join(tail))
    echo(f"control plane built in {time.monotonic() - started:.0f}s")
    return directory
