"""The one tumour-bed resolver, used by train, evaluate, score, ``tumorbed apply`` and the demo.

A slide's tumour bed comes from the first of these it has:

1. a bed precomputed by ``weakstil tumorbed apply`` (``--tumorbed-beds DIR``, ``DIR/<slide_id>.h5``;
   refused when made from other features than the ones in use);
2. an annotation drawn by a pathologist (``--annotations DIR``: ``<slide_id>.geojson`` QuPath
   GeoJSON or ``<slide_id>.xml`` ImageScope XML);
3. the tumour-bed detector (``--tumorbed DIR``, or the one bundled in the model folder); when
   its bed is empty or implausibly small next to the slide's tumour evidence, the whole tissue,
   recorded as ``source = tissue-fallback`` with the reason and a warning (never a silent drop);
4. the ``tumorbed`` flags the feature file holds, as ``source = feature-file`` (``train`` and ``evaluate``
   resolve them here too, so every stage scores the same tiles); else the whole tissue, ``source = tissue``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from weakstil.errors import WeakSTILError
from weakstil.files import FeaturesFile, find_slide_file
from weakstil.ink_plane import INK_PLANE_RULE
from weakstil.tumorbed.bed import (SlideGeometry, TumorBed, TumorBedSource, bed_without_geometry, feature_flags_request,
                                   from_annotation, from_feature_flags, whole_tissue)
from weakstil.tumorbed.detector import VETO_SET_ASIDE, TumorBedDetector
from weakstil.tumorbed.precomputed import (bed_inputs, detector_behind_beds, drawn_from_same_outline,  # noqa: F401
                                           first_found, read_precomputed)
from weakstil.weights_id import TENSORS_ATTR, same_weights

log = logging.getLogger(__name__)


@dataclass
class BedSources:
    """Where tumour beds come from in a run (any may be ``None``)."""

    annotations: Path | None = None
    beds: Path | None = None  #: precomputed beds (``weakstil tumorbed apply``)
    detector: TumorBedDetector | None = None
    detector_path: Path | None = None
    #: how many slides got their bed from each source in the last :meth:`cohort` (for the record)
    used: dict[str, int] = field(default_factory=dict)
    source_of: dict[str, str] = field(default_factory=dict)  #: slide id -> its bed's source, by :meth:`cohort`
    left_out: list[str] = field(default_factory=list)  #: slides training left out: their bed holds no tile
    crush_of: dict[str, int] = field(default_factory=dict)  #: slide id -> its bed's tiles left out as crush, by :meth:`cohort`
    #: ink-plane rule -> how many of :meth:`cohort`'s beds had their ink veto measure ink over tissue under it
    ink_rules: dict[str, int] = field(default_factory=dict)
    detected: int = 0  #: slides whose bed the detector drew in the last :meth:`cohort` (not precomputed)
    #: a slide file's name (case-folded) -> the slide ids of the batch it names, where more than one: see :meth:`share_names`
    shared_names: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def open(cls, *, annotations: str | Path | None = None, beds: str | Path | None = None,
             detector: str | Path | TumorBedDetector | None = None, model: str | Path | None = None) -> BedSources:
        """Load the detector (a folder or a loaded model); without one, a model folder's
        bundled detector (``model``) when it carries one."""
        from weakstil.errors import check_folder_option
        from weakstil.modeldir import ModelDir

        # a typo must not fall back to the whole tissue
        check_folder_option(annotations, "--annotations", "pass a folder of <slide_id>.geojson/.xml files")
        check_folder_option(beds, "--tumorbed-beds", "pass the --out folder of 'weakstil tumorbed apply'")
        if beds is not None and not any(Path(beds).glob("*.h5")):
            log.warning("%s holds no bed files (<slide_id>.h5 from 'weakstil tumorbed apply'); every slide's bed "
                        "comes from the other sources", beds)
        if detector is None and model is not None:
            detector = ModelDir(model).bundled_detector
        path = None
        if detector is not None and not isinstance(detector, TumorBedDetector):
            path = Path(detector)
            detector = TumorBedDetector.load(path)
        return cls(None if annotations is None else Path(annotations), None if beds is None else Path(beds),
                   detector, path)

    @property
    def given(self) -> bool:
        """Whether any source besides the whole tissue is set."""
        return self.annotations is not None or self.beds is not None or self.detector is not None

    def share_names(self, slides) -> None:
        """Note which names the batch's slides (``(slide id, slide file)`` pairs) share: an outline is found by
        the slide id, else by the slide file's name (QuPath's ``S1.svs.geojson``), and a cohort CSV may list two
        patients' ``a/S1.svs`` and ``b/S1.svs`` as P1 and P2. ``S1.svs.geojson`` cannot say which it outlines:
        it was drawn over both slides without a word (hunt 37c), so it is refused for either (:meth:`_annotation`)."""
        from weakstil.slide import slide_id_from_path

        owners: dict[str, list[str]] = {}
        for sid, path in slides:
            for name in dict.fromkeys(n.casefold() for n in (str(sid), slide_id_from_path(path))):
                owners.setdefault(name, []).append(str(sid))
        self.shared_names = {name: ids for name, ids in owners.items() if len(ids) > 1}

    def _annotation(self, slide_id: str, names: list[str]) -> Path | None:
        """The slide's outline: by its id, else by its file's name when no other slide of the batch has that name."""
        from weakstil.annotations import AnnotationError, find_annotation

        for name in names:
            found = find_annotation(self.annotations, name)
            others = [s for s in self.shared_names.get(name.casefold(), []) if s != slide_id]
            if found is not None and name != slide_id and others:
                raise AnnotationError(f"is named after the slide file name '{name}', which slide {others[0]} of this "
                                      f"run has too: it cannot say whether it outlines {slide_id} or {others[0]}",
                                      path=found, fix=f"name each slide's outline by its slide id ({slide_id}.geojson, "
                                      f"{others[0]}.geojson)")
            if found is not None:
                return found
        return None

    def request(self, slide_id: str, also: str | None = None, features: str | Path | None = None) -> str:
        """Which bed ``resolve`` would use for the slide, and the identity of its input (a file's SHA-256, the detector's
        id, the feature file's own flags: :func:`feature_flags_request`), without computing it: a scored slide whose request
        changed (another annotation, new beds, another detector) is scored again, not skipped. ``also``: the slide file's
        name, when its files are found by it too (a cohort CSV's slide_id); ``features``: its feature file."""
        from weakstil.runtime import sha256_file

        names = [slide_id] + ([also] if also and also != slide_id else [])
        found = (("beds", first_found(find_slide_file, self.beds, names)),
                 ("annotation", None if self.annotations is None else self._annotation(slide_id, names)))
        parts = [f"{kind} {path.resolve()} sha256:{sha256_file(path)}" + (bed_inputs(path) if kind == "beds" else "")
                 for kind, path in found if path is not None]
        if parts:  # both: the annotation overrides a detector's precomputed bed
            return " ".join(parts)
        if self.detector is not None:
            # by id and content, not by path: a model folder copied or moved keeps its scores; with the ink veto
            # over tissue, the ink-plane rule: a slide scored under another is scored (and its bed made) again
            veto = self.detector.ink_veto
            ink = f" ink-plane rule {INK_PLANE_RULE}" if veto.enabled and veto.over_tissue else ""
            return f"detector {self.detector.model_id} {self.detector_content}".rstrip() + ink
        return feature_flags_request(features)

    @cached_property
    def detector_content(self) -> str:
        """The SHA-256 of the detector folder's weights and model.json (empty for a detector given
        as an object): a detector retrained in the same folder keeps its id and path, not these."""
        from weakstil.modeldir import META_FILE, WEIGHTS_FILE
        from weakstil.runtime import sha256_file

        if self.detector_path is None:
            return ""
        files = [self.detector_path / name for name in (WEIGHTS_FILE, META_FILE)]
        return " ".join(f"{f.name}:{sha256_file(f)[:16]}" for f in files if f.is_file())

    def resolve(self, slide_id: str, features: FeaturesFile, slide_path: str | Path | None = None) -> TumorBed:
        """One slide's tumour bed, from its feature cache (read with its tissue mask); ``slide_path``:
        the slide's file where it is now (the detector's ink veto reads it), when known. Its crush
        tiles are left out of its scored tiles (:func:`weakstil.crush.exclude_crush`)."""
        from weakstil.crush import exclude_crush

        bed = self._resolve(slide_id, features, slide_path) if self.given or "slide_width" in features.attrs else \
            bed_without_geometry(features)  # no source, and a file that does not place its tiles (a test's)
        return exclude_crush(bed, features, slide_id)

    def _resolve(self, slide_id: str, features: FeaturesFile, slide_path: str | Path | None = None) -> TumorBed:
        from weakstil.slide import slide_id_from_path

        where = features.path if features.path is not None else slide_id
        if self.detector is not None:  # a detector of another encoder is refused, whatever the slide has
            check_detector_matches(self.detector, features, where, detector_path=self.detector_path)
        # the cohort CSV's slide_id first, then the name of the slide file the features were named after
        # (as the features themselves are found): 'patientA' in the CSV, synth_0000.tiff/.h5/.geojson on disk
        names = [slide_id] + ([features.path.stem] if features.path is not None and features.path.stem != slide_id
                              else [])
        if slide_path is not None and (file_id := slide_id_from_path(slide_path)) not in names:
            names.append(file_id)  # a slide list's own id names the slide: its file's name finds its files too
        precomputed = first_found(find_slide_file, self.beds, names)
        if precomputed is not None:
            bed = read_precomputed(precomputed, slide_id, features)
            annotation = None if self.annotations is None else self._annotation(slide_id, names)
            if annotation is not None and bed.source is TumorBedSource.ANNOTATION:
                # a bed drawn from another outline than the one given (a corrected copy in another folder)
                # must not shadow it; the same outline's bed is that bed
                if drawn_from_same_outline(precomputed, annotation):
                    annotation = None
                else:
                    log.warning("%s: its annotation %s is not the outline its bed in %s was drawn from: the "
                                "annotation is used (rerun 'weakstil tumorbed apply' to make the bed of it)",
                                slide_id, annotation, precomputed)
            if annotation is not None:  # annotation > detector, whether the detector ran now or in 'tumorbed apply'
                if bed.source is not TumorBedSource.ANNOTATION:
                    log.info("%s: its annotation %s is used, not the %s bed in %s", slide_id, annotation,
                             bed.source.value, precomputed)
                return from_annotation(annotation, SlideGeometry.from_file(features), self._reference(features))
            if bed.source is TumorBedSource.TISSUE and self.detector is not None:
                log.warning("%s: the bed in %s is the whole tissue ('tumorbed apply' was given no detector or "
                            "annotation) and comes first, before the detector at hand; for a tumour bed run "
                            "'weakstil tumorbed apply --tumorbed DETECTOR' again", slide_id, precomputed)
            return bed
        geom = SlideGeometry.from_file(features)
        annotation = None if self.annotations is None else self._annotation(slide_id, names)
        if annotation is not None:
            return from_annotation(annotation, geom, self._reference(features))
        if self.annotations is not None:  # an outline in a format not read must not give way to the detector silently
            from weakstil.annotation_wkt import unread_outline
            from weakstil.settings import SLIDE_FILE_SUFFIXES

            unread = next(filter(None, (unread_outline(Path(self.annotations), n, SLIDE_FILE_SUFFIXES)
                                        for n in names)), None)
            if unread is not None:
                raise unread
        # a misnamed outline or bed file (or a slide whose 'tumorbed apply' failed) would otherwise go
        # unused without a word
        missing = ([f"no bed in {self.beds} (looked for {' / '.join(n + '.h5' for n in names)})"]
                   if self.beds is not None else []) + \
                  ([f"no annotation in {self.annotations} (looked for {' / '.join(names)}.geojson, .json, .xml, .annotations, .ndpa or .wkt, "
                    "also with _tumorbed, and QuPath's <slide file name>.geojson, NDP.view's <slide file name>.ndpa)"] if self.annotations is not None else [])
        if missing:
            (log.info if self.detector is not None else log.warning)(
                "%s: %s; its bed is %s", slide_id, " and ".join(missing),
                "the detector's" if self.detector is not None else "the whole tissue")
        if self.detector is not None:
            bed = self.detector.detect_file(features, slide_path)
            self.detected += 1
            if bed.source is TumorBedSource.TISSUE_FALLBACK:
                log.warning("%s: bed fallback: tissue: %s", slide_id, bed.detail)
            elif VETO_SET_ASIDE in bed.seed_vetoes:
                log.warning("%s: %s", slide_id, bed.seed_vetoes)
            return bed
        return from_feature_flags(features, geom) or whole_tissue(geom)

    def _reference(self, features: FeaturesFile):
        """The detector's bed of the slide, for checking where its annotation lies (None without a detector)."""
        if self.detector is None:
            return None
        return lambda: self.detector.detect_file(features, front=False)  # where it lies: the tiles' bed is enough

    def cohort(self, feature_paths: dict[str, Path], slide_paths: dict[str, str | Path] | None = None
               ) -> dict[str, np.ndarray] | None:
        """Tumour-bed flags per tile for a cohort (slide id -> its feature cache), also with no source given (as
        ``score``: until helper h44d ``None``). ``slide_paths``: each slide's file, for the detector's ink veto."""
        self.share_names((slide_paths or {}).items())
        flags, sources = {}, {}
        self.detected = 0
        precomputed = sum(any(find_slide_file(self.beds, n) is not None for n in (sid, Path(path).stem))
                          for sid, path in feature_paths.items())  # found by the CSV's id or the slide file's name
        from weakstil.annotations import AnnotationError, raise_all

        from weakstil.mil.identity import all_finite, non_finite_error

        bad: list[AnnotationError] = []
        non_finite: list[Path] = []
        for sid, path in feature_paths.items():
            cache = FeaturesFile.read(path, skip=() if self.given else ("features",))  # no source: no embeddings needed
            if cache.features is not None and not all_finite(cache.features):
                non_finite.append(Path(path))  # no bed from NaN: named with the others before any detection
                continue
            if non_finite:
                continue
            try:
                bed = self.resolve(sid, cache, (slide_paths or {}).get(sid))
            except AnnotationError as exc:  # go on: every unusable file is named at once
                bad.append(exc)
                continue
            flags[sid] = bed.tile_flags
            self.source_of[sid], self.crush_of[sid] = bed.source.value, bed.n_excluded
            if (rule := bed_ink_rule(bed)) is not None:
                self.ink_rules[str(rule)] = self.ink_rules.get(str(rule), 0) + 1
            sources[bed.source.value] = sources.get(bed.source.value, 0) + 1
        if non_finite:
            raise non_finite_error(non_finite)
        raise_all(bad)
        from weakstil.qc.flags import MIN_BED_TILES

        counts = {sid: int(f.sum()) for sid, f in flags.items()}
        small = {sid: n for sid, n in counts.items() if n < MIN_BED_TILES}
        if small:  # the label is the whole bed's; a bed of a few tiles is likely a detection gone wrong
            listed = ", ".join(f"{sid}: {n}" for sid, n in sorted(small.items())[:8])
            log.warning("%d slide%s with a tumour bed of fewer than %d tiles (%s%s): the label is learned from "
                        "little tissue; check those beds (napari) or annotate them", len(small),
                        "s" if len(small) > 1 else "", MIN_BED_TILES, listed, ", ..." if len(small) > 8 else "")
        log.info("tumour beds: %s%s", ", ".join(f"{n} from {s}" for s, n in sorted(sources.items())),
                 f" ({precomputed} precomputed in {self.beds})" if precomputed else "")
        self.used = {**dict(sorted(sources.items())), **({"precomputed": precomputed} if precomputed else {})}
        return flags

    def record(self) -> dict:
        """Where the beds came from (``model.json`` ``tumorbeds``): the folders, the detector (only
        when it drew a slide's bed: a model's bundled detector behind precomputed beds is not named),
        and how many slides got each source."""
        ran = self.detector is not None and (self.detected > 0 or not self.used)
        # a detector given but never run is still named apart: score warns when a model's bundled
        # detector is not the one it was trained beside (:func:`trained_detector`)
        unused = {"detector_not_used": self.detector.model_id} if self.detector is not None and not ran else {}
        return {"annotations": None if self.annotations is None else str(self.annotations.resolve()),
                "beds": None if self.beds is None else str(self.beds.resolve()),
                "detector": self.detector.model_id if ran else None,
                "detector_path": str(self.detector_path.resolve()) if ran and self.detector_path else None,
                "slides": dict(self.used), **unused,
                # the rule the beds' ink veto measured ink over tissue under (helper h46c: a model trained on beds of
                # another rule scores beds unlike its training ones, flagged bed_unlike_training)
                **({"ink_plane_rules": dict(sorted(self.ink_rules.items()))} if self.ink_rules else {}),
                **({"left_out_no_tile_in_bed": self.left_out} if self.left_out else {})}


def bed_ink_rule(bed) -> int | None:
    """The ink-plane rule (:data:`weakstil.ink_plane.INK_PLANE_RULE`; 0: before rule 3, not recorded) under which
    ``bed``'s ink veto measured ink over tissue; ``None``: no ink veto, or one that reads the glass only (a drawn bed's
    ``colour rules``; a precomputed bed's rule is None then, :func:`weakstil.tumorbed.precomputed.ink_plane_rule_of`),
    or one whose test found no plane to trust (``not checked``: a degenerate stain plane, no ink over tissue measured,
    so no rule was used: it counted as the rule and was flagged bed_unlike_training; review r46c, helper h47c)."""
    from weakstil.ink_plane import NOT_CHECKED

    if bed.ink_plane_rule is None or str(bed.ink_test or "") in ("colour rules", NOT_CHECKED):
        return None
    return int(bed.ink_plane_rule)


def say_ink_rule_unlike_training(rule: int | None, training_beds: dict | None, model: str | Path, slide_id: str,
                                 said: set, stil: float) -> None:
    """Once per ``score`` run and rule (``said``: the run's rules said), at the first slide whose bed's ink veto
    measured ink over tissue under ``rule``, none of the model's training beds' (each such slide is flagged
    bed_unlike_training; helper h46c). Said when such a bed is scored, not whenever the detector's rule differs
    (review r46c: every slide's bed precomputed under the training beds' rule, the run said each was flagged), and
    at a scored slide (``stil`` a number): a slide with no score is not flagged (:func:`weakstil.qc.flags.slide_flags`),
    and the warning named it as the first flagged one (review r46c, helper h47c)."""
    import math

    from weakstil.ink_plane import rule_said, rules_said
    from weakstil.qc.flags import ink_rule_unlike_training

    if rule in said or not math.isfinite(stil) or ink_rule_unlike_training(rule, training_beds) is None:
        return
    said.add(rule)
    trained = rules_said(training_beds["ink_plane_rules"])
    log.warning("%s was trained on beds whose ink veto measured ink over tissue under %s; this run's beds under %s "
                "(first: %s): other tiles may be vetoed as ink than in training, and each such slide is flagged "
                "bed_unlike_training (train the model again on beds drawn by this WeakSTIL)",
                model, trained, rule_said(int(rule)), slide_id)


def trained_detector(record: dict | None) -> str | None:
    """The detector a model was trained beside (its ``tumorbeds`` record): the one that drew beds,
    else one given that drew none."""
    record = record or {}
    return record.get("detector") or record.get("detector_not_used")


def check_model_detector(beds: BedSources, meta: dict, model: str | Path, bundled: bool) -> None:
    """Before a batch: the detector scoring uses fits the model's encoder and tiles (``model.json``'s
    ``encoder``, ``tiling`` and ``features``). A bundled one that does not (``MODEL/tumorbed`` copied
    from another model) is said as such: its fix is the model folder, not re-embedding."""
    if beds.detector is None or not (meta.get("encoder") or {}).get("weights_sha256"):
        return
    enc, tiling = meta["encoder"], meta.get("tiling") or {}
    if enc.get(TENSORS_ATTR) and same_weights({"weights_sha256": enc["weights_sha256"]}, beds.detector.meta):
        beds.detector.meta.setdefault(TENSORS_ATTR, enc[TENSORS_ATTR])  # an old model's, of its checked weights file
    try:
        check_detector_matches(beds.detector, {"encoder": enc.get("name"), "weights_sha256": enc["weights_sha256"],
                                               "weights_file_sha256": enc.get("weights_file_sha256"),
                                               TENSORS_ATTR: enc.get(TENSORS_ATTR),
                                               "mpp": tiling.get("mpp"), "tile_px": tiling.get("tile_px"),
                                               **(meta.get("features") or {})}, beds.detector_path or model)
    except WeakSTILError as exc:
        if not bundled:  # the model needs its own encoder: re-embedding for the detector cannot help
            raise WeakSTILError(exc.message, path=exc.path,
                                fix=f"pass --tumorbed a detector trained on features of this model's encoder "
                                    f"'{enc.get('name')}' and tiles (weakstil tumorbed train on the model's features)") from None
        raise WeakSTILError(f"the model's bundled detector does not fit the model: {exc.message}",
                            path=beds.detector_path or model,
                            fix=f"{beds.detector_path or 'MODEL/tumorbed'} was replaced (by another model's?): copy the "
                                "whole model folder again, or pass --tumorbed DIR, a detector trained on this model's encoder and tiles") from None


def check_detector_matches(detector: TumorBedDetector, features: FeaturesFile | dict, where: str | Path,
                           detector_path: str | Path | None = None) -> None:
    """A detector only works on embeddings of the encoder it was trained on (``features``: a feature
    file, or the ``{"encoder", "weights_sha256"}`` a model records: checked once before a batch).
    The error names ``where`` (the feature file of one slide in a batch) and the detector's folder."""
    enc, sha = detector.encoder_key
    attr = features.get if isinstance(features, dict) else features.attr
    # every mismatch is named in one line: naming the first only (stain norm) had the user re-embed,
    # rerun, and only then learn the encoder differs too (outside fault hunt 34f)
    wrong, fixes = [], []
    got_enc, got_sha = attr("encoder"), attr("weights_sha256")
    if enc is not None and (enc != got_enc or not same_weights(detector.meta, attr)):  # the tensors' hash, or a file's before hunt 24
        wrong.append(f"encoder '{enc}' (weights {str(sha)[:12]}), but the features come from '{got_enc}' "
                     f"(weights {str(got_sha)[:12]})")
        fixes.append(f"the detector's encoder '{enc}'")
    tiling, mpp, tile_px = detector.meta.get("tiling") or {}, attr("mpp"), attr("tile_px")
    if tiling and mpp is not None and tile_px is not None and (
            abs(float(mpp) - float(tiling["mpp"])) > 0.01 * float(tiling["mpp"]) or int(tile_px) != int(tiling["tile_px"])):
        wrong.append(f"tiles of {tiling['tile_px']} px at {float(tiling['mpp']):g} µm/px, but the features are tiles "
                     f"of {int(tile_px)} px at {float(mpp):g} µm/px")
        fixes.append(f"--mpp {float(tiling['mpp']):g} --tile-size {tiling['tile_px']}")
    # the embeddings of stain-normalised tiles are not those of raw ones; a detector from before
    # model.json recorded the features' stain_norm is not checked
    trained_norm, got_norm = (detector.meta.get("features") or {}).get("stain_norm"), attr("stain_norm")
    if trained_norm is not None and got_norm is not None and str(trained_norm) != str(got_norm):
        wrong.append(f"features embedded with --stain-norm {trained_norm}, but these features with --stain-norm {got_norm}")
        fixes.append(f"--stain-norm {trained_norm}")
    if wrong:
        raise WeakSTILError(
            f"tumour-bed detector{f' {detector_path}' if detector_path else ''} was trained on " + "; and on ".join(wrong),
            path=where, fix=f"embed the slides again with {' and '.join(fixes)}, or train a detector on these features")
    if enc is None:
        return
    # the tile statistics (veto, infiltrate) and stain-normalised embeddings follow the stain estimate
    ours, theirs = attr("stain_estimate_version"), (detector.meta.get("features") or {}).get("stain_estimate_version")
    uses_stain = detector.reads_tile_stats or str(attr("stain_norm") or "none") != "none"
    if uses_stain and ours is not None and str(ours) != str(theirs):
        raise WeakSTILError(
            f"tumour-bed detector{f' {detector_path}' if detector_path else ''} was trained on features whose slide "
            f"stain was estimated by method {theirs if theirs is not None else '3 or older'}, but these features' "
            f"by method {ours} (its tile statistics follow the estimate)", path=where,
            fix="train the detector again (weakstil tumorbed train) on features embedded by this WeakSTIL version")
