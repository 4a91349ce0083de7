"""Review r47c of helper h47c's shared slide read (BASE 05ee24f): defects found, each test failing before its fix."""

from __future__ import annotations

import numpy as np

from conftest import write_tiff_slide


def test_a_candidate_window_has_the_thumbnails_pixels_on_a_scan_whose_level_is_no_whole_multiple(tmp_path):
    """The aggregate step decides a coarse read's candidates on windows of the 4 µm/px thumbnail, read as the
    thumbnail is (a piece's solidity moved 0.878 -> 0.914 on pixels a few grey levels off). On a 0.46 µm/px scan
    (the level under 4 µm/px 1.84 µm/px, 2.17 of its pixels an output pixel) the window was widened to whole level
    pixels and resized on that extent: its pixels sat up to a level pixel off the thumbnail's (3.3 grey levels mean)."""
    from weakstil.slide import Slide
    from weakstil.tumorbed.aggregates import _thumbnail_window

    rgb = np.full((1200, 1200, 3), 235, np.uint8)
    rgb[np.random.default_rng(0).random((1200, 1200)) < 0.05] = (60, 30, 110)  # scattered nuclei: every shift shows
    path = write_tiff_slide(tmp_path / "s.tiff", rgb, mpp=0.46, levels=2)
    with Slide.open(path) as slide:
        w, h = slide.dimensions
        out_w, out_h = round(w * slide.mpp / 4.0), round(h * slide.mpp / 4.0)
        thumb = slide.read_thumbnail(4.0).astype(int)
        assert slide.level_count == 2 and slide.best_level_for_mpp(4.0) == 1
        for y0, x0 in [(3, 7), (40, 11), (61, 50), (17, 33)]:
            window = _thumbnail_window(slide, 4.0, out_w, out_h, y0, y0 + 30, x0, x0 + 25).astype(int)
            assert np.abs(window - thumb[y0:y0 + 30, x0:x0 + 25]).mean() < 0.5, (y0, x0)


def test_a_large_slides_candidates_are_never_stricter_than_the_rule(tmp_path, monkeypatch):
    """A model.json may loosen the rule (``aggregates.min_ring_poor``, ``min_solidity``). The coarse read's candidates
    were picked with a ring share of at least 0.15 whatever the rule: in nuclei-dense stroma (30 % scattered nuclei:
    the ring reads under 0.15 at 10 µm/px) a rule asking no ring share found the TLS at 4 µm/px and lost it on a
    slide large enough to be read at 10 µm/px."""
    import weakstil.tumorbed.ink as ink
    from test_h47c_one_slide_read import _slide
    from weakstil.tumorbed.aggregates import AggregateRule, candidate_rule, slide_aggregates
    from weakstil.tumorbed.ink import SlideRead

    path, attrs, tls = _slide(tmp_path, nuclei=0.3)
    rule = AggregateRule(enabled=True, min_ring_poor=0.0, min_solidity=0.7)
    loose = candidate_rule(rule)
    assert loose.min_ring_poor <= rule.min_ring_poor and loose.min_solidity <= rule.min_solidity
    _, said4 = slide_aggregates(attrs, (125, 125), 8.0, rule, path, SlideRead(attrs, path))
    monkeypatch.setattr(ink, "INK_MAX_PIXELS", 10_000)  # read at 10 µm/px, as a 30 x 20 mm section is
    _, said10 = slide_aggregates(attrs, (125, 125), 8.0, rule, path, SlideRead(attrs, path))
    assert said4.startswith("aggregates: 1 found") and said10.startswith("aggregates: 1 found"), (said4, said10)


def test_a_damaged_slide_restored_with_its_size_and_mtime_is_read_again(tmp_path):
    """The front not read for damaged data is not retried while the file is as recorded. A good copy restored over
    it with the same size and its modification time kept (``cp -p`` or ``rsync -a`` of a scan damaged in transfer:
    a few flipped bytes, the source's mtime) was taken for the damaged file for good; its status-change time is new."""
    import os
    import time

    from weakstil.decode.jpeg_tiles import CorruptTileError
    from weakstil.tumorbed.front import damaged_as_recorded, unread_word

    slide = tmp_path / "s.tiff"
    slide.write_bytes(b"II*\0" + bytes(100))
    st = os.stat(slide)
    word = unread_word(CorruptTileError("the JPEG tile at level-0 x=0, y=0 is damaged (Corrupt JPEG data)",
                                        path=slide), slide)
    assert damaged_as_recorded(word, slide)  # the same file: fails the same way
    time.sleep(0.02)
    slide.write_bytes(b"II*\0" + bytes(range(100)))  # repaired in place, the same size
    os.utime(slide, ns=(st.st_atime_ns, st.st_mtime_ns))  # and its modification time kept
    assert os.stat(slide).st_size == st.st_size and os.stat(slide).st_mtime_ns == st.st_mtime_ns
    assert not damaged_as_recorded(word, slide)


def test_a_fine_aggregate_two_coarse_candidates_hold_is_counted_once(tmp_path, monkeypatch):
    """Two candidate pieces of the coarse read (a TLS split by its paler germinal centre there) both lead to the same
    aggregate on the 4 µm/px windows: it was counted twice in 'N found (x mm²)', its area twice."""
    import weakstil.tumorbed.ink as ink
    from test_h47c_one_slide_read import _slide
    from weakstil.stain import SlideStain
    from weakstil.tumorbed.aggregates import AggregateRule, _decided_finely
    from weakstil.tumorbed.ink import SlideRead

    path, attrs, tls = _slide(tmp_path)
    monkeypatch.setattr(ink, "INK_MAX_PIXELS", 10_000)
    read = SlideRead(attrs, path)
    read.thumbnail()
    assert read.mpp() == 10.0
    yy, xx = np.mgrid[:100, :100]
    candidates = ((yy - 24) ** 2 + (xx - 24) ** 2 <= 100) & (xx != 24)  # the TLS (radius 10 px) in two halves
    grid, found = _decided_finely(candidates, 10.0, read, SlideStain.from_attr(attrs["stain"]),
                                  AggregateRule(enabled=True), (125, 125), 8.0)
    assert len(found) == 1 and abs(found[0]["mm2"] - np.pi * 0.1 ** 2) < 0.15 * np.pi * 0.1 ** 2, found
    assert grid.sum() > 0


def test_a_large_aggregate_whose_coarse_read_fell_in_two_candidates_is_found(tmp_path, monkeypatch):
    """Each candidate is read again in a window of its own extent and a margin (120 µm). A large TLS (250 µm radius)
    whose coarse read fell in two candidates (its halves) was cut by both windows, so neither measured it: lost,
    where the 4 µm/px read finds it. A dense piece a candidate leads to that its window cuts is read again wider."""
    import weakstil.tumorbed.ink as ink
    from test_h47c_one_slide_read import HE, MAX_C, N
    from weakstil.stain import IO, SlideStain
    from weakstil.tumorbed.aggregates import AggregateRule, _decided_finely, slide_aggregates
    from weakstil.tumorbed.ink import SlideRead

    yy, xx = np.mgrid[:N, :N]
    h = np.full((N, N), 0.05, np.float32)
    tls = (yy - 500) ** 2 + (xx - 500) ** 2 <= 250 ** 2
    h[tls] = 0.9
    h[(yy - 500) ** 2 + (xx - 500) ** 2 <= 80 ** 2] = 0.4  # its germinal centre
    od = np.stack([h * MAX_C[0], np.full_like(h, 0.5 * MAX_C[1])], -1) @ HE.T
    path = write_tiff_slide(tmp_path / "s.tiff", np.clip(IO * np.exp(-od) - 1.0, 0, 255).astype(np.uint8), mpp=1.0)
    stain = SlideStain(HE.copy(), MAX_C.copy())
    attrs = {"slide_path": str(path), "slide_mpp": 1.0, "slide_width": N, "slide_height": N, "slide_id": "s",
             "stain": __import__("json").dumps(stain.to_dict()), "background": "none"}
    rule = AggregateRule(enabled=True)
    assert slide_aggregates(attrs, (125, 125), 8.0, rule, path, SlideRead(attrs, path))[1].startswith(
        "aggregates: 1 found")  # the 4 µm/px read
    monkeypatch.setattr(ink, "INK_MAX_PIXELS", 10_000)
    read = SlideRead(attrs, path)
    read.thumbnail()
    yy, xx = np.mgrid[:100, :100]
    halves = ((yy - 50) ** 2 + (xx - 50) ** 2 <= 25 ** 2) & (xx != 50)  # the TLS, two candidates at 10 µm/px
    grid, found = _decided_finely(halves, 10.0, read, stain, rule, (125, 125), 8.0)
    assert len(found) == 1 and abs(found[0]["mm2"] - np.pi * 0.25 ** 2) < 0.05 * np.pi * 0.25 ** 2, found
    assert grid.sum() * 64 / 1e6 > 0.9 * np.pi * 0.25 ** 2
