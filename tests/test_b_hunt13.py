"""Fault hunt 13, area b (encoders, embed, pretrain, tile's rewrite): what an outside tester found,
as regression tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest



@pytest.fixture(scope="module")
def disc_slide(tmp_path_factory) -> Path:
    """A small brightfield slide: a pink disc of tissue with dark nuclei on white glass, 0.5 µm/px."""
    from conftest import write_tiff_slide

    rng = np.random.default_rng(0)
    rgb = np.full((1024, 1024, 3), 240, np.uint8)
    yy, xx = np.mgrid[:1024, :1024]
    disc = (yy - 512) ** 2 + (xx - 512) ** 2 < 380**2
    rgb[disc] = (205, 120, 180)
    rgb[disc & (rng.random(disc.shape) < 0.1)] = (80, 40, 120)
    return write_tiff_slide(tmp_path_factory.mktemp("hunt13b") / "S1.tiff", rgb, mpp=0.5, levels=2)


# --- B0 (hunt 12 A10 leftover): tile's failed rewrite keeps the earlier .h5 and its picture -----------------
@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_tile_rewrite_keeps_the_earlier_pair(disc_slide, tmp_path, monkeypatch, failure):
    """A rerun with other settings wrote the new overlay PNG, then the .h5 write failed (a full disk,
    Ctrl-C): the new PNG was deleted and the earlier .h5 stayed without its picture. Now the earlier
    pair stays, and nothing new or set aside is left beside it."""
    import weakstil.tiles as tiles_mod
    from weakstil.tiles import TilingParams, tile_slide_to_dir

    out = tmp_path / "tiles"
    tile_slide_to_dir(disc_slide, out, TilingParams(tile_px=64))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".S1.h5.lock"}
    assert sorted(before) == ["S1.h5", "S1_tiles.png"]
    real_write = tiles_mod.write_tiles_h5

    def failing_write(tiles, path):
        real_write(tiles, path.with_name("partial.h5"))  # the work done, then the file system gives out
        path.with_name("partial.h5").unlink()
        raise failure

    monkeypatch.setattr(tiles_mod, "write_tiles_h5", failing_write)
    with pytest.raises(type(failure)):
        tile_slide_to_dir(disc_slide, out, TilingParams(tile_px=64, tissue_threshold=0.05))
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".S1.h5.lock"}
    assert after == before
    monkeypatch.setattr(tiles_mod, "write_tiles_h5", real_write)
    _, tiles = tile_slide_to_dir(disc_slide, out, TilingParams(tile_px=64, tissue_threshold=0.05))
    assert len(tiles.coords) > 0 and (out / "S1_tiles.png").read_bytes() != before["S1_tiles.png"]
