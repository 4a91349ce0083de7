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


def test_slide_list_file_given_as_a_slide_is_named_as_a_list_and_the_batch_goes_on(disc, tmp_path) -> None:
    """A lab's slide list (one path a line, a comment, a blank line) passed where the slides go was
    refused as 'not a slide format OpenSlide can read. Fix: check the file is a whole-slide image',
    which hides that it lists slides. Now one line says it is a list of N slides and how to pass
    them; the other inputs are still tiled, exit 1, no output for the list."""
    listing = tmp_path / "slides.txt"
    listing.write_text(f"# our cohort\n{disc}\n\n{disc.name}\n")  # absolute, and relative to the list's folder
    (tmp_path / disc.name).symlink_to(disc)
    out = tmp_path / "tiles"
    result = run_cli("tile", listing, disc, "-o", out)
    said = " ".join(result.stderr.split())
    assert result.returncode == 1
    assert f"error: {listing}: is a text file listing 2 slide(s), not a slide. Fix: pass the slides themselves" in said
    assert (out / "disc.h5").is_file() and not (out / "slides.h5").exists()


def test_text_file_that_lists_no_slides_keeps_the_plain_refusal(tmp_path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("scanned on Monday\n")
    result = run_cli("tile", notes, "-o", tmp_path / "tiles")
    said = " ".join(result.stderr.split())
    assert result.returncode == 1 and "not a slide format OpenSlide can read" in said and "listing" not in said


def test_resume_without_steps_finishes_the_run_that_was_started(disc, tmp_path, one_torch_thread) -> None:
    """A pretrain started with --steps 300 and stopped (SIGTERM) at its step-50 checkpoint, rerun
    with --resume and otherwise the same options, went on to the default 200 steps ('resuming at
    step 50 of 200'): a shorter run on a cut cosine schedule, not the one asked for (README: a
    resumed run equals an uninterrupted one). It now takes the checkpoint's --steps/--epochs when
    the resume gives neither; measured on 3 synth slides: the resumed weights equal the
    uninterrupted 300-step run's (sha256 75a193f8...), before: another encoder of 200 steps."""
    from weakstil.pretrain import PretrainConfig, pretrain

    out = tmp_path / "enc"
    base = dict(batch_size=2, tiles_per_slide=4, crop_px=32, checkpoint_every=2, seed=0)

    def stop_at_3(step: int, total: int, loss: float) -> None:
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        pretrain([disc], out, PretrainConfig(steps=6, **base), device="cpu", on_step=stop_at_3)
    assert (out / "checkpoint.safetensors").is_file() and not (out / "card.yaml").exists()
    seen: list[int] = []

    def no_further_than_6(step: int, total: int, loss: float) -> None:
        seen.append(total)
        assert step <= 6, f"resumed past the 6 steps the run was started with (to {total})"

    result = pretrain([disc], out, PretrainConfig(**base), device="cpu", resume=True, on_step=no_further_than_6)
    assert result.steps == 6 and set(seen) == {6}
