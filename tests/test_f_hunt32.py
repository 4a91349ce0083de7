"""Hunt 32f: where the model's sTIL-high slides lose their points. On the demo's 40 slides
(leave-centre-out) the slides at >= 60 % came out 7.3 points low because the model had been trained
and scored over the whole tissue (no bed given): an sTIL% label counts stroma inside the tumour bed,
and the lymphocyte-poor stroma outside it dilutes the sTIL-high slides most. With their beds: 1.5.
train now warns when it trains over the whole tissue, and a bed scored by such a model (which reads
beds +7.9 points high) is flagged bed_unlike_training."""

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


@pytest.fixture(scope="module")
def trained(cohorts, tmp_path_factory):
    """Each cohort trained once: (model folder, what train said) per cohort name."""
    out = {}
    for name in ("plain", "beds"):
        model = tmp_path_factory.mktemp("models") / name
        proc = run_cli("train", cohorts / name / "labels.csv", "-f", cohorts / name / "features", "-o", model,
                       "--folds", "2", *BRIEF)
        assert proc.returncode == 0, proc.stderr
        out[name] = (model, _said(proc))
    return out


def test_training_over_the_whole_tissue_is_warned_about(trained):
    """Before: train with no bed source on feature files without tumour-bed flags trained every slide
    over the whole tissue without a word (model.json recorded a 'tissue' count). Now it warns, naming
    how many slides, why it matters for the sTIL definition and the options that give the beds."""
    out, said = trained["plain"]
    assert "8 of the 8 slides have no tumour bed" in said and WHOLE in said, said
    assert "inside the tumour bed" in said and "--annotations DIR, --tumorbed DIR or --tumorbed-beds DIR" in said
    assert said.count(WHOLE) == 1  # once, before training; not per fold
    meta = json.loads((out / "model.json").read_text(encoding="utf-8"))["training"]
    assert meta["tumorbeds"]["slides"] == {"tissue": 8}


def test_slides_with_their_beds_are_not_warned_about(trained):
    """The feature files' own tumour-bed flags are beds: no warning."""
    _, said = trained["beds"]
    assert WHOLE not in said and "no tumour bed" not in said


def test_the_warning_counts_only_the_slides_without_a_bed(caplog):
    """A cohort where some feature files hold bed flags and others do not: the count is of the others."""
    from weakstil.train_labels import warn_whole_tissue

    with caplog.at_level("WARNING", logger="weakstil.train"):
        warn_whole_tissue(0, 12, "c.csv")
        assert not caplog.messages
        warn_whole_tissue(3, 12, "c.csv")
    assert len(caplog.messages) == 1 and caplog.messages[0].startswith("c.csv: 3 of the 12 slides have no tumour bed")


def test_a_bed_scored_by_a_model_trained_over_the_whole_tissue_is_flagged(trained):
    """Before: bed_unlike_training flagged only a slide scored over the whole tissue by a model trained
    on beds. The other way went unflagged: the demo's 40 slides trained over the whole tissue scored 24
    new slides inside their beds +7.9 points on average (R² 0.795; 0.908 over the whole tissue). Now a
    slide scored inside a bed (annotation, detector) by a model trained mostly over the whole tissue is
    flagged, read from the model.json that train writes; the same model over the whole tissue is not."""
    from weakstil.qc.flags import Flag, bed_unlike_training, slide_flags

    records = {name: json.loads((model / "model.json").read_text(encoding="utf-8"))["training"]["tumorbeds"]
               for name, (model, _) in trained.items()}
    whole, beds = records["plain"], records["beds"]
    for source in ("annotation", "model"):
        why = bed_unlike_training(source, whole)
        assert why and f"scored inside its tumour bed ({source})" in why and "8 tissue" in why, why
        assert "--annotations, --tumorbed-beds or --tumorbed" in why
        assert bed_unlike_training(source, beds) is None
    assert bed_unlike_training("tissue", whole) is None and bed_unlike_training("tissue-fallback", whole) is None
    assert "scored over the whole tissue" in bed_unlike_training("tissue", beds)  # the first direction, as before
    flags, reasons = slide_flags(ood_score=0.0, ood_threshold=1.0, n_bed_tiles=50, low=30.0, high=50.0,
                                 threshold=30.0, image=None, image_ref=None, stil=40.0,
                                 bed_unlike_training=bed_unlike_training("annotation", whole))
    assert Flag.BED_UNLIKE_TRAINING.value in flags and "too high" in reasons[Flag.BED_UNLIKE_TRAINING.value]
