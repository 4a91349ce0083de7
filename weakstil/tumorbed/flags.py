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


def json_number(value, key: str, integer: bool = False) -> float | int:
    """``value`` of the numeric setting ``key``: a finite JSON number (an integer where ``integer``); ``ValueError``
    otherwise (``float("0.06")``, ``float(True)`` and ``int(4.7)`` read a hand-edited string, flag or fraction as a
    setting; ``NaN`` made every comparison false: review r47d)."""
    import math

    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"'{key}' is {value!r}, not a finite number")
    if integer:
        if value != int(value):
            raise ValueError(f"'{key}' is {value!r}, not a whole number")
        return int(value)
    return float(value)
