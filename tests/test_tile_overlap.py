"""A dense tile grid (an overlap near the tile size) is allowed but said up front."""

from __future__ import annotations

from conftest import CMU, run_cli

from weakstil.tiles import TilingParams


def test_an_overlap_that_multiplies_the_tiles_over_16_fold_is_warned_about():
    assert TilingParams(overlap_px=0).dense_warning() is None
    assert TilingParams(overlap_px=168).dense_warning() is None  # a 56 px stride: exactly 16 times
    assert "about 17 times" in TilingParams(overlap_px=169).dense_warning()
    assert "by 1 px: about 50,176 times" in TilingParams(overlap_px=223).dense_warning()


def test_tile_says_so_once_and_still_tiles(tmp_path):
    proc = run_cli("tile", CMU, "--out", tmp_path / "dense", "--overlap", "200")
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())  # the log wraps long lines
    assert said.count("moves each tile by 24 px: about 87 times the tiles") == 1, said
    assert (tmp_path / "dense" / "CMU-1-Small-Region.h5").is_file()
    usual = run_cli("tile", CMU, "--out", tmp_path / "usual", "--overlap", "112")
    assert usual.returncode == 0 and "times the tiles" not in usual.stderr
