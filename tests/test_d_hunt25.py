"""Hunt 25 (d): an outsider's fault matrix on the researcher's and the lab's paths.

* A slide whose colour is stored as three greyscale pages of one size (an ImageJ stack of an RGB
  image's red, green and blue) was refused as "a greyscale image" with the fix "scan or export the
  slide in colour": its colour is in the file, one channel a page, and only the first page is read.
* ``tumorbed apply`` without ``--cohort`` on features whose slides have moved drew every bed
  without the detector's ink veto, said only in an info line per slide.
"""

from __future__ import annotations

import logging

import numpy as np
import pytest

from conftest import run_cli, write_disc_slide


def _disc_rgb(tmp_path) -> np.ndarray:
    import tifffile

    path = write_disc_slide(tmp_path / "disc.tiff")
    with tifffile.TiffFile(path) as tif:
        return tif.pages.first.asarray()


def test_colour_stored_as_three_greyscale_pages_is_named_as_such(tmp_path):
    import tifffile

    rgb = _disc_rgb(tmp_path)
    pages = tmp_path / "rgb_pages.tif"
    with tifffile.TiffWriter(pages) as tw:
        for c in range(3):
            tw.write(rgb[..., c], photometric="minisblack", tile=(256, 256), compression="zlib",
                     resolution=(2e4, 2e4), resolutionunit="CENTIMETER")
    proc = run_cli("tile", pages, "--out", tmp_path / "t")
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 1, said
    assert "holds its colour as 3 greyscale images of the same size, one channel a page" in said, said
    assert "merge the pages into one RGB image" in said and "scan or export the slide in colour" not in said
    # a greyscale scan (a pyramid of grey pages) is not taken for one
    grey = tmp_path / "grey.tif"
    with tifffile.TiffWriter(grey) as tw:
        for f in (1, 4):
            tw.write(np.ascontiguousarray(rgb[::f, ::f].mean(axis=2).astype(np.uint8)), photometric="minisblack",
                     tile=(256, 256), compression="zlib", resolution=(2e4 / f, 2e4 / f), resolutionunit="CENTIMETER")
    proc = run_cli("tile", grey, "--out", tmp_path / "g")
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 1 and "one channel a page" not in said, said


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """Two embedded slides, a detector trained on their outlines, and the features of slides moved
    away since they were embedded (the path they record is gone)."""
    import h5py

    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder
    from weakstil.synth import generate_cohort

    root = tmp_path_factory.mktemp("moved")
    labels = generate_cohort(root / "cohort", 2, seed=3, size_mm=(0.8, 0.8), progress=False)
    encoder = create_encoder("small-cnn", weights="random")
    for path in labels["path"]:
        embed_slide(root / "cohort" / path, encoder, out_dir=root / "features")
    proc = run_cli("tumorbed", "train", "--features", root / "features", "--annotations", root / "cohort" / "truth",
                   "--out", root / "detector", "--no-augment")
    assert proc.returncode == 0, proc.stderr
    (root / "away").mkdir()
    for sid in labels["slide_id"]:
        with h5py.File(root / "features" / f"{sid}.h5", "r+") as f:
            f.attrs["slide_path"] = str(root / "gone" / f"{sid}.tiff")
    table = labels.assign(path=[str((root / "cohort" / p).resolve()) for p in labels["path"]])
    table[["slide_id", "path"]].to_csv(root / "now.csv", index=False)
    return root


def test_tumorbed_apply_says_when_moved_slides_lose_the_ink_veto(moved, caplog):
    root = moved
    with caplog.at_level(logging.WARNING, logger="weakstil"):
        proc = run_cli("tumorbed", "apply", str(root / "features" / "*.h5"), "--tumorbed", root / "detector",
                       "--out", root / "beds")
    assert proc.returncode == 0, proc.stderr
    said = " ".join((proc.stdout + proc.stderr + caplog.text).split())
    assert said.count("(ink veto not applied: slide not read)") == 2, said
    assert "2 of 2 beds were drawn without the detector's ink veto" in said and "pass --cohort CSV" in said, said
    caplog.clear()
    # where the slides are now, given in a cohort CSV: the veto reads them, and the beds are drawn again
    with caplog.at_level(logging.WARNING, logger="weakstil"):
        proc = run_cli("tumorbed", "apply", str(root / "features" / "*.h5"), "--tumorbed", root / "detector",
                       "--out", root / "beds", "--cohort", root / "now.csv")
    assert proc.returncode == 0, proc.stderr
    said = " ".join((proc.stdout + proc.stderr + caplog.text).split())
    assert "ink veto not applied" not in said and "without the detector's ink veto" not in said, said
    assert "made earlier from the same inputs: kept" not in said, said


def _three_slides(tmp_path):
    """Three placeholder slide files S1-S3 under slides/, and the cohort CSV's path beside them."""
    (tmp_path / "slides").mkdir()
    for sid in ("S1", "S2", "S3"):
        (tmp_path / "slides" / f"{sid}.tiff").write_bytes(b"x")
    return tmp_path / "cohort.csv"


def _refusal(tmp_path, text: str) -> str:
    """The one-line refusal of a cohort CSV holding ``text`` beside three slide files."""
    from weakstil.cohort import CohortError, read_cohort

    csv = _three_slides(tmp_path)
    csv.write_text(text)
    with pytest.raises(CohortError) as err:
        read_cohort(csv)
    return str(err.value)


def test_a_decimal_comma_split_into_an_empty_column_after_stil_is_refused(tmp_path):
    """'S1,a.tiff,35,5' under the header 'slide_id,path,stil,comment' has the header's four fields:
    it was read as the label 35 and the comment '5', and trained on without a word."""
    from weakstil.cohort import CohortError, read_cohort

    said = _refusal(tmp_path, "slide_id,path,stil,comment\nS1,slides/S1.tiff,35,5\nS2,slides/S2.tiff,12\n"
                              "S3,slides/S3.tiff,60,re-cut\n")
    csv = tmp_path / "cohort.csv"
    assert "row 2: 35,5" in said and "would be read as 35 with comment 5" in said, said
    assert "write decimals with a point (35.5)" in said and "move the comment column before stil" in said, said
    # the group column too: a patient not yet filled in took the decimals as its group
    csv.write_text("slide_id,path,stil,group\nS1,slides/S1.tiff,35,5\nS2,slides/S2.tiff,12.5,centre_1\n"
                   "S3,slides/S3.tiff,60.25,centre_2\n")
    with pytest.raises(CohortError, match="row 2: 35,5"):
        read_cohort(csv)
    # a column of numbers after the labels is a column of numbers
    csv.write_text("slide_id,path,stil,patient\nS1,slides/S1.tiff,35,5\nS2,slides/S2.tiff,12.5,7\n"
                   "S3,slides/S3.tiff,60,8\n")
    assert read_cohort(csv, group_column="patient").labels.tolist() == [35.0, 12.5, 60.0]
    csv.write_text("slide_id,path,stil,readers\nS1,slides/S1.tiff,35,2\nS2,slides/S2.tiff,12,3\n")
    assert read_cohort(csv).labels.tolist() == [35.0, 12.0]


def test_report_counts_the_scored_slides_flags_and_thresholds_not_an_error_rows(tmp_path):
    """A run at --threshold 50 into a folder where a file had failed in an earlier run at 30: the
    report said 'sTIL-high (at 30, 50 %)' and counted the failed file's stain flag (an error row's
    'see error') among the slides flagged for a check, 2 where one scored slide was flagged."""
    scores = tmp_path / "scores"
    scores.mkdir()
    head = ("slide_id,path,stil,stil_lower_90,stil_upper_90,stil_high,threshold,n_tiles,n_tumorbed_tiles,"
            "tumorbed_source,status,qc,qc_reasons,error,model_id,encoder_id,seconds\n")
    rows = ("bad,/x/bad.tif,,,,,30,,,,error,stain_outside_training_range,stain_outside_training_range: see error,"
            "/x/bad.tif: is a greyscale image. Fix: scan it in colour.,model@1,encoder@1,0.1\n"
            "S1,/x/S1.tif,72.5,59.3,86.5,True,50,49,26,model,ok,,,,model@1,encoder@1,2.0\n"
            "S2,/x/S2.tif,29.5,20.2,39.2,False,50,41,14,model,ok,few_tumorbed_tiles,"
            "few_tumorbed_tiles: 14 tumour-bed tiles < 16,,model@1,encoder@1,2.0\n")
    (scores / "results.csv").write_text(head + rows, encoding="utf-8")
    proc = run_cli("report", "--scores", scores, "--out", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    md = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "| error | 1 |" in md and "| flagged (one or more qc flags) | 1 |" in md, md
    assert "| sTIL-high (at 50 %) | 1 |" in md, md


def test_a_path_written_with_a_shells_tilde_or_variable_names_the_file_it_meant(tmp_path, monkeypatch):
    """'~/slides/S1.tiff' in a cohort CSV was 'file not found ~/slides/S1.tiff ... paths are relative to
    the CSV's folder', though the file is in the home folder: a CSV expands nothing."""
    from weakstil.cohort import CohortError, read_cohort

    home = tmp_path / "home"
    (home / "slides").mkdir(parents=True)
    (home / "slides" / "S1.tiff").write_bytes(b"x")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("DATA", str(home / "slides"))
    (tmp_path / "csv").mkdir()
    csv = tmp_path / "csv" / "cohort.csv"
    csv.write_text("slide_id,path,stil\nS1,~/slides/S1.tiff,30\nS2,$DATA/S1.tiff,20\nS3,~/slides/S3.tiff,10\n")
    with pytest.raises(CohortError) as err:
        read_cohort(csv)
    said = str(err.value)
    meant = str(home / "slides" / "S1.tiff")
    assert f"row 2 (S1): file not found ~/slides/S1.tiff (a shell's '~' or '$' is not expanded in a CSV; write it " \
           f"as {meant})" in said, said
    assert f"row 3 (S2): file not found $DATA/S1.tiff (a shell's '~' or '$' is not expanded in a CSV; write it " \
           f"as {meant})" in said, said
    assert "row 4 (S3): file not found ~/slides/S3.tiff. Fix" in said, said  # no file there either: no hint


def test_one_patient_number_written_two_ways_is_warned_about(tmp_path, caplog):
    """Patient '7' on one row and '7.0' on another (a CSV joined from a spreadsheet's float column) or
    '07' (a leading zero dropped) were two groups without a word: the patient's slides could be
    trained on in one cross-validation fold and tested in another."""
    from weakstil.cohort import read_cohort

    (tmp_path / "slides").mkdir()
    rows = [("S1", "7"), ("S2", "7.0"), ("S3", "07"), ("S4", "1234567"), ("S5", "1234568")]
    for sid, _ in rows:
        (tmp_path / "slides" / f"{sid}.tiff").write_bytes(b"x")
    csv = tmp_path / "cohort.csv"
    csv.write_text("slide_id,path,stil,patient\n" + "".join(f"{sid},slides/{sid}.tiff,30,{p}\n" for sid, p in rows))
    with caplog.at_level(logging.WARNING, logger="weakstil"):
        cohort = read_cohort(csv, group_column="patient")
    assert cohort.groups.tolist() == ["7", "7.0", "07", "1234567", "1234568"]  # as written: the user decides
    said = " ".join(caplog.text.split())
    assert "patient values that differ only in case, spacing or number format" in said, said
    assert "'07' / '7' / '7.0'" in said and "1234567" not in said, said


@pytest.mark.parametrize("command", ["score", "evaluate", "train"])
def test_a_threshold_written_as_a_fraction_is_refused(command, tmp_path):
    """'score --threshold 0.3' (30 % written as a fraction) was taken as 0.3 %: every slide with any
    TILs was called sTIL-high (a 9.4 % slide 'high'), exit 0. The threshold is a percentage; 0 and 1
    stay allowed."""
    args = {"score": ["x.svs", "--model", tmp_path], "evaluate": ["c.csv", "--model", tmp_path, "--out", tmp_path / "e"],
            "train": ["c.csv", "--features", tmp_path, "--out", tmp_path / "m"]}[command]
    proc = run_cli(command, *args, "--threshold", "0.3")
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 2, said
    assert "0.3 looks like a fraction, but the threshold is a percentage" in said and "pass 30 for 30 %" in said, said
    for fine in ("1", "0", "30"):
        proc = run_cli(command, *args, "--threshold", fine)
        assert "looks like a fraction" not in proc.stderr and "--threshold" not in proc.stderr, proc.stderr


def test_a_magnification_given_as_slide_mpp_is_named_as_such(tmp_path):
    """'--slide-mpp 20' for a 20x scan was refused as coarser than the target with the fix 'pass
    --allow-upsample ... or --mpp 20': either gives a score of tiles blown up 40-fold. A resolution
    that no H&E whole-slide scan has names the mistake and the µm/px to pass; a coarse real scan (2 µm/px)
    keeps its fix."""
    slide = write_disc_slide(tmp_path / "disc.tiff")
    proc = run_cli("tile", slide, "--out", tmp_path / "t", "--slide-mpp", "20")
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 1, said
    assert "20 µm/px is coarser than whole-slide scans of H&E are" in said and "magnification typed as µm/px" in said
    assert "--allow-upsample" not in said and "0.5 for a 20x scan, 0.25 for 40x" in said, said
    proc = run_cli("tile", slide, "--out", tmp_path / "t2", "--slide-mpp", "2")
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 1 and "coarser than the target 0.5 µm/px" in said and "--allow-upsample" in said, said


def test_tiling_at_a_magnification_typed_as_mpp_is_warned_about(tmp_path):
    """'tile --mpp 20' (meaning a 20x scan) read tiles 4.5 mm wide without a word: a cohort embedded so
    trains a model on tiles where no cell is told apart."""
    slide = write_disc_slide(tmp_path / "disc.tiff")
    said = " ".join(run_cli("tile", slide, "--out", tmp_path / "t", "--mpp", "20").stderr.split())
    assert "--mpp 20: tiles are read at 20 µm/px, where no cell is told apart" in said, said
    assert "is 20 a magnification?" in said, said
    proc = run_cli("tile", slide, "--out", tmp_path / "t2", "--mpp", "2")
    assert proc.returncode == 0 and "a magnification?" not in proc.stderr, proc.stderr


def test_a_truncated_tiff_is_one_error_line_without_tifffiles_own(tmp_path):
    """A slide copy cut short before its second page: tifffile's own 'ERROR <tifffile.TiffPages @8>
    invalid page offset ...' line came before WeakSTIL's error line about the file (which says what to
    do), in a batch's log as a second error of unknown origin."""
    import tifffile

    from weakstil.synth import generate_slide

    generate_slide(tmp_path / "s.tiff", tmp_path, "s", seed=1, size_mm=(1.0, 1.0), preview=False)
    with tifffile.TiffFile(tmp_path / "s.tiff") as tif:
        second = tif.pages[1].offset
    cut = tmp_path / "cut.tiff"
    cut.write_bytes((tmp_path / "s.tiff").read_bytes()[:second // 2])
    proc = run_cli("tile", cut, "--out", tmp_path / "t")
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 1 and "it may be truncated, damaged" in said, said
    assert "invalid page offset" not in said and "tifffile" not in said, said


def test_a_group_written_as_a_missing_value_is_refused_as_an_empty_one_is(tmp_path):
    """R's write.csv writes an unknown patient as NA: every such slide was put in one group 'NA' (unrelated
    patients kept together, folds unbalanced) where an empty cell is refused."""
    from weakstil.cohort import read_cohort

    said = _refusal(tmp_path, '"","slide_id","path","stil","group"\n"1","S1","slides/S1.tiff",30,"P1"\n'
                              '"2","S2","slides/S2.tiff",20,NA\n"3","S3","slides/S3.tiff",10,#N/A\n')
    csv = tmp_path / "cohort.csv"
    assert "row 3 (S2): group is 'NA', a missing value (R's or a spreadsheet's), not a group" in said, said
    assert "row 4 (S3): group is '#N/A'" in said, said
    csv.write_text('"","slide_id","path","stil","group"\n"1","S1","slides/S1.tiff",30,"P1"\n'
                   '"2","S2","slides/S2.tiff",20,P2\n"3","S3","slides/S3.tiff",10,None\n')
    assert read_cohort(csv).groups.tolist() == ["P1", "P2", "None"]  # a name, if an odd one


def test_score_says_when_results_csv_holds_one_scan_under_two_ids(tmp_path):
    """A slide file renamed after it was scored (S1.tiff to patient12.tiff) was scored again under its
    new name without a word: results.csv held both rows, the old one's file gone, and a lab counting or
    averaging its rows counted that slide twice."""
    import shutil

    from weakstil.synth import generate_cohort

    labels = generate_cohort(tmp_path / "c", 2, seed=2, size_mm=(0.6, 0.6), progress=False)
    train = labels.assign(path=[str((tmp_path / "c" / p).resolve()) for p in labels["path"]])
    train[["slide_id", "path", "stil"]].to_csv(tmp_path / "train.csv", index=False)
    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder

    encoder = create_encoder("small-cnn", weights="random")
    for path in train["path"]:
        embed_slide(path, encoder, out_dir=tmp_path / "features")
    run_cli("train", tmp_path / "train.csv", "--features", tmp_path / "features", "--out", tmp_path / "m", "--folds", "1",
            "--members", "1", "--epochs", "1", "--hidden", "8", "--threads", "1", check=True)
    lab = tmp_path / "lab"
    lab.mkdir()
    shutil.copy(train["path"][0], lab / "S1.tiff")
    common = ("--model", tmp_path / "m", "--out", tmp_path / "scores", "--features", tmp_path / "features")
    assert run_cli("score", lab / "S1.tiff", *common).returncode == 0
    (lab / "S1.tiff").rename(lab / "patient12.tiff")
    proc = run_cli("score", str(lab / "*.tiff"), *common)
    said = " ".join(proc.stderr.split())
    assert proc.returncode == 0, said
    assert "results.csv holds one scan (the same content) under 2 slide ids, S1, patient12" in said, said
    assert "(S1's file" in said and "is gone: renamed since?" in said and "counts that slide 2 times" in said, said
    # a slide scored once under its one name says nothing
    proc = run_cli("score", str(lab / "*.tiff"), *common)
    assert proc.returncode == 0
    proc = run_cli("score", train["path"][1], *common)
    assert proc.returncode == 0 and "one scan" not in proc.stderr, proc.stderr
