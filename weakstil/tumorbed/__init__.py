"""Stage: tumour bed — which tiles' scores make up the slide's sTIL%.

* :mod:`~weakstil.tumorbed.bed` — a slide's bed (:class:`TumorBed`), its geometry, from an
  annotation or the whole tissue;
* :mod:`~weakstil.tumorbed.evidence` — tumour evidence per tile (a classifier on the embeddings);
* :mod:`~weakstil.tumorbed.cellgate` / :mod:`~weakstil.tumorbed.veto` / :mod:`~weakstil.tumorbed.ink` —
  seed vetoes: tiles with no tumour cells in or beside them, lymphoid tiles away from tumour cells
  and tiles under marker ink cannot seed the bed;
* :mod:`~weakstil.tumorbed.detector` — the detector (:class:`TumorBedDetector`): evidence -> seeds ->
  bed by geometry (:mod:`weakstil.bed_geometry`), with a plausibility check and a fallback;
* :mod:`~weakstil.tumorbed.training` — ``weakstil tumorbed train``: every setting by
  leave-one-slide-out Dice;
* :mod:`~weakstil.tumorbed.resolver` — the one resolver (:class:`BedSources`): precomputed bed >
  annotation > detector > whole tissue;
* :mod:`~weakstil.tumorbed.apply` — ``weakstil tumorbed apply``: one checkable bed file per slide.

Names are importable from here; the submodules are imported on first use.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    "TumorBedSource": "bed", "TumorBed": "bed", "SlideGeometry": "bed", "from_annotation": "bed",
    "whole_tissue": "bed",
    "TumorBedDetector": "detector", "DETECTOR_KIND": "detector", "FORMAT_VERSION": "detector",
    "LogisticEvidence": "evidence", "context_inputs": "evidence", "fit_logistic": "evidence",
    "LymphoidVeto": "veto", "InkVeto": "ink", "TumourCellGate": "cellgate",
    "AnnotatedSlide": "training", "train_detector": "training", "train_tumorbed_from_cache": "training_cache",
    "BedSources": "resolver", "check_detector_matches": "resolver", "read_precomputed": "resolver",
    "AppliedBed": "apply", "apply_tumorbed": "apply", "bed_polygons": "apply", "write_bed": "apply",
    "detector_identity": "apply", "BED_CLASS": "apply",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"weakstil.tumorbed.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'weakstil.tumorbed' has no attribute {name!r}")
