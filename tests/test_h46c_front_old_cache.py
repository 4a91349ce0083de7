"""The tumour-bed front on feature caches from before hunt 24, and score's reruns of beds drawn without their front
(helper h46c, from review h45l's finding A and h45i's notes).

Was: a cache made before hunt 24 records the checkpoint *file*'s hash as ``weights_sha256``. ``score`` accepted it
(:func:`weakstil.weights_id.same_weights`), but the front compared the hashes exactly (``front._offered``,
``augment.features_encoder``): its bed was drawn without its front ("encoder not rebuilt"), and ``score`` scored
the slide again on every run, since its own encoder built.
"""

from __future__ import annotations

import copy

import pytest

import napari_plugin_fixtures

scored = napari_plugin_fixtures.scored  # a pytest fixture, used by name below


@pytest.fixture(scope="module")
def detector(scored):
    """A detector trained on the shared cohort (as test_tumorbed_front_h45i's), its front on."""
    from weakstil.tumorbed.front import FrontRefine
    from weakstil.tumorbed.training_cache import train_tumorbed_from_cache

    det = train_tumorbed_from_cache(scored["root"] / "features", scored["cohort"] / "truth", augment=False,
                                    ink_veto=False, lymphoid_veto=False, tumour_cell_gate=False, infiltrate=False,
                                    max_slides=3, warn_unmatched=False, front=False)
    det.front = FrontRefine(enabled=True)
    return det


@pytest.fixture(scope="module")
def old_cache(scored, tmp_path_factory):
    """A checkpoint file of the cohort's (random) weights, the encoder built from it, and a copy of a slide's
    features whose attributes record the weights as caches did before hunt 24: the file's sha256 alone."""
    import h5py

    from weakstil.encoders.factory import create_encoder, save_state_dict
    from weakstil.weights_id import FILE_ATTR, file_sha256

    folder = tmp_path_factory.mktemp("old_cache")
    weights = folder / "ckpt.safetensors"
    save_state_dict(create_encoder("small-cnn", weights="random").model.state_dict(), weights)
    encoder = create_encoder("small-cnn", weights=weights)
    path = sorted((scored["root"] / "features").glob("*.h5"))[0]
    old = folder / path.name
    old.write_bytes(path.read_bytes())
    with h5py.File(old, "a") as h:
        h.attrs["weights_sha256"] = file_sha256(weights)
        h.attrs["weights_source"] = str(weights)
        if FILE_ATTR in h.attrs:
            del h.attrs[FILE_ATTR]
    return {"encoder": encoder, "features": old, "weights": weights}


def test_the_front_takes_a_pre_hunt_24_cache_as_score_does(old_cache):
    from weakstil.feature_cache import _weights_record
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed import front
    from weakstil.tumorbed.augment import features_encoder
    from weakstil.weights_id import same_weights

    attrs, _ = FeaturesFile.read_header(old_cache["features"])
    enc = old_cache["encoder"]
    assert attrs["weights_sha256"] != enc.weights_sha256  # the file's hash, not the tensors'
    assert same_weights(attrs, _weights_record(enc))  # what score's reuse of the cache accepts
    assert front._offered(attrs, lambda: enc) is enc  # score's own encoder used, not refused
    assert features_encoder(attrs).weights_sha256 == enc.weights_sha256  # rebuilt from the file, not refused
    other = {**attrs, "weights_sha256": "0" * 64}  # other weights are still refused
    assert front._offered(other, lambda: enc) is None


def test_a_pre_hunt_24_cache_gets_its_bed_front(detector, old_cache):
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed.front import FRONT_NO_ENCODER, NO_ENCODER

    det = copy.copy(detector)
    det._front_encoders, det.offered_encoder = {}, lambda: old_cache["encoder"]
    bed = det.detect_file(FeaturesFile.read(old_cache["features"]))
    assert NO_ENCODER not in bed.seed_vetoes and bed.front != FRONT_NO_ENCODER
    assert "shifted tiles" in bed.seed_vetoes


def _ctx(det, cache_dir, encoder):
    from types import SimpleNamespace

    def built():
        if isinstance(encoder, Exception):
            raise encoder
        return encoder

    det = copy.copy(det)
    det._front_encoders, det.offered_encoder = {}, built
    opts = SimpleNamespace(cache_dir=cache_dir, slide_id=lambda p: p.stem)
    return SimpleNamespace(beds=SimpleNamespace(detector=det), opts=opts, encoder=built)


def test_score_redoes_a_bed_without_front_only_when_the_front_can_read_it_now(detector, old_cache, tmp_path):
    """Was: ``score`` asked only whether its own encoder built; features the front still refused (another card,
    weights not here) were scored again on every run."""
    import json

    import h5py

    from weakstil.errors import WeakSTILError
    from weakstil.score_state import _front_back
    from weakstil.tumorbed.front import FRONT_NO_ENCODER, NO_ENCODER

    score = {"tumorbed_front": FRONT_NO_ENCODER, "tumorbed_seed_vetoes": f"ink: off; {NO_ENCODER} (gone)"}
    cache = tmp_path / "features"
    cache.mkdir()
    features = cache / old_cache["features"].name
    features.write_bytes(old_cache["features"].read_bytes())
    slide = tmp_path / features.with_suffix(".tiff").name  # its id names its cache
    enc = old_cache["encoder"]
    assert _front_back(score, _ctx(detector, cache, enc), slide)  # the front reads it now: redone
    assert not _front_back({**score, "tumorbed_front": "refined", "tumorbed_seed_vetoes": ""},
                           _ctx(detector, cache, enc), slide)  # its front was drawn: kept
    with h5py.File(features, "a") as h:  # embedded under another card: the front refuses it, this encoder builds
        card = json.loads(h.attrs["encoder_card"])
        h.attrs["encoder_card"] = json.dumps({**card, "mean": [0.5, 0.5, 0.5]})
    assert not _front_back(score, _ctx(detector, cache, enc), slide)  # was True: rescored on every run
    gone = WeakSTILError("no weights", fix="download them")
    assert not _front_back(score, _ctx(detector, tmp_path / "nocache", gone), slide)


def test_a_score_whose_front_was_not_read_is_redone_when_the_slide_reads(scored, detector, tmp_path_factory):
    """Was: a slide scored once with 'front: slide not read' (its shifted tiles not read: a read error of the slide,
    its features cached) was skipped by every rerun of 'score', the slide readable again or not: score's request
    has no ``slide_read`` (apply's bed request has)."""
    import shutil

    import h5py
    import pandas as pd

    from weakstil.score import ScoreOptions, score_batch
    from weakstil.tumorbed.front import FRONT_NOT_READ, NOT_READ

    folder = tmp_path_factory.mktemp("h46c_det") / "det"
    detector.save(folder)
    out = tmp_path_factory.mktemp("h46c_scored") / "out"
    shutil.copytree(scored["scores"] / "features", out / "features")  # the slide's features cached: not embedded again

    def score():
        return score_batch([scored["held"]], ScoreOptions(model=scored["model"], out=out, weights="random",
                                                          device="cpu", workers=1, tumorbed_model=folder), progress=False)

    score()
    h5 = out / f"{scored['held'].stem}.h5"
    with h5py.File(h5, "r+") as h:  # as a run that could not read the shifted tiles left it
        was = str(h.attrs["tumorbed_front"])
        h.attrs["tumorbed_front"] = FRONT_NOT_READ
        h.attrs["tumorbed_seed_vetoes"] = f"{h.attrs['tumorbed_seed_vetoes']}; {NOT_READ} (read error)"
    table = pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False)
    table["tumorbed_front"] = FRONT_NOT_READ
    table.to_csv(out / "results.csv", index=False)
    score()  # the slide reads now: scored again, its front read
    with h5py.File(h5) as h:
        assert str(h.attrs["tumorbed_front"]) == was != FRONT_NOT_READ
    assert pd.read_csv(out / "results.csv", dtype=str, keep_default_na=False)["tumorbed_front"].tolist() == [was]
