"""Errors of the training runtime (shared with the other batch commands, see modelops_runtime.jobrun)."""

from __future__ import annotations

from ..jobrun import InvalidInput

__all__ = ["InvalidInput"]
