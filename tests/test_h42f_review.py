"""Review of session 68's merged code (helper h42f) and two gaps the fault tester left open.

- 983fa60 numbered a cohort CSV's rows by their line in the file; ``slide_list._records_at`` still took
  the record at ``line - 2``, so after a blank line a ``--slides`` CSV's (and the workflow's cohort)
  ``mpp`` column gave a slide the NEXT slide's scan resolution, and the last slide none.
- 2207bfb dropped ``OMP_NUM_THREADS=" 2"`` (a stray space), which libgomp and ``env_threads`` read as 2:
  a cluster job's thread limit was lost with a warning that called it invalid.
"""

from __future__ import annotations

import logging
import os


def test_mpp_column_after_a_blank_line_stays_with_its_slide(tmp_path):
    from weakstil.cohort import read_cohort
    from weakstil.slide_list import cohort_mpps, read_slide_list

    for name in ("a.svs", "b.svs", "c.svs"):
        (tmp_path / name).write_bytes(b"x")
    listed_csv = tmp_path / "list.csv"
    listed_csv.write_text("slide_id,path,mpp\r\nA,a.svs,0.25\r\n\r\nB,b.svs,0.5\r\nC,c.svs,0.3\r\n", encoding="utf-8")
    want = {str(tmp_path / "a.svs"): 0.25, str(tmp_path / "b.svs"): 0.5, str(tmp_path / "c.svs"): 0.3}
    assert read_slide_list(listed_csv).mpps == want  # was b: 0.3 (c's), c: none
    table = read_cohort(listed_csv, check_files=False, require_labels=False).table
    assert list(table["row"]) == [2, 4, 5]
    assert cohort_mpps(listed_csv, table) == {os.path.abspath(p): m for p, m in want.items()}


def test_omp_num_threads_with_spaces_is_kept_and_a_bad_one_dropped(monkeypatch, caplog):
    from weakstil.runtime import drop_bad_thread_env, env_threads

    for kept in (" 2", "2 ", "4, 2", "3"):
        monkeypatch.setenv("OMP_NUM_THREADS", kept)
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            drop_bad_thread_env()
        assert os.environ.get("OMP_NUM_THREADS") == kept and not caplog.records, kept
        assert env_threads() == int(kept.split(",")[0])
    for dropped in ("abc", "0", "2,", "  ", "\u00b2"):  # (a superscript two: isdigit(), and int() raised)
        monkeypatch.setenv("OMP_NUM_THREADS", dropped)
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            drop_bad_thread_env()
        assert "OMP_NUM_THREADS" not in os.environ and env_threads() is None, dropped
        assert any("OMP_NUM_THREADS" in r.getMessage() for r in caplog.records)


def _model_dir(tmp_path, name: str, **edits):
    import json

    folder = tmp_path / name
    folder.mkdir()
    meta = {"format": "weakstil-mil", "format_version": 1, "weights_sha256": "0" * 64,
            "architecture": {"input_dim": 8}, "encoder": {"name": "small-cnn", "weights_sha256": "1" * 64},
            "tiling": {"mpp": 0.5, "tile_px": 224}, "threshold": 30.0}
    for key, value in edits.items():
        section, _, field = key.rpartition("__")
        (meta[section] if section else meta)[field] = value
    (folder / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    (folder / "model.safetensors").write_bytes(b"not the recorded weights")
    return folder


def test_model_json_format_version_0_and_a_tile_size_field_are_refused(tmp_path):
    import pytest

    from weakstil.mil.identity import ModelError
    from weakstil.mil.store import load_model

    with pytest.raises(ModelError, match="does not match model.json"):  # the control gets past both checks
        load_model(_model_dir(tmp_path, "ok"))
    with pytest.raises(ModelError) as err:
        load_model(_model_dir(tmp_path, "v0", format_version=0))
    line = err.value.one_line()
    assert "model.json" in line and "'format_version' is 0" in line and "set it back to 1" in line
    for name, edit, field in (("tiling", {"tiling__tile_size": "224"}, "tiling.tile_size"),
                              ("top", {"tile_size": 256}, "tile_size")):
        with pytest.raises(ModelError) as err:
            load_model(_model_dir(tmp_path, name, **edit))
        line = err.value.one_line()
        assert f"model.json has '{field}'" in line and "224 px at 0.5 µm/px" in line and f"remove '{field}'" in line


def test_slide_list_repeated_rows_are_dropped_with_a_warning_and_conflicting_ones_refused(tmp_path, caplog):
    """A ``--slides`` CSV with a row twice refused the whole batch while a text list dropped a repeated line
    without a word, and a path-only CSV listing one file with two mpps took the last one silently."""
    import pytest

    from weakstil.errors import WeakSTILError
    from weakstil.slide_list import read_slide_list

    for name in ("a.svs", "b.svs"):
        (tmp_path / name).write_bytes(b"x")
    a, b = str(tmp_path / "a.svs"), str(tmp_path / "b.svs")
    lists = {"ids.csv": "slide_id,path,mpp\nA,a.svs,0.25\nB,b.svs,0.5\n\nA,a.svs,0.25\n",
             "paths.csv": "path,mpp\na.svs,0.25\nb.svs,0.5\n\na.svs,0.25\n",
             "list.txt": "a.svs\nb.svs\n\na.svs\n"}
    for name, text in lists.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        with caplog.at_level(logging.WARNING):
            caplog.clear()
            listed = read_slide_list(tmp_path / name)
        assert list(listed) == [a, b], name
        said = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
        want = "line 4 repeats line 1" if name == "list.txt" else "line 5 repeats line 2"  # (a text list: no header)
        assert len(said) == 1 and want in said[0] and name in said[0], (name, said)
        if name.endswith(".csv"):
            assert listed.mpps == {a: 0.25, b: 0.5}
    conflicts = {"ids2.csv": ("slide_id,path,mpp\nA,a.svs,0.25\nB,b.svs,0.5\nA,a.svs,0.5\n", "row 4 (A)", "row 2"),
                 "paths2.csv": ("path,mpp\na.svs,0.25\nb.svs,0.5\na.svs,0.5\n", "lines 2 and 4", "another mpp")}
    for name, (text, *words) in conflicts.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
        with pytest.raises(WeakSTILError) as err:
            read_slide_list(tmp_path / name)
        assert all(w in err.value.one_line() for w in words), err.value.one_line()
