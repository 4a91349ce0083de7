"""Hunt 17 (h17b): an outside user's fault matrix of the CLI (score, train, evaluate, tumorbed).

1. ``score --features MODEL`` (the model folder given for the feature caches) wrote a
   ``<slide_id>.h5`` cache per slide into the model folder and rewrote its marker to say 'embed'
   wrote it; ``--features MODEL/encoder`` the same into the bundled encoder (a folder inside the model). ``embed --out`` was
   refused there; score's ``--features``, where it writes the caches it makes, is now held to the
   same rules (exit 2 before any work).
2. A model folder whose ``tumorbed/`` lost its ``model.json`` in a copy was read as a model that
   bundles no detector: every slide was scored over the whole tissue with exit 0 (only a warning
   and a qc flag), while one that lost ``model.safetensors`` was an error. Both are errors now,
   naming the missing file.
3. A symbolic link loop among the slides of ``score`` stopped the whole batch with "unexpected
   RuntimeError" (``Path.resolve`` raises on a loop before Python 3.13): now that slide's error
   row says it is a loop, and the batch goes on.
4. A model.json whose architecture was edited out of step with its weights (tile_stats off) ended
   scoring in "unexpected RuntimeError: mat1 and mat2 shapes cannot be multiplied": now one line.
5. A cohort CSV written on Windows (`slides\\S1.svs`) found no slide on Linux: now read as slides/S1.svs.
6. SIGHUP (a closed terminal) killed a run where it stood: now cleaned up like SIGTERM (exit 129).
7. `tumorbed apply --out` a score (or feature) folder wrote beds among its files: now refused before any work.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli
from shared_cohorts import one_epoch_model_copy


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A model trained for one epoch on four small synthetic slides, and one of its slides."""
    model, cohort, labels, _ = one_epoch_model_copy(tmp_path_factory, tmp_path_factory.mktemp("h17b"))
    return model, cohort / labels["path"].iloc[0]


def _listing(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_score_refuses_a_model_folder_as_its_feature_cache(tiny, tmp_path):
    model, slide = tiny
    copy = shutil.copytree(model, tmp_path / "model")
    before = _listing(copy)
    for features, said in ((copy, "--features is the model folder of 'weakstil train'"),
                           (copy / "qc", "--features is inside the model folder")):
        result = run_cli("score", slide, "-m", copy, "-o", tmp_path / "out", "-f", features)
        assert result.returncode == 2, result.stderr
        line = result.stderr.strip()
        assert said in line and "Fix: pass the --out folder of 'weakstil embed'" in line and "\n" not in line, line
        assert _listing(copy) == before  # no cache, no marker rewritten
    assert not (tmp_path / "out" / "results.csv").exists()


def test_score_refuses_another_commands_folder_as_feature_cache_but_takes_an_embed_folder(tiny, tmp_path):
    model, slide = tiny
    first = tmp_path / "first"
    run_cli("score", slide, "-m", model, "-o", first, check=True)
    result = run_cli("score", slide, "-m", model, "-o", tmp_path / "second", "-f", first)
    assert result.returncode == 2 and "--features is the scores folder of 'weakstil score'" in result.stderr
    # its own cache folder (written by embed) is a feature cache: used, nothing embedded again
    result = run_cli("score", slide, "-m", model, "-o", tmp_path / "third", "-f", first / "features", check=True)
    assert pd.read_csv(tmp_path / "third" / "results.csv")["status"].tolist() == ["ok"]


@pytest.mark.parametrize("lost", ["model.json", "model.safetensors"])
def test_a_model_whose_bundled_detector_lost_a_file_is_an_error_not_whole_tissue(tiny, tmp_path, lost):
    from weakstil.modeldir import ModelDir

    model, slide = tiny
    copy = shutil.copytree(model, tmp_path / "model")
    kept = {"model.json", "model.safetensors"} - {lost}
    (copy / "tumorbed").mkdir()
    (copy / "tumorbed" / kept.pop()).write_text("{}")
    assert ModelDir(copy).bundled_detector == copy / "tumorbed"
    result = run_cli("score", slide, "-m", copy, "-o", tmp_path / "out")
    assert result.returncode == 1, result.stderr
    line = result.stderr.strip()
    assert f"tumorbed: not a tumour-bed detector ({lost} missing" in line, line
    assert "Fix: copy the whole model folder again" in line
    assert not (tmp_path / "out" / "results.csv").exists()
    # an empty tumorbed/ holds no detector: nothing to lose
    shutil.rmtree(copy / "tumorbed")
    (copy / "tumorbed").mkdir()
    assert ModelDir(copy).bundled_detector is None


def test_a_symbolic_link_loop_is_one_error_row_and_the_batch_goes_on(tiny, tmp_path):
    from weakstil.errors import SlideError
    from weakstil.slide import Slide

    model, _ = tiny
    loop, other = tmp_path / "a.svs", tmp_path / "b.svs"
    loop.symlink_to(other)
    other.symlink_to(loop)
    missing = tmp_path / "missing.svs"
    result = run_cli("score", loop, missing, "-m", model, "-o", tmp_path / "out")
    assert result.returncode == 1
    assert "unexpected" not in result.stderr
    rows = pd.read_csv(tmp_path / "out" / "results.csv").set_index("slide_id")
    assert rows.loc["a", "status"] == "error" and "leads back to itself (a loop)" in rows.loc["a", "error"]
    assert rows.loc["missing", "status"] == "error" and "file not found" in rows.loc["missing", "error"]
    with pytest.raises(SlideError, match="symbolic link to .*b.svs that leads back to itself"):
        Slide.open(loop)
    broken = tmp_path / "broken.svs"
    broken.symlink_to(tmp_path / "nowhere.svs")
    with pytest.raises(SlideError, match="broken symbolic link to .*nowhere.svs \\(target not found\\)"):
        Slide.open(broken)


def test_a_model_json_edited_out_of_step_with_its_weights_is_one_error_line(tiny, tmp_path):
    """4. model.json's architecture edited (tile_stats turned off): the weights still match their
    recorded SHA-256 and shapes, but the tiles no longer have the model's input size; scoring
    ended in "unexpected RuntimeError: mat1 and mat2 shapes cannot be multiplied"."""
    import json

    model, slide = tiny
    copy = shutil.copytree(model, tmp_path / "model")
    meta = json.loads((copy / "model.json").read_text())
    assert meta["architecture"]["tile_stats"] is True
    meta["architecture"]["tile_stats"] = False
    (copy / "model.json").write_text(json.dumps(meta))
    result = run_cli("score", slide, "-m", copy, "-o", tmp_path / "out")
    assert result.returncode == 1 and "unexpected" not in result.stderr, result.stderr
    # hunt 28c: blamed on model.json before any slide (it was a per-slide error blaming the features)
    assert f"model.json architecture tile_stats false does not fit its input_dim " \
           f"{meta['architecture']['input_dim']}" in result.stderr, result.stderr
    assert not (tmp_path / "out" / "results.csv").exists()


def test_a_cohort_csv_written_on_windows_finds_its_slides(tiny, tmp_path):
    """5. A cohort CSV made on Windows (``slides\\S1.tiff``): every row was refused as "file not
    found" with the fix "paths are relative to the CSV's folder", which they were."""
    from weakstil.cohort import read_cohort
    from weakstil.errors import WeakSTILError

    _, slide = tiny
    cohort = slide.parent.parent  # the CSV sits beside slides/
    csv = cohort / "windows.csv"
    csv.write_text(f"slide_id,path,stil\n{slide.stem},slides\\{slide.name},12\n")
    table = read_cohort(csv).table
    assert table["path"].tolist() == [str(slide)]
    csv.write_text(f"slide_id,path,stil\n{slide.stem},C:\\data\\{slide.name},12\nx,slides\\x.tiff,3\n")
    with pytest.raises(WeakSTILError) as err:
        read_cohort(csv)
    assert "(a Windows path: give it relative to the CSV's folder" in str(err.value)
    assert "file not found slides\\x.tiff (read as slides/x.tiff: not there either)" in str(err.value)


_HANGUP = """
import os, signal, sys, time
import typer
from weakstil.cli.errors import reports_errors
# a run started from a terminal: SIGHUP at its default even when this test itself runs under nohup
# (which a child inherits as ignored)
signal.signal(signal.SIGHUP, signal.SIG_IGN if sys.argv[1] == "nohup" else signal.SIG_DFL)
def score():
    os.kill(os.getpid(), signal.SIGHUP)
    time.sleep(0.5 if sys.argv[1] == "nohup" else 20)
try:
    reports_errors(score)()
except typer.Exit as exc:
    sys.exit(exc.exit_code)
"""


def test_a_closed_terminal_stops_a_run_like_sigterm_and_nohup_is_respected():
    """6. SIGHUP (an ssh session or terminal closed under a run) killed the run where it stood: its
    temporary files and locks stayed until a rerun, its decode workers' semaphores leaked. Now it
    is cleaned up as SIGTERM is, exit 129 (128 + SIGHUP), unless the run ignores it (nohup)."""
    import subprocess
    import sys

    hung = subprocess.run([sys.executable, "-c", _HANGUP, "hup"], capture_output=True, text=True, timeout=60)
    assert hung.returncode == 129, (hung.returncode, hung.stderr)
    assert hung.stderr.strip().startswith("error: hung up (SIGHUP: its terminal closed); unfinished outputs were "
                                          "removed (a rerun continues where this one stopped)"), hung.stderr
    kept = subprocess.run([sys.executable, "-c", _HANGUP, "nohup"], capture_output=True, text=True, timeout=60)
    assert kept.returncode == 0, kept.stderr


def test_tumorbed_apply_refuses_another_commands_folder_before_any_work(tiny, tmp_path):
    """7. ``tumorbed apply FEATURES --out SCORES`` (a score's --out) wrote bed files among the score
    files (a refused slide per score file of the same name, the beds of the others written), and
    rewrote the folder's marker; tile and embed refused such a folder before any work, as it now does."""
    from weakstil.outputdir import commands_of, mark

    model, slide = tiny
    features = model.parent / "features" / f"{slide.stem}.h5"
    scores = tmp_path / "scores"
    scores.mkdir()
    mark(scores, "score")
    result = run_cli("tumorbed", "apply", features, "-o", scores)
    assert result.returncode == 2, result.stderr
    assert "scores: is the scores folder of 'weakstil score'; tumorbed apply writes" in result.stderr
    assert sorted(p.name for p in scores.iterdir()) == [".weakstil-output.json"]
    assert commands_of(scores) == ["score"]
    run_cli("tumorbed", "apply", features, "-o", tmp_path / "beds", check=True)  # its own folder: as before
    assert (tmp_path / "beds" / f"{slide.stem}.h5").is_file()


@pytest.mark.parametrize("key,value", [("tile_px", "abc"), ("tile_px", 0), ("mpp", -0.5), ("mpp", True)])
def test_a_model_json_whose_tiling_was_edited_into_nonsense_is_one_error_line(tiny, tmp_path, key, value):
    """model.json's tiling read as numbers by score: a text there ended in "unexpected
    ValueError" (scoring_encoder), a 0 or negative one later still; now one line naming the key."""
    import json

    model, slide = tiny
    copy = shutil.copytree(model, tmp_path / "model")
    meta = json.loads((copy / "model.json").read_text())
    meta["tiling"][key] = value
    (copy / "model.json").write_text(json.dumps(meta))
    result = run_cli("score", slide, "-m", copy, "-o", tmp_path / "out")
    assert result.returncode != 0 and "unexpected" not in result.stderr, result.stderr
    assert f"tiling {key} {json.dumps(value)} is not a positive" in result.stderr, result.stderr
    assert not (tmp_path / "out" / "results.csv").exists()
