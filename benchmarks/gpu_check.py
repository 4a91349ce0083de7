"""One-shot GPU check of embedding throughput: CPU decode workers vs nvJPEG, ResNet-50 and ViT-S/16.

    PYTHONPATH=. python3 benchmarks/gpu_check.py [--out DIR] [--budget-s 240]
    PYTHONPATH=. python3 benchmarks/gpu_check.py --device cpu --quick      # smoke test of this script

It writes two Aperio-like synthetic SVS (RGB JPEG tiles with JPEGTables, H&E-like texture) big
enough for >= 15,000 tissue tiles of 224 px at 0.5 µm/px: a 20x (0.5 µm/px) and a 40x (0.25 µm/px)
one, and prints (and writes to ``OUT/gpu_check.md``) a markdown table per slide and encoder
(timm ``resnet50`` and ``vit_small_patch16_224``, random init, 224 px, bf16 autocast, channels-last):

* decode-only tiles/s: CPU decode workers (1, half and all cores; scaling = all / (cores x one))
  and the GPU (nvJPEG: RGB-stored tiles through its own UNCHANGED output, ``weakstil.decode.nvjpeg_raw``,
  YCbCr ones via ``torchvision.io.decode_jpeg``; crop/resize on the GPU), on the RGB and a YCbCr 20x slide
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
    """This process and all its descendants (decode workers, tile-measurement workers)."""
    seen, todo = [], [os.getpid()]
    while todo:
        pid = todo.pop()
        seen.append(pid)
        for tdir in Path(f"/proc/{pid}/task").glob("*"):
            try:
                todo.extend(int(c) for c in (tdir / "children").read_text().split())
            except (OSError, ValueError):
                pass
    return seen


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


def limited(batches, seconds: float, counter: list):
    """Pass batches through until ``seconds`` have gone by (counting tiles in ``counter[0]``)."""
    t0 = time.perf_counter()
    try:
        for start, b in batches:
            counter[0] += len(b)
            yield start, b
            if time.perf_counter() - t0 > seconds:
                break
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


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
    ap.add_argument("--seconds", type=float, default=3.0, help="timing window of each measurement")
    args = ap.parse_args()
    BUDGET_S = args.budget_s
    OUT = args.out
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("weakstil.decode").setLevel(logging.DEBUG)  # the plan, the GPU colour check

    import torch

    dev = args.device
    if dev.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: this check needs a GPU (or --device cpu --quick to test the script)", file=sys.stderr)
        sys.exit(2)
    OUT.mkdir(parents=True, exist_ok=True)  # after the device check: no empty gpu_check_out/ left behind
    quick = args.quick
    bs = 4 if quick else args.batch_size
    window = 0.5 if quick else args.seconds
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    from weakstil.runtime import cpu_count

    cpus = cpu_count()
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
    results: dict[tuple, dict] = {}
    encoders: dict[str, object] = {}
    walls: list[tuple] = []
    parity: list[tuple] = []
    on_gpu = dev.startswith("cuda") or quick  # the GPU path's code also runs on the CPU (smoke test)

    def write_slide(name: str, mpp: float, side: int, colourspace: str = "rgb") -> None:
        with section(f"write the {name} SVS ({side} px at {mpp} µm/px, {colourspace})", 20 if quick else 45) as ok:
            if ok:
                t = time.perf_counter()
                path, _ = write_textured_svs(work / f"synthetic-{name}.svs", side, side, mpp, seed=1,
                                             colourspace=colourspace)
                t_write = time.perf_counter() - t
                t = time.perf_counter()
                with Slide.open(path) as s:
                    coords = find_tiles(s, params).coords
                    spec = plan_reader(s, params.mpp, params.tile_px)
                slides[name] = {"path": path, "coords": coords, "spec": spec}
                emit(f"- {name}: {path.stat().st_size / 1e6:.0f} MB written in {t_write:.1f} s; {len(coords):,} "
                     f"tissue tiles (found in {time.perf_counter() - t:.1f} s); read path {spec.describe()}")

    def model(kind: str) -> None:
        with section(f"{kind}: build + model-only", 15) as ok:
            if ok:
                enc = make_encoder(kind, dev)
                x = enc.transform(torch.randint(0, 256, (bs, 224, 224, 3), dtype=torch.uint8, device=dev))
                with torch.inference_mode():
                    enc.forward(x)
                    sync()
                    k, t = 0, time.perf_counter()
                    while time.perf_counter() - t < window:
                        enc.forward(x)
                        k += 1
                    sync()
                encoders[kind] = enc
                results[("model", kind)] = {"rate": k * bs / (time.perf_counter() - t)}
                log(f"{kind}: model-only {results[('model', kind)]['rate']:,.0f} tiles/s")

    def e2e(name: str, kind: str, how: str) -> None:
        if name not in slides or kind not in encoders or (how == "gpu" and not on_gpu):
            return
        sl, enc = slides[name], encoders[kind]
        with section(f"{name} {kind}: end to end, {how} decode", 10) as ok:
            if ok:
                w = max(1, cpus - 1)

                def batches(c):
                    if how == "gpu":
                        return iter(GpuTileBatches(sl["spec"].jpeg, c, 224, bs, dev))
                    return shared_pool(w).batches(sl["spec"], c, bs, pin_memory=dev != "cpu")
                embed_batches(enc, batches(sl["coords"][:bs * 2]), lambda s, f: None)  # warm-up
                n = [0]
                dt, cores = run_timed(lambda: embed_batches(enc, limited(batches(sl["coords"]), window, n),
                                                            lambda s, f: None))
                results[(name, kind, how)] = {"rate": n[0] / dt, "cores": cores, "workers": w}
                log(f"{name} {kind} {how}: {n[0] / dt:,.0f} tiles/s over {n[0]} tiles, {cores:.1f} cores")

    def decode_gpu(name: str) -> None:
        if name not in slides or not on_gpu:
            return
        sl = slides[name]
        with section(f"{name}: decode-only, GPU", 10) as ok:
            if ok:
                for _ in GpuTileBatches(sl["spec"].jpeg, sl["coords"][:bs * 2], 224, bs, dev):
                    pass  # warm-up
                n = [0]
                dt, cores = run_timed(lambda: [None for _ in limited(
                    iter(GpuTileBatches(sl["spec"].jpeg, sl["coords"], 224, bs, dev)), window, n)])
                sl["decode_gpu"] = (n[0] / dt, cores)
                log(f"{name}: GPU decode {n[0] / dt:,.0f} tiles/s")

    def decode_cpu(name: str, counts: list[int]) -> None:
        if name not in slides:
            return
        sl = slides[name]
        for w in counts:
            with section(f"{name}: decode-only, {w} CPU worker(s)", 8) as ok:
                if ok:
                    pool = shared_pool(w)
                    for _ in pool.batches(sl["spec"], sl["coords"][:bs * w], bs):
                        pass  # start the workers
                    n = [0]
                    dt, cores = run_timed(lambda: [b[0, 0, 0, 0] for _, b in limited(
                        pool.batches(sl["spec"], sl["coords"], bs), window, n)])
                    sl.setdefault("decode_cpu", {})[w] = (n[0] / dt, cores)
                    log(f"{name}: {w} worker(s): {n[0] / dt:,.0f} tiles/s, {cores:.1f} cores")
        close_shared_pool()

    def wall(label: str, decode: str, tile_stats: bool = True) -> None:
        if "20x" not in slides or "resnet50" not in encoders or (decode == "gpu" and not on_gpu):
            return
        with section(f"embed_slide 20x resnet50 ({label})", 15) as ok:
            if ok:
                import json

                from weakstil.embed import embed_slide
                from weakstil.files import FeaturesFile

                enc = encoders["resnet50"]
                planner = ThreadPlanner(enc, bs, workers=1 if quick else None, threads=cpus if quick else None)
                t = time.perf_counter()
                r = embed_slide(slides["20x"]["path"], enc, work / f"wall-{decode}.h5", batch_size=bs,
                                decode=decode, planner=planner, overwrite=True, tile_stats=tile_stats)
                dt = time.perf_counter() - t
                rec = json.loads(FeaturesFile.read_header(r.path)[0]["decode"])
                plan = rec.get("plan") or {}
                how = rec.get("gpu_reading") or (f"{plan.get('workers')} decode workers, {plan.get('stats_processes')} "
                                                  f"measurement processes" if plan else None)
                walls.append((label, r.n_tiles, dt, f"{rec.get('path')}{f'; {how}' if how else ''}", rec.get("gpu")))
                log(f"embed_slide ({label}): {r.n_tiles} tiles in {dt:.2f} s via {rec.get('path')}; {how}; "
                    f"decode record {json.dumps(rec, default=str)[:600]}")

    def parity_of(label: str, path: Path) -> None:
        if "resnet50" not in encoders:
            return
        with section(f"parity: {label}", 10) as ok:
            if ok:
                enc = encoders["resnet50"]
                fp32 = make_encoder("resnet50", dev, precision="fp32", model=enc.model)
                with Slide.open(path) as s:
                    co = find_tiles(s, params).coords
                    co = co[np.linspace(0, len(co) - 1, min(len(co), 8 if quick else 512)).astype(int)]
                    spec = plan_reader(s, params.mpp, params.tile_px)
                    ref_tiles = np.stack([s.read_region(int(x), int(y), 224, 0.5) for x, y in co])
                g = GpuTileBatches(spec.jpeg, co, 224, bs, dev)
                gpu_tiles = torch.cat([b for _s, b in g]).cpu().numpy()
                g.close()
                label = f"{label}, read as {g.reading_name}"
                f_ref, f_gpu = fp32.embed(ref_tiles), fp32.embed(gpu_tiles)
                f_bf16 = enc.embed(gpu_tiles)
                cos, cos16 = cosine(f_gpu, f_ref), cosine(f_bf16, f_ref)
                px = float(np.abs(gpu_tiles.astype(np.float32) - ref_tiles).mean())
                parity.append((label, len(co), px, cos.min(), cos.mean(), cos16.min()))
                log(f"parity {label}: pixels {px:.2f}, cosine min {cos.min():.5f}")

    def probe_raw() -> None:
        """nvJPEG through ctypes (RGB-stored tiles) in a child process first: a crash there must not
        end this check (it then runs with WEAKSTIL_NVJPEG_RAW=0)."""
        if not dev.startswith("cuda"):
            return
        import subprocess

        code = ("import sys, torch; from weakstil.slide import Slide; from weakstil.tiles import TilingParams, find_tiles; "
                "from weakstil.decode.readers import plan_reader; from weakstil.decode.gpu import GpuTileBatches; "
                f"s = Slide.open(r'{CMU}'); p = TilingParams(); co = find_tiles(s, p).coords[:64]; "
                "spec = plan_reader(s, p.mpp, p.tile_px); g = GpuTileBatches(spec.jpeg, co, 224, 32, 'cuda'); "
                "n = sum(len(b) for _s, b in g); torch.cuda.synchronize(); print(g.reading_name, n, g._raw and g._raw.backend)")
        with section("probe: nvJPEG stored planes (ctypes) in a child process", 30) as ok:
            if ok:
                r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
                emit(f"- nvJPEG probe (CMU-1, 64 tiles): rc {r.returncode}; {r.stdout.strip() or r.stderr.strip()[-600:]}")
                if r.returncode != 0 or not r.stdout.startswith("raw"):
                    log(r.stderr[-3000:])
                if r.returncode != 0:
                    os.environ["WEAKSTIL_NVJPEG_RAW"] = "0"
                    emit("- the stored-planes reading is turned off for the rest of this run (WEAKSTIL_NVJPEG_RAW=0)")

    # in order of importance: the headline numbers first, in case time runs out
    probe_raw()
    all_workers = sorted({1, max(1, cpus // 2), cpus}) if not quick else sorted({1, min(2, cpus)})
    write_slide("20x", 0.5, 1400 if quick else 32000)  # >= 15,000 tissue tiles at 0.5 µm/px
    model("resnet50")
    e2e("20x", "resnet50", "gpu")
    wall("gpu decode, first slide of the run", "gpu")
    wall("gpu decode, next slide", "gpu")
    wall("gpu decode, next slide, --no-tile-stats", "gpu", tile_stats=False)
    if on_gpu and "20x" in slides:  # YCbCr tiles (what many scanners write): nvJPEG's own colour path
        write_slide("20x-ycbcr", 0.5, 1400 if quick else 32000, colourspace="ycbcr")
        e2e("20x-ycbcr", "resnet50", "gpu")
        decode_gpu("20x-ycbcr")
    decode_gpu("20x")
    decode_cpu("20x", all_workers)
    e2e("20x", "resnet50", "cpu")
    parity_of("CMU-1-Small-Region.svs (real Aperio, RGB JPEG 4:4:4)", CMU)
    if "20x" in slides:
        parity_of("synthetic 20x (RGB JPEG + tables)", slides["20x"]["path"])
    wall("cpu decode, warm pool", "cpu")
    close_shared_pool()
    for kind in [m.strip() for m in args.models.split(",") if m.strip() and m.strip() != "resnet50"]:
        model(kind)
        e2e("20x", kind, "gpu")
        e2e("20x", kind, "cpu")
    write_slide("40x", 0.25, 2800 if quick else 64000)
    decode_gpu("40x")
    decode_cpu("40x", [1, cpus] if cpus > 1 else [1])
    for kind in encoders:
        e2e("40x", kind, "gpu")
        e2e("40x", kind, "cpu")
    if "40x" in slides:
        parity_of("synthetic 40x (RGB JPEG + tables; DCT 1/2 on the CPU path)", slides["40x"]["path"])
    if "20x-ycbcr" not in slides:
        write_slide("20x-ycbcr", 0.5, 1400 if quick else 32000, colourspace="ycbcr")
        decode_gpu("20x-ycbcr")
        e2e("20x-ycbcr", "resnet50", "gpu")
    if "20x-ycbcr" in slides:
        parity_of("synthetic 20x (YCbCr 4:2:0 JPEG)", slides["20x-ycbcr"]["path"])
    close_shared_pool()

    # -- report ----------------------------------------------------------------------------
    emit("")
    emit(f"## Throughput (tiles/s; {cpus} CPUs; batch {bs}; 224 px at 0.5 µm/px; {window:g} s windows)")
    emit("")
    emit("| slide | decode-only CPU workers (tiles/s @ workers, cores used) | CPU scaling (all / cores x one) "
         "| decode-only GPU (cores used) |")
    emit("|---|---|---:|---:|")
    for name, sl in slides.items():
        dc = sl.get("decode_cpu", {})
        cells = ", ".join(f"{r:,.0f} @ {w} ({c:.1f})" for w, (r, c) in sorted(dc.items()))
        scale = (dc[max(dc)][0] / (max(dc) * dc[1][0])) if len(dc) > 1 and 1 in dc else float("nan")
        g = sl.get("decode_gpu")
        emit(f"| {name} | {cells or 'n/a'} | {fmt(scale, 2)} | {f'{g[0]:,.0f} ({g[1]:.1f})' if g else 'n/a'} |")
    emit("")
    emit(f"| slide | model | model-only | end-to-end, CPU decode, {max(1, cpus - 1)} workers (cores used) "
         "| end-to-end, GPU decode (cores used) |")
    emit("|---|---|---:|---:|---:|")
    for name in slides:
        for kind in encoders:
            cells = []
            for how in ("cpu", "gpu"):
                r = results.get((name, kind, how))
                cells.append(f"{fmt(r['rate'])} ({r['cores']:.1f})" if r else "n/a")
            if cells != ["n/a", "n/a"]:
                m = results.get(("model", kind), {}).get("rate", float("nan"))
                emit(f"| {name} | {kind} | {fmt(m)} | {cells[0]} | {cells[1]} |")
    emit("")
    if walls:
        emit("| embed_slide, 20x slide, resnet50 bf16 (tissue detection + HDF5 included) | tiles | wall s "
             "| tiles/s | path |")
        emit("|---|---:|---:|---:|---|")
        for label, n, dt, path, why in walls:
            emit(f"| {label} | {n:,} | {dt:.2f} | {n / dt:,.0f} | {path}{f' ({why})' if why else ''} |")
        emit("")
    if parity:
        emit("| parity: GPU-path vs OpenSlide tiles, resnet50 | tiles | mean abs pixel diff | cosine min (fp32) "
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
    from inputs import one_line_errors  # run as a script: benchmarks/ is on the path

    one_line_errors(main)
