"""A slide's state in a ``weakstil score`` output folder (split out of :mod:`weakstil.score`): the statuses
of its row, the files it gets, and whether a rerun may skip it as already scored (its outputs whole, its
score file of this model, this very slide file (fingerprint) and these settings, and its results.csv row
agreeing with the file)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from weakstil.errors import WeakSTILError
from weakstil.files import SlideScoresFile, slide_file
from weakstil.outputs import all_whole
from weakstil.results_table import row_agrees_with_file

log = logging.getLogger("weakstil.score")  # its lines are score's (tests and users filter by that logger)

STATUS_OK, STATUS_ERROR, STATUS_NO_BED = "ok", "error", "no tumour bed"
#: The detected bed was empty or implausibly small: scored over the whole tissue (tumorbed_source
#: ``tissue-fallback``, the reason in the HDF5's ``tumorbed_detail`` and a warning line).
STATUS_BED_FALLBACK = "bed fallback: tissue"
FINISHED = (STATUS_OK, STATUS_NO_BED, STATUS_BED_FALLBACK)  #: statuses a rerun does not redo
SCORED = (STATUS_OK, STATUS_BED_FALLBACK)  #: statuses that carry a score
#: What ``weakstil score`` writes per slide: ``<slide_id><suffix>``.
OUTPUT_SUFFIXES = (".h5", "_heatmap.png", ".geojson")


def cached_features(opts: Any, path: Path) -> Path:
    """Where ``path``'s feature cache is (or will be written) for ``score`` (``opts``: its ScoreOptions): by its id, or
    by its file's name (a list's id)."""
    from weakstil.slide import slide_id_from_path

    cached = slide_file(opts.cache_dir, opts.slide_id(path))
    if not cached.exists() and slide_file(opts.cache_dir, slide_id_from_path(path)).exists():  # a list's id
        cached = slide_file(opts.cache_dir, slide_id_from_path(path))  # names it; embed named it by the file
    return cached


def outputs_exist(out: Path, slide_id: str) -> bool:
    """Whether every output of a slide is there and whole (a damaged one: redone)."""
    return all_whole([out / f"{slide_id}{suffix}" for suffix in OUTPUT_SUFFIXES])


def already_scored(out: Path, path: Path, slide_id: str, prev: dict | None, ctx: Any) -> bool:
    """Whether a finished score of this very slide file (same fingerprint) by this model, with the
    same settings (threshold, resolution, tumour-bed source and its file), exists. ``ctx``: the run's
    ``weakstil.score._Context`` (its model id and request)."""
    from weakstil.fingerprint import other_request, slide_fingerprint, why_stale

    if prev is None or prev.get("status") not in FINISHED or not outputs_exist(out, slide_id):
        return False
    try:
        attrs, _ = SlideScoresFile.read_header(slide_file(out, slide_id))
    except WeakSTILError:
        return False
    # the model by its weights' hash, not its folder (model.json's hash is in the request below); the model_id
    earlier = prev.get("model_id") or attrs.get("model_id")  # column deleted in a spreadsheet: the score file's
    if str(earlier).rpartition("@")[2] != ctx.model_id.rpartition("@")[2]:
        log.warning("%s: scored earlier in %s by another model (%s, not %s); scoring again with this one", path, out,
                    earlier, ctx.model_id)
        return False
    current = slide_fingerprint(path)
    if current is None:  # missing, empty or not a slide: never "already scored"; scoring it says why
        return False
    other_scan = why_stale(attrs, current)
    stale = other_scan or other_request(attrs, ctx.request(slide_id, path))
    if stale:  # a rescan in place replaces the earlier result: a warning (another path is refused by score_slide)
        level = (logging.DEBUG if attrs.get("slide_path") != str(path.resolve()) else logging.WARNING) if other_scan \
            else logging.INFO
        log.log(level, "%s: the score in %s %s (%s); scoring again", path, slide_file(out, slide_id), stale,
                attrs.get("slide_path", "?"))
        return False
    if (without := _front_back(attrs, ctx, path)) is not None:
        log.info("%s: its bed was drawn without its front (%s); the front can be read now: scoring again", path, without)
        return False
    # the files of a run whose row was never written (results.csv held by another program): scored again
    return row_agrees_with_file(prev, attrs, slide_file(out, slide_id), path)


def _front_back(attrs: dict, ctx: Any, path: Path) -> str | None:
    """Why the score (its file's ``attrs``) has a bed the run's detector drew without its front, when this run can
    read the front: then scored again, not kept on every rerun. Either the features' encoder was not built (helper
    h45i), or the slide was not read (h45g, h46c: its shifted tiles could not be read, a read error of a slide whose
    features were cached; apply's bed request records ``slide_read``, score's request does not). Asked as the front
    asks it (:func:`weakstil.tumorbed.front.front_embedder` on the slide's cached features: this run's encoder when
    it has their weights and card, else theirs rebuilt), not merely whether this run's encoder builds: features of
    another card or whose encoder is not here were scored again on every run, their front refused every time (helper
    h45l). ``None``: kept. A precomputed bed's is 'tumorbed apply''s to redo."""
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed.front import (FRONT_NO_ENCODER, FRONT_NOT_READ, NO_ENCODER, NOT_READ, damaged_as_recorded,
                                         front_embedder)

    detector = ctx.beds.detector
    if detector is None or not detector.front.enabled or "(precomputed: " in str(attrs.get("tumorbed_detail", "")):
        return None
    front, vetoes = attrs.get("tumorbed_front"), str(attrs.get("tumorbed_seed_vetoes", ""))
    # (a score file before h45i has the words in seed_vetoes only)
    why = "the features' encoder was not built" if front == FRONT_NO_ENCODER or NO_ENCODER in vetoes else \
        "the slide was not read" if front == FRONT_NOT_READ or NOT_READ in vetoes else None
    if why is None or damaged_as_recorded(vetoes, path):  # damaged data, the file as it was: fails again (h47c)
        return None
    try:
        features, _ = FeaturesFile.read_header(cached_features(ctx.opts, Path(path)))
    except WeakSTILError:  # no cache to draw the bed from: scoring embeds the slide again, with this run's encoder
        try:
            ctx.encoder()
        except WeakSTILError:
            return None
        return why
    return why if front_embedder(features, path, detector._front_encoders, detector.offered_encoder)[0] is not None \
        else None


def scan_now(out: Path, row: dict) -> str | None:
    """The scan a slide's new ``row`` is of: the fingerprint its score file records, or for a failed attempt
    (whose score file, when there, is still the earlier one's) the slide file's own; ``None``: unknown."""
    from weakstil.fingerprint import recorded_in, slide_fingerprint

    if row["status"] == STATUS_ERROR:
        return slide_fingerprint(row["path"])
    return recorded_in(slide_file(out, row["slide_id"]), SlideScoresFile)


def keeps_earlier_row(out: Path, prev: dict | None, row: dict, other_file: bool) -> bool:
    """Whether a failed attempt (``row``) is listed after the slide's earlier finished row, which stays with its
    files (a passing failure: a full disk, Ctrl-C; or another file with the slide's id, refused). Not when it
    was at another scan put in place of the file that row scored (``other_file``, at the same path): that row is
    no longer of the file at its path, and stayed ``ok`` with the old scan's sTIL% ahead of the error row, read
    as this file's by whoever took the ok rows (hunt 37g); the error row takes its place."""
    return (row["status"] == STATUS_ERROR and bool(prev) and prev.get("status") in FINISHED
            and outputs_exist(out, row["slide_id"]) and not (other_file and str(prev.get("path")) == row["path"]))
