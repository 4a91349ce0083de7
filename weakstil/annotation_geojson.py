"""QuPath GeoJSON annotations read as tumour-bed polygons (used by :mod:`weakstil.annotations`).

QuPath has written an object's type in several places over its versions: ``properties.objectType``
(0.3 on), ``properties.object_type`` or its alias ``properties.type``, and in 0.2 the Feature's
``id`` (``PathCellObject``...). Detections, cells, tiles and TMA cores are no drawn area, whichever
spelling names them; they are passed over as QuPath's own reader (PathObjectTypeAdapters) tells them
from annotations.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from weakstil.annotation_classes import (choose_bed, class_name, is_exclusion, not_bed_areas, says_what_it_is,
                                         warn_tumour_named_cut)
from weakstil.annotation_geometry import closed_lines, polygons_without_short_rings, valid_parts
from weakstil.annotation_errors import AnnotationError, EmptyAnnotationError, all_finite, not_bed, not_finite

log = logging.getLogger("weakstil.annotations")

#: QuPath object types that are not drawn areas (lower case, "_" dropped: "tma_core", "tmaCore"), in
#: every spelling QuPath reads, the 0.2 ``id`` values (``PathDetectionObject``...) included.
NOT_ANNOTATIONS = ("detection", "cell", "tile", "tmacore", "root", "pathdetectionobject", "pathcellobject",
                   "pathtileobject", "tmacoreobject", "pathrootobject")
#: The properties that name an object's type, in the order QuPath's versions read them.
_TYPE_KEYS = ("objectType", "object_type", "type")


def object_type(feature: dict, props: dict) -> str:
    """A feature's QuPath object type, lower case without "_" (``""`` when none is written)."""
    for key in _TYPE_KEYS:
        if isinstance(props.get(key), str):
            return re.sub(r"[\W_]", "", props[key]).lower()
    legacy = feature.get("id")  # QuPath 0.2 wrote the type as the Feature's id; later versions a UUID
    return legacy.lower() if isinstance(legacy, str) and legacy.lower() in NOT_ANNOTATIONS + ("pathannotationobject",) else ""


def read_json(path: Path):
    """The parsed JSON of a file in UTF-8, UTF-16 or UTF-32, with or without a byte order mark
    (Windows PowerShell 5 writes UTF-16): ``json.loads`` tells them apart by the bytes."""
    try:
        return json.loads(path.read_bytes())
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"is not UTF-8 or UTF-16 text ({exc})", path=path,
                              fix="save the GeoJSON as UTF-8 (or export it again from QuPath)") from None
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"malformed GeoJSON ({exc})", path=path,
                              fix="export the annotation again from QuPath (File > Export objects as GeoJSON)") from None
    except RecursionError:  # [[[[... 100,000 deep from elsewhere: "unexpected RecursionError ... a bug" until hunt 39f
        raise AnnotationError("is nested too deeply to be GeoJSON (arrays or objects inside each other beyond Python's "
                              "recursion limit)", path=path,
                              fix="export the annotation again from QuPath (File > Export objects as GeoJSON)") from None


def geojson_polygons(path: Path) -> tuple[list, list]:
    """(bed polygons, excluded polygons) of a GeoJSON: features classified like an exclusion
    (:func:`is_exclusion`, e.g. QuPath's ``Ignore*``) are cut out of the bed."""
    from shapely.geometry import shape

    data = read_json(path)
    from weakstil.annotation_dsa import dsa_documents, dsa_polygons

    if (docs := dsa_documents(data)) is not None:  # HistomicsTK / DSA's own JSON, saved as .json
        return dsa_polygons(docs, path)
    if isinstance(data, dict) and (data.get("type") == "FeatureCollection" or (  # a script's {"features": [...]}
            "type" not in data and isinstance(data.get("features"), list))):  # 'holds no features' until hunt 41d
        features = data.get("features")
    elif isinstance(data, dict) and data.get("type") == "Feature":
        features = [data]
    elif isinstance(data, list):  # QuPath's export without 'FeatureCollection' ticked: a list of Features; a list
        # of bare geometries (shapely's mapping(), a script's json.dump) as well: 'feature 0 has no geometry' until hunt 41d
        # (any geometry wrapped: a line or point among them is passed over as in a list of Features)
        features = [{"type": "Feature", "geometry": f, "properties": {}} if _is_geometry(f, GEOMETRY_TYPES) else f
                    for f in data]
    elif isinstance(data, dict) and isinstance(data.get("root"), dict):  # QuPath's hierarchy as JSON (GsonTools)
        features = [data["root"]]
    elif _is_geometry(data):
        features = [{"type": "Feature", "geometry": data, "properties": {}}]
    else:
        features = None
    if not isinstance(features, list):
        raise AnnotationError("GeoJSON holds no features", path=path,
                              fix="export a FeatureCollection of polygons from QuPath")
    features = _with_children(features)
    if all(isinstance(f, dict) and f.get("geometry", 0) is None for f in features):  # QuPath's export of no objects
        raise EmptyAnnotationError("GeoJSON holds no features with a shape: no outline is drawn in it", path=path,
                                   fix="export the outline again after drawing it, or remove the file")
    named, excluded, cut_names, detections, degenerate, lines = [], [], [], 0, 0, []
    for i, feat in enumerate(features):
        if isinstance(feat, dict) and feat.get("geometry", 0) is None:
            continue  # GeoJSON's unlocated feature (a measurement without a shape): no area
        if not isinstance(feat, dict) or not isinstance(feat.get("geometry"), dict):
            raise AnnotationError(f"feature {i} has no geometry", path=path, fix="export polygons from QuPath")
        props = feat.get("properties") or {}
        if not isinstance(props, dict):
            props = {}
        if object_type(feat, props) in NOT_ANNOTATIONS:  # cells found by QuPath, not a drawn area
            detections += 1
            continue
        name = _class_name(props.get("classification"))
        own = str(props.get("name") or "")  # an object named "Ignore" or "Exclusion" is one, classified or not
        if not class_name(name) and says_what_it_is(own):
            name = own  # an unclassified object named 'Tumor' (QuPath's Set annotation name): the name is its class
        what = f"feature {i}" + (f" ('{name or own}')" if name or own else "")
        for geometry in _geojson_areas(feat["geometry"]):
            geom_type = geometry.get("type")
            if not all_finite(geometry.get("coordinates")):  # before GEOS, which warns and then misreads them
                raise not_finite(path)
            if geom_type in ("LineString", "MultiLineString"):
                geom, is_open = closed_lines(geometry, path, what)
                lines += [what] if is_open else []
                if geom is None:
                    continue
            else:
                try:
                    geom = shape(geometry)
                except Exception as exc:  # a ring of fewer than 3 distinct points (a 2-point ring) among good ones
                    mended = polygons_without_short_rings(geometry, path, what)
                    if mended is None:
                        raise AnnotationError(f"feature {i} has an invalid {geom_type} ({exc})", path=path,
                                              fix="check the coordinates are [[x, y], ...] rings") from None
                    geom, skipped = mended
                    degenerate += skipped
            parts = valid_parts(geom, path, what)
            degenerate += not parts and not geom.is_empty
            if is_exclusion(name) or is_exclusion(own):
                excluded.extend(parts)
                cut_names.append(name if is_exclusion(name) else own)
            else:
                named.extend((name, part) for part in parts)
    if detections:
        log.info("%s: %d detection, cell, tile or TMA core object(s) passed over: only annotations outline the "
                 "tumour bed", path, detections)
    warn_tumour_named_cut(cut_names, path)
    chosen = choose_bed(named, path)
    if not chosen and named:  # every class says it is not the bed ("Peritumoral stroma", "Non-tumour")
        raise not_bed(named, path)
    if not chosen and degenerate and not excluded:
        raise AnnotationError(f"GeoJSON holds no polygon with an area: its {degenerate} shape(s) are degenerate (a ring "
                              "of fewer than 3 distinct points, or all on one line)", path=path,
                              fix="draw the tumour bed as a polygon or area annotation")
    if not chosen and lines and not excluded:
        raise AnnotationError(f"GeoJSON holds no polygons, only open lines ({', '.join(lines[:3])}"
                              f"{', ...' if len(lines) > 3 else ''}: their ends do not meet)", path=path,
                              fix="close the outline (QuPath: end the polyline on its first point, or draw it with "
                                  "the polygon or brush tool)")
    if not chosen:
        what = ("only detection/cell objects" if detections and not excluded else
                "no polygons other than excluded areas" if excluded else "no polygons")
        raise AnnotationError(f"GeoJSON holds {what}", path=path, fix="draw the tumour bed as a polygon or area "
                              "annotation" + (" (QuPath: export the annotations, not the detections)" if detections
                                              else ""))
    out = chosen, [*excluded, *not_bed_areas(named, path, chosen)]
    corner = data.get("weakstil_origin") if isinstance(data, dict) else None  # annotations.ORIGIN_KEY: ours
    if isinstance(corner, list) and len(corner) == 2 and all_finite(corner) and any(corner):
        from shapely.affinity import translate  # written in QuPath's frame of a MIRAX slide: back to level 0

        out = tuple([translate(g, float(corner[0]), float(corner[1])) for g in part] for part in out)
    return out


#: GeoJSON's geometry types (RFC 7946, 3.1).
GEOMETRY_TYPES = ("Point", "MultiPoint", "LineString", "MultiLineString", "Polygon", "MultiPolygon", "GeometryCollection")


def _is_geometry(item: object, types: tuple = ("Polygon", "MultiPolygon", "GeometryCollection")) -> bool:
    """A bare GeoJSON geometry of ``types`` (area geometries unless told; not wrapped in a Feature)."""
    return isinstance(item, dict) and item.get("type") in types


def _with_children(features: list) -> list:
    """The features with the objects nested in them, depth first: QuPath writes an object's child
    objects inside it (``properties.childObjects``, read also as ``children``) when it serialises
    the hierarchy. Read flat, a 'Tumor' drawn inside an unclassified parent region was lost and
    the bed was the whole parent (2.1 times the tumour's area)."""
    out, stack = [], list(reversed(features))
    while stack:
        feat = stack.pop()
        out.append(feat)
        props = feat.get("properties") if isinstance(feat, dict) else None
        if isinstance(props, dict):
            kids = props.get("childObjects", props.get("children"))
            if isinstance(kids, list):
                stack.extend(reversed(kids))
    return out


def _class_name(cls: object) -> str:
    """A QuPath classification's name: ``{"name": "Tumor"}``, or 0.4's ``{"names": ["Tumor",
    "Positive"]}`` (a derived class, "Tumor: Positive"), or a plain string."""
    if isinstance(cls, dict):
        if cls.get("name"):
            return str(cls["name"])
        names = cls.get("names")
        return ": ".join(map(str, names)) if isinstance(names, list) else ""
    return str(cls) if cls else ""


def _geojson_areas(geometry: dict) -> list[dict]:
    """The Polygon, MultiPolygon and (possibly closed) line members of a GeoJSON geometry, a
    GeometryCollection's included (points are not areas)."""
    if geometry.get("type") in ("Polygon", "MultiPolygon", "LineString", "MultiLineString"):
        return [geometry]
    if geometry.get("type") == "GeometryCollection":
        members = geometry.get("geometries")
        return [g for m in members if isinstance(m, dict) for g in _geojson_areas(m)] if isinstance(members, list) else []
    return []
