"""Hunt 30c: leftover defects of hunt 29 and ``weakstil score`` batches run from outside.

- A tile grid too large for memory under ``score``: its refusal said ``pass --overlap N``, an
  option ``score`` does not have (its tiling is its model's), and stopped the whole batch (exit 2);
  now it is that slide's error row naming what mends it, and every ``--flag`` a refusal suggests
  parses on the command that printed it.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from conftest import CMU, run_cli
from weakstil import resources, settings

GB = 1024**3
DEMO = Path("/work/scratch/s55/demo7")
MODEL = DEMO / "model"
needs_demo = pytest.mark.skipif(not (MODEL / "model.json").is_file(), reason="needs the demo model of today's code")


def _available(monkeypatch, gb: float):
    monkeypatch.setattr(resources, "available_memory", lambda device="cpu": int(gb * GB))


def _suggested_flags(fix: str) -> tuple[list[str], dict[str, list[str]]]:
    """The ``--flags`` a fix names for the command itself, and those inside a quoted
    ``'weakstil CMD ...'`` (another command's)."""
    others: dict[str, list[str]] = {}
    for cmd, rest in re.findall(r"'weakstil ([a-z-]+)([^']*)'", fix):
        others.setdefault(cmd, []).extend(re.findall(r"--[a-z][a-z-]*", rest))
    own = re.findall(r"--[a-z][a-z-]*", re.sub(r"'weakstil [^']*'", "", fix))
    return own, others


def _options_of(command: str) -> set[str]:
    import typer.main

    from weakstil.cli import app

    group = typer.main.get_command(app)
    cmd = group.get_command(None, command)  # type: ignore[attr-defined]
    return {opt for p in cmd.params for opt in (*p.opts, *p.secondary_opts)}


def _error_fix(stderr: str) -> str:
    text = " ".join(stderr.split())
    assert text.count("error:") == 1, text
    return text.split("Fix:", 1)[1]


def test_tile_grid_refusal_suggests_an_overlap_of_at_most_half_a_tile_and_flags_of_tile(tmp_path, monkeypatch):
    """The CMU region at 1 µm/px and a 1 px stride with 0.1 GB to spare: the largest overlap whose grid
    fits was named (about 220 px: still thousands of times the tiles and the time of no overlap);
    now no more than half the tile, with the factor said, and each flag parses on ``tile``."""
    _available(monkeypatch, 0.1 / settings.MEMORY_SHARE)
    r = run_cli("tile", CMU, "--out", tmp_path / "t", "--overlap", "223", "--mpp", "1")
    assert r.returncode == 2, r.stderr
    fix = _error_fix(r.stderr)
    suggested = int(re.search(r"pass --overlap (\d+) or less", fix).group(1))
    assert suggested <= 112, fix
    assert "times those of no overlap and as many times the time" in fix, fix
    own, others = _suggested_flags(fix)
    assert own and set(own) <= _options_of("tile"), (own, fix)


@needs_demo
def test_score_grid_refusal_is_that_slides_error_with_flags_score_has(tmp_path, monkeypatch):
    """``score`` reads at its model's tiling: a slide whose grid did not fit stopped the whole batch
    (exit 2) with the fix ``pass a larger --mpp or --tile-size`` (or ``--overlap N``), options score
    refuses as unknown. Now it is that slide's error row (exit 1), the next slide is still tried, and
    each flag of the fix parses where it is named. The grid is made to weigh a million times its bytes
    (a whole section at a fine stride) instead of asking the machine to be small."""
    from weakstil import tiles
    import pandas as pd

    real = tiles.grid_bytes
    monkeypatch.setattr(tiles, "grid_bytes", lambda n, share: real(n, share) * 10**6)
    slides = tmp_path / "slides"
    slides.mkdir()
    for name in ("a", "b"):
        shutil.copy(CMU, slides / f"{name}.svs")
    r = run_cli("score", slides / "*.svs", "--model", MODEL, "--out", tmp_path / "out")
    assert r.returncode == 1, r.stderr
    errors = [ln for ln in " ".join(r.stderr.split()).split("error: ")[1:]]
    assert len(errors) == 2 and all("Fix:" in e and "more memory" in e for e in errors), r.stderr
    for e in errors:
        own, others = _suggested_flags(e.split("Fix:", 1)[1])
        assert set(own) <= _options_of("score"), (own, e)
        for cmd, flags in others.items():
            assert set(flags) <= _options_of(cmd), (cmd, flags, e)
    table = pd.read_csv(tmp_path / "out" / "results.csv", dtype={"slide_id": str})
    assert list(table["status"]) == ["error", "error"] and table["error"].str.contains("more memory").all()
