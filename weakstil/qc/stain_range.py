"""The stain check of the qc flags (``stain_outside_training_range``): how far a slide's stain lies from the training
slides' median, and the training range it is compared with (:func:`stain_reference`, in ``model.json``). Split from
:mod:`weakstil.qc.flags` (helper h44d), which re-exports these names."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import numpy as np

from weakstil.image_checks import DARK_IMAGE
from weakstil.qc.image import ImageStats

#: The stain check: a slide is outside the training range when a statistic's distance from the training median exceeds
#: STAIN_MARGIN x the STAIN_LOOK_SLIDES-th largest training slide's distance + the floor; a colour warning is inside
#: when that many training slides carried it. A look on one training slide is no range (helper h44d: 7 pink slides and
#: 1 yellowed one stretched the haematoxylin angle's limit from 3.1 to 43.6° and excused every yellowed slide).
STAIN_LOOK_SLIDES = 2
STAIN_MARGIN = 1.5
STAIN_FLOORS = {"h_angle": 3.0, "e_angle": 3.0, "h_strength": 0.15, "e_strength": 0.15, "od": 0.15}


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return math.nan
    return float(np.degrees(np.arccos(np.clip(a @ b / (na * nb), -1.0, 1.0))))


def stain_centre(stats: list[ImageStats]) -> dict[str, Any]:
    """The training slides' median stain (from slides whose Macenko estimate succeeded)."""
    ok = [s for s in stats if s.stain_source == "macenko"] or stats
    return {"h": np.median([s.stain_h for s in ok], axis=0).tolist(),
            "e": np.median([s.stain_e for s in ok], axis=0).tolist(),
            "max_c": np.median([s.stain_max_c for s in ok], axis=0).tolist(),
            "od_mean": np.nanmedian([s.od_mean for s in stats], axis=0).tolist()}


def stain_distances(s: ImageStats, centre: dict[str, Any]) -> dict[str, float]:
    """How far a slide's stain is from the training centre, per statistic (degrees, |log ratio|)."""
    out = {"od": float(np.nanmax(np.abs(np.log(np.maximum(s.od_mean, 1e-4) / np.maximum(centre["od_mean"], 1e-4)))))
           if np.isfinite(s.od_mean).all() else math.inf}
    if s.stain_source == "macenko":
        out["h_angle"] = _angle(s.stain_h, centre["h"])
        out["e_angle"] = _angle(s.stain_e, centre["e"])
        out["h_strength"] = abs(math.log(max(s.stain_max_c[0], 1e-4) / max(centre["max_c"][0], 1e-4)))
        out["e_strength"] = abs(math.log(max(s.stain_max_c[1], 1e-4) / max(centre["max_c"][1], 1e-4)))
    return out


def stain_reference(stats: list[ImageStats]) -> dict[str, Any]:
    """The stain centre of the training slides, each statistic's threshold, the colour warnings they carried."""
    centre = stain_centre(stats)
    dists = [stain_distances(s, centre) for s in stats]
    thresholds = {}
    for name, floor in STAIN_FLOORS.items():
        values = sorted(d[name] for d in dists if name in d and math.isfinite(d[name]))
        thresholds[name] = STAIN_MARGIN * (values[-min(STAIN_LOOK_SLIDES, len(values))] if values else 0.0) + floor
    carried = Counter(w for s in stats for w in set(s.warnings) - {DARK_IMAGE})  # dark: never H&E
    return {"centre": centre, "thresholds": thresholds, "margin": STAIN_MARGIN, "floors": dict(STAIN_FLOORS),
            "look_slides": STAIN_LOOK_SLIDES, "training_warnings": sorted(w for w, n in carried.items() if n >= STAIN_LOOK_SLIDES)}


def stain_outside(s: ImageStats, reference: dict[str, Any]) -> list[str]:
    """Why a slide's stain is outside the training range (empty: inside). A slide with tissue
    whose Macenko estimate failed (``stain_source`` ``reference``: too few pixels stained with
    both dyes, e.g. eosin only) has no stain vectors or strengths to compare: not inside. A colour warning that
    training slides carried too is inside (hunt 41a: a yellowed cohort's 'not pink/purple' flagged all it scored)."""
    reasons = [w for w in s.warnings if w not in reference.get("training_warnings", ())]
    if s.stain_source != "macenko" and s.tissue_fraction > 0:
        reasons.append("no H&E stain measurable (the Macenko estimate failed: too few stained pixels, or one dye "
                       "only), so its stain angles and strengths could not be compared")
    d = stain_distances(s, reference["centre"])
    for name, limit in reference["thresholds"].items():
        if name in d and not d[name] <= limit:  # NaN/inf count as outside
            reasons.append(f"{name}: {_stain_measured(name, s, reference['centre'], d[name], limit)}")
    return reasons


_DYES = {"h": "haematoxylin", "e": "eosin"}


def _stain_measured(name: str, s: ImageStats, centre: dict[str, Any], distance: float, limit: float) -> str:
    """What a stain statistic measured, in words, with the distance compared with ``limit``: the distance alone
    ("e_strength 1.16 > 0.768") read as the slide's eosin strength, which was 2.47 (median 0.775, |log ratio| 1.16)."""
    dye, kind = name.split("_", 1) if "_" in name else (name, "")
    if kind == "angle":
        return f"{_DYES[dye]} vector {distance:.3g}° from the training slides' median (> {limit:.3g}°)"
    if kind == "strength":
        i = 0 if dye == "h" else 1
        return (f"{_DYES[dye]} strength {s.stain_max_c[i]:.3g} vs the training slides' median {centre['max_c'][i]:.3g} "
                f"(|log ratio| {distance:.3g} > {limit:.3g})")
    if not math.isfinite(distance):
        return "mean optical density not measured (no tissue on the thumbnail)"
    rgb = "/".join(f"{v:.3g}" for v in s.od_mean)
    ref = "/".join(f"{v:.3g}" for v in centre["od_mean"])
    return f"mean optical density (R/G/B) {rgb} vs the training slides' median {ref} (|log ratio| up to {distance:.3g} > {limit:.3g})"
