"""``weakstil tumorbed train`` from a feature cache: the annotated slides' embeddings, geometry,
tile statistics and ink, checked to come from one encoder and tile grid, then
:func:`weakstil.tumorbed.training.train_detector`."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from weakstil.errors import WeakSTILError
from weakstil.tumorbed.bed import SlideGeometry, from_annotation
from weakstil.tumorbed.cellgate import TumourCellGate
from weakstil.tumorbed.detector import TumorBedDetector
from weakstil.tumorbed.evidence import TUMOUR_NUCLEI_COLUMNS, stats_column_names
from weakstil.tumorbed.aggregates import AggregateRule, slide_aggregates
from weakstil.tumorbed.ink import InkVeto, SlideRead, slide_ink_share
from weakstil.tumorbed.training import AnnotatedSlide, train_detector
from weakstil.tumorbed.veto import LymphoidVeto

log = logging.getLogger(__name__)


def _check_one_identity(paths: list[Path], reads_tile_stats: bool = True) -> tuple:
    """The (encoder, weights_sha256, tiling) of the annotated slides' features, which must be one; otherwise the
    error names the files of the fewer encoder(s), not whichever slide happened to differ from the first. Their
    tile grid (--mpp, --tile-size, overlap...) and --stain-norm must be one too, as for 'weakstil train': the
    detector records one of each and would refuse its own training slides of the other. Features an older
    WeakSTIL embedded (another stain estimate) are refused as by 'weakstil train' when the detector may follow
    the stain estimate (``reads_tile_stats``, or stain-normalised embeddings): the resolver refuses such a
    detector at 'tumorbed apply' and 'score' of newly embedded slides, after the training (hunt 36m)."""
    from collections import Counter

    from weakstil.files import FeaturesFile
    from weakstil.mil.identity import check_features_current, check_same_identity, measurement_identity
    from weakstil.weights_id import canonical_weights, file_hash

    keys, headers, tiling = {}, {}, None
    for path in paths:
        try:
            attrs, _ = FeaturesFile.read_header(path)
        except WeakSTILError:
            continue  # an unreadable file is that slide's own error, when it is read
        keys[path], headers[path] = attrs.get("encoder"), attrs
        if tiling is None and attrs.get("mpp") is not None and attrs.get("tile_px") is not None:
            tiling = {"mpp": float(attrs["mpp"]), "tile_px": int(attrs["tile_px"])}
    # the weights' fingerprint: a feature file from before hunt 24 (its file's hash) agrees with a newer one
    keys = {p: (enc, sha) for (p, enc), sha in zip(keys.items(), canonical_weights(list(headers.values())))}
    file_sha = next((h for h in map(file_hash, headers.values()) if h is not None), None)
    counts = Counter(keys.values())
    if len(counts) < 2:
        try:
            check_same_identity([p.name for p in headers], list(headers.values()))
        except WeakSTILError as exc:
            raise WeakSTILError(exc.message, path=next(iter(headers)).parent, fix=exc.fix) from None
        first, attrs = next(iter(headers.items()), (None, {}))
        if first is not None and (reads_tile_stats or str(attrs.get("stain_norm") or "none") != "none"):
            # the resolver compares only the stain estimate (tile statistics are read by column name)
            check_features_current(measurement_identity(attrs), False, first, len(headers), what="detector")
        return (*next(iter(counts), (None, None)), tiling, file_sha)
    (common, n_common), = counts.most_common(1)
    odd = [p for p, k in keys.items() if k != common]
    names = ", ".join(f"{p.stem} ('{keys[p][0]}')" for p in odd[:5]) + (" ..." if len(odd) > 5 else "")
    raise WeakSTILError(f"features of {len(odd)} slide(s) come from another encoder than the other {n_common}'s "
                        f"('{common[0]}', weights {str(common[1])[:12]}): {names}", path=odd[0],
                        fix="embed all slides with one encoder (or move the odd feature files out of the folder)")


def train_tumorbed_from_cache(features_dir: str | Path, annotations: str | Path, *,
                              slide_ids: list[str] | None = None, max_slides: int = 10,
                              slide_paths: dict[str, str | Path] | None = None,
                              seed: int = 0, tile_stats: bool = False,
                              lymphoid_veto: bool = True, ink_veto: bool = True,
                              infiltrate: bool = True, tumour_cell_gate: bool = True,
                              warn_unmatched: bool = True, augment: bool = True, front: bool = True,
                              progress=None, aggregates: bool = True, lobules: bool = True,
                              mucin: bool = True) -> TumorBedDetector:
    """Train a detector on the cached embeddings of slides that have an annotation file.

    ``slide_ids`` restricts (and orders) the candidates; at most ``max_slides`` are used.
    ``slide_paths`` (a cohort CSV's id -> slide file): a slide's features and annotation are also
    found by its file's name ('P1' in the CSV, synth_0000.tiff / .h5 / .geojson on disk), as
    ``train --annotations`` finds them.
    ``tile_stats``: the tumour-nuclei morphometry (:data:`TUMOUR_NUCLEI_COLUMNS`) joins the embedding.
    ``lymphoid_veto``: lymphoid tiles away from tumour cells cannot seed the bed (weakstil.tumorbed.veto).
    ``ink_veto``: nor can tiles under marker ink (weakstil.tumorbed.ink; measured on the slides
    the feature files name, where they are there). ``infiltrate``: dense infiltrate touching the
    bed may be taken in (weakstil.bed_geometry step 6). ``tumour_cell_gate``: tiles with no tumour
    nuclei in or beside them cannot seed the bed (weakstil.tumorbed.cellgate). ``warn_unmatched``: say which
    annotation files match none of the slides (off for the demo, whose truth folder holds its held-out slides' too).
    ``augment``: one appearance-jittered copy of each slide's tiles, read again from its slide, joins the
    final classifier (weakstil.tumorbed.augment; ``progress(done, total, slide_id)`` follows its embedding)."""
    from weakstil.annotation_errors import EmptyAnnotationError
    from weakstil.annotations import AnnotationError, find_annotation, raise_all, unmatched_annotations
    from weakstil.files import FeaturesFile, feature_path
    from weakstil.mil.identity import measurement_identity

    features_dir = Path(features_dir)
    among = "of the slides asked for (e.g. --cohort)" if slide_ids is not None else "with features"
    if slide_ids is None:
        slide_ids = sorted(p.stem for p in features_dir.glob("*.h5"))
    paths = slide_paths or {}

    def features_of(sid: str) -> Path:
        return feature_path(features_dir, sid, paths.get(sid))

    def annotation_of(sid: str) -> Path | None:
        stem = features_of(sid).stem
        return find_annotation(annotations, sid) or (find_annotation(annotations, stem) if stem != sid else None)

    unused = unmatched_annotations(annotations, [*slide_ids, *(features_of(sid).stem for sid in slide_ids)])
    if unused and warn_unmatched:  # a typo in a file name, or a slide not embedded: say so rather than train on fewer slides
        log.warning("%s: %d annotation file(s) match no slide %s and are not used: %s%s", annotations,
                    len(unused), among, ", ".join(p.name for p in unused[:5]), " ..." if len(unused) > 5 else "")
    chosen: list[AnnotatedSlide] = []
    bad: list[AnnotationError] = []
    annotated = [sid for sid in slide_ids if annotation_of(sid) is not None and features_of(sid).is_file()]
    # whether the detector may read tile statistics (TumorBedDetector.reads_tile_stats; the infiltrate's reach
    # is chosen by the training, so an --infiltrate one counts although 0 may be chosen)
    identity = _check_one_identity([features_of(sid) for sid in annotated],
                                   reads_tile_stats=bool(tile_stats or lymphoid_veto or tumour_cell_gate or infiltrate))
    no_tile: list[str] = []
    empty: list[str] = []
    left_out: list[dict] = []  # recorded in model.json, not only warned about (hunt 39e): which slides, and why
    measured: dict = {}
    visited: set[str] = set()
    agg_masks: dict[str, np.ndarray | None] = {}  # each chosen slide's lymphoid aggregates, on its mask grid
    for sid in slide_ids:
        if len(chosen) >= max_slides:
            break
        annotation = annotation_of(sid)
        path = features_of(sid)
        if annotation is None or not path.is_file():
            continue
        visited.add(sid)
        cache = FeaturesFile.read(path)
        geom = SlideGeometry.from_file(cache)
        try:
            bed = from_annotation(annotation, geom)
        except EmptyAnnotationError:  # nothing drawn (a slide exported before its outline): left out, as a bed
            empty.append(annotation.name)  # on no tile is; a malformed file may be a bed lost, and refuses
            left_out.append({"slide_id": sid, "annotation": annotation.name, "reason": "empty: nothing drawn in it"})
            continue
        except AnnotationError as exc:  # go on: every unusable file is named at once
            bad.append(exc)
            continue
        if not np.asarray(bed.tile_flags).any():  # drawn on glass, or at another magnification: it would
            no_tile.append(annotation.name)  # teach that the slide holds no tumour at all
            left_out.append({"slide_id": sid, "annotation": annotation.name, "reason": "covers no tissue tile"})
            continue
        columns = cache.attr("tile_stats_columns")
        measured = measured or measurement_identity(cache.attrs)
        read = SlideRead(cache.attrs, paths.get(sid))  # one read for the ink veto and the aggregates (helper h47c)
        ink = slide_ink_share(cache.attrs, geom.coords, geom.tile_size_level0, slide_path=paths.get(sid),
                              read=read) if ink_veto else None
        if aggregates:  # on the mask grid (small): the read is not kept until train_detector asks for them
            agg_masks[sid] = slide_aggregates(cache.attrs, geom.tissue_mask.shape, geom.mask_mpp,
                                              AggregateRule(enabled=True), paths.get(sid), read)[0]
        del read
        chosen.append(AnnotatedSlide(sid, np.asarray(cache.features, np.float32), geom, bed.mask, cache.tile_stats,
                                     stats_column_names(columns), ink))
    raise_all(bad)
    left = [sid for sid in annotated if sid not in visited]  # named after the loop: unusable ones were skipped
    if len(chosen) >= max_slides and left:
        log.warning("%d annotated slides with features: the detector trains on the first %d usable ones "
                    "(--max-slides), not on %s%s", len(annotated), max_slides, ", ".join(left[:5]),
                    " ..." if len(left) > 5 else "")
    if no_tile:
        log.warning("%s: %d annotation(s) cover no tissue tile and are left out (drawn on glass, or exported at "
                    "another magnification?): %s", annotations, len(no_tile), ", ".join(no_tile[:5]))
    if empty:
        log.warning("%s: %d annotation file(s) are empty (nothing drawn in them) and their slides are left out of the "
                    "detector's training: %s%s", annotations, len(empty), ", ".join(empty[:5]),
                    " ..." if len(empty) > 5 else "")
    if not chosen:  # outlines in a format not read (mask images, .svg...) are named, not "name them .geojson"
        from weakstil.annotation_wkt import unread_outline
        from weakstil.settings import SLIDE_FILE_SUFFIXES

        unread = next(filter(None, (unread_outline(Path(annotations), sid, SLIDE_FILE_SUFFIXES)
                                    for sid in slide_ids if features_of(sid).is_file())), None)
        if unread is not None:
            raise unread
        raise WeakSTILError("no slide has both cached features and an annotation" + (
                            f" that covers a tissue tile ({len(no_tile)} cover none)" if no_tile else "") + (
                            f" ({len(empty)} annotation file(s) are empty: {', '.join(empty[:3])})" if empty else ""),
                            path=annotations,  # (every file empty: naming and embedding were no fix, hunt 39k)
                            fix="draw the tumour beds and export them again" if empty and not no_tile and
                            len(empty) >= len(annotated) else
                            "name annotation files <slide_id>.geojson / .xml and embed those slides first")
    # fitted in slide-id order whatever order chose them (a cohort CSV's rows): the fit's float sums follow
    # the slides' order, so the same 6 slides listed in reverse gave other weights (hunt 38h: up to 2.4e-5)
    chosen.sort(key=lambda s: s.slide_id)
    from weakstil.stain import SlideStain
    from weakstil.tumorbed.look import stain_reference

    # its training slides' stain, from their feature files: where applied, a slide stained otherwise is flagged
    look = stain_reference([SlideStain.from_attr(FeaturesFile.read_header(features_of(s.slide_id))[0].get("stain"))
                            for s in chosen])
    meta = {"encoder": identity[0], "weights_sha256": identity[1],
            **({"weights_file_sha256": identity[3]} if identity[3] else {}), "annotations": str(Path(annotations).resolve()),
            "features": measured,  # how its training slides' stain was estimated: checked where applied
            **({"tiling": identity[2]} if identity[2] else {}),  # the tiles it learned: checked where applied
            "model_id": f"tumorbed-{len(chosen)}slides", **({"stain_reference": look} if look else {}),
            "left_out": left_out}
    copies = None
    if augment:  # made by train_detector after its checks and search: a refused training reads no slide
        from weakstil import settings
        from weakstil.tumorbed.augment import augmented_copies

        def copies():
            return augmented_copies([(s.slide_id, features_of(s.slide_id), paths.get(s.slide_id)) for s in chosen],
                                    seed, device=settings.DEVICE, progress=progress)
    embedders = _front_embedders(features_of, paths) if front else None
    return train_detector(chosen, seed=seed, meta=meta, stats_columns=TUMOUR_NUCLEI_COLUMNS if tile_stats else (),
                          lymphoid_veto=LymphoidVeto(enabled=bool(lymphoid_veto)),
                          ink_veto=InkVeto(enabled=bool(ink_veto)), infiltrate=infiltrate,
                          cell_gate=TumourCellGate(enabled=bool(tumour_cell_gate)), copies=copies, front=embedders,
                          aggregates=(lambda sid, shape, mask_mpp: agg_masks[sid]) if aggregates else None,
                          lobules=_lobule_masks(features_of, paths) if lobules else None,
                          mucin=_pool_masks(features_of, paths) if mucin else None)


def _lobule_masks(features_of, paths: dict):
    """``(slide_id, geom) -> (its normal lobules, the tiles on them)`` (weakstil.tumorbed.lobules), ``(None, None)``
    when the slide is not there."""
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed.lobules import LobuleRule, slide_lobules

    def lobules_of(sid: str, g):
        attrs = FeaturesFile.read_header(features_of(sid))[0]
        return slide_lobules(attrs, g.tissue_mask.shape, g.mask_mpp, g.coords, g.tile_size_level0,
                             LobuleRule(enabled=True), paths.get(sid))[:2]
    return lobules_of


def _pool_masks(features_of, paths: dict):
    """``(slide_id, geom) -> its mucin pools with floating clusters`` (weakstil.tumorbed.mucin), ``None`` when the
    slide is not there."""
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed.mucin import MucinRule, slide_mucin

    def pools_of(sid: str, g):
        attrs = FeaturesFile.read_header(features_of(sid))[0]
        return slide_mucin(attrs, g.tissue_mask.shape, g.mask_mpp, MucinRule(enabled=True), paths.get(sid))[0]
    return pools_of


def _front_embedders(features_of, paths: dict):
    """``slide_id -> embed`` of its shifted tiles (weakstil.tumorbed.front.slide_embedder), the features' encoder
    built once; ``None`` for a slide that cannot be read or whose encoder cannot be rebuilt (left out, said)."""
    from weakstil.files import FeaturesFile
    from weakstil.tumorbed.augment import features_encoder
    from weakstil.tumorbed.front import slide_embedder

    encoders: dict = {}

    def embedder(sid: str):
        attrs = FeaturesFile.read_header(features_of(sid))[0]
        key = (attrs.get("encoder"), attrs.get("weights_sha256"))
        try:
            if key not in encoders:
                from weakstil import settings

                encoders[key] = features_encoder(attrs, settings.DEVICE)
        except WeakSTILError as exc:
            log.warning("%s: its bed's front not tried at half stride: %s", sid, exc.message)
            return None
        embed = slide_embedder(attrs, paths.get(sid), encoders[key])
        if embed is None:
            log.warning("%s: its bed's front not tried at half stride: the slide is not there", sid)
        return embed

    return embedder
