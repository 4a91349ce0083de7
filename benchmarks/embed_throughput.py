"""Embedding throughput on the CPU: decode-only, encoder-only and end-to-end tiles/s, the split the
CLI plans, a sweep of every split, and the old default.

    .venv/bin/python benchmarks/embed_throughput.py                       # small-cnn and ResNet-50 (layer 3)
    .venv/bin/python benchmarks/embed_throughput.py --encoders small-cnn --repeats 5
    .venv/bin/python benchmarks/embed_throughput.py --slide tests/data/CMU-1-Small-Region.svs

Workload: the tissue tiles (0.5 µm/px, 224 px) of a slide, by default an 8000 x 8000 px Aperio-like
synthetic SVS (RGB JPEG tiles with JPEGTables, about 1,000 tissue tiles) written once to
``--cache-dir``; a given slide's tiles are cycled up to ``--min-tiles``. Encoders: ``small-cnn``
(random init) and ``resnet50-l3`` = timm ``resnet50`` truncated after layer 3 (1024-d, random
init, 224 px), the encoder TRIDENT compares with.

Rows, each the median of ``--repeats`` runs (end-to-end runs interleaved over the splits):

* decode-only (w): ``w`` decode worker processes fill the shared-memory ring, nothing else runs
* encoder-only (t): random uint8 batches through the transform + encoder with ``t`` torch threads,
  in the micro-batch the planner measured (as ``weakstil embed`` runs it)
* end-to-end (w, t): the real pipeline (``weakstil.decode`` batches -> ``weakstil.embed.embed_batches``)
* CLI default: the split ``weakstil embed`` plans for this slide (``ThreadPlanner``), end to end;
  efficiency = end-to-end / min(decode-only(w), encoder-only(t)) at that split; "of CPU-time
  bound" = end-to-end / min(decode-only(w), encoder-only(t), CPUs / (1 / decode-only(1) + t /
  encoder-only(t))): when the encoder's threads fill every core, decoding must take CPU time from
  it, and no split can beat the CPU time both stages need per tile
* whole batches: the CLI split with each 64-tile batch in one encoder call (no micro-batch)
* old default: the previous pipeline (OpenSlide reads in 1 thread of this process) with 1 torch thread

Targets (issue 18, quiet 2-core machine): efficiency >= 0.95; CLI default within 5 % of the best
split of the sweep; ResNet-50 CLI default >= 1.5x the old default. Everything the lead needs to re-run
it on a quiet machine is printed (command, versions, CPUs, load average before/after).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def timed(fn, repeats: int) -> float:
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - t0)
    return statistics.median(runs)


def parallel_capacity(seconds: float = 1.5) -> float:
    """Work of two concurrent single-threaded matmul loops relative to one (2.0 = two real cores)."""
    import threading

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    a = torch.randn(384, 384)

    def loop(out: list, i: int) -> None:
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            a @ a
            n += 1
        out[i] = n

    one = [0]
    loop(one, 0)
    two = [0, 0]
    ts = [threading.Thread(target=loop, args=(two, i)) for i in range(2)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    torch.set_num_threads(before)
    return sum(two) / max(1, one[0])


def make_encoder(name: str):
    """``small-cnn`` (a card) or ``resnet50-l3`` (timm resnet50 up to layer 3, 1024-d), random init, CPU."""
    import torch

    from weakstil.encoders import create_encoder

    if name != "resnet50-l3":
        return create_encoder(name, "random", "cpu")
    import timm
    from torch import nn

    from weakstil.encoders.cards import EncoderCard
    from weakstil.encoders.factory import Encoder
    from weakstil.encoders.transforms import TileTransform

    torch.manual_seed(0)
    model = timm.create_model("resnet50", pretrained=False, num_classes=0)
    model.layer4 = nn.Identity()  # TRIDENT's resnet50_trunc: features after layer 3, average-pooled
    model = model.eval().to(memory_format=torch.channels_last)
    card = EncoderCard(name="resnet50-l3", source="timm", model="resnet50", input_px=224, mpp=0.5,
                       mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), embed_dim=1024, precision="fp32")
    return Encoder(card=card, model=model, device=torch.device("cpu"), weights_sha256="random",
                   weights_source="random init", transform=TileTransform(224, card.mean, card.std), seed=0)


def default_slide(cache_dir: Path) -> Path:
    from weakstil.decode.svswriter import write_textured_svs

    path = cache_dir / "textured-8000-0.5um.svs"
    if not path.exists():
        cache_dir.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.svs")
        write_textured_svs(tmp, 8000, 8000, 0.5, seed=0)
        os.replace(tmp, path)
    return path


def bench_encoder(name: str, args, slide, spec, coords, cpus: int, all_coords: np.ndarray) -> list[str]:
    import torch

    from weakstil.decode.batches import ThreadPlanner, shared_pool
    from weakstil.decode.plan import nearest_micro_batch
    from weakstil.embed import embed_batches, iter_tile_batches

    enc = make_encoder(name)
    n = len(coords)
    bs, px = args.batch_size, spec.tile_px
    rng = np.random.default_rng(0)
    fake = [rng.integers(0, 256, (bs, px, px, 3), dtype=np.uint8) for _ in range(3)]
    reps = args.repeats

    def decode_only(w: int) -> float:
        # over all the slide's tiles (more than the workers' caches of decoded JPEG tiles hold), so a
        # repeat decodes again instead of finding the tiles of a short run still decoded
        pool = shared_pool(w)

        def run() -> None:
            for _s, b in pool.batches(spec, all_coords, bs):
                b[0, 0, 0, 0]
        run()  # warm-up: start the workers, fill the page cache
        return len(all_coords) / timed(run, reps)

    def micro(t: int, micro_batch: int | None = None) -> None:
        # the encoder as the CLI runs it with t threads: in the micro-batch the planner measured
        enc.micro_batch = nearest_micro_batch(plan.encoder_micro_batches, t) if micro_batch is None else micro_batch

    def encoder_only(t: int) -> float:
        torch.set_num_threads(t)
        micro(t)

        def run() -> None:
            with torch.inference_mode():
                done = 0
                while done < n:
                    b = min(bs, n - done)
                    enc.run(torch.from_numpy(fake[(done // bs) % 3][:b]))
                    done += b
        run()
        return n / timed(run, reps)

    def end_to_end_once(w: int, t: int, micro_batch: int | None = None) -> float:
        pool = shared_pool(w)
        torch.set_num_threads(t)
        micro(t, micro_batch)

        def run(part=coords) -> None:
            embed_batches(enc, pool.batches(spec, part, bs), lambda s, f: None)
        run(coords[:bs])  # warm-up: a new pool when w changed, oneDNN primitives for a new micro-batch
        return n / timed(run, 1)

    def end_to_end(configs: list[tuple]) -> dict[tuple, float]:
        # repeats interleaved over the configurations, so a change of machine load between them
        # (shared CPUs) moves every configuration's median alike instead of one configuration's
        runs: dict[tuple, list[float]] = {c: [] for c in configs}
        for _ in range(reps):
            for c in configs:
                runs[c].append(end_to_end_once(*c))
        return {c: statistics.median(v) for c, v in runs.items()}

    def old_default() -> float:
        torch.set_num_threads(1)
        enc.micro_batch = 0

        def run() -> None:
            embed_batches(enc, iter_tile_batches(slide, coords, px, spec.mpp, bs, workers=1), lambda s, f: None)
        run()
        return n / timed(run, reps)

    t_start = time.perf_counter()
    planner = ThreadPlanner(enc, bs)
    plan = planner.plan(spec, coords)
    t_plan = time.perf_counter() - t_start
    splits = [(w, t) for w in range(1, cpus + 1) for t in range(1, cpus + 1)] if cpus <= 4 else \
        sorted({(w, t) for w in (1, 2, cpus // 4, cpus // 2) for t in (1, cpus // 2, cpus - 1, cpus) if w and t})
    dec = {w: decode_only(w) for w in sorted({w for w, _ in splits} | {plan.workers})}
    encr = {t: encoder_only(t) for t in sorted({t for _, t in splits} | {plan.threads})}
    cli_split = (plan.workers, plan.threads)
    whole_cfg = (plan.workers, plan.threads, 0)
    runs = end_to_end(sorted(set(splits) | {cli_split}) + [whole_cfg])
    e2e = {s: runs[s] for s in splits}
    cli, whole = runs[cli_split], runs[whole_cfg]
    old = old_default()
    best_split = max(e2e, key=e2e.get)
    eff = cli / min(dec[plan.workers], encr[plan.threads])

    def cpu_bound(w: int, t: int) -> float:
        # each stage alone, and the CPU time both need per tile (1/decode on one core, t/encoder on
        # t threads) against the cores there are: what no split of these stages can beat
        return min(dec[w], encr[t], cpus / (1.0 / dec[1] + t / encr[t]))

    lines = [f"### {name} ({enc.card.model}, {enc.embed_dim}-d, fp32), {n} tiles, batch {bs}", "",
             f"CLI plan ({plan.source}, {t_plan:.1f} s to measure): {plan.workers} decode worker(s) + {plan.threads} "
             f"torch thread(s); measured decode {plan.decode_tiles_per_s:.0f} tiles/s per worker, encoder "
             + ", ".join(f"{k} thr {v:.1f} (micro-batch {plan.encoder_micro_batches.get(k, '?')})"
                         for k, v in sorted(plan.encoder_tiles_per_s.items()))
             + f" tiles/s; predicted {plan.predicted_tiles_per_s:.1f} tiles/s", "",
             "| split (decode workers + torch threads) | decode-only | encoder-only | end-to-end tiles/s | "
             "efficiency | of CPU-time bound | vs best |", "|---|---:|---:|---:|---:|---:|---:|"]
    rows = {**e2e, cli_split: cli}
    for (w, t), v in sorted(rows.items()):
        mark = " **(CLI default)**" if (w, t) == cli_split else ""
        lines.append(f"| {w} + {t}{mark} | {dec[w]:.1f} | {encr[t]:.1f} | {v:.1f} | {v / min(dec[w], encr[t]):.3f} | "
                     f"{v / cpu_bound(w, t):.3f} | {v / e2e[best_split]:.3f} |")
    lines += [f"| CLI split, whole {bs}-tile batches per encoder call (no micro-batch) | | | {whole:.1f} | | | "
              f"{whole / e2e[best_split]:.3f} |",
              f"| old default: OpenSlide in 1 thread + 1 torch thread, whole batches | | | {old:.1f} | | | "
              f"{old / e2e[best_split]:.3f} |",
              "", f"**CLI default: efficiency {eff:.3f} (target >= 0.95), "
              f"{cli / cpu_bound(plan.workers, plan.threads):.3f} of the CPU-time bound; "
              f"{cli / e2e[best_split]:.3f} of the best split {best_split[0]} + {best_split[1]} (target >= 0.95); "
              f"{cli / whole:.2f}x whole batches; {cli / old:.2f}x the old default.**", ""]
    return lines


def tile_stats_line(slide, coords: np.ndarray, params) -> str:
    """The per-tile measurements ``weakstil embed`` makes beside the encoder (weakstil.tilestats_pool):
    CPU ms per tile on one core; the rows below do not include them (benchmarks/tilestats_throughput.py
    measures them in the pipeline)."""
    from weakstil.stain import estimate_slide_stain
    from weakstil.tilestats import batch_stats

    stain = estimate_slide_stain(slide)
    tiles = np.stack([slide.read_region(int(x), int(y), params.tile_px, params.mpp) for x, y in coords[:64]])
    batch_stats(tiles, stain, params.mpp)  # warm-up: the first batch pays one-off set-up (about 2x)
    c0 = time.process_time()
    for _ in range(2):
        batch_stats(tiles, stain, params.mpp)
    ms = 1e3 * (time.process_time() - c0) / (2 * len(tiles))
    return (f"tile measurements (weakstil.tilestats, in worker processes beside the encoder; not in the rows "
            f"below): {ms:.2f} ms/tile CPU on one core = {1e3 / ms:.0f} tiles/s per process")


DEFAULT_ENCODERS = ("small-cnn", "resnet50-l3")


def tile_caps(spec: str, encoders: list[str]) -> dict[str, int]:
    """``--max-tiles``: ``NAME=N,...`` per encoder, or one ``N`` for every encoder (a plain number was
    silently ignored: every measurement ran on all the slide's tiles, minutes instead of seconds)."""
    caps: dict[str, int] = {}
    for part in [p.strip() for p in spec.split(",") if p.strip()]:
        name, eq, n = part.rpartition("=")
        if not n.isdigit() or (eq and name not in {*encoders, *DEFAULT_ENCODERS}):  # the default names both
            raise SystemExit(f"error: --max-tiles {spec!r}: {part!r} is not N or ENCODER=N for an encoder of "
                             f"--encoders ({', '.join(encoders)}). Fix: e.g. --max-tiles 64 or small-cnn=1024")
        caps.update({name: int(n)} if eq else {e: int(n) for e in encoders})
    return caps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slide", type=Path, default=None, help="default: a synthetic 8000 x 8000 px SVS")
    ap.add_argument("--cache-dir", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "weakstil-bench")
    ap.add_argument("--encoders", default=",".join(DEFAULT_ENCODERS))
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--min-tiles", type=int, default=0, help="cycle a small slide's tiles up to this many")
    ap.add_argument("--max-tiles", default="small-cnn=1024,resnet50-l3=192",
                    help="tiles per measurement: N for every encoder, or ENCODER=N,... (ResNet-50 on 2 CPUs "
                         "runs ~15 tiles/s)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    encoders = [e.strip() for e in args.encoders.split(",") if e.strip()]
    caps = tile_caps(args.max_tiles, encoders)

    import torch

    from weakstil import __version__
    from weakstil.decode.batches import close_shared_pool
    from weakstil.runtime import cpu_count
    from weakstil.decode.readers import plan_reader
    from weakstil.slide import Slide
    from weakstil.tiles import TilingParams, find_tiles

    load0 = os.getloadavg()
    cpus = cpu_count()
    capacity = parallel_capacity()
    slide_path = args.slide or default_slide(args.cache_dir)
    params = TilingParams()
    out = [f"command: {' '.join([Path(sys.executable).name] + sys.argv)}",
           f"weakstil {__version__}, torch {torch.__version__}, python {platform.python_version()}, "
           f"{cpus} CPU(s) ({platform.processor() or platform.machine()}), parallel capacity of 2 CPUs "
           f"{capacity:.2f} (2.0 = two real cores)", ""]
    with Slide.open(slide_path) as slide, contextlib.ExitStack() as stack:
        stack.callback(close_shared_pool)
        coords0 = find_tiles(slide, params).coords
        spec = plan_reader(slide, params.mpp, params.tile_px)
        out.append(f"slide {slide_path.name}: {slide.dimensions[0]} x {slide.dimensions[1]} px at {slide.mpp:.3g} "
                   f"µm/px, {len(coords0)} tissue tiles; read path {spec.describe()}")
        out.append(tile_stats_line(slide, coords0, params))
        out.append("")
        for name in encoders:
            coords = coords0
            if args.min_tiles and len(coords) < args.min_tiles:
                coords = np.concatenate([coords] * -(-args.min_tiles // len(coords)))
            cap = int(caps.get(name, 0))
            if cap:
                coords = coords[:cap]
            t0 = time.perf_counter()
            try:
                out += bench_encoder(name, args, slide, spec, coords, cpus, coords0)
            except Exception as exc:  # print what we have for the other encoder
                import traceback

                traceback.print_exc()
                out.append(f"### {name}: failed ({type(exc).__name__}: {exc})")
            out.append(f"({name}: {time.perf_counter() - t0:.0f} s)")
            out.append("")
    out.append(f"1-min load average {load0[0]:.2f} before, {os.getloadavg()[0]:.2f} after (other processes share "
               "the CPUs when it exceeds ~0.3: re-run on a quiet machine for the targets)")
    print("\n".join(out))


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
