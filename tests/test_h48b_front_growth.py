"""How far the front refinement may grow the bed past the tile-level one (issue 14, helper h48b).

Was: the bed redrawn from half-stride evidence at its front (hunt 45b) could grow without bound: shifted tiles on plain
stroma beside a TIL-poor bed read as tumour, seeded, and the bridge and infiltrate grew from them (41a's og41a_006:
the front added half the true bed's area, all stroma 100-450 µm from the nearest nest; Dice 0.719 -> 0.653). Now the
growth past the tile-level bed is bounded by ``grow_tiles`` tiles, chosen by ``tumorbed train`` with the front
(leave-one-slide-out); a detector written without it keeps its beds.
"""

from __future__ import annotations

import dataclasses
import json
from types import SimpleNamespace

import numpy as np
import pytest

from test_tumorbed_front_h45b import MASK_MPP, TILE, _geom  # the same n x n tile slide on a 10 µm mask


def _detector(front):
    from weakstil.bed_geometry import BedShape
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence

    one = np.ones(1, np.float32)
    return TumorBedDetector(LogisticEvidence(one, 0.0, 0 * one, one), BedShape(
        seed_threshold=0.5, smooth_um=0.0, bridge_um=150.0, margin_um=0.0), front=front)


def _stroma_read_as_tumour(xy):
    """Every shifted tile whose centre lies left of 700 µm reads as tumour: the tiles' bed ends at 500 µm, so those
    right of it are stroma beside the bed that the classifier takes for tumour (a TIL-poor slide's false front)."""
    return np.where(xy[:, 0] + TILE / 2 < 700, 10.0, -10.0).astype(np.float32)[:, None]


def test_the_redrawn_bed_grows_no_further_past_the_tiles_bed_than_its_bound():
    from weakstil.tumorbed.front import FrontRefine

    g = _geom()
    cols = (g.coords[:, 0] / TILE).astype(int)
    feats = np.where(cols <= 4, 10.0, -10.0).astype(np.float32)[:, None]  # tumour in tile columns 0-4
    widths = {}
    for grow in (None, 1.0, 0.25, 0.0):
        det = _detector(FrontRefine(True, 1.0, grow))
        bed = det.detect(feats, g)
        assert bed.mask[60].sum() == 50  # the tiles' bed ends at 500 µm
        out = det.refine_front(dataclasses.replace(bed), feats, g, None, None, None, _stroma_read_as_tumour)
        assert "shifted tiles" in out.seed_vetoes and "not used" not in out.seed_vetoes
        assert np.array_equal(out.mask[:, :45], bed.mask[:, :45])  # the inside untouched
        widths[grow] = int(out.mask[60].sum()) * MASK_MPP
    assert widths[None] >= 560  # unbounded (as before): the stroma read as tumour joins the bed, > half a tile out
    assert widths[1.0] <= 600 and 500 < widths[0.25] <= 525 and widths[0.0] == 500
    assert widths[None] > widths[0.25] > widths[0.0]


def test_old_json_keeps_growth_unbounded_and_the_bound_round_trips(tmp_path):
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.front import FrontRefine

    _detector(FrontRefine(True)).save(tmp_path / "old")
    meta = json.loads((tmp_path / "old" / "model.json").read_text())
    assert meta["front"] == {"enabled": True, "band_tiles": 1.0}  # written as before the bound
    assert TumorBedDetector.load(tmp_path / "old").front.grow_tiles is None
    _detector(FrontRefine(True, 1.0, 0.25)).save(tmp_path / "new")
    assert json.loads((tmp_path / "new" / "model.json").read_text())["front"]["grow_tiles"] == 0.25
    assert TumorBedDetector.load(tmp_path / "new").front == FrontRefine(True, 1.0, 0.25)
    for bad in (-1, "0.5", True):
        meta["front"]["grow_tiles"] = bad
        (tmp_path / "old" / "model.json").write_text(json.dumps(meta))
        with pytest.raises(WeakSTILError, match="grow_tiles"):
            TumorBedDetector.load(tmp_path / "old")


@pytest.mark.parametrize("truth_um, loose", [(500, False), (700, True)])
def test_training_chooses_the_bound_the_annotations_support(truth_um, loose):
    """The same false-looking front is chosen bounded when the annotation ends at the tiles' edge (stroma beyond it),
    and unbounded (or loosely bounded) when the annotation does reach out to 700 µm (the front placed right)."""
    from weakstil.bed_geometry import BedShape
    from weakstil.tumorbed.front import choose_front

    g = _geom()
    cols = (g.coords[:, 0] / TILE).astype(int)
    ev = (cols <= 4).astype(np.float32)
    truth = np.zeros(g.tissue_mask.shape, bool)
    truth[:, : int(truth_um / MASK_MPP)] = True
    slide = SimpleNamespace(slide_id="s1", geom=g, tile_stats=None, stats_columns=None,
                            features=np.zeros((len(ev), 1), np.float32), bed_mask=truth)
    shape = BedShape(seed_threshold=0.5, smooth_um=0.0, bridge_um=150.0, margin_um=0.0)
    rule, record = choose_front([slide], [ev], [ev], [lambda x: (x[:, 0] > 0).astype(np.float32)], shape, False,
                                lambda sid: lambda xy: _stroma_read_as_tumour(xy) / 10.0)
    by = record["dice_on_by_grow"]
    assert set(by) == {"on", "on_grow_1", "on_grow_0.5", "on_grow_0.25", "on_grow_0"}
    assert record["grow_tiles"] == rule.grow_tiles
    if loose:
        assert rule.enabled and (rule.grow_tiles is None or rule.grow_tiles >= 1.0) and by["on"] > by["on_grow_0"]
    else:
        assert rule.grow_tiles == 0.0 and by["on_grow_0"] > by["on"]


def test_the_front_is_chosen_on_the_beds_the_chosen_structure_steps_draw():
    """Was: the front (and now its bound) was chosen on tile-level beds without the mucin pools, lobules and aggregates
    the detector applies: 41a's og41a_022 missed its pools there, and the front's growth stood in for them (the bound
    chosen looser than on the beds detect_file draws). Now the chosen steps are applied first (chosen_structure)."""
    from weakstil.bed_geometry import BedShape
    from weakstil.tumorbed.front import choose_front
    from weakstil.tumorbed.mucin import chosen_structure

    g = _geom()
    cols = (g.coords[:, 0] / TILE).astype(int)
    ev = (cols <= 4).astype(np.float32)
    pool = np.zeros(g.tissue_mask.shape, bool)
    pool[:, 50:70] = True  # a mucin pool beside the tumour, the annotation's
    lobule = np.zeros(g.tissue_mask.shape, bool)
    lobule[:20, :20] = True  # a normal lobule inside the tiles' bed, not the annotation's
    lob_tiles = (cols <= 1) & ((g.coords[:, 1] / TILE).astype(int) <= 1)
    truth = np.zeros(g.tissue_mask.shape, bool)
    truth[:, :70] = True
    truth &= ~lobule
    slide = SimpleNamespace(slide_id="s1", geom=g, tile_stats=None, stats_columns=None,
                            features=np.zeros((len(ev), 1), np.float32), bed_mask=truth)
    assert chosen_structure(None, None, None) is None
    prepare = chosen_structure(None, lambda sid, geom: (lobule, lob_tiles), lambda sid, geom: pool)
    pg, pev = prepare(slide, ev)
    assert pg is not g and g.seed_pixels is None and np.array_equal(pg.seed_pixels, pool)
    assert not pg.tissue_mask[lobule].any() and pg.tissue_mask[pool].all() and (pev[lob_tiles] == 0).all()
    shape = BedShape(seed_threshold=0.5, smooth_um=0.0, bridge_um=0.0, margin_um=0.0)
    args = ([slide], [ev], [ev], [lambda x: (x[:, 0] > 0).astype(np.float32)], shape, False,
            lambda sid: lambda xy: np.zeros((len(xy), 1), np.float32))  # the shifted tiles read no tumour
    bare = choose_front(*args)[1]
    steps = choose_front(*args, prepare=prepare)[1]
    assert steps["dice_off"] > bare["dice_off"] + 0.1  # the tile-level bed with the pool seeded, the lobule out
