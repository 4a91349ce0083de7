"""Beds precomputed by ``weakstil tumorbed apply`` (``--tumorbed-beds DIR``), read back for train, evaluate and
score: found by slide name, refused when made from other features or an outline edited since, and the detector
that drew them (bundled by ``train --tumorbed-beds``). The resolver (:mod:`weakstil.tumorbed.resolver`) takes
such a bed first."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np

from weakstil.errors import WeakSTILError
from weakstil.files import BedFile, FeaturesFile
from weakstil.tumorbed.bed import TumorBed, TumorBedSource

log = logging.getLogger(__name__)


def bed_inputs(path: Path) -> str:
    """The current state of what a precomputed bed was drawn from and written beside: its
    annotation and its outline, whose change or edit read_precomputed refuses. Part of the request,
    so that a slide already scored with the bed is scored (and refused) again, not skipped."""
    from weakstil.runtime import sha256_file

    try:
        attrs = BedFile.read_header(path)[0]
    except WeakSTILError:
        return " unreadable"
    state = []
    for name, file in (("annotation", str(attrs.get("annotation_path", ""))), ("outline", path.with_suffix(".geojson"))):
        if str(file):
            state.append(f"{name}:{sha256_file(file)[:16] if Path(file).is_file() else 'missing'}")
    return " " + " ".join(state) if state else ""


def first_found(find, folder, names: list[str]) -> Path | None:
    """``find(folder, name)`` of the first of ``names`` (a cohort CSV's slide id, the slide file's name) it finds."""
    return next((f for f in (find(folder, n) for n in names) if f is not None), None)


def drawn_from_same_outline(bed_path: Path, annotation: Path) -> bool:
    """Whether the annotation bed ``bed_path`` was drawn from an outline with ``annotation``'s
    content (its recorded ``annotation_sha256``; a bed that records none cannot say so)."""
    from weakstil.runtime import sha256_file

    if annotation.resolve() == bed_path.with_suffix(".geojson").resolve():
        return True  # the bed's own outline (read_precomputed refuses an edited one)
    try:
        recorded = str(BedFile.read_header(bed_path)[0].get("annotation_sha256", ""))
    except WeakSTILError:
        return False
    return bool(recorded) and sha256_file(annotation) == recorded


def _stale(path: Path, slide_id: str, why: str) -> WeakSTILError:
    return WeakSTILError(f"tumour bed {why}", path=path,
                         fix=f"rerun 'weakstil tumorbed apply' on the current features of {slide_id}")


def read_precomputed(path: str | Path, slide_id: str, features: FeaturesFile) -> TumorBed:
    """The bed ``weakstil tumorbed apply`` wrote for these features.

    Refuses a bed written from other features (``cache_key`` or tile count differ): its tile
    flags would belong to other tiles."""
    from weakstil.files.h5 import IncompleteFileError, OtherKindError

    path = Path(path)
    try:
        bed = BedFile.read(path)
    except WeakSTILError as exc:
        if isinstance(exc, OtherKindError):  # another kind of WeakSTIL file: the wrong folder was given
            raise WeakSTILError(f"--tumorbed-beds holds this file, which {exc.message}", path=path,
                                fix="pass the --out folder of 'weakstil tumorbed apply' as --tumorbed-beds") from None
        why = "file is incomplete (an interrupted run)" if isinstance(exc, IncompleteFileError) else \
            f"file is unreadable ({exc.message})"
        raise _stale(path, slide_id, why) from None
    from weakstil.fingerprint import recorded as recorded_fingerprint

    mine, theirs = recorded_fingerprint(bed.attrs), recorded_fingerprint(features.attrs)
    if mine is not None and theirs is not None and mine != theirs:
        raise _stale(path, slide_id, "was computed for another slide file with the same name (its content "
                                     "fingerprint differs from the features')")
    # the features first: a bed file of another embedding copied over this one is not an edited outline
    recorded, current = str(bed.attr("cache_key", "")), str(features.attr("cache_key", ""))
    if recorded != current:
        raise _stale(path, slide_id, f"was computed from other features (cache_key {recorded[:12] or 'none'}, "
                                     f"the features have {current[:12] or 'none'})")
    if len(bed.tumorbed_fraction) != features.n_tiles:
        raise _stale(path, slide_id, f"has {len(bed.tumorbed_fraction)} tiles but the features have "
                                     f"{features.n_tiles}")
    drawn_from, drawn_sha = str(bed.attr("annotation_path", "")), str(bed.attr("annotation_sha256", ""))
    if drawn_from and drawn_sha and not Path(drawn_from).is_file():  # withdrawn, or not carried along
        log.warning("%s: tumour bed was drawn from %s, which no longer exists: if the annotation was withdrawn, "
                    "rerun 'weakstil tumorbed apply' for %s", path, drawn_from, slide_id)
    elif drawn_from and drawn_sha:
        from weakstil.runtime import sha256_file

        if sha256_file(drawn_from) != drawn_sha:
            raise WeakSTILError(f"tumour bed was drawn from an annotation that has changed since ({drawn_from}): "
                                "the corrected outline is not in it", path=path,
                                fix=f"rerun 'weakstil tumorbed apply' for {slide_id}, or pass the annotations "
                                "with --annotations instead of --tumorbed-beds")
    outline, outline_sha = path.with_suffix(".geojson"), str(bed.attr("outline_sha256", ""))
    if outline_sha and outline.is_file():
        from weakstil.runtime import sha256_file

        if sha256_file(outline) != outline_sha:
            raise WeakSTILError(f"its outline {outline.name} was edited after 'tumorbed apply' wrote it (or is the "
                                "outline of another bed file): the edit is not in this bed", path=path,
                                fix=f"pass {path.parent} with --annotations to use the edited outline, or delete "
                                    f"{outline.name} and rerun 'weakstil tumorbed apply' for {slide_id}")
    try:
        source = TumorBedSource(str(bed.attr("source")))
    except ValueError:
        raise _stale(path, slide_id, f"records an unknown source '{bed.attr('source')}'") from None
    ink_rule = ink_plane_rule_of(bed.attrs, path)
    return TumorBed(bed.tumorbed_mask, float(bed.tumorbed_mask_mpp), bed.tumorbed_fraction.astype(np.float32), source,
                    f"{bed.attr('detail', '')} (precomputed: {path})", seed_vetoes=str(bed.attr("seed_vetoes", "")),
                    misplaced=str(bed.attr("annotation_misplaced", "")), incomplete=str(bed.attr("bed_incomplete", "")),
                    ink_test=str(bed.attr("ink_test", "")) if ink_rule else "", ink_plane_rule=ink_rule,
                    front=str(bed.attr("front", "")))


def ink_plane_rule_of(attrs: dict, path: Path) -> int | None:
    """The ink-plane rule (:data:`weakstil.ink_plane.INK_PLANE_RULE`) the ink veto of the bed file ``path``
    (``attrs``) measured ink over tissue under (0: a bed drawn before the rule was recorded, under rule 1 or 2; None:
    no ink veto ran, or one that reads ink on the glass only, where no plane is used), with a warning when it is not
    this WeakSTIL's: its vetoed tiles, so its outline, may differ from the bed drawn now (helper h45d: an older bed met
    silently). Said once for the folder, not for each of its beds (review h45e: a batch of 500 old beds gave 500
    four-line warnings, in every command that read them)."""
    from weakstil.ink_plane import INK_PLANE_RULE, rule_said
    from weakstil.runtime import warn_once

    vetoes = str(attrs.get("seed_vetoes", ""))
    if "ink: " not in vetoes or "ink: off" in vetoes or "ink: slide not read" in vetoes:
        return None
    if "ink_plane_rule" not in attrs and _veto_reads_tissue(attrs) is False:
        return None  # (review h45e: such a bed was told to be drawn again, and 'tumorbed apply' kept it as it was)
    try:
        rule = int(attrs.get("ink_plane_rule", 0))
    except (TypeError, ValueError):
        rule = 0
    if rule != INK_PLANE_RULE:
        warn_once(log, ("ink-plane rule", str(Path(path).parent.resolve()), rule),
                  "%s: tumour beds there (first met: %s) were drawn with an ink veto that measured ink over tissue under %s, "
                  "this WeakSTIL under rule %d (weakstil.ink_plane.INK_PLANE_RULE): other tiles may be vetoed as ink "
                  "now; rerun 'weakstil tumorbed apply' into it to draw them under this rule (said once for the "
                  "folder)", Path(path).parent, Path(path).name, rule_said(rule), INK_PLANE_RULE)
    return rule


def _veto_reads_tissue(attrs: dict) -> bool | None:
    """Whether the detector that drew a bed (``attrs``: its recorded folder, and weights that are still those)
    measures ink over tissue (False: on the glass only, as detectors trained before 2026-12-05 do, whose beds do not
    depend on the ink-plane rule and record none); None when that cannot be told."""
    from weakstil.modeldir import WEIGHTS_FILE
    from weakstil.runtime import sha256_file
    from weakstil.tumorbed.ink import InkVeto

    folder = Path(str(attrs.get("detector_path") or ""))
    if not str(attrs.get("detector_path") or "") or not (folder / WEIGHTS_FILE).is_file():
        return None
    try:
        if str(attrs.get("detector_sha256") or "") != sha256_file(folder / WEIGHTS_FILE):
            return None  # trained again since: its model.json may not be the one that drew the bed
        veto = InkVeto.from_dict(json.loads((folder / "model.json").read_text(encoding="utf-8")).get("ink_veto"))
    except (OSError, ValueError, TypeError, AttributeError):
        return None
    return veto.enabled and veto.over_tissue


def other_rule_only(h5_path: Path, request: str) -> bool:
    """Whether the bed file ``h5_path`` was made from ``request`` (``tumorbed apply``'s) but for the ink-plane rule:
    drawn under another one, and so drawn again (said once for the run: review h45e)."""
    try:
        theirs, mine = json.loads(str(BedFile.read_header(h5_path)[0].get("bed_request", ""))), json.loads(request)
    except (WeakSTILError, ValueError, OSError):
        return False

    def but_rule(asked: dict) -> dict:
        return {**asked, "bed": str(asked.get("bed")).rsplit(" ink-plane rule ", 1)[0]}
    return isinstance(theirs, dict) and theirs.get("bed") != mine.get("bed") and but_rule(theirs) == but_rule(mine)

def detector_behind_beds(beds: str | Path, slide_ids: set[str] | None = None) -> Path | None:
    """The detector folder that drew the beds in ``beds`` (``weakstil tumorbed apply --out``; of
    ``slide_ids`` when given), when one detector drew them all and it is still where it was, with the
    same weights: ``train --tumorbed-beds`` bundles it, so the model scores new slides on the beds it
    was trained on (without it they were scored over the whole tissue, flagged ``bed_unlike_training``).
    ``None`` when no detector drew them (annotations), with a warning when it cannot be bundled."""
    from weakstil.modeldir import WEIGHTS_FILE
    from weakstil.runtime import sha256_file

    drawn: dict[tuple[str, str], int] = {}
    for path in sorted(Path(beds).glob("*.h5")):
        try:
            attrs, _ = BedFile.read_header(path)
        except WeakSTILError:  # not a bed file, or a damaged one: training says so when it reads it
            continue
        if slide_ids is not None and str(attrs.get("slide_id", path.stem)) not in slide_ids and path.stem not in slide_ids:
            continue
        if attrs.get("detector_path"):
            key = (str(attrs["detector_path"]), str(attrs.get("detector_sha256", "")))
            drawn[key] = drawn.get(key, 0) + 1
    if not drawn:
        return None
    fix = "pass --tumorbed DIR (the detector for new slides) to bundle one, or score with --tumorbed DIR"
    if len(drawn) > 1:
        log.warning("the beds in %s were drawn by %d tumour-bed detectors (%s): the model bundles none, and 'weakstil "
                    "score' without a bed source scores new slides over the whole tissue; %s", beds, len(drawn),
                    ", ".join(sorted({p for p, _ in drawn})[:3]), fix)
        return None
    (folder, sha), = drawn
    weights = Path(folder) / WEIGHTS_FILE
    if not weights.is_file() or (sha and sha256_file(weights) != sha):
        log.warning("the tumour-bed detector that drew the beds in %s, %s, is %s: the model bundles none, and 'weakstil "
                    "score' without a bed source scores new slides over the whole tissue; %s", beds, folder,
                    "not there any more" if not weights.is_file() else "another one now (its weights changed)", fix)
        return None
    return Path(folder)
