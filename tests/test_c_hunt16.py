"""Fault hunt 16 (c): marker ink drawn on the glass is not tissue.

The tissue detector removed green, blue and near-black pen by colour but not dark grey marker (the
slide QC's rule), and a dark navy marker (about RGB 40, 60, 150: blue absorbance 0.29 of its red one)
lies just above the blue-ink cut-off (0.28), next to a navy haematoxylin. A ring of either on blank
glass was tissue (a navy ring: 103 tiles, scored); a grey ring on glass joined tissue pieces."""

from __future__ import annotations

import io

import numpy as np
import pytest
from scipy import ndimage as ndi

from conftest import run_cli, write_tiff_slide
from weakstil.tissue import detect_tissue

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: marker colours (RGB of the ink at full density on white)
INKS = {"grey": (110, 110, 112), "pale_grey": (150, 150, 150), "navy": (40, 60, 150),
        "blue": (60, 110, 200), "black": (30, 30, 32), "green": (40, 140, 90)}
#: H&E: a navy haematoxylin (absorbs red more than green) and an orange-red eosin (the synthetic alt look)
H_NAVY = np.array([0.80, 0.56, 0.26])
E_ORANGE = np.array([0.05, 0.76, 0.66])


def _absorb(glass: np.ndarray, od: np.ndarray) -> np.ndarray:
    return glass * 10.0 ** -od


def _to_uint8(img: np.ndarray, seed: int = 0, jpeg: bool = False) -> np.ndarray:
    img = img + np.random.default_rng(seed).normal(0.0, 2.0, img.shape)
    out = np.clip(np.round(img), 0, 255).astype(np.uint8)
    if jpeg:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(out).save(buf, "JPEG", quality=80)
        out = np.asarray(Image.open(buf))
    return out


def _ring(colour, width_um: float, size: int = 400, mpp: float = 8.0) -> np.ndarray:
    """Blank glass (240) with a marker ring of ``colour`` (blurred edges, Beer-Lambert density)."""
    yy, xx = np.mgrid[:size, :size]
    band = (np.abs(np.hypot(yy - size / 2, xx - size / 2) - 0.3 * size) < width_um / mpp / 2).astype(np.float32)
    band = ndi.gaussian_filter(band, 1.0)
    od = -np.log10(np.maximum(np.asarray(colour, np.float64), 1.0) / 255.0)
    return _absorb(np.full((size, size, 3), 240.0), band[..., None] * od)


@pytest.mark.parametrize("jpeg", [False, True])
@pytest.mark.parametrize("ink", sorted(INKS))
def test_a_marker_ring_on_blank_glass_is_not_tissue(ink, jpeg):
    """Grey and navy rings were tissue (3-20 % of the thumbnail), a black ring's blurred rim 0.6 %."""
    for width in (80.0, 400.0):
        mask = detect_tissue(_to_uint8(_ring(INKS[ink], width), jpeg=jpeg), 8.0)
        assert mask.mean() < 0.001, (ink, width, mask.mean())


def test_a_navy_ring_on_a_blank_slide_is_refused_as_no_tissue(tmp_path):
    """The outside tester's repro: a blank slide with a wide navy ring was tiled (103 tiles)."""
    from PIL import Image

    thumb = _to_uint8(_ring(INKS["navy"], 300.0, size=200))  # 1.6 mm at 8 µm/px
    full = np.asarray(Image.fromarray(thumb).resize((3200, 3200), Image.Resampling.BILINEAR))
    path = write_tiff_slide(tmp_path / "navy_ring.tiff", full, mpp=0.5)
    proc = run_cli("tile", path, "--out", tmp_path / "out")
    assert proc.returncode == 1
    assert f"error: {path}: no tissue found (0 tiles)" in proc.stderr, proc.stderr
    assert not (tmp_path / "out" / "navy_ring.h5").exists()


#: stroke absorbance: a grey marker, and the synthetic --hard look's black marker laid on faintly
#: (slightly warm, 6-12 % saturation: not "unsaturated grey")
STROKES = {"grey": -np.log10(np.asarray(INKS["grey"], np.float64) / 255.0),
           "faint_black": 0.5 * np.array([0.70, 0.68, 0.62])}


def _tissue_with_grey_ring(ink: str = "grey", size: int = 300) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two H&E pieces (navy nuclei dense in the left one) 200 µm apart, a grey marker stroke on
    the glass between them that touches both (ink over tissue is left out, as before). Returns the image and the two pieces' masks."""
    yy, xx = np.mgrid[:size, :size]
    left = np.hypot(yy - 150, xx - 80) < 55
    right = np.hypot(yy - 150, xx - 220) < 55
    rng = np.random.default_rng(1)
    nuclei = ndi.gaussian_filter(rng.random((size, size)), 1.0) > 0.5
    h = np.where(left, np.where(nuclei, 1.4, 0.5), np.where(right, np.where(nuclei, 0.6, 0.2), 0.0))
    e = np.where(left | right, 0.35, 0.0)
    od = h[..., None] * H_NAVY + e[..., None] * E_ORANGE
    stroke = ndi.gaussian_filter(((np.abs(yy - 150) < 8) & (xx > 133) & (xx < 167)).astype(np.float32), 1.0)
    od = od + stroke[..., None] * STROKES[ink]
    return _absorb(np.full((size, size, 3), 240.0), od), left, right


@pytest.mark.parametrize("ink", sorted(STROKES))
@pytest.mark.parametrize("jpeg", [False, True])
def test_a_grey_stroke_on_glass_does_not_join_tissue_pieces(jpeg, ink):
    """A grey stroke between two pieces was tissue and bridged them (on a --hard slide it joined a
    lymph node to the tumour bed); the dense navy-stained piece stays tissue whole."""
    img, left, right = _tissue_with_grey_ring(ink)
    mask = detect_tissue(_to_uint8(img, jpeg=jpeg), 8.0)
    pieces, n = ndi.label(mask)
    assert n == 2, n
    assert pieces[150, 80] != pieces[150, 220]
    assert not mask[144:157, 140:158].any()  # the stroke on glass (its ends may keep a JPEG fringe)
    for piece in (left, right):
        inner = ndi.binary_erosion(piece, iterations=3)
        assert mask[inner].mean() > 0.99
