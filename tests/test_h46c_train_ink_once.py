"""``train`` makes each slide's ink test once (helper h46c, from h45h's notes).

Was: ``score`` shared one ink test per slide between the bed's ink veto and the QC's ink measure (helper h45h,
:func:`weakstil.ink_plane.ink_tests_kept`), but ``train`` made it twice per slide: it draws every slide's bed
(``BedSources.cohort``) long before the QC reads the first slide, and the memo kept the last slide's test only.
"""

from __future__ import annotations

import napari_plugin_fixtures

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below


def _two_slides_counted(scored, monkeypatch):
    """The shared cohort's first two slides (ids, paths, feature files) and a counter of the ink tests made, by name."""
    from collections import Counter

    import pandas as pd

    from weakstil import ink_plane
    from weakstil.files import FeaturesFile

    table = pd.read_csv(scored["root"] / "train.csv")
    ids, paths = table["slide_id"].astype(str).tolist()[:2], table["path"].tolist()[:2]
    features = [FeaturesFile.read(scored["root"] / "features" / f"{sid}.h5") for sid in ids]
    made, real = Counter(), ink_plane._ink_and_stain
    monkeypatch.setattr(ink_plane, "_ink_and_stain", lambda rgb, he, mpp, name, told: made.update([str(name)])
                        or real(rgb, he, mpp, name, told))
    return ids, paths, features, made


def test_train_keeps_every_slides_ink_test_for_the_whole_run(scored, tmp_path, monkeypatch):
    from weakstil import ink_plane, train

    seen = []
    monkeypatch.setattr(train, "_train_cohort", lambda *a, **k: seen.append(dict(ink_plane._KEPT.get() or {})))
    train.train_cohort(scored["root"] / "train.csv", scored["root"] / "features", tmp_path / "model")
    assert seen and seen[0].get(ink_plane._EVERY_SLIDE)  # the beds' tests kept for the QC, every slide's
    assert ink_plane._KEPT.get() is None  # let go at the end


def test_each_slides_ink_test_is_made_once_for_its_bed_and_then_its_qc(scored, monkeypatch):
    """As ``train`` makes them: every slide's bed (the detector's ink veto: ``slide_ink_share``), then every slide's
    QC statistics (``training_image_stats``)."""
    import numpy as np

    from weakstil import ink_plane
    from weakstil.mil.bank import FeatureBank
    from weakstil.qc.training import training_image_stats
    from weakstil.tumorbed.bed import SlideGeometry
    from weakstil.tumorbed.ink import slide_ink_share

    ids, paths, features, made = _two_slides_counted(scored, monkeypatch)

    def beds():
        shares, tests = [], []
        for f, p in zip(features, paths):
            geom, test = SlideGeometry.from_file(f), {}
            shares.append(slide_ink_share(f.attrs, geom.coords, geom.tile_size_level0, True, p, test))
            tests.append(test)
        return shares, tests

    with ink_plane.ink_tests_kept(every_slide=True):
        shares, tests = beds()
        again, tests_again = beds()  # the tests given again, as they were made
        stats = training_image_stats(FeatureBank.load([f.path for f in features], ids), paths)
        left = [k for k in ink_plane._KEPT.get() if isinstance(k, tuple)]  # the QC, their last reader, let them go (h47c)
    assert set(made) == set(ids) and max(made.values()) == 1, made  # was 3 a slide: the bed, the QC, the bed again (the last slide alone kept)
    assert all(s is not None for s in stats) and tests == tests_again and tests[0]["ink_test"]
    assert all(np.array_equal(a, b) for a, b in zip(shares, again)) and not left, left


def test_a_cohort_that_renames_its_slides_still_makes_each_ink_test_once(scored, monkeypatch):
    """Review r46c (h45l B): the bed names its ink test by the feature file's slide id, the QC named it by the cohort
    CSV's; a CSV whose ids are not the files' (features found by the slide file's name) made and kept each slide's
    test twice (8 slides: 16 tests kept)."""

    from weakstil import ink_plane
    from weakstil.mil.bank import FeatureBank
    from weakstil.qc.training import training_image_stats
    from weakstil.tumorbed.bed import SlideGeometry
    from weakstil.tumorbed.ink import slide_ink_share

    ids, paths, features, made = _two_slides_counted(scored, monkeypatch)
    with ink_plane.ink_tests_kept(every_slide=True):
        for f, p in zip(features, paths):
            geom = SlideGeometry.from_file(f)
            slide_ink_share(f.attrs, geom.coords, geom.tile_size_level0, True, p, {})
        renamed = [f"P{i}" for i in range(len(ids))]  # the cohort CSV's ids
        stats = training_image_stats(FeatureBank.load([f.path for f in features], renamed), paths)
        kept = [k for k in ink_plane._KEPT.get() if k != ink_plane._EVERY_SLIDE]
    assert all(s is not None for s in stats)
    # made once a slide, and let go by the QC, their last reader (helper h47c; kept twice a slide before r46c)
    assert sorted(made.elements()) == sorted(ids) and not kept, (made, kept)
