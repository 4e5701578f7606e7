"""The status merge patch: what it writes is what the next read returns."""

from __future__ import annotations

from typing import Any

import pytest

from modelops.reconcile.status import status_patch
from tests.operator.fake_kube import merge_patch

CASES = [
    ({}, {"phase": "Ready"}),
    ({"phase": "Failed", "trainingJob": {"name": "j", "failureReason": "bad"}}, {"trainingJob": {"name": "j"}}),
    ({"a": {"b": {"c": 1, "d": 2}}}, {"a": {"b": {"c": 1}}, "e": [1]}),
    ({"a": {"b": 1}}, {"a": 3}),
    ({"a": 3}, {"a": {"b": 1}}),
    ({"conditions": [{"type": "Ready", "reason": "x"}]}, {"conditions": [{"type": "Ready"}]}),
]


@pytest.mark.parametrize(("old", "new"), CASES)
def test_the_patch_turns_old_into_new(old: dict[str, Any], new: dict[str, Any]) -> None:
    patch = status_patch(old, new)
    assert patch is not None and merge_patch(old, patch) == new


def test_nothing_to_write() -> None:
    assert status_patch({"a": {"b": 1}}, {"a": {"b": 1}}) is None
    assert status_patch(None, {}) is None
