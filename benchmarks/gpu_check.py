"""One-shot GPU check of the embedding pipeline (run it on a CUDA machine, under 4 minutes).

    PYTHONPATH=. python3 benchmarks/gpu_check.py [--seconds 6] [--batch-size 256]

For timm ``resnet50`` and ``vit_small_patch16_224`` (random init, 224 px) and WeakSTIL's
``small-cnn``, with bf16 autocast and channels-last, it prints a markdown table of tiles/s:

* model-only: normalised float batches already on the GPU
* encoder-only: random uint8 batches in pinned host memory -> GPU -> transform -> model
* end-to-end: tiles decoded from the CMU slide by a thread pool and embedded by
  ``weakstil.embed`` (the CMU slide's tissue tiles cycled to a few thousand tiles)

then checks the CUDA path of ``weakstil.embed.embed_slide`` (pinned ring buffers, non-blocking
copies) against the CPU: same tiles, features within bf16 tolerance (cosine similarity).
Needs torch with CUDA, timm, h5py, numpy, Pillow, and openslide-python + openslide-bin for
the slide rows (they are skipped with a message when OpenSlide is missing).
"""

from __future__ import annotations

import argparse
import os
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
#: stop timing loops early past this many seconds in total (the check must end within 4 minutes)
BUDGET_S = 180.0


def log(msg: str) -> None:
    print(f"[{time.perf_counter() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def sync() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.synchronize()


def rate(fn, n_per_call: int, seconds: float) -> float:
    """Calls ``fn`` for about ``seconds`` (after one warm-up call); returns items per second."""
    fn()
    sync()
    calls, t0 = 0, time.perf_counter()
    while True:
        fn()
        calls += 1
        sync()
        if time.perf_counter() - t0 > seconds or time.perf_counter() - T0 > BUDGET_S:
            break
    return calls * n_per_call / (time.perf_counter() - t0)


def make_encoder(kind: str, device: str):
    """An :class:`weakstil.encoders.factory.Encoder` for a timm model or a WeakSTIL card, random init."""
    import timm
    import torch

    from weakstil.encoders.cards import EncoderCard, load_card
    from weakstil.encoders.factory import Encoder
    from weakstil.encoders.transforms import TileTransform

    if kind == "small-cnn":
        card = load_card("small-cnn")
        from weakstil.encoders.factory import build_model

        model = build_model(card)
    else:
        torch.manual_seed(0)
        model = timm.create_model(kind, pretrained=False, num_classes=0)
        card = EncoderCard(name=kind, source="timm", model=kind, input_px=224, mpp=0.5,
                           mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
                           embed_dim=int(model.num_features), precision="bf16")
    card = EncoderCard.from_dict({**card.to_dict(), "precision": "bf16"})
    model = model.eval().to(device).to(memory_format=torch.channels_last)
    return Encoder(card=card, model=model, device=torch.device(device), weights_sha256="random",
                   weights_source="random init", transform=TileTransform(224, card.mean, card.std), seed=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=6.0, help="timing window per measurement")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--tiles", type=int, default=4000, help="end-to-end tiles (CMU tiles cycled)")
    ap.add_argument("--models", default="resnet50,vit_small_patch16_224,small-cnn")
    ap.add_argument("--smoke-cpu", action="store_true", help="tiny run on the CPU to test this script itself")
    args = ap.parse_args()

    import torch

    if args.smoke_cpu:
        dev, pin = "cpu", False
        args.seconds, args.batch_size, args.tiles = 0.2, 8, 64
    elif not torch.cuda.is_available():
        print("no CUDA device: this check needs a GPU (or --smoke-cpu to test the script)", file=sys.stderr)
        sys.exit(2)
    else:
        dev, pin = "cuda", True
    import timm

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    gpu = torch.cuda.get_device_name(0) if dev == "cuda" else "none (--smoke-cpu)"
    print(f"GPU {gpu}; torch {torch.__version__}; timm {timm.__version__}; "
          f"{cpus} CPUs; python {sys.version.split()[0]}; batch {args.batch_size}; bf16 autocast; channels-last")

    from weakstil.embed import embed_batches, iter_tile_batches
    from weakstil.runtime import plan_threads

    workers, threads = plan_threads(dev)
    torch.set_num_threads(threads)

    # slide tiles (optional: needs OpenSlide)
    slide = coords = None
    slide_note = ""
    try:
        from weakstil.slide import Slide
        from weakstil.tiles import TilingParams, find_tiles

        slide = Slide.open(CMU)
        c0 = find_tiles(slide, TilingParams()).coords
        coords = np.concatenate([c0] * max(1, -(-args.tiles // len(c0))))[: args.tiles]
        slide_note = f"CMU: {len(c0)} tissue tiles cycled to {len(coords)}; {workers} decode threads"
    except Exception as exc:  # OpenSlide missing or broken: report and go on
        slide_note = f"end-to-end skipped: {type(exc).__name__}: {exc}"
    log(slide_note)

    bs = args.batch_size
    d = float("nan")
    if coords is not None:
        def decode() -> None:
            for _s, b in iter_tile_batches(slide, coords, 224, 0.5, bs, workers=workers, pin_memory=pin):
                b[0, 0, 0, 0]

        d = rate(decode, len(coords), args.seconds / 2)
        log(f"decode-only {d:.0f} tiles/s")
    rows = []
    for kind in [m.strip() for m in args.models.split(",") if m.strip()]:
        try:
            enc = make_encoder(kind, dev)
            x_gpu = enc.transform(torch.randint(0, 256, (bs, 224, 224, 3), dtype=torch.uint8, device=dev))
            host = [torch.randint(0, 256, (bs, 224, 224, 3), dtype=torch.uint8) for _ in range(3)]
            if pin:
                host = [h.pin_memory() for h in host]
            state = {"i": 0}

            def model_only() -> None:
                with torch.inference_mode():
                    enc.forward(x_gpu)

            def encoder_only() -> None:
                with torch.inference_mode():
                    t = host[state["i"] % len(host)]
                    state["i"] += 1
                    enc.forward(enc.transform(t.to(dev, non_blocking=True))).cpu()

            m = rate(model_only, bs, args.seconds)
            log(f"{kind}: model-only {m:.0f} tiles/s")
            e = rate(encoder_only, bs, args.seconds)
            log(f"{kind}: encoder-only {e:.0f} tiles/s")
            a = float("nan")
            if coords is not None:
                def e2e() -> None:
                    embed_batches(enc, iter_tile_batches(slide, coords, 224, 0.5, bs, workers=workers,
                                                         pin_memory=pin), lambda s, f: None)
                a = rate(e2e, len(coords), args.seconds / 2)
                log(f"{kind}: end-to-end {a:.0f} tiles/s")
            rows.append((kind, enc.embed_dim, m, e, d, a))
            del enc, x_gpu, host
            if dev == "cuda":
                torch.cuda.empty_cache()
        except Exception:
            traceback.print_exc()
            rows.append((kind, 0, float("nan"), float("nan"), d, float("nan")))

    print()
    print(f"| encoder | dim | model-only tiles/s | encoder-only tiles/s | decode-only tiles/s | end-to-end tiles/s "
          f"| efficiency e2e/min(decode, encoder) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for kind, dim, m, e, d, a in rows:
        eff = a / min(d, e) if a == a and d == d else float("nan")
        print(f"| {kind} | {dim} | {m:.0f} | {e:.0f} | {d:.0f} | {a:.0f} | {eff:.3f} |")
    print(f"\n{slide_note}")

    # CUDA path of embed_slide vs CPU: same file layout, features agree to bf16 precision
    if slide is not None:
        try:
            from weakstil.embed import embed_slide
            from weakstil.files import FeaturesFile
            from weakstil.encoders import create_encoder

            with tempfile.TemporaryDirectory() as tmp:
                gpu = create_encoder("small-cnn", "random", dev)
                cpu = create_encoder("small-cnn", "random", "cpu")
                t = time.perf_counter()
                embed_slide(CMU, gpu, Path(tmp) / "gpu.h5", workers=workers, batch_size=64)
                tg = time.perf_counter() - t
                embed_slide(CMU, cpu, Path(tmp) / "cpu.h5", workers=workers, batch_size=64)
                fg, fc = FeaturesFile.read(Path(tmp) / "gpu.h5"), FeaturesFile.read(Path(tmp) / "cpu.h5")
                a, b = fg.features, fc.features
                cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
                same = bool((fg.coords == fc.coords).all())
                ok = same and np.isfinite(a).all() and cos.min() > 0.99
                print(f"embed_slide on {dev}: {len(a)} tiles in {tg:.2f} s, precision {fg.attrs['precision']}, "
                      f"coords identical {same}, cosine to CPU fp32 min {cos.min():.5f} mean {cos.mean():.5f}, "
                      f"max |diff| {np.abs(a - b).max():.4g} -> {'OK' if ok else 'MISMATCH'}")
        except Exception:
            traceback.print_exc()
    # CUDA path of weakstil.pretrain: a few SimCLR steps of small-cnn on the CMU tiles
    if slide is not None and time.perf_counter() - T0 < BUDGET_S:
        try:
            from weakstil.encoders import create_encoder
            from weakstil.pretrain import PretrainConfig, pretrain

            with tempfile.TemporaryDirectory() as tmp:
                t = time.perf_counter()
                r = pretrain([CMU], Path(tmp) / "ssl", PretrainConfig(steps=20, batch_size=64), device=dev)
                tr = r.card.training
                print(f"pretrain on {dev}: {r.steps} steps, batch 64, crop 128, {r.n_tiles} tiles, "
                      f"{(time.perf_counter() - t):.1f} s in total, loss {tr['loss_first']:.3f} -> "
                      f"{tr['loss_last']:.3f}, loads back: {create_encoder(Path(tmp) / 'ssl', device=dev).name}")
        except Exception:
            traceback.print_exc()
    log("done")


if __name__ == "__main__":
    main()
