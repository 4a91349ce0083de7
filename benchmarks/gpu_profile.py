"""Where the end-to-end embedding time goes on a GPU machine: a per-stage breakdown and variants.

    PYTHONPATH=. python3 benchmarks/gpu_profile.py [--out DIR] [--budget-s 120]
    PYTHONPATH=. python3 benchmarks/gpu_profile.py --device cpu --quick   # smoke test of this script
    bash benchmarks/gpu_run.sh --profile                                   # on the device machine

For ResNet-50 (timm, random init, bf16 autocast, channels-last, 224 px) on a 20x Aperio-like SVS
with YCbCr JPEG tiles and one with RGB tiles (GPU decoding: nvJPEG, the RGB tiles through its
stored planes, ``weakstil.decode.nvjpeg_raw``; CPU decode workers on the RGB slide), it prints, per run, tiles/s over the whole run and in steady state
(after the first batches), the CPU cores used, and per batch (ms):

* consumer (``weakstil.embed.embed_batches``): ``wait`` for the next batch, ``h2d`` (issuing the
  host->device copy), ``launch`` (issuing transform + forward + readback), ``rb_wait`` (blocked on
  the readback of the batch ``lag`` back: the GPU is the limit when this is large), ``sink``;
  on the device (CUDA events): ``gpu_tf`` (transform) and ``gpu_fwd`` (forward);
* GPU-decode producer (``GpuTileBatches``): ``layout``, ``read`` (compressed tiles, reader thread),
  ``decode`` (the decode_jpeg call), ``assemble``, ``put_wait`` (producer ahead) and JPEG tiles
  read per batch;
* CPU decode pool: worker CPU ms per output tile, JPEG tiles decoded per output tile (duplicates
  at task boundaries), the parent's ``wait``, ring slots, band, whether the ring is page-locked
  and what creating it cost;

with variants: readback lag 0 (the old synchronous loop) vs 2, the encoder on the default stream
vs its own, GPU-decode prefetch 0 (decode inline on the consumer stream) / 2 / 4, batch 256 vs 512,
CPU decode with one task per batch (band 1, the old split) vs column-strip bands, 15 vs 12 workers,
1/8/16 workers decode-only; and embed_slide wall time split into tissue detection and embedding.
Everything is written to ``OUT/gpu_profile.md`` as it comes (partial results survive a timeout).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import sys
import tempfile
import time
import traceback
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
for p in (str(ROOT), str(ROOT / "benchmarks")):
    if p not in sys.path:
        sys.path.insert(0, p)
T0 = time.perf_counter()
BUDGET_S = 120.0
LINES: list[str] = []
OUT: Path | None = None


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def emit(line: str = "") -> None:
    print(line, flush=True)
    LINES.append(line)
    if OUT is not None:
        (OUT / "gpu_profile.md").write_text("\n".join(LINES) + "\n")


def left() -> float:
    return BUDGET_S - (time.perf_counter() - T0)


@contextlib.contextmanager
def section(name: str, need_s: float):
    if left() < need_s:
        emit(f"- {name}: skipped ({left():.0f} s of budget left)")
        yield False
        return
    t = time.perf_counter()
    log(f"{name} ...")
    try:
        yield True
    except Exception:
        traceback.print_exc()
        emit(f"- {name}: FAILED ({traceback.format_exc().strip().splitlines()[-1]})")
    finally:
        log(f"{name}: {time.perf_counter() - t:.1f} s")


class Window:
    """Pass batches through for up to ``seconds``; remember when each came (steady-state rate)."""

    def __init__(self, batches, seconds: float):
        self.batches, self.seconds = batches, seconds
        self.stamps: list[tuple[float, int]] = []

    def __iter__(self):
        t0 = time.perf_counter()
        self.stamps = [(t0, 0)]
        it = iter(self.batches)
        try:
            for start, b in it:
                yield start, b
                self.stamps.append((time.perf_counter(), len(b)))
                if time.perf_counter() - t0 > self.seconds:
                    break
        finally:
            close = getattr(it, "close", None)
            if close is not None:
                close()

    def steady(self) -> float:
        """Tiles/s after the first few batches (start-up excluded)."""
        k = min(3, max(0, len(self.stamps) // 4))
        if len(self.stamps) - k < 3:
            k = 0
        tiles = sum(n for _, n in self.stamps[k + 1:])
        dt = self.stamps[-1][0] - self.stamps[k][0]
        return tiles / dt if dt > 0 else float("nan")


def per_batch(tm: dict, keys: list[tuple[str, str]], n: float) -> str:
    return ", ".join(f"{label} {1e3 * tm[k] / n:.1f}" for k, label in keys if k in tm)


def main() -> None:  # noqa: C901 - one straight script
    global BUDGET_S, OUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--quick", action="store_true", help="tiny slides and runs (smoke test)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu_profile_out"))
    ap.add_argument("--budget-s", type=float, default=BUDGET_S)
    ap.add_argument("--seconds", type=float, default=2.0, help="longest window of one run")
    ap.add_argument("--model", default="resnet50")
    args = ap.parse_args()
    BUDGET_S, OUT = args.budget_s, args.out

    import torch

    from gpu_check import cpu_seconds, make_encoder, our_pids, sync
    from weakstil.decode.batches import close_shared_pool, shared_pool
    from weakstil.decode.gpu import GpuTileBatches
    from weakstil.decode.readers import plan_reader
    from weakstil.decode.svswriter import write_textured_svs
    from weakstil.decode.workers import DecodeStats
    from weakstil.embed import embed_batches
    from weakstil.runtime import cpu_count
    from weakstil.slide import Slide
    from weakstil.tiles import TilingParams, find_tiles

    dev, quick = args.device, args.quick
    if dev.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device (use --device cpu --quick to test the script)", file=sys.stderr)
        sys.exit(2)
    OUT.mkdir(parents=True, exist_ok=True)  # after the device check: no empty --out folder left behind
    torch.backends.cudnn.benchmark = True
    cuda = dev.startswith("cuda")
    cpus = cpu_count()
    bs = 4 if quick else 256
    big = 8 if quick else 512
    window = 0.3 if quick else args.seconds
    side = 1400 if quick else 32000
    wmax = min(cpus, 2) if quick else cpus  # decode workers: all CPUs
    wmid = max(1, wmax // 2)
    w_e2e = max(1, wmax - 1)
    w_less = max(1, (wmax * 3) // 4)
    emit(f"# gpu_profile: {torch.cuda.get_device_name(0) if cuda else 'CPU smoke run'}; torch {torch.__version__}; "
         f"{cpus} CPUs; python {platform.python_version()}; {args.model} bf16, batch {bs}")
    emit("")
    work = Path(tempfile.mkdtemp(prefix="weakstil-gpu-profile-", dir=os.environ.get("TMPDIR")))
    params = TilingParams()
    slides: dict[str, dict] = {}
    for name, cs in (("ycbcr", "ycbcr"), ("rgb", "rgb")):
        with section(f"write the 20x {name} SVS", 12) as ok:
            if ok:
                path, _ = write_textured_svs(work / f"20x-{name}.svs", side, side, 0.5, seed=1, colourspace=cs)
                t = time.perf_counter()
                with Slide.open(path) as s:
                    coords = find_tiles(s, params).coords
                    spec = plan_reader(s, params.mpp, params.tile_px)
                slides[name] = {"path": path, "coords": coords, "spec": spec}
                emit(f"- 20x {name}: {len(coords):,} tiles (tissue found in {time.perf_counter() - t:.2f} s)")

    enc = None
    with section(f"build {args.model}", 10) as ok:
        if ok:
            enc = make_encoder(args.model, dev)
            x = torch.randint(0, 256, (big, 224, 224, 3), dtype=torch.uint8, device=dev)
            with torch.inference_mode():
                for b in (bs, big):  # cuDNN picks its kernels for both batch sizes now
                    enc.forward(enc.transform(x[:b]))
            sync()
    if enc is None:
        return
    rows: list[str] = []

    def report(label: str, n_tiles: int, dt: float, steady: float, cores: float, tm: dict | None = None,
               prod: dict | None = None, stats: DecodeStats | None = None, nb: int = 0) -> None:
        line = f"| {label} | {n_tiles / dt:,.0f} | {steady:,.0f} | {cores:.1f} |"
        parts = []
        if tm:
            nbt = max(1.0, tm.get("batches", 1.0))
            parts.append(per_batch(tm, [("wait", "wait"), ("h2d", "h2d"), ("launch", "launch"),
                                        ("readback_wait", "rb_wait"), ("sink", "sink"),
                                        ("gpu_transform", "gpu_tf"), ("gpu_forward", "gpu_fwd")], nbt))
        if prod:
            nbp = max(1, nb)
            parts.append("producer " + per_batch(prod, [("layout", "layout"), ("read", "read"), ("decode", "decode"),
                                                        ("assemble", "assemble"), ("put_wait", "put_wait"),
                                                        ("get_wait", "get_wait")], nbp)
                         + f", JPEG tiles read {prod.get('tiles_read', 0) / nbp:.0f}/batch")
        if stats is not None and stats.tiles:
            parts.append(f"pool: worker {1e3 * stats.decode_seconds / stats.tiles:.2f} ms CPU/tile, "
                         f"{stats.jpeg_tiles_decoded / stats.tiles:.2f} JPEG decodes/tile, parent wait "
                         f"{1e3 * stats.wait_seconds / max(1, stats.batches):.1f} ms/batch, band {stats.band}, "
                         f"{stats.ring_slots} slots, pinned {stats.pinned}, ring {stats.ring_seconds:.2f} s")
        rows.append(line + " " + "; ".join(parts) + " |")
        emit(rows[-1])
        log(f"{label}: {n_tiles / dt:,.0f} tiles/s (steady {steady:,.0f}), {cores:.1f} cores")

    def timed(fn):
        pids = our_pids()
        c0, t0 = cpu_seconds(pids), time.perf_counter()
        fn()
        sync()
        dt = time.perf_counter() - t0
        pids = sorted(set(pids) | set(our_pids()))
        return dt, (cpu_seconds(pids) - c0) / dt if dt > 0 else float("nan")

    emit("")
    emit("| run | tiles/s | steady tiles/s | cores | per batch, ms (consumer; GPU; producer / pool) |")
    emit("|---|---:|---:|---:|---|")

    # -- the loop alone: a batch already on the device, fed again and again --------------------
    def model_loop(lag: int, side_stream: bool, b: int = bs) -> None:
        with section(f"model-only through embed_batches (lag {lag}, own stream {side_stream})", 4) as ok:
            if ok:
                x = torch.randint(0, 256, (b, 224, 224, 3), dtype=torch.uint8, device=dev)
                n_b = max(3, int(window * 15470 / b)) if cuda else 3
                tm: dict = {}
                win = Window(((i * b, x) for i in range(n_b)), window)
                dt, cores = timed(lambda: embed_batches(enc, win, lambda s, f: None, lag=lag,
                                                        side_stream=side_stream, timings=tm))
                report(f"model only, loop lag {lag}{'' if side_stream else ', default stream'}", int(tm["tiles"]), dt,
                       win.steady(), cores, tm)

    # -- GPU decoding (YCbCr slide) ------------------------------------------------------------
    def gpu_e2e(label: str, lag: int = 2, side_stream: bool = True, prefetch: int = 2, b: int = bs,
                decode_only: bool = False, slide: str = "ycbcr") -> None:
        if slide not in slides:
            return
        sl = slides[slide]
        label = f"{label}{', RGB tiles (nvJPEG stored planes)' if slide == 'rgb' else ''}"
        with section(f"GPU decode: {label}", 4) as ok:
            if ok:
                tm: dict = {}
                prod: dict = {}
                g = GpuTileBatches(sl["spec"].jpeg, sl["coords"], 224, b, dev, prefetch=prefetch, timings=prod)
                win = Window(g, window)
                if decode_only:
                    dt, cores = timed(lambda: [None for _ in win])
                    n_tiles = sum(n for _, n in win.stamps)
                    tm = None
                else:
                    dt, cores = timed(lambda: embed_batches(enc, win, lambda s, f: None, lag=lag,
                                                            side_stream=side_stream, timings=tm))
                    n_tiles = int(tm["tiles"])
                g.close()
                report(f"GPU decode, {label}", n_tiles, dt, win.steady(), cores, tm, prod, nb=len(win.stamps) - 1)

    # -- CPU decode workers (RGB slide) --------------------------------------------------------
    def cpu_run(label: str, workers: int, band: int | None = None, lag: int = 2, side_stream: bool = True,
                b: int = bs, decode_only: bool = False) -> None:
        if "rgb" not in slides:
            return
        sl = slides["rgb"]
        with section(f"CPU decode: {label}", 5) as ok:
            if ok:
                pool = shared_pool(workers)
                if not pool.alive():  # start the processes outside the timing
                    for _ in pool.batches(sl["spec"], sl["coords"][:b], b, pin_memory=cuda):
                        pass
                stats = DecodeStats()
                tm: dict = {}
                win = Window(pool.batches(sl["spec"], sl["coords"], b, pin_memory=cuda, stats=stats, band=band),
                             window)
                if decode_only:
                    dt, cores = timed(lambda: [blk[0, 0, 0, 0] for _, blk in win])
                    n_tiles = sum(n for _, n in win.stamps)
                    tm = None
                else:
                    dt, cores = timed(lambda: embed_batches(enc, win, lambda s, f: None, lag=lag,
                                                            side_stream=side_stream, timings=tm))
                    n_tiles = int(tm["tiles"])
                report(f"CPU decode, {label}", n_tiles, dt, win.steady(), cores, tm, stats=stats)

    def wall(name: str, decode: str, workers: int) -> None:
        if name not in slides:
            return
        with section(f"embed_slide {name} ({decode} decode)", 6) as ok:
            if ok:
                import json

                from weakstil.decode.batches import ThreadPlanner
                from weakstil.embed import embed_slide
                from weakstil.files import FeaturesFile

                with Slide.open(slides[name]["path"]) as s:
                    t = time.perf_counter()
                    find_tiles(s, params)
                    t_tissue = time.perf_counter() - t
                planner = ThreadPlanner(enc, bs, workers=workers, threads=1 if quick else None)
                t = time.perf_counter()
                r = embed_slide(slides[name]["path"], enc, work / f"wall-{name}.h5", batch_size=bs, decode=decode,
                                planner=planner, overwrite=True)
                dt = time.perf_counter() - t
                rec = json.loads(FeaturesFile.read_header(r.path)[0]["decode"])
                emit(f"| embed_slide {name}, {decode} decode ({rec.get('path')}) | {r.n_tiles / dt:,.0f} | "
                     f"{r.n_tiles:,} tiles in {dt:.2f} s | | tissue detection alone {t_tissue:.2f} s; "
                     f"stats {rec.get('stats')} |")

    # in order of importance (the budget may run out)
    model_loop(2, True)
    model_loop(0, False)
    gpu_e2e("e2e, lag 2, own stream, prefetch 2")
    gpu_e2e("e2e, lag 2, own stream, prefetch 2", slide="rgb")
    gpu_e2e("decode only, prefetch 2", decode_only=True)
    gpu_e2e("decode only, prefetch 2", decode_only=True, slide="rgb")
    wall("rgb", "gpu", w_e2e)
    gpu_e2e("e2e, prefetch 0 (decode inline, consumer stream)", prefetch=0, slide="rgb")
    gpu_e2e("e2e, lag 0, default stream (old loop)", lag=0, side_stream=False)
    cpu_run(f"e2e {w_e2e} workers, bands, lag 2", w_e2e)
    cpu_run(f"e2e {w_e2e} workers, band 1 (old split), lag 0, default stream (old loop)", w_e2e, band=1, lag=0,
            side_stream=False)
    cpu_run(f"e2e {w_e2e} workers, band 1, lag 2", w_e2e, band=1)
    wall("ycbcr", "gpu", w_e2e)
    wall("rgb", "cpu", w_e2e)
    cpu_run(f"e2e {w_e2e} workers, batch {big}", w_e2e, b=big)
    cpu_run(f"decode only, {wmax} workers, bands", wmax, decode_only=True)
    cpu_run(f"decode only, {wmax} workers, band 1 (old split)", wmax, band=1, decode_only=True)
    gpu_e2e("e2e, lag 2, default stream", side_stream=False)
    gpu_e2e("e2e, prefetch 4", prefetch=4)
    gpu_e2e("e2e, prefetch 0 (decode inline, consumer stream)", prefetch=0)
    gpu_e2e(f"e2e, batch {big}", b=big)
    cpu_run(f"e2e {w_less} workers, bands", w_less)
    cpu_run(f"decode only, {wmid} workers, bands", wmid, decode_only=True)
    cpu_run("decode only, 1 worker", 1, decode_only=True)
    close_shared_pool()
    emit("")
    emit("Reading it: `rb_wait` large and `wait` small = GPU-bound (good); `wait` large = the producer is the "
         "limit (GPU decode: compare its `decode`/`assemble`/`read` with gpu_fwd; pool: workers' ms/tile and "
         "JPEG decodes/tile); `launch` near gpu_fwd = Python launch-bound; lag 0 vs 2 = cost of the per-batch "
         "sync; default vs own stream = implicit syncs with the legacy stream (nvJPEG); band 1 vs bands = "
         "duplicated JPEG decodes at task boundaries.")
    emit(f"Total {time.perf_counter() - T0:.0f} s (budget {BUDGET_S:.0f} s).")
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
