"""Scoring with the cross-validation fold models together.

``weakstil train`` keeps every fold's model in ``MODEL/folds/fold_<k>.safetensors``
(:func:`weakstil.mil.store.save_fold_models`, listed in ``model.json`` under ``folds``).
``model.json``'s ``scoring`` says how new slides are scored: ``final`` (the model trained on all
slides) or ``ensemble`` (the fold models together: their tile scores, stroma weights and
attention logits are averaged, then aggregated once by :func:`weakstil.mil.aggregate.aggregate`,
so the slide score is exactly what the averaged maps give).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from weakstil.mil.bank import FeatureBank
from weakstil.mil.config import SCORINGS, Scoring
from weakstil.mil.identity import ModelError
from weakstil.mil.model import SlideScores, TileMIL, score_slides
from weakstil.mil.store import load_fold_models, load_model
from weakstil.modeldir import check_scoring_meta


def load_scoring_models(directory: str | Path, scoring: str | None = None) -> tuple[list[TileMIL], dict]:
    """The models that score new slides and ``model.json``: ``[final]`` or the fold models.

    ``scoring``: ``final``, ``ensemble`` or None (what ``model.json`` says; ``final`` for models
    without fold models). The final model is always first when it is the only one."""
    model, meta = load_model(directory)
    check_scoring_meta(meta, Path(directory) / "model.json")  # the encoder and tiles it scores features of
    how = scoring or meta.get("scoring", Scoring.FINAL.value)
    if how not in SCORINGS:
        raise ModelError(f"unknown scoring {how!r}", path=Path(directory) / "model.json",
                         fix=f"use one of {', '.join(SCORINGS)}")
    if how == Scoring.FINAL.value:
        return [model], meta
    if scoring is None and not meta.get("folds"):
        # `weakstil train` writes scoring "ensemble" only beside the fold models' list: without it the
        # model.json was edited, and scoring with the final model alone would pass silently for the ensemble
        raise ModelError("model.json says scoring 'ensemble' but lists no fold models ('folds')",
                         path=Path(directory) / "model.json",
                         fix="the model folder was changed; copy the whole model folder, or train the model again")
    folds = load_fold_models(directory, meta, model.arch)
    return (folds or [model]), meta


@torch.no_grad()
def score_slides_ensemble(models: Sequence[TileMIL], bank: FeatureBank, idx: Sequence[int] | None = None,
                          device: torch.device | str = "cpu", threads: int = 0) -> list[SlideScores]:
    """Score slides with several models: averaged tile maps, aggregated once (one model: as is)."""
    from weakstil.mil.aggregate import aggregate

    if len(models) == 1:
        return score_slides(models[0], bank, idx, device, threads)
    per_model = [score_slides(m.to(device), bank, idx, device, threads) for m in models]
    arch = models[0].arch
    out = []
    for j, first in enumerate(per_model[0]):
        b = bank.bags[bank.index[first.slide_id]]
        s = np.mean([pm[j].tile_scores for pm in per_model], axis=0)
        st = None if first.stroma is None else np.mean([pm[j].stroma for pm in per_model], axis=0)
        a = None if first.attention is None else np.mean([pm[j].attention for pm in per_model], axis=0)
        slide, w = aggregate(torch.from_numpy(s), torch.from_numpy(b.tile_mask), arch.aggregator,
                             stroma=None if st is None else torch.from_numpy(st),
                             logits=None if a is None else torch.from_numpy(a))
        out.append(SlideScores(first.slide_id, float(slide), s.astype(np.float32), w.numpy().astype(np.float32),
                               None if a is None else a.astype(np.float32),
                               None if st is None else st.astype(np.float32)))
    return out
