"""Findings of the outside fault hunt 7 (an ML researcher's own encoders; a lab cross-checking the
outputs of `weakstil score`) that need no trained model; those that do are in test_fault_hunt6.py
(the fault matrix's model), the workflow's in test_pipeline.py, the interval's in test_confidence.py."""

from __future__ import annotations

import numpy as np

from conftest import run_cli, write_tiff_slide
from test_faults import error_lines


def test_a_dark_image_is_refused_by_tile_with_a_fix_a_user_can_act_on(tmp_path):
    """7B #3: the README said tiling goes on; the fix said what WeakSTIL reads, not what to do."""
    dark = np.full((1024, 1024, 3), 12, np.uint8)
    dark[300:700, 300:700] = (40, 10, 10)  # a faint stained patch on black: fluorescence-like
    slide = write_tiff_slide(tmp_path / "dark.tiff", dark)
    proc = run_cli("tile", slide, "--out", tmp_path / "t")
    (line,) = error_lines(proc.stderr)
    assert proc.returncode == 1 and "no tissue found (0 tiles): mostly dark image" in line
    assert "Fix: give the brightfield H&E scan of this tissue" in line
    assert not (tmp_path / "t").exists() or not any((tmp_path / "t").iterdir())


def test_a_detector_outline_with_many_vertices_given_as_annotation_is_recognised(tmp_path, caplog):
    """7B #2: the bed's name was looked for in the file's first 4 KB, but it follows the outline's
    vertices: a detector bed with a long outline was scored as a pathologist's, without a word."""
    from shapely.geometry import MultiPolygon, Polygon

    from weakstil.annotations import write_geojson
    from weakstil.tumorbed.bed import _warn_if_written_by_weakstil

    angles = np.linspace(0, 2 * np.pi, 800, endpoint=False)  # a ragged outline: ~20 KB of vertices
    ring = [(1000 + 400 * np.cos(a) + 16 * (i % 2), 1000 + 400 * np.sin(a)) for i, a in enumerate(angles)]
    path = tmp_path / "S1.geojson"
    write_geojson(MultiPolygon([Polygon(ring)]), path, name="Tumor bed (model)", written_by="weakstil tumorbed apply")
    assert path.read_text().index("Tumor bed (model)") > 4096
    with caplog.at_level("WARNING"):
        _warn_if_written_by_weakstil(path)
    assert "a bed 'weakstil tumorbed apply' wrote (source model)" in caplog.text


def test_embed_never_writes_into_a_model_an_encoder_or_another_commands_folder(tmp_path):
    """7A #3: embed wrote its caches into a model folder, its bundled encoder, a pretrain folder and a
    score folder (exit 0), and rewrote their markers as features."""
    from weakstil.outputdir import commands_of, mark

    slide = write_tiff_slide(tmp_path / "S1.tiff", np.full((512, 512, 3), 200, np.uint8))
    model = tmp_path / "model"
    mark(model, "train")
    (model / "encoder").mkdir()
    for command in ("pretrain", "score", "tile"):
        mark(tmp_path / command, command)
    for out, says in ((model, "is the model folder"), (model / "encoder", "is inside the model folder"),
                      (tmp_path / "pretrain", "is the encoder folder"), (tmp_path / "score", "scores folder"),
                      (tmp_path / "tile", "tiles folder")):
        proc = run_cli("embed", slide, "--out", out, "--encoder", "small-cnn", "--weights", "random")
        (line,) = error_lines(proc.stderr)
        assert proc.returncode == 2 and says in line and "Fix: give 'weakstil embed' a folder of its own" in line
        assert not list(out.glob("*.h5"))
    assert commands_of(model) == ["train"] and commands_of(model / "encoder") == []


def test_pretrain_records_its_resolution_and_goes_on_from_an_encoder_folder(tmp_path, caplog):
    """7A #4: `pretrain --mpp 1.0` wrote the base card's 0.5 µm/px as the encoder's (the resolution
    warning then fired at 1.0 and not at 0.5). 7A #5: `pretrain --encoder DIR` started from a
    random init, and the warning told the user to leave out the --weights they had left out."""
    import yaml

    from conftest import CMU

    small = ["--steps", "1", "--batch-size", "4", "--tiles-per-slide", "4", "--workers", "1"]
    assert run_cli("pretrain", CMU, "--out", tmp_path / "p1", "--mpp", "1.0", *small).returncode == 0
    card = yaml.safe_load((tmp_path / "p1" / "card.yaml").read_text())
    assert card["mpp"] == 1.0 and card["training"]["tile_mpp"] == 1.0
    with caplog.at_level("WARNING"):
        proc = run_cli("pretrain", CMU, "--out", tmp_path / "p2", "--encoder", tmp_path / "p1", "--mpp", "1.0", *small)
    assert proc.returncode == 0, proc.stderr
    second = yaml.safe_load((tmp_path / "p2" / "card.yaml").read_text())["training"]
    assert second["init_weights_sha256"] == card["weights_sha256"]  # went on from p1's weights
    assert str(tmp_path / "p1" / "model.safetensors") in second["init"]
    assert "holds pretrained weights" not in proc.stderr + caplog.text
    proc = run_cli("pretrain", CMU, "--out", tmp_path / "p3", "--encoder", tmp_path / "p1", "--weights", "random",
                   "--mpp", "1.0", *small)
    assert proc.returncode == 0 and "random init" in yaml.safe_load((tmp_path / "p3" / "card.yaml").read_text())[
        "training"]["init"]


def test_pretrain_stopped_before_its_first_checkpoint_leaves_no_folder(tmp_path):
    """7A #8: SIGTERM while tiles were still being sampled left an empty --out (exit 143)."""
    import signal
    import subprocess
    import sys
    import time

    from conftest import CMU

    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "weakstil", "pretrain", str(CMU), "--out", str(out), "--steps",
                             "100000", "--tiles-per-slide", "2000", "--batch-size", "8", "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not out.exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert out.exists(), "pretrain never took its --out"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err[-2000:]
    assert not out.exists() or any(out.iterdir())  # gone, or a checkpoint to --resume from
    assert not out.exists(), sorted(p.name for p in out.iterdir())
