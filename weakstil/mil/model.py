"""The MIL network: a score per tile and a mean or gated-attention slide aggregate; scoring slides.

Every tile gets an sTIL score in 0-100 (``100 * sigmoid`` of a small MLP on its embedding); the
slide sTIL% aggregates the scores of its tumour-bed tiles:

* ``mean`` (WeakSTIL, Schirris et al. 2022): the plain mean of the tile scores;
* ``attention`` (ECTIL-style): ``sum_i softmax(a_i) * s_i`` with gated attention
  ``a_i = w^T (tanh(V h_i) * sigmoid(U h_i))`` over the tiles' hidden features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from weakstil.mil.bank import FeatureBank
from weakstil.mil.config import Architecture
from weakstil.runtime import TorchThreads, choose_threads

#: Tiles scored per forward pass at inference.
SCORE_CHUNK = 16384


def aggregate(scores: torch.Tensor, logits: torch.Tensor | None,
              mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Slide sTIL% and tile weights (summing to 1 over ``mask`` along the last axis): the mean of
    the masked tile scores, or their softmax(``logits``)-weighted sum. Also used to rescore a slide
    from its cached tile scores when its tumour bed is edited (:mod:`weakstil.bed_edit`)."""
    maskf = mask.to(scores.dtype)
    if logits is None:
        weights = maskf / maskf.sum(-1, keepdim=True).clamp_min(1.0)
    else:
        weights = torch.softmax(logits.masked_fill(~mask, float("-inf")), dim=-1)
        weights = torch.nan_to_num(weights, nan=0.0)  # a row without any tile
    return (weights * scores).sum(-1), weights


class TileMIL(nn.Module):
    """Per-tile sTIL regressor with a mean or gated-attention slide aggregator."""

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

    def tiles(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Tile scores (0-100) and attention logits (None for ``mean``) for features ``x`` (..., D)."""
        # feature standardisation folded into the first layer: x is never copied
        first = self.body[0]
        w = first.weight / self.feature_std
        h = self.body[1:](nn.functional.linear(x, w, first.bias - w @ self.feature_mean))
        scores = 100.0 * torch.sigmoid(self.score(h).squeeze(-1))
        logits = None
        if self.arch.aggregator == "attention":
            logits = self.attn_w(torch.tanh(self.attn_v(h)) * torch.sigmoid(self.attn_u(h))).squeeze(-1)
        return scores, logits

    def aggregate(self, scores: torch.Tensor, logits: torch.Tensor | None,
                  mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Slide sTIL% and tile weights (summing to 1 over ``mask`` along the last axis)."""
        return aggregate(scores, logits, mask)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``x`` (B, N, D), ``mask`` (B, N) bool -> slide sTIL% (B,), tile scores (B, N), weights (B, N)."""
        scores, logits = self.tiles(x)
        slide, weights = self.aggregate(scores, logits, mask)
        return slide, scores, weights


@dataclass
class SlideScores:
    """One slide scored with all its tiles."""

    slide_id: str
    stil: float
    tile_scores: np.ndarray  #: (N,) float32 0-100, every tile
    weights: np.ndarray  #: (N,) float32 aggregation weight (0 outside the tumour bed)
    attention: np.ndarray | None  #: (N,) raw attention logits (attention aggregator only)


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
    typical = float(np.median([bank.bags[int(i)].n for i in idx]))
    with TorchThreads(choose_threads(min(typical, SCORE_CHUNK) * bank.dim * model.arch.hidden, threads)):
        return [_score_one(model, bank, int(i), device) for i in idx]


def _score_one(model: TileMIL, bank: FeatureBank, i: int, device: torch.device) -> SlideScores:
    b = bank.bags[int(i)]
    feats = bank.slide_features(int(i))
    scores, logits = [], []
    for start in range(0, b.n, SCORE_CHUNK):
        x = feats[start:start + SCORE_CHUNK].to(device=device, dtype=torch.float32)
        s, a = model.tiles(x)
        scores.append(s)
        if a is not None:
            logits.append(a)
    s = torch.cat(scores)
    a = torch.cat(logits) if logits else None
    mask = torch.from_numpy(b.tile_mask).to(device)
    slide, w = model.aggregate(s[None], None if a is None else a[None], mask[None])
    return SlideScores(b.slide_id, float(slide[0]), s.float().cpu().numpy(), w[0].float().cpu().numpy(),
                       None if a is None else a.float().cpu().numpy())
