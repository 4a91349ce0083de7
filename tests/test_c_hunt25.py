"""Hunt 25c: a slide whose nuclei look unlike the training slides' is flagged, and its interval widens.

A default-look model scored a cohort whose tumour nuclei were all small and hyperchromatic (as dark
as lymphocytes): it read them as TILs (5.3 % scored 16.7, 12.9 % scored 19.2) with narrow intervals
that missed the truth, and flagged nothing — the embedding distance stayed typical (OOD score 0.9-1.0)
while the tile measurements the model appends to its embeddings (small dark round nuclei "in stroma",
pale tumour nuclei in nests) lay far outside anything in training. ``weakstil.qc.morphometry`` now
compares them with the training slides' range.
"""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import embedded_cohort, run_cli
from shared_cohorts import eight_slide_morphometry_model


def _dark_tumour_slide(root, monkeypatch, seed: int):
    """One synthetic slide whose every tumour nucleus is small and hyperchromatic (generator patched
    for this call only), embedded like the others: ``(cohort, labels, features)``."""
    import weakstil.synth.sprites as sprites

    original = sprites._tumor_nuclei

    def dark(rng, n, size=39, **_):
        return original(rng, n, size, r0_px=(7.0, 10.0), hyper_p=1.0)

    sprites.bank.cache_clear()
    monkeypatch.setattr(sprites, "_tumor_nuclei", dark)
    try:
        return embedded_cohort(root, 1, seed=seed, size_mm=(0.8, 0.8))
    finally:
        monkeypatch.setattr(sprites, "_tumor_nuclei", original)
        sprites.bank.cache_clear()


@pytest.fixture(scope="module")
def scored(tmp_path_factory):
    """A model trained on 8 default-look slides (tile measurements appended), and the scores of a
    default-look slide and a dark-tumour slide it never saw."""
    # 8 slides of one look are too few for the check's limits in earnest (MIN_SLIDES, hunt 26a);
    # here the dark slide lies far beyond them and the held slide happens to lie inside. The model
    # and its slides are built once per run (test_a_hunt26 tries the same model): only read here.
    root, cohort, labels, features = eight_slide_morphometry_model(tmp_path_factory)
    out = tmp_path_factory.mktemp("h25c")
    monkeypatch = pytest.MonkeyPatch()
    try:
        dark_cohort, dark_labels, dark_features = _dark_tumour_slide(out / "dark", monkeypatch, seed=26)
    finally:
        monkeypatch.undo()
    (out / "model").symlink_to(root / "model")  # the tests read the model beside the scores
    held = cohort / labels["path"].iloc[0]  # the slide the model was not trained on
    for name, slide, feats in (("held", held, features), ("dark", dark_cohort / dark_labels["path"].iloc[0],
                                                          dark_features)):
        run_cli("score", slide, "-m", root / "model", "-o", out / name, "-f", feats, check=True)
    return out


def _row(root, name) -> pd.Series:
    return pd.read_csv(root / name / "results.csv", keep_default_na=False).iloc[0]


def test_dark_tumour_nuclei_flagged_out_of_distribution(scored):
    row = _row(scored, "dark")
    assert "out_of_distribution" in row["qc"].split(";"), row["qc_reasons"]
    assert "tile measurements outside the training range" in row["qc_reasons"]  # says why, by measurement


def test_default_look_slide_not_flagged_by_its_measurements(scored):
    row = _row(scored, "held")
    assert "tile measurements" not in row["qc_reasons"], row["qc_reasons"]
    reference = json.loads((scored / "model" / "qc" / "reference.json").read_text())
    assert reference["morphometry"]["n_slides"] == 8
    # every training slide lies inside the range it set, so none is flagged by it
    slides = pd.read_csv(scored / "model" / "qc" / "training_slides.csv", keep_default_na=False)
    assert not slides["qc"].str.contains("out_of_distribution").any()


def test_shift_grows_with_the_measurements():
    from weakstil.qc.shift import shift_reference, slide_shift

    ref = shift_reference(None, None, morphometry_lgo=[0.4, 0.6, 0.8])
    assert ref["morphometry"] == pytest.approx({"median": 0.6, "scale": 0.4})
    assert slide_shift(ref, morphometry_ratio=0.5) == 0.0  # a typical new centre: no widening
    assert slide_shift(ref, morphometry_ratio=1.0) == pytest.approx(1.0)  # where the flag is raised
    assert slide_shift(ref, morphometry_ratio=1.4) == pytest.approx(2.0)
    # a calibration made before the measurements (no 'morphometry' part) scores as it was calibrated
    assert slide_shift({"version": 3}, morphometry_ratio=5.0) == 0.0


def test_a_measurement_that_vanishes_is_outside():
    from weakstil.qc.morphometry import morphometry_outside, morphometry_reference, morphometry_ratios

    rng = np.random.default_rng(0)
    train = [np.array([0.01 + 0.004 * rng.random(), 0.02 + 0.01 * rng.random()]) for _ in range(20)]
    ref = morphometry_reference(train, ["pale_nest", "dark_stroma"])
    inside = np.median(np.asarray(train), axis=0)
    assert morphometry_outside(inside, ref) == ""
    gone = np.array([0.0, inside[1]])  # pale tumour nuclei vanish: every tumour nucleus is dark
    assert morphometry_ratios(gone, ref)[0] > 1
    assert "pale_nest 0" in morphometry_outside(gone, ref)
