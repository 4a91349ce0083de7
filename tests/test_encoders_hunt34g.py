"""Hunt 34g: an encoder card's normalisation, and a pretraining run resumed with its card edited.

* A card whose ``mean``/``std`` are on the 0-255 scale (mmcv's ``[123.675, 116.28, 103.53]`` /
  ``[58.395, 57.12, 57.375]``, a common copy) was accepted: tiles are scaled to [0, 1] first, so every tile
  became nearly the same input (about -2.1 everywhere) and ``embed`` wrote noise features with exit 0
  (resnet10t, 20 tiles). Now the card is refused, naming the values and the fix (divide them by 255).
* ``pretrain --resume -e CARD.yaml`` after the card file was edited: another ``mean`` went on silently
  (exit 0; half the run normalised one way, half the other, and the written card said only the new one);
  other ``model_kwargs`` failed after the slides were read, as ``checkpoint.safetensors: weights do not
  match ... Fix: pass the weights made for this encoder card``. The checkpoint now records the base card's
  fields that decide the training, and a resume with others is refused before any slide is read, naming
  the card and each changed field (an edited description is no change).
"""

from __future__ import annotations

import json

import pytest

import numpy as np

from conftest import write_tiff_slide
from weakstil.encoders.cards import CardError, load_card
from weakstil.pretrain import PretrainConfig, PretrainError, pretrain

pytestmark = pytest.mark.usefixtures("one_torch_thread")

CARD = """name: mycnn
source: weakstil
model: small_cnn
model_kwargs: {{widths: [8, 16, 16, 32]}}
input_px: 64
mpp: 0.5
mean: {mean}
std: {std}
embed_dim: 32
description: {words}
"""


def write_card(path, mean="[0.485, 0.456, 0.406]", std="[0.229, 0.224, 0.225]", words="a card", **edits):
    text = CARD.format(mean=mean, std=std, words=words)
    for old, new in edits.items():
        text = text.replace(old, new)
    path.write_text(text, encoding="utf-8")
    return path


def test_a_card_on_the_0_255_scale_is_refused_with_the_fix(tmp_path):
    path = write_card(tmp_path / "c.yaml", mean="[123.675, 116.28, 103.53]", std="[58.395, 57.12, 57.375]")
    with pytest.raises(CardError) as err:
        load_card(path)
    message = str(err.value)
    assert str(path) in message and "not on the [0, 1] scale" in message
    assert "divide them by 255: mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]" in message
    with pytest.raises(CardError, match="give mean in 0-1"):  # a negative mean is no scale slip
        load_card(write_card(tmp_path / "d.yaml", mean="[-0.5, 0.5, 0.5]"))
    assert load_card(write_card(tmp_path / "e.yaml", mean="[1, 0, 0.5]", std="[1, 1, 1]")).std == (1.0, 1.0, 1.0)


def test_resume_with_the_card_edited_is_refused_before_any_slide_is_read(tmp_path, monkeypatch):
    rgb = np.full((384, 384, 3), 240, np.uint8)
    rgb[32:352, 32:352] = (205, 120, 180)  # a square of pink tissue: a few 64 px tiles
    rgb[32:352:7, 32:352:5] = (80, 40, 120)
    slide = write_tiff_slide(tmp_path / "square.tiff", rgb, levels=1)
    card = write_card(tmp_path / "mycnn.yaml")
    out = tmp_path / "run"
    cfg = PretrainConfig(encoder=str(card), steps=1, batch_size=8, tiles_per_slide=8, crop_px=32, stain_norm="none",
                         tile_px=64)
    pretrain([slide], out, cfg, device="cpu")
    before = (out / "checkpoint.safetensors").read_bytes()

    import weakstil.pretrain as pretrain_module

    def no_reading(*args, **kwargs):
        raise AssertionError("the slides were read before the card was checked")

    monkeypatch.setattr(pretrain_module, "sample_tiles", no_reading)
    resumed = PretrainConfig(**{**cfg.__dict__, "steps": 2})
    write_card(card, mean="[0.5, 0.5, 0.5]")
    with pytest.raises(PretrainError) as err:
        pretrain([slide], out, resumed, device="cpu", resume=True)
    assert f"the encoder card {card} is not the one the checkpoint was trained with: mean [0.485, 0.456, 0.406] " \
           "-> [0.5, 0.5, 0.5]" in str(err.value) and "resume with the card as it was (mean)" in str(err.value)
    write_card(card, **{"[8, 16, 16, 32]": "[8, 16, 32, 32]"})
    with pytest.raises(PretrainError, match=r"model_kwargs \{'widths': \[8, 16, 16, 32\]\} -> \{'widths': \[8, 16, 32, "):
        pretrain([slide], out, resumed, device="cpu", resume=True)
    assert (out / "checkpoint.safetensors").read_bytes() == before
    assert json.loads((out / "checkpoint.json").read_text())["step"] == 1
    monkeypatch.undo()
    write_card(card, words="the same card, other words")  # words are no change: the run goes on
    assert pretrain([slide], out, resumed, device="cpu", resume=True).steps == 2


def test_a_lightning_checkpoint_is_refused_with_the_line_that_saves_its_weights(tmp_path, monkeypatch):
    """A Lightning checkpoint ('state_dict' with the LightningModule's 'model.' prefix, beside 'epoch',
    'optimizer_states'...) was refused with 'save model.state_dict(), not ... a training checkpoint',
    though the weights were in the file. The fix now is the line that saves them alone; run as given,
    it makes weights that load strictly."""
    import torch

    from weakstil.encoders.factory import EncoderError, build_model, create_encoder

    state = build_model(load_card("small-cnn")).state_dict()
    monkeypatch.chdir(tmp_path)
    torch.save({"epoch": 3, "global_step": 120, "state_dict": {f"model.{k}": v for k, v in state.items()},
                "optimizer_states": [], "lr_schedulers": [], "callbacks": {}}, "last.ckpt")
    with pytest.raises(EncoderError) as err:
        create_encoder("small-cnn", weights="last.ckpt")
    fix = str(err.value).split("Fix: ", 1)[1]
    assert fix.startswith("its weights are under 'state_dict' with the prefix 'model.': save them alone, ")
    code = fix.split("save them alone, ", 1)[1].split(", and pass --weights encoder.pth")[0]
    exec(code.replace("; ", "\n"), {"torch": torch})  # the user's two statements, as given
    loaded = create_encoder("small-cnn", weights="encoder.pth").model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
