"""The cross-validation fold models of a trained model: saved beside it, scored together.

``weakstil train`` keeps every fold's model in ``MODEL/folds/fold_<k>.safetensors`` (same
architecture and feature normalisation fields as ``model.safetensors``; listed with their
SHA-256 in ``model.json`` under ``folds``). ``model.json``'s ``scoring`` says how new slides are
scored: ``final`` (the model trained on all slides) or ``ensemble`` (the fold models together:
their tile scores, stroma weights and attention logits are averaged, then aggregated once by
:func:`weakstil.aggregate.aggregate`, so the slide score is exactly what the averaged maps give).
The spread of the fold models is also what per-slide intervals can be built from.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from weakstil.atomic import atomic_path
from weakstil.mil import (FORMAT, FORMAT_VERSION, FeatureBank, ModelError, SlideScores, TileMIL, load_model,
                          score_slides, sha256_file)

FOLDS_DIR = "folds"
SCORING = ("final", "ensemble")


def save_fold_models(models: Sequence[TileMIL], directory: str | Path) -> list[dict[str, str]]:
    """Write ``directory/folds/fold_<k>.safetensors``; returns their ``model.json`` entries."""
    from safetensors.torch import save_file

    out = Path(directory) / FOLDS_DIR
    out.mkdir(parents=True, exist_ok=True)
    entries = []
    for k, model in enumerate(models, start=1):
        path = out / f"fold_{k}.safetensors"
        state = {name: v.detach().cpu().contiguous() for name, v in model.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"weakstil": json.dumps({"format": FORMAT, "version": FORMAT_VERSION,
                                                                         "fold": k})})
        entries.append({"file": f"{FOLDS_DIR}/{path.name}", "sha256": sha256_file(path)})
    return entries


def _load_fold(directory: Path, entry: dict, model: TileMIL) -> TileMIL:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from weakstil.weights import state_dict_diff

    path = directory / str(entry.get("file", ""))
    fix = "train the model again (weakstil train) or score with the final model"
    if not path.is_file():
        raise ModelError("fold model is missing", path=path, fix=fix)
    if sha256_file(path) != entry.get("sha256"):
        raise ModelError("fold model does not match model.json (SHA-256 differs)", path=path, fix=fix)
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"cannot read fold model ({exc})", path=path, fix=fix) from None
    fold = TileMIL(model.arch)
    missing, unexpected, wrong = state_dict_diff(fold.state_dict(), state)
    if missing or unexpected or wrong:
        raise ModelError("fold model weights do not match the architecture in model.json", path=path, fix=fix)
    fold.load_state_dict(state, strict=True)
    return fold.eval()


def load_scoring_models(directory: str | Path, scoring: str | None = None) -> tuple[list[TileMIL], dict]:
    """The models that score new slides, and ``model.json``: ``[final]`` or the fold models.

    ``scoring``: ``final``, ``ensemble`` or None (what ``model.json`` says; ``final`` for models
    without fold models)."""
    directory = Path(directory)
    model, meta = load_model(directory)
    how = scoring or meta.get("scoring", "final")
    if how not in SCORING:
        raise ModelError(f"unknown scoring {how!r}", path=directory / "model.json", fix="use final or ensemble")
    folds = meta.get("folds") or []
    if how == "final" or not folds:
        return [model], meta
    return [_load_fold(directory, e, model) for e in folds], meta


@torch.no_grad()
def score_slides_ensemble(models: Sequence[TileMIL], bank: FeatureBank, idx: Sequence[int] | None = None,
                          device: torch.device | str = "cpu", threads: int = 0) -> list[SlideScores]:
    """Score slides with several models: averaged tile maps, aggregated once (one model: as is)."""
    from weakstil.aggregate import aggregate

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
