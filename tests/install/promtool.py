"""promtool (Prometheus' rule checker and rule unit-test runner) for the alert tests.

Which promtool, in order: ``MODELOPS_PROMTOOL``; one on PATH (Debian's ``prometheus`` package ships
``/usr/bin/promtool``, 2.42 on bookworm, which ``.ci/run`` installs: seconds instead of a build);
one built before into ``~/.cache/modelops/bin/promtool-<version>/`` (``XDG_CACHE_HOME`` respected);
else it is built there once with ``go install github.com/prometheus/prometheus/cmd/promtool@<version>``
(through the Go module proxy; about 25 min cold on a loaded 2-core machine). Without any of them the
tests are skipped with a reason saying so (``make test`` prints skip reasons).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

#: Go module version of Prometheus 3.16.0 (Prometheus 3.x publishes its module as v0.3xx.y).
PROMTOOL_VERSION = "v0.316.0"
PROMTOOL_MODULE = "github.com/prometheus/prometheus/cmd/promtool"
#: A cold build (module download + compile) took ~25 min on a loaded 2-core machine.
BUILD_TIMEOUT_SECONDS = 3600


def _cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "modelops" / "bin" / f"promtool-{PROMTOOL_VERSION}"


def _go() -> str | None:
    found = shutil.which("go")
    if found:
        return found
    default = Path("/usr/local/go/bin/go")  # the official tarball's place, often not on PATH
    return str(default) if default.is_file() else None


def promtool() -> Path:
    """Path of a promtool binary, building it into the cache on first use.

    Skips the calling test when no promtool is given and Go is absent; fails it when the build fails.
    """
    given = os.environ.get("MODELOPS_PROMTOOL") or shutil.which("promtool")
    if given:
        return Path(given)
    target = _cache_dir()
    exe = target / "promtool"
    if exe.is_file():
        return exe
    go = _go()
    if go is None:
        pytest.skip(
            f"the alert rule tests need promtool, built with Go ({PROMTOOL_MODULE}@{PROMTOOL_VERSION}): "
            "Go is not installed; install it or set MODELOPS_PROMTOOL to a promtool binary"
        )
    target.mkdir(parents=True, exist_ok=True)
    with (target / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one build at a time (parallel test runs wait for it)
        if not exe.is_file():
            env = {**os.environ, "GOBIN": str(target), "GOFLAGS": "-mod=mod"}
            result = subprocess.run(
                [go, "install", f"{PROMTOOL_MODULE}@{PROMTOOL_VERSION}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_SECONDS,
                check=False,
            )
            if result.returncode != 0 or not exe.is_file():
                pytest.fail(f"building promtool failed ({result.returncode}):\n{result.stderr[-3000:]}")
    return exe
