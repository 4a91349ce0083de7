"""Hunt 41a: the ink-plane warning names its slide.

An outside tester's yellowed old slides (a third, yellow absorber over the H&E) lie off the plane of
the slide's stain vectors, and ``tumorbed train`` / ``tumorbed apply`` / ``score`` said "ink: 100 % of
the stained tissue lies off the plane of the slide's stain vectors ..." naming no slide: in a batch
of 36 the line sat between two other slides' lines. It now starts with the slide's id (hunt 44b: and says
the ink check adapted, at info, once per slide in a run: tests/test_h44f_ink_plane_message.py).
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

tifffile = pytest.importorskip("tifffile")

HE = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
HE = HE / np.linalg.norm(HE, axis=0)
MPP = 0.5
N = 1200  # 0.6 x 0.6 mm


@pytest.fixture(autouse=True)
def _fresh_run():
    import weakstil.ink_plane as ip

    ip._SAID.clear()  # said once per slide in a process: each test is a run of its own


def _told(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "weakstil.ink_plane"
            and ("ink check adapted" in r.getMessage() or "ink over tissue not checked" in r.getMessage())]


@pytest.fixture(scope="module")
def yellowed_slide(tmp_path_factory):
    """A tiled TIFF of H&E tissue under a yellow varnish (its optical density off the H-E plane)."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:N, 0:N]
    tissue = (yy - N / 2) ** 2 + (xx - N / 2) ** 2 < (0.4 * N) ** 2
    h = rng.uniform(0.1, 0.8, (N, N)).astype(np.float32) * tissue
    e = rng.uniform(0.2, 0.6, (N, N)).astype(np.float32) * tissue
    yellow = np.array([0.02, 0.1, 0.8], np.float32)
    rgb = np.empty((N, N, 3), np.uint8)
    for c in range(3):
        od = h * np.float32(HE[c, 0]) + e * np.float32(HE[c, 1]) + np.float32(0.5 * yellow[c]) * tissue
        rgb[..., c] = np.clip(240 * np.exp(-od), 0, 255)
    path = tmp_path_factory.mktemp("ink41a") / "old_slide_7.tiff"
    tifffile.imwrite(path, rgb, tile=(256, 256), photometric="rgb", resolution=(1e4 / MPP, 1e4 / MPP),
                     resolutionunit="CENTIMETER")
    return path


def test_tumour_bed_ink_warning_names_the_slide(yellowed_slide, caplog):
    from weakstil.stain import SlideStain
    from weakstil.tumorbed.ink import slide_ink_share

    stain = SlideStain(HE.copy(), np.array([1.5, 1.0]))
    attrs = {"slide_path": str(yellowed_slide), "slide_mpp": MPP, "slide_width": N, "slide_id": "old_slide_7",
             "stain": json.dumps(stain.to_dict())}
    coords = np.array([[x, y] for y in range(0, N - 224, 224) for x in range(0, N - 224, 224)], float)
    with caplog.at_level(logging.INFO):
        share = slide_ink_share(attrs, coords, 224.0)
    assert share is not None and share.max() < 0.05  # no tile taken for ink
    lines = _told(caplog)
    assert lines, [r.getMessage() for r in caplog.records]
    assert all(line.startswith("old_slide_7: ink ") for line in lines), lines


def test_slide_qc_ink_warning_names_the_slide(yellowed_slide, caplog):
    from weakstil.qc.image import slide_image_stats
    from weakstil.slide import Slide
    from weakstil.stain import SlideStain

    coords = np.array([[x, y] for y in range(200, 1000, 224) for x in range(200, 1000, 224)], float)
    with caplog.at_level(logging.INFO), Slide.open(yellowed_slide) as slide:
        slide_image_stats(slide, coords, None, 224, MPP, stain=SlideStain(HE.copy(), np.array([1.5, 1.0])))
    lines = _told(caplog)
    assert lines, [r.getMessage() for r in caplog.records]
    assert all(line.startswith("old_slide_7: ink ") for line in lines), lines
