"""A model trained on beds drawn under another ink-plane rule than the beds it scores is flagged (helper h46c, from
review h45e's "not fixed" 3).

Was: the bed files and the detectors record the ink-plane rule their ink veto measured ink over tissue under (helpers
h45d, h45e), but a model's record of its training beds did not, and ``bed_unlike_training`` compared the bed's source
only: a model trained on rule-2 beds scored rule-3 beds without a word.
"""

from __future__ import annotations

import json
import shutil

import pytest

import napari_plugin_fixtures

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below


@pytest.fixture(scope="module")
def ink_detector(scored, tmp_path_factory):
    """A detector trained on the shared cohort, its ink veto measuring ink over tissue, saved."""
    from weakstil.tumorbed.ink import InkVeto
    from weakstil.tumorbed.training_cache import train_tumorbed_from_cache

    det = train_tumorbed_from_cache(scored["root"] / "features", scored["cohort"] / "truth", augment=False,
                                    ink_veto=False, lymphoid_veto=False, tumour_cell_gate=False, infiltrate=False,
                                    max_slides=2, warn_unmatched=False, front=False)
    det.ink_veto = InkVeto(enabled=True, over_tissue=True)
    folder = tmp_path_factory.mktemp("h46c_ink_det") / "det"
    det.save(folder)
    return folder


def test_the_training_beds_record_says_their_ink_plane_rule(scored, ink_detector):
    from weakstil.ink_plane import INK_PLANE_RULE
    from weakstil.tumorbed.resolver import BedSources

    ids = ["synth_0000", "synth_0001"]
    beds = BedSources.open(detector=ink_detector)
    beds.cohort({sid: scored["root"] / "features" / f"{sid}.h5" for sid in ids})
    assert beds.record()["ink_plane_rules"] == {str(INK_PLANE_RULE): 2}
    assert "ink_plane_rules" not in BedSources.open().record()  # no ink veto, no rule


def test_a_bed_of_another_ink_rule_than_the_training_beds_is_flagged_and_said(scored, ink_detector, tmp_path, caplog):
    import pandas as pd

    from weakstil.ink_plane import INK_PLANE_RULE
    from weakstil.qc.flags import bed_unlike_training
    from weakstil.score import ScoreOptions, score_batch

    trained = {"slides": {"model": 4}, "ink_plane_rules": {"0": 4}}  # beds drawn before rule 3 (not recorded then)
    assert "ink-plane rule 3" in bed_unlike_training("model", trained, INK_PLANE_RULE)
    assert bed_unlike_training("model", {**trained, "ink_plane_rules": {str(INK_PLANE_RULE): 4}}, INK_PLANE_RULE) is None
    assert bed_unlike_training("model", {"slides": {"model": 4}}, INK_PLANE_RULE) is None  # a model from before
    assert bed_unlike_training("model", trained, None) is None  # a bed without an ink veto over tissue
    model = tmp_path / "model"
    shutil.copytree(scored["model"], model)
    meta = json.loads((model / "model.json").read_text())
    meta["training"]["tumorbeds"] = {**meta["training"]["tumorbeds"], **trained}
    (model / "model.json").write_text(json.dumps(meta))
    out = tmp_path / "out"
    shutil.copytree(scored["scores"] / "features", out / "features")  # the slide's features cached
    with caplog.at_level("WARNING"):
        rows = score_batch([scored["held"]], ScoreOptions(model=model, out=out, weights="random", device="cpu",
                                                          workers=1, tumorbed_model=ink_detector), progress=False)
    said = [r.getMessage() for r in caplog.records if "ink-plane rule" in r.getMessage()]
    assert len(said) == 1 and str(model) in said[0], said  # once per run, naming the model and both rules
    assert f"ink-plane rule {INK_PLANE_RULE}" in said[0] and "before 3 (1 or 2, not recorded)" in said[0]
    row = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False).iloc[0]
    assert rows[0]["status"] == "ok" and "bed_unlike_training" in row["qc"], dict(row)
    assert "ink-plane rule" in row["qc_reasons"]


def test_which_beds_have_an_ink_rule():
    """A precomputed bed drawn before the rule was recorded (rule 0, no ink test recorded) has one; a veto on the glass
    only (colour rules) or none has none."""
    from types import SimpleNamespace as Bed

    from weakstil.tumorbed.resolver import bed_ink_rule

    assert bed_ink_rule(Bed(ink_plane_rule=0, ink_test="")) == 0
    assert bed_ink_rule(Bed(ink_plane_rule=3, ink_test="stain plane")) == 3
    assert bed_ink_rule(Bed(ink_plane_rule=3, ink_test="colour rules")) is None
    assert bed_ink_rule(Bed(ink_plane_rule=None, ink_test="")) is None


def test_the_run_says_the_ink_rule_only_when_a_bed_of_it_is_scored(scored, ink_detector, tmp_path, caplog):
    """Review r46c: the run's warning was said whenever the detector's rule was not among the training beds', also
    when every slide had a precomputed bed (``--tumorbed-beds``, as the workflow scores) of the training beds' own
    rule: "each such slide is flagged bed_unlike_training", and none was. Now it is said once, at the first slide
    whose bed is flagged for its ink rule, naming that bed's rule."""
    import h5py
    import pandas as pd

    from weakstil.score import ScoreOptions, score_batch
    from weakstil.slide import slide_id_from_path
    from weakstil.tumorbed import BedSources
    from weakstil.tumorbed.apply import apply_tumorbed

    model = tmp_path / "model"
    shutil.copytree(scored["model"], model)
    meta = json.loads((model / "model.json").read_text())
    meta["training"]["tumorbeds"] = {**meta["training"]["tumorbeds"], "slides": {"model": 4},
                                     "ink_plane_rules": {"0": 4}}  # beds drawn before rule 3
    (model / "model.json").write_text(json.dumps(meta))
    features = scored["scores"] / "features" / f"{slide_id_from_path(scored['held'])}.h5"
    bed = apply_tumorbed(features, tmp_path / "beds", BedSources.open(detector=ink_detector),
                         slide_path=scored["held"]).h5_path
    with h5py.File(bed, "r+") as f:  # as 'tumorbed apply' wrote it before the rule was recorded
        assert "ink: " in str(f.attrs["seed_vetoes"]) and "ink_plane_rule" in f.attrs
        del f.attrs["ink_plane_rule"]
    out = tmp_path / "out"
    shutil.copytree(scored["scores"] / "features", out / "features")
    opts = dict(model=model, weights="random", device="cpu", workers=1, tumorbed_model=ink_detector)
    with caplog.at_level("WARNING"):
        rows = score_batch([scored["held"]], ScoreOptions(out=out, tumorbed_beds=tmp_path / "beds", **opts),
                           progress=False)
    row = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False).iloc[0]
    assert rows[0]["status"] == "ok" and "bed_unlike_training" not in row["qc"], dict(row)  # rule 0 as in training
    said = [r.getMessage() for r in caplog.records if str(model) in r.getMessage() and "ink-plane rule" in r.getMessage()]
    assert said == []  # no bed of another rule: nothing to say
    caplog.clear()
    with caplog.at_level("WARNING"):  # the detector's bed (rule 3): said once, naming the slide
        rows = score_batch([scored["held"]], ScoreOptions(out=tmp_path / "out2", features=out / "features", **opts),
                           progress=False)
    said = [r.getMessage() for r in caplog.records if str(model) in r.getMessage() and "ink-plane rule" in r.getMessage()]
    assert len(said) == 1 and slide_id_from_path(scored["held"]) in said[0], said


def test_evaluate_says_beds_of_another_ink_rule_than_the_training_beds(scored, ink_detector, tmp_path, caplog):
    """Review r46c: ``evaluate`` recorded its beds' ink-plane rules in metrics.json but compared only their sources
    with the model's training beds: a model trained on rule-0 beds evaluated on rule-3 beds said nothing."""
    from weakstil.evaluation import evaluate_cohort
    from weakstil.ink_plane import INK_PLANE_RULE
    from weakstil.tumorbed import BedSources

    model = tmp_path / "model"
    shutil.copytree(scored["model"], model)
    meta = json.loads((model / "model.json").read_text())
    meta["training"]["tumorbeds"] = {**meta["training"]["tumorbeds"], "slides": {"model": 4},
                                     "ink_plane_rules": {"0": 4}}
    (model / "model.json").write_text(json.dumps(meta))
    with caplog.at_level("WARNING"):
        metrics = evaluate_cohort(scored["root"] / "train.csv", model, scored["root"] / "features", tmp_path / "ev",
                                  beds=BedSources.open(detector=ink_detector), threads=1)
    n = metrics["tumorbeds"]["ink_plane_rules"][str(INK_PLANE_RULE)]
    assert n >= 1 and metrics["beds_of_another_ink_rule"] == n, metrics["tumorbeds"]
    said = [r.getMessage() for r in caplog.records if "ink-plane rule" in r.getMessage() and str(model) in r.getMessage()]
    assert len(said) == 1 and f"ink-plane rule {INK_PLANE_RULE}" in said[0], said
