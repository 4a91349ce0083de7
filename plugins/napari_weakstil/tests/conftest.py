"""Fixtures for the napari plugin: a tiny trained WeakSTIL model on synthetic slides, a scored
slide, and a slide with marked tiles for pixel tests. napari runs under Xvfb (pytest-xvfb)."""

from __future__ import annotations

import os

import numpy as np
import pytest

os.environ["HF_HUB_OFFLINE"] = "1"
#: napari's settings stay in memory: not read from nor written to the user's napari settings file (napari's own tests do
#: the same). Its viewers saved that file again at every dock widget added (0.03 s each) and read the user's choices.
os.environ["NAPARI_CONFIG"] = ""

TRAIN_SLIDES = 4


def pytest_collection_finish(session):
    """The collected process's objects frozen out of the collector's walks (``gc.freeze``), and after each test what
    it left alive, as tests/conftest.py does for the whole suite (these serve runs of this folder alone): napari
    collects at every layer removal, up to 0.5 s a call over the objects torch, Qt and napari leave alive."""
    _freeze_the_living()


def _freeze_the_living() -> None:
    import gc

    gc.collect()
    gc.freeze()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    yield
    _freeze_the_living()


_PLUGINS_DISCOVERED: list[int] = []


@pytest.fixture
def make_napari_viewer(make_napari_viewer, monkeypatch):
    """napari's ``make_napari_viewer``, with the installed plugins looked for once per test process. napari's fixture
    has each viewer discover them again (it clears napari's cached start-up for its own tests, which swap plugin
    managers): npe2 read every installed package's entry points and plugin manifests, 0.2-0.5 s a viewer, and
    registered nothing new, the plugins found being kept in npe2's one plugin manager. Each viewer still registers
    every plugin's commands and menus in its own fresh app model, as napari does.

    And napari's canvas does not force a full garbage collection at each layer removal (its workaround for Windows
    OpenGL drivers, 0.1-0.2 s a call here): the test's garbage is collected after its teardown
    (:func:`pytest_runtest_teardown`, and napari's fixture collects the young objects after closing its viewers)."""
    import types

    import napari._vispy.canvas
    from npe2 import PluginManager

    monkeypatch.setattr(napari._vispy.canvas, "gc", types.SimpleNamespace(collect=lambda *args, **kwargs: 0),
                        raising=False)  # a napari without the workaround: nothing to turn off

    manager = PluginManager.instance()
    discover = manager.discover

    def discover_once(paths=(), clear=False, include_npe1=False):
        if _PLUGINS_DISCOVERED and not paths and not clear:
            return 0
        found = discover(paths=paths, clear=clear, include_npe1=include_npe1)
        _PLUGINS_DISCOVERED.append(found)
        return found

    monkeypatch.setattr(manager, "discover", discover_once)
    return make_napari_viewer


@pytest.fixture(scope="session")
def scored(tmp_path_factory) -> dict:
    """Synthetic slides, a small-cnn (seeded random weights) feature cache, a MIL model trained
    on the first slides' labels with 2-fold CV, and the last slide scored by `score_batch`.

    Built once per test run, not once per pytest-xdist worker: the workers share the parent of
    their temporary folders, and the first to take the lock builds it there (tests only read it;
    what they change, they copy first)."""
    import fcntl

    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base
    root = shared / "napari_scored"
    with open(shared / "napari_scored.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (root / "built").exists():
            _build_scored(root)
            (root / "built").touch()
    held = root / "cohort" / (root / "held.txt").read_text()
    out = root / "scores"
    return {"root": root, "cohort": root / "cohort", "model": root / "model", "held": held, "scores": out,
            "score_h5": out / f"{held.stem}.h5", "cv_tiles": root / "model" / "cv" / "tiles"}


@pytest.fixture
def scored_copy(scored, tmp_path):
    """``copy(**attrs)``: the scored result copied into the test's folder with these attributes set
    (tests change copies, never the shared result)."""
    import shutil

    import h5py

    def copy(**attrs):
        path = tmp_path / scored["score_h5"].name
        shutil.copy(scored["score_h5"], path)
        with h5py.File(path, "r+") as f:
            f.attrs.update(attrs)
        return path
    return copy


def _build_scored(root) -> None:
    import shutil

    import torch

    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder
    from weakstil.mil.config import TrainConfig
    from weakstil.score import ScoreOptions, score_batch
    from weakstil.synth import generate_cohort
    from weakstil.train import train_cohort

    torch.set_num_threads(1)
    shutil.rmtree(root, ignore_errors=True)  # a build cut short
    root.mkdir(parents=True)
    cohort = root / "cohort"
    labels = generate_cohort(cohort, TRAIN_SLIDES + 1, seed=5, size_mm=(1.0, 1.0), progress=False)
    slides = [cohort / p for p in labels["path"]]
    features = root / "features"
    encoder = create_encoder("small-cnn", weights="random")
    for path in slides[:TRAIN_SLIDES]:
        embed_slide(path, encoder, out_dir=features)
    train_csv = root / "train.csv"
    train = labels.iloc[:TRAIN_SLIDES][["slide_id", "path", "stil"]].copy()
    train["path"] = [str(p.resolve()) for p in slides[:TRAIN_SLIDES]]
    train.to_csv(train_csv, index=False)
    model = root / "model"
    cfg = TrainConfig(epochs=4, patience=2, seed=0, device="cpu", threads=1)
    train_cohort(train_csv, features, model, cfg, n_folds=2, group_column=None)
    held = slides[TRAIN_SLIDES]
    out = root / "scores"
    rows = score_batch([held], ScoreOptions(model=model, out=out, weights="random", device="cpu", workers=1),
                       progress=False)
    assert rows[0]["status"] == "ok", rows[0]
    (root / "held.txt").write_text(str(held.relative_to(cohort)))


@pytest.fixture
def marked_slide(tmp_path) -> dict:
    """A white slide at 0.2495 µm/px (a fractional tile size in level-0 px) with two tiles of a
    tile grid painted pure blue, and a result file that scores exactly those two tiles 100."""
    import tifffile

    from weakstil.files import SlideScoresFile

    mpp = 0.2495
    tile = 224 * 0.5 / mpp  # level-0 px of a 224-px tile at 0.5 µm/px: 448.9
    origin = (300, 180)
    grid = [(c, r) for r in range(5) for c in range(6)]
    coords = np.array([[round(origin[0] + c * tile), round(origin[1] + r * tile)] for c, r in grid], np.int64)
    marked = [7, 22]  # (col 1, row 1) and (col 4, row 3)
    rgb = np.full((2600, 3200, 3), 240, np.uint8)
    for i in marked:
        x, y = coords[i]
        rgb[y:y + int(round(tile)), x:x + int(round(tile))] = (0, 0, 255)
    path = tmp_path / "marked.tiff"
    opts = dict(tile=(256, 256), compression="zlib", photometric="rgb", resolutionunit="CENTIMETER")
    with tifffile.TiffWriter(path) as tw:
        tw.write(rgb, subifds=0, resolution=(1e4 / mpp, 1e4 / mpp), **opts)
        for k in (1, 2):
            f = 4**k
            tw.write(rgb[::f, ::f], subfiletype=1, resolution=(1e4 / (mpp * f), 1e4 / (mpp * f)), **opts)
    scores = np.zeros(len(coords), np.float32)
    scores[marked] = 100.0
    result = tmp_path / "marked_scores.h5"
    n = len(coords)
    empty = np.zeros((8, 8), bool)  # no tissue or bed outline: only the heatmap matters here
    SlideScoresFile(coords=coords, tile_scores=scores, tumorbed=np.ones(n, bool), tumorbed_fraction=np.ones(n),
                    tissue_fraction=np.ones(n), tissue_mask=empty, tissue_mask_mpp=8.0, tumorbed_mask=empty,
                    tumorbed_mask_mpp=8.0,
                    attrs={"slide_id": "marked", "slide_path": str(path), "slide_mpp": mpp, "tile_size_level0": tile,
                           "tile_px": 224, "overlap_px": 0, "stil": 50.0, "threshold": 30.0}).write(result)
    return {"slide": path, "result": result, "coords": coords, "tile": tile, "marked": marked, "mpp": mpp}
