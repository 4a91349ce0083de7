"""Strict weight loading shared by every model: a checkpoint must match key for key."""

from __future__ import annotations

from typing import Any


def state_dict_diff(expected: dict[str, Any], state: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """Sorted (missing, unexpected, wrong-shape) keys of ``state`` against ``expected``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shape = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    return missing, unexpected, shape
