"""Which classes of an annotation file are the tumour bed: GeoJSON classifications, ASAP groups and
ImageScope layer names, matched for what they say (used by :mod:`weakstil.annotations`)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("weakstil.annotations")

#: Classification (GeoJSON), group (ASAP) and layer (ImageScope) names taken as tumour bed when a
#: file holds several classes, before any other class.
TUMOR_BED_NAMES = re.compile(r"tumou?r|invasive|carcinoma|\bidc\b|\bilc\b", re.IGNORECASE)
#: Names of a region of interest: the bed when no class names the tumour itself (QuPath's "Region*").
ROI_NAMES = re.compile(r"\broi\b|\bregions?\b", re.IGNORECASE)
#: Words for the tumour that a class may negate ("Tumor-free", "No carcinoma", "IDC negative").
_TUMOUR = r"(?:tumou?rs?|carcinomas?|cancers?|malignan\w*|neoplas\w*|invasi\w*|idc\b|ilc\b)"
#: A name that says there is no tumour, in any case or separator, the tumour named after the negation
#: ("No tumour", "NoTumor", "without tumor", "free of carcinoma", "no residual invasive tumour") or
#: before it ("Tumor-free", "tumour_free", "TumorNegative", "Tumor neg", "tumour absent", "Tumor (-)").
#: QuPath's derived class "Tumor: Negative" (intensity classes: tumour cells negative for a stain)
#: is tumour: a colon does not join a "negative" to the tumour.
TUMOUR_NEGATED = (r"\b(?:no|without|w/o|free[\W_]+(?:of|from)|negative[\W_]+for|absen(?:t|ce)(?:[\W_]+of)?)[\W_]*"
                  r"(?:(?:residual|viable|invasive|evident|visible|obvious|apparent|definite|remaining|breast|"
                  r"evidence[\W_]+of)[\W_]+){0,2}" + _TUMOUR
                  + r"|\b" + _TUMOUR + r"(?:[\W_]*(?:free|absent)|[\s_./-]*neg(?:ative|(?![a-z]))"
                  r"|[\s_]*(?:\(\s*[-−–]\s*\)|[-−–]\s*ve\b|[-−–]\s*$))")
#: Names that say an area is not the invasive tumour bed, whatever else they say ("Non-tumor",
#: "Tumor-free", "No tumour", "Carcinoma in situ", "Peritumoral stroma", "Normal", "Lymph node"): never the bed.
#: Not "Lymphocytes" or "Lymphocytic infiltrate": an infiltrate a pathologist marked inside the tumour
#: is the bed's own stroma (cutting it out lowered the sTIL% it is there to measure).
NOT_BED_NAMES = re.compile(r"\bnon\b|\bnon-?\w|\bnot\b|in[ _-]?situ|\bdcis\b|\blcis\b|\bnormal\b|\bbenign\b|"
                           r"\bperi[ _-]?tumou?r|\bhealthy\b|necros|\blymph[\W_]*nod|\bnodal\b|" + TUMOUR_NEGATED,
                           re.IGNORECASE)
#: Names that mean "no class": ASAP writes ``PartOfGroup="None"`` for every annotation put in no
#: group (its default), and exports write "null", "Unclassified" or "-". Such areas are unclassified.
NO_CLASS_NAMES = re.compile(r"^\s*(?:none|null|nil|unclassified|unassigned|no[\W_]*class|-+)?\s*$", re.IGNORECASE)


def class_name(name: object) -> str:
    """A class, group or layer name as read for its meaning: ``""`` for none ("None", "null",
    "Unclassified", empty)."""
    text = "" if name is None else str(name)
    return "" if NO_CLASS_NAMES.match(text) else text
#: ASAP groups and GeoJSON classes whose polygons are cut out of the bed (CAMELYON16 names its exclusions
#: "_2"; QuPath's built-in "Ignore*" class marks areas to leave out).
EXCLUDED_NAMES = re.compile(r"exclu|^\s*negative\b|^_2$|^ignore\*?$", re.IGNORECASE)


def choose_bed(named: list[tuple[str, object]], path: Path) -> list:
    """The bed polygons among ``(class name, polygon)`` pairs (exclusions already taken out): the
    classes naming the tumour (:data:`TUMOR_BED_NAMES`) if any, else those naming a region of
    interest, else the unclassified polygons, else every other class; a class that says it is not
    the bed (:data:`NOT_BED_NAMES`) never is. Which classes were used, and which not, is logged."""
    named = [(class_name(name), g) for name, g in named]

    def rank(name: str) -> int:
        if not name:
            return 2
        if NOT_BED_NAMES.search(name):
            return 4
        return 0 if TUMOR_BED_NAMES.search(name) else 1 if ROI_NAMES.search(name) else 3

    ranks = [rank(name) for name, _ in named]
    best = min((r for r in ranks if r < 4), default=None)
    chosen = [g for (_, g), r in zip(named, ranks) if r == best]
    unused = sorted({name or "unclassified" for (name, _), r in zip(named, ranks) if r != best})
    if unused:
        used = sorted({name or "unclassified" for (name, _), r in zip(named, ranks) if r == best})
        log.info("%s: tumour bed from %s; not used: %s", path, ", ".join(used) or "nothing", ", ".join(unused))
    return chosen


def not_bed_areas(named: list[tuple[str, object]], path: Path, bed: list = ()) -> list:
    """The polygons of classes that say they are not the bed (:data:`NOT_BED_NAMES`), to be cut out
    of the ``bed`` polygons where they overlap them, like an exclusion: necrosis, DCIS or normal
    tissue drawn inside a tumour outline is not the invasive tumour's stroma (TILs Working Group).
    One that encloses a bed polygon (a QuPath parent annotation around its 'Tumor' child) is the
    surrounding tissue, not an area drawn in the tumour, and is not cut out."""
    import shapely

    def encloses(area, polygon) -> bool:
        try:
            polygon = shapely.make_valid(polygon)
            return polygon.area > 0 and shapely.make_valid(area).intersection(polygon).area >= 0.95 * polygon.area
        except shapely.errors.GEOSException:
            return False

    areas = [(name, g) for name, g in named if class_name(name) and NOT_BED_NAMES.search(name)
             and not any(encloses(g, b) for b in bed)]
    if areas:
        log.info("%s: areas of %s are cut out of the bed where they overlap it", path,
                 ", ".join(sorted({name for name, _ in areas})))
    return [g for _, g in areas]


def only_not_bed_classes(named: list[tuple[str, object]], kind: str = "class", fmt: str = "GeoJSON") -> tuple[str, str]:
    """(message, fix) for a file whose areas all lie in classes (``kind``: ASAP's groups, ImageScope's
    layers) that say they are not the tumour bed: it names them, and the classes that are read as the bed."""
    names = sorted({name for name, _ in named})
    shown = ", ".join(f"'{n}'" for n in names[:6]) + (", ..." if len(names) > 6 else "")
    kinds = kind + ("" if len(names) == 1 else "es" if kind == "class" else "s")
    says = "says it is" if len(names) == 1 else "say they are"
    return (f"{fmt} holds only areas whose {kinds} ({shown}) {says} not the tumour bed",
            f"give the tumour bed a {kind} that is read as the bed: one naming the tumour ('Tumor bed', 'Tumour', "
            f"'Invasive carcinoma', 'IDC'), a region of interest ('ROI', 'Region*'), another {kind} or none; a "
            f"{kind} that says it is not the bed ('Non-tumour', 'Tumor-free', 'Peritumoral stroma', 'Normal', "
            "'DCIS', 'Necrosis'...) never is")
