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
class ReportContent:
    title: str
    created: str
    model_dir: str
    metrics_source: str  #: how the metrics' predictions were made (describe_evaluation)
    slides_source: str | None  #: how the slide table's predictions were made, when not as the metrics'
    headline: dict[str, float | None]
    threshold: float
    rows: list[SlideRow]
    settings: list[tuple[str, str]]
    model_settings: list[tuple[str, str]]
    trained_versions: dict[str, str]
    report_versions: dict[str, str]
    cv_folds: int | None
    has_cv: bool = True  #: the slide table is the model's out-of-fold cross-validation


def _provenance(c: ReportContent) -> str:
    """Where the metrics and the slide table come from, in words."""
    if c.slides_source is None:
        return f"Metrics and slides: {c.metrics_source}."
    return f"Metrics, scatter and ROC: {c.metrics_source}. Slide table and heatmaps: {c.slides_source}."


def _heatmap_header(c: ReportContent) -> str:
    return "out-of-fold heatmap" if c.has_cv else "heatmap"


def _versions_table(c: ReportContent) -> list[tuple[str, str, str]]:
    names = list(dict.fromkeys([*c.trained_versions, *c.report_versions]))
    return [(n, c.trained_versions.get(n, ""), c.report_versions.get(n, "")) for n in names]


def _md(text: object) -> str:
    """A Markdown table cell: a ``|`` would split the cell and a newline end the table."""
    return "<br>".join(str(text).replace("|", "\\|").splitlines())


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


def render_markdown(c: ReportContent) -> str:
    lines = [f"# {' '.join(c.title.splitlines())}", "", f"Model {_md_code(c.model_dir)}. {_provenance(c)} "
             f"Created {c.created}.", "", "## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {_md(k)} | {fmt(v)} |" for k, v in c.headline.items()]
    lines += ["", "![predicted vs true](scatter.png) ![ROC](roc.png)", "", "## Slides", "",
              "| slide | group | fold | true sTIL% | predicted sTIL% | error | 90 % interval | qc | tiles | "
              f"{_heatmap_header(c)} |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in c.rows:
        thumb = _md_image(f"{r.slide_id} tiles", r.thumbnail) if r.thumbnail else ""
        heat = _md_image(f"{r.slide_id} heatmap", r.heatmap, link=True) if r.heatmap else ""
        lines.append(f"| {_md(r.slide_id)} | {_md(r.group)} | {_md(r.fold)} | {r.stil_true:.1f} | "
                     f"{r.stil_pred:.1f} | {r.stil_pred - r.stil_true:+.1f} | {_md(r.interval)} | {_md(r.qc)} | "
                     f"{thumb} | {heat} |")
    lines += ["", "## Settings", "", "| setting | value |", "|---|---|"]
    lines += [f"| {_md(k)} | {_md_code(v)} |" for k, v in c.settings + c.model_settings]
    lines += ["", "## Versions", "", "| package | training | report |", "|---|---|---|"]
    lines += [f"| {_md(n)} | {_md(a)} | {_md(b)} |" for n, a, b in _versions_table(c)]
    return "\n".join(lines) + "\n"


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;
vertical-align:middle}th{background:#f4f4f4}td.num{text-align:right;font-variant-numeric:tabular-nums}
img.plot{width:420px;margin-right:1em}img.thumb{max-width:160px}img.heat{max-width:360px}code{font-size:90%}"""


def _cells(values: list[str], numeric: tuple[int, ...] = ()) -> str:
    return "".join(f"<td class='num'>{v}</td>" if i in numeric else f"<td>{v}</td>" for i, v in enumerate(values))


def render_html(c: ReportContent) -> str:
    e = html.escape
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{e(c.title)}</title>"
             f"<style>{_CSS}</style></head><body>", f"<h1>{e(c.title)}</h1>",
             f"<p>Model <code>{e(c.model_dir)}</code>. {e(_provenance(c))} Created {e(c.created)}.</p>",
             "<h2>Metrics</h2><table>"]
    parts += [f"<tr><th>{e(k)}</th><td class='num'>{fmt(v)}</td></tr>" for k, v in c.headline.items()]
    parts += ["</table>", "<p><img class='plot' src='scatter.png' alt='predicted vs true sTIL%'>"
              "<img class='plot' src='roc.png' alt='ROC of sTIL-high'></p>", "<h2>Slides</h2><table>",
              "<tr><th>slide</th><th>group</th><th>fold</th><th>true sTIL%</th><th>predicted sTIL%</th>"
              f"<th>error</th><th>90 % interval</th><th>qc</th><th>tiles</th><th>{_heatmap_header(c)}</th></tr>"]
    for r in c.rows:
        thumb = (f"<img class='thumb' src='{e(quote(r.thumbnail))}' alt='{e(r.slide_id)} tiles'>"
                 if r.thumbnail else "")
        heat = (f"<a href='{e(quote(r.heatmap))}'><img class='heat' src='{e(quote(r.heatmap))}' "
                f"alt='{e(r.slide_id)} heatmap'></a>" if r.heatmap else "")
        cells = [e(r.slide_id), e(r.group), e(str(r.fold)), f"{r.stil_true:.1f}", f"{r.stil_pred:.1f}",
                 f"{r.stil_pred - r.stil_true:+.1f}", e(r.interval), e(r.qc), thumb, heat]
        parts.append(f"<tr>{_cells(cells, numeric=(3, 4, 5))}</tr>")
    parts += ["</table>", "<h2>Settings</h2><table>"]
    parts += [f"<tr><th>{e(k)}</th><td><code>{e(v)}</code></td></tr>" for k, v in c.settings + c.model_settings]
    parts += ["</table>", "<h2>Versions</h2><table><tr><th>package</th><th>training</th><th>report</th></tr>"]
    parts += [f"<tr><th>{e(n)}</th><td>{e(a)}</td><td>{e(b)}</td></tr>" for n, a, b in _versions_table(c)]
    parts += ["</table></body></html>"]
    return "\n".join(parts) + "\n"
