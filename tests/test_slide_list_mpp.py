"""A slide list's ``mpp`` column: one slide's scan resolution, where ``--slide-mpp`` states one for all.

A lab scoring a folder in which one scan lacks its µm/px (the TCGA SVS of ../shared/data) reached for
``score 'slides/*' --slide-mpp 0.25``, which read every other slide at that resolution too (a 0.5 µm/px
slide at half its size: 47.4 -> 21.1, hunt 32d). A CSV given to ``--slides`` may now carry an ``mpp``
column: the slides with a value are read at it, the others at their own.
"""

from __future__ import annotations

import shutil

import h5py
import pandas as pd
import pytest


def test_the_mpp_column_is_read_per_slide_and_a_bad_cell_is_one_line(tmp_path):
    from weakstil.errors import UsageError
    from weakstil.slide_list import SlideNaming, read_slide_list

    for name in ("a.svs", "b.svs", "c.svs"):
        (tmp_path / name).write_bytes(b"x")
    with_ids = tmp_path / "ids.csv"
    with_ids.write_text("slide_id,path,mpp\nA,a.svs,0.25\nB,b.svs,\nC,c.svs,\"0,5\"\n", encoding="utf-8")
    listed = read_slide_list(with_ids)
    naming = SlideNaming(listed.ids, listed.mpps)
    assert [naming.mpp_of(tmp_path / n, None) for n in ("a.svs", "b.svs", "c.svs")] == [0.25, None, 0.5]
    assert naming.mpp_of(tmp_path / "b.svs", 0.3) == 0.3  # an empty cell: --slide-mpp, else the file's own
    assert naming(tmp_path / "a.svs") == "A"

    paths_only = tmp_path / "paths.csv"  # no slide_id column: the files' names, the mpp column still read
    paths_only.write_text("path,mpp\n# not a slide,9\nb.svs,0.2525\na.svs,\n", encoding="utf-8")
    listed = read_slide_list(paths_only)
    assert listed.mpps == {str(tmp_path / "b.svs"): 0.2525}

    bad = tmp_path / "bad.csv"
    bad.write_text("slide_id,path,mpp\nA,a.svs,0.25\nB,b.svs,20x\n", encoding="utf-8")
    with pytest.raises(UsageError) as err:
        read_slide_list(bad)
    assert "b.svs" in err.value.one_line() and "'20x'" in err.value.one_line() and "empty" in err.value.one_line()


def test_a_tab_separated_list_is_one_line_saying_so_and_a_semicolon_one_is_read(tmp_path):
    """Hunt 34b: a slide list saved by a European spreadsheet (';', decimal commas) or as tab-separated
    text said "the slide list names no slide. Fix: write one slide path a line" (header path;mpp: it
    names one) or, with a slide_id column, asked for "the header slide_id,path,stil" (a cohort's, exit 1).
    A tab-separated list is one usage line naming the separator and a comma-separated list with a
    'path' column; a ';' list is read since hunt 39e, as the cohort reader reads one."""
    from weakstil.errors import UsageError
    from weakstil.slide_list import read_slide_list

    (tmp_path / "a.svs").write_bytes(b"x")
    (tmp_path / "tabs.txt").write_text("path\tmpp\na.svs\t0.5\n", encoding="utf-8")
    with pytest.raises(UsageError) as err:
        read_slide_list(tmp_path / "tabs.txt")
    said = str(err.value)
    assert "separated by" in said and "not commas" in said and "'path' column" in said, said
    assert "names no slide" not in said and "stil" not in said, said
    for name, text in (("paths.csv", "path;mpp\na.svs;0,5\n"), ("ids.csv", "slide_id;path\nA;a.svs\n")):
        (tmp_path / name).write_text(text, encoding="utf-8")
        assert read_slide_list(tmp_path / name) == [str(tmp_path / "a.svs")], name


def test_a_csv_whose_path_column_has_another_name_is_named_as_such(tmp_path):
    """Helper h37j (the checker's walk): another generator's labels 'image,case,til_pct,site' given to
    ``score --slides`` were read as a text list of paths: "none of the 3 slides it lists is there (first:
    image,case,til_pct,site). Fix: relative paths are read from the list's folder", though every file was
    there. Now it is named as a CSV without a 'path' column, with the column to rename."""
    from weakstil.errors import WeakSTILError
    from weakstil.slide_list import read_slide_list

    (tmp_path / "scans").mkdir()
    for name in ("A-1.tif", "A-2.tif"):
        (tmp_path / "scans" / name).write_bytes(b"x")
    labels = tmp_path / "ground_truth.csv"
    labels.write_text("image,case,til_pct,site\nscans/A-1.tif,A-1,5.5,c0\nscans/A-2.tif,A-2,40,c1\n", encoding="utf-8")
    with pytest.raises(WeakSTILError) as info:
        read_slide_list(labels)
    said = " ".join(str(info.value).split())
    assert "is a CSV without a 'path' column (its header: image,case,til_pct,site)" in said, said
    assert "Fix: rename 'image' to 'path' in the header" in said


def test_a_listed_mpp_reads_that_slide_only_and_the_others_keep_their_own(tmp_path, small_demo, one_torch_thread):
    from conftest import run_cli

    demo = small_demo[0]
    slides = sorted((demo / "cohort" / "slides").glob("*.tiff"))[:2]
    for s in slides:
        shutil.copyfile(s, tmp_path / s.name)
    listing = tmp_path / "batch.csv"
    listing.write_text(f"slide_id,path,mpp\nLAB-1,{slides[0].name},0.4\nLAB-2,{slides[1].name},\n", encoding="utf-8")

    r = run_cli("info", "--slides", listing)
    assert r.returncode == 0, r.stderr
    said = dict(line.split(": ", 1) for line in r.stdout.strip().splitlines())
    assert "0.4 µm/px (override)" in said[f"LAB-1 ({tmp_path / slides[0].name})"]  # the list's id leads (34j)
    assert "0.5 µm/px (metadata)" in said[f"LAB-2 ({tmp_path / slides[1].name})"]

    r = run_cli("score", "--slides", listing, "--model", demo / "model", "--out", tmp_path / "out")
    assert r.returncode == 0, r.stderr
    rows = pd.read_csv(tmp_path / "out" / "results.csv").set_index("slide_id")
    assert list(rows.index) == ["LAB-1", "LAB-2"] and set(rows["status"]) == {"ok"}
    recorded = {}
    for sid in rows.index:
        with h5py.File(tmp_path / "out" / f"{sid}.h5") as f:
            recorded[sid] = (round(float(f.attrs["slide_mpp"]), 4), str(f.attrs["slide_mpp_source"]))
    assert recorded == {"LAB-1": (0.4, "override"), "LAB-2": (0.5, "metadata")}
    assert "mpp_overridden" in str(rows.loc["LAB-1", "qc"]) and "mpp_overridden" not in str(rows.loc["LAB-2", "qc"])

    r = run_cli("score", "--slides", listing, "--model", demo / "model", "--out", tmp_path / "out")
    assert r.returncode == 0 and r.stderr.count("already scored") == 2, r.stderr  # the listed mpp is the request's
