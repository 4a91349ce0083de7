"""Fault hunt 22 (b): a lab technician scoring batches with ``weakstil score`` and reporting them
with ``weakstil report --scores``.

* A ``results.csv`` opened and saved again by a spreadsheet writes the ``stil_high`` call as
  ``TRUE``/``FALSE``; ``score`` keeps such a row of a finished slide as it is, and the report read
  anything but ``True`` as low: a 48 % slide was "low at 20 %" and the run counted 0 sTIL-high.
* The report's median sTIL% was printed with a metric's three decimals ("14.000") beside the
  one-decimal sTIL% of every slide.
"""

from __future__ import annotations

from pathlib import Path

from conftest import run_cli

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
