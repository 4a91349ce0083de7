"""Which encoder and tiles features come from, and whether they fit a model (no torch import)."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from weakstil.errors import ModelError, WeakSTILError  # (ModelError: imported from here too)
from weakstil.weights_id import same_weights

#: Attributes of a feature cache that identify the encoder and tiles.
#: (``tilestats_version`` since helper h42b: a folder where some slides' tiles were measured by another version of
#: the tile statistics, the same columns, was trained on as one kind, the model recording the first slide's)
IDENTITY_ATTRS = ("encoder", "weights_sha256", "mpp", "tile_px", "stain_norm", "stain_estimate_version",
                  "tilestats_version")


def _json_or_raw(value: object) -> object:
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


#: What an encoder card says about the pixels and the network (the same weights give other features
#: when one of these is edited).
CARD_FIELDS = ("model", "model_kwargs", "input_px", "mean", "std", "pooling")


def _tiling(a: dict) -> dict:
    key = _json_or_raw(a.get("tiling_key"))
    return key if isinstance(key, dict) else {}


def _card(a: dict) -> dict:
    card = _json_or_raw(a.get("encoder_card"))
    return {k: card.get(k) for k in CARD_FIELDS if k in card} if isinstance(card, dict) else {}


def card_changes(card: dict, recorded: dict, fields: Sequence[str] = CARD_FIELDS) -> list[str]:
    """The ``fields`` (:data:`CARD_FIELDS`) that ``card`` says otherwise than ``recorded`` (fields
    ``recorded`` lacks, as a model of an older card does, are not compared)."""
    return [k for k in fields if k in card and k in recorded
            and json.dumps(card[k], sort_keys=True) != json.dumps(recorded[k], sort_keys=True)]


def _differences(named: dict, other: dict, label: str = "majority") -> list[str]:
    """``name value (majority: value)`` for the top-level entries of ``named`` that differ."""
    return [f"{k} {v} ({label}: {other.get(k)})" for k, v in named.items() if other.get(k) != v]


def _older_stain_estimate(slide_ids: Sequence[str], attrs: Sequence[dict[str, object]]) -> WeakSTILError | None:
    """A features folder holding files that another WeakSTIL version embedded (their slides' stain estimated
    by another method than this version's): the cause, and the fix that is to embed those slides again. The
    generic error named 'stain_estimate_version 8 (majority: 5)' and said to embed every slide 'with the same
    encoder, weights, --stain-norm and tiling', which they were (hunt 36k)."""
    from weakstil.stain import STAIN_ESTIMATE_VERSION

    methods = [str(_json_or_raw(a.get("stain_estimate_version"))) for a in attrs]
    if len(set(methods)) < 2:
        return None
    ours = str(STAIN_ESTIMATE_VERSION)
    other = [i for i, m in enumerate(methods) if m != ours]
    # none of this version's method: those of the fewer methods are the odd ones out
    if len(other) == len(methods):
        common = max(set(methods), key=methods.count)
        other = [i for i, m in enumerate(methods) if m != common]
    theirs = sorted({methods[i] for i in other})
    label = ", ".join("not recorded" if m == "None" else m for m in theirs)
    rest = sorted(set(methods) - set(theirs))
    return WeakSTILError(
        f"{len(other)} of {len(methods)} feature files were embedded by another WeakSTIL version: their slides' stain "
        f"was estimated by method {label}, the other slides' by method {', '.join(rest)}"
        f"{'' if rest == [ours] else f' (this WeakSTIL: {ours})'}, "
        f"e.g. {', '.join(slide_ids[i] for i in other[:5])}",
        fix="embed those slides again with this WeakSTIL (weakstil embed into the same --out folder makes an older "
            "version's feature files again), then run again")


def check_same_identity(slide_ids: Sequence[str], attrs: Sequence[dict[str, object]]) -> dict[str, object]:
    """Encoder identity shared by all feature files; error naming the odd ones out. The whole tiling
    (overlap, tissue threshold...) and the encoder card's pixel settings count too: a model records
    one of each, and refused its own training features when one slide's differed (7A #2)."""
    from weakstil.weights_id import FILE_ATTR, canonical_weights, file_hash

    weights = canonical_weights(list(attrs))  # a cache from before hunt 24 (a file hash) and a newer one agree

    def key(a, sha):
        return (*(str(sha if k == "weights_sha256" else a.get(k)) for k in IDENTITY_ATTRS),
                json.dumps(_tiling(a), sort_keys=True), json.dumps(_card(a), sort_keys=True))

    keys = [key(a, sha) for a, sha in zip(attrs, weights)]
    values, counts = np.unique(np.array([json.dumps(k) for k in keys]), return_counts=True)
    if len(values) > 1:
        common = json.loads(values[np.argmax(counts)])
        odd = [i for i, k in enumerate(keys) if list(k) != common]
        def named(k):
            return {**dict(zip(IDENTITY_ATTRS, k)), **json.loads(k[-2]),
                    **{f"card {f}": v for f, v in json.loads(k[-1]).items()}}

        older = _older_stain_estimate(slide_ids, attrs)
        if older:
            raise older
        # no kind the most common (8 slides of each of two encoders): no 'majority' to name
        tie = int((counts == counts.max()).sum()) > 1
        majority = f"the other {int(counts.max())} (no kind is the most common)" if tie else "the majority"
        raise WeakSTILError(
            f"feature files come from different encoders, stain normalisations or tile settings: {len(odd)} "
            f"slide{' differs' if len(odd) == 1 else 's differ'} from {majority}, e.g. {', '.join(slide_ids[i] for i in odd[:5])} "
            f"({'; '.join(_differences(named(keys[odd[0]]), named(common), 'the others' if tie else 'majority')[:4])})",
            fix="embed all slides of the cohort with the same encoder, weights, --stain-norm and tiling (--mpp, "
                "--tile-size, --overlap, --tissue-threshold); those embedded by another WeakSTIL version (another "
                "tilestats_version): embed them again with this one",
        )
    a = attrs[0] if attrs else {}
    new = next((b for b in attrs if file_hash(b) is not None), a)  # one recording both hashes
    return {
        **measurement_identity(a),
        "encoder": a.get("encoder"),
        "weights_sha256": new.get("weights_sha256"),
        **({FILE_ATTR: file_hash(new)} if file_hash(new) is not None else {}),
        "encoder_card": _json_or_raw(a.get("encoder_card")),
        "mpp": a.get("mpp"),
        "tile_px": a.get("tile_px"),
        "tiling_key": _json_or_raw(a.get("tiling_key")),
        "library_versions": library_versions_of(attrs),
    }


def library_versions_of(attrs: Sequence[dict[str, object]]) -> list[dict]:
    """The distinct ``library_versions`` (reader, decoders, torch, timm...) the feature files were
    made with, as a model records them: one entry when the cohort was embedded in one environment;
    none for files from before hunt 33. Not part of the identity: features from another release
    of a reader still fit a model."""
    seen = {str(a.get("library_versions")) for a in attrs if a.get("library_versions")}
    return [json.loads(v) for v in sorted(seen)]


#: Attributes of a feature cache saying how its slide's stain was estimated and its tiles measured.
MEASUREMENT_ATTRS = ("stain_estimate_version", "tilestats_version", "stain_norm")


def measurement_identity(attrs: dict) -> dict[str, object]:
    """The :data:`MEASUREMENT_ATTRS` of a feature cache's attributes (None where it has none)."""
    return {k: _json_or_raw(attrs.get(k)) for k in MEASUREMENT_ATTRS}


def stain_estimate_problem(meta: dict, identity: dict[str, object]) -> str | None:
    """Why features whose slide stain was estimated otherwise than the model's training features do
    not fit it (the tile measurements and the normalised pixels follow the stain estimate), or None.
    A model from before the version was recorded (``features`` missing in model.json) was trained on
    version 3 or older."""
    uses_stain = identity.get("tilestats_version") is not None or str(identity.get("stain_norm") or "none") != "none"
    ours = identity.get("stain_estimate_version")
    if not uses_stain or ours is None:
        return None
    theirs = (meta.get("features") or {}).get("stain_estimate_version")
    if theirs is not None and str(theirs) == str(ours):
        return None
    return (f"the slides' stain was estimated by method {ours} but the model was trained on features whose "
            f"stain was estimated by method {theirs if theirs is not None else '3 or older'}")


def tile_measurement_problem(meta: dict, identity: dict[str, object]) -> str | None:
    """Why features whose tiles were measured by another version of :mod:`weakstil.tilestats` than the
    model's training features do not fit a model that reads the measurements (``tile_stats``, or the
    stroma estimate as its weights), or None. Version 4 (hunt 24) added a column and changed the stroma
    estimate of nests of hyperchromatic tumour cells: a model trained on version 3 took the new files
    with 'features have 285 dimensions, the model expects 284. Fix: embed with the model's encoder'."""
    config = (meta.get("training") or {}).get("config") or {}
    if not (config.get("tile_stats") or config.get("stroma_weight") == "estimate"):
        return None
    ours = identity.get("tilestats_version")
    theirs = (meta.get("features") or {}).get("tilestats_version")
    if ours is None or theirs is None or str(ours) == str(theirs):
        return None
    return (f"the slides' tiles were measured by tile statistics version {ours} but the model was trained on "
            f"version {theirs}")


def _version(value: object) -> int | None:
    try:
        return None if value is None else int(str(value))
    except ValueError:
        return None


def crush_problem(meta: dict, identity: dict[str, object]) -> str | None:
    """Why features whose crush cannot be left out of the bed (tile statistics before
    :data:`~weakstil.tilestats.CRUSH_VERSION`, or none) do not fit a model trained on beds that left it out, whether or not
    the model reads the measurements (``--no-tile-stats``: its tile scores do not, its training beds did), or None.
    Accepted until helper h44d: a crushed biopsy's crush tiles, read as lymphocytes, were scored (hunt 42a: ~8 points
    high)."""
    from weakstil.tilestats import CRUSH_VERSION

    trained = _version((meta.get("features") or {}).get("tilestats_version"))
    ours = _version(identity.get("tilestats_version"))
    if trained is None or trained < CRUSH_VERSION or (ours is not None and ours >= CRUSH_VERSION):
        return None
    measured = f"measured by tile statistics version {ours}" if ours is not None else "not measured (--no-tile-stats)"
    return (f"the model was trained on beds without crush artefact (tile statistics version {trained}), but these "
            f"slides' tiles were {measured}, so their crush cannot be left out of the bed")


def crush_unlike_training(meta: dict, features_version: object = "now") -> str | None:
    """Why a model trained on features without the crush measure (tile statistics before
    :data:`~weakstil.tilestats.CRUSH_VERSION`, or none) scores slides whose crush tiles leave the bed (``features_version``:
    their tile statistics version, "now" for this WeakSTIL's) unlike its training beds, or None: said once per run
    (the new slides' beds follow the sTIL definition; the model's did not)."""
    from weakstil.tilestats import CRUSH_VERSION

    trained = _version((meta.get("features") or {}).get("tilestats_version"))
    ours = CRUSH_VERSION if features_version == "now" else _version(features_version)
    if (trained is not None and trained >= CRUSH_VERSION) or ours is None or ours < CRUSH_VERSION:
        return None
    was = "without tile statistics" if "features" in meta else "whose tile statistics it does not record"
    return (f"the model was trained on features {was if trained is None else f'of tile statistics version {trained}'}: "
            "its training beds kept the crush artefact that these slides' beds leave out (tile statistics version "
            f"{CRUSH_VERSION}); train it again on features embedded by this WeakSTIL for the two to agree")


def check_features_match_model(meta: dict, identity: dict[str, object], where: str | Path) -> None:
    """Refuse features made with another encoder, other weights or other tiles than the model's."""
    stain = stain_estimate_problem(meta, identity) or tile_measurement_problem(meta, identity)
    crush = None if stain else crush_problem(meta, identity)
    if crush:
        raise ModelError(f"features do not fit the model: {crush}", path=where,
                         fix="embed the slides again with this WeakSTIL and its tile statistics (no --no-tile-stats), "
                             "so that their crush tiles leave the bed as they left the model's training beds")
    if stain:
        raise ModelError(f"features do not fit the model: {stain}", path=where,
                         fix=_older_features_fix(meta, identity) or
                         "train the model again (weakstil train) on features embedded by this WeakSTIL "
                         "version, or score with the version that trained it")
    enc = meta.get("encoder", {})
    tiling = meta.get("tiling", {})
    problems = []
    if str(enc.get("name")) != str(identity.get("encoder")):
        problems.append(f"encoder {identity.get('encoder')!r} but the model was trained on {enc.get('name')!r}")
    if not same_weights(enc, identity):  # the tensors' hash, or the file's of a record from before hunt 24
        problems.append(f"encoder weights {str(identity.get('weights_sha256'))[:12]} but the model's are "
                        f"{str(enc.get('weights_sha256'))[:12]}")
    for k in ("mpp", "tile_px"):
        mv, fv = tiling.get(k), identity.get(k)
        if mv is not None and fv is not None and not math.isclose(float(mv), float(fv), rel_tol=1e-6):
            problems.append(f"{k} {fv} but the model's is {mv}")
    model_key, features_key = tiling.get("key"), _tiling(identity)
    if isinstance(model_key, dict) and features_key and not problems:  # overlap, tissue threshold, detector...
        problems += [f"tiling {k} {features_key.get(k)} but the model's is {v}" for k, v in sorted(model_key.items())
                     if k in features_key and features_key.get(k) != v]
    recorded_card, features_card = enc.get("card"), _card(identity)
    if isinstance(recorded_card, dict) and features_card:  # an encoder card edited between them
        problems += [f"encoder card {k} {json.dumps(features_card[k])} but the model's is "
                     f"{json.dumps(recorded_card[k])}"
                     for k in card_changes(features_card, recorded_card)]
    if problems:
        raise ModelError("features do not fit the model: " + "; ".join(problems), path=where,
                         fix=f"embed the slides with the model's encoder ({enc.get('name')}, same weights, "
                             f"--mpp {tiling.get('mpp')} --tile-size {tiling.get('tile_px')})")


def _older_features_fix(meta: dict, identity: dict[str, object]) -> str | None:
    """The fix when the features are older than the model (``evaluate`` of a folder embedded before an upgrade, e.g.
    tile statistics version 4 without the crush column, by a version-5 model): embed them again, not retrain."""
    from weakstil.stain import STAIN_ESTIMATE_VERSION
    from weakstil.tilestats import TILESTATS_VERSION

    feats = meta.get("features") or {}
    differ = [(str(feats.get(k)), str(now)) for k, now in
              (("tilestats_version", TILESTATS_VERSION), ("stain_estimate_version", STAIN_ESTIMATE_VERSION))
              if identity.get(k) is not None and feats.get(k) is not None and str(identity.get(k)) != str(feats.get(k))]
    if differ and all(theirs == now for theirs, now in differ):  # the model is this version's; the features are not
        return ("embed the slides again into the features folder with this WeakSTIL ('weakstil embed' makes an older "
                "WeakSTIL's features again): the model was trained on this version's features")
    return None


def check_scores_new_slides(meta: dict, where: str | Path) -> None:
    """``weakstil score`` embeds every slide with this version's stain estimate and tile measurements
    (part of the feature cache key, so an older cache is made again), so a model trained on features
    of another estimate, or on other tile measurements when it reads them (a model.json from an
    older WeakSTIL), fits no slide: one error before any slide, not an error
    row per slide after each one's embedding."""
    from weakstil.stain import STAIN_ESTIMATE_VERSION
    from weakstil.tilestats import TILESTATS_VERSION

    problem = (stain_estimate_problem(meta, {"tilestats_version": "now", "stain_estimate_version": STAIN_ESTIMATE_VERSION})
               or tile_measurement_problem(meta, {"tilestats_version": TILESTATS_VERSION}))
    if problem:
        raise ModelError(f"the model fits no slide scored by this WeakSTIL: {problem}", path=where,
                         fix="train the model again (weakstil train) on features embedded by this WeakSTIL "
                             "version, or score with the version that trained it")


def check_features_current(identity: dict[str, object], reads_tile_stats: bool, first_file: str | Path,
                           n_files: int, what: str = "model") -> None:
    """``weakstil train`` on feature caches an older WeakSTIL embedded (another stain estimate, or
    other tile measurements for a model that reads them): :func:`check_scores_new_slides` refuses
    the model it would make before any slide, so a lab that upgraded and retrained on its old
    features folder (hunt 36k: trained silently in 17 s, then every ``score`` refused it) is told
    now, before the training, that the features must be embedded again. ``what``: the "model" or the
    tumour-bed "detector" (``tumorbed train``: the resolver refuses it at apply and score)."""
    from weakstil.stain import STAIN_ESTIMATE_VERSION
    from weakstil.tilestats import TILESTATS_VERSION

    theirs_stain, theirs_stats = identity.get("stain_estimate_version"), identity.get("tilestats_version")
    problems = []
    if theirs_stain is None:
        # no stain estimate recorded at all: features another extractor wrote in our format (or a WeakSTIL from
        # before version 4): 'evaluate' and the Python API score them with their own features; only 'weakstil
        # score', which embeds new slides itself, cannot use the model, so said, not refused
        logging.getLogger(__name__).warning(
            "%s%s: no stain estimate recorded (features not embedded by 'weakstil embed' of this version): "
            "'weakstil evaluate' can use the %s on them, 'weakstil score' will refuse it; embed the slides "
            "with 'weakstil embed' to score new slides with it", first_file,
            f" (and the other {n_files - 1} feature files)" if n_files > 1 else "", what)
    elif str(theirs_stain) != str(STAIN_ESTIMATE_VERSION):  # as check_scores_new_slides: whatever they hold
        problems.append(f"their slides' stain was estimated by method "
                        f"{theirs_stain}, this WeakSTIL's by method "
                        f"{STAIN_ESTIMATE_VERSION}")
    if reads_tile_stats and theirs_stats is not None and str(theirs_stats) != str(TILESTATS_VERSION):
        problems.append(f"their tiles were measured by tile statistics version {theirs_stats}, this WeakSTIL's "
                        f"by version {TILESTATS_VERSION}")
    if problems:
        others = f" (and the other {n_files - 1} feature files)" if n_files > 1 else ""
        raise ModelError(f"embedded by an older WeakSTIL{others}: {'; '.join(problems)}; 'weakstil score' refuses "
                         f"a {what} trained on them", path=first_file,
                         fix=f"embed the slides again into {Path(first_file).parent} (weakstil embed makes an older "
                             "WeakSTIL's features again), then train")


#: The fix of a feature file with NaN or infinite values: 'embed' never writes one, and a rerun
#: reuses a cache whose header is sound, so only deleting it (or --overwrite) makes it again.
NON_FINITE_FIX = ("delete the feature file and run again (it is made again), or run 'weakstil embed --overwrite' "
                  "for the slide")


def non_finite_error(paths: Sequence[Path]) -> WeakSTILError:
    """The one error for feature files holding NaN or infinite values, every one named."""
    many = f" in {len(paths)} feature files: {', '.join(str(p) for p in paths[:5])}" \
        f"{', ...' if len(paths) > 5 else ''}" if len(paths) > 1 else ""
    return WeakSTILError(f"features contain NaN or infinite values{many}", path=paths[0] if len(paths) == 1 else None,
                         fix=NON_FINITE_FIX)


def all_finite(features: np.ndarray | None) -> bool:
    """Whether a feature file's embeddings hold no NaN or infinite value (``None``: none read, nothing to refuse)."""
    return features is None or bool(np.isfinite(np.asarray(features)).all())


def refuse_non_finite(files: Sequence[tuple[Path, np.ndarray | None]]) -> None:
    """Refuse the feature files (path, features) with NaN or infinite values, all at once, as soon
    as they are read: before a tumour-bed detector runs on them (it took a NaN file's bed as empty
    and warned of a 'bed fallback: tissue' before the error) and before any slide is scored."""
    bad = [Path(p) for p, x in files if not all_finite(x)]
    if bad:
        raise non_finite_error(bad)
