"""Fault hunt 10, tumour-bed area: 'synth' spells its output folder --out/-o as every other writer
does, and 'evaluate --group-column' / 'tumorbed train --seed' say what they do."""

from __future__ import annotations

import re

from conftest import run_cli


def test_synth_takes_out_as_every_writer_does_and_its_positional_folder_still(tmp_path):
    proc = run_cli("synth", "--out", tmp_path / "a", "-n", "1", "--size-mm", "0.5", "0.5")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a" / "labels.csv").is_file()
    proc = run_cli("synth", tmp_path / "b", "-n", "1", "--size-mm", "0.5", "0.5")
    assert proc.returncode == 0 and (tmp_path / "b" / "labels.csv").is_file(), proc.stderr
    # both, naming two folders: refused before any work
    proc = run_cli("synth", tmp_path / "c", "-o", tmp_path / "d", "-n", "1")
    assert proc.returncode == 2 and "two output folders given" in proc.stderr
    assert not (tmp_path / "c").exists() and not (tmp_path / "d").exists()
    proc = run_cli("synth", "-n", "1")
    assert proc.returncode == 2 and "no output folder" in proc.stderr


def test_an_outline_half_off_the_slide_says_what_share_lies_off_it_and_the_rule(tmp_path):
    import pytest
    from shapely.geometry import MultiPolygon, box

    from weakstil.annotations import AnnotationError, check_inside

    half_off = MultiPolygon([box(-500, -500, 1200, 1200)])  # 50.2 % of its area off a 2400 px slide
    with pytest.raises(AnnotationError) as err:
        check_inside(half_off, 2400, 2400, tmp_path / "S1.geojson")
    assert "50.2% of the polygons' area lies outside the slide" in err.value.message
    assert "at least half of the area must lie on the slide" in err.value.message
    with pytest.raises(AnnotationError, match=r"S1\.geojson: polygons lie outside the slide"):  # none of it on the slide
        check_inside(MultiPolygon([box(5000, 5000, 6000, 6000)]), 2400, 2400, tmp_path / "S1.geojson")


def test_evaluate_group_column_and_tumorbed_train_seed_say_what_they_do():
    """evaluate does no cross-validation; the detector's fit has no random step, --seed draws only the
    jittered copies of its final fit (hunt 39i)."""
    def said(*command: str) -> str:  # the help as one line, without the box rich draws around it
        return " ".join(re.sub("[│╭╮╰╯─]", " ", run_cli(*command, "--help").stdout).split())

    evaluate = said("evaluate")
    assert "straddle" not in evaluate and "scatter plot is coloured by it" in evaluate
    train = said("tumorbed", "train")
    assert "Seeds the appearance jitter of --augment (the fit itself has no random step" in train
