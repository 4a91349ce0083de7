"""The tumour-bed front refinement in ``score`` and ``tumorbed apply`` (review h45g's "not fixed", helper h45i).

Was: ``score`` built a second copy of the features' encoder for the front (twice the memory of a UNI- or
Virchow-sized encoder); results.csv did not say when the front was not applied; a bed kept because the
encoder could not be rebuilt was kept on every rerun, the weights back or not; the shifted tiles were read
without a word above debug level.
"""

from __future__ import annotations

import pytest

import napari_plugin_fixtures

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below


@pytest.fixture(scope="module")
def front_det(scored, tmp_path_factory):
    """A detector trained on the shared cohort (as test_tumorbed_front_h45b's), its front forced on, saved."""
    from weakstil.tumorbed.front import FrontRefine
    from weakstil.tumorbed.training_cache import train_tumorbed_from_cache

    det = train_tumorbed_from_cache(scored["root"] / "features", scored["cohort"] / "truth", augment=False,
                                    ink_veto=False, lymphoid_veto=False, tumour_cell_gate=False, infiltrate=False,
                                    max_slides=3, warn_unmatched=False, front=False)
    det.front = FrontRefine(enabled=True)
    folder = tmp_path_factory.mktemp("front_det") / "det"
    det.save(folder)
    return folder


def _score(scored, det, out, **opts):
    from weakstil.score import ScoreOptions, score_batch

    return score_batch([scored["held"]], ScoreOptions(model=scored["model"], out=out, weights="random", device="cpu",
                                                      workers=1, tumorbed_model=det, **opts), progress=False)


@pytest.fixture(scope="module")
def front_scored(scored, front_det, tmp_path_factory):
    """The held-out slide scored with the front on, the encoders built meanwhile counted (the real ones, run)."""
    from weakstil.encoders import factory

    built, real = [], factory.create_encoder
    factory.create_encoder = lambda *a, **k: built.append(a[:1]) or real(*a, **k)
    try:
        out = tmp_path_factory.mktemp("front_scored") / "out"
        rows = _score(scored, front_det, out)
    finally:
        factory.create_encoder = real
    return {"rows": rows, "out": out, "built": built}


def test_score_embeds_the_front_through_its_own_encoder_not_a_second_copy(scored, front_scored):
    import h5py

    assert front_scored["rows"][0]["status"] in ("ok", "tissue-fallback"), front_scored["rows"][0]
    with h5py.File(front_scored["out"] / f"{scored['held'].stem}.h5") as h:
        said = str(h.attrs["tumorbed_seed_vetoes"])
    assert "shifted tiles" in said  # the front was read (through the embedding's encoder, really run)
    assert len(front_scored["built"]) == 1, front_scored["built"]


def test_results_csv_says_the_fronts_outcome_and_an_older_table_without_it_still_reads(scored, front_scored,
                                                                                         tmp_path, caplog):
    import shutil

    import h5py
    import pandas as pd

    from weakstil.results_check import checked_records
    from weakstil.tumorbed.front import FRONT_REFINED

    out = tmp_path / "out"
    shutil.copytree(front_scored["out"], out)
    table = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False)
    with h5py.File(out / f"{scored['held'].stem}.h5") as h:
        file = str(h.attrs["tumorbed_front"])
        said = str(h.attrs["tumorbed_seed_vetoes"])
    row = table.iloc[0]
    assert row["tumorbed_front"] == file == front_scored["rows"][0]["tumorbed_front"]
    # refined, or why not: as the bed's seed_vetoes tells it
    assert file == FRONT_REFINED if said.endswith("shifted tiles") else file.startswith("not refined: ")
    table.drop(columns=["tumorbed_front"]).to_csv(out / "results.csv", index=False)  # an older WeakSTIL's table
    old = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False).to_dict("records")
    with caplog.at_level("WARNING"):
        rec = checked_records(out, old)[0]
    assert rec["tumorbed_front"] == file and "tumorbed_front" not in caplog.text  # from the file, unsaid


def test_a_bed_kept_without_its_front_for_want_of_the_encoder_is_drawn_again_once_the_encoder_is_back(
        scored, front_det, tmp_path, monkeypatch):
    """Was: 'tumorbed apply' kept the tile-level bed it drew while the features' weights were not here (its request
    does not hold the encoder) on every rerun, the weights back or not."""
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed import augment
    from weakstil.tumorbed.apply import apply_tumorbed
    from weakstil.tumorbed.front import FRONT_NO_ENCODER
    from weakstil.tumorbed.resolver import BedSources

    path = sorted((scored["root"] / "features").glob("*.h5"))[0]
    out = tmp_path / "beds"
    real = augment.features_encoder

    def gone(*a, **k):
        raise WeakSTILError("encoder 'small-cnn' has no published weights", fix="download them")

    monkeypatch.setattr(augment, "features_encoder", gone)
    first = apply_tumorbed(path, out, BedSources.open(detector=front_det))
    assert first.bed.front == FRONT_NO_ENCODER and not first.kept
    again = apply_tumorbed(path, out, BedSources.open(detector=front_det))  # still not there: kept, not redrawn
    assert again.kept and again.bed.front == FRONT_NO_ENCODER
    monkeypatch.setattr(augment, "features_encoder", real)  # the weights are back
    back = apply_tumorbed(path, out, BedSources.open(detector=front_det))
    assert not back.kept and back.bed.front != FRONT_NO_ENCODER and "shifted tiles" in back.bed.seed_vetoes
    assert apply_tumorbed(path, out, BedSources.open(detector=front_det)).kept  # and then kept


def test_a_score_whose_bed_lacked_its_front_for_want_of_the_encoder_is_redone_when_the_encoder_builds(
        scored, front_det, front_scored, tmp_path):
    """Was: a rerun of 'score' skipped a slide whose detected bed had been drawn without its front (the features'
    encoder not built then), whatever this run's encoder: its request does not hold the encoder's state."""
    import shutil

    import h5py
    import pandas as pd

    from weakstil.tumorbed.front import FRONT_NO_ENCODER, NO_ENCODER

    out = tmp_path / "out"
    shutil.copytree(front_scored["out"], out)
    h5 = out / f"{scored['held'].stem}.h5"
    with h5py.File(h5, "r+") as h:  # as a run without the encoder left it (the tile-level bed, said)
        was = str(h.attrs["tumorbed_front"])
        h.attrs["tumorbed_front"] = FRONT_NO_ENCODER
        h.attrs["tumorbed_seed_vetoes"] = f"{h.attrs['tumorbed_seed_vetoes']}; {NO_ENCODER} (no weights)"
    table = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False)
    table["tumorbed_front"] = FRONT_NO_ENCODER
    table.to_csv(out / "results.csv", index=False)
    _score(scored, front_det, out)  # this run builds the encoder: scored again, its front read
    with h5py.File(h5) as h:
        assert str(h.attrs["tumorbed_front"]) == was != FRONT_NO_ENCODER
    assert pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False)["tumorbed_front"].tolist() == [was]


def test_the_shifted_tiles_are_said_at_info_once_per_slide_with_a_bar_when_many(scored, monkeypatch, caplog):
    """Was: the shifted tiles (1.2 per tile of the bed's perimeter; minutes per slide for a large encoder on a CPU)
    were read with a line at debug level only."""
    import numpy as np

    from weakstil.cli import progress
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed import front

    shown = []

    class Bar:  # records what the bar was told (the embedding itself runs)
        def __enter__(self):
            return self

        def __exit__(self, *exc):
            shown.append("closed")

        def add_task(self, description, total, info):
            shown.append((description, total))
            return 0

        def update(self, task, completed):
            shown.append(completed)

    monkeypatch.setattr(progress, "bar_progress", lambda unit: Bar())
    monkeypatch.setattr(progress, "info_hidden", lambda: False)
    f = FeaturesFile.read(sorted((scored["root"] / "features").glob("*.h5"))[0])
    embed = front.slide_embedder(f.attrs)
    xy = np.asarray(f.coords)[:5]
    with caplog.at_level("INFO", logger="weakstil.tumorbed.front"):
        embed(xy)  # a few: no bar
        monkeypatch.setattr(front, "PROGRESS_TILES", 4)
        embed(xy)  # many: a bar to the last tile
    lines = [r for r in caplog.records if "shifted tiles at the bed's front" in r.getMessage()]
    assert [r.levelname for r in lines] == ["INFO", "INFO"] and all(" 5 shifted tiles" in r.getMessage() for r in lines)
    assert shown[0] == (f"{f.attrs['slide_id']}: bed front", 5) and shown[-2:] == [5, "closed"]
