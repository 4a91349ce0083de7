"""Fault hunt 22 (b): a lab technician scoring batches with ``weakstil score`` and reporting them
with ``weakstil report --scores``.

* A ``results.csv`` opened and saved again by a spreadsheet writes the ``stil_high`` call as
  ``TRUE``/``FALSE``; ``score`` keeps such a row of a finished slide as it is, and the report read
  anything but ``True`` as low: a 48 % slide was "low at 20 %" and the run counted 0 sTIL-high.
* The report's median sTIL% was printed with a metric's three decimals ("14.000") beside the
  one-decimal sTIL% of every slide.
* A run that wrote a slide's new files but could not write its row (results.csv held by another
  program) left the old row; the rerun with the same settings skipped the slide as already scored,
  so results.csv kept another threshold, call and qc than the slide's HDF5 and heatmap.
* A results.csv saved again in the Windows code page (Excel's "CSV (Comma delimited)"), or one that
  could not be parsed, was taken as "unreadable": the next row written replaced all its rows and
  the columns a user had added; the report refused it.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd
import pytest

from conftest import run_cli
from shared_cohorts import one_epoch_model_copy

HEADER = ("slide_id,path,stil,stil_lower_90,stil_upper_90,stil_high,threshold,n_tiles,n_tumorbed_tiles,"
          "tumorbed_source,status,qc,qc_reasons,error,model_id,encoder_id,seconds")


def _scores(folder: Path, rows: list[str], bom: bool = False) -> Path:
    folder.mkdir(parents=True)
    text = "\r\n".join([HEADER, *rows]) + "\r\n"
    (folder / "results.csv").write_text(("\ufeff" if bom else "") + text, encoding="utf-8")
    return folder


def _report_row(report: Path, slide_id: str) -> str:
    return next(line for line in report.read_text(encoding="utf-8").splitlines() if line.startswith(f"| {slide_id} |"))


def test_report_reads_a_spreadsheets_true_false_call(tmp_path) -> None:
    scores = _scores(tmp_path / "scores", [
        "S_high,/x/S_high.svs,48.1639,40.2935,56.2922,TRUE,20,52,24,model,ok,,,,model@26d9f698fde1,encoder@3c,12.2",
        "S_low,/x/S_low.svs,9.4765,4.7206,14.3429,FALSE,20,46,22,model,ok,,,,model@26d9f698fde1,encoder@3c,12.9",
        "S_1,/x/S_1.svs,53.5257,40.8352,66.8848,1,20,34,19,model,ok,,,,model@26d9f698fde1,encoder@3c,5.8",
    ], bom=True)  # Excel's "CSV UTF-8": a byte-order mark, CRLF, TRUE/FALSE
    result = run_cli("report", "--scores", scores, "--out", tmp_path / "r")
    assert result.returncode == 0, result.stderr
    md = tmp_path / "r" / "report.md"
    assert "| high at 20 % |" in _report_row(md, "S_high")
    assert "| low at 20 % |" in _report_row(md, "S_low")
    assert "| high at 20 % |" in _report_row(md, "S_1")
    text = md.read_text(encoding="utf-8")
    assert "| sTIL-high (at 20 %) | 2 |" in text
    assert "| median sTIL% of the scored slides | 48.2 |" in text  # not "48.164"


# --- a rerun after a run whose results.csv row was never written ---------------------------------

@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A --folds 1 model and one slide scored into ``scores`` at the model's threshold."""
    root = tmp_path_factory.mktemp("h22b")
    model, cohort, labels, features = one_epoch_model_copy(tmp_path_factory, root)
    slide = cohort / labels["path"][0]
    run_cli("score", slide, "--model", model, "--out", root / "scores", "--features", features, check=True)
    return {"root": root, "model": model, "slide": slide, "features": features, "id": slide.stem}


def test_a_rerun_mends_the_row_a_stopped_run_could_not_write(scored, tmp_path, monkeypatch) -> None:
    """results.csv held by another program (a spreadsheet; EACCES) stops the batch after the slide's
    new files were written: the old row stayed beside them. The rerun with the same settings took
    the slide as already scored and kept the stale row (threshold 30 in results.csv, 5 in the HDF5
    and heatmap), and the failed run exited 0 (the slide had a row: the stale one)."""
    import errno

    import weakstil.score as score_mod
    from weakstil.files import SlideScoresFile

    out = tmp_path / "scores"
    shutil.copytree(scored["root"] / "scores", out)
    args = ("score", scored["slide"], "--model", scored["model"], "--out", out, "--features", scored["features"],
            "--threshold", "5")

    def held(path, *a, **k):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))

    with monkeypatch.context() as m:
        m.setattr(score_mod, "write_results", held)
        result = run_cli(*args)
    assert result.returncode == 1, result.stderr  # exit 0 before: the slide had a row (the stale one)
    assert f"{out / 'results.csv'}: Permission denied" in result.stderr.replace("\n", "")
    before = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False).iloc[0]
    attrs, _ = SlideScoresFile.read_header(out / f"{scored['id']}.h5")
    assert before["threshold"] != "5" and float(attrs["threshold"]) == 5.0  # the state the rerun finds

    result = run_cli(*args)
    assert result.returncode == 0, result.stderr
    row = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False).iloc[0]
    attrs, _ = SlideScoresFile.read_header(out / f"{scored['id']}.h5")
    assert row["threshold"] == "5" and float(attrs["threshold"]) == 5.0
    assert row["stil_high"] == str(bool(attrs["stil_high"])) and row["qc"] == attrs["qc"]
    assert abs(float(row["stil"]) - float(attrs["stil"])) < 1e-4
    # and a rerun after that skips it, as before
    assert "already scored" in caplog_free_run(args)


def caplog_free_run(args) -> str:
    """The log lines of one run (weakstil's logger)."""
    import logging

    lines: list[str] = []

    class _Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    keep = _Keep(logging.DEBUG)
    logging.getLogger("weakstil").addHandler(keep)
    try:
        assert run_cli(*args).returncode == 0
    finally:
        logging.getLogger("weakstil").removeHandler(keep)
    return "\n".join(lines)


def test_a_batch_stopped_by_a_refused_results_csv_is_not_told_to_free_space() -> None:
    import errno

    from weakstil.errors import stop_fix

    for code in (errno.EACCES, errno.EPERM):
        assert "free space" not in stop_fix(os.strerror(code)) and "writable" in stop_fix(os.strerror(code))
    assert "free space" not in stop_fix(os.strerror(errno.EIO))
    assert "free space" in stop_fix(os.strerror(errno.ENOSPC))



def test_a_results_csv_saved_in_the_windows_code_page_keeps_its_rows(scored, tmp_path) -> None:
    """Excel's default "CSV (Comma delimited)" writes Windows-1252: score took the file as
    "unreadable", and its next row replaced every earlier row and the columns a user had added
    (a pathologist's 'geprüft'); the report refused the folder."""
    out = tmp_path / "scores"
    shutil.copytree(scored["root"] / "scores", out)
    table = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False)
    other = {**table.iloc[0].to_dict(), "slide_id": "Größe_7", "path": "/elsewhere/Größe_7.svs"}
    table = pd.concat([table, pd.DataFrame([other])], ignore_index=True)
    table["comment"] = "geprüft"
    (out / "results.csv").write_bytes(table.to_csv(index=False, lineterminator="\r\n").encode("cp1252"))

    result = run_cli("report", "--scores", out, "--out", tmp_path / "r")
    assert result.returncode == 0, result.stderr
    assert "| Größe_7 |" in (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "is not UTF-8" in " ".join(result.stderr.split())  # said once per file (and version of it)

    result = run_cli("score", scored["slide"], "--model", scored["model"], "--out", out, "--features",
                     scored["features"], "--threshold", "7")
    assert result.returncode == 0, result.stderr
    after = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False, encoding="utf-8")
    assert list(after["slide_id"]) == [scored["id"], "Größe_7"]
    assert list(after["comment"]) == ["geprüft", "geprüft"] and list(after["threshold"]) == ["7", other["threshold"]]


def test_a_results_csv_that_cannot_be_read_stops_the_run_and_is_left_as_it_is(scored, tmp_path) -> None:
    out = tmp_path / "scores"
    shutil.copytree(scored["root"] / "scores", out)
    broken = (out / "results.csv").read_bytes() + b'"an unclosed quote,\r\n'
    (out / "results.csv").write_bytes(broken)
    result = run_cli("score", scored["slide"], "--model", scored["model"], "--out", out, "--features",
                     scored["features"], "--threshold", "7")
    assert result.returncode == 1
    assert "results.csv: cannot be read as a comma-separated table" in " ".join(result.stderr.split())
    assert (out / "results.csv").read_bytes() == broken
