"""Fault hunt 18d: stage 1 (tile, embed, pretrain) as an outside lab runs it, CLI only."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import run_cli, write_disc_slide


@pytest.fixture(scope="module")
def disc(tmp_path_factory) -> Path:
    return write_disc_slide(tmp_path_factory.mktemp("d18") / "disc.tiff")


@pytest.mark.parametrize("command", ["embed", "pretrain"])
def test_hub_id_as_encoder_names_the_builtin_card_with_those_weights(disc, tmp_path, monkeypatch, command) -> None:
    """`--encoder hf-hub:1aurent/resnet50.lunit_swav` (the id a lab copies from the hub page) was
    read as a path: 'no such card file or encoder folder. Fix: check the path, or use a built-in
    encoder name: ...', which named neither the card that holds these weights nor how to use a hub
    model. Now: one line naming the built-in card, exit 2, nothing written, no network."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    result = run_cli(command, disc, "-e", "hf-hub:1aurent/resnet50.lunit_swav", "-o", out, "--device", "cpu")
    said = " ".join(result.stderr.split())
    assert result.returncode == 2
    assert "hf-hub:1aurent/resnet50.lunit_swav: names the weights of the built-in encoder card " \
           "'lunit-swav-resnet50'. Fix: pass --encoder lunit-swav-resnet50." in said
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def test_unknown_hub_id_as_encoder_says_how_to_write_its_card(disc, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = tmp_path / "out"
    result = run_cli("embed", disc, "-e", "hf-hub:someone/their-vit", "-o", out, "--device", "cpu")
    said = " ".join(result.stderr.split())
    assert result.returncode == 2 and not out.exists()
    assert "hf-hub:someone/their-vit: is a Hugging Face hub id, not an encoder card" in said
    assert "hub_id: hf-hub:someone/their-vit" in said and "card.yaml" in said
    assert "no such card file" not in said
