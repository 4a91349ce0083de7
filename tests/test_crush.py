"""Crush artefact (tile statistics version 5, weakstil.crush): smeared, streamed chromatin is told from a
sheet of round lymphocytes, and a crush tile leaves the scored bed."""

from __future__ import annotations

import math

import numpy as np
import pytest

from weakstil.stain import SlideStain
from weakstil.tilestats import COLUMNS, CRUSH_COLUMN, batch_stats

MPP = 0.5
CRUSH = COLUMNS.index(CRUSH_COLUMN)


def _render(h: np.ndarray, e: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An RGB tile from haematoxylin / eosin optical densities (reference stain vectors), with pixel noise."""
    he = SlideStain.reference().he  # (3, 2)
    od = h[..., None] * he[:, 0] + e[..., None] * he[:, 1] + 0.02 * rng.standard_normal(h.shape + (3,))
    return np.clip(255 * np.exp(-od), 0, 255).astype(np.uint8)


def _stamp(h: np.ndarray, cy: float, cx: float, a: float, b: float, ang: float, value: float) -> None:
    """An ellipse (semi-axes ``a``, ``b`` px at angle ``ang``) of ``value`` written into ``h``."""
    r = int(math.ceil(max(a, b)))
    y0, x0 = max(0, int(cy) - r), max(0, int(cx) - r)
    yy, xx = np.mgrid[y0:min(h.shape[0], int(cy) + r + 1), x0:min(h.shape[1], int(cx) + r + 1)]
    u = (xx - cx) * math.cos(ang) + (yy - cy) * math.sin(ang)
    v = -(xx - cx) * math.sin(ang) + (yy - cy) * math.cos(ang)
    h[yy[(u / a) ** 2 + (v / b) ** 2 <= 1], xx[(u / a) ** 2 + (v / b) ** 2 <= 1]] = value


def crush_tile(rng: np.random.Generator, px: int = 224) -> np.ndarray:
    """Crushed cells: chromatin drawn out into overlapping dark streaks (8-14 µm long, 2-3 µm wide)
    running one way (+-15 degrees), over a pale blue haze: no round nucleus left."""
    h = np.full((px, px), 0.35)
    for _ in range(500):
        _stamp(h, rng.uniform(0, px), rng.uniform(0, px), rng.uniform(16, 28), rng.uniform(2, 3),
               0.6 + rng.normal(0, 0.25), rng.uniform(0.9, 1.4))
    return _render(h, np.full((px, px), 0.2), rng)


def lymphocyte_sheet(rng: np.random.Generator, px: int = 224) -> np.ndarray:
    """A dense sheet of lymphocytes: round dark nuclei 6-7.5 µm across, packed on a jittered 8 µm
    lattice so that they nearly touch, thin pale cytoplasm between."""
    h = np.full((px, px), 0.1)
    step = 8.0 / MPP
    for cy in np.arange(step / 2, px, step):
        for cx in np.arange(step / 2, px, step):
            r = rng.uniform(6.0, 7.5) / MPP / 2
            _stamp(h, cy + rng.normal(0, 1), cx + rng.normal(0, 1), r, r, 0.0, rng.uniform(1.1, 1.5))
    return _render(h, np.full((px, px), 0.1), rng)


def test_streaked_chromatin_reads_as_crush_and_a_lymphocyte_sheet_does_not():
    rng = np.random.default_rng(0)
    tiles = np.stack([crush_tile(rng), lymphocyte_sheet(rng), lymphocyte_sheet(rng)])
    stats = batch_stats(tiles, SlideStain.reference(), MPP)
    # both are haematoxylin-dense: the sheet's nuclei cover much of it, yet they are round and separable
    assert stats[1, COLUMNS.index("nuclear")] > 0.4
    assert stats[0, CRUSH] > 0.6, stats[:, CRUSH]
    assert stats[1, CRUSH] < 0.05 and stats[2, CRUSH] < 0.05, stats[:, CRUSH]


def test_a_smooth_dark_smear_without_streaks_is_not_crush():
    """A marker stroke or an out-of-focus dark blur has one edge, not the texture of streamed chromatin."""
    rng = np.random.default_rng(1)
    h = np.zeros((224, 224))
    h[:, 40:190] = 1.2  # one broad dark band, edges all one way
    tile = _render(h, np.full((224, 224), 0.1), rng)
    assert batch_stats(tile[None], SlideStain.reference(), MPP)[0, CRUSH] < 0.05


def test_crush_is_the_same_on_both_image_backends():
    rng = np.random.default_rng(2)
    tiles = np.stack([crush_tile(rng), lymphocyte_sheet(rng)])
    np.testing.assert_array_equal(batch_stats(tiles, SlideStain.reference(), MPP, backend="opencv"),
                                  batch_stats(tiles, SlideStain.reference(), MPP, backend="numpy"))


class _Features:
    def __init__(self, crush_share: np.ndarray):
        import json

        self.tile_stats = np.zeros((len(crush_share), len(COLUMNS)), np.float32)
        self.tile_stats[:, CRUSH] = crush_share
        self.attrs = {"tile_stats_columns": json.dumps(list(COLUMNS))}


def test_crush_tiles_leave_the_scored_bed_and_are_counted():
    from weakstil.crush import exclude_crush
    from weakstil.tumorbed.bed import TumorBed, TumorBedSource

    fraction = np.array([1.0, 1.0, 1.0, 0.0], np.float32)
    bed = TumorBed(np.ones((2, 2), bool), 4.0, fraction, TumorBedSource.ANNOTATION)
    bed = exclude_crush(bed, _Features(np.array([0.0, 0.9, 0.3, 0.95], np.float32)), "s")
    assert bed.tile_flags.tolist() == [True, False, True, False]
    assert bed.attrs()["tumorbed_crush_tiles"] == 1  # the crush tile outside the bed is not counted
    # features measured before version 5 (no crush column): the bed is as drawn
    old = _Features(np.zeros(4, np.float32))
    old.attrs = {"tile_stats_columns": '["stroma_estimate"]'}
    old.tile_stats = np.zeros((4, 1), np.float32)
    bed = exclude_crush(TumorBed(np.ones((2, 2), bool), 4.0, fraction, TumorBedSource.ANNOTATION), old, "s")
    assert bed.tile_flags.tolist() == [True, True, True, False] and "tumorbed_crush_tiles" not in bed.attrs()


def test_napari_rescore_leaves_out_the_crush_tiles_score_left_out():
    """A bed edited and rescored from the scores file is scored as 'score' scored it: without its crush tiles
    (their bits recorded in the file), so an unchanged bed rescored gives the published number."""
    from weakstil.bed_edit import ScoredTiles
    from weakstil.crush import PACKED_ATTR, packed, unpacked
    from weakstil.tumorbed.bed import SlideGeometry

    crush = np.array([False, True, False, False, True, False, False, False, False, True])
    assert unpacked(packed(crush), 10).tolist() == crush.tolist()
    assert unpacked("not base64!", 10) is None and unpacked(packed(crush), 12) is not None
    scores = np.array([10, 90, 10, 10, 90, 10, 20, 20, 20, 90], np.float32)  # crush read as lymphocytes: 90
    coords = np.stack([np.arange(10) * 224, np.zeros(10)], 1)
    geom = SlideGeometry(2240, 224, 0.5, coords, 224.0, np.ones((1, 10), bool), 112.0)
    tiles = ScoredTiles(path=None, slide_id="s", tile_scores=scores, logits=None, stroma=None, known=None,
                        aggregator="mean", threshold=30.0, geometry=geom, original_stil=None, original_flags=None,
                        excluded=unpacked(packed(crush), 10))
    bed = np.ones(10, bool)
    assert tiles.score_flags(bed).stil == pytest.approx(float(scores[~crush].mean()))
    tiles.excluded = None  # a file from before version 5: every tile of the bed counts
    assert tiles.score_flags(bed).stil == pytest.approx(float(scores.mean()))
    assert PACKED_ATTR == "crush_tiles_packed"


def test_a_bed_no_source_gave_leaves_out_crush_as_score_does(tmp_path):
    """``train`` / ``evaluate`` with no bed source (each feature file's own flags, or all its tiles) leave the crush
    tiles out as ``score`` leaves them out of the whole tissue: before, training and evaluation counted them."""
    import json

    import h5py

    from planted import write_feature_file
    from weakstil.mil.bank import FeatureBank

    n = 6
    crush = np.array([0.0, 0.9, 0.2, 0.0, 0.7, 0.0], np.float32)
    paths = []
    for sid, own in (("all", None), ("flags", np.array([1, 1, 1, 0, 0, 1], bool))):
        path = write_feature_file(tmp_path / f"{sid}.h5", sid, np.zeros((n, 4)), np.arange(2 * n).reshape(n, 2) * 448,
                                  tumorbed=own)
        with h5py.File(path, "a") as f:
            stats = np.zeros((n, len(COLUMNS)), np.float32)
            stats[:, CRUSH] = crush
            f.create_dataset("tile_stats", data=stats)
            f.attrs["tile_stats_columns"] = json.dumps(list(COLUMNS))
        paths.append(path)
    for tile_stats in (False, True):  # whether or not the model reads the measurements
        bank = FeatureBank.load(paths, ["all", "flags"], tile_stats=tile_stats)
        assert bank.bags[0].tile_mask.tolist() == [True, False, True, True, False, True]
        assert bank.bags[1].tile_mask.tolist() == [True, False, True, False, False, True]
    # a resolved bed (score, or a bed source given) is taken as it is: the resolver left the crush out already
    bank = FeatureBank.load(paths[:1], ["all"], tumorbeds={"all": np.ones(n, bool)})
    assert bank.bags[0].tile_mask.all()


def test_the_heatmap_key_says_crush_tiles_left_the_scored_bed():
    """The heatmap's key counted the bed's tiles as those inside it, silent on the crush tiles left out; a bed all
    crush read 'no tile lies 50 % or more inside it', which sends a user to check an outline that is right."""
    from weakstil.outputs import heatmap_key

    base = {"tumorbed_source": "annotation", "n_tiles": 54, "tumorbed_tile_threshold": 0.5}
    key = heatmap_key({**base, "n_tumorbed_tiles": 20, "tumorbed_crush_tiles": 3})
    assert key == ("cyan outline: the 20 of 54 tiles that made the sTIL%: those 50 % or more inside the tumour bed "
                   "(annotation), less 3 tiles of crush artefact; the tiles outside it are shown, not counted")
    key = heatmap_key({**base, "n_tumorbed_tiles": 0, "tumorbed_crush_tiles": 4})
    assert "its 4 tiles are all crush artefact, left out of the scored area: no sTIL%" in key
    assert "no tile lies" not in key
    assert "crush" not in heatmap_key({**base, "n_tumorbed_tiles": 20, "tumorbed_crush_tiles": 0})


def test_features_older_than_the_model_are_refused_with_embed_again_as_the_fix():
    """``evaluate`` of features embedded before version 5 (no crush column) with a version-5 model that reads the tile
    statistics was refused with 'train the model again ... or score with the version that trained it': the model is
    right, the features are old. Features newer than the model keep that fix."""
    from weakstil.errors import ModelError
    from weakstil.mil.identity import check_features_match_model
    from weakstil.stain import STAIN_ESTIMATE_VERSION
    from weakstil.tilestats import TILESTATS_VERSION

    config = {"training": {"config": {"tile_stats": True}}}
    now = {"tilestats_version": TILESTATS_VERSION, "stain_estimate_version": STAIN_ESTIMATE_VERSION}
    old = {**now, "tilestats_version": TILESTATS_VERSION - 1}
    with pytest.raises(ModelError) as older:
        check_features_match_model({**config, "features": now}, old, "f.h5")
    assert f"measured by tile statistics version {TILESTATS_VERSION - 1}" in older.value.message
    assert "embed the slides again" in older.value.fix and "train the model again" not in older.value.fix
    with pytest.raises(ModelError) as newer:
        check_features_match_model({**config, "features": old}, now, "f.h5")
    assert "train the model again" in newer.value.fix


def test_results_csv_says_when_crush_left_a_bed_with_too_few_tiles():
    """A bed all (or mostly) crush read in results.csv 'few_tumorbed_tiles: 0 tumour-bed tiles < 16' and status
    'no tumour bed', nothing saying why (og42a_010 with an outline drawn on its crush, 52 tiles: only a log line)."""
    from weakstil.qc.flags import slide_flags

    def reason(**kw):
        return slide_flags(ood_score=None, ood_threshold=None, n_bed_tiles=0, low=None, high=None, threshold=30,
                           image=None, image_ref=None, **kw)[1]["few_tumorbed_tiles"]

    assert reason(crush_tiles=52) == "0 tumour-bed tiles < 16 (52 more left out as crush artefact)"
    assert reason() == "0 tumour-bed tiles < 16"


def test_the_crush_rule_is_recorded_with_the_count():
    """The scores HDF5 recorded how many bed tiles left as crush but not the share that made a tile crush
    (:data:`weakstil.crush.CRUSH_TILE_MAX`), as it records the tile-in-bed share beside the bed."""
    from weakstil.crush import CRUSH_TILE_MAX, exclude_crush
    from weakstil.tumorbed.bed import TumorBed, TumorBedSource

    bed = TumorBed(np.ones((2, 2), bool), 4.0, np.ones(3, np.float32), TumorBedSource.TISSUE)
    attrs = exclude_crush(bed, _Features(np.array([0.0, 0.9, 0.1], np.float32)), "s").attrs()
    assert attrs["tumorbed_crush_tiles"] == 1 and attrs["tumorbed_crush_tile_max"] == CRUSH_TILE_MAX
    # and 'tumorbed apply' says it in its line per slide (its bed file: crush_tiles, crush_tile_max)
    from pathlib import Path

    from weakstil.tumorbed.apply import AppliedBed

    line = AppliedBed("s", bed, Path("o/s.h5"), Path("o/s.geojson")).summary()
    assert "2 / 3 tiles (less 1 of crush artefact) -> " in line


def test_train_says_a_slide_left_out_was_all_crush(caplog):
    """``train`` left a slide whose bed was all crush out with 'check their annotations (drawn on glass ...)' only."""
    import logging

    import pandas as pd

    from weakstil.cohort import Cohort
    from weakstil.train import _without_empty_beds
    from weakstil.tumorbed.resolver import BedSources

    ids = ["a", "b", "c", "d"]
    cohort = Cohort("c.csv", pd.DataFrame({"slide_id": ids, "path": ids, "stil": [1.0, 2.0, 3.0, 4.0]}), None)
    beds = BedSources(annotations="ann")
    beds.crush_of = {"a": 52, "b": 0, "c": 0, "d": 0}
    flags = {sid: np.array([sid != "a", sid == "c"]) for sid in ids}
    flags["b"] = np.zeros(2, bool)  # an outline on glass: no crush
    with caplog.at_level(logging.WARNING):
        left = _without_empty_beds(cohort, flags, beds, "c.csv")
    assert list(left.table["slide_id"]) == ["c", "d"]
    assert "all crush artefact, left out of the scored area: a (52 tiles)" in caplog.text
    assert "b (" not in caplog.text
