"""Helper h43d: small defects noticed in earlier sessions.

- A ``--slides`` cohort CSV (slide_id,path) listing one file as ``a.svs`` and ``./a.svs`` (or its absolute path)
  under one id was refused as a "duplicate slide_id" although the row is a repeat of that slide; an exact repeat
  was dropped with a warning (helper h42f), and so is this now. Another cell (mpp) still refuses it.
- model.json's ``folds`` (the fold models) or ``training.cross_validation.folds`` retyped (``"5"``) was refused
  only when the fold models were loaded (score, evaluate of an ensemble model): evaluate of a 'final' model
  read it without a word, and the report of a model with ``cross_validation.folds: "5"`` said "5-fold". Now
  ``load_model`` and ``ModelDir.read_meta`` (the report) refuse it, one line naming model.json and the field.
- After a full disk stopped a ``score`` batch (busy() could not write a lock-failed slide's error row), each
  later slide another run held was still waited for (WEAKSTIL_LOCK_TIMEOUT, or for good): ``in_turn(stop=...)``.
- ``OMP_NUM_THREADS=+2`` (2 to libgomp and torch) was dropped with a warning: kept now.
- A single-level slide was read whole for each overview of a run (score: tissue mask, qc statistics, heatmap: 3
  times); now once, where its image takes at most 1/8 of the available memory, with the same pixels.
- ``scan_incomplete`` on a square section laid at 0° on flat glass: the glass round it, straight along rows and
  columns, counted as a cut; tissue the fill encloses (in a hole of it) is no longer counted.
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


def _model_json(folder, **edits):
    import json

    folder.mkdir()
    meta = {"format": "weakstil-mil", "format_version": 1, "weights_sha256": "0" * 64,
            "architecture": {"input_dim": 8}, "encoder": {"name": "small-cnn", "weights_sha256": "1" * 64},
            "tiling": {"mpp": 0.5, "tile_px": 224}, "threshold": 30.0, "scoring": "final",
            "training": {"cross_validation": {"folds": 2}},
            "folds": [{"file": "folds/fold_1_1.safetensors", "sha256": "2" * 64, "fold": 1, "member": 1}]}
    for key, value in edits.items():
        *parents, last = key.split(".")
        at = meta
        for k in parents:
            at = at[k]
        at[last] = value
    (folder / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"not the recorded weights")
    return folder


def test_a_retyped_folds_field_is_refused_when_the_model_is_opened(tmp_path):
    import pytest

    from conftest import run_cli
    from weakstil.errors import WeakSTILError
    from weakstil.mil.store import load_model
    from weakstil.modeldir import ModelDir

    assert ModelDir(_model_json(tmp_path / "fine")).read_meta()["folds"][0]["fold"] == 1  # as train writes them
    cases = {"folds": ("5", "'folds' is \"5\", not a list of fold model entries"),
             "training.cross_validation.folds": ("5", "'training.cross_validation.folds' is \"5\", not a positive "
                                                      "whole number")}
    for n, (key, (value, said)) in enumerate(cases.items()):
        folder = _model_json(tmp_path / f"m{n}", **{key: value})
        for open_it in (ModelDir(folder).read_meta, lambda: load_model(folder)):
            with pytest.raises(WeakSTILError) as err:
                open_it()
            line = err.value.one_line()
            assert line.startswith(f"{folder / 'model.json'}: ") and said in line, line
        if key == "training.cross_validation.folds":  # (the report read it as "5-fold cross-validation")
            result = run_cli("report", "--model", folder, "--out", tmp_path / "report")
            assert result.returncode == 1 and said in result.stderr, result.stderr
    newer = _model_json(tmp_path / "newer", format_version=2, folds="5")  # a newer train's: upgrade, not "not a list"
    assert ModelDir(newer).read_meta()["folds"] == "5"
    with pytest.raises(WeakSTILError, match="upgrade weakstil"):
        load_model(newer)


def test_in_turn_gives_no_more_items_once_stopped_and_waits_for_none(tmp_path, monkeypatch):
    """``in_turn(stop=...)``: once ``stop()`` is true (score's busy() met a full disk writing a lock-failed
    slide's error row) no item is given and none another run holds is waited for: each was waited for up to
    WEAKSTIL_LOCK_TIMEOUT (or for good) after the batch had stopped."""
    import errno
    import subprocess
    import sys
    import time

    import weakstil.locks as locks

    items = ["a", "b", "c", "d"]
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        "fds = [os.open(p, os.O_RDWR | os.O_CREAT) for p in sys.argv[1:]]\n"
        "for fd in fds: fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True); time.sleep(600)"), *(str(tmp_path / f".{i}.h5.lock") for i in ("a", "c"))],
        stdout=subprocess.PIPE, text=True)
    real_open = locks._open_lock

    def open_lock(path):
        if path.name == ".b.h5.lock":
            raise OSError(errno.ENAMETOOLONG, "File name too long", str(path))
        return real_open(path)

    monkeypatch.setattr(locks, "_open_lock", open_lock)
    monkeypatch.setenv("WEAKSTIL_LOCK_TIMEOUT", "2")
    busy: list[str] = []
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.monotonic()
        given = list(locks.in_turn(items, lambda i: tmp_path / f"{i}.h5", on_busy=lambda i, e: busy.append(i),
                                   stop=lambda: "b" in busy))
        took = time.monotonic() - t0
        assert given == [] and busy == ["b"] and took < 1.5, (given, busy, took)  # not d, not a waited for
        busy.clear()  # without a stop: d, then a and c each waited for
        monkeypatch.setenv("WEAKSTIL_LOCK_TIMEOUT", "0.3")
        given = list(locks.in_turn(items, lambda i: tmp_path / f"{i}.h5", on_busy=lambda i, e: busy.append(i)))
        assert given == ["d"] and busy == ["b", "a", "c"], (given, busy)
    finally:
        holder.kill()
        holder.wait()


def test_omp_num_threads_with_a_plus_sign_is_kept_as_libgomp_reads_it(monkeypatch, caplog):
    """``OMP_NUM_THREADS=+2``: libgomp (``strtoul``) and torch (``std::stoi``) run 2 threads without a word; it was
    dropped with "is not a whole number of threads" and the plans ignored it. A number libgomp refuses (out of
    ``unsigned long``: "Invalid value" printed by libgomp) is dropped now, as other bad values are."""
    import os

    from weakstil.runtime import drop_bad_thread_env, env_threads

    for kept, threads in (("+2", 2), (" +3 ", 3), ("+4,+2", 4), ("2, +1", 2)):
        monkeypatch.setenv("OMP_NUM_THREADS", kept)
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            drop_bad_thread_env()
        assert os.environ.get("OMP_NUM_THREADS") == kept and not caplog.records, kept
        assert env_threads() == threads, kept
    for dropped in ("++2", "+ 2", "-2", "+0", "99999999999999999999", "+\u00b2"):
        monkeypatch.setenv("OMP_NUM_THREADS", dropped)
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            drop_bad_thread_env()
        assert "OMP_NUM_THREADS" not in os.environ and env_threads() is None, dropped
        assert any(repr(dropped) in r.getMessage() for r in caplog.records), dropped


def test_a_single_level_slide_is_read_once_for_the_overviews_of_a_run(tmp_path, monkeypatch):
    import numpy as np

    import weakstil.slide as slide_mod
    import weakstil.slide_backend as backend
    from conftest import write_tiff_slide
    from weakstil.slide import Slide
    from weakstil.whole_level import whole_levels_kept

    rng = np.random.default_rng(0)
    rgb = np.full((700, 900, 3), 235, np.uint8)
    rgb[100:600, 150:800] = rng.integers(60, 220, (500, 650, 3), dtype=np.uint8)
    path = write_tiff_slide(tmp_path / "single.tiff", rgb, mpp=0.5, levels=1)
    read = []
    real = backend.OpenSlideBackend.read_region

    def counted(self, location, level, size):
        read.append(size[0] * size[1] if size[0] * size[1] > 64 else 0)  # (not Slide.open's probes of a pixel)
        return real(self, location, level, size)

    def overviews() -> list:
        out = []
        with whole_levels_kept():  # (a score run's: helper h43f)
            for mpp in (8.0, 4.0, 2.0):  # (as score's steps: each opens the slide itself)
                with Slide.open(path) as slide:
                    out.append(slide.read_thumbnail(mpp))
        return out

    monkeypatch.setattr(backend.OpenSlideBackend, "read_region", counted)
    monkeypatch.setattr(slide_mod, "LEVEL0_MEMORY_SHARE", 1 << 62, raising=False)  # no memory for it: as before
    before = overviews()
    assert sum(read) == 3 * 900 * 700
    read.clear()
    monkeypatch.setattr(slide_mod, "LEVEL0_MEMORY_SHARE", 8, raising=False)
    after = overviews()
    assert sum(read) == 900 * 700, sum(read) / (900 * 700)  # was read whole 3 times
    assert all(np.array_equal(a, b) for a, b in zip(before, after))  # the same overviews


def test_a_square_section_at_0_degrees_on_flat_glass_is_no_scan_gap_but_its_blanked_third_is(tmp_path):
    """The glass round a square section laid straight (0°) on flat glass is a region of one exact colour whose
    edge runs along rows and columns with tissue all along it: 4044 µm of "cut", flagged scan_incomplete
    (a 15° section was not: its outline is a JPEG block staircase). Tissue in a hole of the fill lies on it,
    as a section on its glass; a scanner's gap cuts tissue outside it (the blanked third: still a cut)."""
    import numpy as np

    from conftest import write_tiff_slide
    from test_h41h_scan_gap_staircase import _section_on_flat_glass
    from weakstil.qc.scan_gap import CUT_UM, scan_gap
    from weakstil.slide import Slide
    from weakstil.tissue import TissueParams, detect_tissue

    def cut(rgb: np.ndarray, name: str) -> tuple[float, int]:
        with Slide.open(write_tiff_slide(tmp_path / name, rgb, mpp=0.5, levels=3)) as slide:
            thumb = slide.read_thumbnail(4.0)
        return scan_gap(thumb, 4.0, detect_tissue(thumb, 4.0, TissueParams()), 2.0)

    rgb = _section_on_flat_glass(size=1600, degrees=0.0)
    clean = cut(rgb, "square.tiff")
    assert clean[0] < CUT_UM / 2 and clean[1] == 0, clean  # was (1984.0, 0): its whole outline
    for fill in (255, 0):
        third = rgb.copy()
        third[:, 2 * rgb.shape[1] // 3:] = fill  # the scanner stopped: the rest of the slide is white or black
        assert cut(third, f"third{fill}.tiff")[0] >= CUT_UM, fill
