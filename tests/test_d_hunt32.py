"""Hunt 32d: a lab's batch run from outside (the fault matrix); hunt 34e: tile and info say they do not use a
list's slide_id column (they said its ids named their slides); hunt 34j: ``info --slides LIST.csv`` printed
file paths only, never the list's slide_id: each line is ``LAB-001 (PATH): ...`` now.

- ``score --slides LIST`` existed, but ``tile``, ``embed``, ``info`` and ``pretrain`` took no ``--slides``
  (usage error, exit 2): a lab's list had to be pasted with ``$(cat LIST)``, which splits paths with spaces.
  One shared option definition (``weakstil.cli.options.SlideListOpt``) now serves them all.
- ``score --slides cohort.csv`` named each slide's outputs and results.csv row after the file's name, not
  the CSV's own ``slide_id`` column (a lab's ids: ``LAB-001``), with only a warning; a lab joined its
  results to its ids by hand. The CSV's ids name them now (and ``embed``'s caches, which ``train`` finds by
  the same ids); two rows with one id are refused in one line naming both rows.
"""

from __future__ import annotations

import shutil

import pandas as pd


def _copy_slides(small_demo, tmp_path, n=2):
    slides = sorted((small_demo[0] / "cohort" / "slides").glob("*.tiff"))[:n]
    (tmp_path / "scans 7").mkdir()
    copies = []
    for i, s in enumerate(slides):
        copies.append(tmp_path / "scans 7" / f"Scan {i} é.tiff")
        shutil.copyfile(s, copies[-1])
    return copies


def test_every_slide_command_takes_a_slide_list(tmp_path, small_demo, one_torch_thread):
    """info, tile and embed read the list as score does (paths with spaces whole, relative to the list)."""
    from conftest import run_cli

    copies = _copy_slides(small_demo, tmp_path)
    listing = tmp_path / "batch.txt"
    listing.write_text("# batch 7\n" + "".join(f"scans 7/{c.name}\n" for c in copies), encoding="utf-8")
    r = run_cli("info", "--slides", listing)
    assert r.returncode == 0, r.stderr
    assert all(str(c) in r.stdout for c in copies)
    r = run_cli("tile", "--slides", listing, "--out", tmp_path / "tiles")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "tiles").glob("*.h5")) == ["Scan 0 é.h5", "Scan 1 é.h5"]
    r = run_cli("info")  # neither slides nor a list: the usage line names --slides
    assert r.returncode == 2 and "--slides LIST" in r.stderr


def test_score_and_embed_name_slides_by_the_lists_slide_id(tmp_path, small_demo, one_torch_thread):
    from conftest import run_cli

    demo = small_demo[0]
    copies = _copy_slides(small_demo, tmp_path)
    cohort = tmp_path / "batch7.csv"
    (tmp_path / "batch.txt").write_text("".join(f"{c}\n" for c in copies), encoding="utf-8")
    cohort.write_text("slide_id,path\nLAB-001,scans 7/Scan 0 é.tiff\nLAB-002,scans 7/Scan 1 é.tiff\n"
                      "LAB-003,scans 7/missing.tiff\n", encoding="utf-8")
    # outlines named by the lab's id or by the slide file's name are both found
    (tmp_path / "beds").mkdir()
    truth = sorted((demo / "cohort" / "truth").glob("*_tumorbed.geojson"))[:2]
    shutil.copyfile(truth[0], tmp_path / "beds" / "LAB-001.geojson")
    shutil.copyfile(truth[1], tmp_path / "beds" / "Scan 1 é.geojson")
    r = run_cli("score", "--slides", cohort, "--model", demo / "model", "--out", tmp_path / "out",
                "--annotations", tmp_path / "beds")
    assert r.returncode == 1, r.stderr  # the missing slide: its error row, under its id
    assert "match no slide" not in r.stderr
    rows = pd.read_csv(tmp_path / "out" / "results.csv", keep_default_na=False).set_index("slide_id")
    assert sorted(rows.index) == ["LAB-001", "LAB-002", "LAB-003"]  # was: Scan 0 é, Scan 1 é, missing
    assert rows.loc["LAB-001", "path"] == str(copies[0]) and rows.loc["LAB-001", "status"] == "ok"
    assert rows.loc["LAB-003", "status"] == "error"
    assert list(rows.loc[["LAB-001", "LAB-002"], "tumorbed_source"]) == ["annotation", "annotation"]
    for sid in ("LAB-001", "LAB-002"):
        assert all((tmp_path / "out" / f"{sid}{s}").is_file() for s in (".h5", "_heatmap.png", ".geojson"))
    assert not list((tmp_path / "out").glob("Scan*"))
    r = run_cli("score", "--slides", cohort, "--model", demo / "model", "--out", tmp_path / "out",
                "--annotations", tmp_path / "beds")
    assert "LAB-001: already scored" in r.stderr and "LAB-002: already scored" in r.stderr  # a rerun resumes
    # embed names its caches by the same ids, which train and score --features find
    r = run_cli("embed", "--slides", cohort, "--out", tmp_path / "feats", "--encoder", "small-cnn",
                "--weights", "random")
    assert sorted(p.name for p in (tmp_path / "feats").glob("*.h5")) == ["LAB-001.h5", "LAB-002.h5"]
    # caches embedded earlier by the files' names are used, not embedded again under the ids
    r = run_cli("embed", "--slides", tmp_path / "batch.txt", "--out", tmp_path / "by_name", "--encoder", demo / "model"
                / "encoder")
    assert r.returncode == 0, r.stderr
    r = run_cli("score", "--slides", cohort, "--model", demo / "model", "--features", tmp_path / "by_name", "--out",
                tmp_path / "out2")
    assert sorted(pd.read_csv(tmp_path / "out2" / "results.csv")["slide_id"]) == ["LAB-001", "LAB-002", "LAB-003"]
    assert sorted(p.name for p in (tmp_path / "by_name").glob("*.h5")) == ["Scan 0 é.h5", "Scan 1 é.h5"]
    # two rows under one id: one line naming the CSV and both rows, nothing written
    dup = tmp_path / "dup.csv"
    dup.write_text("slide_id,path\nLAB-001,scans 7/Scan 0 é.tiff\nLAB-001,scans 7/Scan 1 é.tiff\n", encoding="utf-8")
    r = run_cli("score", "--slides", dup, "--model", demo / "model", "--out", tmp_path / "dup_out")
    said = " ".join(r.stderr.split())
    assert r.returncode == 1 and f"error: {dup}:" in said and "duplicate slide_id (first on row 2)" in said
    assert not (tmp_path / "dup_out").exists()


def test_slide_list_written_on_windows_or_typed_with_composed_accents(tmp_path):
    """A text list (or a path-only CSV) written on Windows (``scans\\S1.svs``) or typed with accents
    composed beside macOS's decomposed file names was 'file not found' for every slide ("none of the 2
    slides it lists is there"), where ``train`` reads such a cohort CSV; each names its file now."""
    import unicodedata

    from weakstil.slide_list import read_slide_list

    (tmp_path / "scans").mkdir()
    plain = tmp_path / "scans" / "S1.svs"
    accented = tmp_path / "scans" / unicodedata.normalize("NFD", "Café 2.svs")
    for f in (plain, accented):
        f.write_bytes(b"x")
    typed = unicodedata.normalize("NFC", "Café 2.svs")
    (tmp_path / "win.txt").write_text(f"scans\\S1.svs\r\nscans\\{typed}\r\n", encoding="utf-8")
    assert read_slide_list(tmp_path / "win.txt") == [str(plain), str(accented)]
    (tmp_path / "paths.csv").write_text(f'path\nscans\\S1.svs\n"scans/{typed}"\n', encoding="utf-8")
    assert read_slide_list(tmp_path / "paths.csv") == [str(plain), str(accented)]
    (tmp_path / "ids.csv").write_text(f'slide_id,path\nP1,scans\\S1.svs\nP2,"scans/{typed}"\n', encoding="utf-8")
    listed = read_slide_list(tmp_path / "ids.csv")
    assert listed == [str(plain), str(accented)] and listed.ids == {str(plain): "P1", str(accented): "P2"}


def test_slides_whose_names_differ_only_in_case_are_one_id(tmp_path, cmu):
    """``S1.svs`` and ``s1.SVS`` were two slides whose outputs (``S1.h5``, ``s1.h5``) are one file on a
    case-insensitive --out (macOS, Windows, an SMB share): the second overwrote the first's. The second
    listed is refused in one line naming both, as a cohort CSV refuses such ids; the first goes on."""
    from conftest import run_cli

    upper, lower = tmp_path / "CMU-1.svs", tmp_path / "cmu-1.SVS"
    shutil.copyfile(cmu, upper)
    shutil.copyfile(cmu, lower)
    r = run_cli("tile", upper, lower, "--out", tmp_path / "tiles")
    said = " ".join(r.stderr.split())
    assert r.returncode == 1, r.stderr
    assert f"error: {lower}: has the slide id 'cmu-1', which differs only in case from 'CMU-1' of {upper}" in said
    assert sorted(p.name for p in (tmp_path / "tiles").iterdir() if not p.name.startswith(".")) == \
        ["CMU-1.h5", "CMU-1_tiles.png"]


def test_one_file_under_two_ids_of_a_list_is_refused(tmp_path):
    """Two rows of a list naming one file under two ids: it was scored once under the second id and
    the first id had no row, without a word."""
    import pytest

    from weakstil.errors import WeakSTILError
    from weakstil.slide_list import read_slide_list

    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "a.svs").write_bytes(b"x")
    (tmp_path / "twice.csv").write_text("slide_id,path\nA1,s/a.svs\nA2,./s/a.svs\n")
    with pytest.raises(WeakSTILError, match="slide ids A1 and A2 name the same file"):
        read_slide_list(tmp_path / "twice.csv")


def test_tile_and_info_say_the_lists_slide_id_is_not_theirs(tmp_path, cmu):
    """Hunt 34e: ``tile --slides LIST`` of a CSV with a ``slide_id`` column logged "1 slide(s) named by the
    list's slide_id column, not their file's name" and wrote ``CMU-1-Small-Region.h5`` (tiles go by the slide
    file, as ``tumorbed train`` finds them); ``info`` said the same. They now say the column is not used."""
    from conftest import run_cli

    ids = tmp_path / "ids.csv"
    ids.write_text(f"slide_id,path\nLAB-001,{cmu}\n", encoding="utf-8")
    r = run_cli("tile", "--slides", ids, "--out", tmp_path / "tiles")
    said = " ".join(r.stderr.split())
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path / "tiles").glob("*.h5")] == [f"{cmu.stem}.h5"]
    assert "named by the list's slide_id column" not in said, said
    assert "its slide_id column is not used by this command: 1 slide(s) go by their file's name" in said, said
    r = run_cli("info", "--slides", ids)
    assert r.returncode == 0 and "named by the list's slide_id column" not in " ".join(r.stderr.split())
    # hunt 34j: info printed the file path only, the list's id nowhere; it leads each line now, path kept
    assert r.stdout.startswith(f"LAB-001 ({cmu}): "), r.stdout
    assert "not used by this command" not in r.stderr, r.stderr
