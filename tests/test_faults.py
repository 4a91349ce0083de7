"""The fault matrix (issue 15): every command, fed what a new user (or a tester) would try.

Each case asserts the exit code (2 for a bad value or command line, 1 for a failed input), the one
``error:`` line and what it names, no traceback, and that nothing partial is left behind. The data
is made once: a 3-slide synthetic cohort, a second slide with the same file name but another
scan, their feature caches and a 2-fold model (small-cnn, random weights).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from conftest import ROOT, WORKFLOW_SLIDE_MM, run_cli, write_tiff_slide

MARKER = ".weakstil-output.json"


@pytest.fixture(autouse=True)
def wide_log_lines(monkeypatch):
    """Log lines unwrapped (rich wraps at the terminal's width), so tests can look for a phrase."""
    monkeypatch.setenv("COLUMNS", "1000")


@dataclass
class World:
    root: Path
    cohort: Path  #: synth cohort: slides/, labels.csv, truth/
    other: Path  #: another synth cohort whose synth_0000.tiff is another scan
    feats: Path  #: embed output of the cohort
    model: Path  #: 2-fold model on the cohort
    built: Path | None = None  #: where it was built (the paths recorded in its outputs); root is a copy

    @property
    def slide(self) -> Path:
        return self.cohort / "slides" / "synth_0000.tiff"

    @property
    def twin(self) -> Path:
        """Same file name as :attr:`slide`, another scan."""
        return self.other / "slides" / "synth_0000.tiff"

    @property
    def labels(self) -> Path:
        return self.cohort / "labels.csv"


@pytest.fixture(scope="session")
def world(tmp_path_factory, synth_cohort) -> World:
    """Built once per run (:func:`conftest.built_once`: test_fault_hunt6 shares it, and under xdist the two
    modules often run in different workers; about 11 s of CPU) and copied into this worker's own folder, so
    no two workers' runs touch the same files."""
    import shutil

    import torch

    from conftest import built_once

    def build(root: Path) -> None:
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        w = World(root, root / "cohort", root / "other", root / "feats", root / "model")
        synth_cohort(w.cohort, 3, seed=0, size_mm=WORKFLOW_SLIDE_MM, groups=3)
        mm = WORKFLOW_SLIDE_MM
        run_cli("synth", w.other, "--slides", "1", "--size-mm", mm, mm, "--seed", "1", check=True)
        run_cli("embed", w.cohort / "slides" / "*.tiff", "--out", w.feats, "--encoder", "small-cnn", "--weights",
                "random", "--workers", "1", check=True)
        run_cli("train", w.labels, "--features", w.feats, "--out", w.model, "--folds", "2", "--epochs", "2",
                "--hidden", "8", check=True)
        torch.set_num_threads(threads)

    root = tmp_path_factory.mktemp("faults")
    built = built_once(tmp_path_factory, "faults-world", build)
    shutil.copytree(built, root, dirs_exist_ok=True, symlinks=True)
    return World(root, root / "cohort", root / "other", root / "feats", root / "model", built)


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def check_failure(proc, rc: int, says: tuple[str, ...], n_errors: int = 1, never: tuple[str, ...] = ()) -> str:
    """The run failed with ``rc`` and exactly ``n_errors`` one-line errors; the first names ``says``."""
    assert "Traceback" not in proc.stderr and "unexpected" not in proc.stderr, proc.stderr
    errors = error_lines(proc.stderr)
    assert proc.returncode == rc, (proc.returncode, proc.stderr)
    assert len(errors) == n_errors, proc.stderr
    for text in says:
        assert text in errors[0], (text, errors[0])
    for text in never:
        assert text not in proc.stderr, (text, proc.stderr)
    return errors[0]


def leftovers(folder: Path) -> list[str]:
    """Temporary and lock files anywhere under ``folder``."""
    if not folder.exists():
        return []
    return sorted(str(p) for p in folder.rglob(".*") if p.name.endswith((".tmp", ".lock")) or ".tmp-" in p.name)


# --- 1. bad values and command lines: exit 2, one line naming the option, nothing written ------------------
@dataclass
class Usage:
    id: str
    argv: Callable[[World, Path], list]
    says: tuple[str, ...]
    never: tuple[str, ...] = ()


def _tile(*extra):
    return lambda w, t: ["tile", w.slide, "--out", t / "out", *extra]


def _embed(*extra):
    return lambda w, t: ["embed", w.slide, "--out", t / "out", "--encoder", "small-cnn", "--weights", "random", *extra]


def _pretrain(*extra):
    return lambda w, t: ["pretrain", w.slide, "--out", t / "out", *extra]


def _train(*extra):
    return lambda w, t: ["train", w.labels, "--features", w.feats, "--out", t / "out", *extra]


def _score(*extra):
    return lambda w, t: ["score", w.slide, "--model", w.model, "--out", t / "out", "--weights", "random", *extra]


def _synth(*extra):
    return lambda w, t: ["synth", t / "out", *extra]


def _file(w: World, t: Path) -> Path:
    (t / "file.txt").write_text("x")
    return t / "file.txt"


USAGE = [
    Usage("tile-size-0", _tile("--tile-size", "0"), ("--tile-size", "16 to 4096")),
    Usage("tile-size-huge", _tile("--tile-size", "100000"), ("--tile-size", "4096")),
    Usage("tile-size-text", _tile("--tile-size", "abc"), ("--tile-size", "'abc' is not a whole number")),
    Usage("tile-overlap-negative", _tile("--overlap", "-1"), ("--overlap",)),
    Usage("tile-overlap-tile-size", _tile("--overlap", "224"), ("--overlap", "less than --tile-size")),
    Usage("tile-mpp-nan", _tile("--mpp", "nan"), ("--mpp", "finite")),
    Usage("tile-mpp-inf", _tile("--mpp", "inf"), ("--mpp", "finite")),
    Usage("tile-mpp-0", _tile("--mpp", "0"), ("--mpp", "0.05 to 20"), never=("--allow-upsample",)),
    Usage("tile-mpp-negative", _tile("--mpp", "-0.5"), ("--mpp",), never=("--allow-upsample",)),
    Usage("tile-tissue-threshold-negative", _tile("--tissue-threshold", "-1"), ("--tissue-threshold", "0 to 1")),
    Usage("tile-tissue-threshold-above-1", _tile("--tissue-threshold", "1.5"), ("--tissue-threshold", "0 to 1")),
    Usage("tile-slide-mpp-0", _tile("--slide-mpp", "0"), ("--slide-mpp",)),
    Usage("tile-slide-mpp-nan", _tile("--slide-mpp", "nan"), ("--slide-mpp",)),
    Usage("tile-unknown-option", _tile("--tilesize", "10"), ("--tilesize",)),
    Usage("tile-no-slides", lambda w, t: ["tile", "--out", t / "out"], ("slides",)),
    Usage("tile-no-out", lambda w, t: ["tile", w.slide], ("--out",)),
    Usage("tile-out-is-a-file", lambda w, t: ["tile", w.slide, "--out", _file(w, t)], ("--out", "file.txt")),
    Usage("tile-out-below-a-file", lambda w, t: ["tile", w.slide, "--out", _file(w, t) / "sub"], ("--out", "file")),
    Usage("embed-batch-size-0", _embed("--batch-size", "0"), ("--batch-size", "1 to 4096")),
    Usage("embed-batch-size-negative", _embed("--batch-size", "-1"), ("--batch-size",), never=("run again",)),
    Usage("embed-device-unknown", _embed("--device", "foo"), ("--device", "cpu")),
    Usage("embed-workers-negative", _embed("--workers", "-1"), ("--workers",)),
    Usage("embed-seed-negative", _embed("--seed", "-1"), ("--seed",)),
    Usage("embed-mpp-huge", _embed("--mpp", "1e9"), ("--mpp",)),
    Usage("embed-out-is-a-file", lambda w, t: ["embed", w.slide, "--out", _file(w, t), "--encoder", "small-cnn"],
          ("--out",)),
    Usage("embed-memory", _embed("--batch-size", "4096", "--tile-size", "4096"),
          ("GB of memory", "available", "--batch-size")),
    Usage("pretrain-crop-px-5000", _pretrain("--crop-px", "5000"), ("--crop-px", "16 to 1024")),
    Usage("pretrain-crop-px-0", _pretrain("--crop-px", "0"), ("--crop-px",)),
    Usage("pretrain-batch-size-1", _pretrain("--batch-size", "1"), ("--batch-size", "SimCLR"),
          never=("more slides",)),
    Usage("pretrain-steps-0", _pretrain("--steps", "0"), ("--steps",)),
    Usage("pretrain-epochs-0", _pretrain("--epochs", "0"), ("--epochs",)),
    Usage("pretrain-steps-and-epochs", _pretrain("--steps", "3", "--epochs", "1"), ("--steps or --epochs",)),
    Usage("pretrain-lr-nan", _pretrain("--lr", "nan"), ("--lr", "finite")),
    Usage("pretrain-lr-0", _pretrain("--lr", "0"), ("--lr", "> 0")),
    Usage("pretrain-tiles-per-slide-0", _pretrain("--tiles-per-slide", "0"), ("--tiles-per-slide",)),
    Usage("pretrain-memory", _pretrain("--batch-size", "4096", "--crop-px", "1024"),
          ("GB of memory", "available", "--crop-px")),
    Usage("train-lr-nan", _train("--lr", "nan"), ("--lr",)),
    Usage("train-lr-negative", _train("--lr", "-1"), ("--lr",)),
    Usage("train-folds-0", _train("--folds", "0"), ("--folds",)),
    Usage("train-threads-negative", _train("--threads", "-1"), ("--threads",)),
    Usage("train-threshold-150", _train("--threshold", "150"), ("--threshold", "0 to 100")),
    Usage("train-threshold-negative", _train("--threshold", "-5"), ("--threshold",)),
    Usage("train-epochs-0", _train("--epochs", "0"), ("--epochs",)),
    Usage("train-dropout-1", _train("--dropout", "1"), ("--dropout",)),
    Usage("train-hidden-0", _train("--hidden", "0"), ("--hidden",)),
    Usage("train-members-0", _train("--members", "0"), ("--members", "1 to 100")),
    Usage("train-patience-0", _train("--patience", "0"), ("--patience",)),
    Usage("train-batch-slides-0", _train("--batch-slides", "0"), ("--batch-slides",)),
    Usage("train-max-tiles-0", _train("--max-tiles", "0"), ("--max-tiles",)),
    Usage("train-aggregator-unknown", _train("--aggregator", "max"), ("--aggregator",)),
    Usage("train-loss-unknown", _train("--loss", "l1"), ("--loss",)),
    Usage("train-out-is-a-file", lambda w, t: ["train", w.labels, "--features", w.feats, "--out", _file(w, t)],
          ("--out",)),
    Usage("train-overwrite-cohort-folder", lambda w, t: ["train", w.labels, "--features", w.feats, "--out", w.cohort,
                                                          "--overwrite"], ("--overwrite", "cohort", "weakstil synth")),
    Usage("train-overwrite-features-folder", lambda w, t: ["train", w.labels, "--features", w.feats, "--out", w.feats,
                                                            "--overwrite"], ("--overwrite", "weakstil embed")),
    Usage("evaluate-threshold-nan", lambda w, t: ["evaluate", w.labels, "--model", w.model, "--features", w.feats,
                                                  "--out", t / "out", "--threshold", "nan"], ("--threshold",)),
    Usage("evaluate-model-and-oof", lambda w, t: ["evaluate", w.labels, "--model", w.model, "--oof",
                                                  w.model / "cv" / "oof_predictions.csv", "--out", t / "out"],
          ("--oof",)),
    Usage("evaluate-nothing-to-evaluate", lambda w, t: ["evaluate", w.labels, "--out", t / "out"], ("--model",)),
    Usage("score-threshold-150", _score("--threshold", "150"), ("--threshold",)),
    Usage("score-batch-size-0", _score("--batch-size", "0"), ("--batch-size",)),
    Usage("score-workers-negative", _score("--workers", "-5"), ("--workers",)),
    Usage("score-slide-mpp-inf", _score("--slide-mpp", "inf"), ("--slide-mpp",)),
    Usage("score-out-is-a-file", lambda w, t: ["score", w.slide, "--model", w.model, "--out", _file(w, t)],
          ("--out",)),
    Usage("synth-slides-0", _synth("--slides", "0"), ("--slides", "1 to")),
    Usage("synth-slides-negative", _synth("--slides", "-3"), ("--slides",)),
    Usage("synth-groups-0", _synth("--groups", "0"), ("--groups",)),
    Usage("synth-seed-negative", _synth("--seed", "-1"), ("--seed",)),
    Usage("synth-size-negative", _synth("--size-mm", "-1", "1"), ("--size-mm",)),
    Usage("synth-size-0", _synth("--size-mm", "1", "0"), ("--size-mm",)),
    Usage("synth-size-nan", _synth("--size-mm", "nan", "1"), ("--size-mm", "finite")),
    Usage("synth-out-is-a-file", lambda w, t: ["synth", _file(w, t)], ("file.txt",)),
    Usage("tumorbed-train-max-slides-0", lambda w, t: ["tumorbed", "train", "--features", w.feats, "--annotations",
                                                       w.cohort / "truth", "--out", t / "out", "--max-slides", "0"],
          ("--max-slides",)),
    Usage("tumorbed-apply-out-is-a-file", lambda w, t: ["tumorbed", "apply", w.feats / "synth_0000.h5", "--out",
                                                        _file(w, t)], ("--out",)),
    Usage("report-slide-mpp-0", lambda w, t: ["report", "--model", w.model, "--out", t / "out", "--slide-mpp", "0"],
          ("--slide-mpp",)),
    Usage("demo-seed-negative", lambda w, t: ["demo", "--out", t / "out", "--seed", "-1"], ("--seed",)),
    Usage("info-slide-mpp-nan", lambda w, t: ["info", w.slide, "--slide-mpp", "nan"], ("--slide-mpp",)),
    Usage("unknown-command", lambda w, t: ["tiles", w.slide], ("tiles",)),
]


@pytest.mark.parametrize("case", USAGE, ids=[c.id for c in USAGE])
def test_a_bad_value_is_one_usage_line_and_nothing_is_written(world, tmp_path, case):
    before = sorted(p.name for p in world.cohort.iterdir())
    proc = run_cli(*case.argv(world, tmp_path))
    check_failure(proc, 2, (*case.says, "Fix:"), never=case.never)
    assert not (tmp_path / "out").exists()
    assert sorted(p.name for p in world.cohort.iterdir()) == before  # never a slide deleted
    assert leftovers(tmp_path) == []


# --- 2. inputs that fail: exit 1, one line naming the file, the other inputs still done --------------------
@dataclass
class Bad:
    id: str
    argv: Callable[[World, Path], list]
    says: tuple[str, ...]
    rc: int = 1
    n_errors: int = 1
    written: tuple[str, ...] = ()  #: files under tmp/out that must exist (the good inputs' outputs)
    never: tuple[str, ...] = ()


def _text(t: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = t / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding=encoding)
    return path


def _cohort_csv(w: World, t: Path, text: str, encoding: str = "utf-8") -> Path:
    return _text(t, "c.csv", text.replace("SLIDE", str(w.slide)), encoding)


def _relabelled_oof(w: World, t: Path) -> Path:
    """The model's out-of-fold predictions with the labels of another cohort."""
    oof = pd.read_csv(w.model / "cv" / "oof_predictions.csv")
    oof["stil_true"] = oof["stil_true"] + 20
    path = t / "p.csv"
    oof.to_csv(path, index=False)
    return path


def _fraction_labels(w: World, t: Path) -> Path:
    """The cohort CSV with its sTIL labels written as fractions (0.45 for 45 %), paths made absolute."""
    table = pd.read_csv(w.labels)
    table["path"] = [str((Path(w.labels).parent / p).resolve()) for p in table["path"]]
    table["stil"] = table["stil"] / 100.0
    path = t / "fractions.csv"
    table.to_csv(path, index=False)
    return path


def _model_without_encoder(w: World, t: Path) -> Path:
    """The model folder with a pretrained-looking encoder/ whose weights file was not copied."""
    import yaml

    model = t / "m"
    shutil.copytree(w.model, model)
    card = model / "encoder" / "card.yaml"
    if card.is_file():
        (model / "encoder" / "model.safetensors").unlink(missing_ok=True)
    else:  # a model trained on a stock card: give it a bundled, pretrained-style encoder without weights
        card.parent.mkdir(exist_ok=True)
        from weakstil.encoders.cards import load_card

        data = load_card("small-cnn").to_dict()
        data["weights_sha256"] = "0" * 64
        card.write_text(yaml.safe_dump(data))
    return model


def _other_small_cnn_weights(t: Path) -> Path:
    """A small-cnn weights file, not the (seed 0) one the world's model was trained on."""
    from weakstil.encoders.factory import create_encoder, save_state_dict

    save_state_dict(create_encoder("small-cnn", weights="random", seed=9).model.state_dict(), t / "other.safetensors")
    return t / "other.safetensors"


def _model_with_damaged_encoder(w: World, t: Path) -> Path:
    """The model folder with its encoder bundled (card and weights, as 'train' bundles a pretrained
    one), the weights file then damaged by one flipped bit."""
    import yaml

    from weakstil.encoders.cards import load_card
    from weakstil.encoders.factory import create_encoder, save_state_dict

    model = t / "m"
    shutil.copytree(w.model, model)
    folder = model / "encoder"
    folder.mkdir(exist_ok=True)
    data = load_card("small-cnn").to_dict()
    data["weights_sha256"] = save_state_dict(create_encoder("small-cnn", weights="random").model.state_dict(),
                                             folder / "model.safetensors")
    (folder / "card.yaml").write_text(yaml.safe_dump(data))
    raw = bytearray((folder / "model.safetensors").read_bytes())
    raw[-7] ^= 1
    (folder / "model.safetensors").write_bytes(bytes(raw))
    return model


BAD = [
    Bad("tile-missing-file", lambda w, t: ["tile", t / "nope.svs", "--out", t / "out"], ("nope.svs", "not found")),
    Bad("tile-directory", lambda w, t: ["tile", w.cohort, "--out", t / "out"], ("cohort", "directory")),
    Bad("tile-empty-file", lambda w, t: ["tile", _text(t, "e.svs", ""), "--out", t / "out"], ("e.svs", "empty")),
    Bad("tile-text-file", lambda w, t: ["tile", _text(t, "n.svs", "hello"), "--out", t / "out"],
        ("n.svs", "OpenSlide")),
    Bad("tile-glob-matches-nothing", lambda w, t: ["tile", str(t / "*.svs"), "--out", t / "out"],
        ("*.svs", "no file matches")),
    Bad("tile-broken-symlink", lambda w, t: ["tile", _symlink(t / "gone.tiff", t / "link.tiff"), "--out", t / "out"],
        ("link.tiff", "not found")),
    Bad("tile-batch-goes-on", lambda w, t: ["tile", t / "nope.svs", w.slide, "--out", t / "out"], ("nope.svs",),
        written=("synth_0000.h5", "synth_0000_tiles.png")),
    Bad("tile-same-name-two-scans", lambda w, t: ["tile", w.slide, w.twin, "--out", t / "out"],
        ("other", "same slide id", "cohort"), written=("synth_0000.h5",)),
    Bad("info-directory", lambda w, t: ["info", w.cohort], ("directory",)),
    Bad("tile-larger-than-the-slide", lambda w, t: ["tile", w.slide, "--tile-size", "4096", "--out", t / "out"],
        ("synth_0000.tiff", "smaller than one tile", "--tile-size")),
    # an unknown encoder name is the command line's fault: exit 2 (fault hunt 7A #7)
    Bad("embed-unknown-encoder", lambda w, t: ["embed", w.slide, "--out", t / "out", "--encoder", "no-such-card"],
        ("no-such-card", "a card.yaml file"), rc=2),
    Bad("embed-weights-missing", lambda w, t: ["embed", w.slide, "--out", t / "out", "--encoder", "small-cnn",
                                               "--weights", t / "w.safetensors"], ("w.safetensors",)),
    Bad("embed-weights-not-weights", lambda w, t: ["embed", w.slide, "--out", t / "out", "--encoder", "small-cnn",
                                                   "--weights", _text(t, "w.safetensors", "junk")], ("w.safetensors",)),
    Bad("embed-same-name-two-scans", lambda w, t: ["embed", w.slide, w.twin, "--out", t / "out", "--encoder",
                                                   "small-cnn", "--weights", "random"], ("same slide id",),
        written=("synth_0000.h5",)),
    Bad("pretrain-no-tissue", lambda w, t: ["pretrain", _blank(t), "--out", t / "out", "--steps", "1"],
        ("blank.tiff", "no tissue"), n_errors=2),
    # fault hunt 3: score's fix named --tissue-threshold and --tile-size, options score does not have
    Bad("score-no-tissue-batch-goes-on", lambda w, t: ["score", _blank(t), w.slide, "--model", w.model, "--out",
                                                       t / "out", "--weights", "random"],
        ("blank.tiff", "no tissue", "score uses its model's"), written=("synth_0000.h5",)),
    # fault hunt 3: the slide after the odd one was named (tumorbed train), or only the detector (apply, evaluate)
    Bad("tumorbed-train-features-of-two-encoders", lambda w, t: [
        "tumorbed", "train", "--features", _mixed_features(w, t), "--annotations", w.cohort / "truth", "--out",
        t / "out"], ("mixed/synth_0000.h5", "1 slide(s) come from another encoder than the other 2's")),
    Bad("tumorbed-apply-one-slide-of-another-encoder", lambda w, t: [
        "tumorbed", "apply", _mixed_features(w, t) / "synth_0000.h5", w.feats / "synth_0001.h5", "--tumorbed",
        _detector(w, t), "--out", t / "out"], ("mixed/synth_0000.h5", "detector", "was trained on encoder"),
        written=("synth_0001.h5",)),
    Bad("train-csv-missing", lambda w, t: ["train", t / "none.csv", "--features", w.feats, "--out", t / "out"],
        ("none.csv", "not found")),
    Bad("train-csv-is-a-directory", lambda w, t: ["train", w.cohort, "--features", w.feats, "--out", t / "out"],
        ("directory",)),
    Bad("train-csv-empty", lambda w, t: ["train", _text(t, "c.csv", ""), "--features", w.feats, "--out", t / "out"],
        ("c.csv", "empty")),
    Bad("train-csv-pipes", lambda w, t: ["train", _cohort_csv(w, t, "slide_id|path|stil\nsynth_0000|SLIDE|5\n"),
                                              "--features", w.feats, "--out", t / "out"], ("c.csv", "not commas")),
    Bad("train-csv-bad-label", lambda w, t: ["train", _cohort_csv(w, t, "slide_id,path,stil\nsynth_0000,SLIDE,abc\n"
                                                                  "synth_0000,SLIDE,150\n"),
                                             "--features", w.feats, "--out", t / "out"], ("c.csv", "row 2", "row 3")),
    Bad("train-csv-path-not-a-slide", lambda w, t: ["train", _cohort_csv(w, t, "slide_id,path,stil\n"
                                                                          "synth_0000,notes.txt,5\n"),
                                                    "--features", w.feats, "--out", t / "out"]
        if _text(t, "notes.txt", "a note") else [], ("row 2 (synth_0000)", "notes.txt cannot be opened as a slide")),
    Bad("score-slide-name-too-long", lambda w, t: ["score", _long_named(w, t), "--model", w.model, "--out", t / "out",
                                                   "--weights", "random"],
        ("file name too long", "rename the slide file to a shorter name"), written=("results.csv",)),
    Bad("train-csv-decimal-comma", lambda w, t: ["train", _cohort_csv(w, t, "slide_id,path,stil\nsynth_0000,SLIDE,30,5\n"),
                                                 "--features", w.feats, "--out", t / "out"], ("c.csv", "30.5, not 30,5")),
    Bad("train-csv-one-decimal-comma", lambda w, t: ["train", _cohort_csv(w, t, "slide_id,path,stil\nsynth_0000,SLIDE,3\n"
                                                                          "synth_0001,SLIDE,30,5\n"),
                                                     "--features", w.feats, "--out", t / "out"],
        ("c.csv", "30.5, not 30,5")),
    Bad("train-csv-column-twice", lambda w, t: ["train", _cohort_csv(w, t, "slide_id,path,stil,stil\nsynth_0000,SLIDE,5,80\n"),
                                                "--features", w.feats, "--out", t / "out"], ("c.csv", "'stil' more than once")),
    Bad("train-features-missing", lambda w, t: ["train", w.labels, "--features", t / "nofeats", "--out", t / "out"],
        ("nofeats", "not found")),
    # a folder option given a file: a usage error, exit 2 (fix hunt 14 A9)
    Bad("train-features-a-file", lambda w, t: ["train", w.labels, "--features", w.feats / "synth_0000.h5", "--out",
                                               t / "out"], ("synth_0000.h5", "is a file, not the feature cache directory"),
        rc=2),
    Bad("score-out-inside-the-model", lambda w, t: ["score", w.slide, "--model", w.model, "--out", w.model / "scores"],
        ("inside the model folder", "train --overwrite"), rc=2),
    Bad("score-model-json-for-the-folder", lambda w, t: ["score", w.slide, "--model", w.model / "model.json", "--out",
                                                        t / "out"], ("model.json", "is a file, not the model directory"),
        rc=2),  # a folder option given a file: a usage error, exit 2 (fix hunt 14 A9)
    Bad("train-group-column-missing", _train("--group-column", "centre"), ("centre",)),
    Bad("train-too-many-folds", _train("--folds", "8", "--group-column", "none"), ("folds",)),  # 3 slides
    Bad("train-too-many-folds-for-the-named-groups", _train("--folds", "8", "--group-column", "group"), ("folds",)),
    Bad("train-features-of-another-scan", lambda w, t: ["train", w.labels, "--features", _twin_features(w, t),
                                                        "--out", t / "out"],
        ("synth_0000", "another slide file", "fingerprint")),
    Bad("evaluate-model-missing", lambda w, t: ["evaluate", w.labels, "--model", t / "nomodel", "--features", w.feats,
                                                "--out", t / "out"], ("nomodel",)),
    Bad("evaluate-model-is-a-features-folder", lambda w, t: ["evaluate", w.labels, "--model", w.feats, "--features",
                                                             w.feats, "--out", t / "out"], ("model",)),
    Bad("evaluate-features-of-another-tile-size", lambda w, t: ["evaluate", w.labels, "--model", w.model, "--features",
                                                                _resized_features(w, t), "--out", t / "out"],
        ("tile",)),
    Bad("evaluate-oof-missing", lambda w, t: ["evaluate", w.labels, "--oof", t / "p.csv", "--out", t / "out"],
        ("p.csv", "not found")),
    Bad("evaluate-oof-empty", lambda w, t: ["evaluate", w.labels, "--oof", _text(t, "p.csv", ""), "--out", t / "out"],
        ("p.csv",)),
    Bad("evaluate-oof-other-cohort", lambda w, t: ["evaluate", w.labels, "--oof",
                                                   _text(t, "p.csv", "slide_id,stil_pred\nX,3\n"), "--out", t / "out"],
        ("p.csv", "no prediction")),
    Bad("evaluate-oof-of-other-labels", lambda w, t: ["evaluate", w.labels, "--oof", _relabelled_oof(w, t), "--out",
                                                      t / "out"], ("p.csv", "other labels", "another cohort")),
    # the same cohort with its labels as fractions is named as such, with the fix (x 100), not 'another cohort'
    Bad("evaluate-oof-against-fraction-labels", lambda w, t: ["evaluate", _fraction_labels(w, t), "--oof",
                                                              w.model / "cv" / "oof_predictions.csv", "--out", t / "out"],
        ("fractions.csv", "divided by 100", "x 100")),
    Bad("score-model-without-its-encoder-weights", lambda w, t: ["score", w.slide, "--model", _model_without_encoder(w, t),
                                                                 "--out", t / "out"],
        ("model.safetensors is missing beside card.yaml", "copy the whole folder")),
    # a damaged bundled encoder, or an --encoder that cannot be built, is the command's fault: refused once,
    # before --out is written, not an error row per slide (fault matrix round 8, L6)
    Bad("score-model-with-a-damaged-encoder", lambda w, t: ["score", w.slide, w.cohort / "slides" / "synth_0001.tiff",
                                                            "--model", _model_with_damaged_encoder(w, t), "--out",
                                                            t / "out"],
        ("model.safetensors", "does not match its card", "copy the whole model folder")),
    Bad("score-encoder-without-weights", lambda w, t: [
        "score", w.slide, w.cohort / "slides" / "synth_0001.tiff", "--model",
        _edited_model(w, t, lambda m: {**m, "encoder": {**m["encoder"], "name": "kaiko-vits16"}}),
        "--encoder", "kaiko-vits16", "--out", t / "out"],
        ("kaiko-vits16", "not in the Hugging Face cache", "HF_HUB_OFFLINE")),
    # the same with the model's own recorded hub encoder (no --encoder): once, before any slide (fault hunt 7A #6)
    Bad("score-model-of-a-hub-encoder-without-weights", lambda w, t: [
        "score", w.slide, w.cohort / "slides" / "synth_0001.tiff", "--model",
        _edited_model(w, t, lambda m: {**m, "encoder": {**m["encoder"], "name": "kaiko-vits16"}}), "--out", t / "out"],
        ("kaiko-vits16", "not in the Hugging Face cache", "HF_HUB_OFFLINE")),
    Bad("score-detector-of-another-encoder", lambda w, t: ["score", w.slide, w.cohort / "slides" / "synth_0001.tiff",
                                                           "--model", w.model, "--weights", "random", "--tumorbed",
                                                           _detector_of_another_encoder(w, t), "--out", t / "out"],
        ("d5", "trained on encoder", "pass --tumorbed a detector trained on features of this model's encoder")),
    Bad("report-into-a-model-folder", lambda w, t: ["report", "--model", w.model, "--out", w.model],
        ("written by 'weakstil train'", "choose a new --out"), rc=2),
    Bad("report-tiles-missing", lambda w, t: ["report", "--model", w.model, "--out", t / "out", "--tiles", t / "nt"],
        ("--tiles", "not found")),
    Bad("report-evaluation-missing", lambda w, t: ["report", "--model", w.model, "--out", t / "out", "--evaluation",
                                                   t / "ne"], ("--evaluation",)),
    Bad("report-model-missing", lambda w, t: ["report", "--model", t / "nm", "--out", t / "out"], ("model.json",)),
    Bad("report-settings-missing", lambda w, t: ["report", "--model", w.model, "--out", t / "out", "--settings",
                                                 t / "s.yaml"], ("s.yaml",)),
    Bad("tumorbed-train-features-missing", lambda w, t: ["tumorbed", "train", "--features", t / "nf", "--annotations",
                                                         w.cohort / "truth", "--out", t / "out"],
        ("nf", "feature"), never=("annotation file",)),
    Bad("tumorbed-train-annotations-missing", lambda w, t: ["tumorbed", "train", "--features", w.feats,
                                                            "--annotations", t / "na", "--out", t / "out"],
        ("na", "annotation")),
    Bad("tumorbed-apply-not-features", lambda w, t: ["tumorbed", "apply", w.slide, "--out", t / "out"],
        ("synth_0000.tiff",)),
    Bad("tumorbed-apply-detector-missing", lambda w, t: ["tumorbed", "apply", w.feats / "synth_0000.h5", "--out",
                                                         t / "out", "--tumorbed", t / "nd"],
        ("nd", "detector folder not found")),
    Bad("tumorbed-apply-annotations-missing", lambda w, t: ["tumorbed", "apply", w.feats / "synth_0000.h5", "--out",
                                                            t / "out", "--annotations", t / "na"],
        ("--annotations", "not found")),
    Bad("score-model-missing", lambda w, t: ["score", w.slide, "--model", t / "nm", "--out", t / "out"], ("nm",)),
    Bad("score-model-is-an-embed-folder", lambda w, t: ["score", w.slide, "--model", w.feats, "--out", t / "out"],
        ("model.json",)),
    Bad("score-tumorbed-beds-missing", lambda w, t: ["score", w.slide, "--model", w.model, "--out", t / "out",
                                                     "--tumorbed-beds", t / "nb"], ("--tumorbed-beds", "not found")),
    # fault hunt 3: refused per slide after --out was written (an error row), now once before it
    Bad("score-weights-of-another-model", lambda w, t: ["score", w.slide, "--model", w.model, "--out", t / "out",
                                                        "--weights", _other_small_cnn_weights(t)],
        ("has weights", "but the model was trained on")),
    Bad("score-encoder-of-another-model", lambda w, t: ["score", w.slide, "--model", w.model, "--out", t / "out",
                                                        "--features", w.feats, "--encoder", "kaiko-vits16", "--weights",
                                                        "random"],
        ("--encoder 'kaiko-vits16' is not the encoder the model was trained on ('small-cnn')",), rc=2),
    # found by the outside fault matrix (FAULTS.md): damaged files and hand-edited model folders
    Bad("score-features-damaged", lambda w, t: ["score", w.slide, "--model", w.model, "--out", t / "out", "--weights",
                                                "random", "--features", _damaged_features(w, t)],
        ("synth_0000.h5", "damaged", "delete it"), written=("results.csv",), never=("check the file system",)),
    Bad("tumorbed-apply-features-damaged", lambda w, t: ["tumorbed", "apply", _damaged_features(w, t) / "synth_0000.h5",
                                                         w.feats / "synth_0001.h5", "--out", t / "out"],
        ("synth_0000.h5", "damaged", "delete it"), written=("synth_0001.h5",)),
    Bad("tumorbed-train-features-damaged", lambda w, t: ["tumorbed", "train", "--features", _damaged_features(w, t),
                                                         "--annotations", w.cohort / "truth", "--out", t / "out"],
        ("synth_0000.h5", "damaged")),
    Bad("tumorbed-apply-glob-matches-nothing", lambda w, t: ["tumorbed", "apply", str(t / "*.h5"),
                                                             w.feats / "synth_0001.h5", "--out", t / "out"],
        ("*.h5", "no file matches"), written=("synth_0001.h5",)),
    Bad("tumorbed-apply-directory", lambda w, t: ["tumorbed", "apply", w.feats, w.feats / "synth_0001.h5", "--out",
                                                  t / "out"], ("feats", "directory"), written=("synth_0001.h5",)),
    Bad("score-model-json-a-list", lambda w, t: ["score", w.slide, "--model", _edited_model(w, t, lambda m: [m]),
                                                 "--out", t / "out", "--weights", "random"],
        ("model.json", "not a JSON object")),
    Bad("score-model-json-version-text", lambda w, t: ["score", w.slide, "--model",
                                                       _edited_model(w, t, lambda m: {**m, "format_version": "x"}),
                                                       "--out", t / "out", "--weights", "random"],
        ("model.json", "format_version")),
    Bad("score-model-json-threshold-out-of-range", lambda w, t: ["score", w.slide, "--model",
                                                                 _edited_model(w, t, lambda m: {**m, "threshold": -5}),
                                                                 "--out", t / "out", "--weights", "random"],
        ("model.json", "threshold -5", "0 to 100")),
    Bad("evaluate-model-json-threshold-text", lambda w, t: ["evaluate", w.labels, "--model",
                                                            _edited_model(w, t, lambda m: {**m, "threshold": "thirty"}),
                                                            "--features", w.feats, "--out", t / "out"],
        ("model.json", 'threshold "thirty"'), never=("unexpected",)),
    # fault hunt 2: without its fold models' list, an ensemble model was scored by the final model alone
    Bad("score-model-json-without-folds", lambda w, t: ["score", w.slide, "--model",
                                                        _edited_model(w, t, lambda m: {k: v for k, v in m.items()
                                                                                       if k != "folds"}),
                                                        "--out", t / "out", "--weights", "random"],
        ("model.json", "scoring 'ensemble' but lists no fold models")),
    Bad("evaluate-model-json-folds-text", lambda w, t: ["evaluate", w.labels, "--model",
                                                        _edited_model(w, t, lambda m: {**m, "folds": "abc"}),
                                                        "--features", w.feats, "--out", t / "out"],
        ("model.json", "'folds'", "not a list of fold model entries"), never=("unexpected",)),
    Bad("score-model-json-aggregator-unknown", lambda w, t: [
        "score", w.slide, "--model", _edited_model(w, t, lambda m: {**m, "architecture": {**m["architecture"],
                                                                                          "aggregator": "bogus"}}),
        "--out", t / "out", "--weights", "random"], ("model_edited/model.json", "unknown aggregator 'bogus'")),
    Bad("score-model-json-encoder-text", lambda w, t: ["score", w.slide, "--model",
                                                       _edited_model(w, t, lambda m: {**m, "encoder": "small-cnn"}),
                                                       "--out", t / "out", "--weights", "random"],
        ("model.json", "'encoder'")),
    Bad("report-model-json-encoder-text", lambda w, t: ["report", "--model",
                                                        _edited_model(w, t, lambda m: {**m, "encoder": "small-cnn"}),
                                                        "--out", t / "out"], ("model.json", "'encoder'")),
    Bad("tumorbed-apply-detector-weights-truncated", lambda w, t: ["tumorbed", "apply", w.feats / "synth_0000.h5",
                                                                   "--out", t / "out", "--tumorbed",
                                                                   _detector(w, t, truncate=True)],
        ("model.safetensors", "cannot read")),
    Bad("tumorbed-apply-detector-version-text", lambda w, t: ["tumorbed", "apply", w.feats / "synth_0000.h5",
                                                              "--out", t / "out", "--tumorbed",
                                                              _detector(w, t, format_version="x")],
        ("model.json", "format_version")),
    Bad("tumorbed-train-annotation-nan", lambda w, t: ["tumorbed", "train", "--features", w.feats, "--annotations",
                                                       _nan_annotations(w, t), "--out", t / "out"],
        ("synth_0000_tumorbed.geojson", "not finite")),
    Bad("tumorbed-train-two-bad-annotations", lambda w, t: ["tumorbed", "train", "--features", w.feats,
                                                            "--annotations", _nan_annotations(w, t, also_broken=True),
                                                            "--out", t / "out"],
        ("synth_0000_tumorbed.geojson", "not finite", "1 more", "synth_0001_tumorbed.geojson: malformed GeoJSON")),
    Bad("train-two-bad-annotations", lambda w, t: ["train", w.labels, "--features", w.feats, "--annotations",
                                                   _nan_annotations(w, t, also_broken=True), "--out", t / "out",
                                                   "--folds", "2", "--epochs", "1"],
        ("synth_0000_tumorbed.geojson", "not finite", "1 more", "synth_0001_tumorbed.geojson: malformed GeoJSON")),
]


def _long_named(w: World, t: Path) -> Path:
    """The slide under a 245-character name: fine for the file, too long for its outputs' names."""
    t.mkdir(parents=True, exist_ok=True)
    return Path(shutil.copy(w.slide, t / ("L" * 245 + ".tiff")))


def _symlink(target: Path, link: Path) -> Path:
    link.symlink_to(target)
    return link


def _blank(t: Path) -> Path:
    return write_tiff_slide(t / "blank.tiff", np.full((1024, 1024, 3), 245, np.uint8))


def _twin_features(w: World, t: Path) -> Path:
    """The cohort's feature folder, but synth_0000's features made from the other scan of that name."""
    feats = t / "feats"
    shutil.copytree(w.feats, feats)
    run_cli("embed", w.twin, "--out", feats, "--encoder", "small-cnn", "--weights", "random", "--workers", "1",
            check=True)
    return feats


def _resized_features(w: World, t: Path) -> Path:
    """The cohort's features as a run with --tile-size 256 records them."""
    feats = t / "feats256"
    shutil.copytree(w.feats, feats)
    for path in feats.glob("*.h5"):
        with h5py.File(path, "r+") as f:
            key = json.loads(f.attrs["tiling_key"])
            key["tile_px"] = 256
            f.attrs["tiling_key"] = json.dumps(key, sort_keys=True)
            f.attrs["tile_px"] = 256
    return feats


def _damaged_features(w: World, t: Path) -> Path:
    """The cohort's features, synth_0000's with a damaged compressed chunk: the file opens, its
    header reads, but HDF5 cannot decompress its tissue mask."""
    feats = t / "feats_damaged"
    shutil.copytree(w.feats, feats)
    path = feats / "synth_0000.h5"
    with h5py.File(path, "r") as f:
        chunk = f["tissue_mask"].id.get_chunk_info(0)
    with open(path, "r+b") as f:
        f.seek(chunk.byte_offset)
        f.write(b"\xff" * chunk.size)
    return feats


def _edited_model(w: World, t: Path, edit: Callable[[dict], object]) -> Path:
    """A copy of the model whose model.json was edited by hand into ``edit(meta)``."""
    model = t / "model_edited"
    shutil.copytree(w.model, model)
    meta = json.loads((model / "model.json").read_text())
    (model / "model.json").write_text(json.dumps(edit(meta)))
    return model


def _detector_of_another_encoder(w: World, t: Path) -> Path:
    """A tumour-bed detector trained on features of another encoder (random small-cnn, seed 5)."""
    feats = t / "f5"
    run_cli("embed", w.cohort / "slides" / "*.tiff", "--out", feats, "--encoder", "small-cnn", "--weights", "random",
            "--seed", "5", "--workers", "1", check=True)
    run_cli("tumorbed", "train", "--features", feats, "--annotations", w.cohort / "truth", "--out", t / "d5",
            "--no-augment", check=True)  # (its encoder is what the cases refuse, not its final fit)
    return t / "d5"


def _mixed_features(w: World, t: Path) -> Path:
    """The cohort's features, but synth_0000's (first by name) from another encoder (seed 5)."""
    feats, other = t / "mixed", t / "other"
    shutil.copytree(w.feats, feats)
    # embed refuses to mix encoders in one folder (hunt 38b), so the mixed folder is made by hand, as a user copying
    # caches together would
    run_cli("embed", w.slide, "--out", other, "--encoder", "small-cnn", "--weights", "random", "--seed", "5",
            "--workers", "1", check=True)
    shutil.copy2(other / "synth_0000.h5", feats / "synth_0000.h5")
    return feats


def _trained_detector(w: World) -> Path:
    """The tumour-bed detector ``tumorbed train`` makes of the cohort's features and truth, trained once per
    session (training is seeded: the same files each time). Six tests trained this same detector again,
    about 5 s of CPU each (the shape search); they get copies (:func:`_detector`)."""
    detector = w.root / "detector"
    if not (detector / "model.json").is_file():
        run_cli("tumorbed", "train", "--features", w.feats, "--annotations", w.cohort / "truth", "--out", detector,
                check=True)
    return detector


def _detector(w: World, t: Path, truncate: bool = False, format_version: object = None) -> Path:
    """A tumour-bed detector trained on the cohort's truth (a copy of :func:`_trained_detector`), or one
    damaged: its weights cut short, or its model.json's format_version edited."""
    detector = t / "detector"
    shutil.copytree(_trained_detector(w), detector)
    if truncate:
        weights = detector / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:100])
    if format_version is not None:
        meta = json.loads((detector / "model.json").read_text())
        (detector / "model.json").write_text(json.dumps({**meta, "format_version": format_version}))
    return detector


def _nan_annotations(w: World, t: Path, also_broken: bool = False) -> Path:
    """The cohort's tumour-bed annotations, synth_0000's with a NaN coordinate (JSON allows 'NaN'),
    and with ``also_broken`` synth_0001's cut short (not JSON)."""
    annotations = t / "annotations"
    annotations.mkdir()
    for path in (w.cohort / "truth").glob("*.geojson"):
        shutil.copy(path, annotations / path.name)
    path = annotations / "synth_0000_tumorbed.geojson"
    data = json.loads(path.read_text())
    data["features"][0]["geometry"]["coordinates"][0][1][0] = float("nan")
    path.write_text(json.dumps(data))
    if also_broken:
        broken = annotations / "synth_0001_tumorbed.geojson"
        broken.write_text(broken.read_text()[:40])
    return annotations


@pytest.mark.parametrize("case", BAD, ids=[c.id for c in BAD])
def test_a_failed_input_is_one_line_and_the_rest_goes_on(world, tmp_path, case):
    proc = run_cli(*case.argv(world, tmp_path))
    check_failure(proc, case.rc, case.says, n_errors=case.n_errors, never=case.never)
    out = tmp_path / "out"
    for name in case.written:
        assert (out / name).is_file(), name
    if not case.written:
        assert not out.exists() or not [p for p in out.iterdir() if p.name != MARKER and not p.name.startswith(".")], \
            sorted(out.iterdir())
    assert leftovers(tmp_path) == []


# --- 3. inputs that must work ---------------------------------------------------------------------------
def test_a_file_listed_twice_or_through_a_symlink_is_done_once(world, tmp_path):
    link = _symlink(world.slide, tmp_path / "link.tiff")
    proc = run_cli("tile", world.slide, world.slide, str(world.cohort / "slides" / "synth_000[0].tiff"), link,
                   "--out", tmp_path / "out")
    assert proc.returncode == 0 and error_lines(proc.stderr) == [], proc.stderr
    assert proc.stderr.count("tiles ->") == 1


def test_unicode_and_spaces_in_paths(world, tmp_path):
    folder = tmp_path / "mes lames ü"
    folder.mkdir()
    slide = folder / "lame 1 é.tiff"
    shutil.copy(world.slide, slide)
    out = tmp_path / "sortie ø"
    proc = run_cli("tile", slide, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "lame 1 é.h5").is_file() and (out / "lame 1 é_tiles.png").is_file()


def test_cohort_csv_with_a_byte_order_mark_and_spaces(world, tmp_path):
    table = pd.read_csv(world.labels)
    table["path"] = [str(world.cohort / p) for p in table["path"]]
    csv = tmp_path / "bom.csv"
    csv.write_text(table.to_csv(index=False).replace(",", ", "), encoding="utf-8-sig")
    proc = run_cli("evaluate", csv, "--oof", world.model / "cv" / "oof_predictions.csv", "--out", tmp_path / "e")
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "e" / "metrics.json").read_text())["n"] == 3


# --- 4. slide identity: a slide's outputs are reused only for that very scan ---------------------------
def _n_tiles(path: Path) -> int:
    with h5py.File(path) as f:
        return int(f.attrs["n_tiles"])


def test_embed_tells_two_scans_with_one_name_apart(world, tmp_path):
    out = tmp_path / "feats"
    args = ("--out", out, "--encoder", "small-cnn", "--weights", "random", "--workers", "1")
    run_cli("embed", world.slide, *args, check=True)
    n_a = _n_tiles(out / "synth_0000.h5")
    proc = run_cli("embed", world.twin, *args)
    assert proc.returncode == 0 and "another slide file with the same name" in proc.stderr
    assert "WARNING" in proc.stderr and "replaced by this file" in proc.stderr
    n_b = _n_tiles(out / "synth_0000.h5")
    from weakstil.fingerprint import slide_fingerprint

    with h5py.File(out / "synth_0000.h5") as f:
        assert f.attrs["slide_fingerprint"] == slide_fingerprint(world.twin) != slide_fingerprint(world.slide)
    assert n_a != n_b  # the two scans have other tissue
    assert "up to date" in run_cli("embed", world.twin, *args, check=True).stderr


def test_a_cache_without_fingerprint_is_not_trusted(world, tmp_path):
    out = tmp_path / "feats"
    out.mkdir()
    shutil.copy(world.feats / "synth_0000.h5", out / "synth_0000.h5")
    with h5py.File(out / "synth_0000.h5", "r+") as f:
        del f.attrs["slide_fingerprint"]  # as an older weakstil wrote it
    proc = run_cli("embed", world.slide, "--out", out, "--encoder", "small-cnn", "--weights", "random")
    assert proc.returncode == 0 and "no slide fingerprint" in proc.stderr and "up to date" not in proc.stderr
    with h5py.File(out / "synth_0000.h5") as f:
        assert str(f.attrs["slide_fingerprint"]).startswith("wsfp1:")


def test_score_tells_two_scans_with_one_name_apart_and_refuses_a_clash(world, tmp_path):
    out = tmp_path / "sc"
    common = ("--model", world.model, "--out", out, "--weights", "random", "--features", tmp_path / "f")
    shutil.copytree(world.feats, tmp_path / "f")
    proc = run_cli("score", world.slide, world.twin, *common)  # one batch: the second file is refused
    err = check_failure(proc, 1, ("same slide id", str(world.twin), str(world.slide)))
    assert err
    rows = pd.read_csv(out / "results.csv")
    assert list(rows["status"]) == ["ok", "error"] and list(rows["path"]) == [str(world.slide), str(world.twin)]
    stil_a = float(rows["stil"][0])
    first = (out / "synth_0000.h5").read_bytes()
    # in a run of its own too: the first patient's row and outputs stay, the refusal is a row after it
    proc = run_cli("score", world.twin, *common)
    check_failure(proc, 1, ("synth_0000.tiff", "another slide file already scored", "--overwrite"))
    assert (out / "synth_0000.h5").read_bytes() == first
    rows = pd.read_csv(out / "results.csv")
    assert list(rows["status"]) == ["ok", "error"] and rows["path"][0] == str(world.slide)
    run_cli("score", world.slide, *common)  # a rerun that skips the finished slide keeps the refusal's row
    rows = pd.read_csv(out / "results.csv")
    assert list(rows["status"]) == ["ok", "error"] and list(rows["path"]) == [str(world.slide), str(world.twin)]
    proc = run_cli("score", world.twin, *common, "--overwrite")  # asked for: scored as itself
    assert proc.returncode == 0 and "already scored" not in proc.stderr, proc.stderr
    rows = pd.read_csv(out / "results.csv")
    assert list(rows["path"]) == [str(world.twin)]
    assert int(rows["n_tiles"][0]) == _n_tiles(tmp_path / "f" / "synth_0000.h5") != _n_tiles(
        world.feats / "synth_0000.h5")
    assert float(rows["stil"][0]) != stil_a
    proc = run_cli("score", world.twin, *common)
    assert proc.returncode == 0 and "already scored" in proc.stderr
    # the summary says the slide was not scored again (two runs sharing a batch each said "6 of 6 slides scored")
    assert "1of1slidesscored(1ofthemalready" in "".join(proc.stderr.split()), proc.stderr


def test_a_rescan_in_place_that_fails_replaces_the_earlier_scans_row(world, tmp_path):
    """Another scan copied over a scored slide file (same name, its old time kept: cp -p) whose scoring
    fails (here: no tissue). The earlier row, of the scan no longer there, stayed ``ok`` with its sTIL%
    ahead of the error row (results.csv ["ok", "error"], report "2 slides (1 ok, 1 error)" for one file),
    and a lab reading the ok rows took the old scan's number for this file's (hunt 37g). Now the error row
    takes its place; a failure of the same file (a passing one) still keeps the finished row before it."""
    slide = shutil.copy2(world.slide, tmp_path / "synth_0000.tiff")
    out = tmp_path / "sc"
    common = ("--model", world.model, "--out", out, "--weights", "random", "--features", tmp_path / "f")
    shutil.copytree(world.feats, tmp_path / "f")
    run_cli("score", slide, *common, check=True)
    stat = os.stat(slide)
    shutil.copyfile(_blank(tmp_path), slide)  # another scan under the name: no tissue on it
    os.utime(slide, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    proc = run_cli("score", slide, *common)
    assert proc.returncode == 1 and "no tissue" in proc.stderr, proc.stderr
    rows = pd.read_csv(out / "results.csv")
    assert list(rows["status"]) == ["error"] and rows["stil"].isna().all() and list(rows["path"]) == [str(slide)]


def test_a_skipped_slide_says_why_and_how_to_score_it_again(world, tmp_path):
    """A rerun's skip said "synth_0000: already scored (ok), skipped": not what made it the same (a changed
    input it does not follow would look the same) nor how to score it anyway (hunt 37g)."""
    out = tmp_path / "sc"
    shutil.copytree(world.feats, tmp_path / "f")  # (the session's folder stays as it is)
    common = ("--model", world.model, "--out", out, "--weights", "random", "--features", tmp_path / "f")
    run_cli("score", world.slide, *common, check=True)
    said = " ".join(run_cli("score", world.slide, *common, check=True).stderr.split())
    assert f"synth_0000: already scored (ok) in {out}: this very file (fingerprint), model and settings" in said, said
    assert "skipped (--overwrite scores it again)" in said


def test_report_of_an_oof_evaluation_on_other_labels_shows_those_labels(world, tmp_path):
    """A label corrected in the cohort CSV after training, then 'evaluate --oof' (on the corrected label, with
    a warning) and 'report --evaluation': the metrics and scatter plot were the corrected label's (MAE 28.7 with
    synth_0001 15.1 -> 80 on a 4-slide cohort), the slide table still the training label and its error, and
    nothing said so (hunt 37g). Now the table shows the labels the metrics are about, and the page says which."""
    table = pd.read_csv(world.labels)
    table["path"] = [str((Path(world.labels).parent / p).resolve()) for p in table["path"]]
    table.loc[0, "stil"] = 80.0
    labels = tmp_path / "corrected.csv"
    table.to_csv(labels, index=False)
    run_cli("evaluate", labels, "--oof", world.model / "cv" / "oof_predictions.csv", "--out", tmp_path / "ev",
            check=True)
    proc = run_cli("report", "--model", world.model, "--evaluation", tmp_path / "ev", "--out", tmp_path / "r",
                   check=True)
    said = " ".join(proc.stderr.split())
    assert "evaluated against other labels than the model was trained on" in said and "-> 80;" in said, said
    page = (tmp_path / "r" / "report.md").read_text(encoding="utf-8")
    row = next(line for line in page.splitlines() if line.startswith(f"| {table.slide_id[0]} |"))
    assert "| 80.0 |" in row, row
    assert "evaluated against other labels" in page


def test_a_rerun_with_other_settings_scores_again_instead_of_skipping(world, tmp_path):
    out = tmp_path / "sc"
    shutil.copytree(world.feats, tmp_path / "f")
    model = tmp_path / "m"
    shutil.copytree(world.model, model)
    common = ("--model", model, "--out", out, "--weights", "random", "--features", tmp_path / "f")

    def run(*extra: object) -> pd.Series:
        proc = run_cli("score", world.slide, *common, *extra)
        assert proc.returncode == 0, proc.stderr
        run.stderr = proc.stderr
        return pd.read_csv(out / "results.csv").iloc[0]

    first = run()
    assert run()["stil"] == first["stil"] and "already scored" in run.stderr
    # another threshold: the call is made again at it, not kept from the first run
    low = first["stil"] / 2
    row = run("--threshold", low)
    assert "already scored" not in run.stderr and "threshold" in run.stderr
    assert row["threshold"] == pytest.approx(low, abs=1e-4) and bool(row["stil_high"]) is True  # CSV: 4 decimals
    # an annotation for the slide (the bed was the whole tissue): scored again on it...
    ann = tmp_path / "ann"
    ann.mkdir()
    shutil.copy(world.cohort / "truth" / "synth_0000_tumorbed.geojson", ann / "synth_0000.geojson")
    row = run("--threshold", low, "--annotations", ann)
    assert "already scored" not in run.stderr and row["tumorbed_source"] == "annotation"
    assert run("--threshold", low, "--annotations", ann)["stil"] == row["stil"] and "already scored" in run.stderr
    # ... and again when that annotation file is edited
    ann_file = ann / "synth_0000.geojson"
    ann_file.write_text(ann_file.read_text() + "\n")
    run("--threshold", low, "--annotations", ann)
    assert "already scored" not in run.stderr and "tumorbed" in run.stderr
    # another slide resolution (a slide whose mpp is wrong in its file): the user's features made at the
    # other µm/px are another tile grid, kept unless --overwrite (as embed keeps them: a mistyped
    # --slide-mpp must not throw away a cohort's features)
    proc = run_cli("score", world.slide, *common, "--threshold", low, "--annotations", ann, "--slide-mpp", "0.55")
    assert proc.returncode == 1 and "another tiling" in proc.stderr and "slide at 0.5 µm/px" in proc.stderr
    run("--threshold", low, "--annotations", ann, "--slide-mpp", "0.55", "--overwrite")
    assert "already scored" not in run.stderr
    run("--threshold", low, "--annotations", ann, "--slide-mpp", "0.55")
    assert "already scored" in run.stderr
    # the model folder retrained (other folds or calibration; the final weights may be the same)
    meta = model / "model.json"
    meta.write_text(meta.read_text() + "\n")
    run("--threshold", low, "--annotations", ann, "--slide-mpp", "0.55")
    assert "already scored" not in run.stderr and "model_json_sha256" in run.stderr
    # another model (other weights) into the same folder: said, not done silently (a copy of the same
    # model under another name is the same model: test_a_model_and_detector_copied_elsewhere_...)
    run_cli("train", world.labels, "--features", world.feats, "--out", tmp_path / "other_model", "--folds", "2",
            "--epochs", "2", "--hidden", "8", "--seed", "7", check=True)
    proc = run_cli("score", world.slide, "--model", tmp_path / "other_model", "--out", out, "--weights", "random",
                   "--features", tmp_path / "f", "--threshold", low, "--annotations", ann, "--slide-mpp", "0.55")
    assert proc.returncode == 0 and "by another model" in proc.stderr and "scoring again" in proc.stderr, proc.stderr


def test_features_of_another_encoder_are_kept_unless_overwrite(world, tmp_path):
    feats = tmp_path / "f"
    shutil.copytree(world.feats, feats)  # small-cnn, random weights (seed 0)
    before = (feats / "synth_0000.h5").read_bytes()
    args = ("--encoder", "small-cnn", "--weights", "random", "--seed", "5", "--workers", "1")
    proc = run_cli("embed", world.slide, world.cohort / "slides" / "synth_0001.tiff", "--out", feats, *args)
    # (a folder of no cache but this encoder's: one usage line before any work, hunt 28d; it was an error
    # per cached slide, and the slides without a cache were embedded beside them, a mixed folder)
    check_failure(proc, 2, ("another encoder", "synth_0000.h5", "--overwrite"))
    assert (feats / "synth_0000.h5").read_bytes() == before and leftovers(feats) == []
    # score --features: the user's folder is kept too (a folder of no cache but another encoder's: one
    # usage line before any work, hunt 19a; it was the slide's error row)...
    run_cli("embed", world.slide, "--out", tmp_path / "f5", *args, check=True)
    before = (tmp_path / "f5" / "synth_0000.h5").read_bytes()
    common = ("--model", world.model, "--weights", "random", "--out", tmp_path / "sc", "--features", tmp_path / "f5")
    proc = run_cli("score", world.slide, *common)
    check_failure(proc, 2, ("another encoder", "synth_0000.h5", "--overwrite"))
    assert (tmp_path / "f5" / "synth_0000.h5").read_bytes() == before
    # ... and replaced when asked
    proc = run_cli("score", world.slide, *common, "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "f5" / "synth_0000.h5").read_bytes() != before


def test_a_precomputed_bed_of_another_scan_is_refused(world, tmp_path):
    beds = tmp_path / "beds"
    run_cli("tumorbed", "apply", world.feats / "synth_0000.h5", "--out", beds, check=True)
    other = tmp_path / "f"
    run_cli("embed", world.twin, "--out", other, "--encoder", "small-cnn", "--weights", "random", check=True)
    proc = run_cli("score", world.twin, "--model", world.model, "--out", tmp_path / "sc", "--weights", "random",
                   "--features", other, "--tumorbed-beds", beds)
    check_failure(proc, 1, ("beds", "another slide file", "tumorbed apply"))


def test_score_never_removes_files_it_did_not_write(world, tmp_path):
    feats = tmp_path / "feats"
    shutil.copytree(world.feats, feats)
    before = (feats / "synth_0000.h5").read_bytes()
    args = ("--model", world.model, "--weights", "random")
    # a feature cache where the score file would go: refused before any work, and left as it was
    # (another command's folder: refused as a whole, before results.csv or anything else is written)
    check_failure(run_cli("score", world.slide, *args, "--out", feats), 2, ("written by 'weakstil embed'",
                                                                             "its own --out"))
    assert not (feats / "results.csv").exists()
    check_failure(run_cli("score", world.slide, *args, "--out", feats, "--features", feats), 2,
                  ("also the --features folder",))
    assert (feats / "synth_0000.h5").read_bytes() == before
    # a pathologist's annotation where the tile GeoJSON would go, in --annotations or any other folder
    notes = tmp_path / "notes"
    notes.mkdir()
    drawn = world.cohort / "truth" / "synth_0000_tumorbed.geojson"
    shutil.copy(drawn, notes / "synth_0000.geojson")
    check_failure(run_cli("score", world.slide, *args, "--annotations", notes, "--out", notes), 2,
                  ("also the --annotations folder",))
    check_failure(run_cli("tumorbed", "apply", world.feats / "synth_0000.h5", "--annotations", notes, "--out", notes),
                  2, ("also the --annotations folder",))
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(drawn, other / "synth_0000.geojson")
    check_failure(run_cli("score", world.slide, *args, "--annotations", notes, "--out", other), 1,
                  ("synth_0000.geojson", "an annotation?"))
    # (score's error row made `other` a scores folder, which apply now refuses whole: a plain one)
    check_failure(run_cli("tumorbed", "apply", world.feats / "synth_0000.h5", "--out", other), 2,
                  ("is the scores folder of 'weakstil score'",))
    plain = tmp_path / "plain"
    plain.mkdir()
    shutil.copy(drawn, plain / "synth_0000.geojson")
    check_failure(run_cli("tumorbed", "apply", world.feats / "synth_0000.h5", "--out", plain), 1,
                  ("synth_0000.geojson", "an annotation?"))
    for folder in (notes, other, plain):
        assert (folder / "synth_0000.geojson").read_bytes() == drawn.read_bytes()


def test_a_model_on_seeded_random_features_scores_without_repeating_weights_random(world, tmp_path):
    """The model records the encoder weights' hash: the seeded random weights are recognised (score
    asked for --weights random again, 'has no published weights'); other weights still are not."""
    out = tmp_path / "scores"
    proc = run_cli("score", world.slide, "--model", world.model, "--out", out)
    assert proc.returncode == 0, proc.stderr
    row = pd.read_csv(out / "results.csv").iloc[0]
    assert row["status"] == "ok"
    from PIL import Image  # the heatmap says what made it (text chunks), as the .h5 does

    with Image.open(out / "synth_0000_heatmap.png") as png:
        made = json.loads(png.info["Comment"])
        assert made["slide_id"] == "synth_0000" and png.info["Software"].startswith("WeakSTIL ")
    assert made["model_id"] == row["model_id"] and made["stil"] == pytest.approx(row["stil"], abs=1e-4)
    meta = json.loads((world.model / "model.json").read_text())
    meta["encoder"]["weights_sha256"] = "0" * 64
    other = tmp_path / "other_model"
    shutil.copytree(world.model, other)
    (other / "model.json").write_text(json.dumps(meta))
    check_failure(run_cli("score", world.slide, "--model", other, "--out", tmp_path / "other"), 1,
                  ("no published weights",))


def test_a_slide_whose_output_was_deleted_or_damaged_is_redone(world, tmp_path):
    """The GeoJSON a command wrote says so, so with its .h5 deleted or truncated the rerun redoes
    the slide (it had taken its own GeoJSON for an annotation and refused, even with --overwrite)."""
    from weakstil.annotations import geojson_written_by

    args = ("--model", world.model, "--weights", "random")
    out, beds = tmp_path / "scores", tmp_path / "beds"
    assert run_cli("score", world.slide, *args, "--out", out).returncode == 0
    assert run_cli("tumorbed", "apply", world.feats / "synth_0000.h5", "--out", beds).returncode == 0
    assert geojson_written_by(out / "synth_0000.geojson") == "weakstil score"
    assert geojson_written_by(beds / "synth_0000.geojson") == "weakstil tumorbed apply"
    assert geojson_written_by(world.cohort / "truth" / "synth_0000_tumorbed.geojson") is None
    (out / "synth_0000.h5").unlink()
    with open(beds / "synth_0000.h5", "r+b") as fh:
        fh.truncate(4000)
    done = run_cli("score", world.slide, *args, "--out", out)
    assert done.returncode == 0, done.stderr
    assert run_cli("tumorbed", "apply", world.feats / "synth_0000.h5", "--out", beds).returncode == 0
    rows = pd.read_csv(out / "results.csv")
    assert list(rows["status"]) == ["ok"] and (out / "synth_0000.h5").is_file()
    # trained and scored over the whole tissue (no bed anywhere): not unlike its training slides
    assert "bed_unlike_training" not in str(rows["qc"].iloc[0])
    record = json.loads((world.model / "model.json").read_text())["training"]["tumorbeds"]
    assert set(record["slides"]) == {"tissue"}, record  # the resolver's record (h44d): every slide over its tissue
    import h5py
    with h5py.File(beds / "synth_0000.h5", "r") as f:
        assert f["tumorbed_mask"][:].any()
    # the score's tile GeoJSON is not the bed's: apply into the score folder still refuses it (whole,
    # before any work: another command's folder)
    (out / "synth_0000.h5").unlink()
    check_failure(run_cli("tumorbed", "apply", world.feats / "synth_0000.h5", "--out", out), 2,
                  ("is the scores folder of 'weakstil score'", "a folder of its own"))
    assert not (out / "synth_0000.h5").exists()


# --- 5. --overwrite replaces only what the command wrote ---------------------------------------------------
def test_pretrain_and_tumorbed_train_never_write_into_another_commands_folder(world, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(world.model, model)
    before = {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()}
    bed_args = ("tumorbed", "train", "--features", world.feats, "--annotations", world.cohort / "truth", "--out")
    check_failure(run_cli(*bed_args, model), 2, ("m", "written by 'weakstil train'", "choose a new --out"))
    check_failure(run_cli("pretrain", world.slide, "--out", model, "--steps", "1"), 2,
                  ("written by 'weakstil train'", "choose a new --out"))
    assert {p.name: p.read_bytes() for p in model.iterdir() if p.is_file()} == before
    # a detector folder of its own (a copy of one `tumorbed train` made) is replaced only with --overwrite
    detector = tmp_path / "d"
    shutil.copytree(_trained_detector(world), detector)
    check_failure(run_cli(*bed_args, detector), 2, ("already holds a 'weakstil tumorbed train' output", "--overwrite"))
    assert run_cli(*bed_args, detector, "--overwrite").returncode == 0


def test_train_overwrite_replaces_its_own_model_only(world, tmp_path):
    model = tmp_path / "m"
    shutil.copytree(world.model, model)
    (model / "extra.txt").write_text("x")
    proc = run_cli("train", world.labels, "--features", world.feats, "--out", model, "--overwrite", "--folds", "1",
                   "--epochs", "1", "--hidden", "8")
    assert proc.returncode == 0, proc.stderr
    assert not (model / "extra.txt").exists() and json.loads((model / MARKER).read_text())["command"] == "train"
    # a --folds 1 model has no fold models: --scoring ensemble says it scores with the final one (hunt 8b #3)
    proc = run_cli("evaluate", world.labels, "--model", model, "--features", world.feats, "--out", tmp_path / "ev",
                   "--scoring", "ensemble")
    assert proc.returncode == 0 and "no fold models" in " ".join(proc.stderr.split())
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["scoring"] == "final"
    stranger = tmp_path / "stranger"
    stranger.mkdir()
    (stranger / "thesis.docx").write_text("years of work")
    proc = run_cli("train", world.labels, "--features", world.feats, "--out", stranger, "--overwrite")
    check_failure(proc, 2, ("--overwrite", "stranger"))
    assert (stranger / "thesis.docx").read_text() == "years of work"
    # without --overwrite: the error does not offer --overwrite where it would be refused
    proc = run_cli("train", world.labels, "--features", world.feats, "--out", stranger)
    check_failure(proc, 2, ("already exists", "not a folder 'weakstil train' wrote", "choose a new --out"),
                  never=("pass --overwrite",))
    proc = run_cli("train", world.labels, "--features", world.feats, "--out", model)  # its own: offered
    check_failure(proc, 2, ("already exists", "pass --overwrite"))


def test_a_file_of_another_kind_is_not_replaced(world, tmp_path):
    out = tmp_path / "mixed"
    run_cli("tile", world.slide, "--out", out, check=True)
    proc = run_cli("embed", world.slide, "--out", out, "--encoder", "small-cnn", "--weights", "random")
    check_failure(proc, 2, ("tiles folder of 'weakstil tile'", "a folder of its own"))  # the folder: fault hunt 7A #3
    copied = tmp_path / "copied"  # a tiles file copied among feature caches: refused by its kind
    copied.mkdir()
    shutil.copy(out / "synth_0000.h5", copied / "synth_0000.h5")
    proc = run_cli("embed", world.slide, "--out", copied, "--encoder", "small-cnn", "--weights", "random")
    check_failure(proc, 1, ("tiles file", "not replacing", "a folder of their own for the feature caches"))
    for folder in (out, copied):
        with h5py.File(folder / "synth_0000.h5") as f:
            assert f.attrs["kind"] == "tiles"


# --- 6. the model folder (point 9 of the issue) --------------------------------------------------------
def test_model_json_is_strict_json_with_an_absolute_cohort_and_files_follow_the_umask(world):
    def no_nan(name):
        raise AssertionError(f"bare {name} in model.json")

    meta = json.loads((world.model / "model.json").read_text(), parse_constant=no_nan)
    cohort = Path(meta["training"]["cohort"])
    assert cohort.is_absolute() and cohort == (world.built / "cohort" / "labels.csv").resolve()  # train's CSV
    umask = os.umask(0)
    os.umask(umask)
    for name in ("model.safetensors", "model.json"):
        assert (world.model / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


def test_model_json_has_null_where_a_metric_is_undefined(tmp_path):
    from weakstil.atomic import write_json

    write_json(tmp_path / "m.json", {"auc": float("nan"), "r2": np.float32("inf"), "ok": 1.5})
    assert json.loads((tmp_path / "m.json").read_text(), parse_constant=lambda c: 1 / 0) == {
        "auc": None, "r2": None, "ok": 1.5}


def test_report_made_elsewhere_finds_the_slides(world, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    proc = run_cli("report", "--model", world.model, "--out", "rep")
    assert proc.returncode == 0, proc.stderr
    assert "no heatmap" not in proc.stderr and len(list((tmp_path / "rep" / "slides").glob("*_heatmap.png"))) == 3


# --- 7. disk full, read-only, interrupted ---------------------------------------------------------------
@pytest.fixture
def tiny_disk(tmp_path):
    """A 100 KB file system (tmpfs; needs root): room for one small feature cache."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs (not root)")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


def test_disk_full_embed_is_one_line_and_stops_the_batch(world, tiny_disk):
    slides = sorted((world.cohort / "slides").glob("*.tiff"))
    out = tiny_disk / "feats"
    # a fresh interpreter: a segfault must show as one (it did, in HDF5)
    proc = subprocess.run([sys.executable, "-m", "weakstil", "embed", *map(str, slides), "--out", str(out),
                           "--encoder", "small-cnn", "--weights", "random", "--workers", "1"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1, proc.stderr
    errors = error_lines(proc.stderr)
    assert any("No space left on device" in e for e in errors) and "Traceback" not in proc.stderr
    assert any("stopped after" in e for e in errors)  # the rest of the batch is not tried
    left = int(next(e for e in errors if "stopped after" in e).split("; ")[1].split()[0])
    if left:  # every input counted in the summary (it said '1 of 3' for 4)
        assert f"of {len(slides)} inputs failed, {left} not processed" in proc.stderr
    assert leftovers(tiny_disk) == []
    for path in out.glob("*.h5"):  # what was written is whole
        with h5py.File(path) as f:
            assert f.attrs["complete"] == 1


def test_disk_full_score_keeps_results_csv_whole(world, tiny_disk):
    out = tiny_disk / "sc"
    proc = run_cli("score", world.slide, world.cohort / "slides" / "synth_0001.tiff", "--model", world.model, "--out",
                   out, "--weights", "random", "--features", world.feats)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    errors = error_lines(proc.stderr)
    assert errors and "No space left on device" in errors[0] and "stopped after" in proc.stderr
    if (out / "results.csv").exists():  # whatever was written can be read
        assert set(pd.read_csv(out / "results.csv")["status"]) <= {"ok", "error"}
    assert leftovers(tiny_disk) == []


def test_read_only_output_is_one_line(world, tmp_path):
    mount = tmp_path / "ro"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs (not root)")
    try:
        proc = run_cli("tile", world.slide, "--out", mount / "out")
        check_failure(proc, 2, ("--out", "read-only file system", "Fix: choose a writable output directory"), never=("--help",))
    finally:
        subprocess.run(["umount", str(mount)], capture_output=True)


def test_ctrl_c_is_one_line_and_leaves_nothing(world, tmp_path, monkeypatch):
    import weakstil.tiles

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(weakstil.tiles, "write_tiles_h5", interrupted)
    out = tmp_path / "out"
    proc = run_cli("tile", world.slide, "--out", out)
    check_failure(proc, 130, ("interrupted",))
    assert not (out / "synth_0000.h5").exists() and not (out / "synth_0000_tiles.png").exists()
    assert leftovers(tmp_path) == []


def test_an_interrupted_synth_continues_where_it_stopped(tmp_path, monkeypatch):
    """synth said 'a rerun continues where this one stopped', then refused its own half-written
    folder: the folder's marker was written only at the end."""
    import weakstil.synth.generator as generator

    real, made = generator.generate_slide, []

    def stopped_after_one(*args, **kwargs):
        if made:
            raise KeyboardInterrupt
        made.append(real(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(generator, "generate_slide", stopped_after_one)
    out = tmp_path / "cohort"
    small = ("--slides", "2", "--size-mm", "0.6", "0.6")
    check_failure(run_cli("synth", out, *small), 130, ("interrupted",))
    first = (out / "slides" / "synth_0000.tiff").read_bytes()
    monkeypatch.setattr(generator, "generate_slide", real)
    proc = run_cli("synth", out, *small)
    assert proc.returncode == 0, proc.stderr
    assert "exists" in proc.stderr and (out / "slides" / "synth_0000.tiff").read_bytes() == first
    assert len(pd.read_csv(out / "labels.csv")) == 2


# --- 8. runs sharing an --out: locks -----------------------------------------------------------------------
def _weakstil(*args: object) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "weakstil", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_two_embeds_on_one_out_do_each_slide_once(world, tmp_path):
    out = tmp_path / "feats"
    slides = sorted((world.cohort / "slides").glob("*.tiff"))[:2]
    args = ("embed", *slides, "--out", out, "--encoder", "small-cnn", "--weights", "random", "--workers", "1")
    runs = [_weakstil(*args) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in runs]
    for p, (_, err) in zip(runs, results):
        assert p.returncode == 0 and error_lines(err) == [] and "Traceback" not in err, err
    text = "".join(err for _, err in results)
    assert text.count("tiles x 256") == len(slides)  # each slide embedded by one run, skipped by the other
    # per-slide lines only: each run's closing line also says how many were "up to date: skipped"
    assert text.count(": up to date (") == len(slides)
    assert leftovers(tmp_path) == []
    for path in slides:
        with h5py.File(out / f"{path.stem}.h5") as f:
            assert f.attrs["complete"] == 1


def test_two_scores_on_one_out_share_the_slides_and_results_csv(world, tmp_path):
    feats = tmp_path / "f"
    shutil.copytree(world.feats, feats)
    slides = sorted((world.cohort / "slides").glob("*.tiff"))[:2]
    args = ("score", *slides, "--model", world.model, "--out", tmp_path / "sc", "--weights", "random", "--features",
            feats, "--workers", "1")
    runs = [_weakstil(*args) for _ in range(2)]
    results = [p.communicate(timeout=600) for p in runs]
    for p, (_, err) in zip(runs, results):
        assert p.returncode == 0 and error_lines(err) == [] and "Traceback" not in err, err
    text = "".join(err for _, err in results)
    assert text.count("already scored") == len(slides)  # each slide scored by one run only
    rows = pd.read_csv(tmp_path / "sc" / "results.csv")
    assert sorted(rows["slide_id"]) == [p.stem for p in slides] and set(rows["status"]) == {"ok"}
    assert leftovers(tmp_path) == []


def test_a_row_another_run_scored_again_meanwhile_stays_beside_its_files(world, tmp_path):
    """A run rewrote results.csv with all of its own rows after every slide, so a slide another
    run (another model or threshold) had scored again in between got this run's row back beside the
    other run's files. And a rescored slide keeps the columns a user added to its row."""
    import h5py

    from weakstil.score import ScoreOptions, score_batch

    slides = sorted((world.cohort / "slides").glob("*.tiff"))
    out, feats = tmp_path / "out", tmp_path / "feats"
    shutil.copytree(world.feats, feats)
    other = ("--model", world.model, "--weights", "random", "--out", out, "--features", feats, "--threshold", "40")

    def meanwhile(slide_id: str, row: dict) -> None:
        if slide_id == slides[1].stem:  # slide 0 is done: another run scores it again before slide 2
            assert run_cli("score", slides[0], *other).returncode == 0

    opts = ScoreOptions(model=world.model, out=out, features=feats, weights="random", workers=1)
    assert [r["status"] for r in score_batch(slides, opts, on_slide=meanwhile, progress=False)] == ["ok"] * 3
    rows = pd.read_csv(out / "results.csv").set_index("slide_id")
    with h5py.File(out / f"{slides[0].stem}.h5", "r") as f:
        assert float(f.attrs["threshold"]) == 40.0
    assert rows.loc[slides[0].stem, "threshold"] == 40.0 and rows.loc[slides[2].stem, "threshold"] == 30.0
    rows["comment"] = ["checked", "", ""]
    rows.reset_index().to_csv(out / "results.csv", index=False)
    assert run_cli("score", slides[0], *other[:-2], "--overwrite").returncode == 0
    rows = pd.read_csv(out / "results.csv").set_index("slide_id")
    assert rows.loc[slides[0].stem, "comment"] == "checked" and rows.loc[slides[0].stem, "threshold"] == 30.0


def test_overwrite_runs_side_by_side_do_not_redo_what_the_other_did(world, tmp_path):
    """Two 'score --overwrite' runs over one slide list each scored every slide (hunt 34k: 12 scorings
    of 6 slides, no speed-up): a slide the other run had scored after this batch began was scored
    again. Now it is skipped; the slides nobody scored meanwhile are still redone."""
    from weakstil.score import ScoreOptions, score_batch

    slides = sorted((world.cohort / "slides").glob("*.tiff"))
    out = tmp_path / "out"
    opts = {"model": world.model, "out": out, "features": world.feats, "weights": "random", "workers": 1}
    score_batch(slides, ScoreOptions(**opts), progress=False)

    def meanwhile(slide_id: str, row: dict) -> None:
        if slide_id == slides[0].stem:  # another --overwrite run scores the last slide now
            assert score_batch(slides[2:], ScoreOptions(**opts, overwrite=True), progress=False).skipped == []

    rows = score_batch(slides, ScoreOptions(**opts, overwrite=True), on_slide=meanwhile, progress=False)
    assert rows.skipped == [slides[2].stem]  # old: [] (scored twice)
    assert [r["status"] for r in rows] == ["ok"] * 3


def test_slides_another_run_holds_past_the_lock_timeout_are_each_said_and_the_rest_go_on(world, tmp_path,
                                                                                        monkeypatch):
    """With WEAKSTIL_LOCK_TIMEOUT, the first put-off slide another (hung) run held ended the batch
    (hunt 34k): a BusyError out of score_batch, no '4 of 6 scored' summary, and the put-off slides
    after it were neither scored nor named. Now each held slide is an error row of this batch (its
    results.csv row is the holder's to write) and the free slides are scored."""
    from weakstil.score import ScoreOptions, score_batch

    slides = sorted((world.cohort / "slides").glob("*.tiff"))
    out = tmp_path / "out"
    out.mkdir()
    held = [str(out / f".{p.stem}.h5.lock") for p in slides[:2]]
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; fs = [open(p, 'w') for p in sys.argv[1:]]; "
                               "[fcntl.flock(f, fcntl.LOCK_EX) for f in fs]; print('held', flush=True); time.sleep(60)",
                               *held], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("WEAKSTIL_LOCK_TIMEOUT", "0.3")
        opts = ScoreOptions(model=world.model, out=out, features=world.feats, weights="random", workers=1)
        rows = score_batch(slides, opts, progress=False)  # old: BusyError for slide 0; slide 1 never named
    finally:
        holder.kill()
        holder.wait()
    assert {r["slide_id"]: r["status"] for r in rows} == {slides[0].stem: "error", slides[1].stem: "error",
                                                         slides[2].stem: "ok"}
    assert all("WEAKSTIL_LOCK_TIMEOUT" in r["error"] for r in rows[1:])
    assert list(pd.read_csv(out / "results.csv")["slide_id"]) == [slides[2].stem]


def _lock_fails_then_disk_full(monkeypatch, first_stem: str) -> None:
    """The slide ``first_stem``'s lock file cannot be made (a name too long) and results.csv meets a full disk."""
    import errno

    import weakstil.locks as locks

    real_open = locks._open_lock

    def open_lock(path):
        if first_stem in path.name:
            raise OSError(errno.ENAMETOOLONG, "File name too long", str(path))
        return real_open(path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(locks, "_open_lock", open_lock)
    monkeypatch.setattr("weakstil.score.write_results", full)


def test_a_full_disk_at_a_lock_failed_slides_error_row_stops_the_batch(world, tmp_path, monkeypatch):
    """A slide whose lock file cannot be made (a name too long) gets its error row in results.csv and the rest
    go on (helper h42b); when that row cannot be written for a full disk, the batch stops there, as after a
    scored slide: it scored the next slide first (minutes of a large one) and then stopped (helper h42f)."""

    from weakstil.score import ScoreOptions, score_batch

    slides = sorted((world.cohort / "slides").glob("*.tiff"))
    _lock_fails_then_disk_full(monkeypatch, slides[0].stem)
    said: list[str] = []
    out = tmp_path / "out"
    opts = ScoreOptions(model=world.model, out=out, features=world.feats, weights="random", workers=1)
    rows = score_batch(slides, opts, progress=False, say_error=said.append)
    assert [(r["slide_id"], r["status"]) for r in rows] == [(slides[0].stem, "error")]  # old: slide 1 scored too
    assert not (out / f"{slides[1].stem}.h5").exists()
    assert any("No space left" in line for line in said)
    assert any(line.startswith("stopped after") and f"{len(slides) - 1} more slide(s) not scored" in line
               for line in said), said


def test_after_a_full_disk_stops_the_batch_slides_another_run_holds_are_not_waited_for(world, tmp_path, monkeypatch):
    """As above, with the other slides held by another run: each was waited for after the batch had stopped (up
    to WEAKSTIL_LOCK_TIMEOUT, or as long as that run took), then an error line of its own, and no "stopped after"
    line (helper h43d). Now the batch ends at the full disk."""

    from weakstil.score import ScoreOptions, score_batch

    slides = sorted((world.cohort / "slides").glob("*.tiff"))
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", (
        "import fcntl, os, sys, time\n"
        "fds = [os.open(p, os.O_RDWR | os.O_CREAT) for p in sys.argv[1:]]\n"
        "for fd in fds: fcntl.flock(fd, fcntl.LOCK_EX)\n"
        "print('held', flush=True); time.sleep(600)"), *(str(out / f".{p.stem}.h5.lock") for p in slides[1:])],
        stdout=subprocess.PIPE, text=True)
    _lock_fails_then_disk_full(monkeypatch, slides[0].stem)
    monkeypatch.setenv("WEAKSTIL_LOCK_TIMEOUT", "1")
    said: list[str] = []
    try:
        assert holder.stdout.readline().strip() == "held"
        opts = ScoreOptions(model=world.model, out=out, features=world.feats, weights="random", workers=1)
        rows = score_batch(slides, opts, progress=False, say_error=said.append)
    finally:
        holder.kill()
        holder.wait()
    assert [(r["slide_id"], r["status"]) for r in rows] == [(slides[0].stem, "error")]  # old: every slide, waited
    assert not any("WEAKSTIL_LOCK_TIMEOUT" in line for line in said), said
    assert any(line.startswith("stopped after") and f"{len(slides) - 1} more slide(s) not scored" in line
               for line in said), said


def test_a_lock_left_by_kill_9_is_taken_over(world, tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from weakstil.locks import OutputLock; "
        f"lock = OutputLock({str(out / 'synth_0000.h5')!r}); lock.acquire(); print('held', flush=True); "
        "time.sleep(600)")], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert holder.stdout.readline().strip() == "held"
    from weakstil.locks import OutputLock

    assert not OutputLock(out / "synth_0000.h5").acquire(blocking=False)  # really held
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    assert (out / ".synth_0000.h5.lock").exists()  # left behind by the killed run...
    t0 = time.perf_counter()
    proc = run_cli("tile", world.slide, "--out", out)  # ...and taken over at once
    assert proc.returncode == 0 and time.perf_counter() - t0 < 120, proc.stderr
    assert (out / "synth_0000.h5").is_file() and leftovers(tmp_path) == []


def test_a_hung_lock_holder_is_waited_for_only_as_long_as_asked(world, tmp_path, monkeypatch):
    """A holder that hangs (SIGSTOP: the lock stays held) used to block a run for good: now the
    wait is noted, and WEAKSTIL_LOCK_TIMEOUT ends it with one line naming the holder."""
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from weakstil.locks import OutputLock; "
        f"lock = OutputLock({str(out / 'synth_0000.h5')!r}); lock.acquire(); print('held', flush=True); "
        "time.sleep(600)")], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        holder.send_signal(signal.SIGSTOP)
        monkeypatch.setenv("WEAKSTIL_LOCK_TIMEOUT", "2")
        monkeypatch.setattr("weakstil.locks.NOTE_EVERY_S", 0.5)
        t0 = time.perf_counter()
        proc = run_cli("tile", world.slide, "--out", out)
        assert time.perf_counter() - t0 < 60
        check_failure(proc, 1, (f"pid {holder.pid}", "WEAKSTIL_LOCK_TIMEOUT"))
        assert "still waiting" in proc.stderr
        assert not (out / "synth_0000.h5").exists()
        monkeypatch.setenv("WEAKSTIL_LOCK_TIMEOUT", "soon")
        check_failure(run_cli("tile", world.slide, "--out", out), 2, ("WEAKSTIL_LOCK_TIMEOUT='soon'",))
    finally:
        holder.kill()
        holder.wait()


def test_a_live_temporary_file_of_another_run_is_kept(tmp_path):
    from weakstil.atomic import remove_stale_temps, temp_path

    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:
        mine = temp_path(tmp_path / "S.h5")
        live = mine.with_name(mine.name.replace(f".{os.getpid()}.", f".{sleeper.pid}."))
        dead = mine.with_name(mine.name.replace(f".{os.getpid()}.", ".999999999."))
        old = tmp_path / ".S.h5.deadbeef.tmp"  # the name older versions used
        for p in (live, dead, old):
            p.write_bytes(b"x")
        assert remove_stale_temps(tmp_path / "S.h5") == 2
        assert live.exists() and not dead.exists() and not old.exists()
    finally:
        sleeper.kill()
        sleeper.wait()


def test_a_name_that_fits_is_not_refused_for_its_temporary_name(tmp_path):
    """A slide name of ~230 bytes was refused ('file name too long') because the temporary name
    adds ~25 bytes; its temporary name now carries a hash instead, and is still cleaned up."""
    from weakstil.atomic import NAME_MAX, atomic_path, remove_stale_temps, temp_path

    final = tmp_path / ("é" * 60 + "x" * 120 + "_slide.h5")  # 249 bytes in UTF-8
    assert len(final.name.encode()) <= NAME_MAX < len(final.name.encode()) + 25
    with atomic_path(final) as tmp:
        assert len(tmp.name.encode()) <= NAME_MAX
        tmp.write_bytes(b"x")
    assert final.read_bytes() == b"x"
    other = tmp_path / ("é" * 60 + "x" * 120 + "_slide.png")  # the same start: another hash
    assert temp_path(other).name.split(".")[1] != temp_path(final).name.split(".")[1]
    dead = temp_path(final)
    dead = dead.with_name(dead.name.replace(f".{os.getpid()}.", ".9999998."))  # above any pid_max
    dead.write_bytes(b"x")
    assert remove_stale_temps(final) == 1 and not dead.exists() and final.exists()
    short = temp_path(tmp_path / "S.h5")
    assert short.name.startswith(".S.h5.")  # short names keep their readable temporary name


def test_a_busy_model_folder_is_one_line(world, tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time; from weakstil.locks import hold_folder; "
        f"lock = hold_folder({str(tmp_path / 'm')!r}, 'train'); print('held', flush=True); time.sleep(600)")],
        stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = run_cli("train", world.labels, "--features", world.feats, "--out", tmp_path / "m", "--folds", "2")
    finally:
        holder.kill()
        holder.wait()
    check_failure(proc, 1, ("another weakstil run", f"pid {holder.pid}", "another --out"))
    assert not (tmp_path / "m").exists()


# --- the matrix's size -------------------------------------------------------------------------------------
def test_the_matrix_is_large():
    assert len(USAGE) + len(BAD) >= 100


def test_a_bed_that_covers_no_tile_and_a_model_scored_without_its_beds(world, tmp_path):
    """Fault hunt 4: train took an annotation that covers no tile as the whole tissue and recorded
    it as an annotation; tumorbed train learnt that slide as 'no tumour' without a word; evaluate
    scored a bed-trained model over the whole tissue and only metrics.json said so; the report
    hid the slides evaluate left out."""
    beds = tmp_path / "beds"
    shutil.copytree(world.cohort / "truth", beds, ignore=shutil.ignore_patterns("*.h5"))
    corner = [[[1, 1], [30, 1], [30, 30], [1, 30], [1, 1]]]  # smaller than a tile: covers none
    (beds / "synth_0001_tumorbed.geojson").write_text(json.dumps({"type": "FeatureCollection", "features": [
        {"type": "Feature", "geometry": {"type": "Polygon", "coordinates": corner}, "properties": {}}]}))
    model = tmp_path / "model"
    proc = run_cli("train", world.labels, "--features", world.feats, "--out", model, "--folds", "2", "--epochs", "2",
                   "--hidden", "8", "--annotations", beds)
    assert proc.returncode == 0, proc.stderr
    assert "left out of training" in proc.stderr and "synth_0001" in proc.stderr
    training = json.loads((model / "model.json").read_text())["training"]
    assert training["n_slides"] == 2 and training["tumorbeds"]["slides"] == {"annotation": 2}
    assert training["tumorbeds"]["left_out_no_tile_in_bed"] == ["synth_0001"]

    detector = run_cli("tumorbed", "train", "--features", world.feats, "--annotations", beds, "--out", tmp_path / "d",
                       "--no-augment")
    assert detector.returncode == 0, detector.stderr
    assert "cover no tissue tile" in detector.stderr and "synth_0001_tumorbed.geojson" in detector.stderr
    assert json.loads((tmp_path / "d" / "model.json").read_text())["model_id"] == "tumorbed-2slides"

    whole = run_cli("evaluate", world.labels, "--model", model, "--features", world.feats, "--out", tmp_path / "e1")
    assert whole.returncode == 0, whole.stderr
    assert "was trained on tumour beds (2 annotation)" in whole.stderr
    assert json.loads((tmp_path / "e1" / "metrics.json").read_text())["beds_unlike_training"] == 3
    with_beds = run_cli("evaluate", world.labels, "--model", model, "--features", world.feats, "--out", tmp_path / "e2",
                        "--annotations", beds)
    assert with_beds.returncode == 0 and "trained on tumour beds" not in with_beds.stderr
    metrics = json.loads((tmp_path / "e2" / "metrics.json").read_text())
    assert metrics["beds_unlike_training"] == 0 and metrics["n"] == 2 and len(metrics["excluded"]) == 1
    assert metrics["pearson_r"] is None or np.isnan(metrics["pearson_r"])  # 2 points: no correlation to speak of
    for evaluation, says in (("e1", "3 of them scored over the whole tissue"), ("e2", "1 more slide(s) left out")):
        report = run_cli("report", "--model", model, "--out", tmp_path / f"r_{evaluation}", "--evaluation",
                         tmp_path / evaluation)
        assert report.returncode == 0, report.stderr
        assert says in (tmp_path / f"r_{evaluation}" / "report.md").read_text()
    # a cohort CSV whose slide_id is not the file's name: the features are found by the file's name,
    # and now so are its annotation (it was scored over the whole tissue without a word)
    renamed = pd.read_csv(world.labels)
    renamed["path"] = [str((world.cohort / p).resolve()) for p in renamed["path"]]
    renamed.loc[0, "slide_id"] = "patientA"
    renamed.to_csv(tmp_path / "renamed.csv", index=False)
    proc = run_cli("evaluate", tmp_path / "renamed.csv", "--model", model, "--features", world.feats, "--out",
                   tmp_path / "e3", "--annotations", beds)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "e3" / "metrics.json").read_text())["tumorbeds"]["slides"] == {"annotation": 3}


def test_a_model_trained_on_another_stain_estimate_is_refused(world, tmp_path):
    """Stain estimate 4 (tissue tiles at the model's µm/px, not a stored 4 µm/px level) moves every
    tile measurement: a model trained on features of an older estimate (its model.json has no
    ``features`` record) would score the new features silently. It is refused with the fix; the
    model itself records its features' estimate and scores."""
    from weakstil.stain import STAIN_ESTIMATE_VERSION

    model = tmp_path / "old_model"
    shutil.copytree(world.model, model)
    meta = json.loads((world.model / "model.json").read_text())
    assert meta["features"]["stain_estimate_version"] == STAIN_ESTIMATE_VERSION and meta["features"]["tilestats_version"] is not None
    del meta["features"]
    (model / "model.json").write_text(json.dumps(meta))
    proc = run_cli("score", world.slide, "--model", model, "--out", tmp_path / "s", "--features", world.feats,
                   "--device", "cpu")
    line = check_failure(proc, 1, (f"stain was estimated by method {STAIN_ESTIMATE_VERSION} but the model was "
                                   "trained on features whose stain was estimated by method 3 or older",
                                   "Fix: train the model again (weakstil train) on features embedded by this"))
    assert "model.json" not in line or "old_model" in line
    ok = run_cli("score", world.slide, "--model", world.model, "--out", tmp_path / "ok", "--features", world.feats,
                 "--device", "cpu")
    assert ok.returncode == 0, ok.stderr


def test_a_model_and_detector_copied_elsewhere_do_not_score_finished_slides_again(world, tmp_path):
    """A lab moves its model to shared storage: the same weights and detector (by hash, not by folder
    name or path) keep the finished scores (every slide was scored again; hunt 9c)."""
    out, feats = tmp_path / "sc", tmp_path / "f"
    shutil.copytree(world.feats, feats)
    detector = _detector(world, tmp_path)
    proc = run_cli("score", world.slide, "--model", world.model, "--tumorbed", detector, "--out", out,
                   "--features", feats)
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out / "synth_0000.h5") as f:  # the call as a real bool (it was the text 'True'/'False')
        assert isinstance(f.attrs["stil_high"], (bool, np.bool_))
    moved_model, moved_detector = tmp_path / "shared" / "model_v1", tmp_path / "shared" / "bed"
    shutil.copytree(world.model, moved_model)
    shutil.copytree(detector, moved_detector)
    proc = run_cli("score", world.slide, "--model", moved_model, "--tumorbed", moved_detector, "--out", out,
                   "--features", feats)
    assert proc.returncode == 0 and "already scored" in proc.stderr, proc.stderr
    # another detector's weights are another request: scored again
    (tmp_path / "other").mkdir()
    retrained = _detector(world, tmp_path / "other")
    (retrained / "model.json").write_text((retrained / "model.json").read_text() + "\n")
    proc = run_cli("score", world.slide, "--model", moved_model, "--tumorbed", retrained, "--out", out,
                   "--features", feats)
    assert proc.returncode == 0 and "already scored" not in proc.stderr, proc.stderr


def test_a_pattern_that_matched_nothing_leaves_no_row_once_it_matches(world, tmp_path):
    """`score 'slides/*.tiff'` on an empty folder: one error line for the pattern and no row (hunt 31d: no
    results.csv at all); once the folder has the slide, only its row (the pattern's row stayed beside the
    slide's own row for good until hunt 9c, and after a typo'd pattern until hunt 31d)."""
    out, folder = tmp_path / "sc", tmp_path / "slides"
    folder.mkdir()
    common = ("--model", world.model, "--out", out, "--features", tmp_path / "f")
    first = run_cli("score", folder / "*.tiff", *common)
    assert first.returncode == 1 and "no file matches this pattern" in first.stderr
    assert not (out / "results.csv").exists()
    shutil.copy(world.slide, folder / "synth_0000.tiff")
    shutil.copytree(world.feats, tmp_path / "f")
    proc = run_cli("score", folder / "*.tiff", *common)
    assert proc.returncode == 0, proc.stderr
    rows = pd.read_csv(out / "results.csv")
    assert list(rows["slide_id"]) == ["synth_0000"] and list(rows["status"]) == ["ok"]


def test_a_score_file_missing_a_dataset_is_scored_again_not_skipped(world, tmp_path):
    """A score .h5 whose 'coords' dataset was lost (a hand edit, a damaged copy) kept its attributes, so a
    rerun said "already scored (ok), skipped", while the viewer's error on the file said "run 'weakstil score'
    again for this slide": the fix it named did nothing (corruption sweep, hunt 37n). Now it is scored again."""
    import h5py

    out = tmp_path / "sc"
    shutil.copytree(world.feats, tmp_path / "f")
    common = ("--model", world.model, "--out", out, "--weights", "random", "--features", tmp_path / "f")
    run_cli("score", world.slide, *common, check=True)
    with h5py.File(out / "synth_0000.h5", "a") as f:
        del f["coords"]
    said = " ".join(run_cli("score", world.slide, *common, check=True).stderr.split())
    assert "already scored" not in said, said
    with h5py.File(out / "synth_0000.h5", "r") as f:
        assert "coords" in f
