"""The MIL network: a score per tile and a mean, gated-attention or stroma-weighted slide aggregate.

Every tile gets an sTIL score in 0-100 (``100 * sigmoid`` of a small MLP on its embedding); the
slide sTIL% aggregates the scores of its tumour-bed tiles:

* ``mean`` (WeakSTIL, Schirris et al. 2022): the plain mean of the tile scores;
* ``attention`` (ECTIL-style): ``sum_i softmax(a_i) * s_i`` with gated attention
  ``a_i = w^T (tanh(V h_i) * sigmoid(U h_i))`` over the tiles' hidden features;
* ``stroma`` (the sTIL definition): ``sum_i w_i s_i / sum_i w_i`` with each tile's stroma weight
  ``w_i`` from a second head (``learned``) or the colour-deconvolution estimate stored with the
  features (``estimate``); see :mod:`weakstil.mil.aggregate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from weakstil.mil.bank import FeatureBank
from weakstil.mil.config import Aggregator, Architecture, StromaWeight
from weakstil.mil.identity import ModelError
from weakstil.runtime import TorchThreads, choose_threads

#: Tiles scored per forward pass at inference.
SCORE_CHUNK = 16384


class TileMIL(nn.Module):
    """Per-tile sTIL regressor; the slide score aggregates the tiles (:mod:`weakstil.mil.aggregate`)."""

    def __init__(self, arch: Architecture):
        super().__init__()
        self.arch = arch
        self.register_buffer("feature_mean", torch.zeros(arch.input_dim))
        self.register_buffer("feature_std", torch.ones(arch.input_dim))
        layers: list[nn.Module] = []
        d = arch.input_dim
        for _ in range(arch.layers):
            layers += [nn.Linear(d, arch.hidden), nn.GELU(), nn.Dropout(arch.dropout)]
            d = arch.hidden
        self.body = nn.Sequential(*layers)
        self.score = nn.Linear(d, 1)
        if arch.aggregator == "attention":
            self.attn_v = nn.Linear(d, arch.attention_dim)
            self.attn_u = nn.Linear(d, arch.attention_dim)
            self.attn_w = nn.Linear(arch.attention_dim, 1)
        if self.learns_stroma:
            self.stroma_head = nn.Linear(d, 1)

    @property
    def learns_stroma(self) -> bool:
        return self.arch.aggregator == Aggregator.STROMA.value and self.arch.stroma_weight == StromaWeight.LEARNED.value

    @property
    def needs_stroma_estimate(self) -> bool:
        return self.arch.aggregator == Aggregator.STROMA.value and self.arch.stroma_weight == StromaWeight.ESTIMATE.value

    def tiles(self, x: torch.Tensor, stroma_estimate: torch.Tensor | None = None
              ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """Tile scores (0-100), attention logits and stroma weights (each None when unused) for ``x`` (..., D)."""
        # feature standardisation folded into the first layer: x is never copied
        first = self.body[0]
        w = first.weight / self.feature_std
        h = self.body[1:](nn.functional.linear(x, w, first.bias - w @ self.feature_mean))
        scores = 100.0 * torch.sigmoid(self.score(h).squeeze(-1))
        logits = stroma = None
        if self.arch.aggregator == Aggregator.ATTENTION.value:
            logits = self.attn_w(torch.tanh(self.attn_v(h)) * torch.sigmoid(self.attn_u(h))).squeeze(-1)
        if self.learns_stroma:
            stroma = torch.sigmoid(self.stroma_head(h).squeeze(-1))
        elif self.needs_stroma_estimate:
            if stroma_estimate is None:
                raise ModelError("this model weighs tiles by the stroma estimate of the feature files, and the "
                                 "features have none", fix="embed the slides again with this weakstil version")
            stroma = stroma_estimate.to(scores.dtype)
        return scores, logits, stroma

    def aggregate(self, scores: torch.Tensor, logits: torch.Tensor | None, mask: torch.Tensor,
                  stroma: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Slide sTIL% and tile weights (summing to 1 over ``mask`` along the last axis)."""
        from weakstil.mil.aggregate import aggregate

        return aggregate(scores, mask, self.arch.aggregator, stroma=stroma, logits=logits)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, stroma_estimate: torch.Tensor | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (B, N, D), ``mask`` (B, N) bool -> slide sTIL% (B,), tile scores (B, N), weights (B, N)."""
        scores, logits, stroma = self.tiles(x, stroma_estimate)
        slide, weights = self.aggregate(scores, logits, mask, stroma)
        return slide, scores, weights


@dataclass
class SlideScores:
    """One slide scored with all its tiles."""

    slide_id: str
    stil: float
    tile_scores: np.ndarray  #: (N,) float32 0-100, every tile
    weights: np.ndarray  #: (N,) float32 aggregation weight (0 outside the tumour bed)
    attention: np.ndarray | None  #: (N,) raw attention logits (attention aggregator only)
    stroma: np.ndarray | None = None  #: (N,) stroma weight in [0, 1] (stroma aggregator only)

    @property
    def tile_stil(self) -> np.ndarray:
        """(N,) each tile's sTIL% as published in files and heatmaps: the score blended with the
        slide's by the tile's stroma (:func:`weakstil.mil.aggregate.tile_estimates`); the
        stroma-weighted mean of these over the tiles in the score is :attr:`stil`."""
        from weakstil.mil.aggregate import tile_estimates

        return tile_estimates(self.tile_scores, self.stroma, self.weights > 0)


@torch.no_grad()
def score_slides(model: TileMIL, bank: FeatureBank, idx: Sequence[int] | None = None,
                 device: torch.device | str = "cpu", threads: int = 0) -> list[SlideScores]:
    """Score every tile of the given slides (all slides by default) and aggregate.

    ``threads``: torch threads (0: :func:`weakstil.runtime.choose_threads`)."""
    device = torch.device(device) if isinstance(device, str) else device
    model.eval()
    idx = range(len(bank)) if idx is None else idx
    if not len(idx):
        return []
    _check_bank_fits(model, bank)
    typical = float(np.median([bank.bags[int(i)].n for i in idx]))
    with TorchThreads(choose_threads(min(typical, SCORE_CHUNK) * bank.dim * model.arch.hidden, threads)):
        return [_score_one(model, bank, int(i), device) for i in idx]


def _check_bank_fits(model: TileMIL, bank: FeatureBank) -> None:
    """The bank was loaded as the model reads features (one line, not a matmul error or a wrong number).

    A bank loaded without the model's ``tile_stats`` was refused as features of another encoder
    ("embed with the model's encoder"), and one not centred for a ``centre_embeddings`` model scored
    without a word, until hunt 36d: the fix names the :meth:`FeatureBank.load` arguments."""
    arch = model.arch
    how = f"FeatureBank.load(paths, tile_stats={arch.tile_stats}, centre_embeddings={arch.centre_embeddings})"
    has_stats = bool(bank.tile_stats_columns)
    if has_stats != arch.tile_stats or (bank.embedding_offsets is not None) != arch.centre_embeddings:
        wants = [w for w, on in (("the tile statistics after the features", arch.tile_stats),
                                 ("slide-centred embeddings", arch.centre_embeddings)) if on]
        raise ModelError(f"the features were loaded for another model: this one takes {' and '.join(wants) or 'the features alone'}"
                         f" (model.json architecture tile_stats {arch.tile_stats}, centre_embeddings "
                         f"{arch.centre_embeddings}), the bank has {'' if has_stats else 'no '}tile statistics and is "
                         f"{'' if bank.embedding_offsets is not None else 'not '}centred", path=bank.bags[0].path,
                         fix=f"load the features with {how}, as 'weakstil score' does")
    if bank.dim != arch.input_dim:  # a model.json edited (tile_stats...): one line, not a matmul error
        stats = " and tile statistics" if arch.tile_stats else ""
        raise ModelError(f"tiles have {bank.dim} values each (features{stats}), but the model takes "
                         f"{arch.input_dim} (model.json architecture input_dim)", path=bank.bags[0].path,
                         fix="embed with the model's encoder; if the model's model.json was edited, copy the whole "
                             "model folder again or train it again")


def _score_one(model: TileMIL, bank: FeatureBank, i: int, device: torch.device) -> SlideScores:
    b = bank.bags[int(i)]
    feats = bank.slide_features(int(i))
    est = bank.slide_stroma(int(i))
    scores, logits, stromas = [], [], []
    for start in range(0, b.n, SCORE_CHUNK):
        x = feats[start:start + SCORE_CHUNK].to(device=device, dtype=torch.float32)
        e = None if est is None else est[start:start + SCORE_CHUNK].to(device)
        s, a, st = model.tiles(x, e)
        scores.append(s)
        if a is not None:
            logits.append(a)
        if st is not None:
            stromas.append(st)
    s = torch.cat(scores)
    a = torch.cat(logits) if logits else None
    st = torch.cat(stromas) if stromas else None
    mask = torch.from_numpy(b.tile_mask).to(device)
    slide, w = model.aggregate(s[None], None if a is None else a[None], mask[None], None if st is None else st[None])
    return SlideScores(b.slide_id, float(slide[0]), s.float().cpu().numpy(), w[0].float().cpu().numpy(),
                       None if a is None else a.float().cpu().numpy(),
                       None if st is None else st.float().cpu().numpy())
