"""The two Dockerfiles: pinned slim base, multi-stage, non-root, entrypoints that exist, context kept small."""

from __future__ import annotations

import json
import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelops import contract
from modelops.builders.common import RUNTIME_GID, RUNTIME_UID
from modelops.settings import DEFAULT_RUNTIME_IMAGE
from tests.conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
DOCKERFILES = {
    "runtime": (ROOT / "serving_image" / "Dockerfile", ["modelops-runtime"], "runtime"),
    "operator": (ROOT / "operator" / "Dockerfile", ["modelops", "operator", "run"], "operator"),
}
BUILD_TOOLS = re.compile(r"\b(apt-get|apk|yum|dnf|gcc|g\+\+|make|build-essential|pip wheel|curl|wget)\b")
OCI_LABELS = {"title", "description", "version", "revision", "created", "licenses"}


@dataclass
class Stage:
    """One build stage: its base image and instructions."""

    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(path: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuations joined, comments dropped).

    ``${NAME}`` references to global build arguments are replaced by their defaults.
    """
    logical: list[str] = []
    buf = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        logical.append(buf + stripped)
        buf = ""
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical:
        op, _, rest = line.partition(" ")
        op = op.upper()
        if op == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key.strip()] = default.strip()
        elif op == "FROM":
            words = rest.split()
            base = re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: args[m.group(1) or m.group(2)], words[0])
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        else:
            assert stages, f"{path}: {op} before FROM"
            # build arguments re-declared in a stage take the global default
            rest = re.sub(r"\$\{(\w+)\}", lambda m: args.get(m.group(1), m.group(0)), rest)
            stages[-1].instructions.append((op, rest))
    return args, stages


@pytest.fixture(params=sorted(DOCKERFILES))
def dockerfile(request: pytest.FixtureRequest) -> tuple[str, Path, list[str], str]:
    path, entrypoint, extra = DOCKERFILES[request.param]
    return request.param, path, entrypoint, extra


def test_base_images_are_pinned_slim_python(dockerfile: tuple[str, Path, list[str], str]) -> None:
    _, path, _, _ = dockerfile
    _, stages = parse(path)
    assert len(stages) >= 2, "multi-stage: wheels are built apart from the final image"
    requires = PYPROJECT["project"]["requires-python"]
    for stage in stages:
        repo, _, tag = stage.base.partition(":")
        assert repo == "python" and tag and tag != "latest", stage.base
        assert re.fullmatch(r"3\.\d+\.\d+-slim(-\w+)?", tag), f"pin a full version tag: {stage.base}"
        assert requires == ">=3.11" and tag.startswith("3.11."), "the base matches requires-python"
    assert len({s.base for s in stages}) == 1, "builder and final stage share the Python build"


def test_final_stage_is_non_root_and_minimal(dockerfile: tuple[str, Path, list[str], str]) -> None:
    _, path, entrypoint, extra = dockerfile
    _, stages = parse(path)
    final = stages[-1]
    ops = [op for op, _ in final.instructions]
    users = [rest for op, rest in final.instructions if op == "USER"]
    assert users and ops.index("USER") > max(i for i, op in enumerate(ops) if op == "RUN"), "USER after every RUN"
    uid, _, gid = users[-1].partition(":")
    assert (int(uid), int(gid)) == (RUNTIME_UID, RUNTIME_GID), "numeric non-root user matching the pods"
    assert "HEALTHCHECK" not in ops and all("HEALTHCHECK" not in [o for o, _ in s.instructions] for s in stages)
    runs = " ".join(rest for op, rest in final.instructions if op == "RUN")
    assert not BUILD_TOOLS.search(runs), f"build tools in the final stage: {runs}"
    assert f'"modelops[{extra}]"' in runs and "--no-index" in runs
    assert extra in PYPROJECT["project"]["optional-dependencies"]
    copies = [rest for op, rest in final.instructions if op in ("COPY", "ADD")]
    assert not copies, f"the final stage installs wheels only: {copies}"
    assert json.loads(next(rest for op, rest in final.instructions if op == "ENTRYPOINT")) == entrypoint


def test_entrypoints_are_declared_console_scripts(dockerfile: tuple[str, Path, list[str], str]) -> None:
    name, _, entrypoint, _ = dockerfile
    scripts = PYPROJECT["project"]["scripts"]
    assert entrypoint[0] in scripts
    if name == "runtime":
        assert entrypoint[0] == contract.RUNTIME_ENTRYPOINT
        from modelops_runtime.__main__ import COMMANDS

        assert {contract.CMD_TRAIN, contract.CMD_SERVE, contract.CMD_DRIFT} <= set(COMMANDS)
    else:
        from modelops.cli import app

        result = CliRunner().invoke(app, [*entrypoint[1:], "--help"])
        assert result.exit_code == 0, result.output
        assert "--liveness" in result.output


def test_oci_labels(dockerfile: tuple[str, Path, list[str], str]) -> None:
    _, path, _, _ = dockerfile
    _, stages = parse(path)
    labels: dict[str, str] = {}
    for op, rest in stages[-1].instructions:
        if op == "LABEL":
            labels.update(dict(item.split("=", 1) for item in shlex.split(rest)))
    present = {k.removeprefix("org.opencontainers.image.") for k in labels if k.startswith("org.opencontainers.image.")}
    assert OCI_LABELS <= present
    assert labels["org.opencontainers.image.licenses"] == PYPROJECT["project"]["license"]


def test_image_names_have_no_registry_host() -> None:
    assert DEFAULT_RUNTIME_IMAGE == f"modelops-runtime:{PYPROJECT['project']['version']}"
    assert "/" not in DEFAULT_RUNTIME_IMAGE


def _dockerignore_excludes(patterns: list[str], path: str) -> bool:
    """Docker's rule: the last matching pattern wins; ``!`` re-includes; ``**`` spans directories."""
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        regex = re.escape(pattern.strip("/")).replace(r"\*\*", "\0").replace(r"\*", "[^/]*").replace("\0", ".*")
        if re.fullmatch(regex, path) or re.match(regex + "/", path):
            excluded = not negate
    return excluded


def test_dockerignore_keeps_the_context_small_but_complete() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    needed = {
        "pyproject.toml",
        "README.md",
        "operator/modelops/__init__.py",
        "serving_image/modelops_runtime/__main__.py",
    }
    for dockerfile, _, _ in DOCKERFILES.values():
        _, stages = parse(dockerfile)
        for op, rest in stages[0].instructions:
            if op == "COPY":
                for src in rest.split()[:-1]:
                    needed.add(src.rstrip("/") + ("/__init__.py" if "/" in src else ""))
    for path in needed:
        assert (ROOT / path).exists(), path
        assert not _dockerignore_excludes(patterns, path), f"{path} is excluded from the build context"
    for path in (
        ".venv/bin/python",
        "tests/conftest.py",
        ".git/HEAD",
        "helm/modelops/Chart.yaml",
        "x/__pycache__/a.pyc",
    ):
        assert _dockerignore_excludes(patterns, path), f"{path} should not be sent to the Docker daemon"
