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

    def to_dict(self) -> dict[str, float | bool]:
        return asdict(self)


def detect_tissue(rgb: np.ndarray, mpp: float, params: TissueParams | None = None) -> np.ndarray:
    """Boolean tissue mask of an RGB thumbnail at ``mpp`` µm/px."""
    from scipy import ndimage as ndi
    from skimage import morphology
    from skimage.filters import threshold_otsu

    p = params or TissueParams()
    img = rgb.astype(np.float32)
    # A light blur removes scanner noise and JPEG speckle before thresholding.
    img = ndi.uniform_filter(img, size=(3, 3, 1))
    mx = img.max(axis=2)
    mn = img.min(axis=2)
    saturation = (mx - mn) / np.maximum(mx, 1.0)
    density = -np.log10(np.clip((img + 1.0) / 256.0, 1e-3, 1.0)).mean(axis=2)

    candidates = saturation[(mx > 30)]
    thr = p.min_saturation
    if candidates.size > 100 and np.ptp(candidates) > 1e-3:
        thr = float(np.clip(threshold_otsu(candidates), p.min_saturation, p.max_saturation))
    mask = (saturation > thr) | (density > p.min_density * 3)
    mask &= density > p.min_density

    if p.remove_pen:
        r, g, b = img[..., 0], img[..., 1], img[..., 2]
        green_pen = (g > r + 10) & (g > b - 5)
        blue_pen = (b > r + 40) & (g > r)
        black_pen = mx < 45
        mask &= ~(green_pen | blue_pen | black_pen)

    px_area = mpp * mpp
    radius = max(1, int(round(p.closing_um / mpp)))
    mask = ndi.binary_closing(mask, structure=morphology.disk(radius), border_value=0)
    mask = morphology.remove_small_holes(mask, max_size=max(1, int(p.max_hole_um2 / px_area)))
    mask = morphology.remove_small_objects(mask, max_size=max(1, int(p.min_object_um2 / px_area)))
    log.debug("tissue: saturation threshold %.3f, %.1f%% of thumbnail", thr, 100 * mask.mean())
    return mask


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks of equal shape."""
    a = a.astype(bool)
    b = b.astype(bool)
    denom = a.sum() + b.sum()
    return 1.0 if denom == 0 else float(2.0 * (a & b).sum() / denom)
