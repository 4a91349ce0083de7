"""Hunt 35h: long batches of ``weakstil score`` (hundreds of slides into one ``--out``), tried from outside.

What was wrong:

1. ``results.csv`` was parsed again before every slide (to see other runs' rows) and once more inside
   every rewrite, and rewritten whole after every slide, even after one skipped as already scored whose
   row it held unchanged. Each is O(rows), so a batch was quadratic in the table's size, and a rerun
   paid it for every finished slide: rerunning 159 entries (152 finished) into an ``--out`` whose
   results.csv held 2,919 rows took 53.0 s (0.31 s per skipped slide: 2 parses and 1 full rewrite
   each). A fresh 4-slide batch parsed the table 6 times; its rerun 9 times, with 4 identical rewrites.
2. In a log that is not a terminal (SLURM, ``nohup``, ``2> log``) the live bar shows nothing: a 159-slide
   batch wrote 816 lines of per-slide qc notes and not one saying how far it was or how long it had
   left; its summary said "152 of 159 slides scored" without naming the 7 failed files, whose error
   lines lay among the qc lines.

What is right now: a skipped slide whose row results.csv holds as it is is not written again (a moved
file's new path, an earlier run's refused file or a stale pattern row still are), and a table is parsed
again only when its bytes changed (another run's rewrite, an edit): the same rerun took 11.7 s; the
4-slide batch parses the table 3 times, its rerun once, writing nothing. A batch of 10 or more slides
logs ``57 of 300 slides done (2 failed), 3 min 10 s; about 13 min left`` at each tenth (the time left
from the pace since the last line, not diluted by skipped slides), and its summary is followed by
``7 not scored (...): a/synth_0009.tiff, bad/empty.svs, ...`` (ten names at most, then "N more").
"""

from __future__ import annotations

import os
import re

import pytest

from shared_cohorts import one_epoch_model_copy


def _counting(monkeypatch, module, name: str) -> list:
    """Calls of ``module.name`` (the real function still runs), appended to the returned list."""
    calls: list = []
    real = getattr(module, name)

    def counted(*args, **kwargs):
        calls.append(args[0] if args else None)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, counted)
    return calls


@pytest.fixture(scope="module")
def scored(tmp_path_factory, one_torch_thread_module):
    """The shared one-epoch model's 4 slides scored (their features cached) into ``OUT``, with the
    results.csv parses of that run: ``(opts, slides, labels, parses)``."""
    import weakstil.results_table as table_mod
    from weakstil.score import ScoreOptions, score_batch

    root = tmp_path_factory.mktemp("h35h")
    model, cohort, labels, features = one_epoch_model_copy(tmp_path_factory, root)
    slides = [cohort / p for p in labels["path"]]
    opts = ScoreOptions(model=model, out=root / "out", features=features, device="cpu", threads=1, workers=1)
    with pytest.MonkeyPatch.context() as mp:
        parses = _counting(mp, table_mod, "read_table")
        rows = score_batch(slides, opts, progress=False)
    assert [r["status"] for r in rows] == ["ok"] * len(slides)
    return opts, slides, labels, parses


def test_a_batch_parses_results_csv_once_per_slide(scored):
    opts, slides, _, parses = scored
    # before each slide (the file another run may have changed), not again in its rewrite (as just read)
    assert len(parses) <= len(slides), f"{len(parses)} parses of results.csv for {len(slides)} slides"


def test_a_rerun_of_finished_slides_neither_rewrites_nor_reparses_results_csv(scored, tmp_path, monkeypatch):
    import dataclasses
    import shutil

    import weakstil.results_table as table_mod
    import weakstil.score as score_mod
    from weakstil.score import score_batch

    opts, slides, labels, _ = scored
    out = tmp_path / "out"
    shutil.copytree(opts.out, out)
    opts = dataclasses.replace(opts, out=out)
    results = out / "results.csv"
    before, stat = results.read_bytes(), results.stat()
    parses = _counting(monkeypatch, table_mod, "read_table")
    writes = _counting(monkeypatch, score_mod, "write_results")
    again = score_batch(slides, opts, progress=False)
    assert sorted(again.skipped) == sorted(labels["slide_id"])
    assert writes == [], f"results.csv rewritten {len(writes)} times for {len(slides)} slides already in it"
    assert len(parses) <= 1, f"results.csv parsed {len(parses)} times in a rerun of {len(slides)} finished slides"
    assert results.read_bytes() == before and results.stat().st_ino == stat.st_ino

    # a finished slide found at another path: its row is written (the path it names now), the others not
    moved = tmp_path / "moved" / slides[0].name
    moved.parent.mkdir()
    os.link(slides[0], moved)
    writes.clear()
    score_batch([moved, *slides[1:]], opts, progress=False)
    assert len(writes) == 1
    assert str(moved) in results.read_text()


def test_results_csv_edited_between_reads_is_read_again(tmp_path):
    """The parse kept for an unchanged file never hides a change, even one of the same size."""
    from weakstil.results_table import read_previous

    path = tmp_path / "results.csv"
    path.write_text("slide_id,status,note\nS1,ok,aaa\n", encoding="utf-8")
    first = read_previous(path)
    first["S1"]["note"] = "changed by the caller"  # a caller's change stays its own
    assert read_previous(path)["S1"]["note"] == "aaa"
    path.write_text("slide_id,status,note\nS1,ok,bbb\n", encoding="utf-8")  # same size, edited in place
    assert read_previous(path)["S1"]["note"] == "bbb"
    tmp = tmp_path / "new.csv"
    tmp.write_text("slide_id,status,note\nS1,ok,ccc\n", encoding="utf-8")
    os.replace(tmp, path)  # another run's atomic rewrite
    assert read_previous(path)["S1"]["note"] == "ccc"


def test_a_batch_log_says_progress_and_names_the_failed_files(scored, tmp_path, monkeypatch):
    """In a log that is not a terminal (here: the test runner's), a batch says how far it is and how
    long it has left, and its summary names the files not scored, compactly."""
    import shutil

    import weakstil.cli.progress as progress
    from conftest import run_cli

    if hasattr(progress, "BatchLog"):  # (absent before hunt 35h: no progress lines)
        monkeypatch.setattr(progress.BatchLog, "MIN_SLIDES", 2)  # (10 in earnest)
    opts, slides, _, _ = scored
    out = tmp_path / "out"
    shutil.copytree(opts.out, out)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "empty.svs").write_bytes(b"")
    (bad / "notes.svs").write_text("not a slide\n", encoding="utf-8")
    proc = run_cli("score", "-m", opts.model, "-o", out, "-f", opts.features, "--threads", 1, "--workers", 1,
                   "--device", "cpu", *slides, bad / "empty.svs", bad / "notes.svs")
    assert proc.returncode == 1
    err = " ".join(proc.stderr.split())  # (rich wraps the log lines)
    assert "2 not scored (their error lines above; results.csv's error column): bad/empty.svs, bad/notes.svs" in err
    # (the seconds follow the machine's pace: a busy CI machine took 1 s; the line's shape is what is said)
    assert re.search(r"4 of 6 slides done, \d+ s; about \d+ s left", err) and "5 of 6 slides done (1 failed)" in err, err


def test_the_time_left_follows_the_pace_since_the_last_line(caplog):
    from weakstil.cli.progress import BatchLog

    now = [0.0]
    batch = BatchLog(100, clock=lambda: now[0])
    with caplog.at_level("INFO", logger="weakstil"):
        for i in range(30):  # 20 slides skipped as already scored (10 ms each), then slides of 2 s
            now[0] += 0.01 if i < 20 else 2.0
            batch.done({"status": "error" if i == 0 else "ok"})
    said = [r.getMessage() for r in caplog.records]
    assert said[0] == "10 of 100 slides done (1 failed), 0 s; about 1 s left", said
    # the last 10 slides took 20 s: 70 more take about 140 s (an average over all 30 said 70 x 0.67 s = 47 s)
    assert said[-1] == "30 of 100 slides done (1 failed), 20 s; about 2 min 20 s left", said
