"""Strict weight loading shared by every model: a checkpoint must match key for key."""

from __future__ import annotations

from typing import Any


def state_dict_diff(expected: dict[str, Any], state: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """Sorted (missing, unexpected, wrong-shape) keys of ``state`` against ``expected``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shape = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    return missing, unexpected, shape


def kind_mismatches(expected: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """Sorted keys where ``expected`` holds floating-point values and ``state`` does not (integers,
    booleans, complex numbers): ``load_state_dict`` would cast them silently, a quantised or damaged
    checkpoint giving other features. Another float precision (fp16, bf16) is the same kind."""
    return sorted(k for k in set(expected) & set(state) if expected[k].is_floating_point()
                  and (not state[k].is_floating_point() or state[k].is_complex()))
