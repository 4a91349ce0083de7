"""Hunt 28b: an outsider's fault matrix on encoders and stage 1 (``--encoder`` names, hub ids,
pretrain folders, weights files, globs). Every case is offline: no test touches the network."""

from __future__ import annotations

import shutil

import pytest

from conftest import run_cli


@pytest.fixture(scope="module")
def slide(synth_cohort, tmp_path_factory):
    out = synth_cohort(tmp_path_factory.mktemp("cohort"), slides=1, seed=0, size_mm=0.6)
    return next((out / "slides").glob("*.tif*"))


@pytest.fixture(scope="module")
def pretrained(slide, tmp_path_factory, one_torch_thread_module):
    out = tmp_path_factory.mktemp("pt") / "enc"
    run_cli("pretrain", slide, "-o", out, "-e", "small-cnn", "--steps", 1, "--batch-size", 4,
            "--tiles-per-slide", 8, "--crop-px", 64, "--threads", 1, "--workers", 1, check=True)
    return out


def _error(result) -> str:
    return result.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize("name", ["", "  "])
def test_an_empty_encoder_name_is_a_usage_error_not_the_current_folder(slide, tmp_path, monkeypatch, name):
    monkeypatch.chdir(tmp_path)  # it was Path('.'): "error: .: directory has no card.yaml", exit 1
    r = run_cli("embed", slide, "-o", tmp_path / "f", "-e", name)
    assert r.returncode == 2, r.stderr
    assert "empty encoder name" in _error(r) and "small-cnn" in _error(r)
    assert not (tmp_path / "f").exists()


@pytest.mark.parametrize("given, meant", [("UNI", "uni"), ("Small_CNN", "small-cnn"), ("small-cnn ", "small-cnn"),
                                          ("virchov", "virchow")])
def test_a_misspelt_encoder_name_names_the_card_meant(slide, tmp_path, given, meant):
    r = run_cli("embed", slide, "-o", tmp_path / "f", "-e", given)
    assert r.returncode == 2, r.stderr
    assert f"did you mean '{meant}'" in _error(r) and f"Fix: pass --encoder {meant} (or a" in _error(r)


def test_a_hub_id_with_a_typo_names_the_built_in_card_and_downloads_nothing(slide, tmp_path, monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # refused before any hub call, online or not
    r = run_cli("embed", slide, "-o", tmp_path / "f", "-e", "hf-hub:MahmoodLab/unii")
    assert r.returncode == 2, r.stderr
    line = _error(r)  # it was told to write a card.yaml for 'unii'
    assert "did you mean hf-hub:MahmoodLab/uni," in line and "Fix: pass --encoder uni " in line
    r = run_cli("embed", slide, "-o", tmp_path / "f", "-e", "hf-hub:")
    assert r.returncode == 2 and "names no model" in _error(r) and "name: ," not in _error(r)
    r = run_cli("embed", slide, "-o", tmp_path / "f", "-e", "hf-hub:someone/another-model")  # no near card: as before
    assert r.returncode == 2 and "write a card.yaml" in _error(r) and "did you mean" not in _error(r)


def test_a_pretrain_folder_without_its_card_says_resume_not_write_a_timm_card(pretrained, slide, tmp_path):
    folder = tmp_path / "enc"
    shutil.copytree(pretrained, folder)
    (folder / "card.yaml").unlink()
    r = run_cli("embed", slide, "-o", tmp_path / "f", "-e", folder)
    assert r.returncode != 0
    line = _error(r)  # it was "write .../card.yaml (name: enc, source: timm, model: <timm architecture>, ...)"
    assert "source: timm" not in line and "'weakstil pretrain' folder (checkpoint.json of small-cnn)" in line
    assert f"-o {folder} -e small-cnn --resume" in line and slide.stem in line
    # the fix works: --resume writes the same card again, and the folder embeds
    run_cli("pretrain", slide, "-o", folder, "-e", "small-cnn", "--resume", "--batch-size", 4, "--tiles-per-slide", 8,
            "--crop-px", 64, "--threads", 1, "--workers", 1, check=True)
    assert (folder / "card.yaml").is_file()
    assert (folder / "model.safetensors").read_bytes() == (pretrained / "model.safetensors").read_bytes()


def test_weights_nested_under_a_prefix_are_named_and_still_refused(pretrained, slide, tmp_path):
    from safetensors.torch import load_file, save_file

    state = load_file(pretrained / "model.safetensors")
    nested = {**{f"student.backbone.{k}": v.clone() for k, v in state.items()},
              **{f"teacher.backbone.{k}": v.clone() for k, v in state.items()}, "teacher.head.weight": state[next(iter(state))]}
    save_file({k: v.contiguous() for k, v in nested.items()}, tmp_path / "dino.safetensors")
    r = run_cli("embed", slide, "-o", tmp_path / "f", "-e", "small-cnn", "--weights", tmp_path / "dino.safetensors")
    assert r.returncode == 1, r.stderr  # strict as before: no prefix is taken off by guess
    line = _error(r)  # it was "pass the weights made for this encoder card" (they are in the file)
    assert "under the prefix 'student.backbone.' (also 'teacher.backbone.')" in line
    assert "k.removeprefix('student.backbone.')" in line
    assert not list(tmp_path.glob("f/*.h5"))
    save_file({f"encoder.{k}": v for k, v in state.items()}, tmp_path / "simclr.safetensors")
    r = run_cli("embed", slide, "-o", tmp_path / "g", "-e", "small-cnn", "--weights", tmp_path / "simclr.safetensors")
    assert r.returncode == 1 and "under the prefix 'encoder.'" in _error(r)
    import timm  # weights of another network entirely keep the plain fix

    save_file(timm.create_model("resnet18", num_classes=0).state_dict(), tmp_path / "r18.safetensors")
    r = run_cli("embed", slide, "-o", tmp_path / "h", "-e", "small-cnn", "--weights", tmp_path / "r18.safetensors")
    assert r.returncode == 1 and "prefix" not in _error(r) and "pass the weights made for this encoder" in _error(r)


def test_a_glob_that_misses_by_case_or_suffix_says_what_the_folder_holds(slide, tmp_path):
    folder = slide.parent
    r = run_cli("tile", str(folder / "*.TIFF"), "-o", tmp_path / "t")
    assert r.returncode != 0  # it was only "check the pattern and its folder"
    assert "case-sensitive" in _error(r) and slide.name in _error(r)
    r = run_cli("tile", str(folder / "*.svs"), "-o", tmp_path / "t")
    assert r.returncode != 0 and f"holds 1 {slide.suffix} file(s)" in _error(r)
    assert repr(str(folder / ("*" + slide.suffix))) in _error(r)
    r = run_cli("tile", str(tmp_path / "nowhere" / "*.svs"), "-o", tmp_path / "t")
    assert r.returncode != 0 and "it is not there" in _error(r)


def _hub_card(tmp_path, monkeypatch, cached: bool, state=None):
    """A published card (small_cnn at hf-hub:lab/tiny-path, so that it trains in seconds) and, when
    ``cached``, its weights in a local Hugging Face cache; offline, so nothing reaches the network."""
    import huggingface_hub.constants
    import yaml
    from safetensors.torch import save_file

    from weakstil.encoders.cards import load_card

    card = yaml.safe_load(load_card("small-cnn").to_yaml())
    card.update(name="tiny-path", hub_id="hf-hub:lab/tiny-path", licence="CC-BY-NC-ND-4.0")
    (tmp_path / "tiny-path.yaml").write_text(yaml.safe_dump(card))
    cache = tmp_path / "hub"
    if cached:
        snap = cache / "models--lab--tiny-path" / "snapshots" / "abc123"
        snap.mkdir(parents=True)
        (snap.parents[1] / "refs").mkdir()
        (snap.parents[1] / "refs" / "main").write_text("abc123")
        save_file(state, str(snap / "model.safetensors"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path / "tiny-path.yaml"


def test_pretraining_a_published_encoder_starts_from_its_weights_not_a_random_init(pretrained, slide, tmp_path,
                                                                                   monkeypatch):
    from safetensors.torch import load_file

    from weakstil.weights_id import file_sha256

    published = load_file(pretrained / "model.safetensors")  # stands in for UNI's weights
    card = _hub_card(tmp_path, monkeypatch, cached=True, state=published)
    args = ("--steps", 1, "--batch-size", 4, "--tiles-per-slide", 8, "--crop-px", 64, "--threads", 1, "--workers", 1)
    run_cli("pretrain", slide, "-o", tmp_path / "ft", "-e", card, *args, check=True)
    import yaml

    made = yaml.safe_load((tmp_path / "ft" / "card.yaml").read_text())
    # it was "init: random init (seed 0)", and the card called a fine-tune of UNI "your own weights"
    assert made["training"]["init"].startswith("hf-hub:lab/tiny-path")
    snap = tmp_path / "hub" / "models--lab--tiny-path" / "snapshots" / "abc123" / "model.safetensors"
    assert made["training"]["init_weights_sha256"] == file_sha256(snap)
    assert made["licence"].startswith("CC-BY-NC-ND-4.0 (derived from hf-hub:lab/tiny-path")
    run_cli("pretrain", slide, "-o", tmp_path / "rand", "-e", card, "--weights", "random", *args, check=True)
    made = yaml.safe_load((tmp_path / "rand" / "card.yaml").read_text())
    assert made["training"]["init"] == "random init (seed 0)" and made["licence"].startswith("your own weights")


def test_pretraining_a_published_encoder_whose_weights_are_not_here_fails_before_any_slide(slide, tmp_path, monkeypatch):
    card = _hub_card(tmp_path, monkeypatch, cached=False)
    r = run_cli("pretrain", slide, "-o", tmp_path / "ft", "-e", card, "--steps", 1, "--batch-size", 4, "--crop-px", 64,
                "--threads", 1, "--workers", 1)
    assert r.returncode == 1, r.stderr  # it trained a random init of the network under the card's name, exit 0
    assert "not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading" in _error(r)
    assert "HF_HOME set to its folder" in _error(r)  # a cache copied from another machine (session 60)
    assert _error(r).endswith("or pass --weights random to pretrain a random init of its network.") and "sampled" not in r.stderr
    assert not (tmp_path / "ft").exists()
