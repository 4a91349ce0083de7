"""Appearance-jittered copies of the tumour-bed detector's training tiles, for its final classifier.

Why (issue 14, hunts 37d and 39a, docs/tumorbed-quality.md): a detector trained on one look reads
another look's tiles worse, and its worst beds are there. One copy of each annotated slide's tiles,
read again from the slide, made as embedding makes them (a scanner's sharpening undone,
Macenko-normalised when the features were) and then jittered per tile (H&E stain scale and shift,
brightness, contrast, a Gaussian blur on half the tiles) and embedded with the features' own encoder,
joins the *final* classifier's fit as a slide of its own with the original's tile labels. Measured on
two seeds of the three-look benchmark with the hunts' draws: across looks mean / min Dice 0.887 / 0.666 ->
0.891 / 0.684 (seed 0) and 0.864 / 0.271 -> 0.882 / 0.591 (seed 1), within a look unchanged (-0.002, +0.002);
this module's own draws (hunt 39i): 0.891 / 0.700 and 0.883 / 0.336 -- the mean's gain holds, the minimum's
depends on the draw.

Only the final fit: the leave-one-slide-out folds, and so the geometry, vetoes and gate searched on
their held-out evidence, stay on the slides as embedded. Copies in the folds too lost within the look
and moved the geometry search (a TIL-rich bed 0.932 -> 0.635); two copies were worse than one.

A slide that cannot be read (moved since it was embedded) or an encoder that cannot be rebuilt is
warned about by name and recorded in model.json; the detector then trains without that copy.
"""

from __future__ import annotations

import logging
import time
import zlib
from pathlib import Path
from typing import Callable

import numpy as np

from weakstil.errors import WeakSTILError

log = logging.getLogger(__name__)

#: The jitter that held on both seeds (hunt 37d's first variant; milder and stronger ones, and a per-slide
#: "look" jitter before the normalisation, did worse on the across-look minimum).
JITTER = {"hed_scale": 0.2, "hed_shift": 0.02, "brightness": 0.1, "contrast": 0.15, "blur_share": 0.5,
          "blur_sigma_px": [0.1, 1.0]}
#: Copies per slide: two lost 0.01-0.02 across looks against one (hunt 37d).
COPIES = 1
#: Tiles per draw and encoder call: the draws follow the batches, so a fixed size keeps a seed's copy the same.
BATCH = 64
WHERE = ("final classifier only: the leave-one-slide-out folds and the geometry, veto and gate search use the "
         "slides as embedded")

#: ``progress(done_tiles, total_tiles, slide_id)``
Progress = Callable[[int, int, str], None]


def jitter_tiles(tiles, generator):
    """uint8 ``(B, H, W, 3)`` tensor -> the same tiles, each with its own draw of :data:`JITTER`
    (the hunts' code, so the measured numbers hold)."""
    import torch

    from weakstil.encoders.transforms import gaussian_blur, hed_jitter

    b = tiles.shape[0]
    x = tiles.permute(0, 3, 1, 2).float().div(255.0)
    r = torch.rand(b, 9, generator=generator)
    x = hed_jitter(x, 1 + JITTER["hed_scale"] * (2 * r[:, 0:3] - 1), JITTER["hed_shift"] * (2 * r[:, 3:6] - 1))
    bright = 1 + JITTER["brightness"] * (2 * r[:, 6] - 1)
    contrast = 1 + JITTER["contrast"] * (2 * r[:, 7] - 1)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (((x - mean) * contrast[:, None, None, None] + mean) * bright[:, None, None, None]).clamp(0, 1)
    rb = torch.rand(b, 2, generator=generator)
    blur = rb[:, 0] < JITTER["blur_share"]
    if bool(blur.any()):
        lo, hi = JITTER["blur_sigma_px"]
        x = torch.where(blur[:, None, None, None], gaussian_blur(x, lo + (hi - lo) * rb[:, 1]), x)
    return (x * 255.0).round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()


def copy_seed(seed: int, slide_id: str, copy: int = 1) -> int:
    """The draw of one slide's copy: from the run's seed and the slide's id, not its place in the list
    (the same slides listed in another order give the same detector)."""
    return (int(seed) * 1_000_003 + zlib.crc32(slide_id.encode()) * 101 + copy) % (2 ** 63)


def features_encoder(attrs: dict, device: str = "cpu"):
    """The encoder a feature file (its ``attrs``) was embedded with, its weights checked by their hash."""
    from weakstil.encoders import create_encoder
    from weakstil.encoders.cards import CARD_FILE

    name, source = str(attrs.get("encoder") or ""), str(attrs.get("weights_source") or "")
    if not name:
        raise WeakSTILError("the features record no encoder", fix="embed the slides again")
    where = Path(source.split(" (")[0])
    if source.startswith("random init"):  # embed --weights random: seeded, rebuilt from the recorded seed
        encoder = create_encoder(name, weights="random", device=device, seed=int(attrs.get("seed") or 0))
    elif where.is_file() and (where.parent / CARD_FILE).is_file():  # a 'weakstil pretrain' folder
        encoder = create_encoder(where.parent, device=device)
    elif where.is_file():
        encoder = create_encoder(name, weights=where, device=device)
    else:  # a card's published weights
        encoder = create_encoder(name, device=device)
    from weakstil.feature_cache import _weights_record, card_differences
    from weakstil.weights_id import same_weights

    # as score compares them: a cache from before hunt 24 records the weights file's hash (helper h45l)
    if attrs.get("weights_sha256") and not same_weights(attrs, _weights_record(encoder)):
        raise WeakSTILError(f"encoder '{name}' rebuilt from {source or 'its card'} has other weights than the "
                            "features were embedded with", fix="embed the slides again, or train with --no-augment")
    changed = card_differences(attrs, encoder)  # the same weights through another card (an edited or newer card)
    if changed:
        raise WeakSTILError(f"encoder '{name}' rebuilt with another card than the features were embedded with "
                            f"({', '.join(changed)})", fix="embed the slides again, or train with --no-augment")
    return encoder


def slide_copy(features_path: Path, encoder, seed: int, slide_id: str, slide_path: str | Path | None = None,
               progress: Progress | None = None) -> np.ndarray:
    """One jittered copy's features (N, D) of a feature file's tiles, in its tile order."""
    import torch

    from weakstil.embed import iter_tile_batches
    from weakstil.files import FeaturesFile
    from weakstil.slide import Slide
    from weakstil.stain import Normaliser, SlideStain
    from weakstil.tumorbed.ink import features_slide
    from weakstil.unsharp import Sharpening, unsharpen

    attrs, _ = FeaturesFile.read_header(features_path)
    path = features_slide(attrs, slide_path)
    if path is None:
        raise WeakSTILError(f"the slide {attrs.get('slide_path')} is not there (moved since it was embedded?)",
                            fix="give its path in a --cohort CSV")
    coords = np.asarray(FeaturesFile.read(features_path).coords)
    mpp, tile_px = float(attrs["mpp"]), int(attrs["tile_px"])
    sharp = Sharpening.from_json(attrs.get("sharpening"))
    # as embedding did (weakstil.embed._write_cache): sharpening undone, then the reference stain
    norm = Normaliser(SlideStain.from_attr(attrs.get("stain"))) if str(attrs.get("stain_norm")) == "macenko" else None
    generator = torch.Generator().manual_seed(copy_seed(seed, slide_id))
    out = np.zeros((len(coords), encoder.embed_dim), np.float32)
    with Slide.open(path, slide_mpp=float(attrs["slide_mpp"])) as slide, torch.inference_mode():
        for start, batch in iter_tile_batches(slide, coords, tile_px, mpp, BATCH):
            tiles = batch.copy()
            if sharp is not None and sharp.corrected:
                tiles = unsharpen(tiles, sharp.amount, sharp.sigma_um / mpp)
            if norm is not None:
                tiles = norm(tiles)
            jittered = jitter_tiles(torch.from_numpy(np.ascontiguousarray(tiles)), generator)
            out[start:start + len(tiles)] = encoder.run(jittered.to(encoder.device)).float().cpu().numpy()
            if progress is not None:
                progress(start + len(tiles), len(coords), slide_id)
    if not np.isfinite(out).all():
        raise WeakSTILError("the jittered copy gave non-finite features", path=features_path,
                            fix="train with --no-augment")
    return out


def augmented_copies(slides: list[tuple[str, Path, str | Path | None]], seed: int, *, device: str = "cpu",
                     progress: Progress | None = None) -> tuple[dict[str, np.ndarray], dict]:
    """One jittered copy per ``(slide_id, features_path, slide_path)``: ``{slide_id: features}`` and
    the record for model.json. A slide that cannot be read loses its copy (warned, recorded); an
    encoder that cannot be rebuilt loses all of them."""
    from weakstil.files import FeaturesFile

    t0 = time.perf_counter()
    record = {"enabled": True, "where": WHERE, "jitter": dict(JITTER), "after": "sharpening undone and the "
              "features' stain normalisation, as embedded", "copies_per_slide": COPIES, "seed": int(seed),
              "copied": [], "not_copied": []}
    copies: dict[str, np.ndarray] = {}
    if not slides:
        return copies, record
    try:
        encoder = features_encoder(FeaturesFile.read_header(slides[0][1])[0], device)
    except WeakSTILError as exc:
        log.warning("no augmented copies of the training tiles: the features' encoder cannot be rebuilt (%s); "
                    "the detector trains on the slides as embedded", exc.message)
        record["not_copied"] = [{"slide_id": sid, "reason": f"encoder: {exc.message}"} for sid, _, _ in slides]
        return copies, record
    log.info("embedding one appearance-jittered copy of each of the %d training slides' tiles (final classifier "
             "only; --no-augment: none)", len(slides))
    for sid, features_path, slide_path in slides:
        try:
            copies[sid] = slide_copy(features_path, encoder, seed, sid, slide_path, progress)
            record["copied"].append(sid)
        except Exception as exc:  # an unreadable slide loses its copy only; said, and recorded in model.json
            reason = exc.message if isinstance(exc, WeakSTILError) else f"{type(exc).__name__}: {exc}"
            log.warning("%s: no augmented copy of its tiles, the detector trains without it: %s", sid, reason)
            record["not_copied"].append({"slide_id": sid, "reason": reason})
    record["seconds"] = round(time.perf_counter() - t0, 1)
    return copies, record
