"""Outputs a pathologist opens: tile-score heatmap PNG and QuPath GeoJSON of scored tiles."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from weakstil.atomic import atomic_path
from weakstil.drawing import draw_key, key_width
from weakstil.drawing import font as _font

if TYPE_CHECKING:
    from PIL import Image

def heatmap_title(slide_id: str, stil: float, stil_high: object, threshold: float, attrs: dict, *,
                  label: str | None = None, fallback: str = "") -> str:
    """The heatmap's title: score, interval, call and qc flags (``label``: the status of a slide
    without a score, in its place; ``fallback``: said after the score, e.g. a whole-tissue bed)."""
    from weakstil.confidence import interval_columns
    from weakstil.metrics import stil_text
    from weakstil.qc.scoring import interval_text

    if label is None:
        lower, upper = interval_columns()
        interval = interval_text(attrs.get(lower), attrs.get(upper), float(attrs.get("interval_level", 0.9)),
                                 threshold)
        label = (f"sTIL {stil_text(stil, threshold)} %" + (f" ({interval})" if interval else "")
                 + f", {'high' if stil_high else 'low'} at {threshold:g} %") + (f" ({fallback})" if fallback else "")
    from weakstil.qc.flags import LABEL, split

    # in words, as the report's legend: the codes ("qc: pen_or_folds, near_threshold") could not be looked up
    # on the picture; a line a few flags, so that several do not widen the figure past its panels
    qc: list[str] = []
    for words in (LABEL.get(code, code) for code in split(attrs.get("qc"))):
        if not qc:
            qc.append(f"qc: {words}")
        elif len(qc[-1]) + len(words) + 2 <= TITLE_QC_CHARS:
            qc[-1] += f", {words}"
        else:
            qc[-1] += ","
            qc.append(words)
    from weakstil.qc.pieces import title_line

    pieces = title_line(attrs.get("tissue_pieces"))  # each core's own sTIL% beside the slide's pooled one
    return "\n".join([f"{slide_id}: {label}", *([pieces] if pieces else []), *qc])


#: Characters a line of a heatmap title's qc flags (14 pt: about 500 px).
TITLE_QC_CHARS = 64


#: Each tumour-bed source in the heatmap's key, in a reader's words.
_BED_WORDS = {"annotation": "annotation", "model": "detected", "tissue": "whole tissue: no bed given",
              "tissue-fallback": "whole tissue: bed fallback", "feature-file": "the feature file's own flags"}


def heatmap_key(attrs: dict) -> str:
    """The heatmap's key to its cyan outline, from a slide-score file's attributes. The outline is
    drawn around the tiles that made the sTIL% (those mostly inside the tumour bed), so a reader
    compares it with the coloured tiles one to one: every tile is painted, and a bed outline cut
    through tiles and left some inside it uncounted. A slide without such a tile has its bed outlined."""
    source, n_bed, n_tiles = attrs.get("tumorbed_source", ""), int(attrs.get("n_tumorbed_tiles", 0)), \
        int(attrs.get("n_tiles", 0))
    inside = float(attrs.get("tumorbed_tile_threshold", 0.5))
    what = _BED_WORDS.get(str(source), str(source) or "tumour bed")
    crush = int(attrs.get("tumorbed_crush_tiles", 0) or 0)  # bed tiles left out as crush artefact (weakstil.crush)
    if n_bed <= 0 and crush > 0:
        return (f"cyan outline: tumour bed ({what}); its {crush} tile{'s are' if crush > 1 else ' is'} all crush "
                "artefact, left out of the scored area: no sTIL%")
    if n_bed <= 0:
        return f"cyan outline: tumour bed ({what}); no tile lies {100 * inside:g} % or more inside it: no sTIL%"
    less = f", less {crush} tile{'s' if crush > 1 else ''} of crush artefact" if crush > 0 else ""
    return (f"cyan outline: the {n_bed} of {n_tiles} tiles that made the sTIL%: those {100 * inside:g} % or more "
            f"inside the tumour bed ({what}){less}; the tiles outside it are shown, not counted")


def write_slide_heatmap(path: str | Path, thumbnail: np.ndarray, thumb_mpp: float, slide_mpp: float,
                        coords: np.ndarray, tile_size_level0: float, tile_scores: np.ndarray, counted: np.ndarray,
                        bed_mask: np.ndarray | None, *, slide_id: str, stil: float, stil_high: object, threshold: float,
                        attrs: dict, label: str | None = None, fallback: str = "",
                        stroma_weights: np.ndarray | None = None, palette: bool = False) -> Path:
    """A scored slide's heatmap (:func:`write_heatmap_png`) as ``score`` draws it and the report draws
    it again: the outline around the tiles that made the sTIL% (``counted``; a slide with none, its
    ``bed_mask``), the title (:func:`heatmap_title`) and the key (:func:`heatmap_key`) from the score's
    ``attrs``; ``palette``: as a palette PNG (:func:`palette_png`, the report's copy)."""
    counted = np.asarray(counted, bool)
    outline = counted_tiles_mask(thumbnail.shape[:2], coords, tile_size_level0, slide_mpp / thumb_mpp, counted) \
        if counted.any() else bed_mask
    title = heatmap_title(slide_id, stil, stil_high, threshold, attrs, label=label, fallback=fallback)
    return write_heatmap_png(path, thumbnail, thumb_mpp, slide_mpp, coords, tile_size_level0, tile_scores,
                             tumorbed_mask=outline, title=title, stroma_weights=stroma_weights, provenance=attrs,
                             key=heatmap_key(attrs), palette=palette)


def _tile_boxes(coords: np.ndarray, tile_size_level0: float, scale: float) -> np.ndarray:
    """Each tile's square in image pixels, ``[x0, y0, x1, y1]`` (int64), ``scale`` image pixels per
    level-0 pixel. A grid's level-0 corners are whole pixels (floored from multiples of a stride that
    need not be: 55.89 px for a 2 µm/px scan read at 0.5 µm/px, 224.45 px at 0.499 µm/px), so
    neighbouring tiles lie up to one level-0 pixel apart; each square is drawn to its whole-pixel
    end (ceil of the tile size), where the next tile begins. A fixed rounded side, or the exact
    fractional end, left one-pixel seams every few tiles: white grid lines through the heatmap, and
    the tumour-bed outline traced along them inside the bed."""
    xy = np.asarray(coords, np.float64).reshape(-1, 2)
    side = float(np.ceil(tile_size_level0 - 1e-6))
    start = np.round(xy * scale).astype(np.int64)
    end = np.maximum(start + 1, np.round((xy + side) * scale).astype(np.int64))
    return np.concatenate([start, end], axis=1)


def counted_tiles_mask(shape: tuple[int, int], coords: np.ndarray, tile_size_level0: float, scale: float,
                       counted: np.ndarray) -> np.ndarray:
    """An image of ``shape`` that is True on the squares of the ``counted`` tiles (``scale``: image
    pixels per level-0 pixel). Each square ends where the next tile's begins (:func:`_tile_boxes`),
    so neighbouring tiles leave no seam that an outline would trace."""
    mask = np.zeros(shape, bool)
    h, w = shape
    for x0, y0, x1, y1 in _tile_boxes(coords, tile_size_level0, scale)[np.asarray(counted, bool)]:
        mask[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = True
    return mask


#: Colour map of tile sTIL scores (perceptually uniform, readable in greyscale).
COLORMAP = "inferno"


def tile_score_image(shape: tuple[int, int], coords: np.ndarray, tile_size_level0: float, scale: float,
                     values: np.ndarray) -> np.ndarray:
    """A float image of ``shape`` with each tile's value painted on its square (:func:`_tile_boxes`:
    neighbours meet without a seam), NaN elsewhere.

    ``scale`` is image pixels per level-0 pixel.
    """
    img = np.full(shape, np.nan, np.float32)
    h, w = shape
    for (x0, y0, x1, y1), v in zip(_tile_boxes(coords, tile_size_level0, scale), values):
        img[max(0, y0):min(h, y1), max(0, x0):min(w, x1)] = v
    return img


#: What a heatmap PNG records of how it was made (its ``Comment`` text chunk, JSON).
#: No paths or times: the same slide scored by the same model gives the same PNG bytes wherever it lies.
HEATMAP_PROVENANCE = ("slide_id", "slide_fingerprint", "stil", "threshold", "status", "model_id", "encoder_id",
                      "tumorbed_source", "weakstil_version")


def provenance_record(provenance: dict) -> dict:
    """The :data:`HEATMAP_PROVENANCE` keys of a slide-score file's attributes, as strict JSON values (a
    slide without a score, no tumour bed, has "stil": null, not NaN): a heatmap's Comment, a tile GeoJSON's
    ``weakstil_provenance``."""
    kept = {k: provenance[k] for k in HEATMAP_PROVENANCE if k in provenance}
    plain = {k: v.item() if isinstance(v, np.generic) else v for k, v in kept.items()}
    return {k: None if isinstance(v, float) and not np.isfinite(v) else v for k, v in plain.items()}


def _png_text(provenance: dict | None) -> dict[str, str]:
    from weakstil.code_version import version as code_version

    text = {"Software": f"WeakSTIL {code_version()}"}
    if provenance:
        text["Comment"] = json.dumps(provenance_record(provenance))
    return text


#: The heatmap PNG's text chunk placing the slide in the figure (JSON): each panel's ``x``, ``y``, ``width``,
#: ``height`` (PNG px: the slide's level-0 pixel ``(X, Y)`` is at ``(x + X / level0_px_per_png_px, y + Y / ...)``),
#: ``colormap`` (matplotlib's name) and ``range`` (the values at its two ends), and ``png_mpp`` (µm per PNG px).
HEATMAP_GEOMETRY_KEY = "weakstil_geometry"
#: Opacity of a tile's colour over the thumbnail.
HEAT_ALPHA = 0.6
#: The opacity share a tile without stroma keeps in the sTIL panel (still seen, faint).
FAINT_SHARE = 0.25
#: The stroma weight from which a tile is painted at full strength in the sTIL panel (half its area stroma).
FULL_STROMA_WEIGHT = 0.5
#: Colour map of tile stroma weights (0 = no stroma, 1 = all stroma).
STROMA_COLORMAP = "viridis"
#: zlib level of the heatmap PNG: 6 (zlib's default) saves only 15 % of the size (photo-like pixels) for ~1.5 s a slide.
HEATMAP_PNG_COMPRESSION = 1


#: A panel (slide and colour bar) is at least this tall: a core biopsy's thumbnail, 16 times longer than wide,
#: is about 100 px high, which cut the colour bar's caption and crowded its ticks.
MIN_PANEL_PX = 180
_ASCII_TITLE = str.maketrans({"\u2013": "-", "\u2014": "-", "\u2265": ">=", "\u2264": "<=", "\u00b1": "+/-"})


def _outline(mask: np.ndarray, width: int = 2) -> np.ndarray:
    """The mask's boundary pixels, ``width`` pixels wide (inside the mask)."""
    from scipy.ndimage import binary_erosion

    return mask & ~binary_erosion(mask, iterations=width, border_value=0)


def _colour_bar(height: int, lut: np.ndarray, top: float, label: str) -> "Image.Image":
    """A vertical colour bar with five ticks and its label, ``height`` pixels tall, white behind."""
    from PIL import Image, ImageDraw

    font, bar_w, pad = _font(12), 16, 8
    bar_h = max(100, int(height * 0.8))
    ticks = np.linspace(0.0, top, 5)
    labels = [f"{t:g}" for t in ticks]
    text_w = max(int(font.getlength(s)) for s in labels)
    width = pad + bar_w + 4 + text_w + 6 + 16 + pad
    img = Image.new("RGB", (width, height), "white")
    y0 = (height - bar_h) // 2
    grad = lut[np.linspace(len(lut) - 1, 0, bar_h).round().astype(int)]  # top of the bar = top value
    img.paste(Image.fromarray(np.repeat(grad[:, None, :], bar_w, axis=1)), (pad, y0))
    draw = ImageDraw.Draw(img)
    draw.rectangle((pad, y0, pad + bar_w - 1, y0 + bar_h - 1), outline="black")
    for t, s in zip(ticks, labels):
        y = y0 + bar_h - 1 - round(t / top * (bar_h - 1))
        draw.line((pad + bar_w, y, pad + bar_w + 3, y), fill="black")
        draw.text((pad + bar_w + 5, y), s, fill="black", font=font, anchor="lm")
    caption = Image.new("RGB", (int(font.getlength(label)) + 2, 16), "white")
    ImageDraw.Draw(caption).text((1, 8), label, fill="black", font=font, anchor="lm")
    caption = caption.rotate(90, expand=True)
    img.paste(caption, (width - pad - 16, max(0, (height - caption.height) // 2)))
    return img


def write_heatmap_png(path: str | Path, thumbnail: np.ndarray, thumb_mpp: float, slide_mpp: float,
                      coords: np.ndarray, tile_size_level0: float, scores: np.ndarray, *,
                      tumorbed_mask: np.ndarray | None = None, title: str = "", vmax: float = 100.0,
                      stroma_weights: np.ndarray | None = None, provenance: dict | None = None,
                      key: str = "", palette: bool = False) -> Path:
    """Thumbnail with the tile-score heatmap, the tumour-bed outline and a colour bar; ``key`` (one
    line under the panels, after a cyan swatch, when the outline is drawn) says what the outline is.

    With ``stroma_weights`` (stroma aggregator) a second panel shows each tile's stroma weight:
    the slide sTIL% is the stroma-weighted mean of the first panel's scores over the bed.
    ``provenance`` (a slide-score file's attributes): its :data:`HEATMAP_PROVENANCE` keys go into the
    PNG's text chunks (``Comment``, as JSON), so a figure says what made it.

    Drawn with Pillow at the thumbnail's own pixels (one pixel per thumbnail pixel, no resampling):
    a matplotlib figure took ~4 s a slide, most of a small slide's scoring time. ``palette``: written as a
    256-colour palette PNG (:func:`palette_png`), a third of the size, for the cohort report."""
    from PIL import Image, ImageDraw
    from PIL.PngImagePlugin import PngInfo
    from matplotlib import colormaps

    h, w = thumbnail.shape[:2]
    scale = slide_mpp / thumb_mpp
    panels = [(scores, COLORMAP, vmax, "tile sTIL score (%)")]
    if stroma_weights is not None:
        panels.append((stroma_weights, STROMA_COLORMAP, 1.0, "tile stroma weight"))
    edge = None
    if tumorbed_mask is not None and tumorbed_mask.any():
        from skimage.transform import resize

        bed = resize(tumorbed_mask.astype(np.float32), (h, w), order=0, anti_aliasing=False) > 0.5
        edge = _outline(bed)
    base = np.asarray(thumbnail[..., :3], np.float32)
    images = []
    # the sTIL panel's tiles are as opaque as they hold stroma: a tile's score is the TIL share of its
    # stroma and it counts by its stroma weight, so a tile of fat or tumour painted at full strength
    # read as TIL-rich (a fat tile of weight 0.1 showed ~55 %, salmon) though it moves the number little
    alpha_by_weight = None
    if stroma_weights is not None:
        weights = np.clip(np.nan_to_num(np.asarray(stroma_weights, np.float64), nan=0.0), 0.0, 1.0)
        opacity = np.minimum(1.0, FAINT_SHARE + (1.0 - FAINT_SHARE) * weights / FULL_STROMA_WEIGHT)
        alpha_by_weight = tile_score_image((h, w), coords, tile_size_level0, scale, HEAT_ALPHA * opacity)
    faint_note = "faint tiles: little stroma (each tile counts by its stroma weight)" if alpha_by_weight is not None else ""
    for i, (values, cmap_name, top, label) in enumerate(panels):
        # the heat is blended over the thumbnail (alpha 0.6 where a tile is; the sTIL panel by stroma)
        heat = tile_score_image((h, w), coords, tile_size_level0, scale, values)
        lut = (colormaps[cmap_name](np.linspace(0.0, 1.0, 256))[:, :3] * 255).round().astype(np.uint8)
        has = np.isfinite(heat)
        idx = (np.clip(heat[has] / top, 0.0, 1.0) * 255).round().astype(int)
        rgb = base.copy()
        alpha = HEAT_ALPHA if alpha_by_weight is None or i > 0 else \
            np.nan_to_num(alpha_by_weight[has], nan=HEAT_ALPHA)[:, None]
        rgb[has] = (1.0 - alpha) * base[has] + alpha * lut[idx]
        if edge is not None:
            rgb[edge] = (0, 229, 255)  # the tumour bed's outline, cyan
        panel_h = max(h, MIN_PANEL_PX)
        bar = _colour_bar(panel_h, lut, top, label)
        both = Image.new("RGB", (w + bar.width, panel_h), "white")
        both.paste(Image.fromarray(rgb.round().astype(np.uint8)), (0, (panel_h - h) // 2))
        both.paste(bar, (w, 0))
        images.append(both)
    font, gap, margin = _font(14), 12, 8
    # the bundled font has no dashes or relations beyond ASCII
    lines = title.translate(_ASCII_TITLE).splitlines() if title else []
    title_h = (len(lines) * 18 + 8) if lines else 0
    # side by side, or one above the other for a slide more than twice as wide as tall: a core biopsy's two
    # panels side by side made a 3389 x 201 px strip (hunt 27a)
    stacked = len(images) > 1 and w > 2 * h
    panels_w = max(im.width for im in images) if stacked else sum(im.width for im in images) + gap * (len(images) - 1)
    panels_h = sum(im.height for im in images) + gap * (len(images) - 1) if stacked else max(im.height for im in images)
    # at least as wide as the title: on a small slide it said neither the slide nor its flags
    key = key.translate(_ASCII_TITLE) if key and edge is not None and edge.any() else ""
    key_font = _font(12)
    key_items = [((0, 229, 255), key)] if key else []  # the tumour bed's outline, cyan
    key_w = key_width(key_items, key_font)
    note_w = int(np.ceil(key_font.getlength(faint_note))) if faint_note else 0
    key_h = (22 if key else 0) + (20 if faint_note else 0)
    width = max(panels_w, key_w, note_w, *(int(np.ceil(font.getlength(line))) for line in lines), 0) + 2 * margin
    fig = Image.new("RGB", (width, title_h + panels_h + key_h + 2 * margin), "white")
    draw = ImageDraw.Draw(fig)
    for i, line in enumerate(lines):
        draw.text((width // 2, margin + 9 + 18 * i), line, fill="black", font=font, anchor="mm")
    if key:  # under the panels: a cyan swatch and what the outline is
        draw_key(draw, (width - key_w) // 2, margin + title_h + panels_h + 11, key_items, key_font)
    if faint_note:  # a line of its own: one line with the key was wider than a small slide's panels
        draw.text((width // 2, margin + title_h + panels_h + key_h - 10), faint_note, fill="black", font=key_font,
                  anchor="mm")
    x, y = (width - panels_w) // 2, margin + title_h
    placed = []
    for im, (_, cmap_name, top, label) in zip(images, panels):
        fig.paste(im, (x, y))
        placed.append({"what": label, "x": x, "y": y + (im.height - h) // 2, "width": w, "height": h,
                       "colormap": cmap_name, "range": [0.0, float(top)]})
        x, y = (x, y + im.height + gap) if stacked else (x + im.width + gap, y)
    info = PngInfo()
    for k, v in _png_text(provenance).items():
        info.add_text(k, v)
    # where the slide lies in the figure and what the colours mean, so another program can lay the heatmap
    # over the slide (QuPath, a script): a figure with a title, margins and colour bars said neither
    info.add_text(HEATMAP_GEOMETRY_KEY, json.dumps({"level0_px_per_png_px": 1.0 / scale, "png_mpp": float(thumb_mpp),
                                                   "panels": placed}))
    with atomic_path(path) as tmp:
        if palette:
            palette_png(fig, [name for _, name, _, _ in panels]).save(tmp, format="PNG", pnginfo=info, compress_level=6)
        else:
            fig.save(tmp, format="PNG", pnginfo=info, compress_level=HEATMAP_PNG_COMPRESSION)
    return Path(path)


#: Steps of each colour bar's map that a palette heatmap holds exactly (the rest of its 256 colours fit the picture).
PALETTE_MAP_STEPS = 32


def palette_png(fig: Image.Image, colormap_names: list[str]) -> Image.Image:
    """``fig`` as a 256-colour palette image, Floyd-Steinberg dithered: white, black, the outline's cyan and
    :data:`PALETTE_MAP_STEPS` steps of each colour map held exactly, the other colours fitted to the picture (an
    octree). A report heatmap in full RGB was ~570 KB (300 slides: 171 MB; hunt 38d): the thumbnail's texture does
    not compress. Fitted to the picture alone (256 colours, no dither) the colour bar kept ~10 bands and tiles moved
    up to 31 grey levels (a block of 8 x 8 px); so, 3 synthetic slides' heatmaps: 654/538/371 KB -> 228/184/102 KB,
    their 8 x 8 px blocks (what a reader sees of a tile's colour) within 3.0 grey levels on 99 % of blocks."""
    from matplotlib import colormaps
    from PIL import Image

    fixed = [(255, 255, 255), (0, 0, 0), (0, 229, 255)]
    for name in colormap_names:
        lut = (colormaps[name](np.linspace(0.0, 1.0, PALETTE_MAP_STEPS))[:, :3] * 255).round().astype(int)
        fixed += [tuple(int(v) for v in rgb) for rgb in lut]
    fixed = list(dict.fromkeys(fixed))
    fitted = 256 - len(fixed)
    rgb = fig.convert("RGB")
    colours = [v for c in fixed for v in c] + rgb.quantize(fitted, method=Image.Quantize.FASTOCTREE).getpalette()[:3 * fitted]
    table = Image.new("P", (1, 1))
    table.putpalette(colours)
    return rgb.quantize(palette=table, dither=Image.Dither.FLOYDSTEINBERG)


#: Tile classes' colours in QuPath: a tumour-bed tile the red of the bed's outline (weakstil.annotations.
#: write_geojson). QuPath holds one class per name, coloured by the first object that brings it, so a tile
#: file without a colour, imported first, gave the class (and the bed outline imported after it) a colour
#: QuPath picks; "Other" is one of QuPath's own classes, with its own colour.
TILE_CLASS_COLOURS = {"Tumor bed": (255, 0, 0)}


def write_tiles_geojson(path: str | Path, coords: np.ndarray, tile_size_level0: float,
                        measurements: dict[str, np.ndarray], classification: np.ndarray | None = None,
                        written_by: str | None = None, origin: tuple[float, float] = (0.0, 0.0),
                        provenance: dict | None = None) -> Path:
    """QuPath-importable FeatureCollection: one square ``tile`` object per tile with its
    measurements (a value that is not finite left out). Streamed feature by feature, so 100,000 tiles need little memory.
    ``written_by``: the command, as a foreign member ahead of the features (weakstil.annotations.
    geojson_written_by reads it), so a rerun knows the file for its own. ``origin``: the slide's
    scanned-area corner (MIRAX), subtracted: QuPath crops such a slide there (weakstil.annotation_frame).
    ``provenance`` (a slide-score file's attributes): what made the scores (:func:`provenance_record`: model,
    encoder, WeakSTIL version; no path or time), as the member ``weakstil_provenance`` after those two."""
    from weakstil.annotations import written_by_member
    side = float(tile_size_level0)
    names = list(measurements)
    columns = [np.asarray(measurements[n], np.float64) for n in names]
    with atomic_path(path) as tmp:
        with open(tmp, "w", encoding="utf-8") as fh:
            corner = np.asarray(origin, np.float64)
            moved = f'"weakstil_origin":{json.dumps(corner.tolist())},' if corner.any() else ""
            made = f'"weakstil_provenance":{json.dumps(provenance_record(provenance), separators=(",", ":"))},' if provenance else ""
            fh.write('{"type":"FeatureCollection",' + written_by_member(written_by) + moved + made + '"features":[')
            for i, (x, y) in enumerate(np.asarray(coords, np.float64) - corner):
                ring = [[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]
                # a value that is not a number is left out, as QuPath has a measurement it lacks (NaN): a
                # null stopped QuPath's File > Import objects at the first such tile (its MeasurementList.putAll
                # unboxes every value), and NaN is not JSON
                props: dict[str, object] = {
                    "objectType": "tile",
                    "measurements": {n: round(float(c[i]), 4) for n, c in zip(names, columns) if np.isfinite(c[i])},
                }
                if classification is not None:
                    name = str(classification[i])
                    props["classification"] = {"name": name, **({"color": list(TILE_CLASS_COLOURS[name])}
                                                                 if name in TILE_CLASS_COLOURS else {})}
                if i:
                    fh.write(",")
                json.dump({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                           "properties": props}, fh, separators=(",", ":"))
            fh.write("]}")
    return Path(path)


#: The last 12 bytes of every PNG file: its IEND chunk (a file cut short lacks it).
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def is_whole(path: Path) -> bool:
    """Whether a per-slide output is there and whole: a PNG from its signature to its IEND chunk, a
    GeoJSON one JSON object from its first byte to its last, any other file not empty. A damaged
    copy or a write cut short (a heatmap of 0 bytes, a GeoJSON QuPath cannot read) is redone by a
    rerun, not kept as "already scored"."""
    try:
        if not path.is_file() or path.stat().st_size == 0:
            return False
        if path.suffix == ".png":
            with open(path, "rb") as f:
                head = f.read(8)
                f.seek(-len(_PNG_END), 2)
                return head == b"\x89PNG\r\n\x1a\n" and f.read() == _PNG_END
        if path.suffix == ".geojson":  # one JSON object from its first byte to its last (not parsed: a slide of
            with open(path, "rb") as f:  # 100,000 tiles has tens of MB of GeoJSON, read on every rerun)
                head = f.read(64).lstrip()
                f.seek(max(0, path.stat().st_size - 64))
                return head.startswith(b"{") and f.read().rstrip().endswith(b"}")
    except (OSError, ValueError):
        return False
    return True


def all_whole(paths: list[Path]) -> bool:
    """Whether every one of a slide's outputs is there and whole (:func:`is_whole`); a damaged one
    is said in the log (the slide is then done again), a missing one is not."""
    damaged = [p for p in paths if os.path.lexists(p) and not is_whole(p)]
    for p in damaged:
        logging.getLogger(__name__).info("%s is damaged (empty or cut short); the slide is scored again", p)
    return not damaged and all(p.is_file() for p in paths)



def slide_relpath(slide: str | Path, out: str | Path) -> str:
    """The slide's path relative to an output folder (recorded so a viewer finds the slide after both
    moved together); "" where there is none (another drive on Windows)."""
    try:
        return os.path.relpath(Path(slide).resolve(), Path(out).resolve())
    except ValueError:
        return ""
