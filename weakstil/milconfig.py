"""Settings of the stage-2 MIL regressor (no torch import: the CLI checks them cheaply)."""

from __future__ import annotations

from dataclasses import dataclass

from weakstil.aggregate import AGGREGATORS
from weakstil.errors import WeakSTILError

LOSSES = ("mse", "huber")
#: Where the stroma aggregator's tile weights come from: a learned head on the tile features,
#: or the colour-deconvolution stroma estimate stored with the features (weakstil.tilestats).
STROMA_WEIGHTS = ("learned", "estimate")


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild the network before loading its weights."""

    input_dim: int
    hidden: int = 128
    layers: int = 1
    dropout: float = 0.25
    aggregator: str = "mean"
    attention_dim: int = 64
    stroma_weight: str = "learned"
    #: the tiles' stain/morphometry measurements are appended to the embeddings (weakstil.tilestats)
    tile_stats: bool = False

    def __post_init__(self) -> None:
        if self.aggregator not in AGGREGATORS:
            raise WeakSTILError(f"unknown aggregator {self.aggregator!r}", fix=f"use one of {', '.join(AGGREGATORS)}")
        if self.stroma_weight not in STROMA_WEIGHTS:
            raise WeakSTILError(f"unknown stroma weight {self.stroma_weight!r}",
                                fix=f"use one of {', '.join(STROMA_WEIGHTS)}")
        if self.input_dim < 1 or self.hidden < 1 or self.layers < 1:
            raise WeakSTILError("input dimension, hidden size and layers must be positive",
                                fix="check --hidden")
        if not 0.0 <= self.dropout < 1.0:
            raise WeakSTILError(f"dropout must be in [0, 1), got {self.dropout}", fix="check --dropout")


@dataclass
class TrainConfig:
    """Training settings (all recorded in model.json)."""

    aggregator: str = "mean"
    stroma_weight: str = "learned"
    tile_stats: bool = False
    hidden: int = 128
    layers: int = 1
    dropout: float = 0.25
    attention_dim: int = 64
    epochs: int = 100  #: upper bound; early stopping usually ends sooner
    patience: int = 15
    lr: float = 2e-3
    weight_decay: float = 1e-4
    batch_slides: int = 8
    max_tiles: int = 512  #: tiles sampled per slide per training step (all tiles at evaluation)
    loss: str = "mse"
    huber_delta: float = 0.1  #: on the 0-1 scale
    val_fraction: float = 0.2  #: inner validation split for early stopping
    seed: int = 0
    device: str = "auto"
    threads: int = 0  #: torch threads; 0 = automatic (see weakstil.mil.choose_threads)
    scoring: str = "final"  #: new slides scored by the "final" model or the "ensemble" of CV fold models

    def architecture(self, input_dim: int) -> Architecture:
        return Architecture(input_dim=input_dim, hidden=self.hidden, layers=self.layers, dropout=self.dropout,
                            aggregator=self.aggregator, attention_dim=self.attention_dim,
                            stroma_weight=self.stroma_weight, tile_stats=self.tile_stats)

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise WeakSTILError(f"unknown loss {self.loss!r}", fix=f"use one of {', '.join(LOSSES)}")
        if self.epochs < 1 or self.batch_slides < 1 or self.max_tiles < 1:
            raise WeakSTILError("epochs, batch size and --max-tiles must be positive", fix="check the options")
        if self.lr <= 0:
            raise WeakSTILError(f"learning rate must be positive, got {self.lr}", fix="check --lr")
        if self.patience < 1:
            raise WeakSTILError(f"patience must be at least 1, got {self.patience}", fix="check --patience")
        if not 0.0 < self.val_fraction < 1.0:
            raise WeakSTILError(f"validation fraction must be in (0, 1), got {self.val_fraction}",
                                fix="use e.g. 0.2")
        if self.scoring not in ("final", "ensemble"):
            raise WeakSTILError(f"unknown scoring {self.scoring!r}", fix="use final or ensemble")
        self.architecture(1)  # aggregator, sizes, dropout
