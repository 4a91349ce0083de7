"""Review r46c's defects fixed by helper h47c.

- a front not read for damaged data (a corrupt JPEG tile only a shifted tile touches) was read again by every rerun
  of ``score``, failing the same way; now only a read error is retried, or the file once it has changed;
- a bed whose ink test trusted no plane (``not checked``: a degenerate stain plane) counted as the ink-plane rule and
  was flagged bed_unlike_training against a model trained under another rule, though no plane was used;
- the run's warning about such beds named a slide with no score (NaN sTIL, never flagged) as the first flagged one.
"""

from __future__ import annotations

import logging
import math
import os
from types import SimpleNamespace

from weakstil.errors import WeakSTILError


def _ctx(tmp_path):
    detector = SimpleNamespace(front=SimpleNamespace(enabled=True))
    opts = SimpleNamespace(cache_dir=tmp_path / "nocache", slide_id=lambda p: p.stem)
    return SimpleNamespace(beds=SimpleNamespace(detector=detector), opts=opts, encoder=lambda: object())


def test_a_front_not_read_for_damaged_data_is_not_read_again_until_the_file_changes(tmp_path):
    from weakstil.decode.jpeg_tiles import CorruptTileError
    from weakstil.score_state import _front_back
    from weakstil.tumorbed.front import FRONT_NOT_READ, unread_word

    slide = tmp_path / "s.tiff"
    slide.write_bytes(b"II*\0" + bytes(100))
    damaged = unread_word(CorruptTileError("the JPEG tile at level-0 x=448, y=224 is damaged (Corrupt JPEG data: 3 "
                                           "extraneous bytes before marker 0xd4)", path=slide), slide)
    io_error = unread_word(WeakSTILError("could not read the slide (Input/output error)", path=slide), slide)
    assert damaged.startswith("front: slide not read (damaged data [") and ";" not in damaged
    assert io_error == "front: slide not read (could not read the slide (Input/output error))"

    def back(word):
        attrs = {"tumorbed_front": FRONT_NOT_READ, "tumorbed_seed_vetoes": f"lymphoid: 0 tiles; ink: 0 tiles; {word}"}
        return _front_back(attrs, _ctx(tmp_path), slide)

    assert back(io_error) == "the slide was not read"  # a read error: tried again
    assert back(damaged) is None  # the same file: it fails the same way, kept (was: scored again on every run)
    st = os.stat(slide)
    os.utime(slide, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # copied or exported again
    assert back(damaged) == "the slide was not read"


def test_a_bed_whose_ink_test_used_no_plane_has_no_ink_rule():
    from weakstil.ink_plane import INK_PLANE_RULE, NOT_CHECKED, STAIN_PLANE
    from weakstil.qc.flags import bed_unlike_training
    from weakstil.tumorbed.resolver import bed_ink_rule

    trained = {"slides": {"model": 10}, "ink_plane_rules": {"0": 10}}  # a model trained on beds of rules 1 / 2
    plane = SimpleNamespace(ink_plane_rule=INK_PLANE_RULE, ink_test=STAIN_PLANE)
    unchecked = SimpleNamespace(ink_plane_rule=INK_PLANE_RULE, ink_test=NOT_CHECKED)
    assert bed_ink_rule(plane) == INK_PLANE_RULE and bed_unlike_training("model", trained, bed_ink_rule(plane))
    assert bed_ink_rule(unchecked) is None and bed_unlike_training("model", trained, bed_ink_rule(unchecked)) is None


def test_the_ink_rule_warning_names_the_first_scored_slide(caplog):
    from weakstil.ink_plane import INK_PLANE_RULE
    from weakstil.tumorbed.resolver import say_ink_rule_unlike_training

    trained = {"ink_plane_rules": {"0": 10}}
    said: set = set()
    with caplog.at_level(logging.WARNING):
        say_ink_rule_unlike_training(INK_PLANE_RULE, trained, "MODEL", "no_bed_slide", said, math.nan)
        assert not said and not caplog.records  # no score: not flagged, not named as the first flagged
        say_ink_rule_unlike_training(INK_PLANE_RULE, trained, "MODEL", "scored_slide", said, 12.5)
        say_ink_rule_unlike_training(INK_PLANE_RULE, trained, "MODEL", "second", said, 30.0)
    told = [r.getMessage() for r in caplog.records]
    assert len(told) == 1 and "(first: scored_slide)" in told[0] and said == {INK_PLANE_RULE}
