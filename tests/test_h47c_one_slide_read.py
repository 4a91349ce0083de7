"""The bed's ink veto and its lymphoid-aggregate step read the slide once, with the same cap and glass (helper h47c).

Was: ``detect_file`` read the slide's 4 µm/px thumbnail for the ink veto (capped at 6 MP, a black unscanned area turned
to glass where the features record it so) and again for the aggregates (uncapped: a 30 x 20 mm section's 37 MP and a
few hundred MB of float maps; the black area raw, so a black rectangle on the glass, compact and ringed by nothing,
was a lymphoid aggregate). Now one read (:class:`weakstil.tumorbed.ink.SlideRead`) serves both; where the cap makes
it coarser the aggregate step lays its µm sizes on the read's pixels and finds the same aggregate.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np

from conftest import write_tiff_slide

MPP = 1.0  #: the slide's µm/px: 1 mm square, 1000 px
N = 1000
HE = np.array([[0.65, 0.07], [0.70, 0.99], [0.29, 0.11]])
HE = HE / np.linalg.norm(HE, axis=0)
MAX_C = np.array([1.2, 0.8])


def _disc(cy, cx, r):
    yy, xx = np.mgrid[:N, :N]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _slide(tmp_path, black: bool = False, nuclei: float = 0.0):
    """Stroma (H 0.05) with a set-apart TLS (100 µm radius, a paler germinal centre) and a crescent of dense infiltrate
    round a nest (no aggregate); ``black``: a black unscanned square (150 µm) on the stroma too; ``nuclei``: scattered
    3 µm nuclei over that share of the stroma. Its path and the feature file's attributes (stain recorded)."""
    from weakstil.stain import IO

    h = np.full((N, N), 0.05, np.float32)
    if nuclei:
        centres = (np.random.default_rng(0).random((int(nuclei * N * N / 9), 2)) * N).astype(int)
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                h[np.clip(centres[:, 0] + dy, 0, N - 1), np.clip(centres[:, 1] + dx, 0, N - 1)] = 0.9
    tls = _disc(240, 240, 100)
    h[tls] = 0.9
    h[_disc(240, 240, 40)] = 0.4
    h[_disc(680, 600, 180) & ~_disc(600, 600, 160)] = 0.9
    od = np.stack([h * MAX_C[0], np.full_like(h, 0.5 * MAX_C[1])], -1) @ HE.T
    rgb = np.clip(IO * np.exp(-od) - 1.0, 0, 255).astype(np.uint8)
    if black:
        rgb[800:950, 100:250] = 0
    path = write_tiff_slide(tmp_path / "s.tiff", np.ascontiguousarray(rgb), mpp=MPP)
    from weakstil.stain import SlideStain

    attrs = {"slide_path": str(path), "slide_mpp": MPP, "slide_width": N, "slide_height": N, "slide_id": "s",
             "stain": json.dumps(SlideStain(HE.copy(), MAX_C.copy()).to_dict()), "tile_size_level0": 100.0,
             "mask_mpp": 8.0, "background": "black outside the scan read as white glass" if black else "none"}
    return path, attrs, tls


def _on_grid(mask):
    from weakstil.tumorbed.aggregates import on_mask_grid

    return on_mask_grid(mask, MPP, (125, 125), 8.0)


def test_the_ink_veto_and_the_aggregates_read_the_slide_once(tmp_path, monkeypatch):
    from weakstil.slide import Slide
    from weakstil.tumorbed.aggregates import AggregateRule
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence
    from weakstil.tumorbed.ink import InkVeto

    path, attrs, tls = _slide(tmp_path)
    rr, cc = np.meshgrid(np.arange(10), np.arange(10), indexing="ij")
    coords = np.stack([cc.ravel() * 100, rr.ravel() * 100], 1).astype(np.int64)
    features = SimpleNamespace(path=None, slide_id="s", attrs=attrs, attr=attrs.get, coords=coords,
                               features=np.where(((rr >= 5) & (cc >= 4)).ravel()[:, None], 3.0, -3.0)
                               * np.ones((1, 4), np.float32), tile_stats=None, tissue_mask=np.ones((125, 125), bool),
                               tissue_mask_mpp=8.0)
    ev = LogisticEvidence(np.ones(4, np.float32), 0.0, np.zeros(4, np.float32), np.ones(4, np.float32))
    detector = TumorBedDetector(ev, ink_veto=InkVeto(), aggregates=AggregateRule(enabled=True))
    reads = []
    real = Slide.read_thumbnail
    monkeypatch.setattr(Slide, "read_thumbnail", lambda self, mpp, *a, **k: reads.append(mpp) or real(self, mpp, *a, **k))
    bed = detector.detect_file(features, slide_path=path, front=False)
    assert reads == [4.0]  # one read for both steps (was two, the same pixels)
    assert "aggregates: 1 kept out" in bed.seed_vetoes and bed.ink_test  # both steps ran on it


def test_a_slide_read_coarser_under_the_cap_finds_the_same_aggregate(tmp_path, monkeypatch):
    """The cap makes a large slide's read coarser (a 30 x 20 mm section: 10 µm/px). There a TLS in stroma with
    scattered nuclei is no aggregate (a 10 µm pixel of that stroma is not poor in nuclei: its ring reads 0.2, at 4 µm
    0.8), so its pieces that may be are read again round them at 4 µm/px and decided there."""
    import weakstil.tumorbed.ink as ink
    from weakstil.stain import SlideStain, concentrations
    from weakstil.tumorbed.aggregates import AggregateRule, aggregate_pieces, slide_aggregates
    from weakstil.tumorbed.ink import SlideRead

    path, attrs, tls = _slide(tmp_path, nuclei=0.2)
    rule = AggregateRule(enabled=True)
    fine = SlideRead(attrs, path)
    at4, said4 = slide_aggregates(attrs, (125, 125), 8.0, rule, path, fine)
    monkeypatch.setattr(ink, "INK_MAX_PIXELS", 10_000)  # a 1 mm² slide read as a 30 x 20 mm one is: 10 µm/px
    coarse = SlideRead(attrs, path)
    at10, said10 = slide_aggregates(attrs, (125, 125), 8.0, rule, path, coarse)
    assert fine.mpp() == 4.0 and coarse.mpp() == 10.0
    _, alone = aggregate_pieces(concentrations(coarse.thumbnail(), SlideStain.from_attr(attrs["stain"])), 10.0, rule)
    assert not any(m["aggregate"] for m in alone)  # the coarse read alone: no aggregate
    assert said4.startswith("aggregates: 1 found") and said10.startswith("aggregates: 1 found")
    truth = _on_grid(tls)
    for agg in (at4, at10):
        assert (agg & truth).sum() >= 0.9 * truth.sum() and (agg & ~truth).sum() <= 0.15 * truth.sum()
    area4, area10 = (float(said.split("(")[1].split()[0].rstrip(";")) for said in (said4, said10))
    assert abs(area10 - area4) <= 0.05 * area4 and abs(area4 - np.pi * 0.1 ** 2) <= 0.15 * area4


def test_a_black_unscanned_square_is_glass_to_the_aggregate_step_as_to_the_ink_veto(tmp_path):
    from weakstil.tumorbed.aggregates import AggregateRule, slide_aggregates

    path, attrs, tls = _slide(tmp_path, black=True)
    agg, said = slide_aggregates(attrs, (125, 125), 8.0, AggregateRule(enabled=True), path)
    assert said.startswith("aggregates: 1 found")  # the TLS; the black square (compact, on nothing) was a second
    assert not agg[100:119, 12:31].any() and agg[_on_grid(tls)].mean() > 0.9
