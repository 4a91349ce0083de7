"""Hunt 24, helper e: what a pathologist sees in the pictures WeakSTIL writes (heatmaps, report)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from weakstil.outputs import _outline, counted_tiles_mask, tile_score_image
from weakstil.tiling import TileGrid


@pytest.mark.parametrize("slide_mpp, thumb_scale", [(2.004, 0.6506710044733631),  # the 2 µm/px DICOM's heatmap
                                                     (0.499, 0.1351)])  # CMU-1-Small-Region's (0.499 µm/px)
def test_heatmap_tiles_meet_without_seams(slide_mpp, thumb_scale):
    """A tile grid whose level-0 tile size is not a whole number (55.89 px on a 2 µm/px scan read at
    0.5 µm/px) has whole-pixel corners a pixel apart now and then: the heatmap showed one-pixel
    white seams through the tiles every few columns and rows, and the outline of the tiles that made
    the sTIL% was traced along them, through the middle of the bed (seen on slidetool_test_dicom)."""
    grid = TileGrid(slide_width=int(14 * 224 * 0.5 / slide_mpp), slide_height=int(14 * 224 * 0.5 / slide_mpp),
                    slide_mpp=slide_mpp)
    coords = grid.coords()
    assert len(coords) >= 13 * 13
    tsl0 = grid.tile_size_level0
    assert tsl0 != round(tsl0)
    x1 = int(round((coords[:, 0].max() + tsl0) * thumb_scale))
    shape = (x1 + 5, x1 + 5)
    heat = tile_score_image(shape, coords, tsl0, thumb_scale, np.full(len(coords), 50.0))
    block = heat[:x1 - 1, :x1 - 1]
    assert np.isfinite(block).all(), f"{(~np.isfinite(block)).sum()} seam pixels inside the tiled block"
    mask = counted_tiles_mask(shape, coords, tsl0, thumb_scale, np.ones(len(coords), bool))
    edge = _outline(mask)
    # the outline of one solid block: nothing drawn inside it
    assert not edge[3:x1 - 3, 3:x1 - 3].any(), "outline traced through the inside of the counted tiles"
    # and the squares stay where the tiles are: no more than a pixel past the last tile's end
    assert mask.any(axis=0).sum() <= x1 + 1


# --- the report of a score run: heatmaps whose text can be read -------------------------------

import napari_plugin_fixtures  # noqa: E402  (its scored slide, built once per run)

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below


def _title_text_height(path) -> int:
    """Height in pixels of the dark text in the picture's title band (above the slide panels)."""
    from PIL import Image

    rgb = np.asarray(Image.open(path).convert("RGB"), np.int16)
    ink = (rgb < 90).all(axis=2)  # black text
    busy = (rgb < 235).any(axis=2).mean(axis=1) > 0.2  # rows of slide panels
    top = int(np.argmax(busy))
    rows = np.flatnonzero(ink[:top].any(axis=1))
    return 0 if rows.size == 0 else int(rows[-1] - rows[0] + 1)


def _report_copy(scored, tmp_path, **attrs):
    import shutil

    import h5py

    from weakstil.report_scores import build_score_report

    scores = tmp_path / "scores"
    shutil.copytree(scored["scores"], scores)
    if attrs:
        with h5py.File(scores / scored["score_h5"].name, "r+") as f:
            f.attrs.update(attrs)
    build_score_report(scores, tmp_path / "report")
    sid = scored["score_h5"].stem
    return scores / f"{sid}_heatmap.png", tmp_path / "report" / "slides" / f"{sid}_heatmap.png"


def test_score_report_heatmap_text_is_readable(scored, tmp_path):
    """report --scores shrank each full-size heatmap to 480 px: a title (sTIL%, interval, call, qc)
    4 px high and colour-bar labels no one could read (CMU-1: 1297 px -> 480 px). It is drawn again
    at the report's size, as the cross-validation report draws its heatmaps: the text keeps its size."""
    from PIL import Image

    from weakstil.report_images import HEATMAP_SIDE

    full, copy = _report_copy(scored, tmp_path)
    full_h = _title_text_height(full)
    assert full_h >= 9
    assert _title_text_height(copy) >= full_h - 1, "the report's heatmap title is shrunk below reading size"
    with Image.open(copy) as img:
        made = json.loads(img.text["Comment"])
        assert img.height >= HEATMAP_SIDE * 0.5 and img.width <= 3 * HEATMAP_SIDE
    with Image.open(full) as img:
        assert made == json.loads(img.text["Comment"])  # the same slide, score and model


def test_score_report_heatmap_without_its_slide_is_shrunk_and_said(scored, tmp_path, caplog):
    import logging

    with caplog.at_level(logging.WARNING, logger="weakstil"):
        full, copy = _report_copy(scored, tmp_path, slide_path=str(tmp_path / "moved.tiff"))
    assert copy.is_file()
    assert any("heatmap shrunk" in r.getMessage() and "moved.tiff" in r.getMessage() for r in caplog.records)


def test_score_report_writes_a_near_threshold_stil_on_its_calls_side(tmp_path):
    """A slide at 29.96 % with the threshold 30 is 'low': its heatmap title and the napari widget write
    "29.96", but the report's table wrote "30.0 | low at 30 %", a number on the other side of its call."""
    from weakstil.report_scores import build_score_report

    scores = tmp_path / "scores"
    scores.mkdir()
    (scores / "results.csv").write_text(
        "slide_id,path,stil,stil_lower_90,stil_upper_90,stil_high,threshold,n_tiles,n_tumorbed_tiles,"
        "tumorbed_source,status,qc,qc_reasons,error,model_id,encoder_id,seconds\n"
        "S_near,/x/S_near.svs,29.9612,22.1,37.2,False,30,52,24,model,ok,near_threshold,near_threshold: x,,m@1,e@1,1\n"
        "S_up,/x/S_up.svs,30.0,22.1,37.2,True,30,52,24,model,ok,near_threshold,near_threshold: x,,m@1,e@1,1\n",
        encoding="utf-8")
    build_score_report(scores, tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "| S_near | ok | 29.96 | 22.1–37.2 | low at 30 % |" in md
    assert "| S_up | ok | 30.0 | 22.1–37.2 | high at 30 % |" in md
    html = (tmp_path / "r" / "report.html").read_text(encoding="utf-8")
    assert "<td class='num'>29.96</td>" in html


def test_overview_captions_each_heatmap_readably(scored, tmp_path, monkeypatch):
    """overview.png shows the first heatmaps a third of their size: their own titles 4-5 px high, so no
    one could tell which slide was which. Each now has a caption at a readable size: slide, sTIL%, call."""
    import matplotlib.axes

    import pandas as pd

    titles = []
    real = matplotlib.axes.Axes.set_title

    def spy(self, label, *args, **kw):
        titles.append((label, kw.get("fontsize")))
        return real(self, label, *args, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "set_title", spy)
    _report_copy(scored, tmp_path)
    rec = pd.read_csv(scored["scores"] / "results.csv").iloc[0]
    assert titles, "no caption in overview.png"
    label, size = titles[0]
    assert label.splitlines()[0] == rec["slide_id"] and size >= 9
    assert (f"sTIL {float(rec['stil']):.1f} %" in label) or rec["status"] in label


def test_scatter_groups_and_roc_curves_differ_by_more_than_colour(tmp_path, monkeypatch):
    """The cross-validation scatter told its centres apart by tab10 colour alone (centre_2 green beside
    centre_3 red) and the ROC its thresholds likewise (orange and green): alike to a red-green
    colour-blind reader. Each group has its own marker, each threshold its own dash pattern."""
    import matplotlib.axes
    import pandas as pd

    from weakstil.evaluation import plot_roc, plot_scatter

    markers, styles = [], []
    real_scatter, real_plot = matplotlib.axes.Axes.scatter, matplotlib.axes.Axes.plot

    def scatter(self, *args, **kw):
        markers.append(kw.get("marker", "o"))
        return real_scatter(self, *args, **kw)

    def plot(self, *args, **kw):
        styles.append(kw.get("ls"))
        return real_plot(self, *args, **kw)

    monkeypatch.setattr(matplotlib.axes.Axes, "scatter", scatter)
    monkeypatch.setattr(matplotlib.axes.Axes, "plot", plot)
    rng = np.random.default_rng(0)
    t = rng.uniform(0, 90, 40)
    pred = pd.DataFrame({"stil_true": t, "stil_pred": t + rng.normal(0, 5, 40),
                         "group": [f"centre_{i % 4}" for i in range(40)]})
    plot_scatter(pred, tmp_path / "s.png", {"n": 40, "r2": 0.9, "pearson_r": 0.95, "mae": 4.0})
    assert len(markers) == 4 and len(set(markers)) == 4
    styles.clear()  # the scatter's identity line
    plot_roc(t, pred["stil_pred"].to_numpy(), tmp_path / "r.png", (10, 30, 50))
    curves = styles[:3]
    assert len(set(curves)) == 3 and None not in curves


def test_napari_view_and_its_export_show_the_heatmaps_colour_bar_and_scale_bar(make_napari_viewer, scored,
                                                                                 tmp_path):
    """A result opened in napari showed its tile colours without a colour bar or a scale bar, and
    'Export view as PNG' saved colours no reader could translate into sTIL % or distances. The shown
    heatmap's colour bar (0-100 at the colour range) and the µm scale bar are on; the PNG has them."""
    pytest.importorskip("napari")
    import shutil

    from PIL import Image

    from napari_weakstil._compat import scale_bar
    from napari_weakstil.result_layers import HEATMAP

    path = tmp_path / scored["score_h5"].name
    shutil.copy(scored["score_h5"], path)
    viewer = make_napari_viewer(show=True)  # drawn: the export is of what the canvas shows
    widget = napari_plugin_fixtures.dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    viewer.reset_view()
    heat = next(ly for ly in viewer.layers if ly.name.endswith(HEATMAP))
    assert heat.colorbar.visible and scale_bar(viewer).visible
    png = widget.export_png(tmp_path / "view.png")
    rgb = np.asarray(Image.open(png).convert("RGB"), np.int16)
    h, w = rgb.shape[:2]
    corner = rgb[: h // 3, w - w // 4:]  # the colour bar sits top right, on the black canvas
    yellow = (corner[..., 0] > 230) & (corner[..., 1] > 230) & (corner[..., 2] > 120) & (corner[..., 2] < 200)
    assert yellow.sum() >= 4, "no colour bar (inferno's 100 % yellow) in the exported view"
    viewer.layers.remove(heat)  # a closed result: no colour bar left of it
    assert not heat.colorbar.visible or heat not in viewer.layers
