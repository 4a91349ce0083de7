"""Helper h45d: ``evaluate --percent-as-written`` passes sTIL values that are percentages all under 1 %.

Old: ``evaluate --oof`` of another tool's predictions for a TIL-poor cohort, in percent (0.05 % for a slide
labelled 6 %), was refused as fractions when the predictions x 100 lay nearer the labels, and so were a TIL-poor
cohort's labels (all at most 1 %) when a model's predictions lay nearer them x 100; the fix said to multiply by 100,
and there was no way to say they are percentages. Now one option, defined once (``weakstil.cli.options``), skips
both checks and is recorded in metrics.json; without it they are refused as before, the fix naming it.
"""

import json

import pytest

COHORT = "slide_id,stil\nS1,6\nS2,0.5\nS3,0.2\nS4,0\nS5,1\nS6,0.8\n"
TOOL = "slide_id,stil_pred\nS1,0.05\nS2,0.01\nS3,0.0\nS4,0.0\nS5,0.02\nS6,0.01\n"  # a tool's TIL-poor answers, in %


def test_another_tools_predictions_in_percent_are_judged_as_written_when_said_so(tmp_path):
    from conftest import run_cli

    (tmp_path / "cohort.csv").write_text(COHORT)
    (tmp_path / "tool.csv").write_text(TOOL)
    res = run_cli("evaluate", tmp_path / "cohort.csv", "--oof", tmp_path / "tool.csv", "--out", tmp_path / "ev",
                  "--percent-as-written")
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert metrics["percent_as_written"] is True
    assert metrics["mae"] == pytest.approx((5.95 + 0.49 + 0.2 + 0 + 0.98 + 0.79) / 6)  # as written, not x 100


def test_without_it_they_are_refused_and_the_fix_names_it(tmp_path):
    from weakstil.errors import WeakSTILError
    from weakstil.evaluation import evaluate_oof

    (tmp_path / "cohort.csv").write_text(COHORT)
    (tmp_path / "tool.csv").write_text(TOOL)
    with pytest.raises(WeakSTILError, match="every prediction is at most 1") as err:
        evaluate_oof(tmp_path / "cohort.csv", tmp_path / "tool.csv", tmp_path / "ev")
    assert "--percent-as-written" in err.value.one_line()


def test_a_til_poor_cohorts_labels_in_percent_pass_when_said_so(tmp_path):
    """Labels all at most 1 % and a poor tool's predictions near them x 100: refused as fraction labels, unless said."""
    from weakstil.errors import WeakSTILError
    from weakstil.evaluation import evaluate_oof

    (tmp_path / "cohort.csv").write_text("slide_id,stil\nS1,0.5\nS2,0.2\nS3,1\nS4,0.8\n")
    (tmp_path / "tool.csv").write_text("slide_id,stil_pred\nS1,40\nS2,25\nS3,90\nS4,70\n")
    with pytest.raises(WeakSTILError, match="every sTIL label is at most 1") as err:
        evaluate_oof(tmp_path / "cohort.csv", tmp_path / "tool.csv", tmp_path / "ev")
    assert "--percent-as-written" in err.value.one_line()
    m = evaluate_oof(tmp_path / "cohort.csv", tmp_path / "tool.csv", tmp_path / "ev2", percent_as_written=True)
    assert m["percent_as_written"] is True and m["mae"] == pytest.approx((39.5 + 24.8 + 89 + 69.2) / 4)
