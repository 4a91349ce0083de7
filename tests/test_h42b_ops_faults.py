"""Helper h42b's operations fault matrix: what a batch does when one slide's output cannot be named or
locked, and other operational faults found in that round."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from weakstil.cli import app
from weakstil.errors import OutputError
from weakstil.locks import in_turn

DATA = Path(__file__).parent / "data"


def test_in_turn_goes_on_past_a_lock_name_too_long(tmp_path):
    """A slide whose lock file name passes the file system's 255 bytes is that slide's error, and the
    items after it are still yielded (it was raised out of the batch: nothing after it was done)."""
    long_id, short_id = "m" * 250, "short"
    failed: list[tuple[str, Exception]] = []
    got = list(in_turn([long_id, short_id], lambda i: tmp_path / f"{i}.h5", None,
                       lambda item, exc: failed.append((item, exc))))
    assert got == [short_id]
    assert [item for item, _ in failed] == [long_id]
    err = failed[0][1]
    assert isinstance(err, OutputError) and "file name too long" in err.message
    assert "rename the slide file" in err.one_line()


def test_tile_batch_goes_on_after_a_slide_name_too_long(tmp_path):
    """``weakstil tile LONG.svs a.svs``: the long name's slide is one error line, a.svs is tiled, exit 1
    (the old code ended the batch at the long name: a.svs listed after it was never tiled)."""
    slides = tmp_path / "slides"
    slides.mkdir()
    long_slide = slides / ("k" * 250 + ".svs")
    shutil.copy(DATA / "CMU-1-Small-Region.svs", long_slide)
    shutil.copy(long_slide, slides / "a.svs")
    out = tmp_path / "tiles"
    result = CliRunner().invoke(app, ["tile", str(long_slide), str(slides / "a.svs"), "--out", str(out)])
    assert result.exit_code == 1, result.output
    assert "file name too long" in result.output
    assert (out / "a.h5").is_file()
    assert not any(p.name.startswith("k") for p in out.iterdir())


def test_described_mpp_with_a_word_before_or_an_axis_after():
    """A generic TIFF's ImageDescription 'ScanMPP=0.25' or 'mpp_x=0.25 mpp_y=0.25' names its µm/px in the
    missing-resolution error (only 'MPP = 0.25' was read: the others said just 'pass --slide-mpp')."""
    from types import SimpleNamespace

    from weakstil.slide_mpp import described_mpp

    def said(text):
        return described_mpp(SimpleNamespace(properties={"tiff.ImageDescription": text}))

    assert said("Custom scanner|ScanMPP=0.25|AppMag=40") == 0.25
    assert said("mpp_x=0.2500 mpp_y=0.2500") == 0.25
    assert said('{"mpp": 0.46, "objective": 20}') == 0.46
    assert said("Custom|MPP = 0.5") == 0.5  # as before
    assert said("bump=0.5|0.5 um/px") is None  # a word that only ends in ...mp, a unit after the number: not read


def test_bad_omp_num_threads_is_one_warning_not_libgomps_line(monkeypatch, caplog):
    """``OMP_NUM_THREADS=0`` (or ``abc``): one weakstil warning naming the value, and the variable is out of the
    environment before torch loads (the CLI's first step), so libgomp's bare "Invalid value for environment
    variable OMP_NUM_THREADS" is not printed; a good value stays (" 2" too: libgomp and env_threads read it as 2, helper h42f)."""
    import logging
    import os

    from weakstil.runtime import drop_bad_thread_env

    for value, kept in (("0", False), ("abc", False), ("-3", False), (" 2", True), ("3", True), ("4,2", True)):
        monkeypatch.setenv("OMP_NUM_THREADS", value)
        caplog.clear()
        with caplog.at_level(logging.WARNING):
            drop_bad_thread_env()
        assert (os.environ.get("OMP_NUM_THREADS") == value) == kept
        assert (f"OMP_NUM_THREADS={value!r}" in caplog.text) == (not kept)


def test_cohort_rows_are_named_by_their_line_with_blank_lines_and_crlf(tmp_path):
    """A cohort CSV with a BOM, CRLF line ends and blank lines (a spreadsheet's empty row, a hand-edited list):
    a duplicate row is named by its line in the file (pandas skips blank lines: it was "row 4 (first on row 2)"
    for lines 6 and 3)."""
    import pytest

    from weakstil.cohort import read_cohort
    from weakstil.cohort_csv import CohortError

    csv_path = tmp_path / "cohort.csv"
    csv_path.write_bytes(b"\xef\xbb\xbf\r\nslide_id,path,stil\r\n\r\nA,a.svs,10\r\nB,b.svs,20\r\n  \r\n"
                         b'"C",c.svs,30\r\nA,a.svs,10\r\n')
    with pytest.raises(CohortError) as caught:
        read_cohort(csv_path, check_files=False)
    assert "row 8 (A): duplicate slide_id (first on row 4)" in str(caught.value.one_line())


def test_quiet_train_draws_no_epoch_bars():
    """``weakstil -q train`` shows warnings and closing lines only: its fold and qc bars were drawn (rich leaves
    each bar's last state on a log file or pipe) beside them. Without -q they stay."""
    import logging

    from weakstil.cli.progress import epoch_progress, setup_logging

    try:
        setup_logging(False, logging.WARNING)  # -q
        assert epoch_progress()[0].progress.disable
        setup_logging(False)  # the default: INFO
        assert not epoch_progress()[0].progress.disable
    finally:
        logging.basicConfig(level=logging.WARNING, handlers=[logging.StreamHandler()], force=True)


def test_training_refuses_features_of_two_tile_statistics_versions():
    """A cohort folder where one slide's tiles were measured by another tile-statistics version (a cache an older
    WeakSTIL wrote, the same columns) is refused, naming the slide and the version; it was trained on as one kind."""
    import pytest

    from weakstil.errors import WeakSTILError
    from weakstil.mil.identity import check_same_identity

    base = {"encoder": "small-cnn", "weights_sha256": "ab" * 32, "mpp": 0.5, "tile_px": 224, "stain_norm": "macenko",
            "stain_estimate_version": 8, "tilestats_version": 4}
    attrs = [dict(base), dict(base), {**base, "tilestats_version": 2}]
    with pytest.raises(WeakSTILError) as caught:
        check_same_identity(["s1", "s2", "s3"], attrs)
    line = caught.value.one_line()
    assert "s3" in line and "tilestats_version 2 (majority: 4)" in line and "embed them again" in line
    assert check_same_identity(["s1", "s2"], attrs[:2])["tilestats_version"] == 4
