"""The readers in a real napari viewer under Xvfb: the real CMU slide, result files, and a
pixel test that the heatmap is drawn exactly over its tiles."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from napari_weakstil._compat import camera
from napari_weakstil._reader import get_result_reader, get_slide_reader
from napari_weakstil.result_layers import HEATMAP, TISSUE, TUMORBED

# not imported from conftest: the main suite's tests/conftest.py shares that module name
ROOT = Path(__file__).resolve().parents[3]
CMU = ROOT / "tests" / "data" / "CMU-1-Small-Region.svs"
SHARED = ROOT.parent / "shared" / "data"


def test_cmu_slide_opens_lazily_in_micrometres(make_napari_viewer):
    import openslide

    viewer = make_napari_viewer(show=True)
    layers = viewer.open(CMU, plugin="napari-weakstil")
    (layer,) = layers
    assert layer.multiscale and layer.rgb
    base = layer.data[0]
    assert base.shape == (2967, 2220, 3)
    assert type(base).__module__.startswith("dask")  # nothing decoded yet
    assert layer.scale[-2:] == pytest.approx([0.499, 0.499])
    assert str(layer.units[-1]) in ("micrometer", "um")
    # an on-demand chunk read equals OpenSlide's own pixels
    with openslide.OpenSlide(str(CMU)) as ref:
        want = np.asarray(ref.read_region((1500, 2100), 0, (300, 200)))[..., :3]
    np.testing.assert_array_equal(np.asarray(base[2100:2300, 1500:1800]), want)
    viewer.reset_view()
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot[..., :3].std() > 10  # the slide is drawn, not a blank canvas


def test_readers_claim_only_their_files(tmp_path):
    assert get_slide_reader(str(CMU)) is not None
    (tmp_path / "notes.h5").write_bytes(b"not hdf5")
    assert get_result_reader(str(tmp_path / "notes.h5")) is None
    with h5py.File(tmp_path / "other.h5", "w") as f:
        f.create_dataset("x", data=[1, 2])
    assert get_result_reader(str(tmp_path / "other.h5")) is None
    (tmp_path / "fake.svs").write_text("hello")
    assert get_slide_reader(str(tmp_path / "fake.svs")) is None


def test_a_damaged_result_file_is_refused_with_its_reason(scored, tmp_path):
    """A result cut short (a copy that stopped) gets a reader that says why it cannot be shown: napari
    shows that message instead of only "no reader" (no other plugin reads a damaged HDF5 either)."""
    from weakstil.errors import WeakSTILError

    whole = scored["score_h5"]
    cut = tmp_path / whole.name
    cut.write_bytes(whole.read_bytes()[:3000])
    reader = get_result_reader(str(cut))
    assert reader is not None
    with pytest.raises(WeakSTILError, match="not a readable HDF5 file.*damaged result file.*Fix: copy it again"):
        reader(str(cut))


def test_slide_without_mpp_opens_in_pixels():
    path = SHARED / "slides" / "tcga-cr-7395-01a-01-ts1_jp2k.svs"
    if not path.exists():
        pytest.skip(f"needs {path}")
    (data, kwargs, kind) = get_slide_reader(str(path))(str(path))[0]
    assert kind == "image" and kwargs["scale"] == (1.0, 1.0) and kwargs["metadata"]["mpp"] is None
    assert kwargs["units"] == ("pixel", "pixel")


def test_score_result_opens_with_its_slide(make_napari_viewer, scored):
    viewer = make_napari_viewer()
    layers = viewer.open(scored["score_h5"], plugin="napari-weakstil")
    names = [ly.name for ly in layers]
    slide_id = scored["held"].stem
    assert names[0] == scored["held"].name  # the slide, found from the result, at the bottom
    assert f"{slide_id} {HEATMAP}" in names and f"{slide_id} {TUMORBED}" in names and f"{slide_id} {TISSUE}" in names
    heat = viewer.layers[f"{slide_id} {HEATMAP}"]
    with h5py.File(scored["score_h5"]) as f:
        scores = f["tile_scores"][:]
    assert np.isfinite(heat.data).sum() == len(scores)
    np.testing.assert_allclose(np.sort(heat.data[np.isfinite(heat.data)]), np.sort(scores), rtol=1e-6)
    # every layer spans the same slide: the heatmap and tissue lie inside the slide's extent
    slide = viewer.layers[0]
    slide_extent = slide.extent.world
    for name in (f"{slide_id} {HEATMAP}", f"{slide_id} {TISSUE}"):
        ext = viewer.layers[name].extent.world
        assert np.all(ext[0] >= slide_extent[0] - 10) and np.all(ext[1] <= slide_extent[1] + 10)


def test_cross_validation_tiles_open_with_their_slide(make_napari_viewer, scored):
    viewer = make_napari_viewer()
    cv_file = sorted(scored["cv_tiles"].glob("*.h5"))[0]
    layers = viewer.open(cv_file, plugin="napari-weakstil")
    assert layers[0].metadata["weakstil_kind"] == "slide"
    assert any(ly.name.endswith(HEATMAP) for ly in layers)


def _bbox(img: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(img)
    return ys.min(), ys.max(), xs.min(), xs.max()


def test_heatmap_pixels_land_on_their_tiles(make_napari_viewer, marked_slide):
    """Two tiles painted blue on the slide and scored 100 in the result: on screen, zoomed so a
    tile spans about 400 screen px (~1 level-0 px per screen px), the bright heatmap cell must
    cover exactly the blue square (fractional tile size, µm scale, non-zero grid origin)."""
    viewer = make_napari_viewer(show=True)
    viewer.window.resize(900, 800)
    layers = viewer.open(marked_slide["result"], plugin="napari-weakstil")
    slide, heat = layers[0], next(ly for ly in layers if ly.name.endswith(HEATMAP))
    for ly in layers:
        ly.visible = ly in (slide, heat)
    heat.opacity = 1.0
    mpp, tile = marked_slide["mpp"], marked_slide["tile"]
    for i in marked_slide["marked"]:
        x, y = marked_slide["coords"][i]
        camera(viewer).center = ((y + tile / 2) * mpp, (x + tile / 2) * mpp)
        camera(viewer).zoom = 400 / (tile * mpp)  # screen px per µm
        slide.visible, heat.visible = True, False
        slide_shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
        slide.visible, heat.visible = False, True
        heat_shot = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(int)
        r, g, b = slide_shot[..., 0], slide_shot[..., 1], slide_shot[..., 2]
        blue = (b > 160) & (r < 90) & (g < 90)  # the painted square (glass is grey, the canvas black)
        bright = heat_shot[..., :2].min(axis=2) > 180  # score 100 in inferno is pale yellow; 0 is black
        assert blue.sum() > 100_000 and bright.sum() > 100_000
        d, h = _bbox(blue), _bbox(bright)
        assert np.abs(np.subtract(d, h)).max() <= 2, (d, h)  # every edge within 2 screen px


def test_tumour_bed_file_opens_as_an_outline_over_its_slide(make_napari_viewer, scored, tmp_path):
    """`weakstil tumorbed apply` output (a per-slide bed to check before training) in the viewer."""
    from weakstil.tumorbed import BedSources, apply_tumorbed

    features = sorted((scored["root"] / "features").glob("*.h5"))[0]
    apply_tumorbed(features, tmp_path / "beds", BedSources(annotations=scored["cohort"] / "truth"))
    viewer = make_napari_viewer()
    layers = viewer.open(tmp_path / "beds" / features.name, plugin="napari-weakstil")
    assert layers[0].metadata["weakstil_kind"] == "slide"
    outline = next(ly for ly in layers if ly.name.endswith(TUMORBED))
    assert len(outline.data) >= 1
    # the outline lies on the slide
    ext, slide_ext = outline.extent.world, layers[0].extent.world
    assert np.all(ext[0] >= slide_ext[0] - 10) and np.all(ext[1] <= slide_ext[1] + 10)


def test_a_result_is_not_shown_over_another_scan(scored, tmp_path):
    """A file at the result's slide path (or named after its slide beside it) that holds another scan
    is passed over: the heatmap would sit on other tissue (an outside tester's swapped file)."""
    import shutil

    from napari_weakstil.result_layers import read_result

    copy = tmp_path / scored["score_h5"].name
    shutil.copy(scored["score_h5"], copy)
    swapped = tmp_path / scored["held"].name  # the held slide's name, a training slide's pixels
    shutil.copy(sorted(p for p in scored["cohort"].rglob("*.tiff") if p != scored["held"])[0], swapped)
    with h5py.File(copy, "r+") as f:
        f.attrs["slide_path"] = str(swapped)
    assert read_result(copy).slide_path is None
    shutil.copy(scored["held"], swapped)  # the very scan: shown under its result
    assert read_result(copy).slide_path == swapped


def test_a_result_over_its_open_slide_adds_no_second_copy(make_napari_viewer, scored):
    """Opening a result whose slide is open already puts the result over that slide (a second copy
    mixed units and doubled the slide list)."""
    viewer = make_napari_viewer()
    viewer.open(scored["held"], plugin="napari-weakstil")
    viewer.open(scored["score_h5"], plugin="napari-weakstil")
    slides = [ly for ly in viewer.layers if ly.metadata.get("weakstil_kind") == "slide"]
    assert len(slides) == 1 and viewer.layers[0] is slides[0]
    assert any(ly.metadata.get("role") == HEATMAP for ly in viewer.layers)
