"""Time of one ink test (``weakstil.ink_plane.ink_and_stain``) on slide thumbnails of a few sizes, the 6-megapixel
cap (``weakstil.tumorbed.ink.INK_MAX_PIXELS``) with sides of whole 16-px glass blocks and with odd sides included.

    .venv/bin/python benchmarks/ink_test_speed.py [--slide SLIDE] [--repeats 3]

Review h45e: the orientation-free glass of helper h45d (blocks laid from the four corners) took the test from
2.9-3.4 s to 3.8-4.3 s on 2511 x 2319 px and not on 2512 x 2320; ``score`` made it twice per slide (bed and QC).
The thumbnail is a slide's at 4 µm/px (``--slide``; default: a 2.5 mm synthetic slide of the hard look written once
under ``--work``) tiled mirrored to each size, its stain estimated on it. Prints, per size, the median and the
least wall time of ``--repeats`` calls (the machines are shared), CPU time, the ink share and the test used, and a
digest of the two masks (the same on two revisions: the same decisions). Compare revisions by running it with
``PYTHONPATH`` set to each.
"""

from __future__ import annotations

import argparse
import hashlib
import inspect
import statistics
import time
from pathlib import Path

SIZES = [(1001, 999), (2512, 2320), (2511, 2319), (2449, 2449)]  #: (height, width): 1 MP odd; 6 MP whole, odd, square


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path, default=None, help="a slide file (default: a synthetic one)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--work", type=Path, default=Path(".bench") / "ink_test_speed")
    ap.add_argument("--sizes", default=None, help="HxW,HxW,... (default: %s)" % ",".join(f"{h}x{w}" for h, w in SIZES))
    args = ap.parse_args()

    import numpy as np

    import weakstil.ink_plane as ink_plane
    from weakstil.slide import Slide
    from weakstil.stain import estimate_stain, stain_pixels
    from weakstil.tissue import detect_tissue

    path = args.slide
    if path is None:
        from weakstil.synth.generator import generate_slide

        args.work.mkdir(parents=True, exist_ok=True)
        path = args.work / "hard_2.5mm.tiff"
        if not path.is_file():
            t = time.perf_counter()
            generate_slide(path, args.work / "truth", "hard_2.5mm", seed=45, size_mm=(2.5, 2.5), hard=True, preview=False)
            print(f"wrote {path} in {time.perf_counter() - t:.1f} s")
    mpp = 4.0
    with Slide.open(path) as slide:
        thumb = np.ascontiguousarray(slide.read_thumbnail(mpp)[..., :3])
    tissue = detect_tissue(thumb, mpp)
    he = estimate_stain(thumb, stain_pixels(thumb, mpp, tissue) if tissue.any() else None).he
    sizes = SIZES if args.sizes is None else [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
    told = "test" in inspect.signature(ink_plane.ink_and_stain).parameters  # (revisions before helper h45d: not told)
    print(f"ink_plane module: {ink_plane.__file__}")
    print(f"thumbnail of {path.name}: {thumb.shape[1]} x {thumb.shape[0]} px at {mpp:g} µm/px, tiled mirrored")
    for h, w in sizes:
        rgb = np.ascontiguousarray(np.pad(thumb, ((0, max(0, h - thumb.shape[0])), (0, max(0, w - thumb.shape[1])), (0, 0)),
                                          mode="symmetric")[:h, :w])
        ink_plane.ink_and_stain(rgb[:64, :64], he, mpp)  # imports
        walls, cpus = [], []
        for _ in range(args.repeats):
            test: dict = {}
            t, c = time.perf_counter(), time.process_time()
            ink, stain_like = ink_plane.ink_and_stain(rgb, he, mpp, **({"test": test} if told else {}))
            walls.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
        digest = hashlib.blake2b(np.packbits(ink).tobytes() + np.packbits(stain_like).tobytes(), digest_size=6).hexdigest()
        print(f"{w} x {h} px ({w * h / 1e6:.1f} MP, sides {'' if h % 16 == 0 and w % 16 == 0 else 'not '}whole blocks): "
              f"median {statistics.median(walls):.2f} s, least {min(walls):.2f} s, CPU median "
              f"{statistics.median(cpus):.2f} s; ink {100 * ink.mean():.3f} %, {test.get('ink_test')}; masks {digest}",
              flush=True)


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
