"""Hunt 30f: annotation files a Hamamatsu / ASAP lab brings, written by hand from the published formats.

- Hamamatsu NDP.view 2 saves its annotations beside the slide as ``<slide>.ndpi.ndpa``: XML whose
  points are nanometres from the glass slide's centre, placed on the image by the NDPI's
  ``hamamatsu.X/YOffsetFromSlideCentre`` and µm/px. Such a file was not found (the slide's bed was the
  whole tissue, Dice 0.38 with the drawn tumour here); it is now read (Dice 1.00), with a one-line
  refusal on a slide that does not record the offsets.
- ASAP groups inside groups (``<Group Name="fat" PartOfGroup="Exclusion">``): an area in a group
  inside an exclusion group was read as bed, and one in a plain group inside ``Tumor`` lost to an
  ``ROI`` drawn around it; the groups an area lies in now count.
"""

from __future__ import annotations

import logging
import numpy as np
import pytest
from shapely.geometry import Point, Polygon, box

from conftest import shared_file
from weakstil.annotation_errors import AnnotationError
from weakstil.annotations import find_annotation, load_polygons, rasterize, unmatched_annotations

W, H, MPP = 20000, 16000, 0.2281750559028887
#: the real fluorescence NDPI's offsets (shared/data), nm
OFFSETS = {"ndpi_offset_x_nm": 12538720, "ndpi_offset_y_nm": -96063}
TUMOUR = Polygon([(6000, 5000), (13000, 4800), (14000, 11000), (7000, 11500)])
CIRCLE = Point(16000, 13000).buffer(1500, quad_segs=64)
HOLE = box(9000, 7000, 10500, 8500)  # drawn 'Exclusion' inside the tumour
TRUTH = TUMOUR.union(CIRCLE).difference(HOLE)


def _geometry(slide: dict | None = None):
    from weakstil.tumorbed.bed import SlideGeometry

    mask_mpp = 16.0
    f = MPP / mask_mpp
    tissue = np.zeros((round(H * f), round(W * f)), bool)
    tissue[round(2000 * f):round(15000 * f), round(2000 * f):round(18500 * f)] = True
    xs, ys = np.meshgrid(np.arange(0, W, 1000), np.arange(0, H, 1000))
    return SlideGeometry(W, H, MPP, np.stack([xs.ravel(), ys.ravel()], 1), 1000.0, tissue, mask_mpp,
                         slide={"slide_vendor": "hamamatsu", **OFFSETS} if slide is None else slide)


def _nm(x: float, y: float) -> tuple[int, int]:
    """Level-0 px -> NDP.view nanometres from the glass slide's centre."""
    return (round((x - W / 2) * 1000 * MPP + OFFSETS["ndpi_offset_x_nm"]),
            round((y - H / 2) * 1000 * MPP + OFFSETS["ndpi_offset_y_nm"]))


def _state(i: int, title: str, annotation: str, details: str = "") -> str:
    return (f'  <ndpviewstate id="{i}">\n    <title>{title}</title>\n    <details>{details}</details>\n'
            "    <coordformat>nanometers</coordformat>\n    <lens>2.5</lens>\n    <x>0</x>\n    <y>0</y>\n    <z>0</z>\n"
            "    <showtitle>0</showtitle>\n    <showhistogram>0</showhistogram>\n    <showlineprofile>0</showlineprofile>\n"
            f"{annotation}  </ndpviewstate>\n")


def _freehand(points, display="AnnotateFreehand", closed=1) -> str:
    pts = "".join("<point><x>{}</x><y>{}</y></point>".format(*_nm(x, y)) for x, y in points)
    special = "<specialtype>rectangle</specialtype>" if display == "AnnotateRectangle" else ""
    return (f'    <annotation type="freehand" displayname="{display}" color="#ff0000"><measuretype>0</measuretype>'
            f"<closed>{closed}</closed><pointlist>{pts}</pointlist>{special}</annotation>\n")


def _ndpa(states: list[str]) -> str:
    return '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n<annotations>\n' + "".join(states) + "</annotations>\n"


def _full_ndpa() -> str:
    cx, cy = _nm(16000, 13000)
    circle = (f'    <annotation type="circle" displayname="AnnotateCircle" color="#00ff00"><x>{cx}</x><y>{cy}</y>'
              f"<radius>{round(1500 * 1000 * MPP)}</radius><measuretype>0</measuretype></annotation>\n")
    x0, y0 = _nm(500, 500)
    pin = f'    <annotation type="pin" displayname="AnnotatePin" color="#ff0000"><x>{x0}</x><y>{y0}</y><icon>pinred</icon></annotation>\n'
    x1, y1 = _nm(3000, 14000)
    ruler = (f'    <annotation type="linearmeasure" displayname="AnnotateRuler" color="#000000"><x1>{x0}</x1><y1>{y0}</y1>'
             f"<x2>{x1}</x2><y2>{y1}</y2></annotation>\n")
    return _ndpa([
        _state(1, "Tumour", _freehand(TUMOUR.exterior.coords[:-1])),
        _state(2, "Annotation 2", circle, details="Invasive carcinoma"),  # the class in details, as scripts write it
        _state(3, "Exclusion", _freehand(HOLE.exterior.coords[:-1], "AnnotateRectangle")),
        _state(4, "Tumour", _freehand([(2500, 2500), (18000, 2500), (18000, 14500)], "AnnotateFreehandLine", 0)),
        _state(5, "ROI", _freehand([(2000, 2000), (18500, 2000), (18500, 15000), (2000, 15000)])),  # not used: a tumour is drawn
        _state(6, "pin", pin), _state(7, "ruler", ruler)])


def _dice(bed, geom, truth=TRUTH) -> float:
    want = geom.fit_mask(rasterize(truth, geom.width, geom.height, geom.slide_mpp, geom.mask_mpp))
    return float(2 * (bed.mask & want).sum() / (bed.mask.sum() + want.sum()))


def test_ndpa_beside_the_slide_is_found_and_placed_on_the_pixels(tmp_path, caplog):
    """NDP.view's own name for it, <slide>.ndpi.ndpa: before not found (the whole tissue was the bed,
    Dice 0.38); now read with its circle, rectangle exclusion, open line, pin and ruler: Dice 1.00."""
    from weakstil.tumorbed.bed import from_annotation

    path = tmp_path / "S1.ndpi.ndpa"
    path.write_text(_full_ndpa(), encoding="utf-8")
    assert find_annotation(tmp_path, "S1") == path and unmatched_annotations(tmp_path, ["S1"]) == []
    caplog.set_level(logging.INFO)
    geom = _geometry()
    bed = from_annotation(path, geom)
    assert _dice(bed, geom) > 0.98 and not bed.misplaced
    assert "3 NDP.view annotation(s) that are no area" in caplog.text and "not used: ROI" in caplog.text
    raw = load_polygons(path, geom)
    assert abs(raw.area - TRUTH.area) < 0.01 * TRUTH.area
    # the plain name is found too
    (tmp_path / "S2.ndpa").write_text(_full_ndpa(), encoding="utf-8")
    assert find_annotation(tmp_path, "S2") == tmp_path / "S2.ndpa"


def test_ndpa_on_a_slide_without_offsets_is_refused_in_one_line(tmp_path):
    path = tmp_path / "S1.ndpa"
    path.write_text(_full_ndpa(), encoding="utf-8")
    geom = _geometry({"slide_vendor": "aperio", "slide_path": str(tmp_path / "S1.svs")})
    with pytest.raises(AnnotationError) as err:
        load_polygons(path, geom)
    line = err.value.one_line()
    assert "S1.ndpa" in line and "XOffsetFromSlideCentre" in line and "aperio" in line and "\n" not in line
    with pytest.raises(AnnotationError, match="NDP.view"):  # no slide at all (the napari editor's saved bed)
        load_polygons(path)


def test_ndpa_classes_follow_the_bed_rules(tmp_path):
    """Only 'Non-tumour' outlines: refused as the other formats are; a 'Necrosis' inside is cut out."""
    path = tmp_path / "S1.ndpa"
    path.write_text(_ndpa([_state(1, "Non-tumour", _freehand(TUMOUR.exterior.coords[:-1]))]), encoding="utf-8")
    with pytest.raises(AnnotationError, match="not the tumour bed"):
        load_polygons(path, _geometry())
    path.write_text(_ndpa([_state(1, "A1", _freehand(TUMOUR.exterior.coords[:-1]), details="tumor"),
                           _state(2, "Necrosis", _freehand(HOLE.exterior.coords[:-1]))]), encoding="utf-8")
    assert abs(load_polygons(path, _geometry()).area - TUMOUR.difference(HOLE).area) < 1e-3 * TUMOUR.area


def test_real_ndpi_records_its_offsets_and_an_older_file_reads_them_from_the_slide(tmp_path):
    from weakstil.annotation_ndpa import ndpa_frame
    from weakstil.slide import Slide

    real = shared_file("slides/test3-TRITC_2_560_fluorescence.ndpi")
    slide = Slide.open(real)
    info = slide.info()
    assert (info["ndpi_offset_x_nm"], info["ndpi_offset_y_nm"]) == (12538720, -96063)
    w, h = slide.dimensions
    geom = _geometry({"slide_vendor": "hamamatsu", "slide_path": str(real)})  # made before they were recorded
    geom.width, geom.height = int(w), int(h)
    frame = ndpa_frame(geom, tmp_path / "x.ndpa")
    # the glass slide's point at the image's offset is the image's centre
    assert frame.to_pixels(12538720, -96063) == pytest.approx((w / 2, h / 2))


# --- ASAP groups inside groups -------------------------------------------------------------------------
def _asap(annotations: list[tuple[str, Polygon]], groups: list[tuple[str, str]]) -> str:
    body = []
    for i, (group, poly) in enumerate(annotations):
        pts = "".join(f'<Coordinate Order="{k}" X="{x}" Y="{y}"/>' for k, (x, y) in enumerate(poly.exterior.coords[:-1]))
        body.append(f'<Annotation Name="Annotation {i}" Type="Polygon" PartOfGroup="{group}" Color="#F4FA58">'
                    f"<Coordinates>{pts}</Coordinates></Annotation>")
    grp = "".join(f'<Group Name="{n}" PartOfGroup="{p}" Color="#64FE2E"><Attributes/></Group>' for n, p in groups)
    return (f'<?xml version="1.0"?><ASAP_Annotations><Annotations>{"".join(body)}</Annotations>'
            f"<AnnotationGroups>{grp}</AnnotationGroups></ASAP_Annotations>")


def test_asap_nested_groups_keep_their_parents_class_and_exclusion(tmp_path):
    """'T1' in 'Tumor' beside an 'ROI' around it, 'fat' in 'Exclusion' inside the tumour: the bed was the
    ROI with the fat in it (Dice 0.33, 5.0 times the area of the drawn tumour less the fat), now the tumour less the fat (1.00)."""
    roi = box(2000, 2000, 18500, 15000)
    path = tmp_path / "S1.xml"
    path.write_text(_asap([("T1", TUMOUR), ("fat", HOLE), ("ROI", roi)],
                          [("Tumor", "None"), ("T1", "Tumor"), ("Exclusion", "None"), ("fat", "Exclusion"),
                           ("ROI", "None")]))
    truth = TUMOUR.difference(HOLE)
    read = load_polygons(path)
    assert 2 * read.intersection(truth).area / (read.area + truth.area) > 0.99


def test_asap_group_loop_and_unknown_parent_do_not_hang(tmp_path):
    path = tmp_path / "S1.xml"
    path.write_text(_asap([("a", TUMOUR)], [("a", "b"), ("b", "a"), ("c", "nowhere")]))
    assert load_polygons(path).area == pytest.approx(TUMOUR.area)
    path.write_text(_asap([("a", TUMOUR), ("c", HOLE)], [("a", "Tumour bed"), ("c", "a"), ("Tumour bed", "c")]))
    assert load_polygons(path).area == pytest.approx(TUMOUR.area)  # c lies in a, in 'Tumour bed': bed too


def test_ndpa_clear_outline_is_a_hole(tmp_path):
    """QuPath's NDPA scripts write a polygon's hole as an outline whose details is 'Clear' (NDP.view has no
    holes): it was bed (read as one more class), now it is cut out."""
    path = tmp_path / "S1.ndpa"
    path.write_text(_ndpa([_state(1, "Annotation 1", _freehand(TUMOUR.exterior.coords[:-1]), details="Tumor"),
                           _state(2, "Annotation 1", _freehand(HOLE.exterior.coords[:-1]), details="Clear")]),
                    encoding="utf-8")
    assert abs(load_polygons(path, _geometry()).area - TUMOUR.difference(HOLE).area) < 1e-3 * TUMOUR.area


def test_napari_bed_editor_reads_an_ndpa_on_the_score_files_slide(tmp_path):
    """The bed editor continues a bed found in its bed folder as --annotations reads it: an .ndpa there is
    placed by the NDPI offsets the score file carries (without them it was refused)."""
    from weakstil.bed_edit import ScoredTiles
    from weakstil.bed_read import read_bed_parts
    from weakstil.files import SlideScoresFile

    f = MPP / 16.0
    shape = (round(H * f), round(W * f))
    xs, ys = np.meshgrid(np.arange(0, W, 1000), np.arange(0, H, 1000))
    coords = np.stack([xs.ravel(), ys.ravel()], 1).astype(np.int64)
    n = len(coords)
    SlideScoresFile(coords=coords, tile_scores=np.full(n, 20, np.float32), tumorbed=np.ones(n, bool),
                    tumorbed_fraction=np.ones(n, np.float32), tissue_fraction=np.ones(n, np.float32),
                    tissue_mask=np.ones(shape, bool), tissue_mask_mpp=16.0, tumorbed_mask=np.ones(shape, bool),
                    tumorbed_mask_mpp=16.0,
                    attrs={"slide_id": "S1", "slide_mpp": MPP, "slide_width": W, "slide_height": H,
                           "tile_size_level0": 1000.0, "stil": 20.0, "threshold": 30.0, "aggregator": "mean",
                           **OFFSETS}).write(tmp_path / "S1.h5")
    tiles = ScoredTiles.read(tmp_path / "S1.h5")
    path = tmp_path / "S1.ndpi.ndpa"
    path.write_text(_ndpa([_state(1, "Tumor", _freehand(TUMOUR.exterior.coords[:-1]))]), encoding="utf-8")
    rings, parts = read_bed_parts(path, tiles.geometry)
    assert len(rings) == 1 and Polygon(rings[0]).symmetric_difference(TUMOUR).area < 1e-3 * TUMOUR.area


def test_ndpa_of_open_lines_only_is_refused_naming_them(tmp_path):
    path = tmp_path / "S1.ndpa"
    path.write_text(_ndpa([_state(1, "Tumor", _freehand(TUMOUR.exterior.coords[:-1], "AnnotateFreehandLine", 0))]),
                    encoding="utf-8")
    with pytest.raises(AnnotationError, match=r"no closed outline .*1 open line") as err:
        load_polygons(path, _geometry())
    assert "freehand region tool" in err.value.one_line()
