"""Hunt 36j: walking docs/training, encoders, slides, synthetic-cohorts and cluster as a new user.

What was wrong (7c026f5), and what is right now:
- `weakstil report --help` showed "--title Report title." and nothing more: its default, written as
  "[default: WeakSTIL cohort report; with --scores: ...]", was read by rich as markup and dropped.
  It is now in parentheses and shown.
- `report --slide-mpp` shared the slide commands' help, "for some slides of a batch only: an mpp column
  in a --slides CSV", but report has no --slides (docs/cluster.md: each heatmap is drawn at the µm/px its
  tile scores record, so a mixed cohort needs no --slide-mpp). Its help now says what it does for report.
- `--slides LIST` said for every command that a CSV's slide_id column "names the slides' outputs", but
  `tile --slides cohort.csv` names its files after the slide file (README; measured: slide_id AAA of
  synth_0000.tiff -> tiles/synth_0000.h5). The help now says embed's and score's outputs, not tile's.
- A cohort CSV given as a slide (`weakstil score cohort.csv`) was told to "pass the slides it lists
  (e.g. 'slides/*.svs', quoted)" though every command that takes slides reads that CSV with one flag;
  the fix now names it: `--slides cohort.csv`.
- `--encoder` on embed/pretrain said "card name or a 'weakstil pretrain' output directory", score's "card
  or directory", though a card file works (docs/encoders.md: a card name, a card file, or a pretrain
  folder; measured: `embed -e mycard.yaml --weights random` embeds). Both helps now name the card file.
- A card with its mean on the 0-255 scale and its std already on 0-1 (`mean: [123.675, 116.28, 103.53]`,
  `std: [0.229, 0.224, 0.225]`) was refused with the fix "divide them by 255: ... std: [0.0009, 0.0009,
  0.0009]", a std that would blow every tile up 255-fold. Only the list on the 0-255 scale is divided now.
"""
from __future__ import annotations

import re

import pytest

from conftest import run_cli


def _help(*command: str) -> str:
    proc = run_cli(*command, "--help")
    assert proc.returncode == 0, proc.stderr
    return " ".join(proc.stdout.replace("│", " ").split())


def test_report_help_shows_the_title_default_and_no_slides_option():
    text = _help("report")
    assert "Report title (default: WeakSTIL cohort report; with --scores: WeakSTIL scoring report)" in text, text
    assert "--slides CSV" not in text and "--slides " not in text.replace("--slides LIST", ""), text
    assert "tile scores record" in text, text


def test_slide_list_help_says_tile_names_files_after_the_slide_file():
    text = _help("tile")
    assert "names embed's and score's outputs, while tile names its files after the slide file" in text, text
    assert "a card file (card.yaml)" in _help("embed")
    assert "card file or 'weakstil pretrain' directory" in _help("score")


def test_a_cohort_csv_given_as_a_slide_is_told_to_pass_it_with_slides(tmp_path):
    from weakstil.errors import SlideError
    from weakstil.slide_backend import open_backend

    csv = tmp_path / "cohort.csv"
    csv.write_text("slide_id,path,stil\nS1,slides/S1.svs,30\n")
    with pytest.raises(SlideError, match="is a cohort CSV") as err:
        open_backend(csv)
    assert f"--slides {csv}" in str(err.value), str(err.value)


def write_card(path, mean, std="[0.229, 0.224, 0.225]"):
    """The built-in small-cnn card with another mean/std."""
    from pathlib import Path

    import weakstil.encoders

    text = (Path(weakstil.encoders.__file__).parent / "cards" / "small-cnn.yaml").read_text(encoding="utf-8")
    text = re.sub(r"(?m)^mean:.*$", f"mean: {mean}", text)
    path.write_text(re.sub(r"(?m)^std:.*$", f"std: {std}", text), encoding="utf-8")
    return path


def test_only_the_0_255_list_of_a_card_is_divided_in_the_fix(tmp_path):
    from weakstil.encoders.cards import CardError, load_card

    with pytest.raises(CardError) as err:
        load_card(write_card(tmp_path / "c.yaml", mean="[123.675, 116.28, 103.53]"))
    assert "divide mean by 255: mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]" in str(err.value), err.value
    with pytest.raises(CardError) as err:  # mmcv's pair, both on 0-255, as before
        load_card(write_card(tmp_path / "d.yaml", mean="[123.675, 116.28, 103.53]", std="[58.395, 57.12, 57.375]"))
    assert "divide them by 255: mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225]" in str(err.value)
