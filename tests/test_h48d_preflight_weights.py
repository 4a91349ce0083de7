"""Fault matrix h48d: the workflow's preflight read an encoder `weights` file only for its existence, so a copy cut
short, an empty file, a folder or an sTIL model's weights passed and every embed job failed after the tile jobs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from test_pipeline_preflight import workflow_config
from weakstil.pipeline_preflight import PreflightError, check_encoder


def _good(path: Path) -> Path:
    save_file({"stem.weight": torch.zeros(4, 3)}, str(path))
    return path


def test_preflight_reads_the_weights_file_headers(tmp_path: Path) -> None:
    good = _good(tmp_path / "enc.safetensors")
    check_encoder(workflow_config(tmp_path, f"weights={good}"))  # a readable file passes
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(good.read_bytes()[:40])
    empty = tmp_path / "empty.safetensors"
    empty.write_bytes(b"")
    text = tmp_path / "text.safetensors"
    text.write_text("version https://git-lfs.github.com/spec/v1\n")
    model = tmp_path / "model"
    model.mkdir()
    _good(model / "model.safetensors")
    (model / "model.json").write_text(json.dumps({"format": "weakstil-mil"}))
    torch.save({"w": torch.zeros(2)}, tmp_path / "ckpt.pt")
    zipcut = tmp_path / "zipcut.pt"
    zipcut.write_bytes((tmp_path / "ckpt.pt").read_bytes()[:60])
    for weights, why in [(cut, "not a readable safetensors file"), (empty, r"is empty \(0 bytes\)"),
                         (text, "not a readable safetensors file"), (model, "is a directory, not a weights file"),
                         (model / "model.safetensors", "holds an sTIL model's .* weights, not an encoder's"),
                         (zipcut, "not a readable PyTorch checkpoint")]:
        with pytest.raises(PreflightError, match=f"{weights.name}: (is )?{why}.*the `weights` key") as info:
            check_encoder(workflow_config(tmp_path, f"weights={weights}"))
        assert "\n" not in info.value.one_line()
    check_encoder(workflow_config(tmp_path, f"weights={tmp_path / 'ckpt.pt'}"))  # a whole checkpoint passes
