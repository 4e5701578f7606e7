"""Durations of monitoring windows (``30m``, ``24h``, ``7d``, ``1h30m``), as ModelMonitor specs write them."""

from __future__ import annotations

import re
from datetime import timedelta

_PART = re.compile(r"([0-9]+)(s|m|h|d)")
_WHOLE = re.compile(r"^([0-9]+(s|m|h|d))+$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """Parse ``<n><unit>...`` (units s, m, h, d; parts add up) into a timedelta.

    Raises ``ValueError`` for anything else, or for a zero duration.
    """
    if not _WHOLE.match(text or ""):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30m, 24h, 7d or 1h30m")
    seconds = sum(int(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(text))
    if seconds == 0:
        raise ValueError(f"invalid duration {text!r}: must be positive")
    return timedelta(seconds=seconds)
