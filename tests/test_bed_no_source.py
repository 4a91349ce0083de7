"""A slide with no bed source (no annotation, detector or precomputed bed): ``train``, ``evaluate`` and ``score`` take
the same tiles, through the one bed resolver (helper h44d). ``train`` and ``evaluate`` scored the feature file's own
``tumorbed`` flags while ``score`` scored the whole tissue; a file bed all crush was trained on over all its tiles."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import h5py
import numpy as np

from planted import write_feature_file
from weakstil.tilestats import COLUMNS, CRUSH_COLUMN

N = 64
OWN = np.arange(N) < 16  # the file's own bed: 16 of 64 tiles


def _features(path: Path, crush: np.ndarray, *, placed: bool = True, own: np.ndarray | None = OWN) -> Path:
    """A 8 x 8-tile feature file with its own bed flags (``own``) and crush shares; ``placed``: it records the
    slide's size and a tissue mask over it, as ``weakstil embed`` writes."""
    coords = np.stack(np.meshgrid(np.arange(8), np.arange(8)), -1).reshape(-1, 2) * 448
    path = write_feature_file(path, path.stem, np.random.default_rng(0).normal(size=(N, 4)), coords, tumorbed=own)
    with h5py.File(path, "a") as f:
        if placed:  # 8 tiles of 448 level-0 px at 0.25 µm/px: 896 µm, 224 mask px at 4 µm/px
            f.attrs.update({"slide_width": 8 * 448, "slide_height": 8 * 448})
            del f["tissue_mask"]
            f.create_dataset("tissue_mask", data=np.ones((224, 224), np.uint8)).attrs["mpp"] = 4.0
        stats = np.zeros((N, len(COLUMNS)), np.float32)
        stats[:, list(COLUMNS).index(CRUSH_COLUMN)] = crush
        f.create_dataset("tile_stats", data=stats)
        f.attrs["tile_stats_columns"] = json.dumps(list(COLUMNS))
    return path


def test_score_scores_the_feature_files_own_bed_as_train_does(tmp_path):
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed.resolver import BedSources

    path = _features(tmp_path / "S1.h5", np.zeros(N))
    bed = BedSources().resolve("S1", FeaturesFile.read(path))  # score: it was the whole tissue, 64 tiles
    assert bed.source.value == "feature-file" and bed.tile_flags.tolist() == OWN.tolist()
    assert bed.mask.any() and not bed.mask.all()  # the heatmap's outline: the flagged tiles' squares
    beds = BedSources()
    flags = beds.cohort({"S1": path})  # train / evaluate: None, then the bank took the file's flags
    assert flags is not None and flags["S1"].tolist() == OWN.tolist()
    assert beds.record()["slides"] == {"feature-file": 1}  # model.json / metrics.json name the source
    # a file without its own flags: the whole tissue, in every stage
    bare = _features(tmp_path / "S2.h5", np.zeros(N), own=None)
    assert BedSources().resolve("S2", FeaturesFile.read(bare)).tile_flags.sum() == N


def test_an_own_bed_all_crush_is_no_bed_not_every_tile(tmp_path, caplog):
    """The file's bed all crush (tiles >= 0.5 crush leave the scored bed): no tile is scored and the slide is said
    so (train leaves it out, evaluate gives it no prediction, score status 'no tumour bed'); train took all 64."""
    import pandas as pd

    from weakstil.cohort import Cohort
    from weakstil.evaluation import _bed_is_empty
    from weakstil.train import _without_empty_beds
    from weakstil.tumorbed.resolver import BedSources

    paths = {"crushed": _features(tmp_path / "crushed.h5", np.where(OWN, 0.9, 0.0))}
    paths.update({f"ok{i}": _features(tmp_path / f"ok{i}.h5", np.zeros(N)) for i in range(3)})
    beds = BedSources()
    flags = beds.cohort(paths)
    assert flags is not None and not flags["crushed"].any() and beds.crush_of["crushed"] == 16
    assert _bed_is_empty("crushed", flags) and not _bed_is_empty("ok0", flags)
    ids = list(paths)
    cohort = Cohort("c.csv", pd.DataFrame({"slide_id": ids, "path": ids, "stil": [1.0, 2.0, 3.0, 4.0]}), None)
    with caplog.at_level(logging.WARNING):
        left = _without_empty_beds(cohort, flags, beds, "c.csv")
    assert "crushed" not in list(left.table["slide_id"]) and len(left) == 3
    assert "all crush artefact, left out of the scored area: crushed (16 tiles)" in caplog.text


def test_a_file_that_does_not_place_its_tiles_keeps_its_flags_or_all_tiles(tmp_path):
    """Feature files without the slide's size (another tool's, a test's) cannot be given a whole-tissue mask: their own
    flags or all their tiles, crush left out, as the feature bank took them."""
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed.resolver import BedSources

    crush = (np.arange(N) == 3).astype(np.float32)
    own = BedSources().resolve("a", FeaturesFile.read(_features(tmp_path / "a.h5", crush, placed=False)))
    assert own.source.value == "feature-file" and own.tile_flags.sum() == 15
    every = BedSources().resolve("b", FeaturesFile.read(_features(tmp_path / "b.h5", crush, placed=False, own=None)))
    assert every.source.value == "tissue" and every.tile_flags.sum() == N - 1


def test_a_score_request_names_the_feature_files_own_flags(tmp_path):
    """A slide scored with no bed source is skipped on a rerun while its score request is unchanged: the request said
    ``tissue`` whatever the feature file's own flags (helper h44e), so a slide scored over the whole tissue before
    helper h44d kept that score, and flags written again were never scored. A file without flags keeps ``tissue``
    (its earlier scores stay skipped)."""
    from weakstil.score import ScoreOptions, _Context
    from weakstil.tumorbed.resolver import BedSources

    feats = tmp_path / "features"
    feats.mkdir()
    path = _features(feats / "S1.h5", np.zeros(N))
    own = BedSources().request("S1", features=path)
    assert own.startswith("feature-file") and BedSources().request("S1") == "tissue"
    with h5py.File(path, "a") as f:  # the file's bed written again: another request
        f["tumorbed"][...] = ~OWN
    assert BedSources().request("S1", features=path) not in (own, "tissue")
    assert BedSources().request("S2", features=_features(feats / "S2.h5", np.zeros(N), own=None)) == "tissue"
    # score's request finds the slide's feature cache (--features) and names its flags
    ctx = _Context(ScoreOptions(model=tmp_path, out=tmp_path / "out", features=feats), None, {}, "m", 30.0, None,
                   BedSources())
    assert ctx.request("S1", tmp_path / "S1.svs")["tumorbed"].startswith("feature-file")
    assert ctx.request("S2", tmp_path / "S2.svs")["tumorbed"] == "tissue"


def test_the_heatmap_key_says_a_feature_file_bed_in_words():
    """The heatmap's key names each bed source in a reader's words; the source of helper h44d showed as the code
    'feature-file' (helper h44e)."""
    from weakstil.outputs import heatmap_key

    key = heatmap_key({"tumorbed_source": "feature-file", "n_tumorbed_tiles": 16, "n_tiles": 64})
    assert "inside the tumour bed (the feature file's own flags)" in key and "feature-file" not in key
