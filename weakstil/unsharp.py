"""Undo a scanner's sharpening (an unsharp mask) before the encoder sees the tiles.

A scanner's "enhanced" setting sharpens the scan with an unsharp mask, ``s = f + a (f - G_σ * f)``.
Its halos read as lymphocytes to an encoder trained on unsharpened scans (an amount of 1 at σ 0.75 µm
scored 16 held-out slides +6 sTIL points high, 2.5 +17; hunt 31a, docs/accuracy.md). The mask is
undone exactly by ``f = s / (1 + a - a Ĝ)`` (Ĝ: the Gaussian's transfer function), which is the
series ``f = Σ_k w_k G_{σ√k} * s`` with ``w_k = r^k / (1 + a)``, ``r = a / (1 + a)``: a mixture of
Gaussians with non-negative weights summing to 1, that is an optical blur (a non-negative point-spread
function) that cannot overshoot an edge itself. :func:`unsharpen` applies it (the series cut after
:data:`TERMS` terms, the rest of the weight on the last one).

The amount is read from the slide before embedding (:func:`slide_sharpening`): the edge halo
(:func:`weakstil.qc.image.edge_halo`) of the same tiles the focus check reads. Only a slide whose halo
is above :data:`~weakstil.qc.image.SHARPENED_HALO` (the ``sharpened`` qc flag; real scans with their
scanner's own mild sharpening measure 0.03-0.11, unsharpened ones -0.22 to 0.02) is corrected: the
amount is the smallest that brings the median halo of those tiles down to :data:`TARGET_HALO`, with the
mask's width fixed at :data:`SIGMA_UM`. Every other slide's tiles reach the encoder unchanged, byte for
byte. The reading is recorded in the features file's ``sharpening`` attribute (JSON).
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)

#: Version of the reading and the correction (recorded in the features file's ``sharpening`` attribute).
UNSHARP_VERSION = 1
#: The width (Gaussian σ, µm) of the unsharp mask that is undone: 1.5 px at 0.5 µm/px, a mask of a pixel
#: or two as sharpening filters use; assumed, not read (a mask of σ 1 µm, amount 2.5, is undone almost as
#: well: R² -0.34 -> 0.978 on 16 slides, docs/accuracy.md). Only the amount is read from the slide.
SIGMA_UM = 0.75
#: The halo a corrected slide is brought down to: an optical blur alone leaves none (0 or below).
TARGET_HALO = 0.0
#: The largest amount undone (an unsharp mask past this is not a scanner's setting).
MAX_AMOUNT = 4.0
#: Terms of the inverse series (the weight left after them, r^TERMS, goes on the last term).
TERMS = 12
#: Bisection steps for the amount (MAX_AMOUNT / 2^7: within 0.03).
STEPS = 7


@dataclass(frozen=True)
class Sharpening:
    """What :func:`estimate_sharpening` read on a slide's sample tiles."""

    halo: float  #: median edge halo of the tiles as scanned (NaN: not measured)
    amount: float  #: unsharp-mask amount undone (0: the tiles are not touched)
    sigma_um: float = SIGMA_UM
    halo_after: float = math.nan  #: median halo after the correction (NaN when none)
    tiles: int = 0
    version: int = UNSHARP_VERSION

    @property
    def corrected(self) -> bool:
        return self.amount > 0

    def to_json(self) -> str:
        return json.dumps({k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                           for k, v in asdict(self).items()})

    @classmethod
    def from_json(cls, text: str | bytes | None) -> Sharpening | None:
        if not text:
            return None
        d = json.loads(text)
        return cls(**{k: (math.nan if v is None else v) for k, v in d.items() if k in cls.__dataclass_fields__})


def inverse_weights(amount: float, terms: int = TERMS) -> np.ndarray:
    """Weights ``w_k`` (k = 0..terms-1) of the Gaussians ``G_{σ√k}`` that undo an unsharp mask of ``amount``."""
    r = amount / (1.0 + amount)
    w = r ** np.arange(terms) / (1.0 + amount)
    w[-1] += r ** terms  # the tail of the series (its Gaussians are wider still) on the last term
    return w


def unsharpen(tiles: np.ndarray, amount: float, sigma_px: float) -> np.ndarray:
    """Undo an unsharp mask of ``amount`` and width ``sigma_px`` on uint8 RGB tiles ``(..., h, w, 3)``."""
    import cv2

    arr = np.asarray(tiles)
    if amount <= 0:
        return arr
    flat = arr.reshape((-1,) + arr.shape[-3:])
    out = np.empty(flat.shape, np.uint8)
    w = inverse_weights(amount)
    for i, tile in enumerate(flat):
        f = tile.astype(np.float32)
        acc = w[0] * f
        for k in range(1, len(w)):
            acc += w[k] * cv2.GaussianBlur(f, (0, 0), sigma_px * math.sqrt(k), borderType=cv2.BORDER_REFLECT)
        out[i] = np.clip(np.rint(acc), 0, 255)
    return out.reshape(arr.shape)


def estimate_sharpening(tiles: list[np.ndarray], mpp: float) -> Sharpening:
    """Read a slide's sharpening from sample RGB tiles at ``mpp`` µm/px (see the module's docstring)."""
    from weakstil.qc.image import SHARPENED_HALO, tile_halo

    if not tiles:
        return Sharpening(math.nan, 0.0)
    halos = tile_halo(tiles, mpp)
    halo = float(np.nanmedian(halos)) if np.isfinite(halos).any() else math.nan
    if not (math.isfinite(halo) and halo > SHARPENED_HALO):
        return Sharpening(halo, 0.0, tiles=len(tiles))
    sigma_px = SIGMA_UM / mpp
    stack = np.stack(tiles)

    def after(a: float) -> float:
        h = tile_halo(list(unsharpen(stack, a, sigma_px)), mpp)
        return float(np.nanmedian(h)) if np.isfinite(h).any() else math.nan

    lo, hi = 0.0, MAX_AMOUNT
    h_hi = after(hi)
    if not (math.isfinite(h_hi) and h_hi <= TARGET_HALO):
        lo = hi  # even the largest amount leaves a halo: undo that much
    else:
        for _ in range(STEPS):
            mid = 0.5 * (lo + hi)
            h = after(mid)
            if math.isfinite(h) and h <= TARGET_HALO:
                hi, h_hi = mid, h
            else:
                lo = mid
    amount = round(hi if lo < hi else lo, 3)
    return Sharpening(halo, amount, halo_after=after(amount), tiles=len(tiles))


def slide_sharpening(slide, coords: np.ndarray, tissue_fraction: np.ndarray | None, tile_px: int,
                     mpp: float, seed: int = 0) -> Sharpening:
    """:func:`estimate_sharpening` on the focus tiles (:func:`weakstil.qc.image.focus_tiles`) of an open slide."""
    from weakstil.qc.image import focus_tiles

    idx = focus_tiles(coords, tissue_fraction, seed=seed)
    tiles = [slide.read_region(int(coords[i][0]), int(coords[i][1]), int(tile_px), float(mpp)) for i in idx]
    s = estimate_sharpening(tiles, float(mpp))
    if s.corrected:
        log.info("%s: edges overshoot by %.2f of their contrast (a scanner's sharpening); undoing an unsharp mask "
                 "of amount %.2f (σ %.2g µm) before the encoder (halo after: %.2f)", getattr(slide, "path", "slide"),
                 s.halo, s.amount, s.sigma_um, s.halo_after)
    return s


def corrected_batches(batches, sharpening: Sharpening | None, mpp: float):
    """Pass ``(start, batch)`` through, undoing ``sharpening`` on each batch (host arrays or tensors)."""
    if sharpening is None or not sharpening.corrected:
        yield from batches
        return
    sigma_px = sharpening.sigma_um / mpp
    try:
        for start, batch in batches:
            if isinstance(batch, np.ndarray):
                yield start, unsharpen(batch, sharpening.amount, sigma_px)
            else:  # a GPU-decoded tensor: corrected on a host copy (a sharpened slide is the exception)
                import torch

                host = unsharpen(batch.cpu().numpy(), sharpening.amount, sigma_px)
                yield start, torch.from_numpy(host).to(batch.device)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def sharpened_before(path, attrs: dict, slide) -> str | None:
    """Why a feature cache (its ``attrs``) of ``slide`` made before hunt 32 is not reused: the slide reads
    as sharpened (its focus tiles' halo above the ``sharpened`` limit), so this WeakSTIL would undo the
    sharpening that cache's features carry. None when the cache records its reading, or the slide reads
    unsharpened (its features are what this version makes: the cache is kept)."""
    from weakstil.files import FeaturesFile
    from weakstil.qc.image import SHARPENED_HALO, focus_tiles, tile_halo

    if "sharpening" in attrs or "tile_px" not in attrs or "mpp" not in attrs:
        return None
    cache = FeaturesFile.read(path, skip=("features", "tissue_mask", "tumorbed", "tile_stats", "stroma_estimate"))
    coords, tissue_fraction = cache.coords, cache.tissue_fraction
    tile_px, mpp = int(attrs["tile_px"]), float(attrs["mpp"])
    idx = focus_tiles(coords, tissue_fraction)
    halos = tile_halo([slide.read_region(int(coords[i][0]), int(coords[i][1]), tile_px, mpp) for i in idx], mpp)
    halo = float(np.nanmedian(halos)) if np.isfinite(halos).any() else math.nan
    if not (math.isfinite(halo) and halo > SHARPENED_HALO):
        return None
    return (f"was made before WeakSTIL undid a scanner's sharpening (its edges overshoot by {halo:.2f} of their "
            f"contrast > {SHARPENED_HALO:g})")
