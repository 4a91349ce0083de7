"""Hunt 37i: encoders a researcher brings or makes (an outside tester's hunt).

* A fine-tuned classifier's checkpoint (timm's resnet18 with its ``fc.weight``/``fc.bias``, a ViT's ``head.*``)
  was refused: '2 unexpected key(s) (fc.bias, fc.weight). Fix: pass the weights made for this encoder card',
  though they were made for it: the card builds the network with ``num_classes: 0``. The head alone, when it
  is all that does not match, is now left out (timm's ``pretrained=True, num_classes=0`` does the same), and
  the encoder's tensors are the checkpoint's; any other mismatch is still refused.
* A ViT whose patch does not divide its card's input (vit_tiny_patch16 with ``input_px: 200`` and
  ``model_kwargs: {img_size: 200}``) embedded with exit 0: its strided patch convolution left out the last
  8 px of every tile's 200. With ``dynamic_img_size: true`` it failed, but told to set ``dynamic_img_size:
  true``. Both now refuse before any slide is read, naming the patch and the input sizes that fit.
  ``pretrain`` with such a ViT (``dynamic_img_size``) and a ``--crop-px`` its patch does not divide (72 at 16 px)
  read the slides, then failed with 'unexpected AssertionError ... this is a bug in weakstil'; now exit 2 first.
* ``pretrain`` wrote ``licence: your own weights`` on a run started from weights whose card was no hub card:
  a second run from a ``pretrain -e uni`` folder (UNI's CC-BY-NC-ND terms dropped at the second generation),
  or a card with its own licence given ``--weights FILE``. The written card keeps the terms now.
* ``--encoder resnet18`` (a timm architecture, with ``--weights FILE``) was only "unknown encoder" and the
  list of built-in cards; it now names the card to write, with timm's input size and mean/std for it.
* ``--weights ""`` (an unset shell variable) was '.: is a directory, not a weights file' (exit 1); it is now
  the usage line of every empty path (exit 2).
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import run_cli, write_tiff_slide

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TIMM_CARD = """name: {name}
source: timm
model: {model}
model_kwargs: {kwargs}
input_px: {px}
mpp: 0.5
mean: [0.485, 0.456, 0.406]
std: [0.229, 0.224, 0.225]
embed_dim: {dim}
"""


def _card(path, model="test_resnet", px=64, dim=96, kwargs="{}", name="mine"):
    path.write_text(TIMM_CARD.format(name=name, model=model, kwargs=kwargs, px=px, dim=dim), encoding="utf-8")
    return path


def _slide(tmp_path):
    rgb = np.full((384, 384, 3), 240, np.uint8)
    rgb[32:352, 32:352] = (205, 120, 180)  # a square of pink tissue: a few 64 px tiles
    rgb[32:352:7, 32:352:5] = (80, 40, 120)
    return write_tiff_slide(tmp_path / "square.tiff", rgb, levels=1)


@pytest.mark.parametrize("model", ["test_resnet", "test_vit"])
def test_a_classifier_checkpoint_loads_its_encoder_without_the_head(tmp_path, model):
    import timm
    import torch

    from weakstil.encoders.factory import EncoderError, create_encoder

    torch.manual_seed(3)
    trained = timm.create_model(model, num_classes=7)  # a fine-tuned classifier: fc.* / head.*
    torch.save(trained.state_dict(), tmp_path / "classifier.pth")
    dim, px = trained.num_features, 160 if model == "test_vit" else 64
    card = _card(tmp_path / "c.yaml", model=model, px=px, dim=dim)
    enc = create_encoder(card, weights=tmp_path / "classifier.pth")  # was: 2 unexpected key(s) (fc.bias, ...)
    loaded = enc.model.state_dict()
    assert loaded and all(torch.equal(v, trained.state_dict()[k]) for k, v in loaded.items())
    trained.reset_classifier(0)
    tiles = np.random.default_rng(0).integers(0, 255, (2, px, px, 3), dtype=np.uint8)
    with torch.no_grad():
        expected = trained.eval()(enc.transform(torch.from_numpy(tiles))).numpy()
    assert np.allclose(enc.embed(tiles), expected, atol=1e-5)
    extra = {**torch.load(tmp_path / "classifier.pth", weights_only=True), "proj.weight": torch.zeros(2)}
    torch.save(extra, tmp_path / "more.pth")  # a head and something else: still refused, naming both
    with pytest.raises(EncoderError, match=r"unexpected key\(s\) \(.*proj.weight"):
        create_encoder(card, weights=tmp_path / "more.pth")


@pytest.mark.parametrize("kwargs", ["{img_size: 168, dynamic_img_size: false}", "{dynamic_img_size: true}"])
def test_a_vit_whose_patch_does_not_divide_its_input_is_refused(tmp_path, kwargs):
    card = _card(tmp_path / "vit.yaml", model="test_vit", px=168, dim=64, kwargs=kwargs)
    out = tmp_path / "f"
    r = run_cli("embed", _slide(tmp_path), "-o", out, "-e", card, "--weights", "random", "--tile-size", 64,
                "--threads", 1, "--workers", 1)
    line = r.stderr.strip().splitlines()[-1]
    assert r.returncode == 1, r.stderr  # was exit 0 with img_size 168, its features made from 160 of 168 px
    assert f"{card}: encoder 'mine' (test_vit) cuts its card's 168 px input into 16 px patches" in line
    assert "the last 8 px of every tile would be left out" in line
    assert "set input_px to a multiple of 16 in the card (160 or 176" in line  # not 'dynamic_img_size: true'
    assert not out.exists() or not list(out.glob("*.h5"))
    fixed = _card(tmp_path / "pad.yaml", model="test_vit", px=168, dim=64,
                  kwargs="{dynamic_img_size: true, dynamic_img_pad: true}")
    from weakstil.encoders.factory import create_encoder
    from weakstil.resources import activation_cost

    enc = create_encoder(fixed, weights="random")  # the fix named runs
    assert activation_cost(enc.model, 168, 168, card=enc.card).total_per_px > 0


def test_pretrain_with_a_crop_the_vit_patch_does_not_divide_is_refused_before_any_slide(tmp_path):
    card = _card(tmp_path / "vit.yaml", model="test_vit", px=160, dim=64)  # dynamic_img_size: any whole patches
    r = run_cli("pretrain", _slide(tmp_path), "-o", tmp_path / "p", "-e", card, "--weights", "random", "--steps", 1,
                "--batch-size", 4, "--tiles-per-slide", 4, "--crop-px", 72, "--threads", 1, "--workers", 1)
    assert r.returncode == 2, r.stderr  # was 1 after the slides were read: 'unexpected AssertionError: Input
    assert r.stderr.strip().splitlines()[-1] == (  # height (72) should be divisible ... this is a bug in weakstil'
        "error: encoder 'mine' (test_vit) cuts its input into 16 px patches, which do not divide --crop-px 72. "
        "Fix: pass --crop-px 64 or 80.") and "sampled" not in r.stderr
    assert not (tmp_path / "p").exists()


def test_pretrain_keeps_the_licence_of_the_weights_it_started_from(tmp_path):
    import torch
    import yaml

    from weakstil.encoders.factory import build_model
    from weakstil.encoders.cards import load_card
    from weakstil.pretrain import PretrainConfig, pretrain

    card = _card(tmp_path / "lab.yaml", name="lab-net")
    with card.open("a", encoding="utf-8") as fh:
        fh.write("licence: CC-BY-NC-4.0\n")
    torch.save(build_model(load_card(card)).state_dict(), tmp_path / "lab.pth")
    slide = _slide(tmp_path)
    cfg = dict(steps=1, batch_size=4, tiles_per_slide=4, crop_px=32, stain_norm="none", tile_px=64)
    pretrain([slide], tmp_path / "g1", PretrainConfig(encoder=str(card), init_weights=str(tmp_path / "lab.pth"),
                                                      **cfg), device="cpu")
    first = yaml.safe_load((tmp_path / "g1" / "card.yaml").read_text())["licence"]
    assert first.startswith("CC-BY-NC-4.0 (derived from ")  # was 'your own weights (architecture of lab-net)'
    pretrain([slide], tmp_path / "g2", PretrainConfig(encoder=str(tmp_path / "g1"), init_weights=None, **cfg),
             device="cpu")  # from g1's own weights, as the CLI does
    assert yaml.safe_load((tmp_path / "g2" / "card.yaml").read_text())["licence"] == first  # the second generation
    pretrain([slide], tmp_path / "g3", PretrainConfig(encoder=str(card), init_weights="random", **cfg), device="cpu")
    assert yaml.safe_load((tmp_path / "g3" / "card.yaml").read_text())["licence"].startswith("your own weights")


def test_empty_weights_is_a_usage_error(tmp_path):
    r = run_cli("embed", tmp_path / "x.tiff", "-o", tmp_path / "f", "-e", "small-cnn", "--weights", "")
    assert r.returncode == 2  # was 1: '.: is a directory, not a weights file'
    assert "--weights is empty (an unset shell variable?)" in r.stderr


def test_a_timm_architecture_given_as_the_encoder_is_told_the_card_to_write(tmp_path):
    r = run_cli("embed", tmp_path / "x.tiff", "-o", tmp_path / "f", "-e", "resnet18", "--weights", tmp_path / "w.pth")
    assert r.returncode == 2  # was "unknown encoder 'resnet18'" and the list of built-in cards
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: resnet18: is a timm architecture, not an encoder card. Fix: write a card.yaml ("
                           "name: my-resnet18, source: timm, model: resnet18, input_px: 224, mpp, mean: [0.485, 0.456, ")
    assert line.endswith("and pass --encoder CARD.yaml --weights FILE.") and not (tmp_path / "f").exists()
