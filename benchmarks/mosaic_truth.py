"""The Kather mosaic generator and its truth (used by ``benchmarks/kather_mosaic.py``).

A slide is a ``grid`` x ``grid`` array of cells of ``PITCH`` px at 0.5 µm/px. Each tissue cell is a
random 192 px crop, under a random 90-degree turn and flip, of one of the 32 real Kather CRC H&E
tiles (224 px) of its class, so no two cells repeat a tile exactly and tile edges do not line up
with the cells a 224 px scorer reads. Layout: a wobbly tissue ellipse on glass (noise on white);
inside it a tumour bed (an irregular blob) of TUM nests (about 45 % of the bed) with STR and LYM
between them; outside the bed NORM / ADI / MUS in patches. Truth sTIL% = 100 * LYM / (LYM + STR)
cells in the bed, the same share of stroma area that a pathologist's stromal TIL score estimates.

The random stream is that of the scratch generator the published figures were measured on
(hunt 35e, ``mosaic.py``): the same seed gives the same cohort, cell for cell.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

#: cell side, level-0 px at 0.5 µm/px (a 224 px Kather tile leaves room for a random crop)
PITCH = 192
MPP = 0.5
#: bumped whenever the same seed would give other pixels or truth
GENERATOR_VERSION = 1
#: one letter a class in truth.json's grids ("." is glass)
CODES = {"GLASS": ".", "TUM": "T", "STR": "S", "LYM": "L", "NORM": "N", "ADI": "A", "MUS": "M"}
BED_CLASSES = ("TUM", "STR", "LYM")
TILES_RELATIVE = Path("tiles") / "kather_crc_val_he_7k_sample"


def default_tiles(root: Path) -> Path:
    """The shared data's Kather tiles beside the repository, else the repository's own copy of the same
    32 files (``tests/data/kather``, CC BY 4.0; byte for byte the same, so a seed gives the same cohort)."""
    shared = root.parent / "shared" / "data" / TILES_RELATIVE
    return shared if (shared / "labels.csv").is_file() else root / "tests" / "data" / "kather"


class MosaicError(Exception):
    """A problem the user can fix (missing tiles, an unreadable cohort): one line, exit 1."""


def load_tiles(tiles_dir: Path) -> dict[str, list[np.ndarray]]:
    """The Kather tiles by class, in ``labels.csv`` order (the order fixes which tile a seed draws)."""
    import pandas as pd
    from PIL import Image

    table = tiles_dir / "labels.csv"
    if not table.is_file():
        raise MosaicError(f"the Kather CRC tiles are not at {tiles_dir} (no labels.csv): give --tiles DIR, a folder "
                          "of the 32 CRC-VAL-HE-7K tiles (../shared/data/tiles/kather_crc_val_he_7k_sample beside "
                          "the repository, or the repository's tests/data/kather)")
    lab = pd.read_csv(table)
    # ../shared/data keeps the images in images/, the repository's copy (tests/data/kather) beside labels.csv
    images = tiles_dir / "images" if (tiles_dir / "images").is_dir() else tiles_dir
    out: dict[str, list[np.ndarray]] = {}
    for name, cls in zip(lab["filename"], lab["label"]):
        out.setdefault(str(cls), []).append(np.asarray(Image.open(images / name).convert("RGB")))
    missing = [c for c in (*BED_CLASSES, "NORM", "ADI", "MUS") if not out.get(c)]
    if missing:
        raise MosaicError(f"{table} lists no tiles of class {', '.join(missing)}: these are the Kather CRC tiles?")
    return out


def _cell(tiles: dict[str, list[np.ndarray]], cls: str, rng: np.random.Generator) -> np.ndarray:
    t = tiles[cls][rng.integers(len(tiles[cls]))]
    t = np.rot90(t, rng.integers(4))
    if rng.random() < 0.5:
        t = t[:, ::-1]
    y, x = rng.integers(0, t.shape[0] - PITCH + 1, 2)
    return t[y:y + PITCH, x:x + PITCH]


def _field(rng: np.random.Generator, g: int, sigma: float) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(rng.standard_normal((g, g)), sigma)


def make_slide(tiles: dict[str, list[np.ndarray]], g: int, target: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(RGB image, class grid) of one slide whose bed aims at ``target`` % lymphocyte cells of its
    non-tumour cells (the drawn share is rounded to whole cells: read the truth off the grid)."""
    yy, xx = np.mgrid[:g, :g] + 0.5
    c = g / 2
    tissue = ((yy - c) / (0.46 * g)) ** 2 + ((xx - c) / (0.42 * g)) ** 2 + 0.6 * _field(rng, g, 2) < 1
    cy, cx = c + rng.uniform(-0.08, 0.08, 2) * g
    bed = (((yy - cy) / (rng.uniform(0.22, 0.3) * g)) ** 2 + ((xx - cx) / (rng.uniform(0.2, 0.28) * g)) ** 2
           + 0.8 * _field(rng, g, 1.5) < 1) & tissue
    lab = np.full((g, g), "GLASS", dtype=object)
    outside = np.array(["NORM", "ADI", "MUS"])
    patches = np.stack([_field(rng, g, 2.0) for _ in range(3)])
    lab[tissue & ~bed] = outside[patches.argmax(0)][tissue & ~bed]
    # tumour nests: the top 45 % of a smooth field over the bed; the rest stroma and lymphocytes
    nests = _field(rng, g, 1.0)
    bed_idx = np.flatnonzero(bed.ravel())
    tv = nests.ravel()[bed_idx]
    tum = bed_idx[tv >= np.quantile(tv, 0.55)] if len(bed_idx) else bed_idx
    rest = np.setdiff1d(bed_idx, tum)
    n_lym = int(round(target / 100 * len(rest)))
    # lymphocytes cluster a little: the stroma cells ranked by a noisy smooth field
    rank = _field(rng, g, 1.0).ravel()[rest] + 0.3 * rng.standard_normal(len(rest))
    lym = rest[np.argsort(-rank)[:n_lym]]
    flat = lab.ravel()
    flat[tum], flat[rest], flat[lym] = "TUM", "STR", "LYM"
    lab = flat.reshape(g, g)
    img = np.empty((g * PITCH, g * PITCH, 3), np.uint8)
    for i in range(g):
        for j in range(g):
            sl = np.s_[i * PITCH:(i + 1) * PITCH, j * PITCH:(j + 1) * PITCH]
            if lab[i, j] == "GLASS":
                img[sl] = np.clip(rng.normal(241, 2.5, (PITCH, PITCH, 3)), 0, 255).astype(np.uint8)
            else:
                img[sl] = _cell(tiles, lab[i, j], rng)
    return img, lab


def grid_rows(lab: np.ndarray) -> list[str]:
    """The class grid as strings, one letter a cell (:data:`CODES`), as truth.json stores it."""
    return ["".join(CODES[str(v)] for v in row) for row in lab]


def class_counts(rows: list[str]) -> dict[str, int]:
    letters = "".join(rows)
    return {cls: letters.count(code) for cls, code in CODES.items()}


def stil_of(counts: dict[str, int]) -> float:
    """Truth sTIL%: lymphocyte cells over lymphocyte + stroma cells of the bed (0 for a bed without either)."""
    lym, stroma = counts["LYM"], counts["STR"]
    return 100.0 * lym / max(lym + stroma, 1)


def bed_mask(rows: list[str]) -> np.ndarray:
    """The truth bed as a cell mask (grid rows x columns)."""
    bed = {CODES[c] for c in BED_CLASSES}
    return np.array([[ch in bed for ch in row] for row in rows], bool)


def write_tiff(path: Path, rgb: np.ndarray, mpp: float = MPP, levels: int = 3) -> None:
    """A tiled pyramidal JPEG TIFF with its resolution (px per cm), as a scanner export would have."""
    import tifffile

    from weakstil.atomic import atomic_path

    opts = dict(tile=(256, 256), compression="jpeg", photometric="rgb", resolutionunit="CENTIMETER")
    with atomic_path(path) as tmp, tifffile.TiffWriter(tmp) as tw:
        tw.write(rgb, subifds=0, resolution=(1e4 / mpp, 1e4 / mpp), **opts)
        for k in range(1, levels):
            f = 4 ** k
            if min(rgb.shape[:2]) // f < 16:
                break
            tw.write(rgb[::f, ::f], subfiletype=1, resolution=(1e4 / (mpp * f), 1e4 / (mpp * f)), **opts)


def bed_geojson(rows: list[str]) -> dict[str, object]:
    """The truth bed as a QuPath GeoJSON annotation (level-0 px), the union of its cells."""
    from shapely.geometry import box, mapping
    from shapely.ops import unary_union

    ii, jj = np.nonzero(bed_mask(rows))
    geom = unary_union([box(j * PITCH, i * PITCH, (j + 1) * PITCH, (i + 1) * PITCH) for i, j in zip(ii, jj)])
    return {"type": "FeatureCollection", "features": [{
        "type": "Feature", "geometry": mapping(geom),
        "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}}}]}


def write_text(path: Path, text: str) -> None:
    from weakstil.atomic import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def read_truth(cohort: Path) -> dict[str, object]:
    """A cohort's truth.json, or a :class:`MosaicError` naming it."""
    path = cohort / "truth.json"
    try:
        truth = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise MosaicError(f"{path} is missing: is {cohort} a cohort made by 'kather_mosaic.py make'?") from None
    except (OSError, ValueError) as exc:
        raise MosaicError(f"{path} cannot be read ({exc}): make the cohort again") from None
    if truth.get("generator") != "kather_mosaic":
        raise MosaicError(f"{path} was not written by kather_mosaic.py make")
    return truth
