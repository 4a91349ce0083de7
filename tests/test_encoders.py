"""Encoder cards, the factory (weights from files, the HF cache, strict loading) and transforms."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import torch
import yaml

from weakstil.encoders import CardError, EncoderCard, builtin_card_names, create_encoder, list_cards, load_card
from weakstil.encoders.factory import EncoderError, build_model, expected_embed_dim, sha256_file
from weakstil.weights_id import sha256_tensors

pytestmark = pytest.mark.usefixtures("one_torch_thread")


EXPECTED_CARDS = {"small-cnn", "lunit-dino-vits16", "lunit-swav-resnet50", "ctranspath", "kaiko-vits16",
                  "h-optimus-0", "uni", "uni2-h", "virchow"}


def small_card(**over) -> dict:
    d = load_card("small-cnn").to_dict()
    d.update(over)
    return d


def write_card(path, data: dict):
    path.write_text(yaml.safe_dump(data))
    return path


# -- cards ------------------------------------------------------------------------------
def test_builtin_cards_are_complete_and_valid():
    assert EXPECTED_CARDS <= set(builtin_card_names())
    cards = {c.name: c for c in list_cards()}
    for c in cards.values():
        assert c.precision in ("fp32", "bf16", "fp16") and len(c.mean) == 3 and min(c.std) > 0
        assert c.licence and c.licence != "unknown"
        assert c.hub_id is None or c.hub_id.startswith("hf-hub:")
    assert cards["small-cnn"].hub_id is None and 256 <= cards["small-cnn"].embed_dim <= 512
    for gated in ("uni", "uni2-h", "virchow"):
        assert cards[gated].gated
    assert cards["virchow"].pooling == "cls_mean_patch" and cards["virchow"].embed_dim == 2560
    assert cards["h-optimus-0"].mean == pytest.approx((0.707223, 0.578729, 0.703617))
    assert cards["uni2-h"].model_kwargs["reg_tokens"] == 8
    # a card survives a round trip through YAML
    c = cards["uni2-h"]
    assert EncoderCard.from_dict(yaml.safe_load(c.to_yaml())) == c


@pytest.mark.parametrize("name", sorted(EXPECTED_CARDS))
def test_every_card_builds_its_architecture_with_the_declared_embedding(name):
    """Shapes only (meta device: no memory, no weights), so even the 1.1 B-parameter cards are cheap."""
    from weakstil.encoders.factory import Encoder

    card = load_card(name)
    with torch.device("meta"):
        model = build_model(card).eval()
    assert expected_embed_dim(card, model) == card.embed_dim
    enc = Encoder(card=card, model=model, device=torch.device("meta"), weights_sha256="", weights_source="",
                  transform=None)
    with torch.inference_mode():
        out = enc.forward(torch.empty(2, 3, card.input_px, card.input_px, device="meta"))
    assert tuple(out.shape) == (2, card.embed_dim)


@pytest.mark.parametrize("change, message", [
    ({"precision": "fp8"}, "precision"),
    ({"embed_dim": 0}, "embed_dim"),
    ({"std": [0.2, 0.2]}, "std"),
    ({"std": [0.2, 0.0, 0.2]}, "positive"),
    ({"hub_id": "MahmoodLab/uni"}, "hf-hub"),
    ({"weights_sha256": "abc"}, "weights_sha256"),
    ({"colour": "pink"}, "unknown card field"),
    ({"name": "has space"}, "name"),
    ({"pooling": "max"}, "pooling"),
    ({"mpp": 50}, "mpp"),
])
def test_invalid_cards_are_refused_with_the_field_named(tmp_path, change, message):
    path = write_card(tmp_path / "card.yaml", small_card(**change))
    with pytest.raises(CardError) as err:
        load_card(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_card_missing_field_unknown_name_and_bad_yaml(tmp_path):
    data = small_card()
    del data["embed_dim"]
    with pytest.raises(CardError, match="missing required field 'embed_dim'"):
        load_card(write_card(tmp_path / "a.yaml", data))
    with pytest.raises(CardError, match="unknown encoder 'resnet9000'.*small-cnn"):
        load_card("resnet9000")
    (tmp_path / "b.yaml").write_text("name: [unclosed\n")
    with pytest.raises(CardError, match="not valid YAML"):
        load_card(tmp_path / "b.yaml")
    with pytest.raises(CardError, match="no card.yaml"):
        load_card(tmp_path)


def test_card_layer_references_are_allow_listed(tmp_path):
    path = write_card(tmp_path / "card.yaml", {
        **small_card(name="evil"), "source": "timm", "model": "resnet18", "embed_dim": 512,
        "model_kwargs": {"act_layer": "@os.system"}})
    with pytest.raises(EncoderError, match="unknown layer '@os.system'"):
        create_encoder(path, weights="random")


# -- weights ----------------------------------------------------------------------------
def reference_embedding(model: torch.nn.Module, card: EncoderCard, tiles: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float() / 255
    x = (x - torch.tensor(card.mean).view(1, 3, 1, 1)) / torch.tensor(card.std).view(1, 3, 1, 1)
    with torch.inference_mode():
        return model.eval()(x).numpy()


@pytest.fixture
def tiles() -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (3, 224, 224, 3), dtype=np.uint8)


def test_small_cnn_from_safetensors_weights(tmp_path, tiles):
    from safetensors.torch import save_file

    card = load_card("small-cnn")
    torch.manual_seed(123)
    src = build_model(card)
    for p in src.parameters():  # make every weight count, BN included
        p.data.normal_(0, 0.05)
    path = tmp_path / "w.safetensors"
    save_file(src.state_dict(), str(path))
    enc = create_encoder("small-cnn", weights=path)
    # the fingerprint is the tensors' (hunt 24: one for .pth and .safetensors); the file's is recorded beside it
    assert enc.weights_file_sha256 == hashlib.sha256(path.read_bytes()).hexdigest() == sha256_file(path)
    assert enc.weights_sha256 == sha256_tensors(src.state_dict()) != enc.weights_file_sha256
    assert enc.embed_dim == 256 and enc.precision == "fp32" and enc.weights_source == str(path.resolve())
    feats = enc.embed(tiles)
    assert feats.shape == (3, 256) and feats.dtype == np.float32
    np.testing.assert_allclose(feats, reference_embedding(src, card, tiles), rtol=1e-4, atol=1e-5)
    # random init is seeded and differs from the loaded weights
    r0, r0b, r1 = (create_encoder("small-cnn", weights="random", seed=s) for s in (0, 0, 1))
    assert r0.weights_sha256 == r0b.weights_sha256 != r1.weights_sha256
    assert not np.allclose(r0.embed(tiles), feats)


def test_timm_card_from_weights_only_torch_state_dict(tmp_path, tiles):
    import timm

    path_card = write_card(tmp_path / "r18.yaml", {
        **small_card(name="r18", description="timm resnet18"), "source": "timm", "model": "resnet18",
        "model_kwargs": {}, "embed_dim": 512})
    torch.manual_seed(7)
    src = timm.create_model("resnet18", pretrained=False, num_classes=0)
    wpath = tmp_path / "r18.pth"
    torch.save({"state_dict": src.state_dict()}, wpath)  # a common wrapping, unwrapped on load
    enc = create_encoder(path_card, weights=wpath)
    np.testing.assert_allclose(enc.embed(tiles), reference_embedding(src, enc.card, tiles), rtol=1e-4, atol=1e-5)


def test_mismatched_checkpoints_fail_loudly(tmp_path):
    import timm
    from safetensors.torch import save_file

    other = tmp_path / "resnet18.safetensors"
    save_file(timm.create_model("resnet18", num_classes=0).state_dict(), str(other))
    with pytest.raises(EncoderError) as err:
        create_encoder("small-cnn", weights=other)
    msg = str(err.value)
    assert "weights do not match encoder 'small-cnn'" in msg and "missing key" in msg and "unexpected key" in msg
    assert str(other) in msg and "\n" not in msg

    state = build_model(load_card("small-cnn")).state_dict()
    extra = tmp_path / "extra.safetensors"
    save_file({**state, "head.weight": torch.zeros(2, 256)}, str(extra))
    with pytest.raises(EncoderError, match=r"1 unexpected key\(s\) \(head.weight\)"):
        create_encoder("small-cnn", weights=extra)

    missing = tmp_path / "missing.safetensors"
    save_file({k: v for k, v in state.items() if not k.startswith("stem.")}, str(missing))
    with pytest.raises(EncoderError, match=r"missing key\(s\) \(stem.0.weight"):
        create_encoder("small-cnn", weights=missing)

    wide = tmp_path / "wide.safetensors"
    from weakstil.encoders.layers import SmallCNN

    save_file(SmallCNN(widths=(48, 64, 128, 256)).state_dict(), str(wide))
    with pytest.raises(EncoderError, match="shape mismatch"):
        create_encoder("small-cnn", weights=wide)


def test_untrusted_pickles_and_junk_are_refused(tmp_path):
    whole = tmp_path / "model.pt"
    torch.save(build_model(load_card("small-cnn")), whole)  # a pickled module, not a state dict
    with pytest.raises(EncoderError, match="not a weights-only PyTorch state dict"):
        create_encoder("small-cnn", weights=whole)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 100)
    with pytest.raises(EncoderError, match="not a readable safetensors file"):
        create_encoder("small-cnn", weights=junk)
    with pytest.raises(EncoderError, match="weights file not found"):
        create_encoder("small-cnn", weights=tmp_path / "nope.safetensors")
    with pytest.raises(EncoderError, match="no published weights.*--weights"):
        create_encoder("small-cnn")


def test_hub_card_offline_and_not_cached_gives_one_clear_line(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(EncoderError) as err:
        create_encoder("uni")
    msg = err.value.one_line()
    assert "encoder 'uni'" in msg and "hf-hub:MahmoodLab/uni" in msg and "HF_HUB_OFFLINE=1" in msg
    assert "--weights" in msg and "hf auth login" in msg and "\n" not in msg  # gated: says to log in
    with pytest.raises(EncoderError) as err:
        create_encoder("lunit-swav-resnet50")
    assert "hf auth login" not in str(err.value)  # not gated


def test_hub_card_loads_from_the_local_hf_cache(tmp_path, monkeypatch, tiles):
    """A hub card finds its weights in the Hugging Face cache layout, offline, and loads them strictly."""
    import huggingface_hub.constants
    import timm
    from safetensors.torch import save_file

    cache = tmp_path / "hub"
    snap = cache / "models--1aurent--vit_small_patch16_224.kaiko_ai_towards_large_pathology_fms" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap.parents[1] / "refs").mkdir()
    (snap.parents[1] / "refs" / "main").write_text("abc123")
    torch.manual_seed(3)
    src = timm.create_model("vit_small_patch16_224", num_classes=0, dynamic_img_size=True)
    save_file(src.state_dict(), str(snap / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    enc = create_encoder("kaiko-vits16")
    assert enc.weights_file_sha256 == sha256_file(snap / "model.safetensors")
    assert "hf-hub:1aurent/" in enc.weights_source
    np.testing.assert_allclose(enc.embed(tiles[:2]), reference_embedding(src, enc.card, tiles[:2]),
                               rtol=1e-4, atol=1e-4)


# -- transforms -------------------------------------------------------------------------
def test_tile_transform_normalises_and_resizes():
    from weakstil.encoders.transforms import TileTransform

    t = TileTransform(224, (0.5, 0.25, 0.0), (0.5, 0.25, 1.0))
    x = np.zeros((2, 224, 224, 3), np.uint8)
    x[..., 0], x[..., 1], x[..., 2] = 255, 0, 51
    y = t(x)
    assert y.shape == (2, 3, 224, 224) and y.dtype == torch.float32
    assert y.is_contiguous(memory_format=torch.channels_last)
    assert torch.allclose(y[:, 0], torch.tensor(1.0)) and torch.allclose(y[:, 1], torch.tensor(-1.0))
    assert torch.allclose(y[:, 2], torch.tensor(0.2), atol=1e-6)
    big = t(np.full((1, 256, 256, 3), 255, np.uint8))
    assert big.shape == (1, 3, 224, 224) and torch.allclose(big[:, 0], torch.tensor(1.0), atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        t(np.zeros((1, 224, 224, 3), np.float32))


def test_hed_conversion_matches_scikit_image_and_round_trips():
    from skimage.color import rgb2hed

    from weakstil.encoders.transforms import hed_jitter, hed_to_rgb, rgb_to_hed

    rng = np.random.default_rng(1)
    rgb = rng.uniform(0.05, 1.0, (2, 16, 16, 3))
    x = torch.from_numpy(rgb).permute(0, 3, 1, 2).contiguous()
    hed = rgb_to_hed(x)
    ref = np.stack([rgb2hed(im) for im in rgb])  # scikit-image clips negatives to 0
    np.testing.assert_allclose(np.maximum(hed.permute(0, 2, 3, 1).numpy(), 0), ref, atol=1e-6)
    torch.testing.assert_close(hed_to_rgb(hed), x)
    same = hed_jitter(x, torch.ones(2, 3), torch.zeros(2, 3))
    torch.testing.assert_close(same, x)
    # on H&E-stained pixels (positive H and E, no DAB), more haematoxylin darkens every channel
    stains = torch.from_numpy(rng.uniform(0.01, 0.1, (2, 3, 8, 8)))
    stains[:, 2] = 0
    he = hed_to_rgb(stains)
    darker = hed_jitter(he, torch.tensor([[1.5, 1.0, 1.0]] * 2), torch.zeros(2, 3))
    assert (darker < he - 1e-4).all()


def test_ssl_augment_is_seeded_batched_and_in_range():
    from weakstil.encoders.transforms import SSLAugment

    tiles = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (6, 224, 224, 3), dtype=np.uint8))
    aug = SSLAugment(96, (0.5,) * 3, (0.5,) * 3)
    a = aug(tiles, torch.Generator().manual_seed(5))
    b = aug(tiles, torch.Generator().manual_seed(5))
    g = torch.Generator().manual_seed(5)
    c1, c2 = aug(tiles, g), aug(tiles, g)
    assert a.shape == (6, 3, 96, 96) and torch.equal(a, b) and not torch.equal(c1, c2)
    assert a.min() >= -1 - 1e-5 and a.max() <= 1 + 1e-5  # normalised [0, 1] with mean = std = 0.5
    # pure geometry (no colour, blur, grey or noise): a flat tile stays flat
    flat = torch.full((2, 224, 224, 3), 200, dtype=torch.uint8)
    geo = SSLAugment(64, (0.0,) * 3, (1.0,) * 3, color_p=0, blur_p=0, grey_p=0, noise_p=0)(flat, g)
    assert torch.allclose(geo, torch.tensor(200 / 255), atol=1e-5)


def test_ssl_augment_optics_sharpen_and_noise():
    from weakstil.encoders.transforms import SSLAugment

    flat = torch.full((4, 128, 128, 3), 128, dtype=torch.uint8)
    plain = dict(color_p=0, blur_p=0, grey_p=0)
    # sensor noise: a flat tile is no longer flat, and the noise is zero-mean
    noisy = SSLAugment(64, (0.0,) * 3, (1.0,) * 3, noise_p=1.0, noise_sigma=0.1, **plain)(
        flat, torch.Generator().manual_seed(0))
    assert noisy.std(dim=(1, 2, 3)).min() > 0.005 and abs(float(noisy.mean()) - 128 / 255) < 0.01
    # sharpening raises the contrast of an edge (an unsharp mask overshoots on both sides)
    edge = torch.zeros((2, 128, 128, 3), dtype=torch.uint8)
    edge[:, :, :64] = 90
    edge[:, :, 64:] = 170
    base = SSLAugment(128, (0.0,) * 3, (1.0,) * 3, zoom=(1.0, 1.0), **plain)
    sharp = SSLAugment(128, (0.0,) * 3, (1.0,) * 3, zoom=(1.0, 1.0), sharpen_p=1.0, sharpen_amount=2.0, **plain)
    a = base(edge, torch.Generator().manual_seed(1))
    b = sharp(edge, torch.Generator().manual_seed(1))
    assert float(b.max() - b.min()) > float(a.max() - a.min()) + 0.02
    # on by default and recorded (pretraining writes these settings into card.yaml); off, the views differ
    aug = SSLAugment(64, (0.5,) * 3, (0.5,) * 3)
    assert aug.settings()["noise_p"] > 0 and aug.settings()["sharpen_p"] > 0
    tiles = torch.from_numpy(np.random.default_rng(3).integers(0, 256, (3, 128, 128, 3), dtype=np.uint8))
    off = SSLAugment(64, (0.5,) * 3, (0.5,) * 3, sharpen_p=0.0, noise_p=0.0)
    assert not torch.equal(aug(tiles, torch.Generator().manual_seed(7)), off(tiles, torch.Generator().manual_seed(7)))
