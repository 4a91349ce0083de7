"""ASAP XML annotations (CAMELYON, TIGER; level-0 px) read as tumour-bed polygons (used by
:mod:`weakstil.annotations`).

ASAP puts each annotation in a group (``PartOfGroup``, ``None`` for none), and a group may itself be
part of another (``<AnnotationGroups><Group Name="tumor" PartOfGroup="bed">``): its regions are of
the groups it lies in too. An area in a group inside an exclusion group is cut out of the bed, and
one in a plainly named group (``T1`` inside ``Tumor``) has the class of the nearest group that says
what it is; read by its own group's name alone, the first was bed and the second lost to an ``ROI``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from weakstil.annotation_classes import (choose_bed, class_name, is_exclusion, not_bed_areas, says_what_it_is,
                                         warn_tumour_named_cut)
from weakstil.annotation_errors import EMPTY_FIX, AnnotationError, EmptyAnnotationError, all_finite, not_bed, not_finite
from weakstil.annotation_geometry import valid_parts

log = logging.getLogger("weakstil.annotations")


def group_chains(root) -> dict[str, list[str]]:
    """Each group's name with the groups it lies in, nearest first (``tumor -> [tumor, bed]``); a loop
    of groups (a file edited by hand) stops where it comes back."""
    parent = {str(g.attrib.get("Name", "")): str(g.attrib.get("PartOfGroup", "")) for g in root.iter("Group")}
    chains = {}
    for name in parent:
        chain = [name]
        while class_name(parent.get(chain[-1], "")) and parent[chain[-1]] not in chain:
            chain.append(parent[chain[-1]])
        chains[name] = chain
    return chains


def group_class(group: str, chains: dict[str, list[str]]) -> tuple[str, bool]:
    """(the class of an area in ``group``, whether it is cut out of the bed): cut out when the group or
    one it lies in is named like an exclusion; its class is the nearest of them that says what the
    area is (:func:`says_what_it_is`), else its own group's name."""
    chain = [g for g in chains.get(group, [group]) if class_name(g)]
    if any(is_exclusion(g) for g in chain):
        return group, True
    return next((g for g in chain if says_what_it_is(g)), group), False


def asap_polygons(root, path: Path) -> tuple[list, list]:
    """(bed polygons, excluded polygons) of an ASAP XML. Groups named like a tumour bed are the bed
    when there are any (else every area annotation); groups named like an exclusion (``Exclusion``,
    CAMELYON's ``_2``), and the groups inside them, are cut out of it."""
    from shapely.geometry import Polygon

    if root.find(".//Annotation") is None:  # '<ASAP_Annotations><Annotations/>': saved before drawing
        raise EmptyAnnotationError("ASAP XML holds no annotations: no outline is drawn in it", path=path, fix=EMPTY_FIX)
    chains = group_chains(root)
    named, excluded, cut_names, nested = [], [], [], set()
    for ann in root.iter("Annotation"):
        if str(ann.attrib.get("Type", "Polygon")).lower() not in ("polygon", "spline", "rectangle"):
            continue  # dots and point sets mark cells, not areas
        try:
            points = sorted((float(c.attrib.get("Order", i)), float(c.attrib["X"]), float(c.attrib["Y"]))
                            for i, c in enumerate(ann.iter("Coordinate")))
        except (KeyError, ValueError):
            raise AnnotationError("a Coordinate lacks numeric X/Y", path=path,
                                  fix="save the annotation again from ASAP") from None
        if not all_finite([v for point in points for v in point]):
            raise not_finite(path)
        if len(points) < 3:
            continue
        group = str(ann.attrib.get("PartOfGroup", ""))
        if not class_name(group) and says_what_it_is(str(ann.attrib.get("Name", ""))):
            group = str(ann.attrib["Name"])  # in no group ('None') but named 'Tumor': the name is its class
        name, cut = group_class(group, chains)
        if len(chains.get(group, [])) > 1:
            nested.add(f"{group} in {' in '.join(chains[group][1:])}")
        parts = valid_parts(Polygon([(x, y) for _, x, y in points]), path, f"annotation '{ann.attrib.get('Name', '')}'")
        if cut:
            excluded += parts
            cut_names.append(name)
        else:
            named += [(name, part) for part in parts]
    if nested:
        log.info("%s: groups inside groups read with the groups they lie in: %s", path, "; ".join(sorted(nested)))
    warn_tumour_named_cut(cut_names, path)
    chosen = choose_bed(named, path)
    if not chosen and named:
        raise not_bed(named, path, "group", "ASAP XML")
    if not chosen:
        raise AnnotationError("ASAP XML holds no polygon annotations with 3 or more coordinates", path=path,
                              fix="draw the tumour bed as a polygon annotation")
    return chosen, [*excluded, *not_bed_areas(named, path, chosen)]
