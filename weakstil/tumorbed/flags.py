"""Reading a detector's on/off settings from model.json strictly (review r46d).

``bool("false")`` is ``True``: a flag hand-edited into a JSON string turned a step on that it meant to turn off.
A flag is a JSON ``true`` / ``false`` (or 0 / 1, as older hand edits wrote); anything else is refused, and the
detector's loader reports it as one line naming model.json and the fix.
"""

from __future__ import annotations


def json_flag(value, key: str) -> bool:
    """``value`` of the setting ``key`` as a bool; ``ValueError`` when it is not true / false (or 0 / 1)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError(f"'{key}' is {value!r}, not true or false")
