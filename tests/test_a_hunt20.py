"""Hunt 20 (a): what a lab meets after 'weakstil score' over a batch of slides.

- 'weakstil report' could only report a model's cross-validation: a scored batch had no overview
  (now ``report --scores SCORE_OUT``: the run's counts, per slide status, sTIL%, interval, call, qc
  flags with reasons and the heatmap, the model and settings; a wrong folder is one error line);
- the heatmap's cyan outline traced the tumour-bed mask, which cuts through tiles, while the sTIL%
  counts whole tiles (those 50 % or more inside): it is now the outline of the tiles counted;
- text files (a settings YAML a user saved with a BOM and umlauts, the workflow's logs) were read and
  written in the locale's encoding: an ASCII locale broke on non-ASCII text; now UTF-8 everywhere;
- a model without interval calibration (--folds 1) scored a batch with one info line per slide and no
  run-level word that no slide would get an interval, and a generic cause in results.csv.

One small cohort and a one-epoch --folds 1 model (shared_cohorts.one_epoch_model_copy) serve all tests; the
batch is scored once, its log records and heatmap outlines kept."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, run_cli
from shared_cohorts import one_epoch_model_copy

NO_INTERVAL_LINE = "no slide of this run gets a 90 % interval"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(scope="module")
def batch(tmp_path_factory):
    """A --folds 1 model, two slides and a broken file scored into one folder; the log records of the
    run and the outline each heatmap was drawn with."""
    import weakstil.outputs as outputs

    root = tmp_path_factory.mktemp("h20a")
    model, cohort, labels, features = one_epoch_model_copy(tmp_path_factory, root)
    slides = [cohort / p for p in labels["path"][:2]]
    broken = root / "broken.svs"
    broken.write_text("not a slide", encoding="utf-8")
    drawn: dict[str, tuple] = {}
    real = outputs.write_heatmap_png

    def spy(path, thumbnail, thumb_mpp, slide_mpp, coords, tsl0, scores, **kw):
        drawn[Path(path).name[:-len("_heatmap.png")]] = (kw.get("tumorbed_mask"), slide_mpp / thumb_mpp,
                                                         thumbnail.shape[:2])
        return real(path, thumbnail, thumb_mpp, slide_mpp, coords, tsl0, scores, **kw)

    records = _Records()
    logging.getLogger("weakstil").addHandler(records)
    outputs.write_heatmap_png = spy
    try:
        result = run_cli("score", *slides, broken, "--model", model, "--out", root / "scores", "--features", features,
                         "--annotations", cohort / "truth")
    finally:
        outputs.write_heatmap_png = real
        logging.getLogger("weakstil").removeHandler(records)
    assert result.returncode == 1  # the broken file
    return {"root": root, "model": model, "scores": root / "scores", "records": records.records, "drawn": drawn,
            "ids": [Path(p).stem for p in labels["path"][:2]], "other_model": None}


# --- 4: a model without interval calibration ---------------------------------------------------

def test_a_model_without_calibration_is_said_once_per_run_and_each_row_says_why(batch) -> None:
    said = [r for r in batch["records"] if NO_INTERVAL_LINE in r.getMessage()]
    assert len(said) == 1 and said[0].levelno == logging.WARNING
    assert "--folds 1" in said[0].getMessage() and str(batch["model"]) in said[0].getMessage()
    # not also once per slide
    assert not [r for r in batch["records"] if r.getMessage().endswith(": qc no_interval")
                or ": qc no_interval (" in r.getMessage()]
    table = pd.read_csv(batch["scores"] / "results.csv", dtype=str, keep_default_na=False)
    scored = table[table["status"] == "ok"]
    assert len(scored) == 2
    assert (scored["stil_lower_90"] == "").all() and (scored["stil_upper_90"] == "").all()
    assert scored["qc"].str.contains("no_interval").all()
    assert scored["qc_reasons"].str.contains("no_interval: no 90 % interval: the model was trained without "
                                             "cross-validation (--folds 1)", regex=False).all()


def test_too_few_calibration_slides_is_named_as_such() -> None:
    from weakstil.qc.scoring import no_interval_why

    meta = {"qc": {"files": {"qc/calibration.json": "x"}, "confidence": {"n": 7, "q": None, "level": 0.9}}}
    assert "rests on 7 out-of-fold slide(s), too few for a 90 % interval (9 or more" in no_interval_why(meta)
    assert no_interval_why({"qc": {"files": {"qc/calibration.json": "x"}, "confidence": {"n": 12, "q": 1.1}}}) is None


# --- 2: the heatmap's outline is of the tiles counted --------------------------------------------

def test_heatmap_outline_is_the_tiles_counted_not_the_bed_mask(batch) -> None:
    from weakstil.files import SlideScoresFile

    cut = 0
    for sid in batch["ids"]:
        mask, scale, shape = batch["drawn"][sid]
        f = SlideScoresFile.read(batch["scores"] / f"{sid}.h5")
        coords, side, counted = np.asarray(f.coords, float), f.tile_size_level0, np.asarray(f.tumorbed, bool)
        fraction = np.asarray(f.tumorbed_fraction)
        cut += int(((fraction > 0.1) & (fraction < 0.9)).sum())  # tiles the bed mask runs through
        if mask.shape != shape:  # as write_heatmap_png draws it: at the thumbnail's pixels
            from skimage.transform import resize

            mask = resize(mask.astype(np.float32), shape, order=0, anti_aliasing=False) > 0.5
        assert counted.any()
        inner = []
        for (x, y), c in zip(coords, counted):  # each tile's square, less a pixel at its edges
            x0, y0 = int(round(x * scale)) + 1, int(round(y * scale)) + 1
            x1, y1 = int(round((x + side) * scale)) - 1, int(round((y + side) * scale)) - 1
            inner.append((c, mask[y0:y1, x0:x1]))
        assert all(m.all() for c, m in inner if c)  # every counted tile wholly inside the outline
        assert not any(m.any() for c, m in inner if not c)  # no uncounted tile partly inside
        attrs, _ = SlideScoresFile.read_header(batch["scores"] / f"{sid}.h5")
        from weakstil.outputs import heatmap_key

        assert heatmap_key(attrs).startswith(f"cyan outline: the {int(counted.sum())} of {len(counted)} tiles that "
                                             "made the sTIL%")
    assert cut > 0  # the bed mask does cut through tiles here: the old outline disagreed with the count


# --- 1: a report of a 'weakstil score' run -------------------------------------------------------

def test_report_scores_gives_one_overview_of_the_run(batch, tmp_path) -> None:
    from PIL import Image

    out = tmp_path / "report"
    result = run_cli("report", "--scores", batch["scores"], "--out", out)
    assert result.returncode == 0, result.stderr
    md = (out / "report.md").read_text(encoding="utf-8")
    html = (out / "report.html").read_text(encoding="utf-8")
    assert "| slides | 3 |" in md and "| ok | 2 |" in md and "| error | 1 |" in md
    assert "| flagged (one or more qc flags) | 2 |" in md and "| scored without a 90 % interval | 2 |" in md
    table = pd.read_csv(batch["scores"] / "results.csv", dtype=str, keep_default_na=False)
    for rec in table.to_dict("records"):
        sid = rec["slide_id"]
        row = next(line for line in md.splitlines() if line.startswith(f"| {sid} |"))
        if rec["status"] == "ok":
            call = "high" if rec["stil_high"] == "True" else "low"
            assert f"| ok | {float(rec['stil']):.1f} | none | {call} at 30 % |" in row
            assert "no_interval: no 90 % interval: the model was trained without cross-validation" in row
            heat = out / "slides" / f"{sid}_heatmap.png"
            with Image.open(heat) as img:
                # drawn again with the slide 480 px on its long side (hunt 24e), title and key above and below
                assert img.height <= 480 + 120 and img.width <= 2 * (480 + 120)
            assert f"(slides/{sid}_heatmap.png)" in row and f"src='slides/{sid}_heatmap.png'" in html
        else:
            assert "| error |" in row and "not a slide format" in row and "heatmap" not in row
    assert "| model id |" in md and "| training.epochs |" in md  # the run's model, and its own settings
    assert "trained without cross-validation (--folds 1)" in md.split("## Run")[0]  # said on top
    assert (out / "overview.png").is_file()


def test_report_scores_refuses_a_wrong_folder_in_one_line_and_writes_nothing(batch, tmp_path) -> None:
    (tmp_path / "empty").mkdir()
    cases = {batch["model"]: "is an output of 'weakstil train', not of 'weakstil score'",
             tmp_path / "empty": "holds no results.csv",
             tmp_path / "nowhere": "not found",
             batch["scores"] / "results.csv": "is a file, not the --out folder of 'weakstil score'"}
    for folder, said in cases.items():
        result = run_cli("report", "--scores", folder, "--out", tmp_path / "r")
        assert result.returncode != 0, folder
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and str(folder) in lines[0] and said in lines[0], result.stderr
        assert "Fix: pass the --out folder of 'weakstil score'" in lines[0]
        assert not (tmp_path / "r").exists()
    result = run_cli("report", "--scores", batch["scores"], "--tiles", tmp_path, "--out", tmp_path / "r")
    assert result.returncode == 2 and "--tiles belong(s) to a model's cross-validation report" in result.stderr
    result = run_cli("report", "--out", tmp_path / "r")
    assert result.returncode == 2 and "no --model and no --scores" in result.stderr
    assert not (tmp_path / "r").exists()


def test_report_scores_refuses_another_model(batch, tmp_path) -> None:
    import json
    import shutil

    other = tmp_path / "other"
    shutil.copytree(batch["model"], other)
    meta = json.loads((other / "model.json").read_text(encoding="utf-8"))
    meta["weights_sha256"] = "f" * 64  # another model's weights
    (other / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    result = run_cli("report", "--scores", batch["scores"], "--model", other, "--out", tmp_path / "r")
    assert result.returncode != 0 and "is not the model that scored these slides" in result.stderr
    assert not (tmp_path / "r").exists()


# --- 3: UTF-8 whatever the locale ----------------------------------------------------------------

ASCII_LOCALE = {"LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}


def _ascii_run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, **ASCII_LOCALE, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, *args], capture_output=True, env=env, cwd=ROOT)


def test_a_settings_file_with_bom_and_umlauts_is_read_as_utf8_in_an_ascii_locale(batch, tmp_path) -> None:
    settings = tmp_path / "settings.yaml"
    settings.write_bytes("\ufeffcentre: München\nnote: \"≥ 30 %\"\n".encode("utf-8"))
    proc = _ascii_run("-m", "weakstil", "report", "--scores", str(batch["scores"]), "--out", str(tmp_path / "r"),
                      "--settings", str(settings))
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    md = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    assert "| centre | `München` |" in md and "| note | `≥ 30 %` |" in md


def test_workflow_logs_and_status_are_utf8_in_an_ascii_locale(tmp_path) -> None:
    """A slide named in non-ASCII whose earlier step failed: its log line could not be written."""
    import json

    before = tmp_path / "embed.json"
    before.write_bytes(b"\xef\xbb\xbf" + json.dumps({"slide": "x", "status": "error", "step": "embed",
                                                     "error": "0.25 µm/px"}).encode("utf-8"))
    log, status = tmp_path / "score.log", tmp_path / "score.json"
    proc = _ascii_run("-m", "weakstil.pipeline_slide_steps", "--status", str(status), "--log", str(log),
                      "--slide", "Größe_µ.svs", "--after", str(before), "--step", "score=true")
    assert proc.returncode == 0, proc.stderr.decode("utf-8", "replace")
    assert log.read_text(encoding="utf-8") == "Größe_µ.svs: not run, its embed step failed\n"
    assert json.loads(status.read_text(encoding="utf-8"))["error"] == "0.25 µm/px"


def _text_mode_without_encoding(node: ast.Call) -> bool:
    """Whether a call opens, reads or writes a text file without naming the encoding: ``open(f)``,
    ``open(f, "w")``, ``path.open()``, ``path.open("w")``, ``read_text()``, ``write_text(t)``
    (``Slide.open(path)`` and the like, whose first argument is no mode, are no file)."""
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    keywords = {k.arg: k.value for k in node.keywords}
    if name not in ("open", "read_text", "write_text") or "encoding" in keywords:
        return False
    if name != "open":
        return True
    if isinstance(func, ast.Name):  # the builtin: open(file, mode)
        mode = keywords.get("mode", node.args[1] if len(node.args) > 1 else None)
    else:  # Path.open(mode): a receiver named like a path, or a mode given
        mode = keywords.get("mode", node.args[0] if node.args else None)
        receiver = ast.unparse(func.value).lower()
        if mode is None and "path" not in receiver and "errors" not in keywords:
            return False
        if mode is not None and not (isinstance(mode, ast.Constant) and isinstance(mode.value, str)):
            return False  # Slide.open(path, ...)
    return not (isinstance(mode, ast.Constant) and "b" in str(mode.value))


def test_no_text_file_is_opened_in_the_locales_encoding() -> None:
    """Every open / read_text / write_text of text in the package names its encoding."""
    found = [f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)[:80]}"
             for path in sorted((ROOT / "weakstil").rglob("*.py"))
             for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
             if isinstance(node, ast.Call) and _text_mode_without_encoding(node)]
    assert not found, "\n".join(found)
