"""How much a slide's stain estimate moves when its overview or its tiles change a little.

    .venv/bin/python benchmarks/stain_stability.py SLIDE [SLIDE ...]   # SLIDE or SLIDE:MPP (a file without µm/px)

For each slide, :func:`weakstil.stain.estimate_slide_stain` on its default tiling, then again on

* its overview changed a little (the ink rule finds some pixels more or fewer): JPEG quality 90,
  2 % brighter, 2 % darker, blurred (σ 0.5 px), and the ink mask eroded / dilated by one pixel;
* 6 draws that drop 8 % of its tiles (seeded).

Prints the largest relative change of the haematoxylin and eosin strengths (``max_c``) over each
group, per slide and as mean (worst) over the slides, and the estimate's time. A stain estimate
is meant to be a property of the slide: a few ink pixels or tiles should barely move it.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _jpeg(thumb: np.ndarray) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(thumb).save(buf, "JPEG", quality=90)
    return np.asarray(Image.open(buf).convert("RGB"))


def _blur(thumb: np.ndarray) -> np.ndarray:
    from scipy import ndimage as ndi

    return np.clip(ndi.gaussian_filter(thumb.astype(np.float32), (0.5, 0.5, 0)), 0, 255).round().astype(np.uint8)


OVERVIEWS = {"jpeg90": _jpeg, "brighter": lambda t: np.clip(t * 1.02, 0, 255).astype(np.uint8),
             "darker": lambda t: (t * 0.98).astype(np.uint8), "blur": _blur}


def one_slide(path: str, mpp: float | None) -> tuple[np.ndarray, np.ndarray, float, int]:
    from scipy import ndimage as ndi

    import weakstil.stain as stain
    from weakstil.slide import Slide
    from weakstil.tiles import find_tiles

    ink_strokes = stain.ink_strokes
    with Slide.open(path, mpp) as slide:
        tiles = find_tiles(slide)
        t0 = time.perf_counter()
        base = stain.estimate_slide_stain(slide, tiles).max_c
        seconds = time.perf_counter() - t0
        seen = [stain.estimate_slide_stain(slide, dataclasses.replace(tiles, thumbnail=fn(tiles.thumbnail))).max_c
                for fn in OVERVIEWS.values()]
        for op in (ndi.binary_erosion, ndi.binary_dilation):
            def shifted(thumb, mpp, ink=None, op=op, **kw):  # the ink mask a pixel off
                mask = ink_strokes(thumb, mpp, ink, **kw)
                return op(mask) if mask.any() else mask
            stain.ink_strokes = shifted
            try:
                seen.append(stain.estimate_slide_stain(slide, tiles).max_c)
            finally:
                stain.ink_strokes = ink_strokes
        rng = np.random.default_rng(0)
        dropped = []
        for _ in range(6):
            keep = np.sort(rng.choice(len(tiles.coords), int(0.92 * len(tiles.coords)), replace=False))
            fewer = dataclasses.replace(tiles, coords=tiles.coords[keep], tissue_fraction=tiles.tissue_fraction[keep])
            dropped.append(stain.estimate_slide_stain(slide, fewer).max_c)
    change = [np.abs(np.array(v) / base - 1).max(axis=0) * 100 for v in (seen, dropped)]
    return change[0], change[1], seconds, len(tiles.coords)


def main() -> None:
    from weakstil.stain import STAIN_ESTIMATE_VERSION

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("slides", nargs="+", help="slide files; SLIDE:MPP gives a file without µm/px its resolution")
    args = ap.parse_args()
    rows = []
    for arg in args.slides:
        path, sep, mpp = arg.rpartition(":")
        if not sep or not mpp.replace(".", "", 1).isdigit():
            path, mpp = arg, ""
        try:
            seen, dropped, seconds, n = one_slide(path, float(mpp) if mpp else None)
        except Exception as exc:  # the library's fix names --slide-mpp, which this script spells SLIDE:MPP
            if "microns-per-pixel" in str(exc) and not mpp:
                raise SystemExit(f"error: {path}: has no microns-per-pixel in its metadata. Fix: give it as "
                                 f"{path}:MPP (about 0.25 for 40x, 0.5 for 20x scans)") from None
            raise
        rows.append([*seen, *dropped, seconds])
        print(f"{Path(path).name:>32} {n:5d} tiles | overview H {seen[0]:4.1f} % E {seen[1]:4.1f} % | "
              f"8 % of tiles dropped H {dropped[0]:4.1f} % E {dropped[1]:4.1f} % | {seconds:.2f} s", flush=True)
    r = np.array(rows)
    print(f"stain estimate {STAIN_ESTIMATE_VERSION}, {len(r)} slides, largest change, mean (worst): overview "
          f"H {r[:, 0].mean():.2f} % ({r[:, 0].max():.1f}) E {r[:, 1].mean():.2f} % ({r[:, 1].max():.1f}); "
          f"tiles dropped H {r[:, 2].mean():.2f} % ({r[:, 2].max():.1f}) E {r[:, 3].mean():.2f} % ({r[:, 3].max():.1f}); "
          f"{r[:, 4].mean():.2f} s per estimate")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
