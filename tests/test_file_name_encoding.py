"""Slide files whose names cannot be written into UTF-8 outputs (a Latin-1 name from an old file
share), or that the locale cannot encode (an ASCII locale with Python's UTF-8 mode off): one error
line naming the file and the fix, the batch goes on. Before, the first output of such a slide raised
"unexpected UnicodeEncodeError ... a bug" and stopped the batch."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import run_cli, write_disc_slide


def _latin1_copy(slide: Path) -> Path:
    """A copy of ``slide`` named 'Präparat.tiff' in Latin-1 bytes (not valid UTF-8)."""
    name = os.fsdecode(b"Pr\xe4parat.tiff")  # held by Python as 'Pr\udce4parat.tiff'
    target = slide.parent / name
    shutil.copyfile(slide, target)
    return target


def test_latin1_name_is_one_error_line_and_the_batch_goes_on(tmp_path):
    good = write_disc_slide(tmp_path / "Präparat_ok.tiff")
    bad = _latin1_copy(good)
    result = run_cli("tile", str(bad), str(good), "--out", str(tmp_path / "tiles"))
    assert result.returncode == 1
    assert "a bug" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    assert "Pr\\xe4parat.tiff" in lines[0] and "not valid UTF-8" in lines[0] and "Fix: rename" in lines[0]
    assert (tmp_path / "tiles" / "Präparat_ok.h5").is_file()  # the other slide went on
    assert sorted(p.name for p in (tmp_path / "tiles").iterdir() if not p.name.startswith(".weakstil")) == [
        "Präparat_ok.h5", "Präparat_ok_tiles.png"]  # nothing of the refused slide


def test_ascii_locale_names_the_locale_fix(tmp_path):
    """Under LC_ALL=C with UTF-8 mode and locale coercion off, Python's file-name encoding is ASCII:
    a UTF-8 name given on the command line, or read from a cohort CSV, is named with the fix."""
    slide = write_disc_slide(tmp_path / "Präparat.tiff")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
    run = subprocess.run([sys.executable, "-m", "weakstil", "info", slide.name], cwd=tmp_path, env=env,
                         capture_output=True)
    err = run.stderr.decode("ascii", "replace")
    assert run.returncode == 1, err
    assert "a bug" not in err and "locale (ascii file names) cannot encode" in err and "LC_ALL=C.UTF-8" in err
    csv = tmp_path / "cohort.csv"
    csv.write_text("slide_id,path,stil\nP1,Präparat.tiff,10\nP2,Präparat.tiff,20\n", encoding="utf-8")
    (tmp_path / "f").mkdir()
    run = subprocess.run([sys.executable, "-m", "weakstil", "train", str(csv), "--features", str(tmp_path / "f"),
                          "--out", str(tmp_path / "model")], cwd=tmp_path, env=env, capture_output=True)
    err = run.stderr.decode("ascii", "replace")
    assert run.returncode == 1, err
    assert "file not found" not in err and "cannot encode" in err, err
    assert not (tmp_path / "model").exists()
