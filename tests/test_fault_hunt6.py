"""Findings of the sixth outside fault hunt (a pathologist scoring odd slides; a researcher
retraining), each reproduced here first: a number is never reported for a file that was not read,
a path is taken as written, a row's added columns never move to another file, and a report shows
only its own model's evaluation."""

from __future__ import annotations

import json
import shutil
import socket
import unicodedata

import numpy as np
import pandas as pd
import pytest

import test_faults
from conftest import run_cli, write_tiff_slide
from test_faults import World, error_lines

world = test_faults.world  # the fault matrix's cohort and model (a session fixture), shared


@pytest.fixture(autouse=True)
def wide_log_lines(monkeypatch):
    monkeypatch.setenv("COLUMNS", "1000")


def score(w: World, *args) -> object:
    return run_cli("score", *args, "--model", w.model, "--device", "cpu", "--workers", "1")


def test_a_file_that_cannot_be_read_is_never_already_scored(world, tmp_path):
    out = tmp_path / "s"
    assert score(world, world.slide, "--out", out).returncode == 0
    first = pd.read_csv(out / "results.csv")
    for bad in (tmp_path / "typo" / world.slide.name, tmp_path / "empty" / world.slide.name):
        if "empty" in str(bad):
            bad.parent.mkdir()
            bad.write_bytes(b"")
        proc = score(world, bad, "--out", out)
        assert proc.returncode == 1 and "already scored" not in proc.stderr, proc.stderr
        assert len(error_lines(proc.stderr)) == 1 and str(bad) in error_lines(proc.stderr)[0]
        table = pd.read_csv(out / "results.csv")
        kept = table[table["path"] == first["path"].iloc[0]]
        assert kept["stil"].tolist() == first["stil"].tolist()  # the earlier row of the readable slide stays
        failed = table[table["path"] == str(bad)]
        # nothing measured: no tile counts for a file that was never opened
        assert failed["status"].tolist() == ["error"] and failed["n_tiles"].isna().all()


def test_a_path_with_glob_characters_is_taken_as_it_is_and_named_without_extension(tmp_path):
    from weakstil.cli.options import expand_slides
    from weakstil.slide import slide_id_from_path

    (tmp_path / "Batch[2]").mkdir()
    (tmp_path / "Batch2").mkdir()
    for folder in ("Batch[2]", "Batch2"):
        (tmp_path / folder / "P9.svs").write_bytes(folder.encode())
    assert expand_slides([str(tmp_path / "Batch[2]" / "P9.svs")]) == [tmp_path / "Batch[2]" / "P9.svs"]
    assert expand_slides([str(tmp_path / "Batch[2]" / "*.svs")]) == [tmp_path / "Batch2" / "P9.svs"]  # still a glob
    named = tmp_path / "S1 [rescan].svs"
    named.write_bytes(b"x")
    assert slide_id_from_path(named) == "S1 [rescan]"
    assert slide_id_from_path(tmp_path / "*.svs") == "*.svs"  # a pattern that matched nothing says so
    # a slide and a link to it: once, under the slide's own name (outputs are named after it)
    (tmp_path / "PT-123.svs").write_bytes(b"y")
    (tmp_path / "A_latest.svs").symlink_to("PT-123.svs")
    assert expand_slides([str(tmp_path / "[AP]*.svs")]) == [tmp_path / "PT-123.svs"]


def test_an_unreadable_file_never_takes_a_slides_id(world, tmp_path):
    from weakstil.slide_ids import claim_ids

    shutil.copy(world.slide, tmp_path / "S1.tiff")
    (tmp_path / "S1.jpg").write_bytes(b"\xff\xd8 not really")
    (tmp_path / "S2").mkdir()  # an MRXS-like data folder beside its slide
    shutil.copy(world.slide, tmp_path / "S2.tiff")
    todo, refused = claim_ids([tmp_path / "S1.jpg", tmp_path / "S1.tiff", tmp_path / "S2", tmp_path / "S2.tiff"])
    assert todo == [tmp_path / "S1.tiff", tmp_path / "S2.tiff"]
    assert [p for p, _ in refused] == [tmp_path / "S1.jpg", tmp_path / "S2"]
    assert "not a slide file" in refused[0][1].one_line() and "a folder" in refused[1][1].one_line()
    shutil.copy(world.slide, tmp_path / "S3.tiff")
    shutil.copy(world.twin, tmp_path / "S3.svs")  # two real slides: the first listed keeps the id
    todo, refused = claim_ids([tmp_path / "S3.tiff", tmp_path / "S3.svs"])
    assert todo == [tmp_path / "S3.tiff"] and "same slide id" in refused[0][1].one_line()


def test_columns_a_user_added_stay_with_their_file_only(world, tmp_path, caplog):
    out = tmp_path / "s"
    assert score(world, world.slide, "--out", out).returncode == 0
    table = pd.read_csv(out / "results.csv")
    table["signoff"] = "JB: agree"
    table.to_csv(out / "results.csv", index=False)
    # the same file scored again (another threshold): the sign-off stays; the threshold is written as given
    assert score(world, world.slide, "--out", out, "--threshold", "28.44091").returncode == 0
    row = pd.read_csv(out / "results.csv", dtype=str).iloc[0]
    assert row["signoff"] == "JB: agree" and row["threshold"] == "28.44091"
    assert (row["stil_high"] == "True") == (float(row["stil"]) >= 28.44091)  # the call of the number written
    # another scan under the same name replaces the row: the sign-off was about the other file
    proc = score(world, world.twin, "--out", out, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    row = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False).iloc[0]
    assert row["path"] == str(world.twin) and row.get("signoff", "") == ""
    assert "were about another file" in proc.stderr


def test_a_slide_that_is_not_brightfield_gets_no_number(world, tmp_path):
    red = np.zeros((2048, 2048, 3), np.uint8)
    red[..., 0] = 200  # a solid red (or wrongly signed) image: tissue everywhere, nothing like H&E
    slide = write_tiff_slide(tmp_path / "red.tiff", red)
    proc = score(world, slide, "--out", tmp_path / "s")
    assert proc.returncode == 1 and "not scored: mostly dark image" in error_lines(proc.stderr)[0]
    row = pd.read_csv(tmp_path / "s" / "results.csv").iloc[0]
    assert row["status"] == "error" and np.isnan(row["stil"]) and row["qc"] == "stain_outside_training_range"


def test_a_gpu_this_machine_lacks_is_one_usage_line(world, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    proc = run_cli("score", world.slide, world.twin, "--model", world.model, "--device", "cuda", "--out",
                   tmp_path / "s")
    assert proc.returncode == 2 and len(error_lines(proc.stderr)) == 1 and "no CUDA GPU" in proc.stderr
    assert not (tmp_path / "s").exists()


def test_an_annotation_named_in_another_unicode_form_is_found(tmp_path):
    from weakstil.annotations import find_annotation, unmatched_annotations

    nfc, nfd = unicodedata.normalize("NFC", "Pé_01"), unicodedata.normalize("NFD", "Pé_01")
    assert nfc != nfd
    (tmp_path / f"{nfd}.geojson").write_text("{}")
    assert find_annotation(tmp_path, nfc) == tmp_path / f"{nfd}.geojson"
    assert unmatched_annotations(tmp_path, [nfc]) == []


def test_a_report_shows_only_its_own_models_out_of_fold_evaluation(world, tmp_path):
    other = tmp_path / "m20"
    run_cli("train", world.labels, "--features", world.feats, "--out", other, "--folds", "2", "--epochs", "2",
            "--hidden", "8", "--seed", "5", "--threshold", "20", check=True)
    ev = tmp_path / "ev20"
    run_cli("evaluate", world.labels, "--oof", other / "cv" / "oof_predictions.csv", "--out", ev, check=True)
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["threshold"] == 20.0 and metrics["model"] == str(other.resolve())  # the model's threshold
    proc = run_cli("report", "--model", world.model, "--out", tmp_path / "r", "--evaluation", ev)
    assert proc.returncode == 1 and "another model's out-of-fold predictions" in error_lines(proc.stderr)[0]
    assert not (tmp_path / "r").exists()
    proc = run_cli("report", "--model", other, "--out", tmp_path / "r20", "--evaluation", ev)
    assert proc.returncode == 0, proc.stderr
    assert "≥20%" in (tmp_path / "r20" / "report.md").read_text()


def test_an_in_sample_evaluation_says_so_in_its_files(world, tmp_path):
    ev = tmp_path / "ev"
    run_cli("evaluate", world.labels, "--model", world.model, "--features", world.feats, "--out", ev, check=True)
    pred = pd.read_csv(ev / "predictions.csv")
    assert pred["training_slide"].all()  # every slide of the cohort trained the model
    metrics = pd.read_csv(ev / "metrics.csv").set_index("metric")
    assert metrics.loc["n_training_slides", "value"] == len(pred)
    # a training slide whose bed here is empty (its outline on glass) is still a training slide (hunt 8a #10)
    annotations = tmp_path / "annotations"
    shutil.copytree(world.cohort / "truth", annotations)
    glass = {"type": "Feature", "properties": {"objectType": "annotation", "classification": {"name": "Tumor"}},
             "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [40, 0], [40, 40], [0, 40], [0, 0]]]}}
    for outline in annotations.glob("synth_0000*.geojson"):
        outline.write_text(json.dumps({"type": "FeatureCollection", "features": [glass]}))
    run_cli("evaluate", world.labels, "--model", world.model, "--features", world.feats, "--out", tmp_path / "ev2",
            "--annotations", annotations, check=True)
    pred = pd.read_csv(tmp_path / "ev2" / "predictions.csv", dtype={"slide_id": str}).set_index("slide_id")
    assert pred.loc["synth_0000", "status"] != "ok" and pred["training_slide"].all()
    # another cohort's synth_0000 (another scan, the same id, as every synthetic cohort has) is held out (hunt 8b #1)
    run_cli("embed", world.twin, "--out", tmp_path / "twin_feats", "--encoder", "small-cnn", "--weights", "random",
            "--workers", "1", check=True)
    run_cli("evaluate", world.other / "labels.csv", "--model", world.model, "--features", tmp_path / "twin_feats",
            "--out", tmp_path / "ev3", check=True)
    pred = pd.read_csv(tmp_path / "ev3" / "predictions.csv")
    assert list(pred["slide_id"]) == ["synth_0000"] and not pred["training_slide"].any()
    assert json.loads((tmp_path / "ev3" / "metrics.json").read_text())["n_training_slides"] == 0


def test_lookalike_groups_are_warned_about_and_underscored_labels_refused(tmp_path, caplog):
    from weakstil.cohort import read_cohort
    from weakstil.errors import WeakSTILError

    csv = tmp_path / "c.csv"
    csv.write_text("slide_id,path,stil,group\na,a.tiff,10,centre_0\nb,b.tiff,20,Centre_0\nc,c.tiff,30,centre_1\n")
    with caplog.at_level("WARNING"):
        read_cohort(csv, check_files=False)
    assert "'Centre_0' / 'centre_0'" in caplog.text
    csv.write_text("slide_id,path,stil\na,a.tiff,3_0\nb,b.tiff,20\n")
    with pytest.raises(WeakSTILError, match="'3_0' is not a number"):
        read_cohort(csv, check_files=False)


def test_hub_weights_without_network_fail_at_once_and_say_how(monkeypatch):
    from weakstil.encoders.cards import load_card
    from weakstil.encoders.factory import hub_weights_path
    from weakstil.errors import WeakSTILError

    def no_dns(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "getaddrinfo", no_dns)  # no network, and none used by this test
    monkeypatch.setattr("huggingface_hub.try_to_load_from_cache", lambda *a, **k: None)  # not cached here
    with pytest.raises(WeakSTILError, match="cannot be reached .*HF_HUB_OFFLINE=1"):
        hub_weights_path(load_card("kaiko-vits16"))


def test_scoring_a_slide_folder_into_itself_twice_scores_only_the_slides(world, tmp_path):
    folder = tmp_path / "slides"
    folder.mkdir()
    shutil.copy(world.slide, folder / "A.tiff")
    for _ in range(2):  # the second run lists the first one's outputs (A.h5, A.geojson, features/...) too
        proc = score(world, folder / "*", "--out", folder)
        assert proc.returncode == 0 and not error_lines(proc.stderr), proc.stderr
    table = pd.read_csv(folder / "results.csv")
    assert table["slide_id"].tolist() == ["A"] and table["status"].tolist() == ["ok"]


def test_a_feature_cache_made_with_another_tissue_threshold_is_kept(world, tmp_path):
    """`score --features DIR` with a user's `embed --tissue-threshold 0.1` cache: refused and kept, as
    a cache of another tiling is, instead of silently embedding again over the user's features."""
    cache = tmp_path / "feats"
    run_cli("embed", world.slide, "--out", cache, "--encoder", "small-cnn", "--weights", "random", "--workers", "1",
            "--tissue-threshold", "0.1", check=True)
    before = (cache / "synth_0000.h5").read_bytes()
    proc = score(world, world.slide, "--out", tmp_path / "s", "--features", cache, "--weights", "random")
    # (its only cache: the whole-folder refusal, exit 2 before any work, hunt 19a; it was the slide's error row)
    assert proc.returncode == 2 and "another tissue threshold" in error_lines(proc.stderr)[0]
    assert (cache / "synth_0000.h5").read_bytes() == before


def test_small_output_details_of_fault_hunt_6d():
    from weakstil.outputs import _png_text
    from weakstil.slide_backend import ome_mpp_xy

    # an OME-TIFF's pixel size in ångström is read, not taken for "none"
    assert ome_mpp_xy('<OME><Image><Pixels PhysicalSizeX="2500" PhysicalSizeXUnit="Å" PhysicalSizeY="2500" '
                      'PhysicalSizeYUnit="Å"/></Image></OME>') == pytest.approx((0.25, 0.25))
    # a heatmap of a slide without a score records "stil": null (strict JSON), not NaN
    comment = _png_text({"slide_id": "S", "stil": float("nan"), "status": "no tumour bed"})["Comment"]
    assert "NaN" not in comment and json.loads(comment)["stil"] is None


def test_score_features_pointing_at_a_tile_folder_says_what_to_change(world, tmp_path):
    """Fault hunt 7B #4: the fix named 'weakstil embed' to a user who ran score."""
    assert run_cli("tile", world.slide, "--out", tmp_path / "tiles").returncode == 0
    proc = score(world, world.slide, "--features", tmp_path / "tiles", "--out", tmp_path / "s")
    (line,) = error_lines(proc.stderr)
    # refused whole before any work (exit 2, hunt 17), the fix said for --features, not for embed
    assert proc.returncode == 2 and "--features is the tiles folder of 'weakstil tile'" in line
    assert "Fix: pass the --out folder of 'weakstil embed', or leave out --features" in line
    assert "give 'weakstil embed'" not in line and not (tmp_path / "s" / "results.csv").exists()


def test_a_model_whose_bundled_encoder_card_was_edited_is_refused(world, tmp_path):
    """Fault hunt 7A #1: an edited mean in MODEL/encoder/card.yaml scored 2.98 % for 10.41 %, with the
    same model_id and encoder_id, exit 0. The card is checked against the one the model recorded."""
    import yaml

    from weakstil.encoders.cards import load_card
    from weakstil.encoders.factory import create_encoder, save_state_dict

    model = tmp_path / "m"
    shutil.copytree(world.model, model)
    folder = model / "encoder"
    folder.mkdir(exist_ok=True)
    card = load_card("small-cnn").to_dict()  # the world's encoder (seeded random weights), bundled
    card["weights_sha256"] = save_state_dict(create_encoder("small-cnn", weights="random").model.state_dict(),
                                             folder / "model.safetensors")
    (folder / "card.yaml").write_text(yaml.safe_dump({**card, "mean": [0.2, 0.456, 0.406]}))
    proc = score(world, world.slide, "--out", tmp_path / "s")
    assert proc.returncode == 0, proc.stderr  # the world's own model scores
    proc = run_cli("score", world.slide, "--model", model, "--out", tmp_path / "edited", "--device", "cpu")
    (line,) = error_lines(proc.stderr)
    assert proc.returncode == 1 and "card.yaml: says mean [0.2, 0.456, 0.406] (trained with [0.485" in line
    assert "Fix: restore the encoder's card.yaml" in line and not (tmp_path / "edited").exists()
    (folder / "card.yaml").write_text(yaml.safe_dump(card))  # restored: scored as by the model itself
    proc = run_cli("score", world.slide, "--model", model, "--out", tmp_path / "restored", "--device", "cpu")
    assert proc.returncode == 0, proc.stderr
    assert (pd.read_csv(tmp_path / "restored" / "results.csv")["stil"].tolist()
            == pd.read_csv(tmp_path / "s" / "results.csv")["stil"].tolist())


def test_a_bundled_encoder_card_with_an_edited_embed_dim_is_refused_before_any_slide(world, tmp_path):
    """Hunt 41b: MODEL/encoder/card.yaml's embed_dim edited (256 -> 512) was found only when each slide
    built the encoder: one identical error row per slide of a batch, results.csv written. It is the
    model's fault, said once before --out is made, as an edited mean is."""
    import yaml

    from weakstil.encoders.cards import load_card
    from weakstil.encoders.factory import create_encoder, save_state_dict

    model = tmp_path / "m"
    shutil.copytree(world.model, model)
    folder = model / "encoder"
    folder.mkdir(exist_ok=True)
    card = load_card("small-cnn").to_dict()
    card["weights_sha256"] = save_state_dict(create_encoder("small-cnn", weights="random").model.state_dict(),
                                             folder / "model.safetensors")
    (folder / "card.yaml").write_text(yaml.safe_dump({**card, "embed_dim": 2 * card["embed_dim"]}))
    proc = run_cli("score", world.slide, world.cohort / "slides" / "synth_0001.tiff", "--model", model, "--out", tmp_path / "edited",
                   "--device", "cpu", "--workers", "1")
    (line,) = error_lines(proc.stderr)  # one line, not one per slide
    assert proc.returncode == 1 and f"card.yaml: says embed_dim {2 * card['embed_dim']} (trained with" in line
    assert "Fix: restore the encoder's card.yaml" in line and not (tmp_path / "edited").exists()
