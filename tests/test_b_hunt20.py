"""Hunt 20b: the feature cache and the workflow's records keep what a rerun may reuse.

* ``weakstil train`` bundled the encoder (and detector) into the model folder after renaming it
  into place, outside the folder's lock: a run killed while copying (``kill -9`` of a workflow whose
  train job went on, a machine going down) left ``model/`` with a half-copied encoder that the next
  run trusted. The bundle is now made in the temporary folder, before the rename.
* The workflow's jobs recorded the interpreter's path, the torch device and the slide file's path
  among their settings: a moved or recreated venv, another ``device`` or slides moved to another
  folder re-tiled and re-embedded every slide.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import run_cli, write_training_csv


@pytest.fixture(scope="module")
def cohort_with_local_encoder(tmp_path_factory) -> Path:
    """4 synthetic slides embedded with a small-cnn whose weights and card lie in a folder of their
    own (as a lab's own encoder: ``weakstil train`` bundles it with the model)."""
    import torch

    from weakstil.embed import embed_slide
    from weakstil.encoders.cards import CARD_FILE, load_card
    from weakstil.encoders.factory import build_model, create_encoder, save_state_dict
    from weakstil.synth import generate_cohort

    root = tmp_path_factory.mktemp("hunt20b")
    enc = root / "enc"
    enc.mkdir()
    card = load_card("small-cnn")
    torch.manual_seed(0)
    save_state_dict(build_model(card).state_dict(), enc / "weights.safetensors")
    (enc / CARD_FILE).write_text(card.to_yaml(), encoding="utf-8")
    labels = generate_cohort(root / "cohort", 3, seed=3, size_mm=(0.5, 0.5), progress=False)
    encoder = create_encoder("small-cnn", weights=enc / "weights.safetensors")
    for path in labels["path"]:
        embed_slide(root / "cohort" / path, encoder, out_dir=root / "features")
    write_training_csv(root / "train.csv", labels, root / "cohort")
    return root


def _train(root: Path, *extra: str):
    return run_cli("train", root / "train.csv", "-f", root / "features", "-o", root / "model", "--folds", "1",
                   "--epochs", "1", *extra)


def _killed_mid_copy(monkeypatch) -> None:
    """``shutil.copy2`` of the encoder's weights writes half the file, then the run is stopped."""
    real = shutil.copy2

    def copy2(src, dst, *args, **kwargs):
        if Path(src).name == "weights.safetensors":
            data = Path(src).read_bytes()
            Path(dst).write_bytes(data[: len(data) // 2])
            raise KeyboardInterrupt  # kill -9 cannot be caught either: nothing after this line runs
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(shutil, "copy2", copy2)


def test_train_killed_while_bundling_the_encoder_leaves_no_damaged_model(cohort_with_local_encoder: Path,
                                                                         monkeypatch) -> None:
    root = cohort_with_local_encoder
    source = (root / "enc" / "weights.safetensors").read_bytes()
    model = root / "model"
    shutil.rmtree(model, ignore_errors=True)
    with monkeypatch.context() as m:
        _killed_mid_copy(m)
        try:
            _train(root)
        except KeyboardInterrupt:
            pass
    # before: model/ was in place (model.json, the marker) with half the encoder's weights
    assert not model.exists(), sorted(str(p.relative_to(model)) for p in model.rglob("*"))
    assert not list(root.glob(".model.tmp-*"))  # an interrupt removes its temporary folder

    assert _train(root).returncode == 0
    assert (model / "encoder" / "weights.safetensors").read_bytes() == source
    before = {p.relative_to(model): p.read_bytes() for p in model.rglob("*") if p.is_file()}
    with monkeypatch.context() as m:  # --overwrite killed while bundling: the earlier model stays whole
        _killed_mid_copy(m)
        try:
            _train(root, "--overwrite", "--seed", "1")
        except KeyboardInterrupt:
            pass
    assert {p.relative_to(model): p.read_bytes() for p in model.rglob("*") if p.is_file()} == before
