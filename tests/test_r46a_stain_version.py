"""Review r46a: a stain estimate version number names one rule only.

Hunt 45f's rule (dark tiles left out of the strengths) was on main as stain estimate 9 and reverted
(18c25ba); the feature files, caches and models made then say 9. Hunt 46a's rule first landed as 9 too, so
`weakstil train` took a folder of 15 of 45f's 45c feature files and 15 of 46a's without a word (rc 0; their
strengths differ, og45c_000's H x0.84) and a 45f-era model scored fresh slides. They must be refused as any
other version's are.
"""

from __future__ import annotations

import pytest

REVERTED_45F = 9  # the number hunt 45f's reverted rule wrote into feature files and model.json
REVERTED_46A = 10  # hunt 46a's rule, merged as 10 and reverted; it landed again as 11 (hunt 47a)


def test_r46a_a_model_on_the_reverted_rules_features_is_refused_before_any_slide(tmp_path):
    from weakstil.errors import WeakSTILError
    from weakstil.mil.identity import check_scores_new_slides
    from weakstil.stain import STAIN_ESTIMATE_VERSION
    from weakstil.tilestats import TILESTATS_VERSION

    meta = {"features": {"stain_estimate_version": REVERTED_45F, "tilestats_version": TILESTATS_VERSION},
            "training": {"config": {"tile_stats": True}}}
    with pytest.raises(WeakSTILError, match=f"estimated by method {STAIN_ESTIMATE_VERSION} but the model was "
                                            f"trained on features whose stain was estimated by method 9"):
        check_scores_new_slides(meta, tmp_path / "model.json")


def test_r46a_a_folder_mixing_the_reverted_rules_features_is_refused_naming_them():
    from weakstil.errors import WeakSTILError
    from weakstil.mil.identity import check_same_identity
    from weakstil.stain import STAIN_ESTIMATE_VERSION

    base = {"encoder": "small-cnn", "weights_sha256": "0" * 64, "mpp": 0.5, "tile_px": 224, "stain_norm": "macenko"}
    attrs = [{**base, "stain_estimate_version": REVERTED_45F if i % 2 else STAIN_ESTIMATE_VERSION} for i in range(6)]
    ids = [f"og45c_{i:03d}" for i in range(6)]
    with pytest.raises(WeakSTILError, match="3 of 6 feature files were embedded by another WeakSTIL version: their "
                                            "slides' stain was estimated by method 9.*og45c_001, og45c_003"):
        check_same_identity(ids, attrs)


@pytest.mark.parametrize("old", [REVERTED_45F, REVERTED_46A])
def test_h47a_a_model_on_either_reverted_number_is_refused(tmp_path, old):
    # hunt 47a: 10 was merged and reverted too, so a model trained on its files must not pass for 11's
    from weakstil.errors import WeakSTILError
    from weakstil.mil.identity import check_scores_new_slides
    from weakstil.stain import STAIN_ESTIMATE_VERSION
    from weakstil.tilestats import TILESTATS_VERSION

    assert STAIN_ESTIMATE_VERSION not in (REVERTED_45F, REVERTED_46A)
    meta = {"features": {"stain_estimate_version": old, "tilestats_version": TILESTATS_VERSION},
            "training": {"config": {"tile_stats": True}}}
    with pytest.raises(WeakSTILError, match=f"trained on features whose stain was estimated by method {old}"):
        check_scores_new_slides(meta, tmp_path / "model.json")
