"""Hunt 29a: runs that would exhaust memory are refused up front with one line (exit 2).

``--overlap 223`` at 224 px (a 1 px stride) only warned: on the 1.5 mm² CMU region it laid 5.4
million grid tiles (2.5 million kept) in 135 s at a 1 GB peak, so a whole slide (hundreds of GB)
ran until the machine's out-of-memory killer. The grid's arrays are now part of the memory check.
"""

from __future__ import annotations

from conftest import CMU, run_cli
from weakstil import resources, settings
from weakstil.tiling import TileGrid

GB = 1024**3


def test_grid_bytes_of_a_whole_slide_at_a_1px_stride():
    """The arithmetic itself: a 20 x 15 mm section at 0.25 µm/px scanned, tiled at 0.5 µm/px."""
    from weakstil.tiling import GRID_BYTES_PER_TILE, grid_bytes

    dense = TileGrid(80_000, 60_000, 0.25, 0.5, 224, 223)
    usual = TileGrid(80_000, 60_000, 0.25, 0.5, 224, 0)
    assert len(dense) > 1_000_000_000 and len(usual) < 25_000
    assert grid_bytes(len(dense), 0.5) > 150 * GB  # more than a workstation has
    assert grid_bytes(len(usual), 0.5) < 5_000_000  # a default grid: nothing
    assert grid_bytes(1000, 0.0) == 1000 * GRID_BYTES_PER_TILE


def _available(monkeypatch, gb: float):
    """The machine as if ``gb`` GB were available (the check reads resources.available_memory)."""
    monkeypatch.setattr(resources, "available_memory", lambda device="cpu": int(gb * GB))


def test_tile_at_overlap_223_is_refused_in_one_line_naming_a_workable_overlap(tmp_path, monkeypatch):
    # the CMU region's 1 px-stride grid at 1 µm/px: 1.1 million tiles, about 0.2 GB; a machine with
    # 0.1 GB to spare refuses it
    _available(monkeypatch, 0.1 / settings.MEMORY_SHARE)
    r = run_cli("tile", CMU, "--out", tmp_path / "t", "--overlap", "223", "--mpp", "1")
    assert r.returncode == 2, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "--overlap 223" in r.stderr and "tiles" in r.stderr, r.stderr
    import re

    fix = re.search(r"pass --overlap (\d+) or less", " ".join(r.stderr.split()))
    assert fix, r.stderr
    suggested = int(fix.group(1))
    assert 0 < suggested < 223
    assert not list((tmp_path / "t").glob("*.h5"))  # nothing written
    # the value named works on the same machine, and an ordinary overlap is untouched
    r2 = run_cli("tile", CMU, "--out", tmp_path / "ok", "--overlap", "112", "--mpp", "1")
    assert r2.returncode == 0, r2.stderr
    assert len(list((tmp_path / "ok").glob("*.h5"))) == 1


def test_embed_refuses_the_grid_too(tmp_path, monkeypatch):
    """Every command that lays a grid goes through the same check (embed before any model is loaded)."""
    _available(monkeypatch, 16)  # a workstation; the CMU region read as a whole section (below)
    r = run_cli("embed", CMU, "--out", tmp_path / "f", "--overlap", "223", "--slide-mpp", "5", "--allow-upsample",
                "--encoder", "small-cnn",
                "--weights", "random", "--batch-size", "4")
    assert r.returncode == 2, r.stderr
    assert "--overlap 223" in r.stderr and "pass --overlap" in " ".join(r.stderr.split()), r.stderr
    assert not list((tmp_path / "f").glob("*.h5"))


def test_a_whole_slide_sized_grid_is_refused_on_a_workstation(tmp_path, monkeypatch):
    """The CMU region read as 5 µm/px (11 x 15 mm, a whole section) at a 1 px stride: 660 million
    tiles, about 100 GB; a 16 GB workstation refuses it in seconds instead of filling its memory."""
    _available(monkeypatch, 16)
    r = run_cli("tile", CMU, "--out", tmp_path / "t", "--overlap", "223", "--slide-mpp", "5", "--allow-upsample")
    assert r.returncode == 2, r.stderr
    text = " ".join(r.stderr.split())
    assert text.count("error:") == 1 and "--overlap 223" in text and "pass --overlap" in text, text
    assert not list((tmp_path / "t").glob("*.h5"))


def test_synth_of_a_slide_too_large_for_memory_is_refused_up_front(tmp_path, monkeypatch):
    """``synth --size-mm 30 30`` holds about 4 GB per slide (measured: 16 mm, 1.5 GB); with 2 GB to
    spare it is refused in one line before any folder is made, and a small slide still runs."""
    from weakstil.synth.generator import synth_bytes

    assert 3.5 * GB < synth_bytes((30, 30)) < 6 * GB and synth_bytes((2.5, 2.5)) < GB
    _available(monkeypatch, 2 / settings.MEMORY_SHARE)
    r = run_cli("synth", "--out", tmp_path / "big", "-n", "1", "--size-mm", "30", "30")
    assert r.returncode == 2, r.stderr
    text = " ".join(r.stderr.split())
    assert text.count("error:") == 1 and "--size-mm 30 30" in text and "smaller --size-mm" in text, text
    assert not (tmp_path / "big").exists()
    r = run_cli("synth", "--out", tmp_path / "small", "-n", "1", "--size-mm", "0.5", "0.5")
    assert r.returncode == 0, r.stderr
    assert len(list((tmp_path / "small" / "slides").glob("*.tiff"))) == 1
