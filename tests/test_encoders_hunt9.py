"""Encoder cards and weights: a ViT checkpoint of another geometry is refused (not resampled) while
timm's layout conversions of official checkpoints still load; built-in names beat card-less folders;
--weights files are read by content and refused in one clean line."""

from __future__ import annotations

import re

import pytest
import torch
import yaml

from weakstil.encoders import CardError, create_encoder, load_card
from weakstil.encoders.factory import EncoderError, load_state_dict_strict

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY_VIT = {"embed_dim": 32, "depth": 1, "num_heads": 2, "num_classes": 0}


def tiny_vit(name: str, **over):
    import timm

    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, **{**TINY_VIT, **over})


def vit_card(tmp_path):
    """A ViT-S/16-at-224 card (like kaiko-vits16) scaled down to one 32-d block: fast to build."""
    card = {**load_card("kaiko-vits16").to_dict(), "name": "tiny-vit", "hub_id": None, "embed_dim": 32,
            "model_kwargs": {**TINY_VIT, "dynamic_img_size": True}}
    path = tmp_path / "tiny-vit.yaml"
    path.write_text(yaml.safe_dump(card))
    return path


def save(state, path):
    from safetensors.torch import save_file

    save_file({k: v.detach().contiguous() for k, v in state.items()}, str(path))
    return path


@pytest.mark.parametrize("other, key, checkpoint, model", [
    ("vit_small_patch16_384", "pos_embed", (1, 577, 32), (1, 197, 32)),  # 24x24 position grid
    ("vit_small_patch8_224", "patch_embed.proj.weight", (32, 3, 8, 8), (32, 3, 16, 16)),  # 8 px patches
])
def test_vit_weights_of_another_geometry_are_refused_not_resampled(tmp_path, other, key, checkpoint, model):
    wpath = save(tiny_vit(other).state_dict(), tmp_path / f"{other}.safetensors")
    with pytest.raises(EncoderError) as err:
        create_encoder(vit_card(tmp_path), weights=wpath)
    msg = err.value.one_line()
    assert "shape mismatch" in msg and f"{key}: checkpoint {checkpoint} vs model {model}" in msg
    assert str(wpath) in msg and "Fix: pass the weights made for this encoder card" in msg and "\n" not in msg


def test_vit_weights_of_the_same_geometry_still_load(tmp_path):
    src = tiny_vit("vit_small_patch16_224")
    enc = create_encoder(vit_card(tmp_path), weights=save(src.state_dict(), tmp_path / "same.safetensors"))
    for k, v in src.state_dict().items():
        torch.testing.assert_close(enc.model.state_dict()[k], v)


def test_timm_layout_conversions_of_official_checkpoints_still_load():
    """What the filter is for: DINOv2's layout (mask token, register tokens, class token inside the
    position embedding) and the original Swin layout (CTransPath: downsampling at the end of a stage,
    relative-position buffers saved)."""
    model = tiny_vit("vit_small_patch14_reg4_dinov2", img_size=56)
    own = model.state_dict()
    dinov2 = {k: v for k, v in own.items() if k not in ("cls_token", "reg_token", "pos_embed")}
    dinov2.update(mask_token=torch.zeros(1, 32), register_tokens=own["reg_token"].clone(),
                  cls_token=own["cls_token"] - 0.5,
                  pos_embed=torch.cat([torch.full((1, 1, 32), 0.5), own["pos_embed"]], dim=1))
    fresh = tiny_vit("vit_small_patch14_reg4_dinov2", img_size=56)
    torch.nn.init.zeros_(fresh.pos_embed)
    load_state_dict_strict(fresh, dinov2, what="dinov2", path=None, timm_filter=True)
    for k, v in own.items():
        torch.testing.assert_close(fresh.state_dict()[k], v)
    # the same checkpoint trained at another size (a 5x5 grid for 4x4 here) is refused by its own shape
    big = tiny_vit("vit_small_patch14_reg4_dinov2", img_size=70).state_dict()
    big_dinov2 = {**dinov2, "pos_embed": torch.cat([torch.zeros(1, 1, 32), big["pos_embed"]], dim=1)}
    with pytest.raises(EncoderError, match=re.escape("pos_embed: checkpoint (1, 26, 32) vs model (1, 16, 32)")):
        load_state_dict_strict(fresh, big_dinov2, what="dinov2", path=None, timm_filter=True)

    import timm

    def swin():
        torch.manual_seed(1)
        return timm.create_model("swin_tiny_patch4_window7_224", embed_dim=16, depths=(1, 1, 1, 1),
                                 num_heads=(1, 1, 1, 1), num_classes=0)

    src = swin()
    old = {re.sub(r"layers\.(\d+)\.downsample", lambda m: f"layers.{int(m.group(1)) - 1}.downsample", k): v
           for k, v in src.state_dict().items()}
    old.update({f"{n}.relative_position_index": b for n, m in src.named_modules()
                if (b := getattr(m, "relative_position_index", None)) is not None})
    assert "layers.0.downsample.norm.weight" in old and "layers.0.blocks.0.attn.relative_position_index" in old
    dst = swin()
    for p in dst.parameters():
        p.data.zero_()
    load_state_dict_strict(dst, old, what="swin", path=None, timm_filter=True)
    for k, v in src.state_dict().items():
        torch.testing.assert_close(dst.state_dict()[k], v)


def test_a_folder_without_card_named_like_a_builtin_does_not_hide_it(tmp_path, monkeypatch):
    """`embed -o small-cnn -e small-cnn` leaves a small-cnn/ folder of features in the working
    directory; the rerun must still find the built-in card."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "small-cnn").mkdir()
    (tmp_path / "small-cnn" / "slide.h5").write_bytes(b"")
    card = load_card("small-cnn")
    assert card.name == "small-cnn" and card.path and "weakstil/encoders/cards" in card.path.replace("\\", "/")
    with pytest.raises(CardError, match="directory has no card.yaml"):
        load_card("./small-cnn")  # written as a path: the folder is meant
    with pytest.raises(CardError, match="directory has no card.yaml"):
        load_card(tmp_path / "small-cnn")
    mine = {**load_card("small-cnn").to_dict(), "description": "mine"}
    (tmp_path / "small-cnn" / "card.yaml").write_text(yaml.safe_dump(mine))
    assert load_card("small-cnn").description == "mine"  # a folder with a card is an encoder folder


@pytest.fixture(scope="module")
def small_cnn_state():
    return {k: v.clone() for k, v in create_encoder("small-cnn", weights="random").model.state_dict().items()}


@pytest.mark.parametrize("name", ["weights.pt", "WEIGHTS.SAFETENSORS", "weights.bin"])
def test_safetensors_weights_are_read_by_content_not_by_suffix(tmp_path, small_cnn_state, name):
    enc = create_encoder("small-cnn", weights=save(small_cnn_state, tmp_path / name))
    for k, v in small_cnn_state.items():
        torch.testing.assert_close(enc.model.state_dict()[k], v)
    # and a PyTorch state dict named .safetensors is read as one
    torch.save(small_cnn_state, tmp_path / "torch.safetensors")
    create_encoder("small-cnn", weights=tmp_path / "torch.safetensors")


def test_a_pickled_whole_model_is_refused_in_one_plain_line(tmp_path):
    whole = tmp_path / "model.pt"
    torch.save(create_encoder("small-cnn", weights="random").model, whole)
    with pytest.raises(EncoderError) as err:
        create_encoder("small-cnn", weights=whole)
    msg = err.value.one_line()
    assert "\x1b" not in msg and "\n" not in msg and len(msg) < 300, msg
    assert "not a weights-only PyTorch state dict" in msg and "weakstil.encoders.layers.SmallCNN" in msg
    assert "weights_only" not in msg  # torch's advice to unpickle arbitrary code is not ours to give
