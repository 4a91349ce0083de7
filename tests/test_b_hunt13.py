"""Fault hunt 13, area b (encoders, embed, pretrain, tile's rewrite): what an outside tester found,
as regression tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli


@pytest.fixture(scope="module")
def disc_slide(tmp_path_factory) -> Path:
    """A small brightfield slide: a pink disc of tissue with dark nuclei on white glass, 0.5 µm/px."""
    from conftest import write_disc_slide

    return write_disc_slide(tmp_path_factory.mktemp("hunt13b") / "S1.tiff")


# --- B0 (hunt 12 A10 leftover): tile's failed rewrite keeps the earlier .h5 and its picture -----------------
@pytest.mark.parametrize("failure", [OSError(28, "No space left on device"), KeyboardInterrupt()])
def test_a_failed_tile_rewrite_keeps_the_earlier_pair(disc_slide, tmp_path, monkeypatch, failure):
    """A rerun with other settings wrote the new overlay PNG, then the .h5 write failed (a full disk,
    Ctrl-C): the new PNG was deleted and the earlier .h5 stayed without its picture. Now the earlier
    pair stays, and nothing new or set aside is left beside it."""
    import weakstil.tiles as tiles_mod
    from weakstil.tiles import TilingParams, tile_slide_to_dir

    out = tmp_path / "tiles"
    tile_slide_to_dir(disc_slide, out, TilingParams(tile_px=64))
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".S1.h5.lock"}
    assert sorted(before) == ["S1.h5", "S1_tiles.png"]
    real_write = tiles_mod.write_tiles_h5

    def failing_write(tiles, path):
        real_write(tiles, path.with_name("partial.h5"))  # the work done, then the file system gives out
        path.with_name("partial.h5").unlink()
        raise failure

    monkeypatch.setattr(tiles_mod, "write_tiles_h5", failing_write)
    with pytest.raises(type(failure)):
        tile_slide_to_dir(disc_slide, out, TilingParams(tile_px=64, tissue_threshold=0.05))
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".S1.h5.lock"}
    assert after == before
    monkeypatch.setattr(tiles_mod, "write_tiles_h5", real_write)
    _, tiles = tile_slide_to_dir(disc_slide, out, TilingParams(tile_px=64, tissue_threshold=0.05))
    assert len(tiles.coords) > 0 and (out / "S1_tiles.png").read_bytes() != before["S1_tiles.png"]


def _errors(proc) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.startswith("error:")]


# --- B1: pretrain of a network that takes only its own input size ------------------------------------------
@pytest.mark.parametrize("encoder", ["lunit-dino-vits16", "ctranspath"])
def test_pretrain_of_a_fixed_size_network_names_the_crop_it_needs(disc_slide, tmp_path, monkeypatch, encoder):
    """The built-in ViT-S/16 (no dynamic_img_size) and Swin (CTransPath) cards failed at the memory
    probe on the default 128 px crops: 'unexpected AssertionError ... this is a bug in weakstil'."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    proc = run_cli("pretrain", disc_slide, "--out", tmp_path / "ssl", "--encoder", encoder, "--weights", "random",
                   "--steps", "1", "--threads", "1")
    assert proc.returncode == 2, proc.stderr
    (line,) = _errors(proc)
    assert "takes only its 224 px input, not --crop-px 128" in line and "Fix: pass --crop-px 224" in line
    assert "bug" not in line and not (tmp_path / "ssl").exists()


# --- B2: a card whose input_px its network does not take -----------------------------------------------------
def test_a_card_whose_network_refuses_its_input_size_is_named(disc_slide, tmp_path):
    card = tmp_path / "vit256.yaml"
    card.write_text("name: vit256\nsource: timm\nmodel: vit_tiny_patch16_224\nmodel_kwargs: {num_classes: 0}\n"
                    "input_px: 256\nmpp: 0.5\nmean: [0.5, 0.5, 0.5]\nstd: [0.5, 0.5, 0.5]\nembed_dim: 192\n")
    proc = run_cli("embed", disc_slide, "--out", tmp_path / "f", "--encoder", card, "--weights", "random",
                   "--threads", "1")
    assert proc.returncode == 1, proc.stderr
    (line,) = _errors(proc)
    assert line.startswith(f"error: {card}: encoder 'vit256'") and "does not run on its card's 256 px input" in line
    assert "dynamic_img_size" in line and "bug" not in line
    assert not list((tmp_path / "f").glob("*.h5"))


# --- B3: integer weights for floating-point parameters -----------------------------------------------------
def test_integer_weights_for_float_parameters_are_refused_not_cast(tmp_path):
    """load_state_dict casts an int64 tensor into a float parameter: a quantised or damaged checkpoint
    embedded with other features (up to 1.04 off) and exit 0. Half-precision weights stay accepted."""
    import torch
    from safetensors.torch import save_file

    from weakstil.encoders.cards import load_card
    from weakstil.encoders.factory import EncoderError, build_model, create_encoder

    state = {k: v.contiguous() for k, v in build_model(load_card("small-cnn")).state_dict().items()}
    save_file({k: (v * 100).to(torch.int64) if v.is_floating_point() else v for k, v in state.items()},
              tmp_path / "int.safetensors")
    with pytest.raises(EncoderError) as err:
        create_encoder("small-cnn", weights=tmp_path / "int.safetensors")
    message = str(err.value)
    assert "value type mismatch" in message and "checkpoint torch.int64 vs model torch.float32" in message
    assert str(tmp_path / "int.safetensors") in message
    save_file({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, tmp_path / "half.safetensors")
    assert create_encoder("small-cnn", weights=tmp_path / "half.safetensors").embed_dim == 256


# --- B4: a resume names the same encoder card otherwise -----------------------------------------------------
def test_pretrain_resume_takes_the_same_card_by_another_path(disc_slide, tmp_path, monkeypatch):
    """'-e my.yaml' in the job's folder, then '--resume -e /abs/my.yaml' from elsewhere (a cluster
    job): 'settings differ from the checkpoint's: encoder 'my.yaml' -> '/abs/my.yaml''."""
    from weakstil.encoders.cards import load_card

    work = tmp_path / "job"
    work.mkdir()
    (work / "my.yaml").write_text(load_card("small-cnn").to_yaml().replace("name: small-cnn", "name: my"))
    tiny = ["--batch-size", "4", "--tiles-per-slide", "8", "--crop-px", "32", "--stain-norm", "none",
            "--threads", "1"]
    monkeypatch.chdir(work)
    proc = run_cli("pretrain", disc_slide, "--out", "ssl", "-e", "my.yaml", "--steps", "1", *tiny)
    assert proc.returncode == 0, proc.stderr
    monkeypatch.chdir(tmp_path)
    proc = run_cli("pretrain", disc_slide, "--out", work / "ssl", "-e", work / "my.yaml", "--steps", "2", "--resume",
                   *tiny)
    assert proc.returncode == 0, proc.stderr
    assert "resuming at step 1 of 2" in proc.stderr
    other = tmp_path / "other.yaml"  # another card file is still another encoder
    other.write_text((work / "my.yaml").read_text())
    proc = run_cli("pretrain", disc_slide, "--out", work / "ssl", "-e", other, "--steps", "3", "--resume", *tiny)
    assert proc.returncode == 1 and "settings differ from the checkpoint's: encoder" in proc.stderr


# --- B5: an edited card under the same name ----------------------------------------------------------------
def test_a_cache_of_an_edited_card_is_kept_not_replaced_silently(disc_slide, tmp_path):
    """Another mean/std (input size, model_kwargs) under the card's name makes other features; the
    cache was replaced with an INFO line, where another encoder's or weights' is refused and kept."""
    from weakstil.encoders.cards import load_card

    card = tmp_path / "mycnn.yaml"
    text = load_card("small-cnn").to_yaml().replace("name: small-cnn", "name: mycnn")
    card.write_text(text)
    args = ["embed", disc_slide, "--out", tmp_path / "f", "--encoder", card, "--weights", "random", "--threads", "1",
            "--stain-norm", "none", "--no-tile-stats"]
    assert run_cli(*args).returncode == 0
    before = (tmp_path / "f" / "S1.h5").read_bytes()
    card.write_text(text.replace("- 0.485\n", "- 0.5\n"))
    proc = run_cli(*args)
    assert proc.returncode == 1, proc.stderr
    (line,) = _errors(proc)
    assert "holds features of another card of encoder 'mycnn' (mean [0.485, 0.456, 0.406] -> [0.5, 0.456, 0.406])" \
        in line and "--overwrite" in line
    assert (tmp_path / "f" / "S1.h5").read_bytes() == before
    assert run_cli(*args, "--overwrite").returncode == 0
    assert run_cli(*args).returncode == 0 and (tmp_path / "f" / "S1.h5").read_bytes() != before


# --- B6: --encoder given a path that is no card ------------------------------------------------------------
def test_an_encoder_path_that_is_no_card_says_so(tmp_path):
    """'-e cards/my.yml' (a typo in the path) and '-e weights.safetensors' were 'unknown encoder', with the
    list of built-in names: the path was not named as missing, nor the weights file as one."""
    from weakstil.encoders.cards import UnknownEncoderError, load_card

    with pytest.raises(UnknownEncoderError) as err:
        load_card(str(tmp_path / "my.yml"))
    assert err.value.one_line().startswith(f"{tmp_path / 'my.yml'}: no such card file or encoder folder")
    (tmp_path / "w.safetensors").write_bytes(b"\0" * 16)
    with pytest.raises(UnknownEncoderError) as err:
        load_card(str(tmp_path / "w.safetensors"))
    assert "is a file but not an encoder card" in err.value.one_line() and "go to --weights" in err.value.one_line()
    with pytest.raises(UnknownEncoderError, match="unknown encoder 'resnet9000'"):
        load_card("resnet9000")


# --- B7: the state dict of a torch.compile'd model -----------------------------------------------------------
def test_weights_of_a_compiled_or_ddp_model_load(tmp_path):
    """A DistributedDataParallel model's 'module.' prefix was taken off, torch.compile's '_orig_mod.' was
    not: the state_dict() of a compiled encoder was refused as N missing and N unexpected keys."""
    import torch

    from weakstil.encoders.cards import load_card
    from weakstil.encoders.factory import build_model, create_encoder

    state = build_model(load_card("small-cnn")).state_dict()
    for prefix in ("_orig_mod.", "module._orig_mod.", "_orig_mod.module."):
        path = tmp_path / f"{prefix.strip('.')}.pth"
        torch.save({prefix + k: v for k, v in state.items()}, path)
        loaded = create_encoder("small-cnn", weights=path).model.state_dict()
        assert loaded.keys() == state.keys() and all(torch.equal(loaded[k], state[k]) for k in state)


def test_a_training_checkpoint_is_refused_naming_what_it_holds(tmp_path):
    """A Lightning-style checkpoint (the weights under 'state_dict' beside the epoch, optimizer states...)
    was refused as 'does not hold a state dict' without a word on what it does hold."""
    import torch

    from weakstil.encoders.cards import load_card
    from weakstil.encoders.factory import EncoderError, build_model, create_encoder

    state = build_model(load_card("small-cnn")).state_dict()
    path = tmp_path / "last.ckpt"
    torch.save({"epoch": 3, "global_step": 120, "state_dict": {f"model.{k}": v for k, v in state.items()},
                "optimizer_states": [], "lr_schedulers": []}, path)
    with pytest.raises(EncoderError) as err:
        create_encoder("small-cnn", weights=path)
    message = str(err.value)
    assert "does not hold a state dict" in message and str(path) in message
    assert "it holds 'epoch', 'global_step', 'state_dict', 'optimizer_states', 'lr_schedulers'" in message
