"""The cohort report's pictures: slide thumbnails, tile-score heatmaps and the overview figure.

Shared by the cross-validation report (:mod:`weakstil.report`) and the report of a ``weakstil score``
run (:mod:`weakstil.report_scores`); every file is written atomically.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np

from weakstil.atomic import atomic_path

log = logging.getLogger(__name__)

#: Long side in pixels of the slide pictures in the per-slide table.
THUMB_SIDE = 160
HEATMAP_SIDE = 480
#: Heatmaps shown in overview.png.
OVERVIEW_SLIDES = 6


def write_thumbnail(source: Path, target: Path, side: int = THUMB_SIDE) -> None:
    """``source`` shrunk to ``side`` pixels on its long side (never enlarged), as a PNG."""
    from PIL import Image

    with Image.open(source) as img:
        img = img.convert("RGB")
        img.thumbnail((side, side))
        with atomic_path(target) as tmp:
            img.save(tmp, format="PNG")


def write_heatmap(slide_path: Path, tile_scores_path: Path, target: Path, title: str,
                  slide_mpp: float | None) -> None:
    """The slide with its out-of-fold tile scores and the tumour-bed tiles outlined."""
    from weakstil.files import TileScoresFile
    from weakstil.outputs import counted_tiles_mask, write_heatmap_png

    scores = TileScoresFile.read(tile_scores_path)
    coords = np.asarray(scores.coords)
    tsl0 = scores.tile_size_level0
    with _open_as_tiled(slide_path, slide_mpp, scores.attr("slide_mpp")) as slide:
        width, height = slide.dimensions
        thumb_mpp = max(slide.mpp, max(width, height) * slide.mpp / HEATMAP_SIDE)
        thumb = slide.read_thumbnail(thumb_mpp)
        mpp = slide.mpp
    bed = None
    mask = np.asarray(scores.tumorbed, bool)
    if not mask.all():  # outline the tiles that made the slide's score, when not all did
        bed = counted_tiles_mask(thumb.shape[:2], coords, tsl0, mpp / thumb_mpp, mask)
    key = f"cyan outline: the {int(mask.sum())} of {mask.size} tiles in the tumour bed, which made the score; " \
          "the tiles outside it are shown, not counted"
    write_heatmap_png(target, thumb, thumb_mpp, mpp, coords, tsl0, np.asarray(scores.tile_scores),
                      tumorbed_mask=bed, title=title, key=key, palette=True)


def write_score_heatmap(score_file: Path, target: Path) -> str | None:
    """A ``weakstil score`` slide's heatmap drawn again for the report with the slide
    :data:`HEATMAP_SIDE` px on its long side, as ``score`` draws it (title with sTIL%, interval,
    call and qc flags; colour bars; the outline of the tiles counted and its key), so its text keeps
    its size: the full-size heatmap shrunk to 480 px had a 4 px title and colour-bar labels no one
    could read. Returns why it could not (the slide moved, unreadable or another scan), else None."""
    from weakstil.errors import WeakSTILError
    from weakstil.files import SlideScoresFile
    from weakstil.fingerprint import recorded
    from weakstil.outputs import write_slide_heatmap
    from weakstil.score import title_labels
    from weakstil.slide import Slide

    try:
        f = SlideScoresFile.read(score_file, skip=("tissue_mask", "attention_logits", "tile_scores_model"))
        attrs = dict(f.attrs)
        overridden = attrs.get("slide_mpp_source") == "override" and attrs.get("slide_mpp") is not None
        with Slide.open(attrs.get("slide_path", ""), slide_mpp=float(attrs["slide_mpp"]) if overridden else None) as slide:
            if recorded(attrs) not in (None, slide.fingerprint):
                return f"{attrs.get('slide_path')} holds another scan than the one scored"
            width, height = slide.dimensions
            mpp = slide.mpp
            thumb_mpp = max(mpp, max(width, height) * mpp / HEATMAP_SIDE)
            thumb = slide.read_thumbnail(thumb_mpp)
    except (WeakSTILError, OSError, KeyError, ValueError) as exc:
        return str(exc)
    stil = float(attrs["stil"]) if attrs.get("stil") is not None else float("nan")
    write_slide_heatmap(target, thumb, thumb_mpp, mpp, np.asarray(f.coords), float(attrs["tile_size_level0"]),
                        np.asarray(f.tile_scores), np.asarray(f.tumorbed, bool), f.tumorbed_mask,
                        slide_id=str(attrs.get("slide_id", score_file.stem)), stil=stil,
                        stil_high=attrs.get("stil_high"), threshold=float(attrs["threshold"]), attrs=attrs,
                        **title_labels(str(attrs.get("status", ""))),
                        stroma_weights=None if f.stroma_weight is None else np.asarray(f.stroma_weight),
                        palette=True)  # a palette PNG: a third of the size (weakstil.outputs.palette_png)
    return None


def _open_as_tiled(slide_path: Path, slide_mpp: float | None, recorded_mpp):
    """The slide opened with ``--slide-mpp`` if given; else with its metadata, and, for a slide whose
    metadata has no usable µm/px, with the µm/px it was tiled at (recorded in its tile scores): in a
    cohort of mixed scanners one --slide-mpp for all slides would re-scale the others."""
    from weakstil.errors import SlideError
    from weakstil.slide import Slide

    try:
        return Slide.open(slide_path, slide_mpp=slide_mpp)
    except SlideError as exc:
        if slide_mpp is not None or recorded_mpp is None or "--slide-mpp" not in (exc.fix or ""):
            raise
        log.info("%s: %s; using the %.4g µm/px it was tiled at", slide_path, exc.message, float(recorded_mpp))
        return Slide.open(slide_path, slide_mpp=float(recorded_mpp))


#: Font size (pt, at the overview's 100 dpi) of each heatmap's caption in overview.png, and its
#: characters a line: three heatmaps a row, each ~390 px wide.
OVERVIEW_CAPTION_PT = 9
OVERVIEW_CAPTION_CHARS = 52


def overview_caption(row) -> str:
    """A heatmap's caption in overview.png: the slide, then its score (a ``weakstil score`` row: sTIL%,
    interval and call, or its status; a cross-validation row: its label and prediction), each line
    wrapped to the heatmap's width."""
    import textwrap

    stil = getattr(row, "stil", None)
    if stil is not None:  # ScoreRow
        if not math.isfinite(stil):
            said = str(row.status)
        else:
            from weakstil.metrics import stil_text

            interval = f" ({row.interval})" if row.interval and row.interval != "none" else ""
            threshold = row.threshold if math.isfinite(row.threshold) else None
            said = f"sTIL {stil_text(stil, threshold)} %{interval}, {row.call}" + (", qc flagged" if row.qc else "")
    else:
        said = f"true {getattr(row, 'stil_true', math.nan):.1f} %, predicted {getattr(row, 'stil_pred', math.nan):.1f} %"
    return "\n".join(textwrap.fill(line, OVERVIEW_CAPTION_CHARS, break_on_hyphens=False)
                     for line in (str(row.slide_id), said))


def write_overview(out_dir: Path, rows: list, target: Path,
                   plots: tuple[str, ...] = ("scatter.png", "roc.png")) -> Path:
    """``plots`` (scatter, ROC) and the first heatmaps of ``rows`` (anything with a ``heatmap`` path
    relative to ``out_dir``) side by side: the report at a glance."""
    from matplotlib.figure import Figure  # not pyplot: its backend is the process's (a notebook's), left as it is
    from PIL import Image

    heatmaps = [r for r in rows if r.heatmap][:OVERVIEW_SLIDES]
    n_heat_rows = math.ceil(len(heatmaps) / 3)
    top = 1 if plots else 0
    n_heat_rows = n_heat_rows if plots else max(1, n_heat_rows)  # (a figure needs a row)
    fig = Figure(figsize=(12, 5.2 * top + 3.6 * n_heat_rows), dpi=100)
    grid = fig.add_gridspec(top + n_heat_rows, 6, height_ratios=[5.2] * top + [3.6] * n_heat_rows)
    for i, name in enumerate(plots):
        ax = fig.add_subplot(grid[0, 3 * i:3 * i + 3])
        with Image.open(out_dir / name) as img:
            ax.imshow(np.asarray(img.convert("RGB")))
        ax.set_axis_off()
    for k, row in enumerate(heatmaps):
        ax = fig.add_subplot(grid[top + k // 3, 2 * (k % 3):2 * (k % 3) + 2])
        with Image.open(out_dir / row.heatmap) as img:
            ax.imshow(np.asarray(img.convert("RGB")))
        ax.set_axis_off()
        # the picture's own title shrinks to a third here (4-5 px: unreadable): its slide and score again
        ax.set_title(overview_caption(row), fontsize=OVERVIEW_CAPTION_PT)
    with warnings.catch_warnings():
        # a slide named in a script the font lacks (中文) is drawn as boxes, the HTML page names it: no raw
        # "UserWarning: Glyph 20013 missing from font(s) DejaVu Sans" lines with source code in the log (hunt 35c)
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .*missing from font", category=UserWarning)
        fig.tight_layout()
        with atomic_path(target) as tmp:
            fig.savefig(tmp, format="png")
    return target
