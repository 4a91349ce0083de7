"""Fault hunt 12, area b (synth, info, tile): what an outside tester found, as regression tests."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def slide(tmp_path_factory) -> Path:
    """A small brightfield slide: a pink disc of tissue with dark nuclei on white glass, 0.5 µm/px."""
    from conftest import write_disc_slide

    return write_disc_slide(tmp_path_factory.mktemp("hunt12b") / "S1.tiff")


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


@pytest.mark.parametrize("owner", ["train", "synth", "embed", "score", "inside-model"])
def test_tile_never_writes_into_another_commands_folder(slide, tmp_path, owner):
    """#1: `tile --out` into a model, a synth cohort or a features/scores folder was written into
    (exit 0, its marker rewritten) or refused per slide after the work (exit 1); embed refused all
    of them before any work. Now tile does the same: one error line, exit 2, nothing written."""
    from weakstil.outputdir import MARKER, mark

    folder = tmp_path / "folder"
    if owner in ("train", "inside-model"):
        folder.mkdir()
        (folder / "model.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(b"")
    else:
        mark(folder, owner)
    out = folder / "tiles" if owner == "inside-model" else folder
    before = sorted(p.name for p in folder.iterdir())
    marker = (folder / MARKER).read_text() if (folder / MARKER).exists() else None
    proc = run_cli("tile", slide, "--out", out)
    assert proc.returncode == 2, proc.stderr
    errors = _errors(proc)
    assert len(errors) == 1 and str(out) in errors[0] and "Fix:" in errors[0] and "folder" in errors[0], proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == before
    assert ((folder / MARKER).read_text() if (folder / MARKER).exists() else None) == marker


def test_tile_still_writes_into_its_own_or_a_plain_folder(slide, tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    (plain / "notes.txt").write_text("a lab's own file")
    for out in (plain, plain, tmp_path / "new"):  # twice: a rerun into its own tiles folder
        proc = run_cli("tile", slide, "--out", out)
        assert proc.returncode == 0, proc.stderr
        assert (out / "S1.h5").is_file() and (out / "S1_tiles.png").is_file()


def test_a_file_that_is_not_a_slide_never_takes_a_slides_id_in_tile(slide, tmp_path):
    """#2: with the tiles written beside the slides, `tile 'slides/*'` (embed, pretrain alike) let
    S1.h5, listed before S1.tiff, take the slide id: the slide itself was refused ("same slide
    id"). As in score, the slide is processed and the other file gets the one error line."""
    folder = tmp_path / "slides"
    folder.mkdir()
    shutil.copy(slide, folder / "S1.tiff")
    assert run_cli("tile", folder / "S1.tiff", "--out", folder).returncode == 0  # S1.h5 + S1_tiles.png beside it
    out = tmp_path / "out"
    proc = run_cli("tile", str(folder / "*"), "--out", out)
    assert proc.returncode == 1, proc.stderr
    assert (out / "S1.h5").is_file()
    errors = _errors(proc)
    assert not any("S1.tiff" in e.split(":")[1] for e in errors), proc.stderr
    (h5_error,) = [e for e in errors if e.startswith(f"error: {folder / 'S1.h5'}:")]
    assert "not a slide file" in h5_error and "S1.tiff" in h5_error and "Fix:" in h5_error


def test_unique_ids_keeps_the_first_of_two_slides_and_never_a_non_slide(slide, tmp_path):
    from weakstil.cli.batch import unique_ids
    from weakstil.cli.errors import Failures

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a, b = tmp_path / "a" / "S1.tiff", tmp_path / "b" / "S1.tiff"
    shutil.copy(slide, a)
    shutil.copy(slide, b)
    jpg, folder = tmp_path / "S2.jpg", tmp_path / "S2"
    jpg.write_bytes(b"\xff\xd8 not really")
    folder.mkdir()
    shutil.copy(slide, tmp_path / "S2.tiff")
    failures = Failures()
    kept = unique_ids([a, b, jpg, folder, tmp_path / "S2.tiff"], failures)
    assert kept == [a, tmp_path / "S2.tiff"]
    assert failures.count == 3
    # feature files (tumorbed apply): none opens as a slide, the first listed keeps the id
    assert unique_ids([tmp_path / "x" / "F.h5", tmp_path / "y" / "F.h5"], Failures(),
                      id_of=lambda p: p.stem) == [tmp_path / "x" / "F.h5"]


def test_synth_stopped_says_a_rerun_keeps_the_finished_slides(tmp_path):
    """#3: SIGTERM in synth said "a rerun starts over", but a rerun keeps every finished slide."""
    out = tmp_path / "cohort"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.Popen([sys.executable, "-m", "weakstil", "synth", "--out", str(out), "--slides", "50",
                             "--size-mm", "0.5", "0.5"], stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (out / "truth" / "synth_0000.h5").exists() and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    (line,) = [s for s in stderr.splitlines() if s.startswith("error:")]
    assert "continues where this one stopped" in line and "starts over" not in line
    assert not (out / "labels.csv").exists()  # a stopped cohort has no labels table that looks complete


def test_tissue_threshold_zero_keeps_every_tile_with_any_tissue_and_no_glass():
    from weakstil.tiling import TileGrid, select_tiles

    mask = np.zeros((28, 28), bool)  # 8 µm/px over a 448 x 448 px slide at 0.5 µm/px: 2 x 2 tiles of 14 px
    mask[0, 0] = True  # one mask pixel of tissue in the first tile
    mask[14:, 14:] = True
    grid = TileGrid(448, 448, 0.5)
    coords, fractions = select_tiles(grid, mask, 8.0, 0.0)
    assert coords.tolist() == [[0, 0], [224, 224]]
    assert fractions[0] == pytest.approx(1 / 196) and fractions[1] == 1.0
    assert json.loads(json.dumps(coords.tolist()))  # plain level-0 pixel coordinates


def test_synth_never_writes_inside_a_model_folder(tmp_path):
    """#6: `synth --out model/cohort` wrote a cohort inside a trained model's folder, which
    `train --overwrite` replaces whole (the cohort's slides and truth would go with it)."""
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"")
    proc = run_cli("synth", "--out", model / "cohort", "--slides", "1", "--size-mm", "0.25", "0.25")
    assert proc.returncode == 2, proc.stderr
    (line,) = _errors(proc)
    assert "inside the model folder" in line and "Fix:" in line
    assert sorted(p.name for p in model.iterdir()) == ["model.json", "model.safetensors"]


def test_synth_per_tile_truth_lies_on_the_grid_tile_writes(tmp_path):
    """README: the truth's tiles are those of `weakstil tile` at its defaults (level-0 px), so a tile's
    truth is found by its coordinates; checked on a slide whose side is not a whole number of tiles."""
    import h5py

    from weakstil.synth import generate_slide
    from weakstil.tiling import TileGrid

    res = generate_slide(tmp_path / "S.tiff", tmp_path / "truth", "S", 5, size_mm=(0.6, 0.5), preview=False)
    with h5py.File(res.truth_path) as f:
        coords = f["tiles/coords"][:]
        width, height = int(f.attrs["width"]), int(f.attrs["height"])
    assert (width, height) == (1200, 1000)
    assert np.array_equal(coords, TileGrid(width, height, 0.5).coords())


def test_tile_rerun_keeps_the_slides_already_tiled(slide, tmp_path):
    """#9: README: per-slide commands (tile among them) do a slide only when it is not done, and a
    stopped `tile` says "a rerun continues where this one stopped"; but tile redid every slide.
    Now a complete tiles file of the same scan, µm/px and tiling (with its overlay) is kept."""
    from conftest import write_tiff_slide

    out = tmp_path / "tiles"
    assert run_cli("tile", slide, "--out", out).returncode == 0
    h5 = out / "S1.h5"
    stamp = h5.stat().st_mtime_ns, h5.stat().st_ino
    proc = run_cli("tile", slide, "--out", out)
    assert proc.returncode == 0 and "up to date" in proc.stderr, proc.stderr
    assert (h5.stat().st_mtime_ns, h5.stat().st_ino) == stamp
    for args in (["--tissue-threshold", "0.4"], ["--slide-mpp", "0.25"]):  # another tiling, another µm/px
        proc = run_cli("tile", slide, "--out", out, *args)
        assert proc.returncode == 0 and "up to date" not in proc.stderr, (args, proc.stderr)
    (out / "S1_tiles.png").unlink()  # the overlay gone: the slide is done again
    proc = run_cli("tile", slide, "--out", out, "--slide-mpp", "0.25")
    assert "up to date" not in proc.stderr and (out / "S1_tiles.png").is_file()
    # a rescan under the same name (another fingerprint) is tiled again
    rescan = tmp_path / "rescan" / "S1.tiff"
    rescan.parent.mkdir()
    rgb = np.full((1024, 1024, 3), 240, np.uint8)
    rgb[100:700, 200:900] = (205, 120, 180)
    write_tiff_slide(rescan, rgb, mpp=0.5, levels=2)
    proc = run_cli("tile", rescan, "--out", out, "--slide-mpp", "0.25")
    assert proc.returncode == 0 and "up to date" not in proc.stderr, proc.stderr
    # a scan coarser than --mpp is still refused without --allow-upsample, however it was tiled before
    assert run_cli("tile", slide, "--out", tmp_path / "up", "--slide-mpp", "1", "--allow-upsample").returncode == 0
    assert run_cli("tile", slide, "--out", tmp_path / "up", "--slide-mpp", "1").returncode == 1
