"""Semantic versions (https://semver.org) with the ``semver`` package: parsing, ordering, bumping."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal

import semver

ChangeType = Literal["major", "minor", "patch"]


def parse_semver(text: str) -> semver.Version:
    """Parse ``MAJOR.MINOR.PATCH[-pre][+build]`` (a leading ``v`` is accepted); raises ``ValueError``."""
    candidate = text.strip()
    if candidate[:1] in ("v", "V"):
        candidate = candidate[1:]
    return semver.Version.parse(candidate)


def is_semver(text: str | None) -> bool:
    """True when ``text`` parses as a semantic version."""
    if not text:
        return False
    try:
        parse_semver(text)
    except ValueError:
        return False
    return True


def max_semver(versions: Iterable[str | None]) -> str | None:
    """The highest of ``versions`` by semver precedence (1.10.0 > 1.9.0 > 1.9.0-rc.1); unparsable ones are skipped.

    Returns the original string of the winner, or None when none parses.
    """
    best: tuple[semver.Version, str] | None = None
    for text in versions:
        if not text:
            continue
        try:
            parsed = parse_semver(text)
        except ValueError:
            continue
        if best is None or parsed > best[0]:
            best = (parsed, text)
    return best[1] if best else None


def bump_version(current: str | None, change_type: ChangeType) -> str:
    """The next version after ``current`` for a ``major``/``minor``/``patch`` change.

    ``None`` (nothing released yet) bumps from 0.0.0, so the first version is 1.0.0, 0.1.0 or
    0.0.1. A pre-release is finalised when that is the requested change, as npm's ``semver.inc``
    does: ``1.2.0-rc.1`` + minor → ``1.2.0`` (+ major → ``2.0.0``), ``1.2.3-rc.1`` + patch → ``1.2.3``.
    The result is always greater than ``current``; build metadata is dropped. Raises ``ValueError``
    for an unknown change type or an unparsable ``current``.
    """
    base = parse_semver(current) if current else semver.Version(0, 0, 0)
    pre = base.prerelease is not None
    if change_type == "major":
        done = pre and base.minor == 0 and base.patch == 0
        return str(base.finalize_version() if done else base.bump_major())
    if change_type == "minor":
        done = pre and base.patch == 0
        return str(base.finalize_version() if done else base.bump_minor())
    if change_type == "patch":
        return str(base.finalize_version() if pre else base.bump_patch())
    raise ValueError(f"change_type must be major, minor or patch, got {change_type!r}")
