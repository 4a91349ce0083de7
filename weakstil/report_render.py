"""The cohort report's pages: its content (:class:`ReportContent`) rendered as Markdown and HTML.

:mod:`weakstil.report` gathers the content (metrics, slide rows, pictures, settings); this module only
lays it out, so both pages always say the same.
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from urllib.parse import quote

from weakstil.metrics import fmt


@dataclass
class SlideRow:
    """One slide of the per-slide table."""

    slide_id: str
    group: str
    fold: object
    stil_true: float
    stil_pred: float
    thumbnail: str | None  #: path relative to the report folder
    heatmap: str | None
    interval: str = ""  #: the out-of-fold 90 % interval, calibrated without the slide
    qc: str = ""  #: the qc flags the slide would get at scoring


@dataclass
class ScoreRow:
    """One slide of a ``weakstil score`` run (its results.csv row)."""

    slide_id: str
    status: str
    stil: float  #: NaN: no score (no tumour bed, error)
    interval: str  #: the 90 % interval as text ("" without one)
    call: str  #: "high" / "low" at the threshold ("" without a score)
    qc: str
    qc_reasons: str
    detail: str  #: the tumour bed and its tiles, or the error
    heatmap: str | None  #: path relative to the report folder
    threshold: float = float("nan")  #: the call's; the sTIL% gets the decimals that keep it on its side


@dataclass
class ReportContent:
    title: str
    created: str
    model_dir: str
    metrics_source: str  #: how the metrics' predictions were made (describe_evaluation)
    slides_source: str | None  #: how the slide table's predictions were made, when not as the metrics'
    headline: dict[str, float | str | None]
    threshold: float
    rows: list[SlideRow]
    settings: list[tuple[str, str]]
    model_settings: list[tuple[str, str]]
    trained_versions: dict[str, str]
    report_versions: dict[str, str]
    cv_folds: int | None
    has_cv: bool = True  #: the slide table is the model's out-of-fold cross-validation
    score_rows: list[ScoreRow] | None = None  #: a 'weakstil score' run: its slides (``rows`` unused)
    source: str = "Model"  #: what ``model_dir`` is, in the first line


def _provenance(c: ReportContent) -> str:
    """Where the metrics and the slide table come from, in words."""
    if c.score_rows is not None:
        return c.metrics_source
    if c.slides_source is None:
        return f"Metrics and slides: {c.metrics_source}."
    return f"Metrics, scatter and ROC: {c.metrics_source}. Slide table and heatmaps: {c.slides_source}."


def _heatmap_header(c: ReportContent) -> str:
    return "out-of-fold heatmap" if c.has_cv else "heatmap"


def _stil_cell(r: ScoreRow) -> str:
    """A run's sTIL% as its heatmap title and the napari widget write it: 29.96 at 30 is "29.96" beside
    "low at 30 %", not "30.0"."""
    from weakstil.metrics import stil_text

    if r.stil != r.stil:
        return ""
    return stil_text(r.stil, r.threshold if r.threshold == r.threshold else None)


def _slide_table(c: ReportContent) -> tuple[list[str], list[list[tuple]], tuple[int, ...]]:
    """The slide table: its headers, its rows of cells (``("text", value)`` or ``("image", alt, path,
    link, css class)``) and which columns are numbers; both pages lay out the same table."""
    if c.score_rows is not None:
        headers = ["slide", "status", "sTIL%", "90 % interval", "call", "qc", "qc reasons",
                   "tumour bed / error", "heatmap"]
        rows = [[("text", r.slide_id), ("text", r.status), ("text", _stil_cell(r)),
                 ("text", r.interval), ("text", r.call), ("text", r.qc), ("text", r.qc_reasons), ("text", r.detail),
                 ("image", f"{r.slide_id} heatmap", r.heatmap, True, "heat") if r.heatmap else ("text", "")]
                for r in c.score_rows]
        return headers, rows, (2,)
    headers = ["slide", "group", "fold", "true sTIL%", "predicted sTIL%", "error", "90 % interval", "qc", "tiles",
               _heatmap_header(c)]
    rows = [[("text", r.slide_id), ("text", r.group), ("text", r.fold), ("text", f"{r.stil_true:.1f}"),
             ("text", f"{r.stil_pred:.1f}"), ("text", _error_text(r)), ("text", r.interval),
             ("text", r.qc),
             ("image", f"{r.slide_id} tiles", r.thumbnail, False, "thumb") if r.thumbnail else ("text", ""),
             ("image", f"{r.slide_id} heatmap", r.heatmap, True, "heat") if r.heatmap else ("text", "")]
            for r in c.rows]
    return headers, rows, (3, 4, 5)


def _flag_legend(c: ReportContent) -> list[tuple[str, str]]:
    """(code, meaning) of each qc flag the slide table shows, in the flags' order: the model's
    cross-validation table shows codes only, which a reader cannot look up (hunt 37o)."""
    from weakstil.qc.flags import FLAGS, MEANING

    shown = {code.strip() for r in (c.score_rows if c.score_rows is not None else c.rows)
             for code in re.split("[,;]", r.qc) if code.strip()}
    return [(code, MEANING[code]) for code in FLAGS if code in shown] + [(code, "") for code in sorted(shown - set(FLAGS))]


def _error_text(r: SlideRow) -> str:
    """Predicted minus true sTIL% with one decimal and its sign: an error under 0.05 below is "+0.0", not "-0.0"
    (a slide predicted 3.4 for a true 3.4 read as too low)."""
    return f"{round(r.stil_pred - r.stil_true, 1) + 0.0:+.1f}"


def _versions_table(c: ReportContent) -> list[tuple[str, str, str]]:
    names = list(dict.fromkeys([*c.trained_versions, *c.report_versions]))
    return [(n, c.trained_versions.get(n, ""), c.report_versions.get(n, "")) for n in names]


def _md(text: object) -> str:
    """A Markdown table cell: a ``|`` would split the cell and a newline end the table, and a ``<``
    (a slide id ``a<b>c``) would open an HTML tag that bolds or hides the rest of the row."""
    return "<br>".join(str(text).replace("|", "\\|").replace("<", "\\<").splitlines())


def _md_code(text: object) -> str:
    """``text`` as code in a Markdown table cell, line by line: a code span is fenced by a run of
    backticks longer than any in it (CommonMark), and a ``|`` is escaped even inside it (GFM)."""
    spans = []
    for line in str(text).replace("|", "\\|").splitlines():
        fence = "`" * (1 + max((len(run) for run in re.findall("`+", line)), default=0))
        pad = " " if line.startswith("`") or line.endswith("`") else ""
        spans.append(f"{fence}{pad}{line}{pad}{fence}" if line.strip() else line)
    return "<br>".join(spans)


def _md_image(alt: str, path: str, link: bool = False) -> str:
    """An image of the report folder in a table cell: its path percent-encoded (a space or a
    parenthesis in a slide id would end the link), its alt text without brackets, ``|`` escaped."""
    url, alt = quote(path), _md(alt.replace("[", "").replace("]", ""))
    image = f"![{alt}]({url})"
    return f"[{image}]({url})" if link else image


def _md_cell(cell: tuple) -> str:
    return _md_image(cell[1], cell[2], link=cell[3]) if cell[0] == "image" else _md(cell[1])


def _names(c: ReportContent) -> tuple[str, str]:
    """The first section's heading and the versions table's first column."""
    return ("Run", "scoring") if c.score_rows is not None else ("Metrics", "training")


def render_markdown(c: ReportContent) -> str:
    section, made = _names(c)
    lines = [f"# {' '.join(c.title.splitlines())}", "", f"{c.source} {_md_code(c.model_dir)}. {_provenance(c)} "
             f"Created {c.created}.", "", f"## {section}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {_md(k)} | {fmt(v) if not isinstance(v, str) else _md(v)} |" for k, v in c.headline.items()]
    if c.score_rows is None:
        lines += ["", "![predicted vs true](scatter.png) ![ROC](roc.png)"]
    headers, rows, _ = _slide_table(c)
    lines += ["", "## Slides", "", "| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(_md_cell(cell) for cell in row) + " |" for row in rows]
    if legend := _flag_legend(c):
        lines += ["", "qc flags (advice: the slide keeps its score):", ""]
        lines += [f"- `{code}`: {_md(meaning)}" for code, meaning in legend]
    lines += ["", "## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {_md(k)} | {_md_code(v)} |" for k, v in c.settings + c.model_settings]
    lines += ["", "## Versions", "", f"| package | {made} | report |", "|---|---|---|"]
    lines += [f"| {_md(n)} | {_md(a)} | {_md(b)} |" for n, a, b in _versions_table(c)]
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:middle}th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
img.plot{width:420px;margin-right:1em}img.thumb{max-width:160px}img.heat{max-width:360px}code{font-size:90%}"""


def _cells(values: list[str], numeric: tuple[int, ...] = ()) -> str:
    return "".join(f"<td class='num'>{v}</td>" if i in numeric else f"<td>{v}</td>" for i, v in enumerate(values))


def _html_cell(cell: tuple) -> str:
    e = html.escape
    if cell[0] != "image":
        return e(str(cell[1]))
    _, alt, path, link, css = cell
    image = f"<img class='{css}' src='{e(quote(path))}' alt='{e(alt)}'>"
    return f"<a href='{e(quote(path))}'>{image}</a>" if link else image


def render_html(c: ReportContent) -> str:
    e = html.escape
    section, made = _names(c)
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(c.title)}</title>"
             f"<style>{_CSS}</style></head><body>", f"<h1>{e(c.title)}</h1>",
             f"<p>{e(c.source)} <code>{e(c.model_dir)}</code>. {e(_provenance(c))} Created {e(c.created)}.</p>",
             f"<h2>{section}</h2><table>"]
    parts += [f"<tr><th>{e(k)}</th><td class='num'>{e(v) if isinstance(v, str) else fmt(v)}</td></tr>"
              for k, v in c.headline.items()]
    parts += ["</table>"]
    if c.score_rows is None:
        parts += ["<p><img class='plot' src='scatter.png' alt='predicted vs true sTIL%'>"
                  "<img class='plot' src='roc.png' alt='ROC of sTIL-high'></p>"]
    headers, rows, numeric = _slide_table(c)
    parts += ["<h2>Slides</h2><table>", "<tr>" + "".join(f"<th>{e(h)}</th>" for h in headers) + "</tr>"]
    parts += [f"<tr>{_cells([_html_cell(cell) for cell in row], numeric=numeric)}</tr>" for row in rows]
    parts += ["</table>"]
    if legend := _flag_legend(c):
        parts += ["<p>qc flags (advice: the slide keeps its score):</p><ul>"]
        parts += [f"<li><code>{e(code)}</code>: {e(meaning)}</li>" for code, meaning in legend]
        parts += ["</ul>"]
    parts += ["<h2>Settings</h2><table>"]
    parts += [f"<tr><th>{e(k)}</th><td><code>{e(v)}</code></td></tr>" for k, v in c.settings + c.model_settings]
    parts += ["</table>", f"<h2>Versions</h2><table><tr><th>package</th><th>{made}</th><th>report</th></tr>"]
    parts += [f"<tr><th>{e(n)}</th><td>{e(a)}</td><td>{e(b)}</td></tr>" for n, a, b in _versions_table(c)]
    parts += ["</table></body></html>"]
    return "\n".join(parts) + "\n"
