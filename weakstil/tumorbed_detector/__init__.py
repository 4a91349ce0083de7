"""The tumour-bed detector: tumour evidence per tile (a classifier trained from a few annotated
slides) turned into a bed by geometry (weakstil.bed_geometry), with a plausibility check and a
documented fallback to the whole tissue.

``evidence`` (the tile classifier), ``detector`` (detection, files), ``training`` (fitting
and leave-one-slide-out choice of every setting).
"""

from __future__ import annotations

from weakstil.tumorbed_detector.detector import FORMAT_VERSION, TumorBedDetector
from weakstil.tumorbed_detector.training import AnnotatedSlide, train_detector, train_detector_from_cache

__all__ = ["FORMAT_VERSION", "AnnotatedSlide", "TumorBedDetector", "train_detector", "train_detector_from_cache"]
