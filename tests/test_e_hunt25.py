"""Hunt 25 (lead): a slide scored over a detected tumour bed gets the outline's error in its interval.

The quick demo's model is trained and calibrated on annotated beds and scores new slides over the
beds its bundled detector draws: on 30 in-distribution slides its 90 % interval covered 90 % with
the exact beds and 73 % with the detector's (hunt 25c), whose outlines run about a tile off. The
interval now adds how much the number moves with the outline (``weakstil.qc.bed_outline``). The
end-to-end check on a scored slide is in ``tests/test_demo.py``."""

from __future__ import annotations

import math

import numpy as np

from weakstil.qc.bed_outline import (OUTLINE_SD_PER_RANGE, calibration_lacks_outline_error, interior_and_grown,
                                     outline_sd)

TILE = 224.0


def _grid(n: int, skip: set[tuple[int, int]] = frozenset()) -> np.ndarray:
    return np.array([[c * TILE, r * TILE] for r in range(n) for c in range(n) if (r, c) not in skip], np.int64)


def test_interior_and_grown_bed_on_the_tile_grid():
    coords = _grid(5)
    rc = coords[:, ::-1] // int(TILE)
    bed = (np.abs(rc - 2) <= 1).all(axis=1)  # the central 3 x 3 tiles
    interior, grown = interior_and_grown(coords, TILE, bed)
    assert interior.sum() == 1 and interior[(rc == 2).all(axis=1)].all()  # only the centre: all its neighbours bed
    assert grown.all()  # every tile of the 5 x 5 grid touches the bed
    # glass (no tile) beside the bed does not count against its interior: the grid's left column is glass
    coords = _grid(5, skip={(r, 0) for r in range(5)})
    rc = coords[:, ::-1] // int(TILE)
    bed = (rc[:, 1] <= 2) & (np.abs(rc[:, 0] - 2) <= 1)  # columns 1-2, rows 1-3
    interior, grown = interior_and_grown(coords, TILE, bed)
    assert set(map(tuple, rc[interior])) == {(2, 1)}  # next to glass on the left, bed all round else
    assert set(map(tuple, rc[grown & ~bed])) == {(0, 1), (0, 2), (0, 3), (1, 3), (2, 3), (3, 3), (4, 1), (4, 2),
                                                 (4, 3)}


def test_outline_sd_is_the_uniform_spread_between_the_interior_and_the_grown_bed():
    coords = _grid(5)
    rc = coords[:, ::-1] // int(TILE)
    ring = np.abs(rc - 2).max(axis=1)  # 0 centre, 1 the bed's rim, 2 outside
    scores = np.where(ring == 0, 60.0, np.where(ring == 1, 30.0, 0.0)).astype(np.float32)
    bed = ring <= 1
    sd = outline_sd(scores, bed, coords, TILE)  # the mean aggregator
    interior, bed_mean, grown = 60.0, (60 + 8 * 30) / 9, (60 + 8 * 30) / 25
    assert min(interior, bed_mean, grown) == grown
    assert math.isclose(sd, (interior - grown) * OUTLINE_SD_PER_RANGE, rel_tol=1e-6)
    # the stroma aggregator weighs by stroma: a rim of fat (no stroma) moves nothing
    stroma = np.where(ring == 1, 0.0, 1.0).astype(np.float32)
    scores_flat = np.where(ring == 2, 60.0, scores).astype(np.float32)  # stroma outside as TIL-rich as inside
    assert math.isclose(outline_sd(scores_flat, bed, coords, TILE, stroma=stroma), 0.0, abs_tol=1e-6)
    # a bed that does not move the number with its outline adds nothing; no bed: no number
    assert math.isclose(outline_sd(np.full(25, 12.0, np.float32), bed, coords, TILE), 0.0, abs_tol=1e-9)
    assert math.isnan(outline_sd(scores, np.zeros(25, bool), coords, TILE))


def test_only_a_detected_bed_on_a_model_calibrated_on_other_beds_adds_the_outline_error():
    annotated = {"annotation": 30}
    assert calibration_lacks_outline_error("model", annotated)
    assert calibration_lacks_outline_error("model", {})  # a model that does not record its beds
    assert calibration_lacks_outline_error("model", {"model": 10, "annotation": 10})
    # the detector's beds trained the model: its out-of-fold errors, the calibration's, hold them
    assert not calibration_lacks_outline_error("model", {"model": 30})
    # a pathologist's outline, the whole tissue: not a detector's outline
    for source in ("annotation", "tissue", "tissue-fallback", None):
        assert not calibration_lacks_outline_error(source, annotated)
