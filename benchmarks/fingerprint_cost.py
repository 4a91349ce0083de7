"""What the slide fingerprint (weakstil.fingerprint) costs, on a real slide and on a 3 GB file.

    .venv/bin/python benchmarks/fingerprint_cost.py [--slide PATH] [--size-gb 3] [--repeats 5]

1. ``slide_fingerprint(slide)``: OpenSlide's open (which every command does anyway, and which
   computes ``openslide.quickhash-1``) plus the 10 blocks of 64 KiB read from the file.
2. The file part alone on a ``--size-gb`` file of random bytes (made once in .bench/), with the
   file's pages dropped from the page cache before every run (``posix_fadvise(DONTNEED)``), so the
   reads come from the disk; beside it, a SHA-256 of the whole file for comparison.

Prints a markdown table (median of ``--repeats``). Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import statistics
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def drop_cache(path: Path) -> None:
    with open(path, "rb") as fh:
        os.posix_fadvise(fh.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def timed(fn, path: Path, repeats: int, cold: bool = True) -> float:
    times = []
    for _ in range(repeats):
        if cold:
            drop_cache(path)
        t0 = time.perf_counter()
        fn(path)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def big_file(path: Path, size_gb: float) -> Path:
    size = int(size_gb * 1024**3)
    if path.exists() and path.stat().st_size == size:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    block = os.urandom(16 * 1024**2)
    with open(path, "wb") as fh:
        written = 0
        while written < size:
            n = min(len(block), size - written)
            fh.write(block[:n])
            written += n
    return path


def sha256_all(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path, default=ROOT / "tests" / "data" / "CMU-1-Small-Region.svs")
    ap.add_argument("--size-gb", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--cache", type=Path, default=ROOT / ".bench")
    args = ap.parse_args()
    from inputs import need

    # before the --size-gb file is written (3 GB by default): a mistyped slide failed only after it
    need(args.slide, "--slide", "pass an existing slide file (default: tests/data/CMU-1-Small-Region.svs)")

    from weakstil.fingerprint import file_fingerprint, slide_fingerprint
    from weakstil.slide_backend import open_backend

    def open_only(path: Path) -> None:
        open_backend(path).close()

    big = big_file(args.cache / f"random_{args.size_gb:g}GB.bin", args.size_gb)
    rows = [
        (f"{args.slide.name}: OpenSlide open only", timed(open_only, args.slide, args.repeats)),
        (f"{args.slide.name}: slide_fingerprint (open + blocks)", timed(slide_fingerprint, args.slide, args.repeats)),
        (f"{args.size_gb:g} GB file: the 10 blocks, cold cache", timed(file_fingerprint, big, args.repeats)),
        (f"{args.size_gb:g} GB file: SHA-256 of every byte, cold cache", timed(sha256_all, big, 1)),
    ]
    print(f"{args.repeats} repeats (median); cache folder {args.cache}; 1-min load {os.getloadavg()[0]:.2f}; "
          f"python {platform.python_version()}\n")
    print("| what | seconds (median) |\n|---|---|")
    for name, seconds in rows:
        print(f"| {name} | {seconds:.4f} |")


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
