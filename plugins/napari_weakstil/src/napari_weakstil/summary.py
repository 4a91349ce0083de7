"""What the dock widget says about the result it shows: the sTIL% line, the detail line, the qc line, a tile's line.

Text only (no Qt), so that every line is made from one place: the scored bed's, or after the bed
editor's Rescore the edited bed's (its number and its tile count agree, not the scored bed's count
beside the edit's number).
"""

from __future__ import annotations

import json
from typing import Any

#: How a result's tumour bed was found, in words.
TUMORBED_SOURCES = {"annotation": "annotation", "model": "tumour-bed detector", "tissue": "whole tissue, no bed found",
                    "tissue-fallback": "whole tissue (bed fallback: the detected bed was empty or implausibly small)",
                    "feature-file": "the feature file's own tumour-bed flags"}


def stil_line(res: Any) -> str:
    """The scored sTIL%, its interval and call: "sTIL 23.4 % (90 % interval 17.1–30.2) · low (threshold 30 %)"."""
    attrs = res.attrs or {}
    stil = res.stil
    if stil is None:
        status = attrs.get("status", "")
        return f"sTIL: — ({status})" if status else "sTIL: —"
    from weakstil.bed_edit import recorded_threshold
    from weakstil.metrics import called_high, stil_text  # imports scipy: only once a score is shown

    threshold = recorded_threshold(attrs, res.path)  # older cv/evaluate tile files: their folder's one
    call = ""
    if threshold is not None:
        # the CLI's call: of the number as written (29.99996 is 30.0000, high at 30)
        high = bool(called_high(stil, float(threshold)))
        call = f" · {'high' if high else 'low'} (threshold {float(threshold):g} %)"
    # enough decimals to keep the number on its call's side (29.96 is not shown as 30.0, low)
    return f"sTIL {stil_text(stil, threshold)} %{interval_text(attrs, threshold)}{call}"


def detail_line(res: Any, rescore: Any = None) -> str:
    """The slide, its tiles and its bed's tiles: the scored bed's, or the edited bed's after a Rescore
    (``rescore``, a :class:`weakstil.bed_edit.BedScore`), with the scored bed's count beside it."""
    attrs = res.attrs or {}
    parts = [f"{res.slide_id}: {len(res.coords):,} tiles"]
    source = TUMORBED_SOURCES.get(str(attrs.get("tumorbed_source")), attrs.get("tumorbed_source"))
    scored = int(res.tumorbed.sum()) if res.tumorbed is not None else None
    if rescore is not None:
        was = f"scored bed: {scored:,}" + (f", {source}" if source else "") if scored is not None else ""
        parts.append(f"{rescore.n_bed_tiles:,} in the edited bed" + (f" ({was})" if was else ""))
    elif scored is not None:
        parts.append(f"{scored:,} in the tumour bed" + (f" ({source})" if source else ""))
    if "stil_true" in attrs:
        parts.append(f"label {float(attrs['stil_true']):.1f} %")
    if attrs.get("source"):
        parts.append(score_source(attrs))
    from napari_weakstil.piece_labels import detail_text, recorded

    # the tissue pieces' own numbers: the edited bed's after a Rescore (the file's are the scored bed's)
    pieces = detail_text(list(rescore.tissue_pieces) if rescore is not None else recorded(res), rescore is not None)
    return "; ".join(parts) + (f"\n{pieces}" if pieces else "")


def score_source(attrs: dict) -> str:
    """Which run scored the tiles, in words: an evaluation's tile file said the bare internal name
    "evaluate" (helper h39d); train's says "cross-validation (out of fold)" already."""
    source = str(attrs.get("source") or "")
    if source != "evaluate":
        return source
    try:
        n = int(attrs.get("n_models") or 1)
    except (TypeError, ValueError):
        n = 1
    by = f"an ensemble of its {n} fold models" if str(attrs.get("scoring")) == "ensemble" and n > 1 else "its final model"
    return f"scored in an evaluation ('weakstil evaluate', by {by})"


def qc_view(attrs: dict) -> tuple[str, bool, str]:
    """The slide's qc flags: (text, whether any flag is raised, each flag's reason for the tooltip)."""
    from weakstil.qc.flags import LABEL, MEANING

    flags = [f for f in str(attrs.get("qc") or "").split(";") if f]
    if not flags:
        return ("qc: no flags" if "qc" in attrs else ""), False, ""
    try:
        reasons = json.loads(attrs.get("qc_reasons") or "{}")
    except (TypeError, ValueError):
        reasons = {}
    if not isinstance(reasons, dict):
        reasons = {}
    # in the heatmap title's and the report's words (qc.flags.LABEL): the line read the codes with spaces,
    # "pen or folds, near threshold" (hunt 38j); a flag of a newer WeakSTIL, not in LABEL, keeps that form.
    # The tooltip names each code too, as results.csv's qc column holds it, so a reader can find it there
    words = [LABEL.get(f) or f.replace("tumorbed", "tumour-bed").replace("_", " ") for f in flags]
    tips = []
    for word, flag in zip(words, flags):
        why = reasons.get(flag) or MEANING.get(flag)  # a result written without reasons: what the flag means
        tips.append(f"{word} ({flag})" + (f": {why}" if why else ""))
    return "qc: " + ", ".join(words), True, "\n".join(tips)


def interval_text(attrs: dict, threshold: float | None = None) -> str:
    """`` (90 % interval 17.1–30.2)`` when the result records one, else empty (each end on the side of
    ``threshold`` that its ``near_threshold`` flag was judged on)."""
    low, high = attrs.get("stil_lower_90"), attrs.get("stil_upper_90")
    try:
        low, high = float(low), float(high)
    except (TypeError, ValueError):
        return ""
    if not (low == low and high == high):  # NaN: no interval
        return ""
    from weakstil.metrics import interval_ends_text

    level = float(attrs.get("interval_level", 0.9))
    return f" ({100 * level:g} % interval {interval_ends_text(low, high, threshold)})"


def tile_line(i: int, info: dict, mpp: float) -> str:
    """The clicked tile ``i`` (:func:`napari_weakstil.result_layers.tile_info`, level-0 at ``mpp`` µm/px): where,
    its sTIL score and attention, and whether it is in the tumour bed (the edited one after a Rescore)."""
    text = [f"Tile #{i} at level-0 ({info['x']:,}, {info['y']:,}) px = "
            f"({info['x'] * mpp / 1000:.3f}, {info['y'] * mpp / 1000:.3f}) mm"]
    if "score" in info:
        text.append(f"sTIL score {info['score']:.1f} %")
    if "attention" in info:
        text.append(f"attention {info['attention']:.4g}")
    if "tumorbed" in info:
        bed = "the edited bed" if info.get("edited_bed") else "the tumour bed"
        text.append(f"in {bed}" if info["tumorbed"] else f"outside {bed}")
    return "; ".join(text)
