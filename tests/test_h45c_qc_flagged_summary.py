"""Hunt 45c: train's closing qc line names the flags behind its share of flagged training slides.

An outside tester's 30-slide model said "47% of training slides flagged": every one of those 14 flags was
near_threshold (an interval holding the threshold of 30, intervals being wide), which the share alone read as
an alarm about the slides. The line now says which flags, and how many of each."""

from weakstil.qc.flags import flagged_summary


def test_flagged_summary_names_each_flag_with_its_count():
    cells = ["near_threshold", "", "near_threshold;out_of_distribution", "", "blurry;near_threshold", ""]
    assert flagged_summary(cells) == ("50% of training slides flagged "
                                      "(near_threshold 3, blurry 1, out_of_distribution 1)")
    assert flagged_summary(["", float("nan"), ""]) == "0% of training slides flagged"
    assert flagged_summary([]) == "no training slides"
