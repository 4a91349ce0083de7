"""The shape of the ``model.json`` fields a model is rebuilt and scored from, checked once when it
is loaded: a hand-edited or damaged field is one error line naming the key and the fix, never a
Python error later ("Architecture.__init__() missing 1 required positional argument", "recorded
None", "'>' not supported between 'float' and 'NoneType'"), an error blaming the slides' feature
files for an edited encoder card, or a negative tissue mask µm/px that hung scoring (hunt 33j).

Fields older models lack stay optional (their readers have defaults); a field that is there must
have the type 'weakstil train' writes. Values of the right type are the lab's to edit (threshold)
or are compared with the weights and features later (input_dim, the encoder card)."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

from weakstil.errors import ModelError

#: The ``format_version`` of model.json that 'weakstil train' writes and this weakstil reads (a newer one: upgrade).
FORMAT_VERSION = 1
#: The fix of every field error: the model's weights were trained with the values train wrote.
FIX = ("restore model.json from the model folder's copy (or its version control) as 'weakstil train' wrote it, "
       "or train the model again")


def _number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _whole(v: object) -> bool:
    return _number(v) and float(v) == int(v)


def _loads(text: str) -> object:
    try:
        return json.loads(text)
    except ValueError:
        return None


#: name -> (test, what it must be)
KINDS: dict[str, tuple[Callable[[object], bool], str]] = {
    "str": (lambda v: isinstance(v, str) and v != "", "a non-empty text"),
    "sha": (lambda v: isinstance(v, str) and re.fullmatch(r"[0-9a-f]{64}", v) is not None,
            "a SHA-256 (64 hex digits)"),
    "posint": (lambda v: _whole(v) and v > 0, "a positive whole number"),
    "count": (lambda v: _whole(v) and v >= 0, "a whole number, 0 or more"),
    # train writes 1 (no option sets more); a million layers from elsewhere took minutes to even compare (hunt 39f)
    "layers": (lambda v: _whole(v) and 1 <= v <= 64, "a whole number from 1 to 64"),
    "posnum": (lambda v: _number(v) and v > 0, "a positive number"),
    "nonneg": (lambda v: _number(v) and v >= 0, "a number, 0 or more"),
    "frac": (lambda v: _number(v) and 0 <= v <= 1, "a number from 0 to 1"),
    "dropout": (lambda v: _number(v) and 0 <= v < 1, "a number from 0 to below 1"),
    "key": (lambda v: isinstance(v, dict) or (isinstance(v, str) and isinstance(_loads(v), dict)),
            "a tiling key (a JSON object)"),
    "counts": (lambda v: isinstance(v, dict) and all(_whole(n) and n >= 0 for n in v.values()),
               "a JSON object of slide counts"),
    "bool": (lambda v: isinstance(v, bool), "true or false"),
    "dict": (lambda v: isinstance(v, dict), "a JSON object"),
    "dict|null": (lambda v: v is None or isinstance(v, dict), "a JSON object or null"),
    "card": (lambda v: v is None or (isinstance(v, dict) and bool(v)), "an encoder card (a non-empty JSON object)"),
    "rgb": (lambda v: isinstance(v, list) and len(v) == 3 and all(_number(x) for x in v), "a list of 3 numbers"),
    "rgb+": (lambda v: isinstance(v, list) and len(v) == 3 and all(_number(x) and x > 0 for x in v),
             "a list of 3 positive numbers"),
    "version": (lambda v: v is None or (_whole(v) and v >= 0) or (isinstance(v, str) and v != ""),
                "a version number or null"),  # null: features without the measurement
    "norm": (lambda v: v is None or (isinstance(v, str) and v != ""), "a stain normalisation name or null"),
    "foldlist": (lambda v: isinstance(v, list) and all(_fold_entry(e) for e in v),
                 "a list of fold model entries (each {\"file\": ..., \"sha256\": ...})"),
}


def _fold_entry(entry: object) -> bool:
    """One entry of ``folds`` as train writes it: the fold model's file (inside the model folder, checked when
    it is loaded), its SHA-256 and its fold and member numbers (absent in older models)."""
    return (isinstance(entry, dict) and KINDS["str"][0](entry.get("file")) and KINDS["sha"][0](entry.get("sha256"))
            and all(k not in entry or KINDS["posint"][0](entry[k]) for k in ("fold", "member")))

#: key path -> (kind, required). A section's fields are checked when the section is an object (a tiling
#: key lacking a field is weakstil.tiles.scoring_tiling's to refuse: partial keys of older caches are matched).
FIELDS: dict[tuple[str, ...], tuple[str, bool]] = {
    ("format_version",): ("count", False),
    ("seed",): ("count", False),
    ("scoring",): ("str", False),
    ("training", "config"): ("dict", False),
    ("training", "tumorbeds"): ("dict", False),
    ("training", "tumorbeds", "slides"): ("counts", False),
    ("qc", "files"): ("dict", False),
    # the fold models (score's ensemble, the interval) and the number of folds (the report's "N-fold"): a string
    # "5" there was refused only when the folds were loaded, by some commands and not others (helper h43d)
    ("folds",): ("foldlist", False),
    # (null: trained without cross-validation; a "5" there was 'unexpected AttributeError' in the report, and a
    # number for the cohort's CSV a TypeError in evaluate's in-sample check: helper h43f)
    ("training", "cross_validation"): ("dict|null", False),
    ("training", "cross_validation", "folds"): ("posint", False),
    ("training", "cohort"): ("str", False),
    ("weights_sha256",): ("sha", True),
    ("architecture",): ("dict", True),
    ("architecture", "input_dim"): ("posint", True),
    ("architecture", "hidden"): ("posint", False),
    ("architecture", "layers"): ("layers", False),
    ("architecture", "dropout"): ("dropout", False),
    ("architecture", "aggregator"): ("str", False),
    ("architecture", "attention_dim"): ("posint", False),
    ("architecture", "stroma_weight"): ("str", False),
    ("architecture", "tile_stats"): ("bool", False),
    ("architecture", "centre_embeddings"): ("bool", False),
    ("encoder", "name"): ("str", False),
    ("encoder", "weights_sha256"): ("str", False),
    ("encoder", "card"): ("card", False),
    ("encoder", "card", "model"): ("str", False),
    ("encoder", "card", "model_kwargs"): ("dict", False),
    ("encoder", "card", "input_px"): ("posint", False),
    ("encoder", "card", "embed_dim"): ("posint", False),
    ("encoder", "card", "mean"): ("rgb", False),
    ("encoder", "card", "std"): ("rgb+", False),
    ("encoder", "card", "pooling"): ("str", False),
    ("encoder", "card", "stain_norm"): ("str", False),
    ("encoder", "card", "mpp"): ("posnum", False),
    ("tiling", "key"): ("key", False),
    ("tiling", "key", "mpp"): ("posnum", False),
    ("tiling", "key", "tile_px"): ("posint", False),
    ("tiling", "key", "overlap_px"): ("count", False),
    ("tiling", "key", "tissue_threshold"): ("frac", False),
    ("tiling", "key", "mode"): ("str", False),
    ("tiling", "key", "mask_mpp"): ("posnum", False),
    ("tiling", "key", "tissue"): ("dict", False),
    **{("tiling", "key", "tissue", k): ("bool" if k == "remove_pen" else "nonneg", False)
       for k in ("min_saturation", "max_saturation", "min_density", "closing_um", "min_object_um2", "max_hole_um2",
                 "remove_pen", "fat_window_um", "fat_membrane_share")},  # weakstil.tissue.TissueParams
    ("features", "stain_estimate_version"): ("version", False),
    ("features", "tilestats_version"): ("version", False),
    ("features", "stain_norm"): ("norm", False),
}


def shown(value: object) -> str:
    """The value as it reads in model.json (null, NaN, "text"), not as Python prints it."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError):
        text = str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def newer_format(meta: dict) -> bool:
    """Whether ``model.json`` is of a newer format than this weakstil reads (its fields are then not judged: a
    newer train's field was "not ..." or "remove it", not "upgrade", helper h42g)."""
    version = meta.get("format_version")
    return isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION


def check_model_fields(meta: dict, path: Path, required_too: bool = True) -> None:
    """One error naming ``model.json``, the key and the fix for the first field of :data:`FIELDS`
    that is missing (where required; not with ``required_too=False``: a reader of the record only, the
    report) or not of the type 'weakstil train' writes."""
    for keys, (kind, required) in FIELDS.items():
        required = required and required_too
        parent: object = meta
        for k in keys[:-1]:
            parent = parent.get(k) if isinstance(parent, dict) else None
        if not isinstance(parent, dict):
            continue  # its section is absent (optional) or itself reported
        name = ".".join(keys)
        test, what = KINDS[kind]
        if keys[-1] not in parent:
            if required:
                raise ModelError(f"model.json has no '{name}' (it must be {what})", path=path, fix=FIX)
            continue
        value = parent[keys[-1]]
        if not test(value):
            raise ModelError(f"model.json '{name}' is {shown(value)}, not {what}", path=path, fix=FIX)
    check_tiling_names(meta, path)
    check_stain_norm_agrees(meta, path)


#: The fields of ``model.json``'s ``tiling`` section, as 'weakstil train' writes them: score tiles new
#: slides at ``mpp`` and ``tile_px`` (and the rest of ``key``), those the model was trained on.
TILING_FIELDS = ("mpp", "tile_px", "key")
#: Names a lab may write for the tiles outside ``tiling`` (at the top of model.json).
_TILING_LOOKALIKES = ("tile_size", "tile_px", "tile_size_px", "tile_size_um", "mpp", "overlap", "overlap_px")


def check_tiling_names(meta: dict, path: Path) -> None:
    """A field of tiles that WeakSTIL does not read (``tiling.tile_size``, or ``tile_size`` / ``mpp`` at the top
    of model.json): one error naming it. It was ignored without a word (the fault tester's ``"tile_size":
    "224"``, helper h42f), so a lab that wrote another tile size there scored tiles of the trained size
    believing otherwise."""
    tiling = meta.get("tiling") if isinstance(meta.get("tiling"), dict) else {}
    odd = [f"tiling.{k}" for k in tiling if k not in TILING_FIELDS] + [k for k in _TILING_LOOKALIKES if k in meta]
    if not odd:
        return
    said = f"{_number_text(tiling.get('tile_px'))} px at {_number_text(tiling.get('mpp'))} µm/px" \
        if tiling.get("tile_px") is not None else "those of 'tiling.tile_px' and 'tiling.mpp'"
    raise ModelError(f"model.json has '{odd[0]}', which WeakSTIL does not read: the model scores tiles of {said}, those "
                     "it was trained on (its 'tiling' section holds only mpp, tile_px and key)", path=path,
                     fix=f"remove '{odd[0]}' from model.json; to score other tiles, embed the cohort with them and "
                         "train a model on them")


def _number_text(value: object) -> str:
    return f"{value:g}" if _number(value) else shown(value)


def check_stain_norm_agrees(meta: dict, path: Path) -> None:
    """The encoder card's ``stain_norm`` (what ``score`` embeds new slides with) must say what the
    ``features`` section says the training features were embedded with. A card key deleted by hand
    read as 'none': score embedded without normalisation and blamed the slide's feature file
    ("tumour-bed detector ... trained on features embedded with --stain-norm macenko, but these
    features with --stain-norm none. Fix: embed with --stain-norm macenko"), or, with no detector,
    scored the unnormalised features silently. Both recorded since hunt 24; an older model lacks
    the ``features`` entry and is not checked."""
    card, features = (meta.get("encoder") or {}).get("card"), meta.get("features")
    if not isinstance(card, dict) or not isinstance(features, dict) or "stain_norm" not in features:
        return
    trained, scoring = features["stain_norm"] or "none", card.get("stain_norm") or "none"
    if trained != scoring:
        said = f"is {shown(card['stain_norm'])}" if "stain_norm" in card else "is missing"
        raise ModelError(f"model.json 'encoder.card.stain_norm' {said}, but 'features.stain_norm' says the model was "
                         f"trained on features embedded with --stain-norm {trained}", path=path, fix=FIX)
