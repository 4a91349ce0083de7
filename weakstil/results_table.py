"""``OUT/results.csv`` of ``weakstil score``: one row per slide, shared by runs into the same folder.

Rows are read back by slide id (a rerun skips what is finished) and merged under the file's lock,
so two runs into one folder both keep their slides; the file is rewritten atomically.
"""

from __future__ import annotations

import logging
from pathlib import Path

from weakstil.atomic import atomic_path

log = logging.getLogger(__name__)


def read_previous(path: Path) -> dict[str, dict]:
    """The rows of ``results.csv`` by slide id (the first row of an id: later ones are clashes)."""
    if not path.is_file():
        return {}
    import pandas as pd

    try:
        table = pd.read_csv(path, dtype={"slide_id": str}, keep_default_na=False)
    except Exception:  # unreadable: redo everything
        log.warning("%s is unreadable; all slides will be scored again", path)
        return {}
    rows: dict[str, dict] = {}
    for r in table.to_dict("records"):
        rows.setdefault(str(r["slide_id"]), r)
    return rows


def write_results(path: Path, mine: dict[str, dict], clashes: list[dict], columns: list[str]) -> None:
    """Merge this run's rows into ``results.csv`` (re-read under its lock: other runs may share
    ``OUT``) and rewrite it atomically. A write that fails (disk full) leaves the old file whole."""
    import pandas as pd

    from weakstil.locks import OutputLock

    with OutputLock(path):
        rows = read_previous(path)
        rows.update(mine)
        table = pd.DataFrame([*rows.values(), *clashes], columns=columns)
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False, float_format="%.4f")
