"""``weakstil tumorbed apply``: each slide's tumour bed computed once, checked by a pathologist,
then reused by training, evaluation and scoring (``--tumorbed-beds``).

Per feature cache ``<slide_id>.h5`` it writes into a beds folder ``<slide_id>.h5`` (a
:class:`weakstil.files.BedFile`) and ``<slide_id>.geojson``: the tumour-bed outline as QuPath
annotation polygons (class ``Tumor bed``, level-0 px). Corrected in QuPath, the outline is a
valid ``--annotations`` file.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weakstil import __version__
from weakstil.code_version import version as code_version
from weakstil.atomic import remove_stale_temps, replacing_together
from weakstil.files import BedFile, FeaturesFile, slide_file
from weakstil.runtime import library_versions, sha256_file
from weakstil.tumorbed.bed import SlideGeometry, TumorBed, TumorBedSource
from weakstil.tumorbed.detector import TumorBedDetector
from weakstil.tumorbed.resolver import BedSources
from weakstil.tumorbed.precomputed import other_rule_only

log = logging.getLogger(__name__)

#: QuPath classification of the outline polygons (matched by weakstil.annotations.TUMOR_BED_NAMES).
BED_CLASS = "Tumor bed"
#: The slide's identity and size a bed GeoJSON records (``weakstil_slide``): a bed read for another scan is flagged.
SLIDE_RECORD = ("slide_id", "slide_fingerprint", "slide_width", "slide_height", "slide_mpp")
#: Outline vertices may move this many mask pixels when the pixel staircase is simplified: under
#: half a pixel, so every pixel centre stays on its side and rasterizing the outline gives the mask
#: back exactly (0.5 flipped pixels on 2 of 40 outside-cohort beds).
SIMPLIFY_MASK_PX = 0.25


def detector_identity(detector: TumorBedDetector, directory: str | Path) -> dict[str, str]:
    """What names a detector in a bed file: its folder, model id and weights hash."""
    from weakstil.modeldir import WEIGHTS_FILE

    weights = Path(directory) / WEIGHTS_FILE
    sha = sha256_file(weights) if weights.is_file() else ""
    return {"detector_path": str(Path(directory).resolve()),
            "detector_id": str(detector.meta.get("model_id", "tumorbed-model")), "detector_sha256": sha}


def outline_provenance(bed: TumorBed, provenance: dict, attrs: dict) -> dict[str, str]:
    """What a bed's GeoJSON records of how it was made (no path or time: the same inputs give the same
    bytes): the WeakSTIL version, the bed source, the detector's id and weights hash or the annotation's
    hash, and the features' cache key (encoder, weights, tiling, slide)."""
    kept = ("detector_id", "detector_sha256", "annotation_sha256")
    return {"weakstil_version": code_version(), "source": bed.source.value,
            **{k: str(provenance[k]) for k in kept if provenance.get(k)}, "cache_key": str(attrs.get("cache_key", ""))}


def bed_polygons(bed: TumorBed, geom: SlideGeometry):
    """The bed mask as a shapely MultiPolygon in level-0 px, clipped to the slide.

    Exact pixel outlines (one rectangle per run of mask pixels in a row, united), then the
    staircase is simplified by under a mask pixel, so rasterizing it again gives the mask back."""
    import shapely
    from shapely import affinity
    from shapely.geometry import MultiPolygon, box

    boxes = []
    for row, line in enumerate(np.asarray(bed.mask, bool)):
        edges = np.diff(np.concatenate(([0], line.view(np.int8), [0])))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        boxes.extend(box(s, row, e, row + 1) for s, e in zip(starts, ends))
    if not boxes:
        return MultiPolygon()
    merged = shapely.union_all(boxes).simplify(SIMPLIFY_MASK_PX, preserve_topology=True)
    f = bed.mask_mpp / geom.slide_mpp  # level-0 px per mask px
    level0 = affinity.scale(merged, xfact=f, yfact=f, origin=(0, 0)).intersection(box(0, 0, geom.width, geom.height))
    return MultiPolygon([g for g in getattr(level0, "geoms", [level0]) if g.geom_type == "Polygon" and g.area > 0])


@dataclass
class AppliedBed:
    """One slide's result of ``weakstil tumorbed apply``."""

    slide_id: str
    bed: TumorBed
    h5_path: Path
    geojson_path: Path
    kept: bool = False  #: the bed made earlier from the same inputs was kept, not made again
    #: made again only as the earlier one was drawn under another ink-plane rule (said once for the run: review h45e)
    other_rule: bool = False

    @property
    def ink_unread(self) -> bool:
        """The detector's ink veto was on but could not read the slide (moved since it was embedded)."""
        return "ink: slide not read" in self.bed.seed_vetoes

    @property
    def aggregates_unread(self) -> bool:
        """A step keeping lymphoid aggregates (hunt 46d) or normal lobules (47d) out of the bed could not read the slide."""
        return any(f"{k}: slide not read" in self.bed.seed_vetoes for k in ("aggregates", "lobules", "mucin pools"))

    def summary(self) -> str:
        bed = self.bed
        said = f"bed fallback: tissue ({bed.detail})" if bed.source is TumorBedSource.TISSUE_FALLBACK else \
            f"tumour bed from {bed.source.value} ({bed.detail})"
        crush = f" (less {bed.n_excluded} of crush artefact)" if bed.n_excluded else ""
        line = f"{self.slide_id}: {said}, {int(bed.tile_flags.sum())} / {len(bed.tile_fraction)} tiles{crush} -> {self.h5_path}"
        if bed.misplaced:  # warned when the bed was made; said again beside the bed
            line += f" (annotation misplaced? {bed.misplaced})"
        line += "".join(f" ({what}: slide not read)" for k, what in (("ink", "ink veto not applied"), ("aggregates",
                        "lymphoid aggregates not kept out"), ("lobules", "normal lobules not kept out"), ("mucin pools",
                        "mucin pools not seeded")) if f"{k}: slide not read" in self.bed.seed_vetoes)  # r46d, r47d, h47f
        return line + (" (made earlier from the same inputs: kept; --overwrite makes it again)" if self.kept else "")


def bed_request(sources: BedSources, slide_id: str, name: str, attrs: dict, features_path: Path,
                slide_path: str | Path | None = None) -> str:
    """What a slide's bed is made from, recorded in its bed file as ``bed_request``: the bed source
    and its input's identity (the annotation's SHA-256, the detector's id and content), the
    features (file, when made, cache key, slide fingerprint) and the WeakSTIL version; with a
    detector's ink veto, whether the slide it reads is there. A rerun with the same request keeps
    the bed (and ``--tumorbed-beds`` scoring then skips the slide), another one makes it again."""
    request = {"bed": sources.request(slide_id, also=name, features=features_path), "features": str(features_path.resolve()),
               "features_created": str(attrs.get("created", "")), "cache_key": str(attrs.get("cache_key", "")),
               "slide_fingerprint": str(attrs.get("slide_fingerprint") or ""),
               # the release, not the commit (recorded beside it): a new commit of unchanged bed code, or an edited
               # config in the checkout, would otherwise make every bed again and rescore every slide
               "weakstil_version": __version__}
    d = sources.detector  # a step that reads the slide: whether it is there is part of the request
    if d is not None and any(r.enabled for r in (d.ink_veto, d.front, d.aggregates, d.lobules, d.mucin)):
        from weakstil.tumorbed.ink import features_slide

        request["slide_read"] = features_slide(attrs, slide_path) is not None
    return json.dumps(request, sort_keys=True)


def kept_bed(h5_path: Path, geojson_path: Path, request: str) -> TumorBed | None:
    """The bed made earlier from the same ``request``, with its outline as written; ``None`` when
    the bed is to be made (none yet, another request, damaged, outline gone)."""
    from weakstil.errors import WeakSTILError

    if not h5_path.is_file() or not geojson_path.is_file():
        return None
    try:
        attrs = BedFile.read_header(h5_path)[0]
        if str(attrs.get("bed_request", "")) != request or sha256_file(geojson_path) != str(attrs.get("outline_sha256")):
            return None
        f = BedFile.read(h5_path)
        source = TumorBedSource(str(f.attr("source")))
    except (WeakSTILError, ValueError):
        return None
    evidence = getattr(f, "tumour_evidence", None)
    return TumorBed(np.asarray(f.tumorbed_mask, bool), float(f.tumorbed_mask_mpp),
                    np.asarray(f.tumorbed_fraction, np.float32), source, str(f.attr("detail", "")),
                    evidence=None if evidence is None else np.asarray(evidence, np.float32),
                    seed_vetoes=str(f.attr("seed_vetoes", "")), misplaced=str(f.attr("annotation_misplaced", "")),
                    incomplete=str(f.attr("bed_incomplete", "")), ink_test=str(f.attr("ink_test", "")),
                    ink_plane_rule=f.attr("ink_plane_rule", None), front=str(f.attr("front", "")))


def write_bed(path: Path, slide_id: str, features: FeaturesFile, bed: TumorBed, provenance: dict[str, str]) -> Path:
    """The bed's HDF5 file (atomically; ``complete`` set last)."""
    a = features.attrs
    attrs = {
        "slide_id": slide_id, "source": bed.source.value, "detail": bed.detail, **provenance,
        **({"seed_vetoes": bed.seed_vetoes} if bed.seed_vetoes else {}),
        **({"front": bed.front} if bed.front else {}),  # the front refinement's outcome (weakstil.tumorbed.front)
        # which ink test the slide had and the rule that chose it (score warns on a bed of another rule)
        **({k.replace("tumorbed_", ""): v for k, v in bed.attrs().items() if k.startswith("tumorbed_ink_")}),
        # why the annotation looks misplaced (µm, a lower level): score's annotation_misplaced flag
        **({"annotation_misplaced": bed.misplaced} if bed.misplaced else {}),
        # why a detected bed may miss part of its tumour: score's tumorbed_incomplete flag
        **({"bed_incomplete": bed.incomplete} if bed.incomplete else {}),
        "cache_key": str(a.get("cache_key", "")), "tile_size_level0": float(a["tile_size_level0"]),
        "slide_mpp": float(a["slide_mpp"]), "slide_width": int(a["slide_width"]),
        "slide_height": int(a["slide_height"]), "slide_path": str(a.get("slide_path", "")),
        "slide_fingerprint": a.get("slide_fingerprint"),
        "encoder": str(a.get("encoder", "")), "weights_sha256": str(a.get("weights_sha256", "")),
        "n_tiles": int(len(bed.tile_fraction)), "n_tumorbed_tiles": int(bed.tile_flags.sum()),
        "tile_threshold": float(bed.attrs()["tumorbed_tile_threshold"]),
        # the outline's tiles left out of n_tumorbed_tiles as crush artefact (weakstil.crush), and the share that does it
        **{k.replace("tumorbed_", ""): v for k, v in bed.attrs().items() if k.startswith("tumorbed_crush")},
        "weakstil_version": code_version(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        # the detector's torch and the morphology's numpy/scipy shape the bed, as in the other per-slide files
        "library_versions": json.dumps(library_versions("torch"), sort_keys=True),
    }
    return BedFile(tumorbed=bed.tile_flags, tumorbed_fraction=bed.tile_fraction, tumorbed_mask=bed.mask,
                   tumorbed_mask_mpp=float(bed.mask_mpp), coords=features.coords, tumour_evidence=bed.evidence,
                   attrs=attrs).write(path)


def apply_tumorbed(features_path: str | Path, out_dir: str | Path, sources: BedSources,
                   slide_id: str | None = None, overwrite: bool = False,
                   slide_path: str | Path | None = None) -> AppliedBed:
    """Resolve one slide's tumour bed (annotation > detector > whole tissue) from its feature
    cache and write ``OUT/<name>.h5`` and ``OUT/<name>.geojson`` (under the slide's lock; ``name``:
    the feature file's, which is the slide file's). ``slide_id`` (a cohort CSV's id; default the
    file's name): its annotation is found by either. ``slide_path`` (a cohort CSV's): where the slide
    is now, for a detector's ink veto (else the path the features record). A bed made earlier from
    the same inputs (:func:`bed_request`) is kept unless ``overwrite``."""
    from weakstil.locks import OutputLock
    from weakstil.outputdir import check_replaceable

    from weakstil.errors import WeakSTILError

    features_path = Path(features_path)
    if not features_path.exists():
        import glob

        if glob.has_magic(str(features_path)):
            from weakstil.errors import glob_miss_fix

            raise WeakSTILError("no file matches this pattern", path=features_path,
                                fix=glob_miss_fix(str(features_path)))
    elif features_path.is_dir():
        raise WeakSTILError("is a directory, not a feature cache", path=features_path,
                            fix="pass the <slide_id>.h5 files in it (a glob such as 'DIR/*.h5')")
    if features_path.suffix.lower() != ".h5":  # e.g. the slide itself
        raise WeakSTILError("not a feature cache", path=features_path,
                            fix="pass the <slide_id>.h5 files written by 'weakstil embed' (or a glob of them)")
    name = features_path.stem  # `weakstil embed` names the cache after the slide
    out_dir = Path(out_dir)
    with OutputLock(slide_file(out_dir, name)):
        return _apply(features_path, slide_id or name, out_dir, sources, check_replaceable, overwrite, slide_path)


def check_features_are_of_their_slide(attrs: dict, path: Path) -> None:
    """When the slide the features (``attrs`` of the file ``path``) were made from is still where
    they say, it must be the same scan (its fingerprint), or the bed would be drawn on another
    slide's tiles."""
    from weakstil.errors import WeakSTILError
    from weakstil.fingerprint import recorded, slide_fingerprint

    mine = recorded(attrs)
    slide_path = Path(str(attrs.get("slide_path", "")))
    if mine is None or not str(attrs.get("slide_path", "")) or not slide_path.is_file():
        return
    now = slide_fingerprint(slide_path)
    if now is not None and now != mine:
        raise WeakSTILError(f"the features were made from another version of {slide_path} (its content "
                            "fingerprint differs)", path=path,
                            fix=f"run 'weakstil embed' again for {slide_path}")


def check_outline_not_edited(geojson_path: Path, h5_path: Path, slide_id: str) -> None:
    """An outline this command wrote and a pathologist has corrected since (QuPath, napari: its
    SHA-256 is no longer the one its bed recorded) is not overwritten by a rerun."""
    from weakstil.errors import WeakSTILError

    if not geojson_path.is_file() or not h5_path.is_file():
        return
    try:
        recorded = str(BedFile.read_header(h5_path)[0].get("outline_sha256", ""))
    except WeakSTILError:
        return  # a damaged bed file is redone (check_replaceable decides)
    if recorded and sha256_file(geojson_path) != recorded:
        raise WeakSTILError(f"was edited after 'tumorbed apply' wrote it (a corrected outline?), or {h5_path.name} "
                            "beside it is another run's bed file: not overwriting it",
                            path=geojson_path,
                            fix=f"move {geojson_path.name} into an annotations folder and pass that with --annotations "
                                "(an annotation overrides the detector), or delete it to discard the edit")


def _apply(features_path: Path, slide_id: str, out_dir: Path, sources: BedSources, check_replaceable,
           overwrite: bool = False, slide_path: str | Path | None = None) -> AppliedBed:
    from weakstil.annotations import write_geojson
    from weakstil.outputdir import check_sidecar_replaceable
    from weakstil.qc.flags import MIN_BED_TILES

    attrs = FeaturesFile.read_header(features_path)[0]
    check_features_are_of_their_slide(attrs, features_path)
    name = features_path.stem  # the files are named as the features: score finds them by the slide file's name
    label = name if slide_id == name else f"{name} ({slide_id})"
    h5_path, geojson_path = slide_file(out_dir, name), out_dir / f"{name}.geojson"
    check_replaceable(h5_path, BedFile)
    check_sidecar_replaceable(geojson_path, h5_path, BedFile)
    check_outline_not_edited(geojson_path, h5_path, slide_id)
    request = bed_request(sources, slide_id, name, attrs, features_path, slide_path)
    kept = None if overwrite else kept_bed(h5_path, geojson_path, request)
    if kept is not None and sources.detector is not None and sources.detector.front_now(kept, attrs, slide_path):
        kept = None  # kept without its front (the encoder was not there), which can be read now: drawn again
    if kept is not None:  # rewriting it would change its bytes, and 'score --tumorbed-beds' would score again
        return AppliedBed(label, kept, h5_path, geojson_path, kept=True)
    other_rule = not overwrite and other_rule_only(h5_path, request)
    features = FeaturesFile.read(features_path)
    bed = sources.resolve(slide_id, features, slide_path)
    n_bed = int(bed.tile_flags.sum())
    if bed.source is TumorBedSource.MODEL and n_bed < MIN_BED_TILES:
        log.warning("%s: the detected tumour bed has %d tile%s (< %d, where 'score' flags few_tumorbed_tiles): "
                    "check it (napari: Edit bed) or annotate this slide", slide_id, n_bed, "" if n_bed == 1 else "s",
                    MIN_BED_TILES)
    elif bed.source is TumorBedSource.ANNOTATION and n_bed == 0 and bed.n_excluded:  # a right outline, on crush
        log.warning("%s: the %d tiles its annotation %s covers are all crush artefact, left out of the scored area: "
                    "'score' gives it no tumour bed, 'train' leaves it out", slide_id, bed.n_excluded, bed.detail)
    elif bed.source is TumorBedSource.ANNOTATION and n_bed == 0:  # as 'train' and 'tumorbed train' say
        log.warning("%s: its annotation %s covers no tissue tile (drawn on glass, or exported at another "
                    "magnification?): 'score' gives it no tumour bed, 'train' and 'tumorbed train' leave it out",
                    slide_id, bed.detail)
    if bed.source is TumorBedSource.MODEL and bed.incomplete:
        log.warning("%s: %s: check it (napari: Edit bed) or annotate this slide ('score' flags tumorbed_incomplete)",
                    slide_id, bed.incomplete)
    provenance = {"features_path": str(features_path.resolve()), "bed_request": request}
    if bed.source is TumorBedSource.ANNOTATION:
        provenance["annotation_path"] = str(Path(bed.detail).resolve())
        # a corrected outline must not be shadowed by this bed: read_precomputed compares the hash
        provenance["annotation_sha256"] = sha256_file(provenance["annotation_path"])
    elif bed.source in (TumorBedSource.MODEL, TumorBedSource.TISSUE_FALLBACK) and sources.detector is not None \
            and sources.detector_path is not None:
        provenance.update(detector_identity(sources.detector, sources.detector_path))
    remove_stale_temps(geojson_path)
    geom = SlideGeometry.from_file(features)
    # outline and bed as one: Ctrl-C or SIGTERM between the two writes left the new outline beside the
    # earlier bed, whose recorded outline hash then called it "edited": every rerun refused the slide
    with replacing_together([h5_path, geojson_path]):
        write_geojson(bed_polygons(bed, geom), geojson_path, name=BED_CLASS, label=f"{BED_CLASS} ({bed.source.value})",
                      written_by=BedFile.MADE_BY, origin=geom.origin,  # QuPath's frame on a MIRAX slide
                      provenance=outline_provenance(bed, provenance, features.attrs),
                      slide={k: features.attrs[k].item() if hasattr(features.attrs[k], "item") else features.attrs[k]
                             for k in SLIDE_RECORD if k in features.attrs})
        # the outline as written: an edit of it (QuPath) is not in this bed, and --tumorbed-beds says so
        provenance["outline_sha256"] = sha256_file(geojson_path)
        h5_path = write_bed(h5_path, slide_id, features, bed, provenance)
    return AppliedBed(label, bed, h5_path, geojson_path, other_rule=other_rule)



#: ``tumorbed apply``'s record of the detector whose beds its --out holds (hunt 30c): two runs with
#: different detectors into one folder wrote some slides' beds with one and the rest with the other.
DETECTOR_RECORD = ".weakstil-detector.json"


def _detector_record(sources: BedSources) -> dict[str, str]:
    if sources.detector is None or sources.detector_path is None:
        return {"detector_sha256": "none", "detector_path": ""}
    ident = detector_identity(sources.detector, sources.detector_path)
    return {"detector_sha256": ident["detector_sha256"] or ident["detector_id"], "detector_path": ident["detector_path"]}


def _recorded_detector(out: Path) -> dict[str, str] | None:
    """The folder's record, else (a folder written before the record) the detector its beds name."""
    import json

    try:
        data = json.loads((out / DETECTOR_RECORD).read_text(encoding="utf-8"))
        return {k: str(data[k]) for k in ("detector_sha256", "detector_path")}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    from weakstil.errors import WeakSTILError

    for path in sorted(out.glob("*.h5")) if out.is_dir() else []:
        try:
            attrs = BedFile.read_header(path)[0]
        except WeakSTILError:
            continue
        if attrs.get("detector_sha256"):
            return {"detector_sha256": str(attrs["detector_sha256"]), "detector_path": str(attrs.get("detector_path", ""))}
    return None


def _said(record: dict[str, str]) -> str:
    if record["detector_sha256"] == "none":
        return "no detector (whole-tissue beds where no annotation)"
    return f"{record['detector_path'] or 'a detector'} (weights {record['detector_sha256'][:12]})"


def claim_detector_folder(out: str | Path, sources: BedSources, overwrite: bool = False,
                          names: list[tuple[str, str]] = (), run: str = "") -> bool:
    """Record in ``out`` which detector (or none) draws its beds, and refuse (a UsageError, exit 2,
    before any bed) a run with another one, as ``embed`` refuses a folder of other settings: the folder
    would hold beds of two detectors, slide by slide, and ``--tumorbed-beds`` would read them as one
    set. ``overwrite`` (every bed made again), or the same detector folder trained again, takes the folder over. Two runs starting together: the
    record is created exclusively (a hard link), so the second sees the first's. A run without a
    detector whose slides (``names``: each one's id and file name) all have an annotation draws no bed
    of a detector's and claims nothing (a folder of annotated beds takes a detector's later). ``run``: this run's
    name, listed in the record's ``runs`` until :func:`release_detector_claim` (under the record's lock, as is the
    claim): a run that drops an unused record leaves it while another run that joined it is still going (helper
    h45d). Whether this run holds a claim."""
    from weakstil.locks import OutputLock

    out = Path(out)
    if sources.detector is None and sources.annotations is not None and names:
        from weakstil.annotations import find_annotation

        if all(find_annotation(sources.annotations, sid) or find_annotation(sources.annotations, name)
               for sid, name in names):
            return False
    with OutputLock(out / DETECTOR_RECORD):
        _claim(out, sources, overwrite, run)
    return True


def _claim(out: Path, sources: BedSources, overwrite: bool, run: str) -> None:
    import os

    from weakstil.atomic import temp_path
    from weakstil.errors import UsageError

    mine = _detector_record(sources)
    theirs = _recorded_detector(out)
    if theirs is not None and _runs(out) and not _runs(out, alive=True) and not any(out.glob("*.h5")):
        # every run it lists was killed (SIGKILL, out of memory) before its first bed: it claims nothing, and
        # another detector's run was refused ("holds the beds of ...": none) unless --overwrite (review h45e)
        log.info("%s: its detector record was left by runs that were killed before they wrote a bed (%s): "
                 "taken over", out, ", ".join(_runs(out)))
        (out / DETECTOR_RECORD).unlink()
        theirs = None
    for attempt in range(2):
        # the same detector folder trained again (the workflow retrains OUT/detector when an outline changes, and
        # reruns every bed): its beds are made again as their slides are applied (their request names the weights)
        again = theirs is not None and bool(mine["detector_path"]) and theirs["detector_path"] == mine["detector_path"]
        if theirs is not None and theirs["detector_sha256"] != mine["detector_sha256"] and not (overwrite or again):
            raise UsageError(f"holds the beds of {_said(theirs)}, not this run's {_said(mine)}: beds of two detectors "
                             "would mix in one folder", path=out,
                             fix="apply into another --out, give the --tumorbed the folder's beds were made with, or "
                                 "pass --overwrite with all of its slides to make their beds again with this one")
        if theirs == mine or attempt:
            if run:  # joined: the record as it is (its detector's path), this run listed
                _write_record(out, {**(_recorded_detector(out) or mine), "runs": sorted({*_runs(out, True), run})})
            return
        out.mkdir(parents=True, exist_ok=True)
        tmp = temp_path(out / DETECTOR_RECORD)
        tmp.write_text(_record_text({**mine, "runs": [run] if run else []}), encoding="utf-8")
        try:
            if theirs is None:  # exclusive: a run that started at the same time and wrote first wins
                os.link(tmp, out / DETECTOR_RECORD)
            else:  # --overwrite, or the detector trained again: this run's from now on
                os.replace(tmp, out / DETECTOR_RECORD)
            return
        except FileExistsError:
            theirs = _recorded_detector(out)
        finally:
            tmp.unlink(missing_ok=True)


def _record_text(record: dict) -> str:
    return json.dumps({**record, "written_by": "weakstil tumorbed apply", "weakstil_version": code_version()}) + "\n"


def _runs(out: Path, alive: bool = False) -> list[str]:
    """The runs the record lists as using it (none: a record written before they were listed); ``alive``: less those
    gone (killed: its ``finally`` never ran; :func:`weakstil.tumorbed.runs.gone`)."""
    from weakstil.tumorbed.runs import gone

    try:
        runs = json.loads((out / DETECTOR_RECORD).read_text(encoding="utf-8")).get("runs") or []
    except (OSError, ValueError, AttributeError):
        return []
    runs = [str(r) for r in runs] if isinstance(runs, list) else []
    return [r for r in runs if not gone(r)] if alive else runs


def _write_record(out: Path, record: dict) -> None:
    import os

    from weakstil.atomic import temp_path

    tmp = temp_path(out / DETECTOR_RECORD)
    try:
        tmp.write_text(_record_text(record), encoding="utf-8")
        os.replace(tmp, out / DETECTOR_RECORD)
    finally:
        tmp.unlink(missing_ok=True)


def release_detector_claim(out: str | Path, run: str, made_folder: bool) -> None:
    """``run`` no longer uses ``out``'s detector record. A run whose every slide failed left the folder holding
    only its record, which then refused another detector's run there ("holds the beds of DETECTOR": it held none;
    hunt 44c), so the record goes when no other run uses it and the folder holds nothing else (no bed, no other
    run's lock or temporary file), and the folder when this run made it. Under the record's lock, as the claim is:
    a run starting together with this one in a new folder had joined the record and was still loading its first
    slide when this one removed it, and its beds then carried no claim (helper h45d). A listed run of this host
    that was killed (its release never ran) does not keep the record (review h45e)."""
    import os

    from weakstil.locks import OutputLock, lock_file

    out = Path(out)
    if not (out / DETECTOR_RECORD).is_file():
        return
    dropped = False
    try:
        with OutputLock(out / DETECTOR_RECORD):
            record = _recorded_detector(out)
            others = [r for r in _runs(out, alive=True) if r != run]
            if record is None:
                return
            mine = {lock_file(out / DETECTOR_RECORD).name, DETECTOR_RECORD}
            if not others and not [p for p in out.iterdir() if p.name not in mine]:
                (out / DETECTOR_RECORD).unlink()
                dropped = True
            elif run in _runs(out):
                _write_record(out, {**record, "runs": others})
        if dropped and made_folder:
            os.rmdir(out)
    except OSError:  # gone, or another run wrote there meanwhile: its folder, as it is
        pass
