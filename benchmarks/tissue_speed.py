"""Tissue detection time on a large slide's thumbnail: the part of ``embed_slide`` that runs before
any tile is read (issue 18: on a GPU machine it was 1.3 s of a 4.2 s slide).

    .venv/bin/python benchmarks/tissue_speed.py [--side 32000] [--repeats 5]

Writes (once, under ``--work``) the Aperio-like textured SVS that ``benchmarks/gpu_check.py`` uses
(32,000 px square at 0.5 µm/px: about 16,400 tissue tiles), then times ``read_thumbnail`` and
``detect_tissue`` at the tiling's mask resolution, ``--repeats`` times, and prints the medians (wall
and CPU time: the machines are shared) and the tissue share. Compare two revisions by running it with ``PYTHONPATH`` set to each.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=32000, help="slide side in px at 0.5 µm/px")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--work", type=Path, default=Path(".bench") / "tissue_speed")
    args = ap.parse_args()

    import weakstil.tissue as tissue
    from weakstil.decode.svswriter import write_textured_svs
    from weakstil.slide import Slide
    from weakstil.tiles import TISSUE_MASK_MPP

    args.work.mkdir(parents=True, exist_ok=True)
    path = args.work / f"textured-{args.side}.svs"
    if not path.is_file():
        t = time.perf_counter()
        write_textured_svs(path, args.side, args.side, 0.5, seed=1)
        print(f"wrote {path} in {time.perf_counter() - t:.1f} s")
    with Slide.open(path) as slide:
        mpp = max(TISSUE_MASK_MPP, slide.mpp)
        reads, detects, cpus = [], [], []
        for _ in range(args.repeats):
            t = time.perf_counter()
            thumb = slide.read_thumbnail(mpp)
            reads.append(time.perf_counter() - t)
            t, c = time.perf_counter(), time.process_time()
            mask = tissue.detect_tissue(thumb, mpp)
            detects.append(time.perf_counter() - t)
            cpus.append(time.process_time() - c)
    print(f"tissue module: {tissue.__file__}")
    print(f"thumbnail {thumb.shape[1]} x {thumb.shape[0]} px at {mpp:g} µm/px, tissue {100 * mask.mean():.2f} %")
    print(f"read_thumbnail median {statistics.median(reads):.3f} s; detect_tissue median "
          f"{statistics.median(detects):.3f} s (min {min(detects):.3f}; CPU median {statistics.median(cpus):.3f} s; "
          f"{args.repeats} repeats)")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
