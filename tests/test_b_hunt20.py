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
    """2 synthetic slides embedded with a small-cnn whose weights and card lie in a folder of their
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
    labels = generate_cohort(root / "cohort", 2, seed=3, size_mm=(0.5, 0.5), progress=False)
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


# -- the workflow's records -------------------------------------------------------------------
SNAKEFILE = Path(__file__).resolve().parents[1] / "pipelines" / "Snakefile"
LOCAL = SNAKEFILE.parent / "profiles" / "local"
FEATURES = "results/features/synth_0000.h5"


def _snakemake(workdir: Path, *args: str, python: str | None = None, config: tuple[str, ...] = ()) -> str:
    import os
    import subprocess
    import sys

    from conftest import no_slurm_controller_env

    import snakemake_fork

    env = no_slurm_controller_env(workdir.parent)
    cmd = [python or sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--profile", str(LOCAL), "--directory",
           str(workdir), *args, "--config", "cohort=cohort/labels.csv", "folds=2", "weights=random", *config]
    if python is None:  # forked from the process that imported Snakemake (its cwd on sys.path, as python -m has)
        proc = snakemake_fork.run(cmd, env=env, cwd=SNAKEFILE.parents[1])
    else:  # another interpreter: a fresh process that imports this tree's WeakSTIL
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SNAKEFILE.parents[1]), env.get("PYTHONPATH")]))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout + proc.stderr


def _planned(log: str) -> list[str]:
    import re

    return sorted(re.findall(r"^(?:local)?rule (\w+):", log, re.M))


def _moved_venv(root: Path) -> Path:
    """This venv under another path (its own pyvenv.cfg, the same packages): as a venv moved or recreated."""
    import sys

    venv = Path(sys.prefix)
    if not (venv / "pyvenv.cfg").is_file():
        pytest.skip("needs to run in a virtual environment")
    moved = root / "moved-venv"
    (moved / "bin").mkdir(parents=True)
    shutil.copy(venv / "pyvenv.cfg", moved / "pyvenv.cfg")
    for lib in ("lib", "lib64"):
        if (venv / lib).exists():
            (moved / lib).symlink_to(venv / lib)
    (moved / "bin" / "python").symlink_to(Path(sys.executable))
    return moved / "bin" / "python"


def test_workflow_reuses_embeddings_after_another_device_venv_or_slide_folder(tmp_path: Path) -> None:
    """A slide's tile and embed jobs are not redone for another `device`, a moved venv (another path to the
    interpreter) or the slides moved to another folder (the same files, the CSV's paths edited); another
    scan under the slide's name is."""
    import os

    import pandas as pd

    from weakstil.synth import generate_cohort

    pytest.importorskip("snakemake")
    work = tmp_path / "work"
    generate_cohort(work / "cohort", 2, seed=0, size_mm=(0.3, 0.3), n_groups=2, progress=False)
    labels = pd.read_csv(work / "cohort" / "labels.csv")
    for name in ("tiles/synth_0000.h5", "tiles/synth_0000_tiles.png", "features/synth_0000.h5"):
        (work / "results" / name).parent.mkdir(parents=True, exist_ok=True)
        (work / "results" / name).touch()
    # the slide's jobs as done with device cpu (Snakemake records their params; no weakstil command runs)
    _snakemake(work, "--touch", FEATURES, "--forcerun", "tile", "embed", config=("device=cpu",))

    (work / "cohort" / "slides").rename(work / "cohort" / "scans")
    labels.assign(path=[p.replace("slides/", "scans/") for p in labels["path"]]).to_csv(
        work / "cohort" / "labels.csv", index=False)
    log = _snakemake(work, "-n", FEATURES, python=str(_moved_venv(tmp_path)), config=("device=auto",))
    assert "Nothing to be done" in log, _planned(log)  # before: tile and embed (each param changed)

    scans = work / "cohort" / "scans"  # another scan copied over the slide, with its older time (cp -p)
    shutil.copyfile(scans / "synth_0001.tiff", scans / "synth_0000.tiff")
    stat = (scans / "synth_0001.tiff").stat()
    os.utime(scans / "synth_0000.tiff", (stat.st_atime, stat.st_mtime - 3600))
    assert _planned(_snakemake(work, "-n", FEATURES, config=("device=auto",))) == ["embed", "tile"]
    assert pd.read_csv(work / "cohort" / "labels.csv")["path"].str.startswith("scans/").all()
