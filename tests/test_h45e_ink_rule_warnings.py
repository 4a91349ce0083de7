"""Review h45e of helper h45d's ink-plane rule warnings (beds and detectors made before the rule was recorded).

Old (h45d): ``score``/``train``/``evaluate --tumorbed-beds`` of a folder of beds drawn before the rule was recorded
gave one four-line warning per bed (500 for a batch of 500); it called them "rule 1" although every detector and bed
made since hunt 44b is rule 2; and a bed whose detector reads ink on the glass only (``over_tissue`` false: no plane,
no rule) was told to be drawn again with 'tumorbed apply', which kept it as it was (its request has no rule), so the
warning came back on every run.
"""

import json
import logging

from test_h45d_ink_rule_recorded import _detector


def _old_bed(folder=None) -> dict:
    """A detector bed's attributes as 'tumorbed apply' wrote them before the rule was recorded."""
    attrs = {"seed_vetoes": "lymphoid: 0 tiles; ink: 5 tiles", "source": "model"}
    if folder is not None:
        from weakstil.modeldir import WEIGHTS_FILE
        from weakstil.runtime import sha256_file

        attrs.update(detector_path=str(folder), detector_sha256=sha256_file(folder / WEIGHTS_FILE))
    return attrs


def test_a_folder_of_beds_of_an_unrecorded_rule_is_said_once_and_not_called_rule_1(tmp_path, caplog):
    from weakstil.tumorbed.precomputed import ink_plane_rule_of

    with caplog.at_level(logging.WARNING):
        rules = [ink_plane_rule_of(_old_bed(), tmp_path / "beds" / f"S{i}.h5") for i in range(5)]
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 1, said  # was one for each bed
    assert str(tmp_path / "beds") in said[0] and "S0.h5" in said[0] and "tumorbed apply" in said[0]
    assert "1 or 2" in said[0] and "rule 1," not in said[0], said[0]
    assert rules == [0] * 5  # not recorded (was read as 1)


def test_a_bed_whose_detector_reads_ink_on_the_glass_only_is_not_told_to_be_drawn_again(tmp_path, caplog):
    from weakstil.tumorbed.precomputed import ink_plane_rule_of

    folder = _detector(tmp_path)
    meta = json.loads((folder / "model.json").read_text())
    meta["ink_veto"].pop("over_tissue")  # as a detector trained before ink over tissue was measured
    meta["ink_veto"].pop("plane_rule")
    (folder / "model.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        assert ink_plane_rule_of(_old_bed(folder), tmp_path / "glass" / "S1.h5") is None
    assert not caplog.records, caplog.text  # its rerun keeps the bed: the warning came back on every run
    meta["ink_veto"]["over_tissue"] = True  # the same bed from a detector that measures ink over tissue: told
    (folder / "model.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        assert ink_plane_rule_of(_old_bed(folder), tmp_path / "tissue" / "S1.h5") == 0
    assert len(caplog.records) == 1 and "tumorbed apply" in caplog.text


def test_a_detector_without_a_recorded_rule_is_not_called_rule_1(tmp_path, caplog):
    from weakstil.tumorbed.detector import TumorBedDetector

    folder = _detector(tmp_path)
    meta = json.loads((folder / "model.json").read_text())
    del meta["ink_veto"]["plane_rule"]  # trained before h45d: since hunt 44b that is rule 2
    (folder / "model.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        detector = TumorBedDetector.load(folder)
    assert detector.ink_veto.plane_rule == 0
    said = [r.getMessage() for r in caplog.records if "ink-plane rule" in r.getMessage()]
    assert len(said) == 1 and "1 or 2" in said[0] and "rule 1," not in said[0], said


def test_a_models_bundled_detector_of_another_rule_is_not_told_to_be_retrained_in_place(tmp_path, caplog):
    """MODEL/tumorbed drew the beds the model was trained on: retrained there, 'score' then says the bundled detector
    is not the one the model was trained with. The fix names a new detector and the model trained with it."""
    from weakstil.tumorbed.detector import TumorBedDetector

    folder = _detector(tmp_path).rename(tmp_path / "tumorbed")  # as 'train --tumorbed' bundles it, in MODEL/
    (tmp_path / "model.json").write_text("{}")
    meta = json.loads((folder / "model.json").read_text())
    del meta["ink_veto"]["plane_rule"]
    (folder / "model.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING):
        TumorBedDetector.load(folder)
    said = [r.getMessage() for r in caplog.records if "ink-plane rule" in r.getMessage()]
    assert len(said) == 1 and "bundled in the sTIL model" in said[0] and "weakstil train --tumorbed" in said[0]
    assert "retrain it with" not in said[0], said[0]  # was: retrain it (in place) with 'weakstil tumorbed train'


def test_a_bed_drawn_again_only_for_the_ink_plane_rule_is_told_apart(monkeypatch):
    """After an upgrade 'tumorbed apply' drew every bed of a detector measuring ink over tissue again, with no word why
    (h45d's request change); now such beds are told apart from beds redone for other inputs, and said once a run."""
    from weakstil.tumorbed import precomputed

    bed = "detector d model.safetensors:ab model.json:cd"
    asked = {"bed": bed + " ink-plane rule 3", "cache_key": "k1", "weakstil_version": "0.1.0"}
    for stored, only_rule in (({**asked, "bed": bed}, True),  # drawn before the rule was in the request
                              ({**asked, "bed": bed + " ink-plane rule 2"}, True),
                              ({**asked, "bed": bed, "cache_key": "k0"}, False),  # other features too
                              ({**asked, "bed": "detector e model.safetensors:ef model.json:cd"}, False),
                              (asked, False)):  # the same request (kept, not drawn again)
        monkeypatch.setattr(precomputed.BedFile, "read_header", lambda path, s=stored: ({"bed_request": json.dumps(s)}, {}))
        assert precomputed.other_rule_only("S1.h5", json.dumps(asked)) is only_rule, stored
