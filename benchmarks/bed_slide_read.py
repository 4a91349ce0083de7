"""Time and peak memory of the tumour bed's slide reads on a large slide: the ink veto
(``weakstil.tumorbed.ink.slide_ink_share``) then the lymphoid-aggregate step (``weakstil.tumorbed.aggregates.slide_aggregates``),
as ``TumorBedDetector.detect_file`` runs them when a detector has both on.

    .venv/bin/python benchmarks/bed_slide_read.py [--slide SLIDE --slide-mpp MPP] [--mm 30x20] [--repeats 2]

Default slide: a 2.5 mm synthetic slide of the hard look (seed 9: lymphoid aggregates beside the bed, ink), read at 2 µm/px and
tiled mirrored to a ``--mm`` section (30 x 20 mm: 15,000 x 10,000 px at 2 µm/px, JPEG pyramid, about 40 MB), written once under
``--work``. Each repeat runs in a fresh interpreter (``--one``) and prints its wall time, CPU time, the peak of numpy's allocations
(tracemalloc) and the process's peak resident set (``ru_maxrss``, imports included), the thumbnail reads made (``Slide.read_thumbnail``
calls and their µm/px; not the aggregate step's 4 µm/px windows round its candidates on a coarser read), the aggregates found and a digest of the ink shares. Compare revisions by running it with ``PYTHONPATH``
set to each: before helper h47c the aggregate step read the slide again, uncapped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path


def make_slide(work: Path, mm: tuple[float, float], source: Path | None = None) -> Path:
    """The tiled synthetic section (2 µm/px), written once, from ``source`` (default: a generated 2.5 mm slide)."""
    import numpy as np

    from weakstil.slide import Slide
    from weakstil.synth.generator import generate_slide

    out = work / f"section_{mm[0]:g}x{mm[1]:g}mm.tiff"
    if out.is_file():
        return out
    work.mkdir(parents=True, exist_ok=True)
    small = source or work / "synth_0009.tiff"
    if not small.is_file():
        generate_slide(small, work / "truth", "synth_0009", 9, size_mm=(2.5, 2.5), target_stil=30.0, preview=False,
                       hard=True)
    with Slide.open(small) as s:
        tile = s.read_thumbnail(2.0)[..., :3]
    h, w = int(mm[1] * 500), int(mm[0] * 500)  # 2 µm/px
    block = np.concatenate([tile, tile[::-1]], 0)
    block = np.concatenate([block, block[:, ::-1]], 1)
    big = np.tile(block, (h // block.shape[0] + 1, w // block.shape[1] + 1, 1))[:h, :w]
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from conftest import write_tiff_slide

    write_tiff_slide(out, np.ascontiguousarray(big), mpp=2.0, levels=4)
    return out


def one(slide: Path, slide_mpp: float) -> dict:
    """One run of the two steps, in this interpreter."""
    import inspect
    import resource
    import time
    import tracemalloc

    import numpy as np

    from weakstil.slide import Slide
    from weakstil.stain import estimate_stain
    from weakstil.tissue import detect_tissue
    from weakstil.tumorbed import ink
    from weakstil.tumorbed.aggregates import AggregateRule, slide_aggregates

    with Slide.open(slide, slide_mpp=slide_mpp) as s:
        w, h = s.dimensions
        small = s.read_thumbnail(16.0)
    stain = estimate_stain(small[..., :3], detect_tissue(small[..., :3], 16.0))
    attrs = {"slide_path": str(slide), "slide_mpp": slide_mpp, "slide_width": w, "slide_height": h,
             "slide_id": slide.stem, "stain": json.dumps(stain.to_dict()), "background": "none"}
    tile = 224.0
    coords = np.array([[x, y] for y in np.arange(0, h - tile, tile) for x in np.arange(0, w - tile, tile)])
    mask_mpp = 8.0  # the features' tissue mask
    shape = (int(round(h * slide_mpp / mask_mpp)), int(round(w * slide_mpp / mask_mpp)))
    reads: list[float] = []
    real = Slide.read_thumbnail
    Slide.read_thumbnail = lambda self, mpp, *a, **k: reads.append(round(mpp, 3)) or real(self, mpp, *a, **k)
    shared = "read" in inspect.signature(ink.slide_ink_share).parameters
    tracemalloc.start()
    t0, c0 = time.perf_counter(), time.process_time()
    read = ink.SlideRead(attrs, slide) if shared else None
    share = ink.slide_ink_share(attrs, coords, tile, True, slide, {}, **({"read": read} if shared else {}))
    agg, said = slide_aggregates(attrs, shape, mask_mpp, AggregateRule(enabled=True), slide,
                                 **({"read": read} if shared else {}))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "numpy_peak_mb": round(peak / 2**20),
            "maxrss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024), "reads_mpp": reads,
            "aggregates": said, "aggregate_px": int(agg.sum()) if agg is not None else None,
            "ink_digest": hashlib.sha256(np.asarray(share, np.float32).tobytes()).hexdigest()[:12],
            "slide_px": [w, h], "tiles": len(coords)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path, default=None, help="a slide file (default: a tiled synthetic section)")
    ap.add_argument("--slide-mpp", type=float, default=2.0, help="its µm/px (the default section's: 2.0)")
    ap.add_argument("--source", type=Path, default=None, help="the slide tiled into the section (default: generated)")
    ap.add_argument("--mm", default="30x20", help="the default section's width x height, mm")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--work", type=Path, default=Path(".bench") / "bed_slide_read")
    ap.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.slide, args.slide_mpp)))
        return
    slide = args.slide or make_slide(args.work, tuple(float(v) for v in args.mm.split("x")), args.source)
    for _ in range(args.repeats):
        run = subprocess.run([sys.executable, __file__, "--one", "--slide", str(slide), "--slide-mpp",
                              str(args.slide_mpp)], capture_output=True, text=True)
        print(run.stdout.strip().splitlines()[-1] if run.returncode == 0 else run.stderr[-2000:], flush=True)


if __name__ == "__main__":
    main()
