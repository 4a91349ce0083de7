"""Round 35 (coordinator's own finds).

1. ``report --scores`` passed over a slide's score file that results.csv has no row of when the file
   could not be read (a run stopped, or a copy truncated, after the file and before its row): the report
   said "2 slides (2 ok ...)" of a run of 3 without a word, while the same file intact was reported and
   named ("have no row in its results.csv"). Now the unreadable file is named once with its fix (score
   that slide again into the folder; a rerun of ``score`` mends it).
"""

from __future__ import annotations

import shutil

import pandas as pd

from conftest import run_cli


def test_an_unreadable_score_file_without_a_row_is_named_by_the_report(tmp_path, small_demo):
    demo = small_demo[0]
    scores = tmp_path / "scores"
    scores.mkdir()
    table = pd.read_csv(demo / "scores" / "results.csv", dtype=str, keep_default_na=False)
    table = table[table["status"] == "ok"].iloc[:2]
    for sid in table["slide_id"]:
        for f in (demo / "scores").glob(f"{sid}[._]*"):
            shutil.copy(f, scores / f.name)
    shutil.copy(demo / "scores" / ".weakstil-output.json", scores)
    kept, lost = table["slide_id"]
    table[table["slide_id"] == kept].to_csv(scores / "results.csv", index=False)  # the lost slide's row never written
    data = (scores / f"{lost}.h5").read_bytes()
    (scores / f"{lost}.h5").write_bytes(data[: len(data) // 3])  # truncated
    r = run_cli("report", "--scores", scores, "--out", tmp_path / "rep")
    assert r.returncode == 0, r.stderr
    said = " ".join(r.stderr.split())
    assert f"{lost}.h5" in said and "no row in its results.csv and cannot be read" in said, said
    assert "Fix: run 'weakstil score' on that slide again with --out" in said, said  # (the log wraps the long path)
    page = (tmp_path / "rep" / "report.md").read_text(encoding="utf-8")
    assert kept in page
