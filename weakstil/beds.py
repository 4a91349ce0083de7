"""Per-slide tumour-bed files: each slide's tumour bed computed once, checked by a pathologist,
then reused by training, evaluation and scoring.

``weakstil tumorbed apply`` writes, per feature cache ``<slide_id>.h5``, into a beds folder:

* ``<slide_id>.h5``: ``tumorbed`` (uint8 flag per tile, in the features' tile order),
  ``tumorbed_fraction`` (float32 per tile), ``tumorbed_mask`` (uint8, attribute ``mpp``),
  ``coords`` (level-0) and, when a detector ran, ``tumour_evidence`` (its P(tumour) per tile);
  attributes ``slide_id``, ``source`` (annotation / model / tissue / tissue-fallback: the
  detector's bed was empty or implausibly small, the reason in ``detail``),
  ``detail``, the annotation file or the detector's identity when used, the features'
  ``cache_key`` (a bed made from other features is refused), ``tile_size_level0``,
  ``slide_mpp``, ``slide_path``, ``weakstil_version``, ``created`` and ``complete`` = 1, set last;
* ``<slide_id>.geojson``: the tumour-bed outline as QuPath annotation polygons (class
  ``Tumor bed``, level-0 px). Corrected in QuPath, it is a valid ``--annotations`` file.

``weakstil train / evaluate / score --tumorbed-beds DIR`` take a slide's bed from ``DIR`` when
it holds one (:func:`read_bed`), before annotations, detector and whole tissue.
"""

from __future__ import annotations

import hashlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from weakstil import __version__
from weakstil.atomic import atomic_path, remove_stale_temps
from weakstil.errors import WeakSTILError
from weakstil.tumorbed import SlideGeometry, TumorBed, TumorBedSource

log = logging.getLogger(__name__)

#: QuPath classification of the outline polygons (matched by weakstil.annotations.TUMOR_BED_NAMES).
BED_CLASS = "Tumor bed"
#: Outline vertices may move this many mask pixels when the pixel staircase is simplified.
SIMPLIFY_MASK_PX = 0.5


def find_bed(beds_dir: str | Path | None, slide_id: str) -> Path | None:
    """``beds_dir/<slide_id>.h5`` when it exists, else ``None``."""
    if beds_dir is None:
        return None
    path = Path(beds_dir) / f"{slide_id}.h5"
    return path if path.is_file() else None


def _stale(path: Path, slide_id: str, why: str) -> WeakSTILError:
    return WeakSTILError(f"tumour bed {why}", path=path,
                         fix=f"rerun 'weakstil tumorbed apply' on the current features of {slide_id}")


def read_bed(path: str | Path, slide_id: str, data: dict) -> TumorBed:
    """The precomputed bed in ``path`` for the features ``data`` (see weakstil.embed.read_features).

    Refuses a bed written from other features (``cache_key`` or tile count differ): its tile
    flags would belong to other tiles."""
    import h5py

    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            attrs = dict(f.attrs)
            if int(attrs.get("complete", 0)) != 1:
                raise _stale(path, slide_id, "file is incomplete (an interrupted run)")
            fraction = f["tumorbed_fraction"][:].astype(np.float32)
            mask = f["tumorbed_mask"][:].astype(bool)
            mask_mpp = float(f["tumorbed_mask"].attrs["mpp"])
    except (OSError, KeyError) as exc:
        raise _stale(path, slide_id, f"file is unreadable ({exc})") from None
    recorded, current = str(attrs.get("cache_key", "")), str(data.get("cache_key", ""))
    if recorded != current:
        raise _stale(path, slide_id, f"was computed from other features (cache_key {recorded[:12] or 'none'}, "
                                     f"the features have {current[:12] or 'none'})")
    n_tiles = len(np.asarray(data["coords"]))
    if len(fraction) != n_tiles:
        raise _stale(path, slide_id, f"has {len(fraction)} tiles but the features have {n_tiles}")
    try:
        source = TumorBedSource(str(attrs.get("source")))
    except ValueError:
        raise _stale(path, slide_id, f"records an unknown source '{attrs.get('source')}'") from None
    return TumorBed(mask, mask_mpp, fraction, source, f"{attrs.get('detail', '')} (precomputed: {path})")


def detector_identity(detector, directory: str | Path) -> dict[str, str]:
    """What names a detector in a bed file: its folder, model id and weights hash."""
    weights = Path(directory) / "model.safetensors"
    sha = hashlib.sha256(weights.read_bytes()).hexdigest() if weights.is_file() else ""
    return {"detector_path": str(Path(directory).resolve()),
            "detector_id": str(detector.meta.get("model_id", "tumorbed-model")), "detector_sha256": sha}


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

    def summary(self) -> str:
        n = len(self.bed.tile_fraction)
        if self.bed.source is TumorBedSource.TISSUE_FALLBACK:
            return (f"{self.slide_id}: bed fallback: tissue ({self.bed.detail}), "
                    f"{int(self.bed.tile_flags.sum())} / {n} tiles -> {self.h5_path}")
        return (f"{self.slide_id}: tumour bed from {self.bed.source.value} ({self.bed.detail}), "
                f"{int(self.bed.tile_flags.sum())} / {n} tiles -> {self.h5_path}")


def write_bed(path: Path, slide_id: str, data: dict, bed: TumorBed, provenance: dict[str, str]) -> Path:
    """The bed's HDF5 file (atomically; ``complete`` set last)."""
    import h5py

    remove_stale_temps(path)
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("tumorbed", data=bed.tile_flags.astype(np.uint8))
            f.create_dataset("tumorbed_fraction", data=np.asarray(bed.tile_fraction, np.float32))
            ds = f.create_dataset("tumorbed_mask", data=bed.mask.astype(np.uint8), compression="gzip")
            ds.attrs["mpp"] = float(bed.mask_mpp)
            f.create_dataset("coords", data=np.asarray(data["coords"], np.int64))
            if bed.evidence is not None:  # what the detector saw: P(tile holds invasive tumour)
                f.create_dataset("tumour_evidence", data=np.asarray(bed.evidence, np.float32))
            attrs = {
                "slide_id": slide_id, "source": bed.source.value, "detail": bed.detail, **provenance,
                "cache_key": str(data.get("cache_key", "")), "tile_size_level0": float(data["tile_size_level0"]),
                "slide_mpp": float(data["slide_mpp"]), "slide_width": int(data["slide_width"]),
                "slide_height": int(data["slide_height"]), "slide_path": str(data.get("slide_path", "")),
                "encoder": str(data.get("encoder", "")), "weights_sha256": str(data.get("weights_sha256", "")),
                "n_tiles": int(len(bed.tile_fraction)), "n_tumorbed_tiles": int(bed.tile_flags.sum()),
                "tile_threshold": float(bed.attrs()["tumorbed_tile_threshold"]),
                "weakstil_version": __version__, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            }
            for key, value in attrs.items():
                f.attrs[key] = value
            f.attrs["complete"] = 1
    return path


def apply_tumorbed(features_path: str | Path, out_dir: str | Path, *, annotations: str | Path | None = None,
                   detector=None, detector_path: str | Path | None = None) -> AppliedBed:
    """Resolve one slide's tumour bed (annotation > detector > whole tissue) from its feature
    cache and write ``OUT/<slide_id>.h5`` and ``OUT/<slide_id>.geojson``."""
    from weakstil.annotations import write_geojson
    from weakstil.embed import read_features
    from weakstil.tumorbed import check_detector_matches, resolve_tumorbed

    features_path = Path(features_path)
    slide_id = features_path.stem  # `weakstil embed` names the cache after the slide
    data = read_features(features_path)
    if detector is not None:
        check_detector_matches(detector, data, detector_path or features_path)
    bed = resolve_tumorbed(slide_id, data, annotations=annotations, detector=detector)
    provenance = {"features_path": str(features_path.resolve())}
    if bed.source is TumorBedSource.ANNOTATION:
        provenance["annotation_path"] = str(Path(bed.detail).resolve())
    elif bed.source in (TumorBedSource.MODEL, TumorBedSource.TISSUE_FALLBACK) and detector is not None \
            and detector_path is not None:
        provenance.update(detector_identity(detector, detector_path))
    out_dir = Path(out_dir)
    h5_path = write_bed(out_dir / f"{slide_id}.h5", slide_id, data, bed, provenance)
    geojson_path = out_dir / f"{slide_id}.geojson"
    remove_stale_temps(geojson_path)
    write_geojson(bed_polygons(bed, SlideGeometry.from_attrs(data)), geojson_path, name=BED_CLASS,
                  label=f"{BED_CLASS} ({bed.source.value})")
    return AppliedBed(slide_id, bed, h5_path, geojson_path)
