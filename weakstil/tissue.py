"""Tissue detection on a low-resolution thumbnail (about 8 µm/px).

Brightfield tissue absorbs light and is coloured; glass is bright and grey. We combine
saturation (Otsu, clamped to sane bounds) with optical density, drop pen ink by hue,
then clean up with morphology whose sizes are given in micrometres, so the result
does not depend on the thumbnail's resolution.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)

#: Default resolution of the tissue mask.
TISSUE_MASK_MPP = 8.0


@dataclass(frozen=True)
class TissueParams:
    """Settings of :func:`detect_tissue`; sizes in µm so they hold at any resolution."""

    min_saturation: float = 0.05  #: lower clamp for the Otsu saturation threshold
    max_saturation: float = 0.20  #: upper clamp for the Otsu saturation threshold
    min_density: float = 0.08  #: mean optical density that counts as tissue even when grey
    closing_um: float = 24.0  #: radius of the closing that joins fragments
    min_object_um2: float = 20_000.0  #: debris smaller than this is dropped (0.02 mm²)
    max_hole_um2: float = 40_000.0  #: holes smaller than this are filled (fat cells, lumina)
    remove_pen: bool = True
    fat_window_um: float = 96.0  #: window in which faint membranes make fat count as tissue
    fat_membrane_share: float = 0.22  #: share of faint pixels in that window (fallback; Otsu decides)

    def to_dict(self) -> dict[str, float | bool]:
        return asdict(self)


def detect_tissue(rgb: np.ndarray, mpp: float, params: TissueParams | None = None) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail at ``mpp`` µm/px."""
    from scipy import ndimage as ndi
    from skimage import morphology
    from skimage.filters import threshold_otsu

    p = params or TissueParams()
    # channels as separate planes: reductions over a trailing axis of 3 are slow in numpy
    raw_r, raw_g, raw_b = (np.ascontiguousarray(rgb[..., c], dtype=np.float32) for c in range(3))
    # A light blur removes scanner noise and JPEG speckle before thresholding.
    r, g, b = (ndi.uniform_filter(c, size=3) for c in (raw_r, raw_g, raw_b))
    mx = np.maximum(np.maximum(r, g), b)
    mn = np.minimum(np.minimum(r, g), b)
    saturation = (mx - mn) / np.maximum(mx, 1.0)
    # Optical-density thresholds on the mean intensity, as intensities (no per-pixel log):
    # OD > d  <=>  intensity < 256 * 10**-d - 1.
    intensity = (r + g + b) / 3.0

    def od_level(d: float) -> float:
        return 256.0 * 10.0 ** (-d) - 1.0

    # a subsample is plenty for a histogram threshold
    candidates = saturation[::2, ::2][mx[::2, ::2] > 30]
    thr = p.min_saturation
    if candidates.size > 100 and np.ptp(candidates) > 1e-3:
        thr = float(np.clip(threshold_otsu(candidates), p.min_saturation, p.max_saturation))
    mask = (saturation > thr) | (intensity < od_level(p.min_density * 3))
    mask &= intensity < od_level(p.min_density)

    # Pen ink is coloured but not H&E: green/blue hues, or near-black. Blurred stroke edges
    # are caught by widening the ink mask a little.
    pen = np.zeros(mask.shape, bool)
    if p.remove_pen:
        pen = ((g > r + 10) & (g > b - 5)) | ((b > r + 40) & (g > r)) | (mx < 45)
        pen = _dilate(pen, 2)
        mask &= ~pen

    # Fat: big empty adipocytes whose thin membranes are only faintly stained at this
    # resolution. A window dense in faint stain is tissue even where each pixel is pale.
    if p.fat_window_um > 0:
        grey = (raw_r + raw_g + raw_b) / 3.0  # unblurred: membranes are a pixel wide
        glass, noise = _glass_level(grey[~mask])
        raw_mx = np.maximum(np.maximum(raw_r, raw_g), raw_b)
        raw_sat = (raw_mx - np.minimum(np.minimum(raw_r, raw_g), raw_b)) / np.maximum(raw_mx, 1.0)
        faint = (raw_sat > max(0.03, 3.0 * noise / glass)) | (grey < glass - max(2.0, 2.0 * noise))
        faint &= ~mask & ~pen
        size = max(3, int(round(p.fat_window_um / mpp)) | 1)
        share = ndi.uniform_filter(faint.astype(np.float32), size=size)
        # glass and fat form two modes of the share; Otsu splits them, within sane bounds
        pale_share = share[~mask]
        cut = p.fat_membrane_share
        if pale_share.size > 100 and np.ptp(pale_share) > 1e-3:
            cut = float(np.clip(threshold_otsu(pale_share), 0.12, 0.5))
        fat = (share > cut) & ~mask
        # an opening drops the thin band of faint pixels that lines every tissue edge
        fat = _dilate(_erode(fat, size // 2), size // 2)
        mask |= fat

    px_area = mpp * mpp
    radius = max(1, int(round(p.closing_um / mpp)))
    mask = ndi.binary_closing(mask, structure=morphology.disk(radius), border_value=0)
    mask = morphology.remove_small_holes(mask, max_size=max(1, int(p.max_hole_um2 / px_area)))
    mask &= ~pen
    mask = morphology.remove_small_objects(mask, max_size=max(1, int(p.min_object_um2 / px_area)))
    log.debug("tissue: saturation threshold %.3f, %.1f%% of thumbnail", thr, 100 * mask.mean())
    return mask


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Dilation by a square of side 2r+1 (separable, so fast for any radius)."""
    from scipy import ndimage as ndi

    return ndi.maximum_filter(mask.view(np.uint8), size=2 * radius + 1).astype(bool) if radius > 0 else mask


def _erode(mask: np.ndarray, radius: int) -> np.ndarray:
    from scipy import ndimage as ndi

    return ndi.minimum_filter(mask.view(np.uint8), size=2 * radius + 1).astype(bool) if radius > 0 else mask


def _glass_level(grey: np.ndarray) -> tuple[float, float]:
    """Brightness of empty glass (the histogram mode of pale pixels) and its noise (robust std)."""
    pale = grey[grey > 150]
    if pale.size < 100:
        return 255.0, 0.0
    hist, edges = np.histogram(pale, bins=np.arange(150, 257))
    glass = float(edges[np.argmax(hist)]) + 0.5
    near = pale[np.abs(pale - glass) < 8] - glass
    # the upper half is free of faint stain: its spread is the noise
    upper = near[near >= 0]
    noise = float(np.sqrt(np.mean(upper**2))) if upper.size else 0.0
    return glass, noise


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks of equal shape."""
    a = a.astype(bool)
    b = b.astype(bool)
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else float(2.0 * (a & b).sum() / denom)
