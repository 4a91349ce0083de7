"""Defects noticed in earlier rounds and mended by helper h40d (each test fails on 2458714).

1. A ``--slides`` list whose first line is Excel's separator hint (``sep=;``): the line was read as a
   slide path ("sep=;: file not found", and a ';' list's header ``path`` as a second missing slide: "2 of
   4 slides scored"), where the cohort reader refuses it in one line; now the same one line, exit 2.
2. ``weakstil -q embed`` (and ``-q tile``) printed nothing at all of a batch that succeeded, where
   ``-q score`` and the others print their closing line (hunt 39k); now '2 of 2 slides embedded -> OUT'.
"""

from __future__ import annotations

import pytest

from conftest import run_cli, write_disc_slide


def _said(stderr: str) -> str:
    return " ".join(stderr.split())


@pytest.mark.parametrize("hint, said", [("sep=;", "--slides: the CSV is separated by ';', not commas"),
                                        ("sep=,", "--slides: the first line 'sep=,' is a spreadsheet's separator hint")])
def test_a_slide_lists_separator_hint_is_refused_as_the_cohort_reader_refuses_it(tmp_path, hint, said):
    listed = tmp_path / "list.csv"
    listed.write_text(f"{hint}\npath\nslides/a.svs\n", encoding="utf-8")
    r = run_cli("score", "--model", tmp_path / "no-model", "--slides", listed, "-o", tmp_path / "out")
    assert r.returncode == 2 and said in _said(r.stderr) and str(listed) in _said(r.stderr), r.stderr
    assert "Fix: " in r.stderr and "sep=;: file not found" not in r.stderr and not (tmp_path / "out").exists()


def test_quiet_embed_and_tile_say_their_closing_line(tmp_path):
    slide = write_disc_slide(tmp_path / "disc.tiff")
    r = run_cli("-q", "embed", slide, "-o", tmp_path / "feat", "--encoder", "small-cnn", "--weights", "random")
    assert r.returncode == 0 and (tmp_path / "feat" / "disc.h5").is_file(), r.stderr
    said = _said(r.stderr)
    assert said.startswith("INFO 1 of 1 slides embedded ->") and said.count("INFO") == 1, r.stderr  # was ''
    r = run_cli("-q", "tile", slide, "-o", tmp_path / "tiles")
    assert r.returncode == 0 and _said(r.stderr).startswith("INFO 1 of 1 slides tiled ->"), r.stderr
