"""`weakstil pretrain`: SimCLR on slide tiles, checkpoints and resume, and the result as an encoder."""

from __future__ import annotations

import hashlib
import json
import logging

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import CMU, run_cli
from weakstil.encoders import create_encoder, load_card
from weakstil.encoders.factory import EncoderError
from weakstil.pretrain import PretrainConfig, PretrainError, nt_xent, pretrain

pytestmark = pytest.mark.usefixtures("one_torch_thread")


FAST = dict(batch_size=16, crop_px=64, checkpoint_every=2)


def n_cmu_tiles() -> int:
    from weakstil.slide import Slide
    from weakstil.tiles import TilingParams, find_tiles

    with Slide.open(CMU) as s:
        return len(find_tiles(s, TilingParams()).coords)


def test_pretrain_cli_writes_encoder_resumes_and_embeds(tmp_path, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")  # the CLI trains with torch's default thread count
    out = tmp_path / "ssl-cmu"
    args = ["pretrain", CMU, "--out", out, "--batch-size", "16", "--crop-px", "64", "--device", "cpu", "--seed", "1"]
    proc = run_cli(*args, "--steps", "2")
    assert proc.returncode == 0, proc.stderr
    assert {"model.safetensors", "card.yaml", "checkpoint.safetensors", "checkpoint.json"} <= {
        p.name for p in out.iterdir()}
    card = load_card(out)
    sha = hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()
    assert card.weights_sha256 == sha and card.name == "ssl-cmu" and card.base == "small-cnn"
    t = card.training
    assert t["steps"] == 2 and t["seed"] == 1 and t["slides"] == ["CMU-1-Small-Region"] and t["n_tiles"] == n_cmu_tiles()
    assert t["method"] == "simclr" and t["torch_version"] and t["augment"]["hed_alpha"] > 0
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 2

    # resume: the step count goes on from the checkpoint
    monkeypatch.setenv("COLUMNS", "400")  # unwrapped log: at 80 columns the temp path decided where a phrase broke
    proc = run_cli(*args, "--steps", "4", "--resume")
    assert proc.returncode == 0, proc.stderr
    assert "resuming at step 2" in proc.stderr
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["step"] == 4 and len(state["losses"]) == 4
    card2 = load_card(out)
    assert card2.training["steps"] == 4 and card2.weights_sha256 != sha
    assert card2.weights_sha256 == hashlib.sha256((out / "model.safetensors").read_bytes()).hexdigest()

    # without --resume an existing run is not overwritten
    proc = run_cli(*args, "--steps", "2")
    assert proc.returncode == 1 and "already holds a pretraining run" in proc.stderr and "--resume" in proc.stderr

    # the directory is an encoder
    enc = create_encoder(out)
    # the card records its file's sha256; the encoder's fingerprint is its tensors' (hunt 24), the file's beside it
    assert enc.name == "ssl-cmu" and enc.weights_file_sha256 == card2.weights_sha256 and enc.embed_dim == 256
    cache = tmp_path / "cache"
    proc = run_cli("embed", CMU, "--out", cache, "--encoder", out)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(cache / "CMU-1-Small-Region.h5") as f:
        assert f.attrs["encoder"] == "ssl-cmu" and f.attrs["weights_file_sha256"] == card2.weights_sha256
        assert f.attrs["weights_sha256"] == enc.weights_sha256
        assert json.loads(f.attrs["encoder_card"])["training"]["steps"] == 4
        assert np.isfinite(f["features"][:]).all() and f["features"].shape[1] == 256


def test_resumed_run_equals_an_uninterrupted_one(tmp_path):
    a = pretrain([CMU], tmp_path / "a", PretrainConfig(steps=4, **FAST), device="cpu")
    pretrain([CMU], tmp_path / "b", PretrainConfig(steps=2, **FAST), device="cpu")
    b = pretrain([CMU], tmp_path / "b", PretrainConfig(steps=4, **FAST), device="cpu", resume=True)
    assert b.resumed_from == 2 and a.steps == b.steps == 4
    wa, wb = load_file(str(tmp_path / "a" / "model.safetensors")), load_file(str(tmp_path / "b" / "model.safetensors"))
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=1e-5, atol=1e-6)
    assert a.weights_sha256 == b.weights_sha256 or a.final_loss == pytest.approx(b.final_loss, abs=1e-4)


def test_resume_refuses_another_augmentation_and_writes_nothing(tmp_path, caplog):
    """The augmentation's defaults change between versions; a run resumed with other settings is
    refused (one error naming them), and the checkpoint is left as it was."""
    out = tmp_path / "run"
    pretrain([CMU], out, PretrainConfig(steps=2, **FAST), device="cpu")
    state = json.loads((out / "checkpoint.json").read_text())
    assert state["augment"]["noise_p"] > 0  # what this version augments with is recorded
    before = (out / "checkpoint.safetensors").read_bytes()
    with pytest.raises(PretrainError, match="augmentation differs.*noise_p"):
        pretrain([CMU], out, PretrainConfig(steps=4, augment={"noise_p": 0.0}, **FAST), device="cpu", resume=True)
    assert (out / "checkpoint.safetensors").read_bytes() == before
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 2
    # a checkpoint of an older WeakSTIL (no record): resumed with a warning
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(str(out / "checkpoint.safetensors"), framework="pt") as f:
        meta, tensors = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    old = json.loads(meta["weakstil_pretrain_state"])
    del old["augment"]
    save_file(tensors, str(out / "checkpoint.safetensors"), metadata={**meta, "weakstil_pretrain_state": json.dumps(old)})
    with caplog.at_level(logging.WARNING, logger="weakstil.pretrain"):
        r = pretrain([CMU], out, PretrainConfig(steps=4, **FAST), device="cpu", resume=True)
    assert r.steps == 4 and "does not record its augmentation" in caplog.text


def test_pretraining_learns_to_match_views(tmp_path):
    """After 40 steps the NT-Xent loss on a fixed set of augmented views is clearly lower than at init."""
    from weakstil.encoders.factory import build_model
    from weakstil.encoders.transforms import SSLAugment
    from weakstil.pretrain import build_ssl_model, read_checkpoint, sample_tiles

    # 96 px tiles and 96 px views: the two views of a tile overlap, so learning shows within seconds
    cfg = dict(batch_size=16, crop_px=96, tile_px=96, tiles_per_slide=64, lr=3e-3, seed=0)
    pretrain([CMU], tmp_path / "init", PretrainConfig(steps=0, **cfg), device="cpu")
    r = pretrain([CMU], tmp_path / "trained", PretrainConfig(steps=40, **cfg), device="cpu")
    losses = json.loads((tmp_path / "trained" / "checkpoint.json").read_text())["losses"]
    assert len(losses) == 40 and np.isfinite(losses).all() and r.final_loss == losses[-1]

    card = load_card("small-cnn")
    tiles, _ = sample_tiles([CMU], card, PretrainConfig(**cfg), slide_mpp=None, allow_upsample=False)
    g = torch.Generator().manual_seed(123)
    aug = SSLAugment(96, card.mean, card.std)
    x = torch.from_numpy(tiles)
    views = torch.cat([aug(x, g), aug(x, g)])
    n = len(x)
    fixed = {}
    for name in ("init", "trained"):
        _, tensors = read_checkpoint(tmp_path / name)
        model = build_ssl_model(build_model(card), 256, 512, 128)
        model.load_state_dict({k[len("model."):]: v for k, v in tensors.items() if k.startswith("model.")})
        with torch.no_grad():
            z = model.train()(views)  # batch statistics in both, as during training
        fixed[name] = nt_xent(z[:n], z[n:], 0.2).item()
    # chance is log(2n - 1) = 4.84 for n = 64
    assert fixed["init"] > 4.0 and fixed["trained"] < fixed["init"] - 0.3, fixed


def test_pretrain_refusals(tmp_path):
    with pytest.raises(PretrainError, match="nothing to resume"):
        pretrain([CMU], tmp_path / "x", PretrainConfig(steps=1, **FAST), device="cpu", resume=True)
    with pytest.raises(PretrainError, match="--steps or --epochs, not both"):
        pretrain([CMU], tmp_path / "y", PretrainConfig(steps=1, epochs=1, **FAST), device="cpu")
    with pytest.raises(PretrainError, match="no tiles to train on"):
        pretrain([tmp_path / "missing.svs"], tmp_path / "z", PretrainConfig(steps=1, **FAST), device="cpu",
                 on_slide_error=lambda path, exc: None)
    out = tmp_path / "run"
    pretrain([CMU], out, PretrainConfig(steps=1, **FAST), device="cpu")
    with pytest.raises(PretrainError, match="batch_size 16 -> 8"):
        pretrain([CMU], out, PretrainConfig(steps=2, **{**FAST, "batch_size": 8}), device="cpu", resume=True)
    # a modified weights file no longer matches its card
    data = bytearray((out / "model.safetensors").read_bytes())
    data[-1] ^= 0xFF
    (out / "model.safetensors").write_bytes(bytes(data))
    with pytest.raises(EncoderError, match="does not match its card"):
        create_encoder(out)


def test_nt_xent_prefers_matching_views():
    g = torch.Generator().manual_seed(0)
    z1 = torch.randn(32, 16, generator=g)
    same = nt_xent(z1, z1 + 0.01 * torch.randn(32, 16, generator=g), 0.2)
    other = nt_xent(z1, torch.randn(32, 16, generator=g), 0.2)
    assert same < 1.0 < np.log(63) - 0.5 < other
