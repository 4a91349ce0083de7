"""The cohort report (hunt 10): report.md's tables hold any text, --tiles says when its folder has
no usable overlay, and the Settings list what the model was made with; since hunt 37o a ``<`` in a
cell is escaped (a slide id ``a<b>c`` bolded the rest of its row) and the error column has no "-0.0".

A model folder of the shape 'weakstil train' writes (model.json, cv/ predictions, metrics and
plots) is written by hand around one synthetic slide tiled for real: training one (test_report.py)
takes ~20 s, and none of this depends on the weights."""

from __future__ import annotations

import json
import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="module")
def made(tmp_path_factory) -> dict[str, Path]:
    """One synthetic slide tiled at the model's tiling (224 px) and at 448 px, and a model folder
    whose two cross-validation slides are ``s 1`` (a space in its id) and ``s2``, both that slide."""
    from PIL import Image

    from weakstil.files import TilesFile
    from weakstil.synth import generate_cohort
    from weakstil.tiles import TilingParams, tile_slide_to_dir

    root = tmp_path_factory.mktemp("report_hunt10")
    labels = generate_cohort(root / "cohort", 1, 1, size_mm=(0.8, 0.8), n_groups=1, progress=False)
    slide, sid = root / "cohort" / labels["path"][0], labels["slide_id"][0]
    for folder, params in (("tiles", None), ("tiles_448", TilingParams(tile_px=448))):
        tile_slide_to_dir(slide, root / folder, params)
        for new in ("s 1", "s2"):  # the model's slide ids
            for suffix in (".h5", "_tiles.png"):
                shutil.copyfile(root / folder / f"{sid}{suffix}", root / folder / f"{new}{suffix}")
    key = json.loads(TilesFile.read_header(root / "tiles" / f"{sid}.h5")[0]["tiling_key"])

    model = root / "model"
    (model / "cv").mkdir(parents=True)
    meta = {"format": "weakstil-mil", "format_version": 1, "threshold": 30.0, "seed": 0, "weights_sha256": "ab" * 32,
            "encoder": {"name": "my-encoder", "weights_sha256": "cd" * 32,
                        "card": {"base": "small-cnn", "model": "small_cnn", "stain_norm": "macenko"}},
            "features": {"stain_norm": "macenko", "tilestats_version": 3},
            "tiling": {"mpp": key["mpp"], "tile_px": key["tile_px"], "key": key},
            "training": {"config": {"aggregator": "stroma", "epochs": 3}, "cohort": str(root / "none.csv"),
                         "n_slides": 2, "cross_validation": {"folds": 2},
                         "tumorbeds": {"annotations": str(root / "cohort" / "truth"), "beds": None,
                                       "detector": None, "slides": {"annotation": 2}}}}
    (model / "model.json").write_text(json.dumps(meta))
    (model / "cv" / "oof_predictions.csv").write_text("slide_id,stil_true,stil_pred,fold,group\n"
                                                      "s 1,40.0,35.0,1,centre|A\ns2,10.0,12.0,2,centre B\n")
    (model / "cv" / "metrics.json").write_text(json.dumps({"n": 2, "r2": 0.5, "mae": 3.5, "threshold": 30.0}))
    for name in ("scatter.png", "roc.png"):
        Image.fromarray(np.full((20, 20, 3), 200, np.uint8)).save(model / "cv" / name)
    return {"root": root, "model": model, "tiles": root / "tiles", "tiles_448": root / "tiles_448"}


def _report(made, out: Path, **kwargs) -> str:
    from weakstil.report import build_report

    return build_report(made["model"], out, **kwargs)["report.md"].read_text()


def _cells(line: str) -> int:
    """How many cells a GitHub Markdown table row has (``\\|`` does not split a cell)."""
    return len(re.findall(r"(?<!\\)\|", line)) - 1


def test_report_md_tables_hold_pipes_newlines_and_spaces(made, tmp_path: Path) -> None:
    settings = {"slides": "slides/*.svs|slides/*.ndpi", "note": "cohort A, rescanned\nsee ticket 12\n",
                "cmd": "echo `date`"}
    md = _report(made, tmp_path / "r", tiles_dir=made["tiles"], settings=settings, title="Cohort\nreport")
    lines = md.splitlines()
    assert lines[0] == "# Cohort report"
    for start in ("## Metrics", "## Slides", "## Settings", "## Versions"):  # every row as wide as its header
        table = lines[lines.index(start) + 2:]
        table = table[:table.index("")] if "" in table else table
        assert len(table) > 2 and {_cells(row) for row in table} == {_cells(table[0])}, "\n".join(table)
    assert r"| slides | `slides/*.svs\|slides/*.ndpi` |" in lines
    assert "| note | `cohort A, rescanned`<br>`see ticket 12` |" in lines
    assert "| cmd | `` echo `date` `` |" in lines  # a backtick in a value does not end its code span
    assert r"| s 1 | centre\|A |" in md
    # an image of a slide id with a space links its file, percent-encoded
    assert "![s 1 tiles](slides/s%201_thumb.png)" in md and (tmp_path / "r" / "slides" / "s 1_thumb.png").is_file()
    page = (tmp_path / "r" / "report.html").read_text()
    assert "src='slides/s%201_thumb.png'" in page


def test_report_warns_of_a_tiles_folder_without_overlays(made, tmp_path: Path, caplog) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    features = tmp_path / "features"  # per-slide .h5 files, but no overlay
    features.mkdir()
    shutil.copyfile(made["tiles"] / "s2.h5", features / "s2.h5")
    for i, folder in enumerate((empty, features)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="weakstil"):
            md = _report(made, tmp_path / f"r{i}", tiles_dir=folder)
        said = [r.getMessage() for r in caplog.records if "--tiles" in r.getMessage()]
        assert len(said) == 1 and str(folder) in said[0] and "holds no 'weakstil tile' output" in said[0], said
        assert "_thumb.png" not in md


def test_report_leaves_out_overlays_of_another_tiling(made, tmp_path: Path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="weakstil"):
        md = _report(made, tmp_path / "r448", tiles_dir=made["tiles_448"])
    said = [r.getMessage() for r in caplog.records if "--tiles" in r.getMessage()]
    assert len(said) == 1 and "2 slide(s) (s 1, s2)" in said[0] and "tile_px 448 (the model: 224)" in said[0], said
    assert "_thumb.png" not in md and not list((tmp_path / "r448").rglob("*_thumb.png"))

    caplog.clear()  # the model's own tiling: thumbnails, no word about the folder
    with caplog.at_level(logging.WARNING, logger="weakstil"):
        md = _report(made, tmp_path / "r224", tiles_dir=made["tiles"])
    assert not [r for r in caplog.records if "--tiles" in r.getMessage()]
    assert "slides/s2_thumb.png" in md and (tmp_path / "r224" / "slides" / "s2_thumb.png").is_file()


def test_report_settings_say_what_the_model_was_made_with(made, tmp_path: Path) -> None:
    md = _report(made, tmp_path / "r")
    settings = md[md.index("## Settings"):md.index("## Versions")]
    for row in ("| encoder architecture | `small-cnn` |", "| features.stain_norm | `macenko` |",
                "| tiling.tissue_threshold | `0.5` |", "| tiling.overlap_px | `0` |",
                "| tiling.tissue.min_density | `0.08` |", "| training.cross_validation.folds | `2` |",
                f"| training.tumorbeds.annotations | `{made['root'] / 'cohort' / 'truth'}` |",
                "| training.tumorbeds.slides.annotation | `2` |"):
        assert row in settings, settings
    assert "training.tumorbeds.detector" not in settings  # a source not used is not listed


def test_report_md_shows_a_slide_id_with_angle_brackets_as_written() -> None:
    """Outside tester (hunt 37o): a scored slide named ``hard_<b>&"q'`` (a file name Linux allows) was
    written raw into report.md's row, ``| hard_<b>&"q' | ok | 53.5 | ...``: a Markdown viewer reads
    ``<b>`` as an HTML tag and bolds the rest of the row (``<!--`` would hide it, ``<img ...>`` runs as
    HTML); report.html escaped it. Now the ``<`` is escaped, ``\\<``, shown as written."""
    from weakstil.report_render import ReportContent, ScoreRow, render_markdown

    sid = "hard_<b>&\"q'"
    row = ScoreRow(sid, "ok", 53.5027, "13.3–100.0", "high at 30 %", "near_threshold",
                   "near_threshold: interval 13.3-100.0 contains the threshold 30", "35 of 72 tiles in the bed (model)",
                   "slides/hard_<b>&\"q'_heatmap.png", 30.0)
    content = ReportContent(title="t", created="now", model_dir="/scores", metrics_source="run", slides_source=None,
                            headline={"slides": 1}, threshold=30.0, rows=[], settings=[], model_settings=[],
                            trained_versions={}, report_versions={}, cv_folds=None, has_cv=False, score_rows=[row],
                            source="Scores")
    line = next(ln for ln in render_markdown(content).splitlines() if "| ok |" in ln)
    assert not re.search(r"(?<!\\)<", line), line  # no "<" a viewer could take for a tag
    assert line.startswith("| hard_\\<b>&\"q' | ok | 53.5 | 13.3–100.0 | high at 30 % |"), line
    # the heatmap's link still names its file, and its alt text is escaped too
    assert "![hard_\\<b>&\"q' heatmap](slides/hard_%3Cb%3E%26%22q%27_heatmap.png)" in line, line


def test_report_error_column_has_no_negative_zero() -> None:
    """Outside tester (hunt 37o): the demo model's report listed synth_0010 as true 3.4, predicted 3.4,
    error "-0.0" (3.3961 - 3.4005): a sign for an error that rounds to nothing. Now "+0.0"; others keep theirs."""
    from weakstil.report_render import ReportContent, SlideRow, render_html

    rows = [SlideRow("a", "g", 1, 3.4005, 3.3961, None, None), SlideRow("b", "g", 1, 12.48, 10.2027, None, None)]
    content = ReportContent(title="t", created="now", model_dir="/m", metrics_source="cv", slides_source=None,
                            headline={"n": 2}, threshold=30.0, rows=rows, settings=[], model_settings=[],
                            trained_versions={}, report_versions={}, cv_folds=2)
    page = render_html(content)
    assert "<td class='num'>+0.0</td>" in page and "-0.0" not in page, page
    assert "<td class='num'>-2.3</td>" in page


def test_report_explains_the_qc_codes_its_slide_table_shows() -> None:
    """Outside tester (hunt 37o): the model's cross-validation report showed qc codes such as
    `near_threshold, few_tumorbed_tiles` with no words anywhere on the page (only the scoring report had a
    reasons column). Now a legend under the table gives each code shown, in a pathologist's words, and
    only those; an unknown code (a newer version's) is listed without words rather than dropped."""
    from weakstil.qc.flags import FLAGS, MEANING
    from weakstil.report_render import ReportContent, SlideRow, render_html, render_markdown

    assert set(MEANING) == set(FLAGS)  # every flag has its words
    rows = [SlideRow("a", "g", 1, 30.0, 31.0, None, None, qc="near_threshold, few_tumorbed_tiles"),
            SlideRow("b", "g", 1, 5.0, 4.0, None, None, qc="brand_new_flag"), SlideRow("c", "g", 1, 9.0, 9.5, None, None)]
    content = ReportContent(title="t", created="now", model_dir="/m", metrics_source="cv", slides_source=None,
                            headline={"n": 3}, threshold=30.0, rows=rows, settings=[], model_settings=[],
                            trained_versions={}, report_versions={}, cv_folds=2)
    page, md = render_html(content), render_markdown(content)
    for code in ("near_threshold", "few_tumorbed_tiles"):
        assert f"<li><code>{code}</code>: {MEANING[code]}" in page.replace("&#x27;", "'"), page
        assert f"- `{code}`: {MEANING[code]}" in md, md
    assert "<li><code>brand_new_flag</code>: </li>" in page
    assert "out_of_distribution" not in page  # only the codes shown
    assert md.index("`few_tumorbed_tiles`") < md.index("`near_threshold`")  # in the flags' order, not the row's
