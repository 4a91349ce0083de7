"""Hunt 40i/40l: the slide QC read the stains' own grey mix as marker ink.

Old: on an outside tester's blue-haematoxylin / orange-eosin look (no ink at all), blue nuclei over
orange stroma average to neutral grey pixels on the QC's 4 µm/px thumbnail, which the grey-ink colour
rule (brightest channel < 215, saturation < 7 %) took for a marker: "ink 8.7-14.3 %" and
``pen_or_folds`` on 4 of 34 slides (og40i_006, _027, _028, _030). The left half of og40i_030's QC
thumbnail (``tests/data/og40i_030_qc_thumb_half.png``, 500 x 260 px at 4 µm/px) read 15.2 %.
Now, as in the tumour-bed ink veto (hunt 40a, :mod:`weakstil.ink_plane`), a pixel over tissue whose
optical density lies in the plane of the slide's H and E vectors is stain, not ink: 0 %. A real
marker still counts on the glass: a grey band across it reads 1.1 % (old 2.4 % above the false 15.2 %;
over this look's tissue grey ink lies near the stains' plane, since its H+E mix is itself grey).
"""

from pathlib import Path

import numpy as np

THUMB = Path(__file__).parent / "data" / "og40i_030_qc_thumb_half.png"


def _thumb() -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(THUMB).convert("RGB"))


def test_blue_orange_stain_mix_is_not_ink_but_a_grey_marker_is():
    from weakstil.qc.image import thumbnail_stats

    thumb = _thumb()
    clean = thumbnail_stats(thumb, 4.0)["pen_share"]
    assert clean < 0.01, clean  # was 0.152: the stains' grey mix read as ink
    # a grey marker 80 µm wide across the image, over glass and tissue (absorbance adds: Beer-Lambert)
    inked = thumb.astype(np.float32)
    inked[240:260] *= 10 ** -0.35
    marked = thumbnail_stats(inked.astype(np.uint8), 4.0)["pen_share"]
    assert marked > clean + 0.008, (clean, marked)  # its stretch over the glass
