"""One-shot GPU check of embedding throughput: CPU decode workers vs nvJPEG, ResNet-50 and ViT-S/16.

    PYTHONPATH=. python3 benchmarks/gpu_check.py [--out DIR] [--budget-s 240]
    PYTHONPATH=. python3 benchmarks/gpu_check.py --device cpu --quick      # smoke test of this script

It writes two Aperio-like synthetic SVS (RGB JPEG tiles with JPEGTables, H&E-like texture) big
enough for >= 15,000 tissue tiles of 224 px at 0.5 µm/px: a 20x (0.5 µm/px) and a 40x (0.25 µm/px)
one, and prints (and writes to ``OUT/gpu_check.md``) a markdown table per slide and encoder
(timm ``resnet50`` and ``vit_small_patch16_224``, random init, 224 px, bf16 autocast, channels-last):

* decode-only tiles/s: CPU decode workers (1, half and all cores; scaling = all / (cores x one))
  and the GPU (nvJPEG via ``torchvision.io.decode_jpeg``, crop/resize on the GPU)
* model-only tiles/s (normalised batches already on the GPU)
* end-to-end tiles/s with CPU decoding and with GPU decoding, and the CPU cores each used
* the wall time of ``embed_slide`` on the 15,000-tile slide (tissue detection and HDF5 included)
* parity: cosine of features from GPU-decoded tiles vs OpenSlide-read tiles (same fp32 model), on
  the CMU slide (a real Aperio file), both synthetic slides and a YCbCr one; and bf16 vs fp32

Every section runs in try/except (its traceback is printed, the rest goes on) under a global time
budget. Targets (issue 18, one H100/H200, 16 CPUs): >= 10,000 tiles/s end to end for ResNet-50 bf16
from the 20x SVS; the 15,000-tile slide in < 2 s; CPU decoding scaling >= 0.8 x cores.
Needs torch (CUDA), torchvision, timm, numpy, Pillow, tifffile, h5py, scikit-image, openslide-python +
openslide-bin and simplejpeg (``benchmarks/gpu_run.sh`` installs the last three from wheels).
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

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
CMU = ROOT / "tests" / "data" / "CMU-1-Small-Region.svs"
T0 = time.perf_counter()
BUDGET_S = 240.0
LINES: list[str] = []
OUT: Path | None = None


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def emit(line: str = "") -> None:
    """A line of the report: printed now and rewritten to OUT/gpu_check.md (partial results survive)."""
    print(line, flush=True)
    LINES.append(line)
    if OUT is not None:
        (OUT / "gpu_check.md").write_text("\n".join(LINES) + "\n")


def left() -> float:
    return BUDGET_S - (time.perf_counter() - T0)


@contextlib.contextmanager
def section(name: str, need_s: float = 5.0):
    """Run a section if the budget allows; print its traceback on failure and go on."""
    if left() < need_s:
        emit(f"- {name}: skipped (time budget: {left():.0f} s left)")
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
        log(f"{name} done in {time.perf_counter() - t:.1f} s")


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of these processes so far (Linux /proc)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError, ValueError):
            pass
    return total


def our_pids() -> list[int]:
    from weakstil.decode import batches

    pool = batches._POOL
    return [os.getpid()] + ([p.pid for p in pool._procs] if pool is not None else [])


def run_timed(fn) -> tuple[float, float]:
    """``(seconds, CPU cores used)`` of ``fn()`` (this process and the decode workers)."""
    pids = our_pids()
    c0, t0 = cpu_seconds(pids), time.perf_counter()
    fn()
    sync()
    dt = time.perf_counter() - t0
    pids = sorted(set(pids) | set(our_pids()))
    return dt, (cpu_seconds(pids) - c0) / dt if dt > 0 else float("nan")


def make_encoder(kind: str, device: str, precision: str = "bf16", model=None):
    """A :class:`weakstil.encoders.factory.Encoder` around a random-init timm model (shared if given)."""
    import timm
    import torch

    from weakstil.encoders.cards import EncoderCard
    from weakstil.encoders.factory import Encoder
    from weakstil.encoders.transforms import TileTransform

    if model is None:
        torch.manual_seed(0)
        model = timm.create_model(kind, pretrained=False, num_classes=0)
        model = model.eval().to(device).to(memory_format=torch.channels_last)
    card = EncoderCard(name=kind, source="timm", model=kind, input_px=224, mpp=0.5, mean=(0.485, 0.456, 0.406),
                       std=(0.229, 0.224, 0.225), embed_dim=int(model.num_features), precision=precision)
    return Encoder(card=card, model=model, device=torch.device(device), weights_sha256="random",
                   weights_source="random init", transform=TileTransform(224, card.mean, card.std), seed=0)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


def fmt(v: float, digits: int = 0) -> str:
    return "n/a" if v is None or v != v else f"{v:,.{digits}f}"


def main() -> None:
    global BUDGET_S, OUT
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (the check) or cpu (smoke test of this script)")
    ap.add_argument("--quick", action="store_true", help="tiny slides and runs (smoke test)")
    ap.add_argument("--out", type=Path, default=Path(os.environ.get("OUT") or "gpu_check_out"))
    ap.add_argument("--budget-s", type=float, default=BUDGET_S)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--models", default="resnet50,vit_small_patch16_224")
    ap.add_argument("--seconds", type=float, default=2.5, help="timing window of model-only runs")
    args = ap.parse_args()
    BUDGET_S = args.budget_s
    OUT = args.out
    OUT.mkdir(parents=True, exist_ok=True)

    import torch

    dev = args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: this check needs a GPU (or --device cpu --quick to test the script)", file=sys.stderr)
        sys.exit(2)
    quick = args.quick
    bs = 4 if quick else args.batch_size
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    from weakstil.decode.plan import available_cpus

    cpus = available_cpus()
    gpu = torch.cuda.get_device_name(0) if dev.startswith("cuda") else "none (CPU smoke run)"
    versions = {}
    for mod in ("torchvision", "timm", "tifffile", "simplejpeg", "openslide", "PIL"):
        try:
            versions[mod] = getattr(__import__(mod), "__version__", "?")
        except Exception as exc:
            versions[mod] = f"missing ({type(exc).__name__})"
    emit(f"# gpu_check: {gpu}; torch {torch.__version__}; " + "; ".join(f"{k} {v}" for k, v in versions.items())
         + f"; {cpus} CPUs; python {platform.python_version()}; batch {bs}; bf16 autocast; channels-last")
    emit("")

    from weakstil.decode.batches import ThreadPlanner, close_shared_pool, shared_pool
    from weakstil.decode.gpu import GpuTileBatches
    from weakstil.decode.readers import plan_reader
    from weakstil.decode.svswriter import write_textured_svs
    from weakstil.embed import embed_batches
    from weakstil.slide import Slide
    from weakstil.tiles import TilingParams, find_tiles

    work = Path(tempfile.mkdtemp(prefix="weakstil-gpu-check-", dir=os.environ.get("TMPDIR")))
    params = TilingParams()
    slides: dict[str, dict] = {}

    # -- slides --------------------------------------------------------------------------
    # 15,000 tiles of (224 px x 0.5 µm)^2 on ~80 % of a square slide: 32,000 px at 0.5 µm/px
    sizes = {"20x": (0.5, 1400 if quick else 32000), "40x": (0.25, 2800 if quick else 64000)}
    for name, (mpp, side) in sizes.items():
        with section(f"write the {name} SVS ({side} px at {mpp} µm/px)", 20 if quick else 60) as ok:
            if ok:
                t = time.perf_counter()
                path, _ = write_textured_svs(work / f"synthetic-{name}.svs", side, side, mpp, seed=1)
                t_write = time.perf_counter() - t
                t = time.perf_counter()
                with Slide.open(path) as s:
                    coords = find_tiles(s, params).coords
                    spec = plan_reader(s, params.mpp, params.tile_px)
                slides[name] = {"path": path, "coords": coords, "spec": spec}
                emit(f"- {name}: {path.stat().st_size / 1e6:.0f} MB written in {t_write:.1f} s; {len(coords):,} tissue "
                     f"tiles (found in {time.perf_counter() - t:.1f} s); read path {spec.describe()}")
    emit("")

    results: dict[tuple, dict] = {}
    n_cap = 8 if quick else 8192

    # -- decode-only ---------------------------------------------------------------------
    worker_counts = sorted({1, max(1, cpus // 2), cpus}) if not quick else sorted({1, min(2, cpus)})
    for name, sl in slides.items():
        coords, spec = sl["coords"], sl["spec"]
        for w in worker_counts:
            with section(f"{name}: decode-only, {w} CPU worker(s)", 10) as ok:
                if ok:
                    n = min(len(coords), (16 if quick else 1024) * w)
                    n = max(bs, n // bs * bs)
                    c = coords[:n]
                    pool = shared_pool(w)
                    for _s, b in pool.batches(spec, coords[:bs * 2], bs):  # start the workers
                        pass

                    def dec_cpu() -> None:
                        for _s, b in pool.batches(spec, c, bs):
                            b[0, 0, 0, 0]
                    dt, cores = run_timed(dec_cpu)
                    sl.setdefault("decode_cpu", {})[w] = (n / dt, cores)
                    log(f"{name}: {w} worker(s): {n / dt:,.0f} tiles/s, {cores:.1f} cores")
        close_shared_pool()
        if dev.startswith("cuda") or quick:
            with section(f"{name}: decode-only, GPU", 10) as ok:
                if ok:
                    c = coords[:min(len(coords), n_cap * 2) // bs * bs or bs]

                    def dec_gpu() -> None:
                        g = GpuTileBatches(spec.jpeg, c, 224, bs, dev)
                        for _s, b in g:
                            pass
                        sl["gpu_tiles_decoded"] = g.tiles_decoded
                        g.close()
                    dec_gpu()  # warm-up: nvJPEG handles, kernels
                    dt, cores = run_timed(dec_gpu)
                    sl["decode_gpu"] = (len(c) / dt, cores)
                    log(f"{name}: GPU decode {len(c) / dt:,.0f} tiles/s ({sl['gpu_tiles_decoded']} JPEG tiles)")

    # -- models ----------------------------------------------------------------------------
    encoders = {}
    for kind in [m.strip() for m in args.models.split(",") if m.strip()]:
        with section(f"{kind}: model-only", 15) as ok:
            if ok:
                enc = make_encoder(kind, dev)
                x = enc.transform(torch.randint(0, 256, (bs, 224, 224, 3), dtype=torch.uint8, device=dev))
                with torch.inference_mode():
                    enc.forward(x)
                    sync()
                    k, t = 0, time.perf_counter()
                    while time.perf_counter() - t < (0.3 if quick else args.seconds):
                        enc.forward(x)
                        k += 1
                    sync()
                encoders[kind] = enc
                results[("model", kind)] = {"rate": k * bs / (time.perf_counter() - t)}
                log(f"{kind}: model-only {k * bs / (time.perf_counter() - t):,.0f} tiles/s")
                del x

    # -- end to end ------------------------------------------------------------------------
    for name, sl in slides.items():
        coords, spec = sl["coords"], sl["spec"]
        c = coords[:max(bs, min(len(coords), n_cap) // bs * bs)]
        for kind, enc in encoders.items():
            for how in ("gpu", "cpu"):
                if how == "gpu" and not (dev.startswith("cuda") or quick):
                    continue
                with section(f"{name} {kind}: end to end, {how} decode", 15) as ok:
                    if ok:
                        w = max(1, cpus - 1)

                        def e2e() -> None:
                            if how == "gpu":
                                g = GpuTileBatches(spec.jpeg, c, 224, bs, dev)
                                embed_batches(enc, iter(g), lambda s, f: None)
                                g.close()
                            else:
                                embed_batches(enc, shared_pool(w).batches(spec, c, bs, pin_memory=dev != "cpu"),
                                              lambda s, f: None)
                        e2e()  # warm-up (workers, cuDNN autotuning)
                        dt, cores = run_timed(e2e)
                        results[(name, kind, how)] = {"rate": len(c) / dt, "cores": cores, "workers": w}
                        log(f"{name} {kind} {how}: {len(c) / dt:,.0f} tiles/s, {cores:.1f} cores")

    # -- wall time of a whole slide --------------------------------------------------------
    walls = []
    if "20x" in slides and "resnet50" in encoders:
        from weakstil.embed import embed_slide, read_features

        enc = encoders["resnet50"]
        planner = ThreadPlanner(enc, bs, workers=1 if quick else None, threads=cpus if quick else None)
        runs = [("gpu decode, first slide of the run", "gpu"), ("gpu decode, next slide", "gpu"),
                ("cpu decode (warm pool)", "cpu")]
        for label, decode in runs[:1] if quick else runs:
            if decode == "gpu" and not (dev.startswith("cuda") or quick):
                continue
            with section(f"embed_slide 20x resnet50 ({label})", 20) as ok:
                if ok:
                    t = time.perf_counter()
                    r = embed_slide(slides["20x"]["path"], enc, work / f"wall-{decode}.h5", batch_size=bs,
                                    decode=decode, planner=planner, overwrite=True)
                    dt = time.perf_counter() - t
                    import json

                    rec = json.loads(read_features(r.path)["decode"])
                    walls.append((label, r.n_tiles, dt, rec.get("path"), rec.get("gpu")))
                    log(f"embed_slide ({label}): {r.n_tiles} tiles in {dt:.2f} s via {rec.get('path')}")
    close_shared_pool()

    # -- parity ----------------------------------------------------------------------------
    parity = []
    if "resnet50" in encoders:
        enc = encoders["resnet50"]
        fp32 = make_encoder("resnet50", dev, precision="fp32", model=enc.model)
        cases = [("CMU-1-Small-Region.svs (real Aperio, RGB JPEG)", CMU)]
        cases += [(f"synthetic {k} (RGB JPEG + tables)", v["path"]) for k, v in slides.items()]
        with section("write a YCbCr 20x SVS for parity", 10) as ok:
            if ok:
                side = 1200 if quick else 3000
                p, _ = write_textured_svs(work / "ycbcr.svs", side, side, 0.5, colourspace="ycbcr", seed=2)
                cases.append(("synthetic 20x (YCbCr 4:2:0 JPEG)", p))
        for label, path in cases:
            with section(f"parity: {label}", 10) as ok:
                if ok:
                    with Slide.open(path) as s:
                        co = find_tiles(s, params).coords
                        co = co[np.linspace(0, len(co) - 1, min(len(co), 8 if quick else 512)).astype(int)]
                        spec = plan_reader(s, params.mpp, params.tile_px)
                        ref_tiles = np.stack([s.read_region(int(x), int(y), 224, 0.5) for x, y in co])
                    g = GpuTileBatches(spec.jpeg, co, 224, bs, dev)
                    gpu_tiles = torch.cat([b for _s, b in g]).cpu().numpy()
                    g.close()
                    f_ref, f_gpu = fp32.embed(ref_tiles), fp32.embed(gpu_tiles)
                    f_bf16 = enc.embed(gpu_tiles)
                    cos, cos16 = cosine(f_gpu, f_ref), cosine(f_bf16, f_ref)
                    px = np.abs(gpu_tiles.astype(np.float32) - ref_tiles).mean()
                    parity.append((label, len(co), px, cos.min(), cos.mean(), cos16.min()))
                    log(f"parity {label}: pixels {px:.2f}, cosine min {cos.min():.5f}")

    # -- report ----------------------------------------------------------------------------
    emit("")
    emit(f"## Throughput (tiles/s; {cpus} CPUs; batch {bs}; 224 px at 0.5 µm/px)")
    emit("")
    emit("| slide | decode-only CPU workers (tiles/s @ workers) | CPU scaling (all / cores x one) | decode-only GPU |")
    emit("|---|---|---:|---:|")
    for name, sl in slides.items():
        dc = sl.get("decode_cpu", {})
        cells = ", ".join(f"{r:,.0f} @ {w} ({c:.1f} cores)" for w, (r, c) in sorted(dc.items()))
        scale = (dc[max(dc)][0] / (max(dc) * dc[min(dc)][0])) if len(dc) > 1 and min(dc) == 1 else float("nan")
        g = sl.get("decode_gpu")
        emit(f"| {name} | {cells or 'n/a'} | {fmt(scale, 2)} | "
             f"{fmt(g[0]) if g else 'n/a'}{f' ({g[1]:.1f} cores)' if g else ''} |")
    emit("")
    emit("| slide | model | model-only | end-to-end, CPU decode (cores used) | end-to-end, GPU decode (cores used) |")
    emit("|---|---|---:|---:|---:|")
    for name in slides:
        for kind in encoders:
            m = results.get(("model", kind), {}).get("rate", float("nan"))
            cells = []
            for how in ("cpu", "gpu"):
                r = results.get((name, kind, how))
                cells.append(f"{fmt(r['rate'])} ({r['cores']:.1f})" if r else "n/a")
            emit(f"| {name} | {kind} | {fmt(m)} | {cells[0]} | {cells[1]} |")
    emit("")
    if walls:
        emit("| embed_slide, 20x slide, resnet50 bf16 | tiles | wall s | tiles/s | path |")
        emit("|---|---:|---:|---:|---|")
        for label, n, dt, path, why in walls:
            emit(f"| {label} | {n:,} | {dt:.2f} | {n / dt:,.0f} | {path}{f' ({why})' if why else ''} |")
        emit("")
    if parity:
        emit("| parity: GPU-decoded vs OpenSlide tiles, resnet50 | tiles | mean abs pixel diff | cosine min (fp32) "
             "| cosine mean (fp32) | cosine min (bf16 vs fp32 OpenSlide) |")
        emit("|---|---:|---:|---:|---:|---:|")
        for label, n, px, cmin, cmean, c16 in parity:
            emit(f"| {label} | {n} | {px:.3f} | {cmin:.5f} | {cmean:.5f} | {c16:.5f} |")
        emit("")
    emit(f"Targets: >= 10,000 tiles/s end to end (20x, resnet50, GPU decode); 15,000-tile slide < 2 s; CPU scaling "
         f">= 0.8; cosine >= 0.999. Total {time.perf_counter() - T0:.0f} s (budget {BUDGET_S:.0f} s).")
    import shutil

    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
