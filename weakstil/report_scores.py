"""Report of a ``weakstil score`` run: ``weakstil report --scores SCORE_OUT --out DIR``.

Reads ``SCORE_OUT/results.csv`` (one row per slide) and each slide's ``<slide_id>_heatmap.png`` and
``<slide_id>.h5`` there, and writes into ``DIR``, with the cross-validation report's renderer
(:mod:`weakstil.report_render`), so both look and read alike:

* ``report.html`` and ``report.md``: the run's counts (slides ok, bed fallback, no tumour bed,
  error, flagged by qc, sTIL-high, without an interval), one row per slide (status, sTIL%, 90 %
  interval, call, qc flags with their reasons, tumour bed or error, heatmap thumbnail), the
  model and scoring settings, and the software versions;
* ``overview.png`` (the first heatmaps) and ``slides/<slide_id>_heatmap.png`` (each slide's heatmap
  drawn again from its score file and slide with the slide 480 px on its long side, text at full size;
  the full-size ones stay in ``SCORE_OUT``).

The model is the one the slides' score files record (``model_path``), or ``--model`` when given
(refused when it is not the model whose weights scored them); without it at hand the report lists
what ``results.csv`` and the score files record.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from pathlib import Path

import pandas as pd

from weakstil.errors import WeakSTILError
from weakstil.report_images import HEATMAP_SIDE, write_overview, write_score_heatmap, write_thumbnail
from weakstil.report_render import ReportContent, ScoreRow, render_html, render_markdown
from weakstil.results_check import number_or_nan, score_attrs

log = logging.getLogger(__name__)

FIX = "pass the --out folder of 'weakstil score' (the one holding its results.csv)"
#: Columns a results.csv needs to be reported.
NEEDED = ("slide_id", "status", "stil")


def read_scores(folder: Path) -> pd.DataFrame:
    """``folder/results.csv`` as text cells; one error line naming the folder when it is no
    ``weakstil score`` output."""
    from weakstil.outputdir import commands_of

    if not folder.exists():
        raise WeakSTILError("not found", path=folder, fix=FIX)
    if not folder.is_dir():
        raise WeakSTILError("is a file, not the --out folder of 'weakstil score'", path=folder, fix=FIX)
    commands = commands_of(folder)
    if commands and "score" not in commands:
        raise WeakSTILError(f"is an output of 'weakstil {commands[0]}', not of 'weakstil score'", path=folder,
                            fix=FIX + ("; a model's own report is 'weakstil report --model MODEL'"
                                       if commands[0] == "train" else ""))
    path = folder / "results.csv"
    if not path.is_file() and not path.exists() and _has_score_files(folder):  # deleted, or moved away
        _say_once(folder, "%s holds no results.csv: the report is made from its slides' score files", folder)
        return pd.DataFrame(columns=list(NEEDED))
    if not path.is_file():
        raise WeakSTILError("holds no results.csv: not a 'weakstil score' --out folder, or no slide scored there yet",
                            path=folder, fix=FIX)
    from weakstil.results_table import read_table

    table = read_table(path)  # as score reads it: a spreadsheet's Windows code page too; unreadable: one error
    if table is None:
        raise WeakSTILError("is empty", path=path, fix="score the slides again into it")
    missing = [c for c in NEEDED if c not in table.columns]
    columns = [str(c) for c in table.columns]
    other = next((sep for sep in ";\t" if len(columns) == 1 and "slide_id" in columns[0] and sep in columns[0]), None)
    if other and _has_score_files(folder):  # saved again by a spreadsheet with its own separator (and decimal commas)
        _say_once(folder, "%s is separated by %r, not commas (saved again by a spreadsheet?): not read; the report is "
                  "made from the slides' score files", path, other)
        return pd.DataFrame(columns=list(NEEDED))
    if other:
        raise WeakSTILError(f"is separated by {other!r}, not commas (saved again by a spreadsheet?)", path=path,
                            fix="save it comma-separated with decimal points, or restore the file 'weakstil score' wrote")
    if missing:
        raise WeakSTILError(f"is not the results table of 'weakstil score' (no column {', '.join(missing)})", path=path,
                            fix=FIX)
    if table.empty:
        raise WeakSTILError("lists no slide", path=path, fix="score slides into it first")
    return _one_row_per_answer(table, path)


def _one_row_per_answer(table: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``table`` without a row repeated word for word (two results.csv put together with ``cat``, a
    row pasted twice in a spreadsheet): each was counted as one more slide, its sTIL% in the median
    twice (hunt 44c). A slide's ``error`` row beside its scored one (a refused file's, as ``score``
    writes it) is kept. A slide given two answers that differ (two runs' rows put together) is refused,
    as ``evaluate`` refuses it: the report counted it twice and took both sTIL% into the median, with
    only a warning (helper h44h). The
    second file's header line (``cat`` of two results.csv) is no slide: it was reported as slide
    'slide_id' of status 'status', scored by model 'model_id' (review h44i)."""
    header = (table["slide_id"].astype(str).str.strip("\ufeff \t") == "slide_id") & (table["status"].astype(str).str.strip() == "status")
    if header.any():
        _say_once(path.parent, "%s repeats its header line %d time(s) (results.csv files put together?): not read as "
                  "slides", path, int(header.sum()))
        table = table.loc[~header].reset_index(drop=True)
    from weakstil.results_table import cut_rows

    if cut := cut_rows(table.to_dict("records"), list(table.columns)):  # a copy cut short: no slide (fault matrix h48d)
        _say_once(path.parent, "%s: %d row(s) with no status (a line cut short by a copy?): not read as slides", path,
                  len(cut))
        table = table.drop(index=table.index[cut]).reset_index(drop=True)
    repeated = table.duplicated(keep="first")
    if repeated.any():
        ids = list(dict.fromkeys(str(s) for s in table.loc[repeated, "slide_id"]))
        _say_once(path.parent, "%s repeats %d row(s) word for word (%s%s): each is reported once", path,
                  int(repeated.sum()), ", ".join(ids[:5]), ", ..." if len(ids) > 5 else "")
        table = table.loc[~repeated]
    answered = table[table["status"].astype(str) != "error"]
    rows: dict[str, list[int]] = {}
    for i, sid in zip(answered.index, answered["slide_id"].astype(str)):
        rows.setdefault(sid, []).append(int(i) + 2)  # as evaluate numbers them: the header is row 1
    clash = [(sid, lines) for sid, lines in rows.items() if len(lines) > 1]
    if clash:
        said = "; ".join(f"{sid} on rows {', '.join(map(str, lines))}" for sid, lines in clash[:5])
        raise WeakSTILError(f"gives {len(clash)} slide{'s' if len(clash) > 1 else ''} two or more answers that differ "
                            f"({said}{' ...' if len(clash) > 5 else ''}: runs' rows put together?)", path=path,
                            fix="keep one row per slide (the results.csv of one 'weakstil score' run)")
    return table.reset_index(drop=True)


_SAID: set[tuple[str, str]] = set()


def _say_once(folder: Path, text: str, *args: object) -> None:
    """A warning of ``read_scores`` said once (the CLI reads the folder before the report reads it)."""
    if (str(folder), text) not in _SAID:
        _SAID.add((str(folder), text))
        log.warning(text, *args)


def _has_score_files(folder: Path) -> bool:
    from weakstil.results_check import score_file_rows

    return bool(score_file_rows(folder, set()))


def _heatmap_of(folder: Path, rec: dict) -> Path | None:
    """The slide's heatmap in ``folder`` when it is of this row's scoring (its PNG records the slide
    and the model): an error row's earlier heatmap, or another run's, is not shown for it."""
    from PIL import Image

    path = folder / f"{rec['slide_id']}_heatmap.png"
    if rec.get("status") == "error" or not path.is_file():
        return None
    try:
        with Image.open(path) as img:
            made = json.loads(img.text.get("Comment", "{}"))  # type: ignore[attr-defined]
    except (OSError, ValueError):
        return None
    if made.get("slide_id") not in (None, rec["slide_id"]) or made.get("model_id") not in (None, rec.get("model_id")):
        return None
    return path


def _row(rec: dict, heatmap: str | None) -> ScoreRow:
    from weakstil.confidence import interval_columns
    from weakstil.metrics import interval_ends_text
    from weakstil.results_check import called_high

    low, high = (number_or_nan(rec.get(c, "")) for c in interval_columns())
    threshold = number_or_nan(rec.get("threshold", ""))
    stil = number_or_nan(rec.get("stil", ""))
    interval = interval_ends_text(low, high, threshold if math.isfinite(threshold) else None) \
        if math.isfinite(low) and math.isfinite(high) else "none" if math.isfinite(stil) else ""
    call = "" if not (math.isfinite(stil) and math.isfinite(threshold)) else \
        f"{'high' if called_high(stil, threshold) else 'low'} at {threshold:g} %"
    if rec.get("status") == "error":
        detail = str(rec.get("error", ""))
    else:
        detail = f"{rec.get('n_tumorbed_tiles', '?')} of {rec.get('n_tiles', '?')} tiles in the bed " \
                 f"({rec.get('tumorbed_source') or 'unknown source'})" + \
                 ("; its score file is damaged: as results.csv says, unchecked" if rec.get("_unchecked") == "damaged" else
                  "; no score file of the slide: as results.csv says, unchecked" if rec.get("_unchecked") else
                  "; no row in results.csv: from its score file" if rec.get("_unlisted") else "")
    return ScoreRow(str(rec["slide_id"]), str(rec["status"]), stil, interval, call,
                    str(rec.get("qc", "")).replace(";", ", "), str(rec.get("qc_reasons", "")), detail, heatmap,
                    threshold)


def run_counts(table: pd.DataFrame, rows: list[ScoreRow]) -> dict[str, object]:
    """The run at a glance: how many slides had which outcome."""
    status = Counter(table["status"])
    scored = [r for r in rows if math.isfinite(r.stil)]
    # the calls' thresholds: an error row keeps its own run's (an earlier one at another threshold, a file
    # that failed before the rest were scored again), which called nothing ("at 30, 50 %" for a run at 50)
    called = table[table["status"] != "error"] if (table["status"] != "error").any() else table
    thresholds = sorted({str(t) for t in called.get("threshold", pd.Series(dtype=str)) if str(t)})
    counts: dict[str, object] = {"slides": len(rows), "ok": status.get("ok", 0)}
    counts.update({s: n for s, n in status.items() if s not in ("ok", "error")})
    counts["error"] = status.get("error", 0)
    # an error row's stain flag says why it failed (see its error): not a scored slide to check
    counts["flagged (one or more qc flags)"] = sum(bool(r.qc) and r.status != "error" for r in rows)
    counts[f"sTIL-high (at {', '.join(thresholds) or '?'} %)"] = sum(r.call.startswith("high") for r in scored)
    counts["scored without a 90 % interval"] = sum(r.interval == "none" for r in scored)
    # one decimal, as the slides' own sTIL% are shown (a float would be printed with a metric's 3: "14.000")
    counts["median sTIL% of the scored slides"] = f"{float(pd.Series([r.stil for r in scored]).median()):.1f}" \
        if scored else None
    return counts


def _model(given: Path | None, recorded: str | None, model_ids: list[str]) -> tuple[Path | None, dict | None]:
    """The model folder and its model.json: ``given`` (refused when not the model of ``model_ids``),
    else the one the score files record when it is still there and the same model."""
    from weakstil.modeldir import ModelDir

    def same(meta: dict, folder: Path) -> bool:
        ours = ModelDir(folder).model_id(meta).rpartition("@")[2]
        return any(m.rpartition("@")[2] == ours for m in model_ids)

    if given is not None:
        meta = ModelDir(given).read_meta()
        if model_ids and not same(meta, given):
            raise WeakSTILError(f"is not the model that scored these slides ({ModelDir(given).model_id(meta)}, not "
                                f"{', '.join(model_ids)})", path=given,
                                fix=f"pass the model the run used{f' ({recorded})' if recorded else ''}, or leave "
                                "--model out")
        return given, meta
    if recorded and Path(recorded).is_dir():
        try:
            meta = ModelDir(Path(recorded)).read_meta()
        except WeakSTILError:
            meta = None
        if meta is not None and same(meta, Path(recorded)):
            return Path(recorded), meta
    log.warning("the model that scored these slides (%s) is not at %s: the report lists what results.csv and the "
                "score files record of it; pass --model with the model folder for its settings",
                ", ".join(model_ids) or "?", recorded or "a recorded path")
    return None, None


def build_score_report(scores: str | Path, out_dir: str | Path, *, model: str | Path | None = None,
                       settings: dict | None = None, title: str = "WeakSTIL scoring report") -> dict[str, Path]:
    """Write the report of the ``weakstil score`` run in ``scores`` into ``out_dir``; returns its files."""
    from weakstil.atomic import atomic_path
    from weakstil.report import flatten, installed_versions, model_settings

    scores, out_dir = Path(scores), Path(out_dir)
    from weakstil.results_check import checked_records

    records = checked_records(scores, read_scores(scores).to_dict("records"))
    table = pd.DataFrame(records)
    model_ids = list(dict.fromkeys(str(m) for m in table.get("model_id", pd.Series(dtype=str)) if str(m)))
    if len(model_ids) > 1:  # runs with other models into one --out: each row names its own
        log.warning("%s/results.csv holds slides scored by %d models (%s): the settings listed are the first's",
                    scores, len(model_ids), ", ".join(model_ids))
    attrs = next((a for r in records if r.get("status") != "error" and (a := score_attrs(scores, str(r["slide_id"])))),
                 {})
    model_dir, meta = _model(Path(model) if model is not None else None, attrs.get("model_path"), model_ids[:1])
    (out_dir / "slides").mkdir(parents=True, exist_ok=True)
    rows, no_heatmap = [], []
    for rec in records:
        heatmap = _heatmap_of(scores, rec)
        rel = None
        if heatmap is not None:
            rel = f"slides/{rec['slide_id']}_heatmap.png"
            from weakstil.files import slide_file

            why = write_score_heatmap(slide_file(scores, str(rec["slide_id"])), out_dir / rel)
            if why is not None:  # no slide to draw it from: the full-size one shrunk (its text too small to read)
                if rec.get("_unchecked") != "damaged":  # (a damaged score file is said once, by checked_records)
                    log.warning("%s: heatmap shrunk from %s, its text unreadable small (%s)", rec["slide_id"], heatmap, why)
                write_thumbnail(heatmap, out_dir / rel, side=HEATMAP_SIDE)
        elif rec.get("status") != "error":
            no_heatmap.append(str(rec["slide_id"]))
        rows.append(_row(rec, rel))
    if no_heatmap:  # one line, not one per slide
        log.warning("%d scored slide(s) have no heatmap of this scoring in %s (%s%s): shown without one",
                    len(no_heatmap), scores, ", ".join(no_heatmap[:3]), ", ..." if len(no_heatmap) > 3 else "")
    files = {"overview.png": write_overview(out_dir, rows, out_dir / "overview.png", plots=())}
    said = f"'weakstil score' run: {len(rows)} slide(s) of {scores / 'results.csv'}, scored by " \
           f"{', '.join(model_ids) or 'an unrecorded model'}; heatmaps from that folder (full size there)."
    if meta is not None:
        from weakstil.modeldir import ModelDir
        from weakstil.qc.scoring import interval_note

        note = interval_note(ModelDir(model_dir), meta)
        said += f" No 90 % interval: {note}." if note else ""
    request = attrs.get("score_request")
    run = [("scores", str(scores.resolve())), ("model", str(model_dir or attrs.get("model_path", ""))),
           ("model id", ", ".join(model_ids)),
           ("encoder id", ", ".join(dict.fromkeys(str(e) for e in table.get("encoder_id", []) if str(e)))),
           ("tumour-bed sources", ", ".join(f"{s or 'none'}: {n}" for s, n in Counter(
               table.get("tumorbed_source", pd.Series(dtype=str))).items()))]
    run += flatten(json.loads(str(request)) if request else {}, "score.")
    versions = scoring_versions(attrs)
    # the UTC offset, not the zone's abbreviation: CST was China's +0800 or Chicago's -0600
    content = ReportContent(title=title, created=time.strftime("%Y-%m-%d %H:%M:%S %z"), model_dir=str(scores),
                            metrics_source=said, slides_source=None, headline=run_counts(table, rows),
                            threshold=number_or_nan(records[0].get("threshold", "")), rows=[],
                            settings=flatten(settings or {}) + run,
                            model_settings=model_settings(meta) if meta is not None else [],
                            trained_versions=versions, report_versions=versions_now(versions, installed_versions(*versions)),
                            cv_folds=None,
                            has_cv=False, score_rows=rows, source="Scores")
    for name, text in (("report.html", render_html(content)), ("report.md", render_markdown(content))):
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
        files[name] = out_dir / name
    counts = content.headline
    log.info("report: %d slides (%d ok, %d error, %d flagged)", len(rows), counts["ok"], counts["error"],
             counts["flagged (one or more qc flags)"])
    return files


def scoring_versions(attrs: dict) -> dict[str, str]:
    """The versions a score file records: all its ``library_versions`` (the slide reader's, numpy's,
    Python's... as in the tiles and features files), else (a file from before hunt 33) its weakstil,
    torch and timm attributes; the report listed only those three, its 'scoring' column blank for
    Python, numpy and OpenSlide though the files name them."""
    try:
        recorded = json.loads(str(attrs.get("library_versions") or "{}"))
    except json.JSONDecodeError:
        recorded = {}
    if isinstance(recorded, dict) and recorded:
        first = [k for k in ("weakstil", "torch", "timm", "python", "numpy") if k in recorded]
        return {str(k): str(recorded[k]) for k in dict.fromkeys(first + sorted(recorded))}
    return {k: str(attrs[a]) for k, a in (("weakstil", "weakstil_version"), ("torch", "torch_version"),
                                          ("timm", "timm_version")) if a in attrs}


def versions_now(recorded: dict[str, str], installed: dict[str, str]) -> dict[str, str]:
    """``installed`` and, where the score files name it, the OpenSlide C library's version (no
    distribution of its own: the report's column was blank beside the recorded one)."""
    if "openslide" in recorded:
        from weakstil.runtime import library_versions

        installed = {**installed, "openslide": library_versions().get("openslide", "not installed")}
    return installed
