"""Review hunt 39k of session 65's new features: predictions of a European spreadsheet (``evaluate --oof``).

What was wrong: since hunt 39e ``evaluate --oof`` reads a ';'-separated predictions file with decimal commas,
but a column was converted only when every cell was a comma number: one cell written with a decimal point
('49.3256', typed over in a German Excel) or in Excel's scientific format ('4,93E+01') among 31 '24,5515'
cells left the whole column text, and the error said "32 predictions are not a number", naming the 31 good
cells first. A group column of comma numbers was converted too ('1,2' and '1,20' both 1.2).

What is right now: a column of comma and point decimals is one error naming a row of each (as the cohort
reader's labels); '4,93E+01' is read as 49.3; a cell in neither notation ('1.234,5') is named alone; a
group column is text ('1,2' and '1,20': two groups).
"""

from __future__ import annotations

import pytest

from weakstil.errors import WeakSTILError
from weakstil.evaluation import evaluate_oof

PRED = [41.5, 24.5515, 8.25, 63.0]
TRUTH = [45.0, 20.0, 5.0, 70.0]


def _files(tmp_path, first: str, groups=("1,2", "1,20", "1,2", "1,20")):
    cohort = tmp_path / "labels.csv"
    cohort.write_text("slide_id;path;stil;group\n" + "".join(
        f"s{i};s{i}.tiff;{str(t).replace('.', ',')};{g}\n" for i, (t, g) in enumerate(zip(TRUTH, groups))))
    oof = tmp_path / "oof.csv"
    cells = [first] + [str(p).replace(".", ",") for p in PRED[1:]]
    oof.write_text("slide_id;stil_pred;fold;group\n" + "".join(
        f"s{i};{c};{i % 2 + 1};{g}\n" for i, (c, g) in enumerate(zip(cells, groups))))
    return cohort, oof


def test_mixed_decimal_marks_are_named_and_excel_scientific_is_read(tmp_path):
    cohort, oof = _files(tmp_path, "41.5")
    with pytest.raises(WeakSTILError, match=r"column stil_pred has numbers with a decimal comma \(row 3: 24,5515\) "
                                            r"and with a decimal point \(row 2: 41.5\)"):
        evaluate_oof(cohort, oof, tmp_path / "a")  # was "4 predictions are not a number" (row 3: '24,5515', ...)
    cohort, oof = _files(tmp_path, "4,15E+01")
    metrics = evaluate_oof(cohort, oof, tmp_path / "b")
    assert metrics["mae"] == pytest.approx(sum(abs(p - t) for p, t in zip(PRED, TRUTH)) / 4, abs=1e-9)
    assert sorted((str(g["group"]), g["n"]) for g in metrics["by_group"]) == [("1,2", 2), ("1,20", 2)]
    cohort, oof = _files(tmp_path, "1.234,5")
    with pytest.raises(WeakSTILError, match=r"1 prediction is not a number: row 2 \(s0\): '1.234,5'"):
        evaluate_oof(cohort, oof, tmp_path / "c")
