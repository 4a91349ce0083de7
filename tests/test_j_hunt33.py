"""Hunt 33 (j): a hand-edited model.json, key by key.

Every key of a trained model's model.json was deleted, set to null, or retyped (text for a number,
a list for an object, negative, NaN) and one slide scored with it (731 edits). Before, 179 of them
gave a Python error, Python's spelling or an error naming the feature file instead of one line naming
model.json and the fix, and 2 (architecture.centre_embeddings "true" or 1) scored silently otherwise
(sTIL 22.4 -> 47.4); after, 348 are such a line, 382 score as before (training notes, threshold), 1 is
left (a deleted encoder card stain_norm, blamed on the feature file: fixed in hunt 34b, below). Before:
a deleted ``format`` said "(format None)", a null ``format_version`` "format_version None", a NaN
``tiling.tile_px`` "unexpected ValueError: cannot convert float NaN to integer", a null tiling
``key.mask_mpp`` or tissue ``closing_um`` "unexpected TypeError: '>' not supported between ...
'NoneType'", a deleted ``key.mask_mpp`` "(KeyError: 'mask_mpp')", and a null or NaN encoder card
``mean``/``std``/``input_px`` was blamed on the slide's feature file ("the model's is None. Fix: embed
the slides with the model's encoder"); a deleted ``weights_sha256`` said "recorded None" and a deleted
``architecture.input_dim`` "Architecture.__init__() missing ..." (the outside tester's two).

Now ``load_model`` checks every field the network is rebuilt and scored from against the type
'weakstil train' writes (weakstil.mil.meta_schema): one line naming model.json, the key and "restore
model.json from the model folder's copy ... or train the model again"; values shown as JSON (null,
NaN), never None. Editing the threshold stays the lab's to do. One tiny model (one epoch, two slides)
serves every case.

Hunt 34b: an encoder card ``stain_norm`` deleted from a --stain-norm macenko model read as 'none', so
score embedded without normalisation and said "error: OUT/features/<slide>.h5: tumour-bed detector
... was trained on features embedded with --stain-norm macenko, but these features with --stain-norm
none. Fix: embed with --stain-norm macenko" (the feature file blamed; with --features, as below: "features
do not fit the model ... stain normalisation"). Now the card's
stain_norm must agree with the ``features.stain_norm`` train recorded: one line naming model.json
and 'encoder.card.stain_norm'.
"""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import one_epoch_model, run_cli


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, one_torch_thread_module):
    root = tmp_path_factory.mktemp("h33j")
    model, cohort, labels, features = one_epoch_model(root, seed=33, slides=2, size_mm=(0.5, 0.5))
    return {"root": root, "model": model, "slide": cohort / labels["path"][0], "features": features}


def _score(tiny, tmp_path, edit):
    model = shutil.copytree(tiny["model"], tmp_path / "model")
    meta = json.loads((model / "model.json").read_text())
    edit(meta)
    (model / "model.json").write_text(json.dumps(meta))
    return run_cli("score", tiny["slide"], "--model", model, "--out", tmp_path / "out", "--features",
                   tiny["features"]), model


def _delete(*keys):
    def edit(meta):
        for k in keys[:-1]:
            meta = meta[k]
        del meta[keys[-1]]
    return edit


def _set(value, *keys):
    def edit(meta):
        for k in keys[:-1]:
            meta = meta[k]
        meta[keys[-1]] = value
    return edit


CASES = [
    ("weights_sha256-deleted", _delete("weights_sha256"), "has no 'weights_sha256'"),
    ("input_dim-deleted", _delete("architecture", "input_dim"), "has no 'architecture.input_dim'"),
    ("hidden-text", _set("64", "architecture", "hidden"), "'architecture.hidden' is \"64\", not a positive whole"),
    ("dropout-nan", _set(float("nan"), "architecture", "dropout"), "'architecture.dropout' is NaN"),
    ("tile_stats-null", _set(None, "architecture", "tile_stats"), "'architecture.tile_stats' is null, not true or"),
    ("format-deleted", _delete("format"), "not a WeakSTIL MIL model (no 'format')"),
    ("format_version-null", _set(None, "format_version"), "'format_version' is null, not a whole number"),
    ("tile_px-nan", _set(float("nan"), "tiling", "tile_px"), "tiling tile_px NaN is not a positive whole number"),
    ("mask_mpp-null", _set(None, "tiling", "key", "mask_mpp"), "'tiling.key.mask_mpp' is null, not a positive"),
    ("mask_mpp-deleted", _delete("tiling", "key", "mask_mpp"),
     "'tiling' key is not a tiling 'weakstil train' writes (it has no \"mask_mpp\")"),
    ("closing_um-text", _set("24", "tiling", "key", "tissue", "closing_um"), "'tiling.key.tissue.closing_um' is"),
    ("card-mean-null", _set(None, "encoder", "card", "mean"), "'encoder.card.mean' is null, not a list of 3"),
    ("card-std-nan", _set([0.2, float("nan"), 0.2], "encoder", "card", "std"), "'encoder.card.std' is [0.2, NaN"),
    ("architecture-list", _set([64], "architecture"), "model.json 'architecture' is not a JSON object"),
    ("seed-nan", _set(float("nan"), "seed"), "'seed' is NaN, not a whole number"),
    ("training-config-text", _set("x", "training", "config"), "'training.config' is \"x\", not a JSON object"),
    ("card-input_px-null", _set(None, "encoder", "card", "input_px"), "'encoder.card.input_px' is null"),
    ("card-stain_norm-deleted", _delete("encoder", "card", "stain_norm"),
     "'encoder.card.stain_norm' is missing, but 'features.stain_norm' says the model was trained on features "
     "embedded with --stain-norm macenko"),
    ("card-stain_norm-edited", _set("none", "encoder", "card", "stain_norm"),
     "'encoder.card.stain_norm' is \"none\", but 'features.stain_norm' says"),
]


@pytest.mark.parametrize("edit, said", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_an_edited_model_json_key_is_one_line_naming_it(tiny, tmp_path, edit, said) -> None:
    result, model = _score(tiny, tmp_path, edit)
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr  # (a warning of the run may come first)
    line = errors[0]
    assert line.startswith(f"error: {model / 'model.json'}: "), line  # model.json, not a feature file
    assert said in line, line
    for python in ("None", "nan", "unexpected", "Error", "__init__"):
        assert python not in line, line
    assert "Fix: " in line


def test_an_edited_threshold_still_scores(tiny, tmp_path) -> None:
    """The threshold is the lab's to set: an edit is not refused."""
    result, _ = _score(tiny, tmp_path, _set(55.0, "threshold"))
    assert result.returncode == 0, result.stderr
