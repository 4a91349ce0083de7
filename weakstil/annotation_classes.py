"""Which classes of an annotation file are the tumour bed: GeoJSON classifications, ASAP groups and
ImageScope layer names, matched for what they say (used by :mod:`weakstil.annotations`)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

log = logging.getLogger("weakstil.annotations")

#: The tumour's name in the languages of QuPath's users (English, German, Dutch, Scandinavian,
#: French, Spanish, Italian, Portuguese): "Tumor", "Tumour", "Tumeur", "Tumör", "Tumore",
#: "Carcinoma", "Karzinom", "Carcinome", "Carcinoom", "Karcinom".
_TUMOUR_WORD = r"tum(?:ou?|eu|ö)r|[ck]ar[cz]inoo?m"
#: Classification (GeoJSON), group (ASAP) and layer (ImageScope) names taken as tumour bed when a
#: file holds several classes, before any other class (matched in a name's head, :func:`name_head`).
TUMOR_BED_NAMES = re.compile(_TUMOUR_WORD + r"|invasive|\bidc\b|\bilc\b|\bbed\b", re.IGNORECASE)
#: Names of a region of interest: the bed when no class names the tumour itself (QuPath's "Region*").
ROI_NAMES = re.compile(r"\broi\b|\bregions?\b", re.IGNORECASE)
#: Words for the tumour that a class may negate ("Tumor-free", "No carcinoma", "IDC negative").
_TUMOUR = (r"(?:(?:" + _TUMOUR_WORD + r")\w*|cancers?|malignan\w*|neoplas\w*|invasi\w*|infiltrant\w*|idc\b|ilc\b)")
#: Negations before the tumour word in those languages: "Kein Tumor", "Nicht-Tumor", "ohne Tumor",
#: "Geen tumor", "Sin tumor", "Sans tumeur", "Pas de tumeur", "Senza tumore", "Ingen tumör"...
_NEGATION_OTHER = (r"kein\w*|nicht|ohne|frei[\W_]+von|geen|niet|zonder|vrij[\W_]+van|sin|sem|senza|sans|pas[\W_]+d[e']|"
                   r"absence[\W_]+d[e']|libre[\W_]+d[e']|livre[\W_]+de|exempt[\W_]+d[e']|priv[oa][\W_]+di|ingen|utan|"
                   r"icke|n[ãa]o")
#: A name that says there is no tumour, in any case or separator, the tumour named after the negation
#: ("No tumour", "NoTumor", "without tumor", "free of carcinoma", "no residual invasive tumour") or
#: before it ("Tumor-free", "tumour_free", "TumorNegative", "Tumor neg", "tumour absent", "Tumor (-)").
#: QuPath's derived class "Tumor: Negative" (intensity classes: tumour cells negative for a stain)
#: is tumour: a colon does not join a "negative" to the tumour.
TUMOUR_NEGATED = (r"\b(?:no|without|w/o|free[\W_]+(?:of|from)|negative[\W_]+for|absen(?:t|ce)(?:[\W_]+of)?|"
                  + _NEGATION_OTHER + r")[\W_]*"
                  r"(?:(?:residual|viable|invasive|evident|visible|obvious|apparent|definite|remaining|breast|"
                  r"evidence[\W_]+of)[\W_]+){0,2}" + _TUMOUR
                  + r"|\b" + _TUMOUR + r"(?:[\W_]*(?:free|absent|frei|vrij|libre|fri)(?![a-z])|[\s_./-]*neg(?:ative|(?![a-z]))"
                  r"|[\s_]*(?:\(\s*[-−–]\s*\)|[-−–]\s*ve\b|[-−–]\s*$))")
#: A "non"/"not" that negates the tumour word itself ("Non-tumour", "non invasive", "Not tumor",
#: "not a carcinoma", "tumour not seen"), and the negations above: the only negations that keep a
#: name naming the tumour from being the bed.
_TUMOUR_NOT = re.compile(TUMOUR_NEGATED + r"|\bnon[\W_]*" + _TUMOUR + r"|\bnot[\W_]+(?:an?[\W_]+|the[\W_]+)?"
                         + _TUMOUR + r"|\b" + _TUMOUR + r"[\W_]+not[\W_]+(?:present|seen|found|identified|detected)",
                         re.IGNORECASE)
#: What an area is, when not the invasive tumour bed: in situ disease, normal or benign tissue,
#: the tissue around the tumour, necrosis, a lymph node. Not "Lymphocytes" or "Lymphocytic
#: infiltrate": an infiltrate a pathologist marked inside the tumour is the bed's own stroma
#: (cutting it out lowered the sTIL% it is there to measure).
_NOT_BED_TERMS = (r"in[ _-]?situ|\bdcis\b|\blcis\b|\bnormal(?:e[nrs]?|gewebe)?\b|\bb[eé]nig(?:ne?|no|na)?\b|gutartig|"
                  r"\bperi[ _-]?tum(?:ou?|eu|ö)r|\bhealthy\b|\bgesund|\bgezond|"
                  r"n[eé][ck]ro[st]|\blymph[\W_]*nod|\bnodal\b|lymphknoten|\blinfonod|\blymfeklier|\bganglions?\b")
#: Artefacts and what the TILs Working Group leaves out of the scored area besides necrosis: crush
#: artefact, hyalinisation, the previous core biopsy site; and folds, pen marks, blur. Drawn inside the
#: tumour outline as a class of their own they were kept in the bed (QuPath 'Artifact': a 40 % square of a
#: 'Tumor' outline read 100 % of it, hunt 37b) while 'Necrosis' was cut out. Read in a whole name only:
#: 'Tumour with crush artefact' stays the bed.
_ARTEFACT_TERMS = (r"art[eiy]fa[ck]t|artefatto|artefacto|\bcrush|\b(?:tissue[\W_]*)?folds?\b|\bpen[\W_]*mark|\bblur|"
                   r"hyalin|\bbiopsy[\W_]*(?:site|cavity|tract)")
#: Names that say an area is not the invasive tumour bed ("Non-tumor", "Tumor-free", "No tumour",
#: "Carcinoma in situ", "Peritumoral stroma", "Normal", "Lymph node", "Artifact"); a name whose head names
#: the tumour, the bed or a region of interest is read by :func:`is_not_bed` instead, where a "non" or
#: "not" counts only when it negates the tumour word.
NOT_BED_NAMES = re.compile(r"\bnon\b|\bnon-?\w|\bnot\b|" + _NOT_BED_TERMS + "|" + _ARTEFACT_TERMS + "|" + TUMOUR_NEGATED,
                           re.IGNORECASE)
_NOT_BED_TERMS_RE = re.compile(_NOT_BED_TERMS, re.IGNORECASE)
#: Names that mean "no class": ASAP writes ``PartOfGroup="None"`` for every annotation put in no
#: group (its default), and exports write "null", "Unclassified" or "-". Such areas are unclassified.
NO_CLASS_NAMES = re.compile(r"^\s*(?:none|null|nil|unclassified|unassigned|no[\W_]*class|-+)?\s*$", re.IGNORECASE)
#: ASAP groups and GeoJSON classes whose polygons are cut out of the bed (CAMELYON16 names its exclusions
#: "_2"; QuPath's built-in "Ignore*" class marks areas to leave out), matched in a name's head.
EXCLUDED_NAMES = re.compile(r"exclu|esclu|ausschlu|ausgeschlossen|uitslui|uitgesloten|^\s*negative\b|^_2$|^ignore\*?$",
                            re.IGNORECASE)
_LEFT_OUT = (r"(?:exclu\w*|except\w*|not|non|no|without|w/o|minus|other[\W_]+than|apart[\W_]+from|sans|ohne|au(?:ss|ß)er|"
             r"zonder|behalve|sin|senza|sem|utan|sauf|hors|nicht|niet|kein\w*|pas)(?![a-z])")
#: A qualifier that says what a named area leaves out: a bracketed or comma clause holding a
#: negation ("Tumour bed (excluding DCIS)", "Invasive carcinoma, not otherwise specified",
#: "Viable tumour, necrosis excluded"), or one the name runs on into ("Invasive carcinoma of
#: non-special type", "Tumor bed excluding DCIS").
_QUALIFIER = re.compile(r"\s*[,;(\[{][^,;(\[{]*?(?<![a-z])" + _LEFT_OUT + r".*$"
                        r"|(?<=\S)[\s_/-]+(?:excluding|excepting|except|not|non|no|without|w/o|minus|"
                        r"other[\W_]+than|apart[\W_]+from|sans|ohne|au(?:ss|ß)er|zonder|behalve|sin|senza|sem|utan|"
                        r"sauf|hors)(?![a-z]).*$", re.IGNORECASE)


def class_name(name: object) -> str:
    """A class, group or layer name as read for its meaning: ``""`` for none ("None", "null",
    "Unclassified", empty)."""
    text = "" if name is None else str(name)
    return "" if NO_CLASS_NAMES.match(text) else text


def name_head(name: str) -> str:
    """What a name says the area is, without the qualifier saying what it leaves out:
    "Tumour bed (excluding DCIS)" -> "Tumour bed", "Invasive carcinoma, NOS" stays whole."""
    return _QUALIFIER.sub("", name).strip() or name


def _names_bed(head: str) -> bool:
    return bool(TUMOR_BED_NAMES.search(head) or ROI_NAMES.search(head))


def is_exclusion(name: str) -> bool:
    """Whether a class marks areas to cut out of the bed (:data:`EXCLUDED_NAMES` in the name's head):
    "Exclusion", "Ignore*"; not "Tumour bed (excluding DCIS)", a tumour bed that says what it leaves out."""
    return bool(name) and bool(EXCLUDED_NAMES.search(name_head(name)))


def is_not_bed(name: str) -> bool:
    """Whether a class says it is not the tumour bed. A name whose head names the tumour, the bed
    or a region of interest is read for a negation of the tumour word itself ("Non-tumour", "No
    tumour", "Tumor-free") or a not-bed term in its head ("Carcinoma in situ", "Peritumoral
    stroma"): the WHO "not otherwise specified", "of non-special type" or "(non-necrotic)" leave it
    the bed. Any other name is read whole (:data:`NOT_BED_NAMES`: "Non-stroma", "Normal")."""
    name = class_name(name)
    if not name:
        return False
    if _TUMOUR_NOT.search(name):
        return True
    head = name_head(name)
    if _names_bed(head):
        return bool(_NOT_BED_TERMS_RE.search(head))
    return bool(NOT_BED_NAMES.search(name))


def says_what_it_is(name: str) -> bool:
    """Whether an object's own name (not its class) says what the area is: the tumour, the bed, a
    region of interest, or not the bed ('Tumor', 'ROI', 'Necrosis'). An unclassified object so
    named is read as of that class; 'Annotation 1' stays unclassified."""
    name = class_name(name)
    head = name_head(name) if name else ""
    return bool(head) and (_names_bed(head) or is_not_bed(name))


def names_tumour(name: str) -> bool:
    """Whether a name mentions the tumour as a word without negating it: such a class cut out of the bed
    is said in a warning ("Carcinoma in situ", "Exclude tumour"), as a tumour-named class left out."""
    return bool(re.search(r"\b(?:" + _TUMOUR_WORD + r"|invasive|idc|ilc)", name, re.IGNORECASE)) and not _TUMOUR_NOT.search(name)


def warn_tumour_named_cut(names, path: Path) -> None:
    """One warning naming the tumour-named classes whose areas are cut out of the bed."""
    named = sorted({n for n in names if n and names_tumour(n)})
    if named:
        log.warning("%s: areas of %s, named like a tumour, are read as not the invasive tumour bed and cut out of "
                    "the bed where they overlap it; if one is the invasive tumour, name its class plainly "
                    "('Tumor bed', 'Invasive carcinoma')", path, ", ".join(f"'{n}'" for n in named))


def choose_bed(named: list[tuple[str, object]], path: Path) -> list:
    """The bed polygons among ``(class name, polygon)`` pairs (exclusions already taken out): the
    classes naming the tumour (:data:`TUMOR_BED_NAMES`) if any, else those naming a region of
    interest, else the unclassified polygons, else every other class; a class that says it is not
    the bed (:data:`NOT_BED_NAMES`) never is. Which classes were used, and which not, is logged."""
    named = [(class_name(name), g) for name, g in named]

    def rank(name: str) -> int:
        if not name:
            return 2
        if is_not_bed(name):
            return 4
        head = name_head(name)
        return 0 if TUMOR_BED_NAMES.search(head) else 1 if ROI_NAMES.search(head) else 3

    ranks = [rank(name) for name, _ in named]
    best = min((r for r in ranks if r < 4), default=None)
    chosen = [g for (_, g), r in zip(named, ranks) if r == best]
    unused = sorted({name or "unclassified" for (name, _), r in zip(named, ranks) if r != best})
    if unused:
        used = sorted({name or "unclassified" for (name, _), r in zip(named, ranks) if r == best})
        log.info("%s: tumour bed from %s; not used: %s", path, ", ".join(used) or "nothing", ", ".join(unused))
    if best in (1, 2, 3):  # no class names the tumour: an area around the others makes the bed all of it
        _warn_enclosing(named, ranks, best, path)
    return chosen


def _warn_enclosing(named: list[tuple[str, object]], ranks: list[int], best: int, path: Path) -> None:
    """One warning when the largest area read as the bed encloses other areas drawn inside it (of its
    own class, or of one not used): a QuPath full-image or parent annotation exported with the
    tumour outline drawn inside it, both unclassified, made the bed the whole slide without a word."""
    import shapely

    chosen = [(i, g) for i, ((_, g), r) in enumerate(zip(named, ranks)) if r == best and g.area > 0]
    if len(named) < 2 or not chosen:
        return
    big_i, big = max(chosen, key=lambda t: t[1].area)
    try:
        big = shapely.make_valid(big)
        shapely.prepare(big)
        inside = [name or "unclassified" for i, ((name, g), r) in enumerate(zip(named, ranks))
                  if i != big_i and r < 4 and g.area > 0 and big.contains(g.representative_point())
                  and big.intersection(g).area >= 0.95 * g.area]
    except shapely.errors.GEOSException:
        return
    if inside:
        what = named[big_i][0] or "unclassified"
        log.warning("%s: no class names the tumour, and the bed is read from the %s areas, the largest of which "
                    "encloses %d other area(s) drawn inside it (%s): the bed is all of it (a QuPath full-image or "
                    "parent annotation exported with the tumour outline?); give the tumour outline a class naming "
                    "the tumour ('Tumor') or export it alone", path, what, len(inside),
                    ", ".join(sorted(set(inside))))


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

    areas = [(name, g) for name, g in named if is_not_bed(name) and not any(encloses(g, b) for b in bed)]
    if areas:
        log.info("%s: areas of %s are cut out of the bed where they overlap it", path,
                 ", ".join(sorted({name for name, _ in areas})))
        warn_tumour_named_cut([name for name, _ in areas], path)
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
