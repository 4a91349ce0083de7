"""Hunt 44b review (h44n): the ink test's "adapted" message where the own plane is taken with under 1 % of the tissue
off the refitted one (h44j's rule (2): og44b_015, _018 rotated). It said "0 % of the stained tissue is no mix of the
slide's estimated haematoxylin and eosin ... (0 % off them)": a claim about none of the tissue, said as news."""

import logging

import pytest


@pytest.mark.parametrize("share, again, said, off", [(0.0052, 0.0020, "0.52 %", "0.2 %"),
                                                     (0.0204, 0.00002, "2.0 %", "0.002 %"),
                                                     (0.587, 0.029, "59 %", "2.9 %")])
def test_the_adapted_message_says_the_share_it_measured(caplog, share, again, said, off):
    from weakstil.ink_plane import _say_refitted

    with caplog.at_level(logging.INFO, logger="weakstil.ink_plane"):
        _say_refitted(None, share, again)
    told = [r.getMessage() for r in caplog.records if r.name == "weakstil.ink_plane"]
    assert len(told) == 1 and told[0].startswith("ink check adapted"), told
    assert told[0].split(" of the stained tissue")[0].endswith(said), told
    assert f"({off} off them)" in told[0], told
    assert " 0 % " not in told[0] and "(0 %" not in told[0], told


def test_a_lost_check_still_says_whole_percent(caplog):
    from weakstil.ink_plane import _say_refitted

    with caplog.at_level(logging.INFO, logger="weakstil.ink_plane"):
        _say_refitted(None, 0.93, 0.71)
    told = [r.getMessage() for r in caplog.records if r.name == "weakstil.ink_plane"]
    assert told and told[0].startswith("ink over tissue not checked: 93 % of") and "and 71 % lies off" in told[0], told
