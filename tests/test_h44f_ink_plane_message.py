"""Hunt 44b: the ink test's plane refit is news, not an ink warning, and said once per slide in a run.

An outside tester's slide with no marker ink (a thick section: a grey haze over its H&E) made every command
reading it warn "ink: 59 % of the stained tissue lies off the plane of the slide's stain vectors, which cannot
be marker ink; its own plane is used instead", twice in one ``score`` (the bed's ink veto, then the QC), read by
a user as news of ink. The tissue's colours are no mix of the slide's two stain vectors (the haze is a third,
grey absorbance); the ink test adapts to the slide's own plane. That is said once, at info, as what it is; a
warning stays for the case where the check is lost (the slide's own plane fails too).
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

H = np.array([0.48, 0.84, 0.25])
E = np.array([0.05, 0.95, 0.30])
HE = np.stack([H / np.linalg.norm(H), E / np.linalg.norm(E)], axis=1)  # 44b's purple look: 26° apart
MPP = 4.0
N = 300


@pytest.fixture(autouse=True)
def _fresh_run():
    import weakstil.ink_plane as ip

    said = getattr(ip, "_SAID", set())  # said once per slide in a process: each test is a run of its own
    said.clear()
    yield
    said.clear()


def _slide(third: np.ndarray) -> np.ndarray:
    """A round section of random H and E mixes plus ``third`` (an optical density over the tissue), no ink."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:N, 0:N]
    tissue = ((yy - N / 2) ** 2 + (xx - N / 2) ** 2 < (0.4 * N) ** 2).astype(np.float32)
    h = rng.uniform(0.0, 0.6, (N, N)) * tissue
    e = rng.uniform(0.2, 0.5, (N, N)) * tissue
    od = h[..., None] * HE[:, 0] + e[..., None] * HE[:, 1] + tissue[..., None] * np.asarray(third, np.float32)
    return np.clip(240 * np.exp(-od), 0, 255).astype(np.uint8)


def _said(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "weakstil.ink_plane"]


def test_a_hazy_slide_without_ink_is_told_once_as_an_adapted_check(caplog):
    from weakstil.ink_plane import ink_and_stain

    rgb = _slide(np.array([0.16, 0.16, 0.16]))  # the thick-section haze of the outside generator
    with caplog.at_level(logging.DEBUG, logger="weakstil.ink_plane"):
        ink, _ = ink_and_stain(rgb, HE, MPP, "og44b_017")  # the bed's ink veto ...
        ink_and_stain(rgb, HE, MPP, "og44b_017")  # ... and the slide's QC, in the same run
    assert not ink.any()  # no ink: the test adapted to the slide's own plane
    records = _said(caplog)
    assert not [r for r in records if r.levelno >= logging.WARNING], [r.getMessage() for r in records]
    told = [r.getMessage() for r in records if r.levelno == logging.INFO]
    assert len(told) == 1, [r.getMessage() for r in records]
    assert told[0].startswith("og44b_017: ink check adapted, not a sign of ink"), told
    assert "no action needed" in told[0] and "no mix of the slide's estimated haematoxylin and eosin" in told[0]
    assert len(records) == 2 and records[1].levelno == logging.DEBUG  # the second read: debug only


def test_another_slide_is_told_too(caplog):
    from weakstil.ink_plane import ink_and_stain

    rgb = _slide(np.array([0.16, 0.16, 0.16]))
    with caplog.at_level(logging.INFO, logger="weakstil.ink_plane"):
        ink_and_stain(rgb, HE, MPP, "slide_a")
        ink_and_stain(rgb, HE, MPP, "slide_b")
    assert [r.getMessage().split(":")[0] for r in _said(caplog)] == ["slide_a", "slide_b"]


def test_a_lost_check_is_still_a_warning(caplog):
    from weakstil.ink_plane import ink_and_stain

    from ink_images import no_plane_holds_it

    rgb = no_plane_holds_it(N)  # no plane through the origin holds half the tissue
    with caplog.at_level(logging.INFO, logger="weakstil.ink_plane"):
        ink, stain_like = ink_and_stain(rgb, HE, MPP, "s9")
    records = _said(caplog)
    assert len(records) == 1 and records[0].levelno == logging.WARNING, [r.getMessage() for r in records]
    assert records[0].getMessage().startswith("s9: ink over tissue not checked")
    assert "check the slide for marker ink by eye" in records[0].getMessage()
    assert not ink.any() and not stain_like.any()
