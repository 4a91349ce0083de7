"""Stage: tumour bed — which tiles' scores make up the slide's sTIL%.

The tumour bed is the invasive tumour plus the stroma between its nests (TILs Working
Group). Three sources, in order of precedence for a slide (a bed precomputed by ``weakstil
tumorbed apply`` from these, see weakstil.beds, comes before all three when given):

1. an **annotation** drawn by a pathologist (QuPath GeoJSON / ImageScope XML);
2. a **trained detector** (weakstil.tumorbed_detector, ``weakstil tumorbed train`` on a few
   annotated slides): tumour evidence per tile from the embeddings, grown into the bed by
   geometry (weakstil.bed_geometry: the stroma between and around the nests up to the
   invasive front). A detected bed that is empty or implausibly small next to the tumour
   evidence is replaced by the whole tissue, as source ``tissue-fallback``, never dropped;
3. otherwise the whole tissue, flagged as such in every output (``source = "tissue"``).

Masks are stored at low resolution with their µm/px, and each tile gets the fraction of
its area inside the bed and a flag (fraction >= 0.5).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from weakstil.errors import WeakSTILError
from weakstil.tiling import mask_fractions

if TYPE_CHECKING:
    from weakstil.tumorbed_detector import TumorBedDetector

log = logging.getLogger(__name__)

#: Share of a tile that must lie in the tumour bed for the tile to count.
TILE_IN_BED = 0.5


class TumorBedSource(str, Enum):
    ANNOTATION = "annotation"
    MODEL = "model"
    TISSUE = "tissue"
    #: the detector's bed was empty or implausibly small: the whole tissue, with the reason in ``detail``
    TISSUE_FALLBACK = "tissue-fallback"


@dataclass
class TumorBed:
    """A slide's tumour bed: low-resolution mask plus per-tile fraction and flag."""

    mask: np.ndarray
    mask_mpp: float
    tile_fraction: np.ndarray
    source: TumorBedSource
    detail: str = ""  #: annotation path or model id (for a fallback: why)
    evidence: np.ndarray | None = None  #: the detector's tumour evidence per tile, when a detector ran

    @property
    def tile_flags(self) -> np.ndarray:
        return self.tile_fraction >= TILE_IN_BED

    @property
    def found(self) -> bool:
        return bool(self.tile_flags.any())

    def attrs(self) -> dict[str, object]:
        return {"tumorbed_source": self.source.value, "tumorbed_detail": self.detail,
                "tumorbed_mask_mpp": float(self.mask_mpp), "tumorbed_tile_threshold": TILE_IN_BED}


@dataclass
class SlideGeometry:
    """What tumour-bed code needs to know about a slide and its tiles."""

    width: int
    height: int
    slide_mpp: float
    coords: np.ndarray
    tile_size_level0: float
    tissue_mask: np.ndarray
    mask_mpp: float

    @classmethod
    def from_attrs(cls, data: dict) -> SlideGeometry:
        """From a tiles/features HDF5 read into a dict (see weakstil.tiles.read_tiles_h5)."""
        return cls(int(data["slide_width"]), int(data["slide_height"]), float(data["slide_mpp"]),
                   np.asarray(data["coords"]), float(data["tile_size_level0"]),
                   np.asarray(data["tissue_mask"]).astype(bool), float(_mask_mpp(data)))

    def tile_fractions(self, mask: np.ndarray, mask_mpp: float) -> np.ndarray:
        return mask_fractions(self.coords, self.tile_size_level0, mask, mask_mpp, self.slide_mpp)

    def fit_mask(self, mask: np.ndarray) -> np.ndarray:
        """Resize a mask to the tissue-mask grid (nearest)."""
        if mask.shape == self.tissue_mask.shape:
            return mask.astype(bool)
        from skimage.transform import resize

        return resize(mask.astype(np.float32), self.tissue_mask.shape, order=0, anti_aliasing=False) > 0.5


def _mask_mpp(data: dict) -> float:
    for key in ("mask_mpp", "tissue_mask_mpp"):
        if key in data:
            return float(data[key])
    raise KeyError("mask_mpp")


def from_annotation(path: str | Path, geom: SlideGeometry) -> TumorBed:
    """Tumour bed from a pathologist's annotation file (clipped to tissue and slide)."""
    from weakstil.annotations import check_inside, load_polygons, rasterize

    polygons = check_inside(load_polygons(path), geom.width, geom.height, path)
    mask = rasterize(polygons, geom.width, geom.height, geom.slide_mpp, geom.mask_mpp)
    mask = geom.fit_mask(mask)
    return TumorBed(mask, geom.mask_mpp, geom.tile_fractions(mask, geom.mask_mpp), TumorBedSource.ANNOTATION,
                    str(path))


def whole_tissue(geom: SlideGeometry) -> TumorBed:
    mask = geom.tissue_mask.astype(bool)
    return TumorBed(mask, geom.mask_mpp, geom.tile_fractions(mask, geom.mask_mpp), TumorBedSource.TISSUE,
                    "whole tissue")


def resolve_tumorbed(slide_id: str, data: dict, *, annotations: str | Path | None = None,
                     detector: TumorBedDetector | None = None, beds: str | Path | None = None) -> TumorBed:
    """The tumour bed of one slide from its feature/tiles data, by precedence: a precomputed
    bed ``beds/<slide_id>.h5`` (``weakstil tumorbed apply``; refused when made from other
    features) > annotation file (matched by slide id) > trained detector > whole tissue.

    A detected bed that is empty or implausibly small becomes the whole tissue (source
    ``tissue-fallback``), with a warning naming the slide and the reason."""
    from weakstil.annotations import find_annotation
    from weakstil.beds import find_bed, read_bed

    precomputed = find_bed(beds, slide_id)
    if precomputed is not None:
        return read_bed(precomputed, slide_id, data)
    geom = SlideGeometry.from_attrs(data)
    annotation = find_annotation(annotations, slide_id)
    if annotation is not None:
        return from_annotation(annotation, geom)
    if detector is not None:
        bed = detector.detect(np.asarray(data["features"]), geom)
        if bed.source is TumorBedSource.TISSUE_FALLBACK:
            log.warning("%s: bed fallback: tissue: %s", slide_id, bed.detail)
        return bed
    return whole_tissue(geom)


def check_detector_matches(detector: TumorBedDetector, data: dict, where: str | Path) -> None:
    """A detector only works on embeddings of the encoder it was trained on."""
    enc, sha = detector.encoder_key
    if enc is None:
        return
    got_enc, got_sha = data.get("encoder"), data.get("weights_sha256")
    if (enc, sha) != (got_enc, got_sha):
        raise WeakSTILError(
            f"tumour-bed detector was trained on encoder '{enc}' (weights {str(sha)[:12]}) but the features "
            f"come from '{got_enc}' (weights {str(got_sha)[:12]})",
            path=where, fix="train the detector on features of the same encoder, or re-embed",
        )


def load_detector(directory: str | Path) -> TumorBedDetector:
    """A detector written by ``weakstil tumorbed train`` (see weakstil.tumorbed_detector)."""
    from weakstil.tumorbed_detector import TumorBedDetector

    return TumorBedDetector.load(directory)


def train_tumorbed_from_cache(features_dir: str | Path, annotations: str | Path, *,
                              slide_ids: list[str] | None = None, max_slides: int = 10,
                              seed: int = 0) -> TumorBedDetector:
    """Train a detector on the cached embeddings of slides that have an annotation file
    (weakstil.tumorbed_detector.training)."""
    from weakstil.tumorbed_detector import train_detector_from_cache

    return train_detector_from_cache(features_dir, annotations, slide_ids=slide_ids, max_slides=max_slides,
                                     seed=seed)


def cohort_tile_masks(slide_ids: list[str], features_dir: str | Path, *, annotations: str | Path | None = None,
                      detector: str | Path | TumorBedDetector | None = None,
                      beds: str | Path | None = None) -> dict[str, np.ndarray] | None:
    """Tumour-bed tile flags for a cohort's cached slides (precomputed bed > annotation > detector
    > whole tissue), or ``None`` when no source is given (the caller then uses all tiles)."""
    from weakstil.embed import read_features

    if annotations is None and detector is None and beds is None:
        return None
    if detector is not None and isinstance(detector, (str, Path)):
        detector = load_detector(detector)
    from weakstil.beds import find_bed

    masks, sources = {}, {}
    precomputed = sum(find_bed(beds, sid) is not None for sid in slide_ids)
    for sid in slide_ids:
        path = Path(features_dir) / f"{sid}.h5"
        data = read_features(path)
        if detector is not None:
            check_detector_matches(detector, data, path)
        bed = resolve_tumorbed(sid, data, annotations=annotations, detector=detector, beds=beds)
        masks[sid] = bed.tile_flags
        sources[bed.source.value] = sources.get(bed.source.value, 0) + 1
    log.info("tumour beds: %s%s", ", ".join(f"{n} from {s}" for s, n in sorted(sources.items())),
             f" ({precomputed} precomputed in {beds})" if precomputed else "")
    return masks
