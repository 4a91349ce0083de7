"""Hunt 39f: files from elsewhere (a model folder, a feature cache, an annotation sent by a collaborator).

What was wrong (measured on a copy of the demo model, scoring one synthetic slide):
* ``architecture.hidden`` edited to 10**9 (10**12 in the test) in model.json (its weights untouched, so their SHA-256
  still matched): the network was allocated before its shapes were compared with the weights:
  "out of memory ... raise ulimit" (1.1 TB asked) or the OOM killer; ``layers`` 10**6 ran past 60 s.
* ``model.safetensors`` a FIFO or a link to /dev/zero: the SHA-256 check read it forever (killed at 60 s).
* a fold entry ``"file": "../../../../etc/passwd"`` or ``"/etc/hostname"``: opened and hashed, outside
  the model folder.
* a GeoJSON nested 100,000 arrays deep: "unexpected RecursionError ... this is a bug in weakstil".
* a feature cache with ``slide_mpp`` NaN: "unexpected ValueError: cannot convert float NaN to integer".
* a feature cache of finite features of 1e38 (its key intact): the model's scores were NaN, and score wrote
  an empty sTIL% with status "bed fallback: tissue", exit 0. Model weights of NaN did the same.
  (A cache's coords off its slide: tests/test_n_hunt37.py.)

Now each is one error line naming the file (the model checks run before anything is allocated or read).
"""

import json
import math
import os
import re
import shutil
import threading

import pytest

from weakstil.annotation_errors import AnnotationError
from weakstil.annotation_geojson import geojson_polygons
from weakstil.feature_cache import _decoded_before_resize_fix
from weakstil.mil.config import Architecture
from weakstil.mil.identity import ModelError
from weakstil.mil.model import TileMIL
from weakstil.mil.store import load_fold_models, load_model, save_model


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("m39f")
    save_model(TileMIL(Architecture(input_dim=4, hidden=4)), root / "m", {})
    return root / "m"


def _copy(tiny, tmp_path, edit):
    d = tmp_path / "copy"
    shutil.copytree(tiny, d)
    meta = json.loads((d / "model.json").read_text())
    edit(meta)
    (d / "model.json").write_text(json.dumps(meta))
    return d


def test_absurd_sizes_are_a_mismatch_not_an_allocation(tiny, tmp_path):
    d = _copy(tiny, tmp_path, lambda m: m["architecture"].update(hidden=10**12))
    with pytest.raises(ModelError, match="wrong shape body.0.bias"):  # old: MemoryError / OOM killer
        load_model(d)
    (d / "model.json").write_text(json.dumps({**json.loads((tiny / "model.json").read_text()),
                                              "architecture": {**json.loads((tiny / "model.json").read_text())[
                                                  "architecture"], "layers": 10**6}}))
    with pytest.raises(ModelError, match="'architecture.layers' is 1000000, not a whole number from 1 to 64"):
        load_model(d)


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_weights_that_are_no_file_fail_at_once(tiny, tmp_path, kind):
    d = _copy(tiny, tmp_path, lambda m: None)
    (d / "model.safetensors").unlink()
    if kind == "fifo":
        os.mkfifo(d / "model.safetensors")
    else:
        os.symlink("/dev/zero", d / "model.safetensors")
    got = []  # in a daemon thread: the old code read the FIFO or /dev/zero forever
    worker = threading.Thread(target=lambda: got.append(_raised(load_model, d)), daemon=True)
    worker.start()
    worker.join(10)
    assert got, "load_model hung on a weights file that is no regular file"
    assert isinstance(got[0], ModelError) and re.search("is a (FIFO|device or special file), not a file", str(got[0]))


def _raised(fn, *args):
    try:
        fn(*args)
    except Exception as exc:  # noqa: BLE001 (returned for the assertion)
        return exc
    return None


@pytest.mark.parametrize("name", ["../../../../../../etc/hostname", "/etc/hostname"])
def test_fold_files_outside_the_model_folder_are_refused(tiny, tmp_path, name, monkeypatch):
    opened = []
    import weakstil.mil.store as store

    monkeypatch.setattr(store, "sha256_file", lambda p: opened.append(str(p)) or "0" * 64)
    meta = {"folds": [{"file": name, "sha256": "0" * 64}]}
    with pytest.raises(ModelError, match="names a fold model outside the model folder"):
        load_fold_models(tiny, meta, Architecture(input_dim=4, hidden=4))
    assert opened == []  # old: /etc/hostname was opened and hashed


def test_deeply_nested_geojson_is_an_annotation_error(tmp_path):
    p = tmp_path / "s.geojson"
    deep = "[" * 100_000 + "]" * 100_000
    p.write_text('{"type":"FeatureCollection","features":[{"type":"Feature","geometry":{"type":"Polygon",'
                 f'"coordinates":{deep}}},"properties":{{}}}}]}}')
    with pytest.raises(AnnotationError, match="nested too deeply"):  # old: RecursionError (a "bug" line)
        geojson_polygons(p)


def test_cache_with_nan_slide_mpp_is_not_reused():
    why = _decoded_before_resize_fix({"mpp": 0.5, "slide_mpp": math.nan, "decode": "{}"})  # old: ValueError
    assert why is not None and "no positive number" in why


def test_features_beyond_float32_fail_the_slide_not_score_it_empty(small_demo, tmp_path):
    import h5py

    from conftest import run_cli

    demo, _ = small_demo
    cache = sorted((demo / "features").glob("*.h5"))[0]
    slide = next(p for p in (demo / "cohort" / "slides").iterdir() if p.stem == cache.stem)
    (tmp_path / "f").mkdir()
    shutil.copy(cache, tmp_path / "f" / cache.name)
    with h5py.File(tmp_path / "f" / cache.name, "a") as f:
        f["features"][...] = 1e38
    proc = run_cli("score", slide, "-m", demo / "model", "-o", tmp_path / "out", "-f", tmp_path / "f")
    assert proc.returncode == 1, proc.stderr  # old: 0, an empty sTIL% written as scored
    assert "tile scores of these features are not numbers" in proc.stderr


def test_nan_weights_are_refused_when_loaded(tiny, tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    d = _copy(tiny, tmp_path, lambda m: None)
    state = load_file(d / "model.safetensors")
    state["score.bias"] = torch.full_like(state["score.bias"], float("nan"))
    save_file(state, d / "model.safetensors")
    from weakstil.runtime import sha256_file

    meta = json.loads((d / "model.json").read_text())
    (d / "model.json").write_text(json.dumps({**meta, "weights_sha256": sha256_file(d / "model.safetensors")}))
    with pytest.raises(ModelError, match="weights hold NaN or infinite values"):  # old: loaded
        load_model(d)
