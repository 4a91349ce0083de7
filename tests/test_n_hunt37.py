"""Outside corruption sweep (hunt 37n): damaged copies of every file kind the commands read.

Slides (cut at 10/50/90 %, a zeroed block, empty, PNG/JPEG/PDF/text renamed .svs), model.json,
the weights, fold, qc and encoder files were already one `error:` line naming the file, with the
other slides going on. Three kinds were not:

* a feature cache whose datasets or tiling attributes were edited or written by another tool
  (``features`` of text, of 10 columns where ``embed_dim`` says 256, ``coords`` of 3 columns or 3 rows
  for 51 tiles, ``mpp`` = "abc") read without complaint, then failed inside numpy: "unexpected
  ValueError/TypeError/IndexError ... this is a bug in weakstil" in tumorbed apply, evaluate and
  train, and in ``tumorbed apply`` it stopped the whole batch (the other slide got no bed). Now
  the reader checks types and shapes: one line naming the file, and the batch goes on;
* ``report --model`` with MODEL/cv/oof_predictions.csv (or qc/training_slides.csv) overwritten by
  binary bytes: "unexpected UnicodeDecodeError ... a bug in weakstil"; now one line naming the CSV;
* a --slides list with a NUL byte: "unexpected ValueError: embedded null byte"; now one usage line;
* a tumour-bed detector whose model.json 'tiling' was edited into a string: "unexpected TypeError:
  string indices must be integers" when the batch began; now one line naming model.json.
"""

from __future__ import annotations

import shutil

import h5py
import numpy as np
import pytest

from conftest import run_cli


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def _retype(name, data):
    def damage(f):
        del f[name]
        f.create_dataset(name, data=data)
    return damage


DAMAGES = {
    "features of text": lambda f, n: _retype("features", np.array([b"x"] * n))(f),
    "features of 10 columns": lambda f, n: _retype("features", np.zeros((n, 10), np.int8))(f),
    "coords of 3 columns": lambda f, n: _retype("coords", np.zeros((n, 3)))(f),
    "coords of 3 rows": lambda f, n: _retype("coords", np.zeros((3, 2), np.int64))(f),
    "mpp of text": lambda f, n: f.attrs.__setitem__("mpp", "abc"),
    # hunt 39f: a corner 1e15 px off the slide made the detector's grid allocation fail ("out of memory")
    "coords off the slide": lambda f, n: f["coords"].__setitem__(0, [-10**15, 10**15]),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_a_damaged_feature_cache_is_one_line_and_the_batch_goes_on(small_demo, tmp_path, damage):
    demo, _ = small_demo
    good, other = sorted((demo / "features").glob("*.h5"))[:2]
    bad = tmp_path / other.name
    shutil.copy(other, bad)
    with h5py.File(bad, "a") as f:
        DAMAGES[damage](f, len(f["coords"]))
    proc = run_cli("tumorbed", "apply", bad, good, "--out", tmp_path / "beds", "--tumorbed", demo / "model" / "tumorbed")
    assert proc.returncode == 1
    [error] = _errors(proc)
    assert str(bad) in error and "bug in weakstil" not in error and "Fix: delete it, then run 'weakstil embed'" in error
    assert (tmp_path / "beds" / f"{good.stem}.h5").is_file()  # the other slide went on
    assert not (tmp_path / "beds" / f"{bad.stem}.h5").exists()


@pytest.mark.parametrize("name", ["cv/oof_predictions.csv", "qc/training_slides.csv"])
def test_report_names_a_model_csv_overwritten_with_binary_bytes(small_demo, tmp_path, name):
    demo, _ = small_demo
    model = tmp_path / "model"
    shutil.copytree(demo / "model", model)
    (model / name).write_bytes(b"\x89PNG\x00\xff\xfe" * 50)
    proc = run_cli("report", "--model", model, "--out", tmp_path / "rep")
    assert proc.returncode == 1
    [error] = _errors(proc)
    assert str(model / name) in error and "not a readable CSV" in error and "bug in weakstil" not in error
    assert not (tmp_path / "rep").exists()


def test_a_detector_whose_tiling_was_edited_into_text_is_named(small_demo, tmp_path):
    import json

    demo, _ = small_demo
    detector = tmp_path / "tumorbed"
    shutil.copytree(demo / "model" / "tumorbed", detector)
    meta = json.loads((detector / "model.json").read_text())
    meta["tiling"] = "0.5 um/px, 224 px"
    (detector / "model.json").write_text(json.dumps(meta))
    good = sorted((demo / "features").glob("*.h5"))[0]
    proc = run_cli("tumorbed", "apply", good, "--out", tmp_path / "beds", "--tumorbed", detector)
    assert proc.returncode == 1
    [error] = _errors(proc)
    assert str(detector / "model.json") in error and "'tiling' is not a JSON object" in error
    assert not (tmp_path / "beds").exists()


def test_a_slide_list_with_a_nul_byte_is_a_usage_line(tmp_path):
    """A --slides list with a NUL byte in a path (a damaged copy) was "unexpected ValueError: embedded null
    byte ... a bug in weakstil" (score, info); now one line naming the list and its line."""
    listed = tmp_path / "batch.csv"
    listed.write_bytes(b"slide_id,path\na,a.svs\nb,b\x00.svs\n")
    proc = run_cli("info", "--slides", listed)
    assert proc.returncode == 2
    [error] = _errors(proc)
    assert str(listed) in error and "line 3 holds a NUL byte" in error
