"""Hunt 39e: gaps the hunt-39 helpers noticed, each now decided where it starts.

1. ``weakstil embed`` without ``--overwrite`` into a folder whose caches were all made at another stain
   normalisation compared only the encoder and tiling up front: the demo's two caches (card: macenko)
   failed one by one with ``--stain-norm none`` ("they are kept"), while the run's new slide was embedded
   at ``none`` (exit 1), a folder of two stain normalisations; with ``--no-tile-stats`` the two were "up
   to date" and the new slide's cache had no tile statistics (exit 0), a folder with and without them.
   Now one usage line before any work (exit 2) naming the folder, both settings and the fix; nothing written.
"""

from __future__ import annotations

import shutil

import pytest

from conftest import run_cli


def _said(stderr: str) -> str:
    return " ".join(stderr.split())


@pytest.mark.parametrize("option, named, fix", [
    (("--stain-norm", "none"), "stain normalisation macenko not none", "give the --stain-norm the folder was made with"),
    (("--no-tile-stats",), "tile statistics yes not no", "leave out --no-tile-stats")])
def test_embed_into_a_folder_of_another_stain_norm_or_tile_stats_is_refused(tmp_path, small_demo, option, named,
                                                                            fix):
    demo = small_demo[0]
    caches = sorted((demo / "features").glob("*.h5"))
    folder = tmp_path / "features"
    folder.mkdir()
    for cache in caches[:2]:
        shutil.copy2(cache, folder / cache.name)
    slides = [demo / "cohort" / "slides" / f"{c.stem}.tiff" for c in caches[:3]]  # the third is new to the folder
    r = run_cli("embed", *slides, "--out", folder, "--encoder", demo / "model" / "encoder", "--threads", "1", *option)
    said = _said(r.stderr)
    assert r.returncode == 2, said  # was 1 (stain) or 0 (tile stats), the new slide's cache made at the new setting
    assert f"{folder}: " in said and named in said and fix in said
    assert sorted(p.name for p in folder.iterdir()) == [c.name for c in caches[:2]]  # nothing written


def test_embed_without_tile_stats_of_cached_slides_only_is_up_to_date(tmp_path, small_demo):
    demo = small_demo[0]
    cache = sorted((demo / "features").glob("*.h5"))[0]
    folder = tmp_path / "features"
    folder.mkdir()
    shutil.copy2(cache, folder / cache.name)
    r = run_cli("embed", demo / "cohort" / "slides" / f"{cache.stem}.tiff", "--out", folder, "--encoder",
                demo / "model" / "encoder", "--threads", "1", "--no-tile-stats")
    assert r.returncode == 0, r.stderr  # its cache holds more than the run asks for: nothing would mix
