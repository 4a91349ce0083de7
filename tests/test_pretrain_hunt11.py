"""`weakstil pretrain` / `embed` findings of hunt 11A: an encoder folder's weights checked as embed
checks them, --epochs with fewer tiles than a batch, resume only on the run's own inputs, the
card's µm/px by default, the settings that change the weights in the card, and the magnification
the encoder sees through --tile-size."""

from __future__ import annotations

import json
import logging
import shutil

import pytest
from safetensors import safe_open
from safetensors.torch import save_file

from conftest import CMU, run_cli
from weakstil.encoders import load_card
from weakstil.encoders.factory import EncoderError
from weakstil.pretrain import PretrainConfig, PretrainError, pretrain

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = ["--steps", "1", "--batch-size", "4", "--tiles-per-slide", "8", "--crop-px", "32", "--stain-norm", "none",
        "--device", "cpu"]
TINY_CFG = dict(batch_size=4, tiles_per_slide=8, crop_px=32, stain_norm="none")


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    """One tiny CLI pretrain at 1 µm/px with settings the card must record."""
    out = tmp_path_factory.mktemp("h11") / "base"
    proc = run_cli("pretrain", CMU, "-o", out, *TINY, "--mpp", "1.0", "--tissue-threshold", "0.6",
                   "--slide-mpp", "0.5", "--threads", "1")
    assert proc.returncode == 0, proc.stderr
    return out


def test_card_records_the_settings_that_change_the_weights(base_run):
    t = load_card(base_run).training
    assert t["tissue_threshold"] == 0.6 and t["slide_mpp"] == 0.5 and t["allow_upsample"] is False
    assert t["torch_threads"] == 1
    state = json.loads((base_run / "checkpoint.json").read_text())
    assert state["torch_threads"] == 1 and state["slide_mpp"] == 0.5 and state["config"]["tissue_threshold"] == 0.6
    assert list(state["slide_fingerprints"]) == ["CMU-1-Small-Region"]


def test_pretrain_from_a_folder_goes_on_at_its_mpp(base_run, tmp_path):
    out = tmp_path / "next"
    proc = run_cli("pretrain", CMU, "-o", out, "-e", base_run, *TINY)
    assert proc.returncode == 0, proc.stderr
    card = load_card(out)
    assert card.mpp == 1.0 and card.training["tile_mpp"] == 1.0 and card.training["tile_px"] == 224
    assert card.training["init"] == str((base_run / "model.safetensors").resolve())
    helptext = " ".join(run_cli("pretrain", "--help").stdout.replace("│", " ").split())
    assert "default: the --encoder card's" in helptext


def test_pretrain_from_a_folder_refuses_missing_or_other_weights(base_run, tmp_path, monkeypatch):
    missing = tmp_path / "missing"
    shutil.copytree(base_run, missing)
    (missing / "model.safetensors").unlink()
    proc = run_cli("pretrain", CMU, "-o", tmp_path / "n1", "-e", missing, *TINY)
    assert proc.returncode != 0 and "model.safetensors is missing beside card.yaml" in proc.stderr
    assert not (tmp_path / "n1").exists()

    swapped = tmp_path / "swapped"  # given as a relative path, as a user in its parent folder would
    shutil.copytree(base_run, swapped)
    data = bytearray((swapped / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (swapped / "model.safetensors").write_bytes(bytes(data))
    monkeypatch.chdir(tmp_path)
    proc = run_cli("pretrain", CMU, "-o", "n2", "-e", "swapped", *TINY)
    assert proc.returncode != 0 and "does not match its card" in proc.stderr
    assert not (tmp_path / "n2").exists()
    # the library check itself: the folder's own file given as an absolute path is still its own
    from weakstil.encoders.factory import load_model

    with pytest.raises(EncoderError, match="does not match its card"):
        load_model(load_card("swapped"), str((swapped / "model.safetensors").resolve()))


def test_renamed_weights_are_told_to_be_renamed_back(base_run, tmp_path):
    """Hunt 34j: a folder whose model.safetensors was renamed (weights.safetensors) was told to "copy the
    whole folder"; with one other .safetensors beside card.yaml the fix names the rename back."""
    from weakstil.encoders.factory import _weights_missing

    renamed = tmp_path / "renamed"
    shutil.copytree(base_run, renamed)
    (renamed / "model.safetensors").rename(renamed / "weights.safetensors")
    err = _weights_missing(load_card(renamed), renamed)
    assert err.fix == "rename weights.safetensors back to model.safetensors", err.fix
    (renamed / "weights.safetensors").unlink()
    assert "copy the whole folder" in _weights_missing(load_card(renamed), renamed).fix


def test_epochs_count_the_batches_trained_on(tmp_path):
    """8 tiles, --batch-size 64: batches of 8, so 3 epochs are 3 steps (not ceil(3 * 8 / 64) = 1)."""
    assert PretrainConfig(epochs=3, batch_size=64).total_steps(8) == 3
    r = pretrain([CMU], tmp_path / "ep", PretrainConfig(epochs=3, **{**TINY_CFG, "batch_size": 64}), device="cpu")
    assert r.steps == 3 and r.card.training["epochs_seen"] == 3.0


def test_resume_only_on_the_runs_own_inputs(tmp_path, caplog):
    out = tmp_path / "run"
    # the CLI before 11A #5 recorded --mpp 0.5 / --tile-size 224; now it leaves them to the card: the same run
    pretrain([CMU], out, PretrainConfig(steps=1, mpp=0.5, tile_px=224, **TINY_CFG), device="cpu")
    other = tmp_path / "other" / CMU.name  # another file under the slide's name (here: bytes appended)
    other.parent.mkdir()
    other.write_bytes(CMU.read_bytes() + b"\0" * 4096)
    cfg = PretrainConfig(steps=2, **TINY_CFG)
    before = (out / "checkpoint.safetensors").read_bytes()
    with pytest.raises(PretrainError, match="not the ones the checkpoint was trained on.*CMU-1-Small-Region"):
        pretrain([other], out, cfg, device="cpu", resume=True)
    with pytest.raises(PretrainError, match="read otherwise.*slide_mpp None -> 0.3"):
        pretrain([CMU], out, cfg, device="cpu", resume=True, slide_mpp=0.3)
    with pytest.raises(PretrainError, match="read otherwise.*allow_upsample False -> True"):
        pretrain([CMU], out, cfg, device="cpu", resume=True, allow_upsample=True)
    assert (out / "checkpoint.safetensors").read_bytes() == before

    # a checkpoint written before these were recorded resumes as before
    with safe_open(str(out / "checkpoint.safetensors"), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    old = json.loads(meta["weakstil_pretrain_state"])
    for key in ("slide_fingerprints", "slide_mpp", "allow_upsample", "torch_threads"):
        del old[key]
    save_file(tensors, str(out / "checkpoint.safetensors"), metadata={**meta, "weakstil_pretrain_state": json.dumps(old)})
    assert pretrain([other], out, cfg, device="cpu", resume=True).steps == 2


def test_embed_warns_when_tile_size_changes_the_magnification(caplog):
    from weakstil.embed import _check_resolution
    from weakstil.encoders import create_encoder
    from weakstil.slide import Slide
    from weakstil.tiles import TilingParams

    enc = create_encoder("small-cnn", weights="random")  # trained at 0.5 µm/px, 224 px input
    with Slide.open(CMU) as slide, caplog.at_level(logging.INFO, logger="weakstil.embed"):
        _check_resolution(enc, TilingParams(mpp=0.5, tile_px=448), slide)
        assert [r.levelname for r in caplog.records] == ["WARNING"]
        assert "sees tiles at 1 µm/px (448 px tiles at 0.5 µm/px resized to its 224 px input)" in caplog.text
        caplog.clear()
        _check_resolution(enc, TilingParams(mpp=0.25, tile_px=448), slide)  # the same field of view at 0.5
        assert [r.levelname for r in caplog.records] == ["INFO"] and "resized" in caplog.text
        caplog.clear()
        _check_resolution(enc, TilingParams(mpp=1.0, tile_px=224), slide)
        assert [r.levelname for r in caplog.records] == ["WARNING"] and "trained at 0.5 µm/px" in caplog.text
