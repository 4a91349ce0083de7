"""Hunt 31d: a lab's batch run from outside (the fault matrix).

- A pathologist's outline saved as WKT text (``S1.wkt``: shapely, QGIS, PostGIS, many scripts) was
  not looked for: the slide's bed was the detector's (or the whole tissue), status ``ok``, exit 0,
  and the outline went unused with an info line "no annotation". It is read now.
- An outline named for the slide in a format not read (``S1.qpdata``, ``S1.svg``, an ImageJ
  ``S1.roi``, WKT in ``S1.txt``) is that slide's error naming the file and the formats read, not a
  bed from elsewhere.
"""

from __future__ import annotations

import json

import h5py
import pytest
from shapely.geometry import shape
from shapely.ops import unary_union

from weakstil.annotations import find_annotation, load_polygons


def _truth_outline(cohort, sid):
    data = json.loads((cohort / "truth" / f"{sid}_tumorbed.geojson").read_text())
    return unary_union([shape(f["geometry"]) for f in data["features"]])


@pytest.fixture(scope="module")
def one_slide(tmp_path_factory):
    from conftest import embedded_cohort

    root = tmp_path_factory.mktemp("h31d")
    cohort, labels, features = embedded_cohort(root, 1, seed=5, size_mm=(0.6, 0.6))
    return root, cohort, str(labels["slide_id"][0]), features


def _apply(features, sid, annotations, out):
    from conftest import run_cli

    return run_cli("tumorbed", "apply", features / f"{sid}.h5", "--out", out, "--annotations", annotations)


def test_wkt_outline_is_the_slides_bed(one_slide, tmp_path, one_torch_thread):
    root, cohort, sid, features = one_slide
    truth = _truth_outline(cohort, sid)
    assert truth.area > 0
    (tmp_path / "wkt").mkdir()
    # one geometry a line, as a script writing each polygon's .wkt does (a MULTIPOLYGON in one line reads alike)
    parts = list(getattr(truth, "geoms", [truth]))
    (tmp_path / "wkt" / f"{sid}.wkt").write_text("\n".join(p.wkt for p in parts) + "\n")
    assert find_annotation(tmp_path / "wkt", sid) is not None
    assert load_polygons(tmp_path / "wkt" / f"{sid}.wkt").symmetric_difference(truth).area < 1e-6 * truth.area
    r = _apply(features, sid, tmp_path / "wkt", tmp_path / "beds_wkt")
    assert r.returncode == 0, r.stderr
    g = _apply(features, sid, cohort / "truth", tmp_path / "beds_geojson")
    assert g.returncode == 0, g.stderr
    with h5py.File(tmp_path / "beds_wkt" / f"{sid}.h5") as a, h5py.File(tmp_path / "beds_geojson" / f"{sid}.h5") as b:
        assert a.attrs["source"] == "annotation", dict(a.attrs)  # was 'tissue': the outline went unused
        assert (a["tumorbed"][:] == b["tumorbed"][:]).all() and 0 < a["tumorbed"][:].sum() < len(a["tumorbed"])


@pytest.mark.parametrize("name, says", [("{sid}.qpdata", "QuPath project data file"),
                                        ("{sid}_tumorbed.svg", "SVG drawing"),
                                        ("{sid}.txt", "rename it to {sid}.wkt")])
def test_outline_in_a_format_not_read_is_the_slides_error(one_slide, tmp_path, name, says, one_torch_thread):
    root, cohort, sid, features = one_slide
    folder = tmp_path / "ann"
    folder.mkdir()
    (folder / name.format(sid=sid)).write_text("POLYGON ((0 0, 900 0, 900 900, 0 900, 0 0))\n")
    (folder / f"{sid}.csv").write_text("note\nread by Dr A\n")  # a note named for the slide: not an outline, no error
    r = _apply(features, sid, folder, tmp_path / "beds")
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and name.format(sid=sid) in lines[0] and says.format(sid=sid) in lines[0], r.stderr
    assert not (tmp_path / "beds" / f"{sid}.h5").exists()  # no bed of the detector or tissue in its place


def test_wkt_errors_name_the_file(tmp_path):
    from weakstil.annotation_errors import AnnotationError

    cases = {"points.wkt": ("MULTIPOINT ((1 1), (2 2))", "holds no polygon"),
             "junk.wkt": ("x,y\n1,2\n", "is not WKT text"), "empty.wkt": ("\n# nothing\n", "is empty")}
    for name, (text, says) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(AnnotationError, match=says) as e:
            load_polygons(tmp_path / name)
        assert name in e.value.one_line()
    (tmp_path / "ewkt.wkt").write_text("SRID=0;POLYGON ((0 0, 10 0, 10 10, 0 10, 0 0), (2 2, 4 2, 4 4, 2 4, 2 2))")
    assert load_polygons(tmp_path / "ewkt.wkt").area == pytest.approx(96)
