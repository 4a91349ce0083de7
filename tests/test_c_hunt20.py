"""Hunt 20c: faulty inputs a real lab produces. QuPath classes named in other languages than
English, and cohort CSVs whose sTIL% column mixes '35%' cells with bare fractions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from weakstil.annotations import load_polygons


def _ring(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]


def _feature(rings, cls):
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings},
            "properties": {"objectType": "annotation", "classification": {"name": cls}}}


def _write(path, features):
    path.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return path


@pytest.mark.parametrize("other", ["Kein Tumor", "Nicht-Tumor", "Tumorfrei", "Geen tumor", "Tumorvrij", "Sin tumor",
                                   "Sans tumeur", "Non tumoral", "Senza tumore", "Ingen tumör", "Kein Karzinom"])
def test_a_class_negating_the_tumour_in_another_language_is_not_the_bed(tmp_path, other):
    """Finding 1: a German QuPath export with 'Tumor' and 'Kein Tumor' (no tumour) areas: 'Kein Tumor'
    names the tumour and its negation was only read in English, so both became the bed (a slide
    scored 26.4 % over all its tissue instead of 48.2 % over its tumour, without a word)."""
    bed = load_polygons(_write(tmp_path / "S.geojson", [_feature([_ring(0, 0, 1000, 1000)], "Tumor"),
                                                        _feature([_ring(2000, 0, 3000, 1000)], other)]))
    assert bed.area == pytest.approx(1000 * 1000)


@pytest.mark.parametrize("tumour", ["Tumeur", "Karzinom", "Tumör", "Carcinome infiltrant", "Tumorbett"])
def test_a_tumour_class_in_another_language_outranks_the_other_classes(tmp_path, tumour):
    """A French 'Tumeur' beside 'Stroma' was not read as naming the tumour: every class became the bed."""
    bed = load_polygons(_write(tmp_path / "S.geojson", [_feature([_ring(0, 0, 1000, 1000)], tumour),
                                                        _feature([_ring(2000, 0, 3000, 1000)], "Stroma")]))
    assert bed.area == pytest.approx(1000 * 1000)


@pytest.mark.parametrize("cut", ["Nekrose", "Nécrose", "Normalgewebe", "Tessuto normale", "Lymphknoten"])
def test_a_not_bed_area_named_in_another_language_is_cut_out_of_the_bed(tmp_path, cut):
    """Necrosis drawn inside the tumour is cut out of the bed in English ('Necrosis'); 'Nekrose' stayed in it."""
    bed = load_polygons(_write(tmp_path / "S.geojson", [_feature([_ring(0, 0, 1000, 1000)], "Tumor"),
                                                        _feature([_ring(0, 0, 500, 1000)], cut)]))
    assert bed.area == pytest.approx(500 * 1000)


@pytest.mark.parametrize("name", ["Tumor (ohne DCIS)", "Tumor ohne Nekrose", "Tumeur (sauf CIS)", "Tumor: Negative",
                                  "Tumor (nicht nekrotisch)", "Tumeur (pas de nécrose)"])
def test_a_tumour_class_saying_what_it_leaves_out_in_another_language_is_the_bed(tmp_path, name):
    bed = load_polygons(_write(tmp_path / "S.geojson", [_feature([_ring(0, 0, 1000, 1000)], name),
                                                        _feature([_ring(2000, 0, 3000, 1000)], "Stroma")]))
    assert bed.area == pytest.approx(1000 * 1000)


def _cohort(tmp_path, labels):
    (tmp_path / "slides").mkdir(exist_ok=True)
    lines = ["slide_id,path,stil"]
    for i, label in enumerate(labels):
        (tmp_path / "slides" / f"S{i}.tiff").write_bytes(b"II*\x00")
        lines.append(f"S{i},slides/S{i}.tiff,{label}")
    path = tmp_path / "cohort.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_percent_signs_beside_bare_fractions_are_refused_naming_the_rows(tmp_path):
    """Finding 2: an Excel export with some cells formatted as percentages ('15%') and others as
    fractions (0.056 for 5.6 %): the fractions were read as 0.056 %, TIL-free slides, and evaluate
    reported its metrics on them without a word (the fraction warning only looks at whole percentages)."""
    from weakstil.cohort import CohortError, read_cohort

    path = _cohort(tmp_path, ["0.056", "15%", "0.127", "54%"])
    with pytest.raises(CohortError) as err:
        read_cohort(path)
    text = str(err.value)
    assert "row 2 (S0) 0.056" in text and "row 4 (S2) 0.127" in text and "cohort.csv" in text
    assert "5.6" in text  # the fix: the label as a percentage


@pytest.mark.parametrize("labels", [["0.5%", "15%", "30"], ["0.056", "15", "54"], ["5%", "15%", "0"], ["0.2", "0.3"]])
def test_one_notation_or_a_marked_small_percentage_is_still_read(tmp_path, labels):
    from weakstil.cohort import read_cohort

    cohort = read_cohort(_cohort(tmp_path, labels))
    assert len(cohort) == len(labels)


def test_a_slide_list_without_needed_labels_is_not_refused_for_its_notation(tmp_path):
    from weakstil.cohort import read_cohort

    assert len(read_cohort(_cohort(tmp_path, ["0.056", "15%"]), require_labels=False)) == 2


def test_a_path_typed_composed_finds_the_file_named_decomposed(tmp_path):
    """Finding 3: 'Fälle/café.tiff' typed in a spreadsheet (NFC) for a folder copied from macOS (NFD
    names): 'file not found café.tiff' beside a file that lists as café.tiff."""
    import unicodedata

    from weakstil.cohort import read_cohort

    folder = tmp_path / unicodedata.normalize("NFD", "Fälle")
    folder.mkdir()
    (folder / unicodedata.normalize("NFD", "café.tiff")).write_bytes(b"II*\x00")
    (tmp_path / "c.csv").write_text(unicodedata.normalize("NFC", "slide_id,path,stil\nS1,Fälle/café.tiff,30\n"),
                                    encoding="utf-8")
    cohort = read_cohort(tmp_path / "c.csv")
    assert Path(cohort.table["path"][0]).is_file()


def test_a_path_relative_to_the_current_folder_is_named_with_the_fix(tmp_path, monkeypatch):
    """Finding 4: a CSV in csv/ listing cohort/slides/S1.tiff, a path from the folder the user works
    in: 'file not found cohort/slides/S1.tiff' while the file is there, with no hint why."""
    from weakstil.cohort import CohortError, read_cohort

    (tmp_path / "cohort" / "slides").mkdir(parents=True)
    (tmp_path / "cohort" / "slides" / "S1.tiff").write_bytes(b"II*\x00")
    (tmp_path / "csv").mkdir()
    (tmp_path / "csv" / "c.csv").write_text("slide_id,path,stil\nS1,cohort/slides/S1.tiff,30\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CohortError) as err:
        read_cohort(Path("csv/c.csv"))
    assert "write it as ../cohort/slides/S1.tiff" in str(err.value)


def test_a_full_disk_while_saving_a_model_is_the_disk_full_error_not_a_bug(tmp_path, monkeypatch):
    """Finding 5: 'weakstil train --out' on a full disk (a 300 kB tmpfs) ended with 'unexpected
    SafetensorError: Error while serializing: I/O error: No space left on device (os error 28). Fix:
    this is a bug in weakstil'. safetensors reports I/O errors as its own type; they are now the
    OSError they carry, so the CLI says 'No space left on device. Fix: free disk space ...' and
    a batch stops, and no temporary file is left."""
    import errno

    import safetensors.torch
    from safetensors import SafetensorError

    from weakstil.errors import from_os_error
    from weakstil.mil.config import Architecture
    from weakstil.mil.model import TileMIL
    from weakstil.mil.store import save_model

    def full_disk(state, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", full_disk)
    with pytest.raises(OSError) as err:
        save_model(TileMIL(Architecture(input_dim=6, hidden=8)), tmp_path / "model", {})
    assert err.value.errno == errno.ENOSPC
    out = from_os_error(err.value)
    assert out.stops_batch and "model.safetensors" in out.one_line() and "free disk space" in out.one_line()
    assert list((tmp_path / "model").iterdir()) == []


def test_a_cohort_csv_or_a_plain_jpeg_given_as_a_slide_says_what_it_is(tmp_path):
    """Finding 6: 'weakstil score cohort.csv' (or embed, tile) and a JPEG snapshot renamed .svs were
    both 'not a slide format OpenSlide can read', which names neither what the file is nor what to pass."""
    from PIL import Image

    from weakstil.errors import SlideError
    from weakstil.slide_backend import open_backend as open_slide

    csv = tmp_path / "cohort.csv"
    csv.write_text("slide_id,path,stil\nS1,slides/S1.svs,30\n")
    jpeg = tmp_path / "snap.svs"
    Image.new("RGB", (64, 64), (230, 200, 220)).save(jpeg, "JPEG")
    with pytest.raises(SlideError, match="is a cohort CSV .*takes a cohort") as err:
        open_slide(csv)
    assert "cohort.csv" in str(err.value)
    with pytest.raises(SlideError, match="is a plain JPEG image.*--slide-mpp"):
        open_slide(jpeg)


def _named(rings, name):
    return {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": rings},
            "properties": {"objectType": "annotation", "name": name}}


def test_an_unclassified_object_named_tumor_is_read_by_its_name(tmp_path):
    """Finding 7: QuPath objects named 'Tumor' and 'Stroma' (Set annotation name) but left
    unclassified were all 'unclassified', so both became the bed: a slide scored 26.4 % over all
    its tissue instead of 48.2 % over its tumour, without a word."""
    bed = load_polygons(_write(tmp_path / "S.geojson", [_named([_ring(0, 0, 1000, 1000)], "Tumor"),
                                                        _named([_ring(2000, 0, 3000, 1000)], "Stroma")]))
    assert bed.area == pytest.approx(1000 * 1000)
    bed = load_polygons(_write(tmp_path / "T.geojson", [_named([_ring(0, 0, 1000, 1000)], "Annotation 1"),
                                                        _named([_ring(0, 0, 500, 1000)], "Necrosis")]))
    assert bed.area == pytest.approx(500 * 1000)


def test_unclassified_objects_with_plain_names_stay_one_unclassified_bed(tmp_path):
    bed = load_polygons(_write(tmp_path / "S.geojson", [_named([_ring(0, 0, 1000, 1000)], "Annotation 1"),
                                                        _feature([_ring(2000, 0, 3000, 1000)], None)]))
    assert bed.area == pytest.approx(2 * 1000 * 1000)


def test_an_asap_annotation_in_no_group_named_tumor_is_read_by_its_name(tmp_path):
    """As finding 7 for ASAP: annotations left in no group (PartOfGroup="None", ASAP's default) but
    named 'Tumor' and 'Stroma' were one unclassified bed."""
    def ann(name, x0):
        coords = "".join(f'<Coordinate Order="{i}" X="{x}" Y="{y}"/>'
                         for i, (x, y) in enumerate([(x0, 0), (x0 + 1000, 0), (x0 + 1000, 1000), (x0, 1000)]))
        return f'<Annotation Name="{name}" Type="Polygon" PartOfGroup="None"><Coordinates>{coords}</Coordinates></Annotation>'

    path = tmp_path / "S.xml"
    path.write_text(f'<ASAP_Annotations><Annotations>{ann("Tumor", 0)}{ann("Stroma", 2000)}</Annotations>'
                    '<AnnotationGroups/></ASAP_Annotations>')
    assert load_polygons(path).area == pytest.approx(1000 * 1000)
    path.write_text(f'<ASAP_Annotations><Annotations>{ann("Annotation 0", 0)}{ann("Annotation 1", 2000)}'
                    '</Annotations><AnnotationGroups/></ASAP_Annotations>')
    assert load_polygons(path).area == pytest.approx(2 * 1000 * 1000)


def test_imagescope_regions_of_an_unnamed_layer_are_read_by_their_text(tmp_path):
    """As finding 7 for ImageScope: one unnamed layer whose regions' own labels (Text) are 'Tumor' and
    'Normal' was one unclassified bed; a named layer's regions stay of the layer's class, and a
    negative region still cuts its own region."""
    def region(text, x0, negative=False):
        vertices = "".join(f'<Vertex X="{x}" Y="{y}"/>'
                           for x, y in [(x0, 0), (x0 + 1000, 0), (x0 + 1000, 1000), (x0, 1000)])
        return (f'<Region Id="1" Type="0" Text="{text}" NegativeROA="{int(negative)}">'
                f'<Vertices>{vertices}</Vertices></Region>')

    def layer(name, *regions):
        return f'<Annotation Id="1" Name="{name}"><Regions>{"".join(regions)}</Regions></Annotation>'

    path = tmp_path / "S.xml"
    path.write_text(f'<Annotations>{layer("", region("Tumor", 0), region("Normal", 2000))}</Annotations>')
    assert load_polygons(path).area == pytest.approx(1000 * 1000)
    path.write_text(f'<Annotations>{layer("Layer 1", region("Tumor", 0), region("Normal", 2000))}</Annotations>')
    assert load_polygons(path).area == pytest.approx(2 * 1000 * 1000)
    hole = ('<Region Id="2" Type="0" Text="" NegativeROA="1"><Vertices><Vertex X="100" Y="100"/>'
            '<Vertex X="600" Y="100"/><Vertex X="600" Y="600"/><Vertex X="100" Y="600"/></Vertices></Region>')
    path.write_text(f'<Annotations>{layer("", region("Tumor", 0), hole, region("Normal", 2000))}</Annotations>')
    assert load_polygons(path).area == pytest.approx(1000 * 1000 - 500 * 500)
