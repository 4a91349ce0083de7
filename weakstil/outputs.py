"""Outputs a pathologist opens: tile-score heatmap PNG and QuPath GeoJSON of scored tiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from weakstil.atomic import atomic_path

#: Colour map of tile sTIL scores (perceptually uniform, readable in greyscale).
COLORMAP = "inferno"


def tile_score_image(shape: tuple[int, int], coords: np.ndarray, tile_size_level0: float, scale: float,
                     values: np.ndarray) -> np.ndarray:
    """A float image of ``shape`` with each tile's value painted on its square, NaN elsewhere.

    ``scale`` is image pixels per level-0 pixel.
    """
    img = np.full(shape, np.nan, np.float32)
    side = max(1, int(round(tile_size_level0 * scale)))
    h, w = shape
    for (x, y), v in zip(coords, values):
        x0, y0 = int(round(x * scale)), int(round(y * scale))
        img[max(0, y0):min(h, y0 + side), max(0, x0):min(w, x0 + side)] = v
    return img


#: What a heatmap PNG records of how it was made (its ``Comment`` text chunk, JSON).
#: No paths or times: the same slide scored by the same model gives the same PNG bytes wherever it lies.
HEATMAP_PROVENANCE = ("slide_id", "slide_fingerprint", "stil", "threshold", "status", "model_id", "encoder_id",
                      "tumorbed_source", "weakstil_version")


def _png_text(provenance: dict | None) -> dict[str, str]:
    from weakstil import __version__

    text = {"Software": f"WeakSTIL {__version__}"}
    if provenance:
        kept = {k: provenance[k] for k in HEATMAP_PROVENANCE if k in provenance}
        text["Comment"] = json.dumps({k: v.item() if isinstance(v, np.generic) else v for k, v in kept.items()})
    return text


#: Colour map of tile stroma weights (0 = no stroma, 1 = all stroma).
STROMA_COLORMAP = "viridis"


def write_heatmap_png(path: str | Path, thumbnail: np.ndarray, thumb_mpp: float, slide_mpp: float,
                      coords: np.ndarray, tile_size_level0: float, scores: np.ndarray, *,
                      tumorbed_mask: np.ndarray | None = None, title: str = "", vmax: float = 100.0,
                      stroma_weights: np.ndarray | None = None, provenance: dict | None = None) -> Path:
    """Thumbnail with the tile-score heatmap, the tumour-bed outline and a colour bar.

    With ``stroma_weights`` (stroma aggregator) a second panel shows each tile's stroma weight:
    the slide sTIL% is the stroma-weighted mean of the first panel's scores over the bed.
    ``provenance`` (a slide-score file's attributes): its :data:`HEATMAP_PROVENANCE` keys go into the
    PNG's text chunks (``Comment``, as JSON), so a figure says what made it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import colormaps

    h, w = thumbnail.shape[:2]
    scale = slide_mpp / thumb_mpp
    panels = [(scores, COLORMAP, vmax, "tile sTIL score (%)")]
    if stroma_weights is not None:
        panels.append((stroma_weights, STROMA_COLORMAP, 1.0, "tile stroma weight"))
    dpi = 100
    fig_w = max(4.0, w / dpi + 1.6) * len(panels)
    fig, axes = plt.subplots(1, len(panels), figsize=(fig_w, max(3.0, h / dpi + 0.8)), dpi=dpi, squeeze=False)
    bed = None
    if tumorbed_mask is not None and tumorbed_mask.any():
        from skimage.transform import resize

        bed = resize(tumorbed_mask.astype(np.float32), (h, w), order=0, anti_aliasing=False)
    base = np.asarray(thumbnail[..., :3], np.float32) / 255.0
    for ax, (values, cmap_name, top, label) in zip(axes[0], panels):
        # the heat is blended over the thumbnail here (alpha 0.6 where a tile is), so matplotlib
        # draws one opaque RGB image per panel instead of resampling two layered ones
        heat = tile_score_image((h, w), coords, tile_size_level0, scale, values)
        cmap = colormaps[cmap_name]
        norm = matplotlib.colors.Normalize(vmin=0, vmax=top)
        has = np.isfinite(heat)
        rgb = base.copy()
        rgb[has] = 0.4 * base[has] + 0.6 * cmap(norm(heat[has]))[:, :3]
        ax.imshow((rgb * 255).round().astype(np.uint8), interpolation="nearest")
        if bed is not None:
            ax.contour(bed, levels=[0.5], colors=["#00e5ff"], linewidths=1.2)
        ax.set_axis_off()
        cbar = fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.04, pad=0.02)
        cbar.set_label(label)
    if title:
        fig.suptitle(title, fontsize=10)
    # fixed margins rather than tight_layout, which renders the whole figure once more
    top_margin = 1.0 - (0.45 + 0.17 * title.count("\n")) / fig.get_size_inches()[1] if title else 0.98
    fig.subplots_adjust(left=0.01, right=0.97, bottom=0.02, top=max(0.5, top_margin), wspace=0.08)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi, pil_kwargs={"compress_level": 1}, metadata=_png_text(provenance))
    plt.close(fig)
    return Path(path)


def write_tiles_geojson(path: str | Path, coords: np.ndarray, tile_size_level0: float,
                        measurements: dict[str, np.ndarray], classification: np.ndarray | None = None,
                        written_by: str | None = None) -> Path:
    """QuPath-importable FeatureCollection: one square ``tile`` object per tile with its
    measurements. Streamed feature by feature, so 100,000 tiles need little memory.
    ``written_by``: the command, as a foreign member ahead of the features (weakstil.annotations.
    geojson_written_by reads it), so a rerun knows the file for its own."""
    from weakstil.annotations import written_by_member
    side = float(tile_size_level0)
    names = list(measurements)
    columns = [np.asarray(measurements[n], np.float64) for n in names]
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write('{"type":"FeatureCollection",' + written_by_member(written_by) + '"features":[')
            for i, (x, y) in enumerate(np.asarray(coords, np.float64)):
                ring = [[x, y], [x + side, y], [x + side, y + side], [x, y + side], [x, y]]
                props: dict[str, object] = {
                    "objectType": "tile",
                    "measurements": {n: (None if not np.isfinite(c[i]) else round(float(c[i]), 4))
                                     for n, c in zip(names, columns)},
                }
                if classification is not None:
                    props["classification"] = {"name": str(classification[i])}
                if i:
                    fh.write(",")
                json.dump({"type": "Feature", "geometry": {"type": "Polygon", "coordinates": [ring]},
                           "properties": props}, fh, separators=(",", ":"))
            fh.write("]}")
    return Path(path)
