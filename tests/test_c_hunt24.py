"""Hunt 24, area c: defects left open by earlier hunts — CSV formula injection in the tables WeakSTIL
writes, the encoder weights' fingerprint across .pth and .safetensors, the feature cache's key, a moved
scan's recorded path, and the napari plugin's dock closed while scoring."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from weakstil.errors import WeakSTILError
from weakstil.score import RESULT_COLUMNS

FORMULAS = ["=HYPERLINK(\"http://x\",\"y\")", "+1+cmd", "-2+3", "@SUM(A1)", "\tx", "'=already quoted"]
KEPT = ["-5", "+1.5e3", "synth_0001", "'plain", "a=b"]  # no formula: written as they are


def _row(slide_id: str) -> dict:
    return {"slide_id": slide_id, "path": f"/slides/{slide_id}.svs", "stil": 12.5, "status": "ok", "threshold": "30"}


def test_results_csv_defuses_formula_slide_ids_and_reads_them_back(tmp_path):
    """A slide file named ``=HYPERLINK(...).svs`` had its id written raw into results.csv, where a
    spreadsheet runs it as a formula (OWASP "CSV injection"). Such a cell now begins with ``'``; the
    next ``score`` (read_previous), ``report --scores`` (read_table) read the id back as it was, and a
    negative-looking id (``-5``) is written as it is."""
    from weakstil.results_table import read_previous, read_table, write_results

    path = tmp_path / "results.csv"
    ids = FORMULAS + KEPT
    write_results(path, {s: _row(s) for s in ids}, [], RESULT_COLUMNS)
    raw = pd.read_csv(path, dtype=str, keep_default_na=False)  # as a spreadsheet or another program sees it
    for cell, slide_id in zip(raw["slide_id"], ids):
        if slide_id in KEPT:
            assert cell == slide_id
        else:
            assert cell == "'" + slide_id, cell  # the spreadsheet shows text, not a formula
    assert set(read_previous(path)) == set(ids)
    assert list(read_table(path)["slide_id"]) == ids
    # a second run's rewrite (rows read back, merged and written) marks each once, not once more per run
    write_results(path, {ids[0]: _row(ids[0])}, [], RESULT_COLUMNS)
    assert list(pd.read_csv(path, dtype=str, keep_default_na=False)["slide_id"]) == list(raw["slide_id"])
    assert list(read_table(path)["slide_id"]) == ids


def test_evaluate_oof_reads_a_defused_results_csv_and_defuses_its_predictions(tmp_path):
    """``evaluate COHORT --oof results.csv`` matched results.csv's ids to the cohort's: a defused id
    (``'=x``) would not have matched ``=x``; predictions.csv writes it defused too, and ``report
    --evaluation`` reads it back."""
    from weakstil.evaluation import evaluate_oof
    from weakstil.report import _evaluated_slides
    from weakstil.results_table import write_results

    ids = ["=A1+1", "-5", "@x", "plain1", "plain2", "+y"]
    rows = {s: {**_row(s), "stil": 10.0 + i, "n_tiles": 50, "n_tumorbed_tiles": 40} for i, s in enumerate(ids)}
    write_results(tmp_path / "results.csv", rows, [], RESULT_COLUMNS)
    cohort = tmp_path / "cohort.csv"
    pd.DataFrame({"slide_id": ids, "path": [f"/slides/{s}.svs" for s in ids],
                  "stil": [11.0 + i for i in range(len(ids))]}).to_csv(cohort, index=False)
    m = evaluate_oof(cohort, tmp_path / "results.csv", tmp_path / "ev")
    assert m["n"] == len(ids)
    written = pd.read_csv(tmp_path / "ev" / "predictions.csv", dtype=str, keep_default_na=False)
    assert sorted(written["slide_id"]) == sorted(["'=A1+1", "-5", "'@x", "plain1", "plain2", "'+y"])
    assert sorted(_evaluated_slides({**m, "mode": "model"}, tmp_path / "ev")["slide_id"]) == sorted(ids)


def test_csv_cells_round_trip():
    from weakstil.csv_cells import defuse, restore

    for text in [*FORMULAS, *KEPT, "''-x", "'", "", "-", "="]:
        assert restore(defuse(text)) == text
        if text not in ("-5", "+1.5e3"):
            assert not str(defuse(text)).startswith(("=", "+", "-", "@", "\t", "\r"))
    assert defuse(-3.5) == -3.5 and defuse("-0.25") == "-0.25"


# ---- 2. the encoder weights' fingerprint: the tensors, not the file --------------------------------------------


def _weights_files(tmp_path):
    """The seeded small-cnn's weights saved as .safetensors and as a .pth with DataParallel's prefix."""
    import torch
    from safetensors.torch import save_file

    from weakstil.encoders.factory import create_encoder

    state = {k: v.contiguous() for k, v in create_encoder("small-cnn", weights="random").model.state_dict().items()}
    st, pth = tmp_path / "w.safetensors", tmp_path / "w.pth"
    save_file(state, str(st))
    torch.save({f"module.{k}": v for k, v in state.items()}, pth)
    return st, pth


def test_same_weights_as_pth_and_safetensors_have_one_fingerprint(tmp_path):
    """The same encoder weights saved as .pth and as .safetensors had two ``weights_sha256`` (the file
    was hashed), so features embedded from one were refused by a model trained on the other's
    ("encoder weights ... but the model's are ..."). The fingerprint is now the tensors' hash; the
    file's stays recorded as ``weights_file_sha256``, and a model from before (recording the file's
    hash) still accepts the encoder made from that file, and only from it."""
    from weakstil.encoders.factory import create_encoder
    from weakstil.mil.identity import check_features_match_model
    from weakstil.runtime import sha256_file
    from weakstil.score import ScoreOptions
    from weakstil.scoring_encoder import check_trained_weights

    st, pth = _weights_files(tmp_path)
    a, b = create_encoder("small-cnn", weights=st), create_encoder("small-cnn", weights=pth)
    assert a.weights_sha256 == b.weights_sha256
    assert (a.weights_file_sha256, b.weights_file_sha256) == (sha256_file(st), sha256_file(pth))
    features_of_pth = {"encoder": "small-cnn", "weights_sha256": b.weights_sha256, "weights_file_sha256":
                       b.weights_file_sha256, "mpp": 0.5, "tile_px": 224}
    model_of_st = {"encoder": {"name": "small-cnn", "weights_sha256": a.weights_sha256,
                               "weights_file_sha256": a.weights_file_sha256}, "tiling": {"mpp": 0.5, "tile_px": 224}}
    check_features_match_model(model_of_st, features_of_pth, tmp_path)  # no error
    opts = ScoreOptions(model=tmp_path, out=tmp_path / "o")
    check_trained_weights("x", {"weights_sha256": b.weights_sha256, "weights_file_sha256": b.weights_file_sha256},
                          model_of_st, opts)
    old_model = {"encoder": {"name": "small-cnn", "weights_sha256": sha256_file(st)}}  # trained before hunt 24
    check_trained_weights("x", {"weights_sha256": a.weights_sha256, "weights_file_sha256": a.weights_file_sha256},
                          old_model, opts)
    with pytest.raises(WeakSTILError, match="trained on"):  # another file: nothing says it holds those weights
        check_trained_weights("x", {"weights_sha256": b.weights_sha256, "weights_file_sha256": b.weights_file_sha256},
                              old_model, opts)



def test_a_model_from_before_bundling_its_weights_accepts_features_of_the_same_tensors_in_a_pth(tmp_path):
    """A model trained before hunt 24 records its bundled weights file's hash. Checking that file
    before a batch (it is the model's own), scoring now also knows its tensors' hash, so features
    embedded from the same weights saved as .pth fit it, and another network's still do not."""
    import shutil

    from weakstil.encoders.factory import create_encoder
    from weakstil.mil.identity import check_features_match_model
    from weakstil.runtime import sha256_file
    from weakstil.score import ScoreOptions
    from weakstil.scoring_encoder import check_encoder_files

    st, pth = _weights_files(tmp_path)
    model = tmp_path / "model"
    (model / "encoder").mkdir(parents=True)
    shutil.copy(Path(__file__).parents[1] / "weakstil" / "encoders" / "cards" / "small-cnn.yaml",
                model / "encoder" / "card.yaml")
    shutil.copy(st, model / "encoder" / "model.safetensors")
    meta = {"encoder": {"name": "small-cnn", "weights_sha256": sha256_file(st)}, "tiling": {"mpp": 0.5, "tile_px": 224}}
    b = create_encoder("small-cnn", weights=pth)
    features = {"encoder": "small-cnn", "weights_sha256": b.weights_sha256, "weights_file_sha256": b.weights_file_sha256,
                "mpp": 0.5, "tile_px": 224}
    with pytest.raises(WeakSTILError, match="encoder weights"):  # the record alone cannot say
        check_features_match_model(meta, features, model)
    check_encoder_files(ScoreOptions(model=model, out=tmp_path / "o"), meta)
    check_features_match_model(meta, features, model)  # the bundled file's tensors: the same
    other = {**features, "weights_sha256": create_encoder("small-cnn", weights="random", seed=1).weights_sha256}
    with pytest.raises(WeakSTILError, match="encoder weights"):
        check_features_match_model(meta, other, model)

def test_a_cohort_of_old_and_new_feature_files_of_one_weights_file_is_one_encoder():
    """A feature folder half embedded before hunt 24 (the file's hash) and half after (the tensors')
    is one encoder for 'train', and the model records both hashes."""
    from weakstil.mil.identity import check_same_identity

    common = {"encoder": "small-cnn", "mpp": 0.5, "tile_px": 224}
    old, new = {**common, "weights_sha256": "f" * 64}, {**common, "weights_sha256": "c" * 64,
                                                         "weights_file_sha256": "f" * 64}
    ident = check_same_identity(["a", "b", "c"], [old, new, old])
    assert (ident["weights_sha256"], ident["weights_file_sha256"]) == ("c" * 64, "f" * 64)
    with pytest.raises(WeakSTILError, match="different encoders"):
        check_same_identity(["a", "b", "c"], [old, {**new, "weights_file_sha256": "e" * 64}, old])


# ---- 3. the feature cache's key: precision and timm's version ---------------------------------------------------


@pytest.fixture(scope="module")
def one_slide(tmp_path_factory):
    from weakstil.synth import generate_cohort

    root = tmp_path_factory.mktemp("one")
    labels = generate_cohort(root / "cohort", 1, seed=5, size_mm=(0.6, 0.6), progress=False)
    return root / "cohort" / labels["path"][0]


def test_feature_cache_key_holds_the_precision_and_an_old_cache_is_reused_when_it_agrees(one_slide, tmp_path,
                                                                                          monkeypatch, caplog):
    """Features embedded at bf16 (a GPU) were reused for an fp32 run (and back): the precision was
    not in the cache key. It is now; a cache made before (format 2, keyed by the weights file's hash)
    is reused when its recorded precision is this run's, and made again, saying why, when not."""
    import h5py

    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import Encoder, create_encoder
    from weakstil.feature_cache import cache_key
    from weakstil.tiles import TilingParams

    st, _ = _weights_files(tmp_path)
    enc = create_encoder("small-cnn", weights=st)
    params = TilingParams()
    out = tmp_path / "f.h5"
    first = embed_slide(one_slide, enc, out, params)
    assert not first.skipped
    with h5py.File(out, "r") as f:
        fp32_key, mpp, fingerprint = f.attrs["cache_key"], float(f.attrs["slide_mpp"]), f.attrs["slide_fingerprint"]
    monkeypatch.setattr(Encoder, "precision", property(lambda self: "bf16"))
    assert cache_key(enc, params, mpp, fingerprint) != fp32_key
    monkeypatch.undo()
    # the cache as WeakSTIL before hunt 24 wrote it: format 2, keyed and fingerprinted by the file's hash
    old_key = cache_key(enc, params, mpp, fingerprint, _legacy=True)
    with h5py.File(out, "a") as f:
        f.attrs.update({"cache_format": 2, "cache_key": old_key, "weights_sha256": enc.weights_file_sha256})
        del f.attrs["weights_file_sha256"]
    assert embed_slide(one_slide, enc, out, params).skipped  # fp32 then, fp32 now: reused
    with h5py.File(out, "a") as f:
        f.attrs["precision"] = "bf16"  # made on a GPU at bf16
    with caplog.at_level("INFO"):
        again = embed_slide(one_slide, enc, out, params)
    assert not again.skipped
    assert "precision: bf16 -> fp32" in caplog.text
    with h5py.File(out, "r") as f:
        assert f.attrs["cache_key"] == fp32_key and f.attrs["weights_sha256"] == enc.weights_sha256


# ---- 4. a slide moved since it was embedded or scored ------------------------------------------------------------

import napari_plugin_fixtures  # noqa: E402  (the plugin's scored synthetic slide, built once per run)

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below


@pytest.fixture
def moved(one_slide, tmp_path):
    """``one_slide`` embedded where it was (``old/``), then moved into ``project/slides/``: (features
    file, the slide's new path)."""
    import shutil

    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder

    old = tmp_path / "old" / one_slide.name
    old.parent.mkdir()
    shutil.copy(one_slide, old)
    features = embed_slide(old, create_encoder("small-cnn", weights="random"), tmp_path / "f" / f"{old.stem}.h5",
                           tile_stats=False).path
    new = tmp_path / "project" / "slides" / one_slide.name
    new.parent.mkdir(parents=True)
    shutil.move(old, new)
    return features, new


def test_the_ink_veto_reads_a_moved_slide_where_it_is_now(moved, tmp_path, caplog):
    """A slide folder moved after embedding keeps its feature cache (the key holds no path), but the
    detector's ink veto read the slide at the path the cache recorded: not there, the veto fell
    away without a warning and the bed changed (a --hard slide with pen: sTIL 14.6 % before the move,
    18.4 % after). Score, evaluate, train and 'tumorbed apply --cohort' now give the slide's path
    where it is, taken when it is the same scan (its fingerprint)."""
    import shutil

    import numpy as np

    from weakstil.files import FeaturesFile
    from weakstil.tumorbed.ink import features_slide, slide_ink_share

    features, new = moved
    f = FeaturesFile.read(features)
    coords, tsl0 = np.asarray(f.coords), float(f.attrs["tile_size_level0"])
    assert slide_ink_share(f.attrs, coords, tsl0) is None  # the recorded path: gone
    assert features_slide(f.attrs, new) == new
    share = slide_ink_share(f.attrs, coords, tsl0, slide_path=new)
    assert share is not None and share.shape == (len(coords),)
    other = tmp_path / "other" / new.name  # another scan under the name: not read as this one
    other.parent.mkdir()
    shutil.copy(new, other)
    with h5py_attrs(features) as attrs:  # the features were made from another scan than the file there
        attrs["slide_fingerprint"] = str(attrs["slide_fingerprint"])[:-6] + "000000"
    with caplog.at_level("WARNING"):
        assert features_slide(FeaturesFile.read(features).attrs, other) is None
    assert "is not the scan its features were made from" in caplog.text


def h5py_attrs(path):
    import h5py

    class _Attrs:
        def __enter__(self):
            self.f = h5py.File(path, "r+")
            return self.f.attrs

        def __exit__(self, *exc):
            self.f.close()
    return _Attrs()


def test_napari_finds_the_slide_of_a_result_moved_with_its_project(scored, tmp_path):
    """A result opened in napari after its project folder moved (slides and scores together) was
    shown without its slide: the plugin looked at the recorded path, beside the result and one
    folder up only. Score now records where the slide was relative to its --out (``slide_relpath``),
    and the plugin looks there too."""
    import shutil

    import h5py

    pytest.importorskip("napari_weakstil")
    from napari_weakstil.result_layers import read_result

    project = tmp_path / "moved_project"  # the fixture's root/cohort/slides/<held> and root/scores/<held>.h5
    slide = project / "cohort" / "slides" / scored["held"].name
    result = project / "scores" / scored["score_h5"].name
    for source, target in ((scored["held"], slide), (scored["score_h5"], result)):
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(source, target)
    with h5py.File(result, "r+") as f:
        assert f.attrs["slide_relpath"] == "../cohort/slides/" + slide.name
        f.attrs["slide_path"] = str(tmp_path / "gone" / slide.name)  # where it was before the move
    assert read_result(result).slide_path == slide


# ---- 5. the napari dock widget -----------------------------------------------------------------------------------


def test_closing_the_dock_while_it_scores_cancels_the_slide(make_napari_viewer, qtbot, scored, tmp_path):
    """The dock widget closed with its close button while a slide scored: the run went on and drew its
    result into the viewer of a panel the pathologist had closed. Closing now cancels it, as Cancel
    does: no result file, no layers, the status says it was cancelled."""
    pytest.importorskip("napari")
    from qtpy.QtWidgets import QApplication

    viewer = make_napari_viewer()
    viewer.open(scored["held"], plugin="napari-weakstil")
    dock, widget = viewer.window.add_plugin_dock_widget("napari-weakstil", "sTIL scoring")
    out = tmp_path / "scores"
    widget.model_edit.value, widget.out_edit.value = scored["model"], out
    widget.weights_edit.setText("random")  # the fixture's encoder: seeded random small-cnn
    widget.score_button.click()
    dock.title.close_button.click()  # the pathologist closes the panel mid-score
    QApplication.processEvents()
    qtbot.waitUntil(widget.score_button.isEnabled, timeout=120_000)
    assert "cancelled" in widget.status_label.text()
    assert not list(out.glob("*.h5"))
    assert not [ly for ly in viewer.layers if ly.metadata.get("weakstil_kind") == "result"]


def test_a_cli_result_scored_with_allow_upsample_ticks_the_box(make_napari_viewer, scored, tmp_path):
    """A result of 'weakstil score --allow-upsample' opened in napari left Allow upsampling off for its
    slide, so Score slide read it otherwise than the CLI (a coarse scan refused). The box now shows
    what the result records (score_request), for the slide opened with it or one open already."""
    pytest.importorskip("napari")
    import json
    import shutil

    import h5py

    path = tmp_path / "scores" / scored["score_h5"].name
    path.parent.mkdir()
    shutil.copy(scored["score_h5"], path)
    with h5py.File(path, "r+") as f:
        f.attrs["score_request"] = json.dumps({**json.loads(f.attrs["score_request"]), "allow_upsample": True})
    viewer = make_napari_viewer()
    widget = napari_plugin_fixtures.dock(viewer)
    viewer.open(path, plugin="napari-weakstil")  # the slide opens beneath it
    assert widget.slide_combo.currentText() == scored["held"].name
    assert widget.upsample_box.isChecked()

    viewer2 = make_napari_viewer()
    widget2 = napari_plugin_fixtures.dock(viewer2)
    viewer2.open(scored["held"], plugin="napari-weakstil")  # the slide first, then its result over it
    assert not widget2.upsample_box.isChecked()
    viewer2.open(path, plugin="napari-weakstil")
    assert widget2.upsample_box.isChecked()
