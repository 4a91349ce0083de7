"""Fault hunt 15 (a): the same tissue through other scanners and file formats.

A 40x scan read at 0.5 µm/px must give the tiles of the same tissue at 20x, whichever way the file
stores it (with or without a x2 pyramid level, JPEG or lossless, CPU or GPU decoding)."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import pytest

from conftest import CMU
from weakstil.slide import Slide

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _tiff(path: Path, img: np.ndarray, mpp: float, levels: int, factor: int, compression: str = "zlib") -> Path:
    """A tiled pyramidal generic TIFF (levels averaged ``factor`` x ``factor``), µm/px in cm tags."""
    import tifffile

    with tifffile.TiffWriter(path) as tw:
        a = img
        for k in range(levels):
            if k:
                h, w = a.shape[0] // factor, a.shape[1] // factor
                a = a[:h * factor, :w * factor].reshape(h, factor, w, factor, 3).mean((1, 3)).round().astype(np.uint8)
            ds = img.shape[1] / a.shape[1]
            tw.write(a, tile=(256, 256), compression=compression, photometric="rgb", metadata=None,
                     resolution=(1e4 / (mpp * ds), 1e4 / (mpp * ds)), resolutionunit="CENTIMETER",
                     subfiletype=1 if k else 0)
    return path


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Real tissue (CMU-1, 0.499 µm/px) as the 20x scan, and the same pixels as 40x scans (each pixel
    2 x 2): a lossless TIFF with only a x4 pyramid (OpenSlide reads level 0) and an Aperio SVS."""
    from weakstil.decode.svswriter import write_svs

    d = tmp_path_factory.mktemp("scans")
    with Slide.open(CMU) as s:
        px20 = np.asarray(s.backend.read_region((600, 1200), 0, (720, 720)).convert("RGB"))
    px40 = px20.repeat(2, 0).repeat(2, 1)
    return {"px20": px20,
            "tif40": _tiff(d / "x4.tif", px40, 0.25, levels=2, factor=4),
            "svs40": write_svs(d / "s40.svs", px40, 0.25, quality=95)}


COORDS = np.array([[0, 0], [448, 0], [448, 448], [896, 448]])  # level-0 px of the 40x files


def _want(px20: np.ndarray) -> np.ndarray:
    return np.stack([px20[y // 2:y // 2 + 224, x // 2:x // 2 + 224] for x, y in COORDS])


def test_a_40x_scan_without_a_x2_level_reads_as_the_20x_pixels(scans):
    """OpenSlide path: a 40x file whose pyramid has no 0.5 µm/px level (Aperio's x4 levels, NDPI,
    JPEG 2000 SVS, lossless TIFF) is reduced from level 0. It was a bilinear resize whose triangle
    spans two target pixels: 3.3 grey levels from the 20x pixels (up to 61), and the quick demo
    model scored such files 2.1-2.9 sTIL points below the same slide with a x2 level (39.3 -> 37.5,
    50.2 -> 47.1). Now whole 2 x 2 blocks are averaged first (box), as a 20x sensor pixel is."""
    with Slide.open(scans["tif40"]) as s:
        assert s.mpp == pytest.approx(0.25) and s.best_level_for_mpp(0.5) == 0
        got = np.stack([s.read_region(int(x), int(y), 224, 0.5) for x, y in COORDS])
    d = np.abs(got.astype(int) - _want(scans["px20"]))
    assert d.max() <= 1, (d.mean(), d.max())


def test_gpu_reduction_of_a_40x_jpeg_scan_is_the_box_average(scans):
    """nvJPEG decodes full tiles and the GPU path reduces them: it was a bilinear (antialiased)
    resize as well, 3.3 grey levels from the 20x pixels where the CPU path's DCT scaling is 0.13.
    Run here with the GPU path's code on the CPU (torchvision's decoder)."""
    from weakstil.decode import plan_reader
    from weakstil.decode.gpu import GpuTileBatches
    from weakstil.decode.workers import iter_batches_inline

    with Slide.open(scans["svs40"]) as s:
        spec = plan_reader(s, 0.5, 224)
    assert spec.jpeg is not None and spec.jpeg.reduce == 2
    gpu = GpuTileBatches(spec.jpeg, COORDS, 224, 4, "cpu")
    got = np.concatenate([b.numpy() for _, b in gpu])
    gpu.close()
    cpu = np.concatenate([b for _, b in iter_batches_inline(spec, COORDS, 4)])
    want = _want(scans["px20"])
    d_gpu = np.abs(got.astype(int) - want).mean()
    d_cpu = np.abs(cpu.astype(int) - want).mean()
    assert d_gpu < 1.5 and d_cpu < 1.5, (d_gpu, d_cpu)
    # a reduction of 2.03 (an Aperio 40x scan, 0.2465 µm/px): pooled 2 x 2, then the region's own
    # extent resized, as Slide.read_region does (resizing the pooled pixels' ceil: 2.6 grey levels off)
    with Slide.open(CMU, slide_mpp=0.2465) as s:
        spec = plan_reader(s, 0.5, 224)
        coords = np.array([[0, 0], [455, 910], [910, 455]])
        ref = np.stack([s.read_region(int(x), int(y), 224, 0.5) for x, y in coords])
    gpu = GpuTileBatches(spec.jpeg, coords, 224, 4, "cpu")
    got = np.concatenate([b.numpy() for _, b in gpu])
    gpu.close()
    assert np.abs(got.astype(int) - ref).mean() < 0.6


def test_a_feature_cache_of_bilinear_reduced_tiles_is_embedded_again():
    """Caches made before the fix carry no ``reduce`` in their decode record: those whose tiles
    the resize reduced 2x or more are stale (one log line says why); 20x slides and DCT-scaled
    ones keep theirs."""
    from weakstil.feature_cache import _decoded_before_resize_fix as stale

    def attrs(slide_mpp, decode):
        return {"mpp": 0.5, "slide_mpp": slide_mpp, "decode": json.dumps(decode)}

    why = stale(attrs(0.25, {"path": "openslide"}))
    assert why is not None and "2x reduced" in why and "blurred" in why
    assert stale(attrs(0.25, {"path": "nvjpeg", "dct_scale": "1/1"})) is not None
    assert stale(attrs(0.25, {"path": "openslide", "reduce": "box, then bilinear"})) is None
    assert stale(attrs(0.5, {"path": "openslide"})) is None  # a 20x scan: no reduction
    # (a 0.499 µm/px scan's, resized 1.002x bilinearly, is stale since hunt 30a: tests/test_a_hunt30.py)
    assert stale(attrs(0.25, {"path": "jpeg", "dct_scale": "1/2", "dct_resize": "true extent"})) is None


# -- an outline of the 20x scan on the 40x one -------------------------------------------
def _outline(path: Path, x0: float, y0: float, x1: float, y1: float) -> Path:
    ring = [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
         "properties": {"objectType": "annotation", "classification": {"name": "Tumor bed"}}}]}))
    return path


def _geometry():
    """A 40x slide (4000 px = 1 mm) whose tissue covers it all, tiles of 448 level-0 px."""
    from weakstil.tumorbed.bed import SlideGeometry

    xs = np.arange(0, 4000 - 447, 448)
    coords = np.array([(x, y) for y in xs for x in xs], np.int64)
    return SlideGeometry(4000, 4000, 0.25, coords, 448.0, np.ones((125, 125), bool), 8.0)


def _detector_bed(geom, x0, y0, x1, y1):
    from weakstil.annotations import load_polygons, rasterize
    from weakstil.tumorbed.bed import TumorBed, TumorBedSource

    with tempfile.TemporaryDirectory() as d:
        poly = load_polygons(_outline(Path(d) / "d.geojson", x0, y0, x1, y1))
    mask = geom.fit_mask(rasterize(poly, geom.width, geom.height, geom.slide_mpp, geom.mask_mpp))
    return TumorBed(mask, 8.0, geom.tile_fractions(mask, 8.0), TumorBedSource.MODEL, "detector")


def test_an_outline_in_20x_pixels_on_a_40x_slide_is_flagged_when_it_still_lies_on_tissue(tmp_path):
    """The 20x outline of a rescanned 40x slide (or one exported at a x2 lower level) is a copy
    shrunk to the top-left; where it still lies on tissue the tissue check said nothing, and score
    used it: a synthetic 40x slide scored 56.8 % on 10 bed tiles instead of 46.9 % on 43, flagged
    only few_tumorbed_tiles. With the detector at hand (score, tumorbed apply), its bed matching the
    x2 copy far better than the outline flags annotation_misplaced."""
    from weakstil.tumorbed.bed import from_annotation

    geom = _geometry()
    detected = _detector_bed(geom, 800, 800, 2800, 2800)
    calls = []

    def reference():
        calls.append(1)
        return detected

    half = from_annotation(_outline(tmp_path / "half.geojson", 400, 400, 1400, 1400), geom, reference)
    assert "× 2" in half.misplaced and "detector" in half.misplaced, half.misplaced
    assert half.found  # the bed is used as the file says: a flag, not a refusal
    # the outline as meant: its x2 copy leaves the slide; the detector (run once per outline since hunt 30c,
    # which flags an outline it finds nothing of) agrees with it
    exact = from_annotation(_outline(tmp_path / "exact.geojson", 800, 800, 2800, 2800), geom, reference)
    assert exact.misplaced == "" and calls == [1, 1]
    # a small bed near the top-left corner, drawn right: the detector agrees with it, not with its copy
    corner = _detector_bed(geom, 200, 200, 1200, 1200)
    near = from_annotation(_outline(tmp_path / "corner.geojson", 200, 200, 1200, 1200), geom, lambda: corner)
    assert near.misplaced == ""
    # no detector: nothing to compare with, as before
    assert from_annotation(tmp_path / "half.geojson", geom).misplaced == ""


# -- the interval of a scan whose tile is not a whole number of pixels --------------------
def _grid(slide_mpp: float, mm: float = 1.2):
    from weakstil.tiling import TileGrid

    side = int(round(mm * 1000 / slide_mpp))
    grid = TileGrid(side, side, slide_mpp)
    return grid.coords(), grid.tile_size_level0


def test_the_tile_bootstrap_blocks_the_same_tiles_whatever_the_scan_resolution():
    """The interval's tile standard error resamples blocks of 4 x 4 tiles. Tile positions are
    floor(k * side): at 0.2465 µm/px (side 454.36 px) the first tile of each block lies below the
    block's exact edge and went to the block before. The same tile scores gave another error than
    on a 0.5 or 0.25 µm/px scan: a synthetic slide rewritten at 0.2465 µm/px got a 90 % interval
    23.3 points wide instead of 13.5 (0.228 µm/px NDPI-like: 23.9; standard error 7.3 vs 2.8)."""
    from weakstil.confidence import tile_standard_error_df

    rng = np.random.default_rng(5)
    ref_coords, ref_side = _grid(0.5)
    scores = rng.normal(30, 12, len(ref_coords)) + 10 * (ref_coords[:, 0] > 600)  # a trend across blocks
    weights = rng.uniform(0.2, 1.0, len(ref_coords)) * (rng.uniform(size=len(ref_coords)) < 0.7)
    want = tile_standard_error_df(scores, weights, ref_coords, ref_side)
    for mpp in (0.25, 0.2465, 0.228, 0.499, 0.2528):
        coords, side = _grid(mpp)
        assert len(coords) == len(ref_coords)
        got = tile_standard_error_df(scores, weights, coords, side)
        assert got == pytest.approx(want, rel=1e-9), (mpp, got, want)


def test_the_tumour_bed_grid_of_a_wide_slide_keeps_every_tile_in_its_own_cell():
    """The bed detector puts tiles on a grid (context, lymphoid veto) and turns tile evidence into
    the bed's mask through it. Its stride was the smallest step between positions, the true stride
    rounded down (226 for 226.72 px at 0.494 µm/px): from the 157th column on (17.6 mm) tiles sat
    one cell off, two shared a cell, and the bed's mask drifted from its tiles (half a tile at
    18.5 mm, growing with the width)."""
    from weakstil.bed_geometry import grid_cells, tiles_to_mask
    from weakstil.tiling import TileGrid, mask_fractions

    grid = TileGrid(int(20_000 / 0.494), 1400, 0.494)
    coords = grid.coords()
    rows, cols, stride = grid_cells(coords, grid.tile_size_level0)
    want_cols = np.tile(np.arange(grid.shape[1]), grid.shape[0])
    assert stride == pytest.approx(grid.stride_level0) and np.array_equal(cols, want_cols)
    assert len(set(zip(rows.tolist(), cols.tolist()))) == len(coords)
    # evidence on the columns from 165 on: the mask made of it covers those tiles, not their neighbours
    values = (want_cols >= 165).astype(float)
    W, H = grid.slide_width, grid.slide_height
    mask_mpp = 8.0
    shape = (int(np.ceil(H * 0.494 / mask_mpp)), int(np.ceil(W * 0.494 / mask_mpp)))
    bed = tiles_to_mask(values, coords, grid.tile_size_level0, 0.494, shape, mask_mpp) >= 0.5
    frac = mask_fractions(coords, grid.tile_size_level0, bed, mask_mpp, 0.494)
    assert frac[want_cols >= 165].min() > 0.95 and frac[want_cols <= 164].max() < 0.05, \
        (frac[want_cols == 164][:1], frac[want_cols == 165][:1])  # was 0.0 / 0.5: the edge half a tile off

    # an overlap (stride a fraction of the tile): fitted, also where it is a whole number of pixels
    for mpp, overlap in ((0.494, 56), (0.5, 100)):
        g = TileGrid(int(20_000 / mpp), 1000, mpp, overlap_px=overlap)
        _, c, s = grid_cells(g.coords(), g.tile_size_level0)
        assert s == pytest.approx(g.stride_level0, abs=0.01)
        assert np.array_equal(c, np.tile(np.arange(g.shape[1]), g.shape[0]))


# -- files OpenSlide refuses, and files without µm/px ---------------------------------------
def _small_tiff(path: Path, compression: str, description: str | None = None, mpp: float | None = 0.5) -> Path:
    import tifffile

    with Slide.open(CMU) as s:
        rgb = np.asarray(s.backend.read_region((600, 1200), 0, (512, 512)).convert("RGB"))
    kw = {"resolution": (1e4 / mpp, 1e4 / mpp), "resolutionunit": "CENTIMETER"} if mpp else {}
    with tifffile.TiffWriter(path) as tw:
        tw.write(rgb, tile=(256, 256), compression=compression, photometric="rgb", description=description,
                 metadata=None, **kw)
    return path


@pytest.mark.parametrize("compression, codec", [("jpeg2000", "JPEG 2000"), ("webp", "WebP")])
def test_a_tiff_of_tiles_openslide_cannot_decode_says_so_and_how_to_convert(tmp_path, compression, codec):
    """A tiled TIFF written with JPEG 2000 or WebP tiles (tifffile, bfconvert, QuPath can write them)
    was 'OpenSlide cannot open it (Unsupported TIFF compression: 34712). Fix: the file may be damaged
    ...; re-export': the file is fine, the codec is not one OpenSlide reads there."""
    from weakstil.errors import SlideError

    path = _small_tiff(tmp_path / f"s_{compression}.tif", compression)
    with pytest.raises(SlideError) as err:
        Slide.open(path)
    text = str(err.value)
    assert codec in text and "vips tiffsave" in text and "damaged" not in text, text


def test_a_slide_without_mpp_but_with_its_objective_names_it(tmp_path):
    """Aperio files may carry AppMag and no MPP: refused as before (the objective does not give
    the scanner's µm/px), but the line says what the file does say."""
    from weakstil.errors import SlideError
    from weakstil.slide import describe_without_mpp

    desc = "Aperio Image Library v12.0.15 \r\n512x512 [0,0 512x512] (256x256) JPEG/RGB Q=80|AppMag = 40|Filename = x"
    path = _small_tiff(tmp_path / "nompp.svs", "jpeg", description=desc, mpp=None)
    with pytest.raises(SlideError) as err:
        Slide.open(path)
    assert "it says 40x objective" in str(err.value) and "--slide-mpp" in str(err.value)
    assert "40x objective" in describe_without_mpp(path)
    with Slide.open(path, slide_mpp=0.25) as s:
        assert s.mpp == 0.25


@pytest.mark.parametrize("tags", [((10, 10), "CENTIMETER"), ((72, 72), "INCH")])
def test_an_ome_tiff_takes_its_ome_resolution_over_a_writers_default_resolution_tags(tmp_path, tags):
    """An OME-TIFF states its µm/px in the OME-XML; vips leaves 10 px/cm (1000 µm/px) in the TIFF
    resolution tags when it knows none, other writers 72 dpi. OpenSlide reports the tags, and the
    slide was refused: 'metadata says 1000 µm/px, which is implausible'."""
    import tifffile

    with Slide.open(CMU) as s:
        rgb = np.asarray(s.backend.read_region((600, 1200), 0, (512, 512)).convert("RGB"))
    path = tmp_path / "s.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(rgb, tile=(256, 256), compression="jpeg", photometric="rgb", resolution=tags[0],
                 resolutionunit=tags[1], metadata={"axes": "YXS", "PhysicalSizeX": 0.5, "PhysicalSizeY": 0.5})
    with Slide.open(path) as s:
        assert s.mpp == pytest.approx(0.5)
