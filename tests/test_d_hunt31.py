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


# --- a lab's slide list: weakstil score --slides LIST -----------------------------------------------
def test_score_takes_a_slide_list_with_spaces_quotes_and_crlf(tmp_path, small_demo, one_torch_thread):
    """A lab's list (Windows "Copy as path" quotes, CR line ends, a comment, a path with spaces and
    accents, one relative to the list) is scored as those slides; score took no list before (its
    own fix, $(grep -v '^#' LIST), splits 'case 7/Größe Ñ.tiff' in two)."""
    import shutil

    import pandas as pd

    from conftest import run_cli

    demo = small_demo[0]
    slides = sorted((demo / "cohort" / "slides").glob("*.tiff"))[:2]
    (tmp_path / "case 7").mkdir()
    spaced = tmp_path / "case 7" / "Größe Ñ.tiff"
    shutil.copyfile(slides[0], spaced)
    (tmp_path / "lists").mkdir()
    shutil.copyfile(slides[1], tmp_path / "near.tiff")
    listing = tmp_path / "lists" / "batch 7.txt"
    listing.write_bytes(f'# batch 7\r\n"{spaced}"\r\n\r\n../near.tiff\r\n../gone.tiff\r\n'.encode())
    typo = str(tmp_path / "batch 8" / "*.tiff")  # a glob that matches nothing: its error line, no row
    r = run_cli("score", typo, "--slides", listing, "--model", demo / "model", "--out", tmp_path / "out")
    rows = pd.read_csv(tmp_path / "out" / "results.csv", keep_default_na=False).set_index("slide_id")
    assert r.returncode == 1, r.stderr  # the missing slide's row
    assert f"error: {typo}: no file matches this pattern" in " ".join(r.stderr.split())
    assert sorted(rows.index) == sorted(["gone", "near", "Größe Ñ"])  # was also a row of a slide named '*.tiff'
    assert rows.loc["Größe Ñ", "status"] == "ok" and rows.loc["Größe Ñ", "path"] == str(spaced)
    assert rows.loc["near", "status"] == "ok" and rows.loc["gone", "status"] == "error"
    assert "gone.tiff: file not found" in " ".join(r.stderr.split())


def test_slide_list_as_cohort_csv_and_its_refusals(tmp_path):
    from weakstil.errors import UsageError, WeakSTILError
    from weakstil.slide_list import read_slide_list

    (tmp_path / "s").mkdir()
    for name in ("a.svs", "b c.svs"):
        (tmp_path / "s" / name).write_bytes(b"x")
    csv = tmp_path / "cohort.csv"  # a cohort CSV without sTIL%: its path column, relative to the CSV
    csv.write_text("slide_id,path\na,s/a.svs\nb c,s/b c.svs\n")
    assert read_slide_list(csv) == [str(tmp_path / "s" / "a.svs"), str(tmp_path / "s" / "b c.svs")]
    (tmp_path / "paths.csv").write_text('path,stil\n"s/b c.svs",\ns/a.svs,12\n')  # no slide_id: ids are file names
    assert read_slide_list(tmp_path / "paths.csv") == [str(tmp_path / "s" / "b c.svs"), str(tmp_path / "s" / "a.svs")]
    (tmp_path / "one.csv").write_text("path\ns/a.svs\n")  # one column: its header is no slide
    assert read_slide_list(tmp_path / "one.csv") == [str(tmp_path / "s" / "a.svs")]
    (tmp_path / "excel.csv").write_text("slide_id;path\na;s/a.svs\n")  # saved with ';': read since hunt 39e
    assert read_slide_list(tmp_path / "excel.csv") == [str(tmp_path / "s" / "a.svs")]
    with pytest.raises(WeakSTILError, match="slide list is not there"):
        read_slide_list(tmp_path / "nope.txt")
    (tmp_path / "empty.txt").write_text("# nothing yet\n\n")
    with pytest.raises(UsageError, match="names no slide"):
        read_slide_list(tmp_path / "empty.txt")
    (tmp_path / "moved.txt").write_text("x/a.svs\nx/b.svs\n")  # copied away from its slides
    with pytest.raises(WeakSTILError, match="none of the 2 slides it lists is there"):
        read_slide_list(tmp_path / "moved.txt")


def test_score_without_slides_or_list_is_a_usage_line(tmp_path):
    from conftest import run_cli

    r = run_cli("score", "--model", tmp_path / "model", "--out", tmp_path / "out")
    assert r.returncode == 2 and "--slides LIST" in r.stderr and not (tmp_path / "out").exists()
    r = run_cli("score", "--slides", tmp_path / "list.txt", "--model", tmp_path / "model", "--out", tmp_path / "out")
    assert r.returncode == 1 and "list.txt: --slides: the slide list is not there" in " ".join(r.stderr.split())
    assert not (tmp_path / "out").exists()


def test_score_of_a_glob_matching_nothing_writes_nothing(tmp_path, small_demo):
    """An empty folder or a typo ('batch7/*.svs'): one error line, exit 1, no --out; it wrote a results.csv
    whose row of a slide named '*.svs' stayed beside the corrected run's slides (its report: one slide more,
    in error)."""
    from conftest import run_cli

    (tmp_path / "empty").mkdir()
    r = run_cli("score", str(tmp_path / "empty" / "*.svs"), "--model", small_demo[0] / "model", "--out", tmp_path / "out")
    assert r.returncode == 1 and "no file matches this pattern" in r.stderr, r.stderr
    assert [ln for ln in r.stderr.splitlines() if ln.startswith("error:")] == [ln for ln in r.stderr.splitlines()
                                                                              if "error" in ln.lower()]
    assert not (tmp_path / "out").exists()
