"""Fault hunt 12, tumour-bed area: where the training beds came from is counted once per slide,
and the beds `tumorbed apply` writes are reused as they are (the slides without one said, a done
slide skipped, an annotation's misplacement kept).

Three small synthetic slides, embedded once with a seeded random small CNN; the generator's
outlines (cohort/truth/<slide_id>_tumorbed.geojson) are the pathologist's annotations.
"""

from __future__ import annotations


import pytest

from conftest import run_cli

SLIDES = 3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from weakstil.embed import embed_slide
    from weakstil.encoders.factory import create_encoder
    from weakstil.synth import generate_cohort

    root = tmp_path_factory.mktemp("h12c")
    labels = generate_cohort(root / "cohort", SLIDES, seed=12, size_mm=(1.0, 1.0), progress=False)
    encoder = create_encoder("small-cnn", weights="random")
    for path in labels["path"]:
        embed_slide(root / "cohort" / path, encoder, out_dir=root / "features")
    return {"root": root, "ids": list(labels["slide_id"]), "features": root / "features",
            "slides": [root / "cohort" / p for p in labels["path"]], "truth": root / "cohort" / "truth"}


# -- #1: the "precomputed" tally of a tumorbeds record is not a bed source --------------------
def test_precomputed_beds_are_not_counted_twice_when_weighing_the_training_beds():
    from weakstil.qc.flags import bed_unlike_training, training_bed_kinds

    # 3 of 8 training slides had a bed (from --tumorbed-beds): not "mostly", whatever the tally says
    minority = {"slides": {"annotation": 3, "tissue": 5, "precomputed": 3}}
    assert bed_unlike_training("tissue", minority) is None
    # precomputed whole-tissue beds are no beds either
    assert bed_unlike_training("tissue", {"slides": {"model": 3, "tissue": 5, "precomputed": 5}}) is None
    majority = {"slides": {"annotation": 5, "tissue": 3, "precomputed": 5}}
    why = bed_unlike_training("tissue", majority)
    assert why is not None and "(5 annotation, 3 tissue (5 precomputed))" in why
    assert training_bed_kinds(minority) == "3 annotation, 5 tissue (3 precomputed)"
    assert training_bed_kinds({"slides": {"annotation": 2}}) == "2 annotation"
