"""Hunt 32f: where the model's sTIL-high slides lose their points. On the demo's 40 slides
(leave-centre-out) the slides at >= 60 % came out 7.3 points low because the model had been trained
and scored over the whole tissue (no bed given): an sTIL% label counts stroma inside the tumour bed,
and the lymphocyte-poor stroma outside it dilutes the sTIL-high slides most. With their beds: 1.5."""

from __future__ import annotations

import json

import pytest

from conftest import run_cli
from planted import TRAIN_BRIEF as BRIEF
from planted import make_planted_cohort
from planted import said as _said

WHOLE = "trained on over the whole tissue"


@pytest.fixture(scope="module")
def cohorts(tmp_path_factory):
    """Two 8-slide planted cohorts (features only): one without tumour-bed flags, one with them."""
    root = tmp_path_factory.mktemp("hunt32f")
    make_planted_cohort(root / "plain", 8, dim=8, tiles=(12, 20), n_groups=4, seed=32)
    make_planted_cohort(root / "beds", 8, dim=8, tiles=(12, 20), n_groups=4, seed=32, tumorbed=True)
    return root


def test_training_over_the_whole_tissue_is_warned_about(cohorts, tmp_path):
    """Before: train with no bed source on feature files without tumour-bed flags trained every slide
    over the whole tissue without a word (model.json recorded a 'tissue' count). Now it warns, naming
    how many slides, why it matters for the sTIL definition and the options that give the beds."""
    out = tmp_path / "m"
    proc = run_cli("train", cohorts / "plain" / "labels.csv", "-f", cohorts / "plain" / "features", "-o", out,
                   "--folds", "2", *BRIEF)
    assert proc.returncode == 0, proc.stderr
    said = _said(proc)
    assert "8 of the 8 slides have no tumour bed" in said and WHOLE in said, said
    assert "inside the tumour bed" in said and "--annotations DIR, --tumorbed DIR or --tumorbed-beds DIR" in said
    assert said.count(WHOLE) == 1  # once, before training; not per fold
    meta = json.loads((out / "model.json").read_text(encoding="utf-8"))["training"]
    assert meta["tumorbeds"] == {"slides": {"tissue": 8}}


def test_slides_with_their_beds_are_not_warned_about(cohorts, tmp_path):
    """The feature files' own tumour-bed flags, or beds given by the caller, are beds: no warning."""
    proc = run_cli("train", cohorts / "beds" / "labels.csv", "-f", cohorts / "beds" / "features", "-o",
                   tmp_path / "m", "--folds", "2", *BRIEF)
    assert proc.returncode == 0, proc.stderr
    assert WHOLE not in _said(proc) and "no tumour bed" not in _said(proc)


def test_the_warning_counts_only_the_slides_without_a_bed():
    """A cohort where some feature files hold bed flags and others do not: the count is of the others."""
    import logging

    from weakstil.train_labels import warn_whole_tissue

    records = []

    class Catch(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    h = Catch()
    logging.getLogger("weakstil.train").addHandler(h)
    try:
        warn_whole_tissue(0, 12, "c.csv")
        assert not records
        warn_whole_tissue(3, 12, "c.csv")
        assert len(records) == 1 and records[0].startswith("c.csv: 3 of the 12 slides have no tumour bed")
    finally:
        logging.getLogger("weakstil.train").removeHandler(h)
