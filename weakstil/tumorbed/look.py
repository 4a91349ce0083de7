"""Is a slide's stain like the tumour-bed detector's training slides'? (hunt 35e)

The sTIL% is read inside the tumour bed, so a bed drawn by a detector on slides it was never
checked on decides the number as much as the regressor does. The regressor's own look checks
(``out_of_distribution``, ``stain_outside_training_range``) compare the slide with *its* training
slides only: a model trained again on a lab's own slides passes them, while the bed still comes
from a detector trained on another look. On 16 slides of real H&E (Kather CRC tiles), a model
trained on 16 such slides and scored with the synthetic-trained demo detector read 8 of them
20-44 points low (truth 69 % scored 25 %) with no flag: the detector took normal mucosa and muscle
into the bed; the same model over the true beds: R² 0.97.

The check is the regressor's stain rule (:data:`weakstil.qc.flags.STAIN_MARGIN` x the furthest
training slide plus :data:`weakstil.qc.flags.STAIN_FLOORS`) on the Macenko vectors and strengths
that every feature file records (its ``stain`` attribute: no slide is read), against the
detector's training slides. Fewer than :data:`MIN_SLIDES` of them with a Macenko estimate: no
reference (a range from 2 slides would flag slides of the very same look).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from weakstil.qc.flags import STAIN_FLOORS, STAIN_MARGIN, _angle

#: Least training slides (with a Macenko stain) for a detector's stain reference.
MIN_SLIDES = 5
#: The statistics compared (the feature files hold no mean optical density, the image check's ``od``).
STATS = ("h_angle", "e_angle", "h_strength", "e_strength")


def _distances(stain, centre: dict[str, Any]) -> dict[str, float]:
    he, c = np.asarray(stain.he, np.float64), np.asarray(stain.max_c, np.float64)
    return {"h_angle": _angle(he[:, 0], centre["h"]), "e_angle": _angle(he[:, 1], centre["e"]),
            "h_strength": abs(math.log(max(c[0], 1e-4) / max(centre["max_c"][0], 1e-4))),
            "e_strength": abs(math.log(max(c[1], 1e-4) / max(centre["max_c"][1], 1e-4)))}


def stain_reference(stains: list) -> dict[str, Any] | None:
    """The detector's training stain centre and limits from its slides' :class:`~weakstil.stain.SlideStain`
    (None entries and failed estimates left out); None with fewer than :data:`MIN_SLIDES`."""
    ok = [s for s in stains if s is not None and s.source == "macenko"]
    if len(ok) < MIN_SLIDES:
        return None
    centre = {"h": np.median([s.he[:, 0] for s in ok], axis=0).tolist(),
              "e": np.median([s.he[:, 1] for s in ok], axis=0).tolist(),
              "max_c": np.median([s.max_c for s in ok], axis=0).tolist()}
    dists = [_distances(s, centre) for s in ok]
    limits = {k: STAIN_MARGIN * max(d[k] for d in dists) + STAIN_FLOORS[k] for k in STATS}
    return {"centre": centre, "thresholds": limits, "n_slides": len(ok), "margin": STAIN_MARGIN}


def unlike_detector(stain, reference: dict[str, Any] | None) -> str:
    """Why a slide's stain (its features' ``stain``) is outside the detector's training range
    (empty: inside, or nothing to compare)."""
    if not reference or stain is None or stain.source != "macenko":
        return ""
    d = _distances(stain, reference["centre"])
    over = [f"{k} {d[k]:.3g} > {lim:.3g}" for k, lim in reference["thresholds"].items() if not d[k] <= lim]
    if not over:
        return ""
    return (f"the tumour-bed detector's training slides ({reference['n_slides']}) were stained unlike this slide "
            f"({', '.join(over)}): its bed is unchecked on this look (it may take in tissue that is not tumour bed); "
            "train a detector on annotated slides of this look (weakstil tumorbed train) or give annotations")
