"""A slide's feature cache: its key (what the features depend on) and whether a cache at hand is current.

The key (:func:`cache_key`) is the sha256 of the encoder name, its weights' fingerprint (the tensors'
hash, :mod:`weakstil.weights_id`), the precision the encoder ran at (bf16 features are not fp32 ones),
timm's minor version for a timm network (a timm release may change a model's layers), the card fields
that change features, the tiling, the slide's µm/px and content fingerprint and the measurement
versions (torch's version is recorded in the cache, not keyed: a torch release changes features within
float rounding); a cache made before hunt 24 (format 2: the weights file's hash, no precision) is
still reused when its recorded precision and timm version agree (:func:`legacy_match`); :func:`cache_status` says why a cache cannot be reused; :func:`refuse_other_work` keeps
another encoder's or tiling's features from being replaced by a mistyped option.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from weakstil.errors import WeakSTILError
from weakstil.files import FeaturesFile

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.encoders.factory import Encoder
    from weakstil.tiles import TilingParams

#: Bumped when the cache layout changes (part of the cache key). 2: the slide fingerprint. 3: the
#: weights' tensors hash, the precision and timm's version (hunt 24).
CACHE_FORMAT = 3
#: Card fields that change the features (besides the weights).
_CARD_KEY_FIELDS = ("source", "model", "model_kwargs", "input_px", "mean", "std", "pooling", "stain_norm")


def timm_minor(encoder: Encoder) -> str | None:
    """timm's ``major.minor`` for a timm-built network (None otherwise): keyed, as a timm release can
    change a model's layers under the same name and weights."""
    if getattr(encoder.card, "source", None) != "timm":
        return None
    from weakstil.runtime import package_version

    return _minor(package_version("timm"))


def _minor(version: object) -> str:
    """``major.minor`` of a version string (as recorded: ``timm_version``)."""
    return ".".join(str(version).split(".")[:2])


def _weights_record(encoder: Encoder) -> dict[str, str]:
    """The encoder's weights fingerprints, as a feature file records them (:func:`weakstil.weights_id.same_weights`)."""
    return {"weights_sha256": encoder.weights_sha256, "weights_file_sha256": getattr(encoder, "weights_file_sha256", "")}


def cache_key(encoder: Encoder, params: TilingParams, slide_mpp: float, fingerprint: str | None = None,
              tile_stats: bool = True, *, _legacy: bool = False) -> str:
    """The settings a feature cache is made with (``tile_stats``: with the per-tile measurements).
    ``_legacy``: the key of format 2 (before hunt 24), for :func:`legacy_match`."""
    from weakstil.stain import STAIN_ESTIMATE_VERSION
    from weakstil.tilestats import TILESTATS_VERSION
    from weakstil.tissue import TISSUE_VERSION

    card = encoder.card.to_dict()
    payload = {
        "format": 2 if _legacy else CACHE_FORMAT,
        "tilestats": TILESTATS_VERSION if tile_stats else None,  # None: made with --no-tile-stats
        # the slide's stain feeds the measurements and the normalisation
        "stain_estimate": STAIN_ESTIMATE_VERSION if tile_stats or card.get("stain_norm") else None,
        "tissue_detector": TISSUE_VERSION,  # a new tissue detector tiles differently: caches are redone
        "encoder": encoder.name,
        "weights_sha256": (getattr(encoder, "weights_file_sha256", "") or encoder.weights_sha256) if _legacy
        else encoder.weights_sha256,
        "card": {k: card.get(k) for k in _CARD_KEY_FIELDS},
        "tiling": params.key(),
        "slide_mpp": round(float(slide_mpp), 6),
        "slide_fingerprint": fingerprint,
    }
    if not _legacy:
        payload.update({"precision": encoder.precision, "timm": timm_minor(encoder)})
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def legacy_match(attrs: dict, encoder: Encoder, params: TilingParams, slide_mpp: float, fingerprint: str | None,
                 tile_stats: bool = True) -> bool:
    """Whether a cache made before hunt 24 (format 2: keyed by the weights file's hash, without the
    precision and timm's version) holds what this key asks for: its key is this run's in the old
    form, and the precision and timm version it records are this run's. Such a cache is reused, not
    made again."""
    if int(attrs.get("cache_format", 0) or 0) >= 3 or str(attrs.get("precision")) != encoder.precision:
        return False
    minor = timm_minor(encoder)
    if minor is not None and _minor(attrs.get("timm_version")) != minor:
        return False
    return attrs.get("cache_key") == cache_key(encoder, params, slide_mpp, fingerprint, tile_stats, _legacy=True)


def settings_differences(attrs: dict, encoder: Encoder, params: TilingParams, slide_mpp: float,
                         tile_stats: bool = True) -> list[str]:
    """Which of the settings in :func:`cache_key` a feature cache (its ``attrs``) was made with
    differently, as ``name: cache's -> now`` (empty when only a version of ours differs)."""
    def flat(value, prefix=""):
        if isinstance(value, dict):
            return {k2: v2 for k, v in value.items() for k2, v2 in flat(v, f"{prefix}{k}.").items()}
        return {prefix.rstrip("."): value}

    from weakstil.weights_id import same_weights

    said = []
    same = same_weights(attrs, _weights_record(encoder))
    minor = timm_minor(encoder)
    pairs = [("encoder", attrs.get("encoder"), encoder.name),
             ("weights", str(attrs.get("weights_sha256", ""))[:12],
              str(attrs.get("weights_sha256", ""))[:12] if same else str(encoder.weights_sha256 or "")[:12]),
             *([("precision", attrs.get("precision"), encoder.precision)] if "precision" in attrs else []),
             *([("timm version", _minor(attrs.get("timm_version")), minor)] if minor else []),
             ("µm/px of the slide", attrs.get("slide_mpp"), round(float(slide_mpp), 6)),
             ("stain normalisation", attrs.get("stain_norm"), encoder.card.stain_norm or "none"),
             ("tile statistics", "tilestats_version" in attrs, bool(tile_stats))]
    try:
        cached = flat(json.loads(str(attrs.get("tiling_key", "{}"))))
    except ValueError:
        cached = {}
    now = flat(params.key())
    pairs += [(name, cached.get(name), now.get(name)) for name in sorted(set(cached) | set(now))]
    for name, theirs, ours in pairs:
        if isinstance(theirs, float) or isinstance(ours, float):
            same = theirs is not None and ours is not None and abs(float(theirs) - float(ours)) < 1e-6
        else:
            same = theirs == ours
        if not same:
            said.append(f"{name}: {theirs} -> {ours}")
    return said


def cache_status(path: str | Path, key: str, fingerprint: str | None = None,
                 differences: Callable[[dict], list[str]] | None = None,
                 legacy: Callable[[dict], bool] | None = None) -> str | None:
    """Why the cache at ``path`` cannot be reused for ``key`` (``"missing"`` when there is none),
    or ``None`` when it is complete, for this slide (``fingerprint``) and made with ``key``.
    ``differences``: names the settings that differ (:func:`settings_differences`); ``legacy``:
    whether a cache of an older key holds the same (:func:`legacy_match`)."""
    from weakstil.fingerprint import why_stale

    path = Path(path)
    if not path.is_file():
        return "missing"
    try:
        attrs, shapes = FeaturesFile.read_header(path)
    except WeakSTILError as exc:  # truncated, incomplete, not HDF5 or another kind
        return f"is not a usable feature cache ({exc.message})"
    stale = why_stale(attrs, fingerprint)
    if stale:
        return stale
    if attrs.get("cache_key") != key and not (legacy is not None and legacy(attrs)):
        said = differences(attrs) if differences is not None else []
        return ("was made with other settings (" + ("; ".join(said) if said else
                "encoder, weights, precision, tiling, µm/px, --stain-norm, --no-tile-stats or a WeakSTIL version") + ")")
    if shapes.get("features", (-1,))[0] != int(attrs.get("n_tiles", -2)):
        return "has a features table of the wrong length"
    return _decoded_before_resize_fix(attrs)


def _decoded_before_resize_fix(attrs: dict) -> str | None:
    """Why a cache decoded at a DCT scale below 1 by an earlier WeakSTIL is not reused: that reader
    resized each reduced tile from its rounded-up extent (a 0.25 % stretch, features up to 1 % off
    OpenSlide's, hunt 9b #5). The reader's geometry is no setting, so it is not in the key; the
    fixed reader records ``dct_resize`` in the ``decode`` provenance. Likewise a cache whose tiles
    were reduced 2x or more by the resize (a 40x scan read at 0.5 µm/px through OpenSlide or nvJPEG)
    before the box reduction (hunt 15a), which records ``reduce``."""
    try:
        decode = json.loads(str(attrs.get("decode") or "{}"))
    except ValueError:
        return None
    if not isinstance(decode, dict):
        return None
    scale = str(decode.get("dct_scale", "1/1"))
    if scale not in ("1/1", "None") and "dct_resize" not in decode:
        return (f"was decoded at DCT scale {scale} by an earlier WeakSTIL, whose reduced tiles were stretched "
                "by up to half a pixel")
    try:  # what the resize reduced: the tiles' µm/px over the scan's, less the DCT scale
        mpps = float(attrs["mpp"]), float(attrs["slide_mpp"])
        left = mpps[0] / mpps[1] / float(scale.partition("/")[2] or 1)
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None
    if not all(0 < v < math.inf for v in mpps):  # a cache from elsewhere: NaN was "unexpected ValueError" (hunt 39f)
        return f"records a µm/px that is no positive number (mpp {mpps[0]:g}, slide_mpp {mpps[1]:g})"
    if left >= 2 - 1e-6 and "reduce" not in decode:
        return (f"was read {left:.2g}x reduced by an earlier WeakSTIL, whose bilinear-only reduction blurred the "
                "tiles of a finer scan (a 40x slide scored 2-3 sTIL points lower)")
    from weakstil.resample import READ_FILTER, READ_REDUCE, READ_REDUCE_WHOLE_SAME, read_scale

    ratio = float(attrs["mpp"]) / float(attrs["slide_mpp"])
    reduce = decode.get("reduce")
    if read_scale(float(attrs["slide_mpp"]), float(attrs["mpp"])) != ratio:
        if reduce not in READ_REDUCE_WHOLE_SAME:
            return (f"was read by an earlier WeakSTIL, which resized a {float(attrs['slide_mpp']):.4g} µm/px scan's "
                    f"tiles by {ratio:.4g}x bilinearly (a two-pixel blur; such a slide scored up to 1.85 sTIL points "
                    "lower): it is now read pixel for pixel")
    elif abs(left - round(left)) > 1e-6 and reduce != READ_REDUCE:
        return (f"was read by an earlier WeakSTIL, which resized a {float(attrs['slide_mpp']):.4g} µm/px scan's tiles "
                f"by {left:.4g}x bilinearly (their mean gradient 9-12 % lower; such slides scored 0.14-1.8 sTIL points "
                f"lower): it is now resized {READ_FILTER}")
    return None


def refuse_other_work(path: Path, encoder: Encoder, params: TilingParams, slide_mpp: float | None = None) -> None:
    """Raise when the cache at ``path`` holds another encoder's (or weights') or another tiling's features.

    The tiling includes the slide's µm/px (``slide_mpp``, resolved from the metadata or --slide-mpp):
    it sets the tiles' size in level-0 pixels, so another value is another tile grid. An override
    equal to the metadata's value gives the same grid and is no difference."""
    try:
        attrs, _ = FeaturesFile.read_header(path)
    except WeakSTILError:  # unusable (truncated, incomplete): nothing worth keeping
        return
    mine_scan = None if slide_mpp is None else round(float(slide_mpp), 6)
    theirs_scan = round(float(attrs["slide_mpp"]), 6) if "slide_mpp" in attrs and mine_scan is not None else mine_scan
    theirs = (attrs.get("encoder"), str(attrs.get("weights_sha256"))[:12], float(attrs.get("mpp", 0)),
              int(attrs.get("tile_px", 0)), int(attrs.get("overlap_px", 0)), str(attrs.get("stain_norm", "none")),
              float(attrs.get("tissue_threshold", params.tissue_threshold)), theirs_scan)
    from weakstil.weights_id import same_weights

    if same_weights(attrs, _weights_record(encoder)):  # a cache from before hunt 24: the file's hash
        theirs = (theirs[0], str(encoder.weights_sha256)[:12], *theirs[2:])
    mine = (encoder.name, str(encoder.weights_sha256)[:12], params.mpp, params.tile_px, params.overlap_px,
            str(encoder.card.stain_norm or "none"), float(params.tissue_threshold), mine_scan)
    card = card_differences(attrs, encoder)
    if theirs != mine or card:
        tiling = theirs[2:5] != mine[2:5] or theirs[7] != mine[7]
        what = "another encoder" if theirs[:2] != mine[:2] else "another tiling" if tiling else \
            "another stain normalisation" if theirs[5] != mine[5] else "another tissue threshold" \
            if theirs[6] != mine[6] else f"another card of encoder '{encoder.name}'"
        said = f"{_settings(theirs)}, not {_settings(mine)}" if theirs != mine else "; ".join(card)
        raise WeakSTILError(f"holds features of {what} ({said}); they are kept",
                            path=path, fix="embed into another folder, or pass --overwrite to replace them")


def card_differences(attrs: dict, encoder: Encoder) -> list[str]:
    """The card fields that change features (``_CARD_KEY_FIELDS`` but the stain normalisation, said
    on its own) which a cache's ``encoder_card`` holds otherwise than ``encoder``'s card, as ``name
    cache's -> now``: an edited card file under the same name makes other features."""
    try:
        theirs = json.loads(str(attrs["encoder_card"]))
    except (KeyError, ValueError):
        return []  # a cache without the record: the name and weights decide
    mine = json.loads(encoder.card.to_json())
    if not isinstance(theirs, dict):
        return []
    return [f"{k} {json.dumps(theirs[k])} -> {json.dumps(mine.get(k))}" for k in _CARD_KEY_FIELDS  # fields an
            if k != "stain_norm" and k in theirs  # older card lacked are not compared (as mil.identity.card_changes)
            and json.dumps(theirs[k], sort_keys=True) != json.dumps(mine.get(k), sort_keys=True)]


def _settings(s: tuple) -> str:
    scan = f", slide at {s[7]:g} µm/px" if s[7] is not None else ""
    return (f"{s[0]}@{s[1]}, {s[2]:g} µm/px, {s[3]} px tiles, {s[4]} px overlap{scan}, stain normalisation {s[5]}, "
            f"tissue threshold {s[6]:g}")


def refuse_other_folder(features_dir: str | Path, meta: dict, params: TilingParams) -> None:
    """``weakstil score --features DIR`` (without ``--overwrite``): a folder whose every feature cache
    holds another encoder's (weights) or another tiling's features (µm/px, tile size, overlap, tissue
    threshold) than the model's is one usage error before any work, not an ``error`` row per slide
    (:func:`refuse_other_work` refuses each of them, and a slide without a cache would mix the folder).
    A folder with one cache that fits, or none at all, is left to the slides."""
    from weakstil.errors import UsageError

    found = _other_folder(features_dir, meta.get("encoder") or {}, params)
    if found:
        what, n, example = found
        raise UsageError(f"--features holds features of {what} than the model's in "
                         f"{f'all {n} of its feature caches' if n > 1 else 'its one feature cache'} ({example}), so "
                         "every slide would fail", path=features_dir,
                         fix=f"pass the 'weakstil embed' folder made with the model's encoder and tiling (--mpp "
                             f"{params.mpp:g} --tile-size {params.tile_px}), or another --features folder (score "
                             "embeds the slides there), or add --overwrite to replace these caches")


def refuse_mixing_folder(out: str | Path, encoder: Encoder, params: TilingParams, tile_stats: bool = True,
                         new: bool = True) -> None:
    """``weakstil embed -o DIR`` (without ``--overwrite``): a folder whose every feature cache holds
    another encoder's, tiling's or stain normalisation's features than this run's, or tile statistics
    that this run (``--no-tile-stats``) would leave out of its ``new`` slides' caches, is one usage error
    before any work. New slides were embedded there at the run's settings (exit 0), a folder of two
    tilings that ``train`` refuses only later (a run started while another writes the folder at other
    settings: the same, once the other run's first cache is there); of two stain normalisations, or with
    and without tile statistics, the folder's slides failed one by one and the new ones mixed it (hunt 39e).
    A cache without tile statistics is no mix for a run that measures them: the slide is embedded again."""
    from weakstil.errors import UsageError

    def measured(attrs: dict) -> list[str]:  # (a cache with statistics serves a run without: only new ones mix)
        return [d for d in _measured_differences(attrs, encoder, tile_stats)
                if d.startswith("stain") or (new and not tile_stats)]

    found = _other_folder(out, _weights_record(encoder), params, measured)
    if not found:
        return
    what, n, example = found
    caches = f"all {n} of its feature caches" if n > 1 else "its one feature cache"
    fix = ("embed into another --out, give the encoder and tiling options the folder was made with, or pass "
           "--overwrite with all of its slides to embed them again at these")
    if what.endswith("normalisation"):
        fix = ("embed into another --out, give the --stain-norm the folder was made with, or pass --overwrite "
               "with all of its slides to embed them again at this one")
    if what == "tile statistics":
        raise UsageError(f"holds tile statistics in {caches} ({example}), which this run (--no-tile-stats) would "
                         "leave out of its new slides' caches; embedding here would mix the folder", path=out,
                         fix="leave out --no-tile-stats, embed into another --out, or pass --overwrite with all of "
                             "its slides to embed them all again without")
    raise UsageError(f"holds features of {what} than this run's in {caches} ({example}); embedding here would "
                     "mix the folder, which train and evaluate refuse", path=out, fix=fix)


def refuse_partial_overwrite(out: str | Path, encoder: Encoder, params: TilingParams, replaced: set[str],
                             tile_stats: bool = True) -> None:
    """``weakstil embed -o DIR --overwrite`` of some of DIR's slides (``replaced``: their cache files'
    names) at another encoder, tiling, stain normalisation or tile statistics (``tile_stats``) than
    DIR's other caches: one usage error before any work. It replaced those slides' caches and kept the
    rest, a folder of two encoders (exit 0) that ``train`` and ``evaluate`` refused only later, far from
    the cause (hunt 38b); of two stain normalisations, or with and without tile statistics, it went
    unnoticed (hunt 39c)."""
    from weakstil.errors import UsageError

    folder = Path(out)
    kept = [(path, (found[0], differs)) for path in sorted(folder.glob("*.h5")) if folder.is_dir()
            and path.name not in replaced and (found := _cache_differences(path, _weights_record(encoder), params))
            is not None and (differs := found[1] + _measured_differences(found[0], encoder, tile_stats))]
    if not kept:
        return
    path, (attrs, differs) = kept[0]
    theirs, mine = f"'{attrs.get('encoder')}' (weights {str(attrs.get('weights_sha256'))[:12]})", \
        f"'{encoder.name}' (weights {str(encoder.weights_sha256)[:12]})"
    what = f"the encoder {theirs}, not this run's {mine}" if differs[0].startswith(_NAMES[0]) else \
        f"other settings ({', '.join(differs)})"
    n = len(kept)
    raise UsageError(f"--overwrite would replace the feature caches of this run's {len(replaced)} slide(s) only, "
                     f"and {n} other cache{'s' if n > 1 else ''} there ({path.name}{', ...' if n > 1 else ''}) "
                     f"hold{'' if n > 1 else 's'} features of {what}: the folder would mix them, which train and "
                     "evaluate refuse", path=out,
                     fix="embed into a new --out, give the options the folder was made with, or pass all of the "
                         "folder's slides with --overwrite to embed them all again at these settings")


def _measured_differences(attrs: dict, encoder: Encoder, tile_stats: bool) -> list[str]:
    """How a cache's stain normalisation and tile statistics differ from this run's (``cache's not now``):
    both change what a model reads from the folder (``train`` refuses a folder of two normalisations)."""
    theirs = (str(attrs.get("stain_norm") or "none"), "tilestats_version" in attrs)
    mine = (str(encoder.card.stain_norm or "none"), bool(tile_stats))
    said = [f"stain normalisation {theirs[0]} not {mine[0]}"] if theirs[0] != mine[0] else []
    yes = {True: "yes", False: "no"}
    return said + ([f"tile statistics {yes[theirs[1]]} not {yes[mine[1]]}"] if theirs[1] != mine[1] else [])


#: What :func:`_cache_differences` compares, as it names them.
_NAMES = ("encoder weights", "µm/px", "tile size (px)", "overlap (px)", "tissue threshold")


def _cache_differences(path: Path, enc: dict, params: TilingParams) -> tuple[dict, list[str]] | None:
    """``(the cache's attributes, how it differs from this encoder (its weights record) and tiling)``;
    ``None`` for a file that is no readable features file (the slide says so)."""
    from weakstil.weights_id import same_weights

    mine = (str(enc.get("weights_sha256"))[:12], float(params.mpp), int(params.tile_px), int(params.overlap_px),
            float(params.tissue_threshold))
    try:
        attrs, _ = FeaturesFile.read_header(path)
        theirs = (str(enc.get("weights_sha256") if same_weights(attrs, enc) else attrs.get("weights_sha256"))[:12],
                  float(attrs.get("mpp", 0)), int(attrs.get("tile_px", 0)),
                  int(attrs.get("overlap_px", 0)), float(attrs.get("tissue_threshold", params.tissue_threshold)))
    except (WeakSTILError, TypeError, ValueError):
        return None
    return attrs, [f"{name} {t:g} not {m:g}" if isinstance(m, float) else f"{name} {t} not {m}"
                   for name, t, m in zip(_NAMES, theirs, mine) if (abs(t - m) > 1e-6 if isinstance(m, float) else t != m)]


def _other_folder(features_dir: str | Path, enc: dict, params: TilingParams,
                  measured: Callable[[dict], list[str]] | None = None) -> tuple[str, int, str] | None:
    """``(what, how many, an example)`` when every feature cache in the folder differs from this
    encoder (its weights record) and tiling, or in ``measured(its attributes)`` (stain normalisation,
    tile statistics); ``None`` when one fits or there is none."""
    example, what, n = None, "", 0
    for path in sorted(Path(features_dir).glob("*.h5")) if Path(features_dir).is_dir() else []:
        found = _cache_differences(path, enc, params)
        if found is None:
            continue  # not a features file, or an unreadable one: the slide says so
        differs = found[1] + (measured(found[0]) if measured is not None else [])
        if not differs:
            return None
        n += 1
        if example is None:  # named as refuse_other_work names a slide's: another encoder, tiling, tissue threshold
            what = "another encoder" if differs[0].startswith(_NAMES[0]) else "another tissue threshold" if \
                differs[0].startswith(_NAMES[4]) else "another stain normalisation" if \
                differs[0].startswith("stain") else "tile statistics" if differs[0].startswith("tile stat") \
                else "another tiling"
            example = f"{path.name}: {', '.join(differs)}"
    return (what, n, example) if n else None


def _unwritable(folder: Path) -> bool:
    """Whether ``folder`` is there but this user may not add files to it (a shared, read-only cache)."""
    import os

    return folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK)


def unwritable_cache(folder: str | Path, cached_as: str | Path | None = None, uncached: int = 1) -> WeakSTILError | None:
    """The one line for a feature cache folder this user may not write, where a slide's cache (``cached_as``) or
    ``uncached`` slides' need writing (hunt 36b: each was a bare "F/ID.h5: Permission denied. Fix: check the
    permissions of the file and its folder"), else None."""
    folder = Path(folder)
    if not _unwritable(folder):
        return None
    what = f"{Path(cached_as).name} is not there to read" if cached_as is not None else \
        f"none of these {uncached} slides' features are cached there"
    elsewhere = "pass another --features folder (or leave --features out: the caches then go to OUT/features)"
    from weakstil.errors import read_only_mount

    if read_only_mount(folder):  # (a share mounted read-only: no chmod makes it writable)
        return WeakSTILError(f"the feature cache folder {folder} is on a read-only file system, and {what} "
                             "(cached features there are read: that needs no writing)", path=cached_as or folder,
                             fix=elsewhere + ", or mount it writable")
    return WeakSTILError(f"this user may not write in the feature cache folder {folder} (no permission), and {what} "
                         "(cached features there are read: that needs no writing)", path=cached_as or folder,
                         fix=f"make it writable (chmod u+w {folder}), or " + elsewhere)


def refuse_read_only_cache(folder: str | Path, slides: list, cached: Callable[[object], bool]) -> None:
    """Before any work: a feature cache folder this user may not write, where no slide of the batch has a
    cache (``cached(slide)``: or needs none, scored before), would fail every slide: one usage line instead."""
    from weakstil.errors import UsageError

    if not slides or not _unwritable(Path(folder)) or any(cached(s) for s in slides):
        return
    error = unwritable_cache(folder, uncached=len(slides))
    raise UsageError(error.message, path=error.path, fix=error.fix)
