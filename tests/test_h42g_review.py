"""Review of helper h42f's merge (4a83629..a4bd3fe), helper h42g.

- 0891e84 refused a path-only ``--slides`` CSV that lists one file twice under two spellings (``a.svs`` and
  ``./a.svs``, or its absolute path) with the same mpp: "lines 2 and 3 both list a.svs, with another path
  ('a.svs', './a.svs')". The path cell was compared as written although both rows name that one file; before
  it the list was read (the file scored once), and a text list drops such a line with a warning.
- f28d074 refuses a ``tiling`` field WeakSTIL does not read, checked before ``format_version``: a model of a
  newer ``weakstil train`` (format_version 2) with a new tiling field was "which WeakSTIL does not read ...
  Fix: remove 'tiling.overlap_px' from model.json", not "newer than this weakstil understands. Fix: upgrade".
- (before this merge) a path-only CSV with a blank line above its header named no slide.
- ``drop_bad_thread_env`` left ``OMP_NUM_THREADS=""`` in place, for which libgomp prints its bare line.
"""

from __future__ import annotations

import logging


def test_path_csv_listing_one_file_under_two_spellings_is_that_file_once(tmp_path, caplog):
    import pytest

    from weakstil.errors import WeakSTILError
    from weakstil.slide_list import read_slide_list

    for name in ("a.svs", "b.svs"):
        (tmp_path / name).write_bytes(b"x")
    a, b = str(tmp_path / "a.svs"), str(tmp_path / "b.svs")
    for other in ("./a.svs", a, "sub/../a.svs"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        listed_csv = tmp_path / "paths.csv"
        listed_csv.write_text(f"path,mpp\na.svs,0.25\nb.svs,0.5\n{other},0.25\n", encoding="utf-8")
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            listed = read_slide_list(listed_csv)  # was refused: "with another path ('a.svs', './a.svs')"
        assert list(listed) == [a, b] and listed.mpps == {a: 0.25, b: 0.5}, other
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        assert len(said) == 1 and "line 4 repeats line 2" in said[0], (other, said)
    listed_csv.write_text("path,mpp\na.svs,0.25\nb.svs,0.5\n./a.svs,0.5\n", encoding="utf-8")
    with pytest.raises(WeakSTILError) as err:  # another mpp of that file: still refused, naming the mpp
        read_slide_list(listed_csv)
    line = err.value.one_line()
    assert "lines 2 and 4" in line and "another mpp ('0.25', '0.5')" in line, line


def test_a_newer_model_format_says_upgrade_before_its_unknown_fields(tmp_path):
    import json

    import pytest

    from weakstil.mil.identity import ModelError
    from weakstil.mil.store import load_model

    def model(name: str, version: int):
        folder = tmp_path / name
        folder.mkdir()
        meta = {"format": "weakstil-mil", "format_version": version, "weights_sha256": "0" * 64,
                "architecture": {"input_dim": 8}, "encoder": {"name": "small-cnn", "weights_sha256": "1" * 64},
                "tiling": {"mpp": 0.5, "tile_px": 224, "overlap_px": 32}, "threshold": 30.0}
        (folder / "model.json").write_text(json.dumps(meta), encoding="utf-8")
        (folder / "model.safetensors").write_bytes(b"not the recorded weights")
        return folder

    with pytest.raises(ModelError) as err:
        load_model(model("v2", 2))
    line = err.value.one_line()
    assert "newer than this weakstil understands (1)" in line and "upgrade weakstil" in line, line
    with pytest.raises(ModelError) as err:  # this version's model.json: the unread field is still refused
        load_model(model("v1", 1))
    assert "model.json has 'tiling.overlap_px'" in err.value.one_line()


def test_an_empty_omp_num_threads_is_taken_out_without_a_word(monkeypatch, caplog):
    """``export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK`` outside a job sets it to "": it was left for libgomp
    (the comment said libgomp reads it as unset), which printed "libgomp: Invalid value for environment
    variable OMP_NUM_THREADS" in every run and worker (checked: ``OMP_NUM_THREADS= python -c 'import torch'``)."""
    import os

    from weakstil.runtime import drop_bad_thread_env, env_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "")
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        drop_bad_thread_env()
    assert "OMP_NUM_THREADS" not in os.environ and env_threads() is None
    assert not caplog.records  # an empty value is no mistake to warn of: as unset
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    drop_bad_thread_env()
    assert os.environ["OMP_NUM_THREADS"] == "3"


def test_path_csv_with_blank_lines_above_its_header_is_read(tmp_path):
    """A path-only ``--slides`` CSV with a blank line above ``path,mpp`` (read_slide_list finds the header
    below it): csv.DictReader took the blank line as the header and the list "names no slide"."""
    import pytest

    from weakstil.errors import UsageError
    from weakstil.slide_list import read_slide_list

    for name in ("a.svs", "b.svs"):
        (tmp_path / name).write_bytes(b"x")
    listed_csv = tmp_path / "paths.csv"
    listed_csv.write_text("\n  \npath,mpp\na.svs,0.25\nb.svs,0.5\n", encoding="utf-8")
    listed = read_slide_list(listed_csv)
    a, b = str(tmp_path / "a.svs"), str(tmp_path / "b.svs")
    assert list(listed) == [a, b] and listed.mpps == {a: 0.25, b: 0.5}
    listed_csv.write_text("\n  \npath,mpp\na.svs,0.25\nb.svs,99\n", encoding="utf-8")
    with pytest.raises(UsageError, match="the mpp of line 5 "):  # the file's line, blank lines counted
        read_slide_list(listed_csv)


def test_path_csv_rows_are_named_by_the_line_they_start_on(tmp_path, caplog):
    """A quoted cell over two lines (a note): the path-only reader named a row by its last line ("line 6
    repeats line 3"), the cohort reader (a slide_id CSV) by its first."""
    from weakstil.slide_list import read_slide_list

    for name in ("a.svs", "b.svs"):
        (tmp_path / name).write_bytes(b"x")
    listed_csv = tmp_path / "paths.csv"
    listed_csv.write_text('path,mpp,note\na.svs,0.25,"x\ny"\nb.svs,0.3,z\n\na.svs,0.25,"x\ny"\n', encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        caplog.clear()
        assert len(read_slide_list(listed_csv)) == 2
    said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(said) == 1 and "line 6 repeats line 2" in said[0], said
