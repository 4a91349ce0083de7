"""Text cells of the tables WeakSTIL writes, safe to open in a spreadsheet (OWASP "CSV injection").

A slide id is its file name, and a cohort's group or a user's column is any text: a cell that begins
with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return is read by a spreadsheet as a formula
(``=HYPERLINK(...)`` in a file name ran as one). Such a cell is written with one ``'`` in front, as
OWASP advises; a spreadsheet shows the text, and WeakSTIL's own readers take the ``'`` off again, so
``results.csv`` (re-read by the next ``score``, ``report --scores``, ``evaluate --oof``) gives back
the slide id it was given. A plain number (``-5``, ``+1.5e3``) is no formula and is left as it is: a
slide named ``-5.svs`` stays ``-5``.

The mark is reversible: a text that already begins with ``'`` followed by such a character (after any
further ``'``) gets one more, and a reader takes exactly one off. Only a file written before this
(with such a cell raw) and a slide id of the form ``'=...`` would lose its first ``'`` on reading.
"""

from __future__ import annotations

import re

#: The first characters a spreadsheet takes as the start of a formula (OWASP).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_NUMBER = re.compile(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?")


def _marked_form(text: str) -> bool:
    return text.lstrip("'").startswith(FORMULA_STARTS)


def defuse(value: object) -> object:
    """``value`` as it is written to a CSV cell: text a spreadsheet would take as a formula with
    ``'`` in front; anything else (numbers, plain text) unchanged."""
    if isinstance(value, str) and _marked_form(value) and not _NUMBER.fullmatch(value):
        return "'" + value
    return value


def restore(value: object) -> object:
    """The inverse of :func:`defuse`, for a cell read back from a file WeakSTIL wrote."""
    if isinstance(value, str) and value.startswith("'") and _marked_form(value):
        return value[1:]
    return value


def restore_id(slide_id: str, path: str = "") -> str:
    """A cohort CSV's slide id, typed or copied from a ``results.csv``: the escaped form ``'=x`` (:func:`defuse`)
    is the slide ``=x``, whose file is ``=x.svs``; a researcher who pasted results.csv's ids into a label CSV
    kept the ``'``, and train, evaluate and ``--oof`` matched no slide ('1 cohort slides have no prediction:
    '=b'). Exactly one ``'`` comes off, as :func:`restore` takes it; an id whose slide file (``path``) is
    itself named ``'=x`` stays as written."""
    plain = restore(slide_id)
    if plain == slide_id or not path:
        return plain
    from weakstil.slide import slide_id_from_path

    return slide_id if slide_id_from_path(path) == slide_id else plain


def _text_columns(table):
    return [c for c in table.columns if table[c].dtype == object or str(table[c].dtype) in ("string", "str")]


def defused(table):
    """A copy of the DataFrame ``table`` with its text cells (and column names) defused."""
    out = table.copy()
    for c in _text_columns(out):
        out[c] = out[c].map(defuse)
    out.columns = [defuse(c) for c in out.columns]
    return out


def restored(table):
    """The DataFrame ``table`` read from a file WeakSTIL wrote, its text cells restored (in place)."""
    table.columns = [restore(c) for c in table.columns]
    for c in _text_columns(table):
        table[c] = table[c].map(restore)
    return table


def read_csv(path, **kw):
    """``pandas.read_csv`` of a table WeakSTIL wrote, its text cells restored."""
    import pandas as pd

    return restored(pd.read_csv(path, **kw))
