"""Ground truth: sTIL label, per-tile truth, HDF5 file, tumour-bed GeoJSON, preview."""

from __future__ import annotations

import functools
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from numpy.typing import NDArray
from PIL import Image
from shapely.geometry import MultiPolygon, Polygon, mapping
from skimage.measure import find_contours

from weakstil.files.h5 import open_read, open_write

from ._io import atomic_path, write_text_atomic
from .constants import MASK_FACTOR, TRUTH_TILE_SIZE

__all__ = [
    "MASK_NAMES",
    "TruthMasks",
    "compute_stil",
    "read_truth",
    "tile_truth",
    "tile_truth_extra",
    "tumorbed_geojson",
    "write_geojson",
    "write_preview",
    "write_truth_h5",
]

logger = logging.getLogger(__name__)
B = NDArray[np.bool_]
F32 = NDArray[np.float32]
MASK_NAMES = ("tissue", "tumorbed", "tumor", "stroma", "fat")


@dataclass
class TruthMasks:
    """Binary masks and lymphocyte coverage on the mask grid."""

    tissue: B
    tumorbed: B
    tumor: B
    stroma: B
    fat: B
    lymphocyte: F32  # coverage fraction of drawn lymphocyte pixels, 0..1


def compute_stil(lymphocyte: NDArray[np.floating], tumorbed: NDArray, stroma: NDArray) -> float:
    """``100 * sum(lymphocyte[tumorbed & stroma]) / count(tumorbed & stroma)`` (NaN if empty)."""
    sel = np.asarray(tumorbed, bool) & np.asarray(stroma, bool)
    n = int(np.count_nonzero(sel))
    if n == 0:
        return float("nan")
    return 100.0 * float(np.sum(lymphocyte[sel], dtype=np.float64)) / n


def tile_truth(m: TruthMasks, width: int, height: int, tile: int = TRUTH_TILE_SIZE,
               factor: int = MASK_FACTOR) -> dict[str, NDArray]:
    """Per-tile truth on the default WeakSTIL grid (full tiles only, row-major).

    Fractions are of the tile area; ``stil`` = lymphocyte-in-stroma area / stroma
    area * 100 (NaN without stroma).
    """
    if tile % factor:
        raise ValueError("tile size must be a multiple of the mask factor")
    t = tile // factor
    nx, ny = width // tile, height // tile

    def blocks(a: NDArray) -> NDArray[np.float64]:
        a = np.asarray(a)[: ny * t, : nx * t]
        return (a.reshape(ny, t, nx, t).sum(axis=(1, 3), dtype=np.float64) / (t * t)).ravel()

    gy, gx = np.meshgrid(np.arange(ny), np.arange(nx), indexing="ij")
    coords = np.stack([gx.ravel() * tile, gy.ravel() * tile], axis=1).astype(np.int64)
    bed_stroma = m.tumorbed & m.stroma
    zero = np.float32(0.0)
    lymph_s = np.where(m.stroma, m.lymphocyte, zero)
    lymph_bs = np.where(bed_stroma, m.lymphocyte, zero)
    stroma_f = blocks(m.stroma)
    lymph_f = blocks(lymph_s)
    with np.errstate(invalid="ignore", divide="ignore"):
        stil = np.where(stroma_f > 0, 100.0 * lymph_f / stroma_f, np.nan)
    return {
        "coords": coords,
        "tissue_fraction": blocks(m.tissue).astype(np.float32),
        "tumorbed_fraction": blocks(m.tumorbed).astype(np.float32),
        "tumor_fraction": blocks(m.tumor).astype(np.float32),
        "stroma_fraction": stroma_f.astype(np.float32),
        "fat_fraction": blocks(m.fat).astype(np.float32),
        "lymphocyte_fraction": lymph_f.astype(np.float32),
        "stil": stil.astype(np.float32),
        "tumorbed_stroma_fraction": blocks(bed_stroma).astype(np.float32),
        "tumorbed_lymphocyte_fraction": blocks(lymph_bs).astype(np.float32),
    }


def _tile_blocks(a: NDArray, width: int, height: int, tile: int, factor: int) -> NDArray[np.float64]:
    t = tile // factor
    nx, ny = width // tile, height // tile
    a = np.asarray(a)[: ny * t, : nx * t]
    return (a.reshape(ny, t, nx, t).sum(axis=(1, 3), dtype=np.float64) / (t * t)).ravel()


def tile_truth_extra(m: TruthMasks, extra: Mapping[str, NDArray], width: int, height: int,
                     tile: int = TRUTH_TILE_SIZE, factor: int = MASK_FACTOR) -> dict[str, NDArray]:
    """Per-tile truth of the hard confounders (same grid and order as ``tile_truth``).

    Fractions are of the tile area: ``necrosis_fraction``, ``dcis_fraction``,
    ``lymphoid_fraction`` (lymphoid structures outside the tumour bed) and the flag
    ``in_lymphoid_aggregate`` (that fraction >= 0.5), ``plasma_fraction`` (plasma-cell area in
    stroma; part of ``lymphocyte_fraction``, which is all TIL area in stroma),
    ``tumorbed_plasma_fraction`` (in bed stroma) and ``intratumoral_lymphocyte_fraction`` (TIL
    area inside tumour nests: never counted). The tumour-cell (nest) fraction is
    ``tumor_fraction`` of ``tile_truth``.
    """
    def blocks(a: NDArray) -> NDArray[np.float64]:
        return _tile_blocks(a, width, height, tile, factor)

    zero = np.float32(0.0)
    plasma = np.asarray(extra["plasma"], np.float32)
    lymphoid = blocks(extra["lymphoid"])
    return {
        "necrosis_fraction": blocks(extra["necrosis"]).astype(np.float32),
        "dcis_fraction": blocks(extra["dcis"]).astype(np.float32),
        "lymphoid_fraction": lymphoid.astype(np.float32),
        "in_lymphoid_aggregate": (lymphoid >= 0.5).astype(np.uint8),
        "plasma_fraction": blocks(np.where(m.stroma, plasma, zero)).astype(np.float32),
        "tumorbed_plasma_fraction": blocks(np.where(m.stroma & m.tumorbed, plasma, zero)).astype(np.float32),
        "intratumoral_lymphocyte_fraction": blocks(np.where(m.tumor, m.lymphocyte, zero)).astype(np.float32),
    }


def write_truth_h5(path: Path, m: TruthMasks, regions: NDArray[np.uint8], attrs: Mapping[str, Any],
                   tiles: Mapping[str, NDArray], region_names: Mapping[int, str],
                   extra_masks: Mapping[str, NDArray] | None = None) -> None:
    """Write the truth file atomically (deterministic bytes: no timestamps). ``extra_masks``
    (non-default output): boolean masks stored as uint8, float ones (``plasma``) as float32."""
    with open_write(path, track_order=True) as h5:
        opts: dict[str, Any] = dict(compression="gzip", compression_opts=4, shuffle=True, track_times=False)
        for name in MASK_NAMES:
            a = np.asarray(getattr(m, name), np.uint8)
            h5.create_dataset(name, data=a, chunks=_chunks(a.shape), **opts)
        h5.create_dataset("lymphocyte", data=np.asarray(m.lymphocyte, np.float32),
                          chunks=_chunks(m.lymphocyte.shape), **opts)
        for name, a in (extra_masks or {}).items():
            a = np.asarray(a)
            a = a.astype(np.uint8) if a.dtype == bool else a.astype(np.float32)
            h5.create_dataset(name, data=a, chunks=_chunks(a.shape), **opts)
        ds = h5.create_dataset("regions", data=regions, chunks=_chunks(regions.shape), **opts)
        ds.attrs["legend"] = json.dumps({str(k): v for k, v in region_names.items()})
        for k, v in attrs.items():
            h5.attrs[k] = v
        g = h5.create_group("tiles", track_order=True)
        g.attrs["tile_size_level0"] = TRUTH_TILE_SIZE
        g.attrs["mpp"] = float(attrs.get("slide_mpp", 0.5))
        for k, v in tiles.items():
            g.create_dataset(k, data=v, track_times=False)


def _chunks(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(min(s, 512) for s in shape)


def read_truth(path: Path) -> tuple[TruthMasks, dict[str, Any]]:
    with open_read(path) as h5:
        m = TruthMasks(**{n: h5[n][()].astype(bool) for n in MASK_NAMES}, lymphocyte=h5["lymphocyte"][()])
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in h5.attrs.items()}
    return m, attrs


def _rings_to_geometry(contours: list[NDArray[np.float64]], scale: float) -> Polygon | MultiPolygon | None:
    geoms = []
    for c in contours:
        if len(c) < 4:
            continue
        # find_contours gives (row, col) with pixel centres at integers; mask pixel i
        # spans [i - 0.5, i + 0.5] -> level-0 [(i) * f, (i + 1) * f]
        xy = np.stack([(c[:, 1] + 0.5) * scale, (c[:, 0] + 0.5) * scale], axis=1)
        p = Polygon(xy)
        if not p.is_valid:
            p = shapely.make_valid(p)
        if p.area > 0:
            geoms.append(p)
    if not geoms:
        return None
    # nested rings alternate between outer boundaries and holes: XOR resolves them
    out = functools.reduce(lambda a, b: a.symmetric_difference(b), geoms)
    if isinstance(out, (Polygon, MultiPolygon)):
        return out
    polys = [g for g in getattr(out, "geoms", []) if isinstance(g, Polygon)]
    return MultiPolygon(polys) if polys else None


def tumorbed_geojson(bed: B, slide_id: str, *, factor: int = MASK_FACTOR, simplify_px: float = 2.0) -> dict[str, Any]:
    """QuPath-style FeatureCollection of the tumour bed in level-0 pixel coordinates."""
    padded = np.pad(np.asarray(bed, np.float32), 1)
    contours = [c - 1.0 for c in find_contours(padded, 0.5)]
    geom = _rings_to_geometry(contours, float(factor))
    features = []
    if geom is not None:
        geom = geom.simplify(simplify_px, preserve_topology=True)
        parts = list(geom.geoms) if isinstance(geom, MultiPolygon) else [geom]
        parts.sort(key=lambda g: (-g.area, g.bounds))
        for i, part in enumerate(parts):
            features.append({
                "type": "Feature",
                "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"weakstil-synth/{slide_id}/tumorbed/{i}")),
                "geometry": _round_coords(mapping(part)),
                "properties": {
                    "objectType": "annotation",
                    "classification": {"name": "Tumor bed", "color": [255, 0, 0]},
                    "isLocked": False,
                },
            })
    return {"type": "FeatureCollection", "features": features}


def _round_coords(geo: Mapping[str, Any]) -> dict[str, Any]:
    def r(obj: Any) -> Any:
        if isinstance(obj, (tuple, list)):
            if obj and isinstance(obj[0], (int, float)):
                return [round(float(v), 2) for v in obj]
            return [r(o) for o in obj]
        return obj

    return {"type": geo["type"], "coordinates": r(geo["coordinates"])}


def write_geojson(path: Path, fc: Mapping[str, Any]) -> None:
    write_text_atomic(path, json.dumps(fc, separators=(",", ":")) + "\n")


def write_preview(path: Path, thumb: NDArray[np.uint8], m: TruthMasks, regions: NDArray[np.uint8],
                  max_size: int = 640, lymphoid: B | None = None) -> None:
    """Two panels: the slide with truth outlines (green tissue, red tumour bed, blue
    nests, yellow lymphoid structures outside the bed), and the region map with lymphocyte
    coverage shaded dark (necrosis orange, DCIS violet)."""
    from skimage.segmentation import find_boundaries

    img = Image.fromarray(thumb)
    s = min(1.0, max_size / max(img.size))
    size = (max(1, round(img.size[0] * s)), max(1, round(img.size[1] * s)))
    img = img.resize(size, Image.Resampling.BILINEAR)
    rgb = np.array(img)

    def fit(a: NDArray, resample: Image.Resampling = Image.Resampling.NEAREST) -> NDArray:
        return np.asarray(Image.fromarray(a).resize(size, resample))

    outlines = [(m.tissue, (0, 170, 0)), (m.tumorbed, (230, 0, 0))]
    if s * thumb.shape[1] / m.tissue.shape[1] >= 0.5:  # nests only where they stay legible
        outlines.insert(1, (m.tumor, (40, 40, 230)))
    if lymphoid is not None and lymphoid.any():
        outlines.append((lymphoid, (230, 200, 0)))
    for mask, colour in outlines:
        b = find_boundaries(fit(mask.astype(np.uint8)) > 0, mode="thick")
        rgb[b] = colour
    palette = np.array([[250, 250, 250], [235, 160, 200], [130, 70, 170], [255, 250, 215],
                        [220, 120, 210], [255, 225, 240], [240, 150, 60], [150, 60, 200]], np.float32)
    reg = palette[fit(regions)]
    cov = fit(m.lymphocyte.astype(np.float32), Image.Resampling.BILINEAR)[..., None]
    reg = (reg * (1.0 - 0.85 * np.clip(cov * 1.5, 0, 1)) + np.array([20, 20, 90]) * 0.85 * np.clip(cov * 1.5, 0, 1))
    bed_b = find_boundaries(fit(m.tumorbed.astype(np.uint8)) > 0, mode="thick")
    reg[bed_b] = (230, 0, 0)
    panel = np.concatenate([rgb, np.full((size[1], 8, 3), 255, np.uint8), reg.astype(np.uint8)], axis=1)
    with atomic_path(path) as tmp:
        Image.fromarray(panel).save(tmp, format="PNG", compress_level=6)
