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


def gate_chosen(record: dict, off: list[float], on: list[float], max_loss: float, said: str) -> bool:
    """Whether a step read off the slide is kept (the aggregate, lobule and mucin steps: hunts 46d, 47d, 47f): on
    unless it costs the annotated slides ``max_loss`` of mean held-out Dice. ``record`` (the step's search record in
    model.json) is told the means and the choice; ``said`` names the step in the log line."""
    import logging

    import numpy as np

    if not off:
        record["chosen"] = "off: no annotated slide could be read"
        return False
    loss = float(np.mean(off)) - float(np.mean(on))
    record.update(dice_off=round(float(np.mean(off)), 4), dice_on=round(float(np.mean(on)), 4))
    chosen = loss < max_loss
    record["chosen"] = "on" if chosen else f"off: costs {loss:.4f} >= {max_loss:g} of Dice"
    logging.getLogger(__name__).info("%s: %s (held-out Dice %.4f -> %.4f on %d slides)", said, record["chosen"],
                                     record["dice_off"], record["dice_on"], len(off))
    return chosen


def rule_from_json(cls, values: dict | None, section: str):
    """A step's rule (a dataclass of a bool ``enabled`` and numbers) from its model.json ``section``: absent or empty,
    the defaults (off: a detector from before the step); a flag true / false, a number a finite JSON number (whole
    where the field is an ``int``), an unknown key refused — a misspelt setting was dropped silently and its default
    used (review r47d). ``ValueError``, said by the detector's loader as one line naming model.json."""
    from dataclasses import fields

    if not values:
        return cls()
    kinds = {f.name: getattr(f.type, "__name__", str(f.type)) for f in fields(cls)}  # "int" as a string, too
    unknown = sorted(set(values) - set(kinds))
    if unknown:
        raise ValueError(f"'{section}' holds unknown settings {unknown}")
    return cls(**{k: json_flag(v, f"{section} {k}") if kinds[k] == "bool"
                  else json_number(v, f"{section} {k}", integer=kinds[k] == "int") for k, v in values.items()})
