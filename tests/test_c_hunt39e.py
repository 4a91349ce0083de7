"""Hunt 39e: gaps the hunt-39 helpers noticed, each now decided where it starts.

1. ``weakstil embed`` without ``--overwrite`` into a folder whose caches were all made at another stain
   normalisation compared only the encoder and tiling up front: the demo's two caches (card: macenko)
   failed one by one with ``--stain-norm none`` ("they are kept"), while the run's new slide was embedded
   at ``none`` (exit 1), a folder of two stain normalisations; with ``--no-tile-stats`` the two were "up
   to date" and the new slide's cache had no tile statistics (exit 0), a folder with and without them.
   Now one usage line before any work (exit 2) naming the folder, both settings and the fix; nothing written.
2. Five decisions were taken on an error's words: scoring's fallback to a model's seeded random weights
   ("no published weights"), a --tumorbed-beds file of another kind or interrupted ("not a tumour-bed
   file", "incomplete"), a cohort's interrupted feature cache ("incomplete") and ``info``'s description of a
   slide without µm/px ("microns-per-pixel", which a plain PNG's error also says). A reworded message
   would have turned each into another error. Now each decides on a class (NoPublishedWeightsError,
   OtherKindError, IncompleteFileError, NoMppError), raised where the message said it; the words are unchanged.
3. A European-Excel ';' CSV (decimal commas), which train's cohort reader reads since hunt 39c, was refused
   by ``--slides`` ("the slide list is separated by ';', not commas", exit 2: score, embed, info...) and by
   ``evaluate --oof`` ("the CSV is separated by ';'"). Now read by the same rule (a ';' header with no
   comma): the list's ids, paths and mpp ('0,5'), the predictions' decimal commas; metrics as the comma file's.
   The workflow's reading of a ';' cohort's mpp column (``cohort_mpps``) gave {}: now the column's values.
4. A well-formed but empty ImageScope or ASAP XML (``<Annotations/>``, ``<ASAP_Annotations><Annotations/>``)
   was the plain "holds no (positive) regions" error, so ``tumorbed train`` refused the whole training for
   it while it left an empty GeoJSON's slide out (helper h39d). Now an :class:`EmptyAnnotationError` too;
   and the detector's model.json lists the slides left out (``left_out``: slide, annotation file, reason:
   empty, or covering no tissue tile), which were only warned about.
"""

from __future__ import annotations

import re
import shutil

import pytest

from conftest import run_cli


def _said(stderr: str) -> str:
    return " ".join(stderr.split())


@pytest.mark.parametrize("option, named, fix", [
    (("--stain-norm", "none"), "stain normalisation macenko not none", "give the --stain-norm the folder was made with"),
    (("--no-tile-stats",), "tile statistics yes not no", "leave out --no-tile-stats")])
def test_embed_into_a_folder_of_another_stain_norm_or_tile_stats_is_refused(tmp_path, small_demo, option, named,
                                                                            fix):
    demo = small_demo[0]
    caches = sorted((demo / "features").glob("*.h5"))
    folder = tmp_path / "features"
    folder.mkdir()
    for cache in caches[:2]:
        shutil.copy2(cache, folder / cache.name)
    slides = [demo / "cohort" / "slides" / f"{c.stem}.tiff" for c in caches[:3]]  # the third is new to the folder
    r = run_cli("embed", *slides, "--out", folder, "--encoder", demo / "model" / "encoder", "--threads", "1", *option)
    said = _said(r.stderr)
    assert r.returncode == 2, said  # was 1 (stain) or 0 (tile stats), the new slide's cache made at the new setting
    assert f"{folder}: " in said and named in said and fix in said
    assert sorted(p.name for p in folder.iterdir()) == [c.name for c in caches[:2]]  # nothing written


def test_embed_without_tile_stats_of_cached_slides_only_is_up_to_date(tmp_path, small_demo):
    demo = small_demo[0]
    cache = sorted((demo / "features").glob("*.h5"))[0]
    folder = tmp_path / "features"
    folder.mkdir()
    shutil.copy2(cache, folder / cache.name)
    r = run_cli("embed", demo / "cohort" / "slides" / f"{cache.stem}.tiff", "--out", folder, "--encoder",
                demo / "model" / "encoder", "--threads", "1", "--no-tile-stats")
    assert r.returncode == 0, r.stderr  # its cache holds more than the run asks for: nothing would mix


def test_scoring_falls_back_to_random_weights_on_the_class_not_the_words(tmp_path, monkeypatch):
    from weakstil.encoders import factory
    from weakstil.encoders.factory import NoPublishedWeightsError  # (old: no such class)
    from weakstil.score import ScoreOptions
    from weakstil.scoring_encoder import load_scoring_encoder

    with pytest.raises(NoPublishedWeightsError, match="has no published weights"):  # the words users read
        factory.create_encoder("small-cnn")
    real = factory.create_encoder
    sha = real("small-cnn", weights="random").weights_sha256

    def reworded(name, weights=None, **kw):
        if weights is None:
            raise NoPublishedWeightsError(f"no weights are published for {name!r}", path=None)
        return real(name, weights=weights, **kw)

    monkeypatch.setattr(factory, "create_encoder", reworded)
    (tmp_path / "model").mkdir()
    opts = ScoreOptions(model=tmp_path / "model", out=tmp_path / "out", device="cpu")
    encoder = load_scoring_encoder(opts, {"encoder": {"name": "small-cnn", "weights_sha256": sha}})
    assert encoder.weights_sha256 == sha  # the model's seeded random weights, whatever the words


def test_a_bed_folder_file_of_another_kind_or_interrupted_is_told_by_its_class(tmp_path, monkeypatch):
    from weakstil.files.h5 import IncompleteFileError, OtherKindError  # (old: no such classes)
    from weakstil.tumorbed import precomputed as resolver  # (read_precomputed's module since helper h45d)
    from weakstil.errors import WeakSTILError

    path = tmp_path / "S1.h5"
    path.write_bytes(b"")
    for error, said in ((OtherKindError("is some other file", path=path), "--tumorbed-beds holds this file"),
                        (IncompleteFileError("was cut short", path=path), "file is incomplete (an interrupted run)")):
        def read(p, error=error):
            raise error
        monkeypatch.setattr(resolver.BedFile, "read", read)
        with pytest.raises(WeakSTILError, match=re.escape(said)):
            resolver.read_precomputed(path, "S1", None)


def test_a_cohorts_interrupted_feature_cache_is_told_by_its_class(tmp_path, monkeypatch):
    from weakstil import cohort
    from weakstil.files import FeaturesFile
    from weakstil.files.h5 import IncompleteFileError  # (old: no such class)

    path = tmp_path / "S1.h5"
    path.write_bytes(b"")

    def read_header(p):
        raise IncompleteFileError("was cut short", path=p)

    monkeypatch.setattr(FeaturesFile, "read_header", read_header)
    assert cohort._check_features(path, "S1.h5") == ("features S1.h5 are incomplete (interrupted run)", None)


def test_info_describes_a_slide_without_mpp_on_the_class_not_the_words(tmp_path, monkeypatch):
    from test_a_hunt15 import _small_tiff
    from weakstil import slide as slide_module
    from weakstil.errors import NoMppError  # (old: no such class)

    path = _small_tiff(tmp_path / "nompp.tif", "jpeg", mpp=None)
    real = slide_module._resolve_mpp

    def reworded(*args, **kw):
        try:
            return real(*args, **kw)
        except NoMppError as exc:
            raise NoMppError("states no resolution", path=exc.path, fix=exc.fix) from None

    monkeypatch.setattr(slide_module, "_resolve_mpp", reworded)
    r = run_cli("info", path)
    assert r.returncode == 0 and "µm/px unknown" in r.stdout, r.stderr  # described, whatever the words
    png = tmp_path / "snap.png"
    png.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))  # its error says "no microns-per-pixel" too: still an error
    r = run_cli("info", png)
    assert r.returncode != 0 and "plain PNG image" in _said(r.stderr)


def test_a_semicolon_slide_list_is_read(tmp_path, small_demo):
    demo = small_demo[0]
    slides = sorted((demo / "cohort" / "slides").glob("*.tiff"))[:2]
    listed = tmp_path / "list.csv"
    listed.write_text("slide_id;path;mpp\n" + "".join(f"lab{i};{p};0,25\n" for i, p in enumerate(slides)),
                      encoding="utf-8")
    r = run_cli("info", "--slides", listed)
    assert r.returncode == 0, _said(r.stderr)  # was 2: "the slide list is separated by ';', not commas"
    lines = r.stdout.splitlines()
    assert [ln.split()[0] for ln in lines] == ["lab0", "lab1"] and all("0.25 µm/px (override)" in ln for ln in lines)
    import os

    from weakstil.cohort import read_cohort
    from weakstil.slide_list import cohort_mpps

    table = read_cohort(listed, check_files=False, require_labels=False).table  # the workflow's reading of a cohort:
    assert cohort_mpps(listed, table) == {os.path.abspath(p): 0.25 for p in slides}  # was {}: its mpp column unread


def test_evaluate_reads_semicolon_predictions_and_labels(tmp_path, small_demo):
    import json

    import pandas as pd

    demo = small_demo[0]
    oof = pd.read_csv(demo / "model" / "cv" / "oof_predictions.csv", dtype={"slide_id": str})
    labels = pd.read_csv(demo / "cohort" / "labels.csv", dtype={"slide_id": str})
    labels = labels[labels["slide_id"].isin(oof["slide_id"])]  # (the held-out slides have no OOF prediction)
    semi = tmp_path / "labels.csv"
    labels.assign(path=[str(demo / "cohort" / p) for p in labels["path"]]).to_csv(semi, sep=";", index=False,
                                                                                   decimal=",")
    pred = tmp_path / "oof.csv"
    oof.to_csv(pred, sep=";", index=False, decimal=",")
    assert "," in pred.read_text(encoding="utf-8")  # decimal commas, as a German Excel writes them
    r = run_cli("evaluate", semi, "--oof", pred, "--out", tmp_path / "ev")
    assert r.returncode == 0, _said(r.stderr)  # was 2: "the CSV is separated by ';', not commas"
    truth = labels.set_index("slide_id")["stil"].astype(float)
    expected = (oof.set_index("slide_id")["stil_pred"] - truth.reindex(oof["slide_id"]).values).abs().mean()
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["mae"] == pytest.approx(expected, abs=1e-6)


def test_an_empty_xml_annotation_is_left_out_and_recorded(tmp_path, small_demo):
    import json

    from weakstil.annotation_errors import AnnotationError, EmptyAnnotationError
    from weakstil.annotations import load_polygons
    from weakstil.tumorbed.training_cache import train_tumorbed_from_cache

    demo = small_demo[0]
    ids = sorted(p.stem for p in (demo / "features").glob("*.h5"))[:4]
    beds = tmp_path / "beds"
    beds.mkdir()
    for sid in ids[:2]:
        shutil.copy(demo / "cohort" / "truth" / f"{sid}_tumorbed.geojson", beds)
    (beds / f"{ids[2]}.xml").write_text("<Annotations/>")
    (beds / f"{ids[3]}.xml").write_text("<ASAP_Annotations><Annotations/></ASAP_Annotations>")
    for sid in ids[2:]:  # (old: AnnotationError "... holds no (positive) regions" / "no polygon annotations")
        with pytest.raises(EmptyAnnotationError, match="no outline is drawn in it"):
            load_polygons(beds / f"{sid}.xml")
    (tmp_path / "other.xml").write_text("<foo/>")  # XML of something else: the plain error, as before
    with pytest.raises(AnnotationError) as info:
        load_polygons(tmp_path / "other.xml")
    assert not isinstance(info.value, EmptyAnnotationError)
    detector = train_tumorbed_from_cache(demo / "features", beds, slide_ids=ids, lymphoid_veto=False,
                                         ink_veto=False, infiltrate=False, tumour_cell_gate=False,
                                         augment=False)
    assert detector.meta["model_id"] == "tumorbed-2slides"  # (old: the training refused)
    meta = json.loads((detector.save(tmp_path / "det") / "model.json").read_text())
    assert meta["left_out"] == [{"slide_id": sid, "annotation": f"{sid}.xml", "reason": "empty: nothing drawn in it"}
                                for sid in ids[2:]]  # (old: no record; a warning only)
