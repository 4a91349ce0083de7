"""Helper h43d: small defects noticed in earlier sessions.

- A ``--slides`` cohort CSV (slide_id,path) listing one file as ``a.svs`` and ``./a.svs`` (or its absolute path)
  under one id was refused as a "duplicate slide_id" although the row is a repeat of that slide; an exact repeat
  was dropped with a warning (helper h42f), and so is this now. Another cell (mpp) still refuses it.
"""

from __future__ import annotations

import logging


def test_cohort_slide_list_repeating_one_file_under_another_spelling_is_a_repeat(tmp_path, caplog):
    import pytest

    from weakstil.errors import WeakSTILError
    from weakstil.slide_list import read_slide_list

    for name in ("a.svs", "b.svs"):
        (tmp_path / name).write_bytes(b"x")
    a, b = str(tmp_path / "a.svs"), str(tmp_path / "b.svs")
    listed_csv = tmp_path / "ids.csv"
    for other in ("./a.svs", a, "sub/../a.svs"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        listed_csv.write_text(f"slide_id,path,mpp\nA,a.svs,0.25\nB,b.svs,0.5\nA,{other},0.25\n", encoding="utf-8")
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            listed = read_slide_list(listed_csv)  # was "row 4 (A): duplicate slide_id (first on row 2)"
        assert list(listed) == [a, b] and listed.mpps == {a: 0.25, b: 0.5}, other
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(said) == 1 and "line 4 repeats line 2 (A)" in said[0], (other, said)
    listed_csv.write_text("slide_id,path,mpp\nA,a.svs,0.25\nB,b.svs,0.5\nA,./a.svs,0.5\n", encoding="utf-8")
    with pytest.raises(WeakSTILError) as err:  # another mpp of that file: still a duplicate slide_id
        read_slide_list(listed_csv)
    assert "row 4 (A): duplicate slide_id (first on row 2)" in err.value.one_line()
    listed_csv.write_text("slide_id,path\nA,a.svs\nA,b.svs\n", encoding="utf-8")
    with pytest.raises(WeakSTILError) as err:  # another file under that id: refused as before
        read_slide_list(listed_csv)
    assert "duplicate slide_id" in err.value.one_line()
