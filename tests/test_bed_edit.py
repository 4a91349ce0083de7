"""Editing a scored slide's tumour bed: rescoring from cached tile scores and saving the bed as
an annotation that `score --annotations` reads back to the same tiles. No napari, no model:
synthetic score files on a known tile grid, sTIL% checked against plain numpy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from weakstil.bed_edit import ScoredTiles, bed_shape, bed_tile_flags, rescore_with_bed, write_bed_geojson
from weakstil.errors import WeakSTILError
from weakstil.files import SlideScoresFile, TileScoresFile

MPP = 0.25  # slide µm/px
TILE = 448  # level-0 px (112 µm)
MASK_MPP = 8.0  # tissue-mask µm/px: a tile is 14 mask px
COLS, ROWS = 12, 8
WIDTH, HEIGHT = COLS * TILE + 200, ROWS * TILE + 300


def _grid():
    cols, rows = np.meshgrid(np.arange(COLS), np.arange(ROWS))
    return np.stack([cols.ravel() * TILE, rows.ravel() * TILE], 1).astype(np.int64), cols.ravel(), rows.ravel()


def _box(x0, y0, x1, y1):
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], float)


def _mean_score_file(path, scores, flags, bed_mask) -> ScoredTiles:
    """A mean-aggregated score file on the tile grid with the bed ``bed_mask`` (on the mask grid)."""
    coords, cols, _ = _grid()
    SlideScoresFile(coords=coords, tile_scores=scores, tumorbed=flags, tumorbed_fraction=flags.astype(np.float32),
                    tissue_fraction=np.ones(len(cols), np.float32), tissue_mask=np.ones(bed_mask.shape, bool),
                    tissue_mask_mpp=MASK_MPP, tumorbed_mask=bed_mask, tumorbed_mask_mpp=MASK_MPP,
                    attrs={"slide_id": "s1", "slide_mpp": MPP, "slide_width": WIDTH, "slide_height": HEIGHT,
                           "tile_size_level0": float(TILE), "stil": float(scores[flags].mean()), "threshold": 30.0,
                           "aggregator": "mean"}).write(path)
    return ScoredTiles.read(path)


def _softmax_mean(scores, logits, flags):
    a = logits[flags].astype(np.float64)
    w = np.exp(a - a.max())
    return float((w / w.sum() * scores[flags]).sum())


def _score_file(path, aggregator="mean", logits_kind="logits"):
    """A score file whose bed is tile columns 2..9 (level-0 x 896..4480), all rows."""
    coords, cols, rows = _grid()
    rng = np.random.default_rng(0)
    scores = (10 + 80 * (cols / COLS) + rng.uniform(0, 5, len(cols))).astype(np.float32)  # rises to the right
    flags = (cols >= 2) & (cols <= 9)
    shape = (round(HEIGHT * MPP / MASK_MPP), round(WIDTH * MPP / MASK_MPP))
    bed_mask = np.zeros(shape, bool)
    f = MPP / MASK_MPP
    bed_mask[:, round(2 * TILE * f):round(10 * TILE * f)] = True
    logits = rng.normal(0, 1, len(cols)).astype(np.float32)
    if aggregator == "attention":
        stil = _softmax_mean(scores, logits, flags)
        weights = np.where(flags, np.exp(logits.astype(np.float64) - logits[flags].max()), 0)
        weights = (weights / weights.sum()).astype(np.float32)
    else:
        stil, weights = float(scores[flags].mean()), None
    SlideScoresFile(coords=coords, tile_scores=scores, tumorbed=flags, tumorbed_fraction=flags.astype(np.float32),
                    tissue_fraction=np.ones(len(cols), np.float32), tissue_mask=np.ones(shape, bool),
                    tissue_mask_mpp=MASK_MPP, tumorbed_mask=bed_mask, tumorbed_mask_mpp=MASK_MPP,
                    attention=weights, attention_logits=logits if (aggregator == "attention" and
                                                                   logits_kind == "logits") else None,
                    attrs={"slide_id": "s1", "slide_mpp": MPP, "slide_width": WIDTH, "slide_height": HEIGHT,
                           "tile_size_level0": float(TILE), "stil": stil, "threshold": 30.0,
                           "aggregator": aggregator}).write(path)
    return {"path": path, "scores": scores, "logits": logits, "flags": flags, "cols": cols, "rows": rows,
            "stil": stil}


@pytest.mark.parametrize("aggregator", ["mean", "attention"])
def test_rescore_reproduces_the_score_and_follows_an_edited_bed(tmp_path, aggregator):
    s = _score_file(tmp_path / "s1.h5", aggregator)
    tiles = ScoredTiles.read(s["path"])
    assert tiles.aggregator == aggregator and tiles.threshold == 30.0
    # the file's own bed, as editable polygons, gives back its tiles and its score
    polygons, holes = tiles.bed_rings()
    same = tiles.rescore(polygons, holes)
    np.testing.assert_array_equal(same.tile_flags, s["flags"])
    assert same.stil == pytest.approx(s["stil"], abs=1e-3)
    # remove the right half of the bed (columns 6..9): x from 896 to 2688 level-0 px
    half = rescore_with_bed(s["path"], [_box(2 * TILE, 0, 6 * TILE, HEIGHT)])
    want = (s["cols"] >= 2) & (s["cols"] <= 5)
    np.testing.assert_array_equal(half.tile_flags, want)
    assert half.n_bed_tiles == int(want.sum()) == 4 * ROWS
    expected = (float(s["scores"][want].mean()) if aggregator == "mean"
                else _softmax_mean(s["scores"], s["logits"], want))
    assert half.stil == pytest.approx(expected, abs=1e-3)
    assert half.stil < s["stil"] - 5  # the removed half scored higher
    assert half.stil_high == (half.stil >= 30.0)


def test_rescore_counts_a_tile_when_half_of_it_is_in_the_bed_and_honours_holes(tmp_path):
    s = _score_file(tmp_path / "s1.h5")
    # columns 0-3 covered, column 4 only 40 % (out) and column 5 60 % (in), with a hole over rows 0-3 of
    # columns 0-1
    polygons = [_box(0, 0, 4 * TILE, HEIGHT), _box(4 * TILE, 0, 4.4 * TILE, HEIGHT),
                _box(5.4 * TILE, 0, 6 * TILE, HEIGHT)]
    hole = [_box(0, 0, 2 * TILE, 4 * TILE)]
    r = rescore_with_bed(s["path"], polygons, hole)
    want = ((s["cols"] <= 3) | (s["cols"] == 5)) & ~((s["cols"] <= 1) & (s["rows"] <= 3))
    np.testing.assert_array_equal(r.tile_flags, want)
    assert r.stil == pytest.approx(float(s["scores"][want].mean()), abs=1e-3)


def test_an_empty_bed_has_no_score_and_a_bed_off_the_slide_is_refused(tmp_path):
    s = _score_file(tmp_path / "s1.h5")
    empty = rescore_with_bed(s["path"], [])
    assert empty.n_bed_tiles == 0 and math.isnan(empty.stil) and empty.stil_high is None
    assert empty.label() == "no tumour bed"
    with pytest.raises(WeakSTILError, match="outside the slide"):
        rescore_with_bed(s["path"], [_box(10 * WIDTH, 0, 11 * WIDTH, 500)])


def test_an_older_attention_file_rescores_inside_its_bed_and_refuses_outside(tmp_path):
    s = _score_file(tmp_path / "s1.h5", "attention", logits_kind="weights only")
    inside = rescore_with_bed(s["path"], [_box(2 * TILE, 0, 6 * TILE, HEIGHT)])
    want = (s["cols"] >= 2) & (s["cols"] <= 5)
    assert inside.stil == pytest.approx(_softmax_mean(s["scores"], s["logits"], want), abs=1e-3)
    with pytest.raises(WeakSTILError, match="outside the original bed.*Fix: score the slide again"):
        rescore_with_bed(s["path"], [_box(0, 0, 6 * TILE, HEIGHT)])


def test_a_tile_score_file_from_evaluate_is_rescored_too(tmp_path):
    coords, cols, _ = _grid()
    scores = (cols * 7.0).astype(np.float32)
    path = tmp_path / "t.h5"
    TileScoresFile(coords=coords, tile_scores=scores, weights=np.full(len(cols), 1 / len(cols), np.float32),
                   tumorbed=np.ones(len(cols), bool),
                   attrs={"slide_id": "t", "slide_mpp": MPP, "slide_width": WIDTH, "slide_height": HEIGHT,
                          "tile_size_level0": float(TILE), "stil_pred": float(scores.mean()),
                          "aggregator": "mean"}).write(path)
    r = rescore_with_bed(path, [_box(0, 0, 3 * TILE, HEIGHT)])
    assert r.threshold == 30.0 and r.n_bed_tiles == 3 * ROWS
    assert r.stil == pytest.approx(float(scores[cols <= 2].mean()), abs=1e-4)


def test_a_saved_bed_is_read_back_by_score_annotations_to_the_same_tiles(tmp_path):
    from weakstil.annotations import find_annotation
    from weakstil.tumorbed.bed import SlideGeometry, from_annotation

    s = _score_file(tmp_path / "s1.h5")
    tiles = ScoredTiles.read(s["path"])
    # a many-vertex outline and a hole, as a pathologist would draw them
    t = np.linspace(0, 2 * np.pi, 300, endpoint=False)
    blob = np.stack([2600 + 1700 * np.cos(t), 1700 + 1300 * np.sin(t)], 1)
    hole = [_box(2200, 1300, 3100, 2100)]
    folder = tmp_path / "beds"
    saved = write_bed_geojson(folder, [blob], "s1", holes=hole, slide_size=(WIDTH, HEIGHT))
    assert saved == folder / "s1.geojson"
    assert find_annotation(folder, "s1") == saved
    f = SlideScoresFile.read(s["path"])
    read_back = from_annotation(saved, SlideGeometry.from_file(f))
    edited = bed_tile_flags(bed_shape([blob], hole), tiles.geometry)
    np.testing.assert_array_equal(read_back.tile_flags, edited)
    assert 0 < edited.sum() < len(edited) and not edited[(s["cols"] == 5) & (s["rows"] == 3)]  # in the hole
    assert tiles.rescore([blob], hole).n_bed_tiles == int(edited.sum())
    assert not list(folder.glob("*.tmp*"))  # written atomically


def test_saving_refuses_an_empty_bed_and_the_score_tile_geojson(tmp_path):
    from weakstil.outputs import write_tiles_geojson

    with pytest.raises(WeakSTILError, match="empty"):
        write_bed_geojson(tmp_path, [], "s1")
    coords, _, _ = _grid()
    tiles_geojson = tmp_path / "s1.geojson"
    write_tiles_geojson(tiles_geojson, coords, float(TILE), {"sTIL score": np.zeros(len(coords), np.float32)},
                        np.array(["Other"] * len(coords)))
    before = tiles_geojson.read_bytes()
    with pytest.raises(WeakSTILError, match="tile GeoJSON"):
        write_bed_geojson(tmp_path, [_box(0, 0, 900, 900)], "s1")
    assert tiles_geojson.read_bytes() == before


def test_a_bed_folder_set_to_a_result_file_is_refused_as_not_geojson(tmp_path):
    """napari hunt 34d: the bed folder set to the slide's result (S.h5) was taken for the bed file's own name
    and refused as "an annotation that Save bed did not write"; it is no GeoJSON, and the fix is a folder."""
    result = tmp_path / "s1.h5"
    result.write_bytes(b"HDF")
    with pytest.raises(WeakSTILError) as refused:
        write_bed_geojson(result, [_box(0, 0, 900, 900)], "s1")
    assert "is not a GeoJSON file" in str(refused.value) and "choose a folder" in str(refused.value)
    assert "did not write" not in str(refused.value) and result.read_bytes() == b"HDF"


def test_mask_fractions_of_a_boolean_mask_equal_the_full_summed_area_table():
    """The fast path for boolean masks (rescoring speed) gives the float table's fractions exactly."""
    from weakstil.tiling import mask_fractions

    rng = np.random.default_rng(1)
    for _ in range(10):
        h, w = rng.integers(1, 200, 2)
        mask = rng.random((h, w)) > rng.random()
        coords = rng.integers(-300, 9000, (int(rng.integers(1, 300)), 2))
        tile, mask_mpp, slide_mpp = float(rng.uniform(50, 900)), float(rng.choice([2.0, 8.0])), float(rng.uniform(0.2, 1))
        as_float = mask_fractions(coords, tile, mask.astype(np.float32), mask_mpp, slide_mpp)  # the float table
        np.testing.assert_array_equal(mask_fractions(coords, tile, mask, mask_mpp, slide_mpp), as_float)


def test_a_shape_touching_the_slide_edge_from_outside_is_clipped_away(tmp_path):
    """Clipping to the slide leaves a line where a shape touches its edge: not an area, ignored."""
    s = _score_file(tmp_path / "s1.h5")
    r = rescore_with_bed(s["path"], [_box(TILE, 0, 3 * TILE, HEIGHT), _box(-TILE, 100, 0, 900)])
    np.testing.assert_array_equal(r.tile_flags, (s["cols"] >= 1) & (s["cols"] <= 2))


def test_an_irregular_bed_round_trips_exactly_through_its_outlines(tmp_path):
    """A detected bed is a pixel staircase on the mask grid; its editable outlines (napari's Edit
    bed) and the outlines `tumorbed apply` writes must rasterize back to the very same mask pixels,
    so Rescore of an unedited bed and `score --annotations` of a written one give the scored tiles.
    (PIL's polygon fill set every pixel the outline touched: about 20 pixels more per bed, and a
    tile more or less on one of four slides of an outside tester.)"""
    from scipy import ndimage as ndi

    from weakstil.annotations import rasterize
    from weakstil.tiling import mask_fractions
    from weakstil.tumorbed.apply import bed_polygons

    coords, cols, rows = _grid()
    shape = (round(HEIGHT * MPP / MASK_MPP), round(WIDTH * MPP / MASK_MPP))
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    ellipse = ((yy - shape[0] / 2) / (0.4 * shape[0])) ** 2 + ((xx - shape[1] / 2) / (0.4 * shape[1])) ** 2 < 1
    blob = ellipse & (ndi.gaussian_filter(rng.normal(size=shape), 4) > -0.12)  # ragged edges, bays
    for cy, cx in ((shape[0] // 2, shape[1] // 3), (shape[0] // 2, 2 * shape[1] // 3)):
        blob[(yy - cy) ** 2 + (xx - cx) ** 2 < 20] = False  # two holes
    flags = mask_fractions(coords, float(TILE), blob, MASK_MPP, MPP) >= 0.5
    assert 10 < flags.sum() < len(flags) - 10
    scores = rng.uniform(0, 60, len(cols)).astype(np.float32)
    tiles = _mean_score_file(tmp_path / "s1.h5", scores, flags, blob)
    polygons, holes = tiles.bed_rings()
    assert holes  # the blob has holes, and they come back as holes
    again = rasterize(bed_shape(polygons, holes), WIDTH, HEIGHT, MPP, MASK_MPP)
    np.testing.assert_array_equal(again, blob)
    same = tiles.rescore(polygons, holes)
    np.testing.assert_array_equal(same.tile_flags, flags)
    assert same.stil == pytest.approx(float(scores[flags].mean()), abs=1e-4)

    class Bed:  # what bed_polygons reads of a TumorBed
        mask, mask_mpp = blob, MASK_MPP

    class Geometry:
        slide_mpp, width, height = MPP, WIDTH, HEIGHT

    np.testing.assert_array_equal(rasterize(bed_polygons(Bed, Geometry), WIDTH, HEIGHT, MPP, MASK_MPP), blob)


def test_a_shape_dragged_far_past_the_slide_edge_in_the_viewer_is_cut_to_the_slide(tmp_path):
    """A rectangle dragged over the whole slide and well past it (meaning "all of it") is cut to
    the slide when drawn in the viewer (clip), and saved cut, so `score --annotations` reads it back;
    the same polygons from a file are still refused (an annotation in the wrong units)."""
    from weakstil.annotations import AnnotationError, load_polygons

    s = _score_file(tmp_path / "s1.h5")
    tiles = ScoredTiles.read(s["path"])
    huge = [_box(-3 * WIDTH, -3 * HEIGHT, 4 * WIDTH, 4 * HEIGHT)]  # 2 % of it on the slide
    whole = tiles.rescore(huge, clip=True)
    assert whole.n_bed_tiles == whole.n_tiles == len(s["cols"])
    with pytest.raises(AnnotationError, match="outside the slide"):
        tiles.rescore(huge)
    saved = write_bed_geojson(tmp_path / "beds", huge, "s1", slide_size=(WIDTH, HEIGHT), clip=True)
    shape = load_polygons(saved)
    assert shape.bounds == (0.0, 0.0, float(WIDTH), float(HEIGHT))
    with pytest.raises(WeakSTILError, match="entirely off the slide"):
        write_bed_geojson(tmp_path / "b2", [_box(-900, -900, -100, -100)], "s1", slide_size=(WIDTH, HEIGHT),
                          clip=True)


def test_a_bed_inside_a_hole_is_bed_in_drawing_order(tmp_path):
    """Shapes are drawn in order: a bed drawn inside an earlier hole is bed again (a pathologist's
    island of tumour in a cut-out region; all-beds-minus-all-holes lost it, and Save bed refused a bed
    drawn inside a hole as empty). A scored bed with such an island comes back as it was."""
    from weakstil.annotations import load_polygons, rasterize
    from weakstil.bed_edit import BED_PART, HOLE_PART, ordered_bed_shape

    coords, cols, rows = _grid()
    shape = (round(HEIGHT * MPP / MASK_MPP), round(WIDTH * MPP / MASK_MPP))
    t = 14  # mask px per tile
    mask = np.zeros(shape, bool)
    mask[:8 * t, :8 * t] = True
    mask[2 * t:6 * t, 2 * t:6 * t] = False
    mask[3 * t:5 * t, 3 * t:5 * t] = True  # the island in the hole
    flags = (cols < 8) & ~((cols >= 2) & (cols < 6) & (rows >= 2) & (rows < 6)) | \
        ((cols >= 3) & (cols < 5) & (rows >= 3) & (rows < 5))
    scores = (cols * 5.0).astype(np.float32)
    tiles = _mean_score_file(tmp_path / "s1.h5", scores, flags, mask)
    rings, parts = tiles.bed_parts()
    assert parts == [BED_PART, HOLE_PART, BED_PART]  # outline, its hole, the island: in drawing order
    np.testing.assert_array_equal(rasterize(ordered_bed_shape(rings, parts), WIDTH, HEIGHT, MPP, MASK_MPP), mask)
    same = tiles.rescore_parts(rings, parts)
    np.testing.assert_array_equal(same.tile_flags, flags)
    assert same.stil == pytest.approx(float(scores[flags].mean()), abs=1e-4)

    big, hole, island = _box(0, 0, 8 * TILE, HEIGHT), _box(2 * TILE, 2 * TILE, 6 * TILE, 6 * TILE), \
        _box(3 * TILE, 3 * TILE, 5 * TILE, 5 * TILE)
    drawn = tiles.rescore_parts([big, hole, island], [BED_PART, HOLE_PART, BED_PART])
    assert drawn.n_bed_tiles == 64 - 16 + 4
    assert tiles.rescore([big, island], [hole]).n_bed_tiles == 64 - 16  # all beds, then all holes
    island_only = tiles.rescore_parts([hole, island], [HOLE_PART, BED_PART])  # a hole first, then a bed in it
    assert island_only.n_bed_tiles == 4
    saved = write_bed_geojson(tmp_path / "beds", [big, hole, island], "s1", parts=[BED_PART, HOLE_PART, BED_PART],
                              slide_size=(WIDTH, HEIGHT))
    np.testing.assert_array_equal(tiles.rescore_shape(load_polygons(saved)).tile_flags, drawn.tile_flags)


def _tile_file(path, attrs=None, **datasets):
    """A train/evaluate tile-score file on the grid, all tiles in the bed, without a threshold."""
    coords, cols, _ = _grid()
    path.parent.mkdir(parents=True, exist_ok=True)
    scores = datasets.pop("tile_scores", (cols * 7.0).astype(np.float32))
    TileScoresFile(coords=coords, tile_scores=scores, weights=np.full(len(cols), 1 / len(cols), np.float32),
                   tumorbed=datasets.pop("tumorbed", np.ones(len(cols), bool)), **datasets,
                   attrs={"slide_id": path.stem, "slide_mpp": MPP, "slide_width": WIDTH, "slide_height": HEIGHT,
                          "tile_size_level0": float(TILE), "stil_pred": 35.0, "aggregator": "mean",
                          **(attrs or {})}).write(path)
    return path


def test_an_older_cv_or_evaluate_tile_file_is_called_at_its_folders_threshold(tmp_path):
    """cv/tiles and evaluate tiles files recorded no threshold (an outside tester's model trained with
    --threshold 40 had its 35 % slide called high at 30 % on Rescore): the folder's metrics.json
    says it, else the model.json beside cv/; only a file alone is called at the default, and says so."""
    import json

    model = tmp_path / "model"
    model.mkdir()
    (model / "model.json").write_text(json.dumps({"threshold": 40.0}))
    cv = rescore_with_bed(_tile_file(model / "cv" / "tiles" / "a.h5"), [_box(0, 0, 6 * TILE, HEIGHT)])
    assert cv.threshold == 40.0 and not cv.threshold_default and cv.stil == pytest.approx(17.5)
    evaluation = tmp_path / "eval"
    evaluation.mkdir()
    (evaluation / "metrics.json").write_text(json.dumps({"threshold": 15.0, "n": 3}))
    ev = rescore_with_bed(_tile_file(evaluation / "tiles" / "b.h5"), [_box(0, 0, 6 * TILE, HEIGHT)])
    assert ev.threshold == 15.0 and ev.stil_high and "(threshold 15 %)" in ev.label()
    alone = rescore_with_bed(_tile_file(tmp_path / "c.h5"), [_box(0, 0, 6 * TILE, HEIGHT)])
    assert alone.threshold == 30.0 and alone.threshold_default and "default threshold" in alone.label()
    recorded = ScoredTiles.read(_tile_file(model / "cv" / "tiles" / "d.h5", attrs={"threshold": 25.0}))
    assert recorded.threshold == 25.0  # the file's own threshold first


def test_tile_estimates_follow_the_edited_bed_as_score_publishes_them(tmp_path):
    """A stroma model's published tile scores lean towards the bed's sTIL%: after Rescore, the tiles
    shown are those of the edited bed, whose stroma-weighted mean over it is the rescored sTIL%."""
    from weakstil.mil.aggregate import tile_estimates

    coords, cols, _ = _grid()
    own = (10 + 80 * cols / COLS).astype(np.float32)
    stroma = np.linspace(0.05, 0.9, len(cols)).astype(np.float32)
    flags = cols >= 2
    published = tile_estimates(own, stroma, flags, prior_stroma=0.2)
    path = _tile_file(tmp_path / "s.h5", attrs={"aggregator": "stroma", "tile_prior_stroma": 0.2},
                      tile_scores=published, tile_scores_model=own, stroma_weight=stroma, tumorbed=flags)
    tiles = ScoredTiles.read(path)
    np.testing.assert_allclose(tiles.tile_estimates(flags), published, atol=1e-5)  # the file's own bed: as written
    edited = tiles.rescore([_box(0, 0, 4 * TILE, HEIGHT)])  # columns 0-3: the low-scoring side
    shown = tiles.tile_estimates(edited.tile_flags)
    assert np.abs(shown - published).max() > 1.0  # the prior moved with the bed
    w = stroma[edited.tile_flags].astype(np.float64)
    assert float((w * shown[edited.tile_flags]).sum() / w.sum()) == pytest.approx(edited.stil, abs=1e-3)


def test_a_score_file_with_non_finite_tile_scores_is_refused_not_rescored_to_nan(tmp_path):
    """napari hunt 34d: a damaged score file with NaN tile scores rescored to "sTIL nan % · low"."""
    import h5py

    s = _score_file(tmp_path / "s1.h5")
    with h5py.File(s["path"], "r+") as f:
        scores = f["tile_scores"][...]
        scores[3] = np.nan
        f["tile_scores"][...] = scores
    with pytest.raises(WeakSTILError) as refused:
        ScoredTiles.read(s["path"])
    assert "holds 1 non-finite tile scores" in str(refused.value) and "score the slide again" in str(refused.value)
