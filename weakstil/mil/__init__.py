"""Stage 2: a weakly supervised multiple-instance regressor on cached tile embeddings.

* :mod:`~weakstil.mil.config` — architecture and training settings (no torch: the CLI checks them);
* :mod:`~weakstil.mil.identity` — which encoder and tiles features come from, and whether they fit a model;
* :mod:`~weakstil.mil.bank` — a cohort's tile features in one tensor (:class:`FeatureBank`);
* :mod:`~weakstil.mil.model` — the network (:class:`TileMIL`) and :func:`score_slides`;
* :mod:`~weakstil.mil.training` — :func:`fit` and grouped :func:`cross_validate`;
* :mod:`~weakstil.mil.store` — :func:`save_model` / :func:`load_model` (safetensors + model.json);
* :mod:`~weakstil.mil.aggregate` — tile scores -> slide sTIL% (mean, attention, stroma-weighted);
* :mod:`~weakstil.mil.ensemble` — scoring with the cross-validation fold models together.

Names are importable from here (``from weakstil.mil import FeatureBank``); the torch-backed ones
are imported on first use, so ``import weakstil.mil`` stays cheap.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_WHERE = {
    "Architecture": "config", "TrainConfig": "config", "Aggregator": "config", "Loss": "config",
    "ModelError": "identity", "IDENTITY_ATTRS": "identity", "check_same_identity": "identity",
    "check_features_match_model": "identity",
    "FeatureBank": "bank", "SlideBag": "bank", "FLOAT16_ABOVE_BYTES": "bank",
    "TileMIL": "model", "SlideScores": "model", "score_slides": "model", "SCORE_CHUNK": "model",
    "fit": "training", "FitResult": "training", "cross_validate": "training", "CVResult": "training",
    "inner_split": "training",
    "EpochCallback": "training",
    "save_model": "store", "load_model": "store", "model_meta": "store", "FORMAT": "store",
    "FORMAT_VERSION": "store", "save_fold_models": "store", "load_fold_models": "store",
    "StromaWeight": "config", "Scoring": "config",
    "aggregate": "aggregate", "slide_score": "aggregate",
    "load_scoring_models": "ensemble", "score_slides_ensemble": "ensemble",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f"weakstil.mil.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'weakstil.mil' has no attribute {name!r}")
