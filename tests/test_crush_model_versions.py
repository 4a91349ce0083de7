"""A model trained with ``--no-tile-stats`` against features of another tile-statistics version (helper h44d). Its
tile scores do not read the measurements, but its training beds were cut by their crush share (version 5): the
version check skipped it, so ``evaluate`` scored version-4 features (no crush share) with their crush tiles in the
bed, and a model trained on beds with crush scored new slides' beds without it, without a word."""

from __future__ import annotations

import pytest


def _meta(trained) -> dict:
    from weakstil.stain import STAIN_ESTIMATE_VERSION

    return {"encoder": {"name": "e"}, "tiling": {},
            "training": {"config": {"tile_stats": False, "stroma_weight": "learned"}},  # --no-tile-stats
            "features": {"tilestats_version": trained, "stain_estimate_version": STAIN_ESTIMATE_VERSION}}


def _features(version) -> dict:
    from weakstil.stain import STAIN_ESTIMATE_VERSION

    return {"encoder": "e", "stain_estimate_version": STAIN_ESTIMATE_VERSION,
            **({"tilestats_version": version} if version is not None else {})}


@pytest.mark.parametrize("features", [4, None])
def test_features_without_the_crush_share_are_refused_by_a_model_trained_on_beds_without_crush(features):
    from weakstil.errors import ModelError
    from weakstil.mil.identity import check_features_match_model

    with pytest.raises(ModelError) as refused:
        check_features_match_model(_meta(5), _features(features), "f.h5")
    assert "so their crush cannot be left out of the bed" in refused.value.message
    assert "embed the slides again" in refused.value.fix and "no --no-tile-stats" in refused.value.fix
    assert "their crush tiles leave the bed as they left the model's training beds" in refused.value.fix  # (h44e: it
    # said "the model was trained on beds they cut")
    check_features_match_model(_meta(5), _features(5), "f.h5")  # the same version: fits
    check_features_match_model(_meta(4), _features(4), "f.h5")  # neither left crush out: fits, as before


def test_a_model_trained_on_beds_with_crush_says_so_when_its_new_slides_leave_it_out():
    from weakstil.mil.identity import check_features_match_model, crush_unlike_training

    check_features_match_model(_meta(4), _features(5), "f.h5")  # accepted: the new beds follow the sTIL definition
    said = crush_unlike_training(_meta(4))  # score's once-a-run warning (its slides: this version's features)
    assert said is not None and "tile statistics version 4" in said and "train it again" in said
    assert "without tile statistics" in crush_unlike_training(_meta(None))
    assert crush_unlike_training(_meta(5)) is None and crush_unlike_training(_meta(4), 4) is None
