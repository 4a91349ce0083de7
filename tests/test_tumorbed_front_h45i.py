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


def test_score_embeds_the_front_through_its_own_encoder_not_a_second_copy(scored, front_det, tmp_path, monkeypatch):
    from weakstil.encoders import factory

    built, real = [], factory.create_encoder
    monkeypatch.setattr(factory, "create_encoder", lambda *a, **k: built.append(a[:1]) or real(*a, **k))
    rows = _score(scored, front_det, tmp_path / "out")
    assert rows[0]["status"] in ("ok", "tissue-fallback"), rows[0]
    import h5py

    with h5py.File(tmp_path / "out" / f"{scored['held'].stem}.h5") as h:
        said = str(h.attrs["tumorbed_seed_vetoes"])
    assert "shifted tiles" in said  # the front was read (through the embedding's encoder, really run)
    assert len(built) == 1, built
