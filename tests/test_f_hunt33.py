"""Hunt 33f: ``weakstil train`` then ``weakstil score`` from outside, on the researcher's path (fault matrix).

1. A folder lock that cannot be created hung the run for ever at full CPU, without a word: ``OutputLock``
   retried ``open(O_CREAT)`` on every ``FileNotFoundError`` (meant for another run removing the empty folder
   just then), and a lock path that gives ENOENT while its folder is there (a dangling link left as
   ``.OUT.lock``, ``--out /proc/x``, FUSE mounts that refuse new files so) gave it for ever: ``train -o
   /proc/x`` spun 5 min of CPU before it was killed. Now 20 tries, then one line naming the lock file (and
   the link's target, with the fix to remove it), exit 1.
2. ``score --slides LIST`` said of every list that is not UTF-8 "not UTF-8 text (a slide itself, or a
   spreadsheet file?)": a Windows 'CSV (Comma delimited)' save (Windows-1252), Excel's UTF-16 'Unicode
   Text' and a slide given as the list alike, where ``train`` names the line and what it says. Now the
   line and byte (as Windows-1252 reads it), UTF-16 or a workbook by name, and a slide given as the list
   is told to go on the command line.
3. ``train`` on labels written as fractions said it twice: a WARNING ('multiply them by 100 if so') and
   then the error of the same words; now the error alone.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pandas as pd

from conftest import run_cli
from planted import make_planted_cohort


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


def test_train_lock_file_that_cannot_be_made_is_one_line_not_a_hang(tmp_path):
    # a dangling link where train's folder lock goes: open(O_CREAT) follows it into a folder that is not there
    (tmp_path / ".model.lock").symlink_to(tmp_path / "gone" / "lock")
    try:  # a fresh interpreter with a time limit: the old code never returned
        proc = subprocess.run([sys.executable, "-m", "weakstil", "train", "cohort.csv", "-f", "features", "-o",
                               "model"], capture_output=True, text=True, timeout=60, cwd=tmp_path, env=os.environ)
    except subprocess.TimeoutExpired:
        raise AssertionError("train hung on a lock file it cannot create (the old endless retry)") from None
    assert proc.returncode == 1, proc.stderr
    errors = _errors(proc)
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert "cannot create the lock file .model.lock" in errors[0] and str(tmp_path / "gone" / "lock") in errors[0]
    assert "Fix: remove the link" in errors[0]
    assert not (tmp_path / "model").exists()


def _listing(tmp_path):
    slides = tmp_path / "slides"
    slides.mkdir()
    table = pd.DataFrame({"slide_id": ["S1", "Müller_2"], "path": ["slides/S1.svs", "slides/Müller_2.svs"]})
    return table.to_csv(index=False)


def test_slide_list_saved_as_windows_1252_names_its_line(tmp_path):
    listed = tmp_path / "list.csv"
    listed.write_bytes(_listing(tmp_path).encode("cp1252"))  # Excel's 'CSV (Comma delimited)' on Windows
    proc = run_cli("score", "--slides", listed, "-m", tmp_path / "model", "-o", tmp_path / "out")
    assert proc.returncode == 2
    (error,) = _errors(proc)
    assert "line 3 is not UTF-8 text (byte 0xFC; read as Windows-1252 it says 'Müller_2,slides/Müller_2.svs')" \
        in error, error
    assert "a slide itself" not in error and "'CSV UTF-8 (Comma delimited)'" in error
    assert not (tmp_path / "out").exists()


def test_slide_list_saved_as_unicode_text_or_a_slide_says_which(tmp_path):
    listed = tmp_path / "list.txt"
    listed.write_text(_listing(tmp_path), encoding="utf-16")  # Excel's 'Unicode Text'
    proc = run_cli("score", "--slides", listed, "-m", tmp_path / "model", "-o", tmp_path / "out")
    assert proc.returncode == 2
    (error,) = _errors(proc)
    assert "is UTF-16 text" in error and "a slide itself" not in error, error

    slide = tmp_path / "slides" / "S1.tiff"
    slide.write_bytes(b"II*\x00\x08\x00\x00\x00" + bytes(range(128, 256)))  # a TIFF's header and binary data
    proc = run_cli("score", "--slides", slide, "-m", tmp_path / "model", "-o", tmp_path / "out")
    assert proc.returncode == 2
    (error,) = _errors(proc)
    assert "is a TIFF image (a slide itself), not a slide list" in error
    assert "Fix: pass slides as arguments" in error, error
    assert not (tmp_path / "out").exists()


def test_train_on_fraction_labels_says_it_once(tmp_path):
    root = tmp_path / "cohort"
    table, _ = make_planted_cohort(root, 6, n_groups=3, seed=3, tiles=(20, 30))
    table.assign(stil=table["stil"] / 100).to_csv(root / "fractions.csv", index=False)
    proc = run_cli("train", root / "fractions.csv", "-f", root / "features", "-o", tmp_path / "model")
    assert proc.returncode == 1
    (error,) = _errors(proc)
    assert "every sTIL label is at most 1" in error
    # the old code warned the same words first ('... multiply them by 100 if so'), then refused
    assert proc.stderr.count("at most 1") == 1, proc.stderr
    assert not (tmp_path / "model").exists()
