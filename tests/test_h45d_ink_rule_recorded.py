"""Helper h45d: which ink test a slide had is recorded, and a detector or bed made under another ink-plane rule says so.

Old: hunt 44b's own-plane switch (:data:`weakstil.ink_plane.OWN_PLANE_INK_RATIO`) changed which tiles the bed's ink
veto marks on some slides, and no output said which test a slide had: a detector whose veto was chosen under the
old rule, or a bed drawn under it and read back by ``score --tumorbed-beds``, gave other veto tiles without a word.
Now ``ink_and_stain`` tells the plane it measured against, the bed file and the score's per-slide attributes record
it with the rule (``ink_test``, ``ink_plane_rule``), and a detector or bed file of another rule is warned of by name.
"""

import json
import logging

import numpy as np

from ink_images import no_plane_holds_it
from test_h44j_ink_plane_ill_set import MPP, RECORDED, E, H, _image


def test_the_ink_test_is_told_stain_plane_own_plane_or_not_checked():
    from weakstil.ink_plane import INK_PLANE_RULE, ink_and_stain

    said = {}
    for name, (rgb, he) in {"own": (_image(0.0)[0], RECORDED), "stain": (_image(0.0)[0], np.stack([H, E], axis=1)),
                            "lost": (no_plane_holds_it(), RECORDED)}.items():
        test = {}
        ink_and_stain(rgb, he, MPP, test=test)
        said[name] = test
    assert said["own"] == {"ink_test": "own plane", "ink_plane_rule": INK_PLANE_RULE}, said
    assert said["stain"]["ink_test"] == "stain plane", said
    assert said["lost"]["ink_test"] == "not checked", said


def test_the_bed_records_its_ink_test_for_the_score_and_the_bed_file():
    from weakstil.tumorbed.bed import TumorBed, TumorBedSource

    bed = TumorBed(np.ones((2, 2), bool), 8.0, np.ones(4, np.float32), TumorBedSource.MODEL, "d",
                   seed_vetoes="lymphoid: off; ink: 3 tiles", ink_test="own plane", ink_plane_rule=2)
    attrs = bed.attrs()
    assert attrs["tumorbed_ink_test"] == "own plane" and attrs["tumorbed_ink_plane_rule"] == 2


def _detector(tmp_path):
    from weakstil.tumorbed.detector import TumorBedDetector
    from weakstil.tumorbed.evidence import LogisticEvidence
    from weakstil.tumorbed.ink import InkVeto

    det = TumorBedDetector(LogisticEvidence(np.zeros(4, np.float32), 0.0, np.zeros(4, np.float32),
                                            np.ones(4, np.float32)), meta={"model_id": "d"}, ink_veto=InkVeto())
    return det.save(tmp_path / "det")


def test_a_detector_whose_ink_veto_was_chosen_under_the_old_rule_is_told_by_name(tmp_path, caplog):
    from weakstil.tumorbed.detector import TumorBedDetector

    folder = _detector(tmp_path)
    with caplog.at_level(logging.WARNING):
        TumorBedDetector.load(folder)
    assert "ink-plane rule" not in caplog.text  # this WeakSTIL's own: nothing to say
    meta = json.loads((folder / "model.json").read_text())
    del meta["ink_veto"]["plane_rule"]  # as every detector written before the rule was recorded
    (folder / "model.json").write_text(json.dumps(meta))
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        TumorBedDetector.load(folder)
    said = [r.getMessage() for r in caplog.records if "ink-plane rule before" in r.getMessage()]  # 1 or 2 (h45e)
    assert len(said) == 1 and str(folder) in said[0] and "tumorbed train" in said[0], caplog.text


def test_a_precomputed_bed_of_another_ink_rule_is_told_by_name(tmp_path, caplog):
    from weakstil.ink_plane import INK_PLANE_RULE
    from weakstil.tumorbed.precomputed import ink_plane_rule_of

    path = tmp_path / "S1.h5"
    with caplog.at_level(logging.WARNING):
        assert ink_plane_rule_of({"seed_vetoes": "lymphoid: 2 tiles; ink: off"}, path) is None
        assert ink_plane_rule_of({"seed_vetoes": "lymphoid: off; ink: 5 tiles", "ink_plane_rule": INK_PLANE_RULE},
                                 path) == INK_PLANE_RULE
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        assert ink_plane_rule_of({"seed_vetoes": "lymphoid: off; ink: 5 tiles"}, path) == 0  # written before the rule
    assert len(caplog.records) == 1 and "tumorbed apply" in caplog.text  # (the folder's, once: h45e)
    assert str(path.parent) in caplog.text and path.name in caplog.text


def test_a_slide_scored_under_another_ink_rule_is_scored_again(tmp_path):
    """The bed's request (score's and 'tumorbed apply''s skip key) holds the rule where the detector's veto reads
    ink over tissue: a slide scored, or a bed drawn, under another rule is not kept as it was."""
    from weakstil.ink_plane import INK_PLANE_RULE
    from weakstil.tumorbed.resolver import BedSources

    asked = BedSources.open(detector=_detector(tmp_path)).request("S1")
    assert asked.endswith(f" ink-plane rule {INK_PLANE_RULE}"), asked
    meta = json.loads((tmp_path / "det" / "model.json").read_text())
    meta["ink_veto"]["over_tissue"] = False  # colour rules only: no plane, no rule
    (tmp_path / "det" / "model.json").write_text(json.dumps(meta))
    assert "ink-plane" not in BedSources.open(detector=tmp_path / "det").request("S1")
