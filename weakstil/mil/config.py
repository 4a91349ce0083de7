"""Settings of the stage-2 MIL regressor (no torch import: the CLI checks them cheaply)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from weakstil import settings
from weakstil.errors import WeakSTILError


class Aggregator(str, Enum):
    """How tile scores make the slide score."""

    MEAN = "mean"  #: WeakSTIL: the plain mean of the tumour-bed tiles' scores
    ATTENTION = "attention"  #: gated attention over the tiles' hidden features
    STROMA = "stroma"  #: stroma-weighted mean of the tile scores: the sTIL definition (weakstil.mil.aggregate)


class StromaWeight(str, Enum):
    """Where the stroma aggregator's tile weights come from."""

    LEARNED = "learned"  #: a head on the tile features (sigmoid, 0-1)
    ESTIMATE = "estimate"  #: the colour-deconvolution stroma share stored with the features (weakstil.tilestats)


class Scoring(str, Enum):
    """Which models score new slides."""

    FINAL = "final"  #: the model trained on all slides
    ENSEMBLE = "ensemble"  #: the cross-validation fold models together (weakstil.mil.ensemble)


class Stopping(str, Enum):
    """How many epochs each model trains."""

    #: every model (fold and final) trains exactly ``epochs`` epochs on all its training slides:
    #: early stopping on a handful of held-out slides picked erratic epochs (1-76) per fold
    FIXED = "fixed"
    EARLY = "early"  #: keep the epoch with the lowest loss on an inner validation split (``patience``)


class Loss(str, Enum):
    """Slide-level loss on sTIL%/100."""

    MSE = "mse"
    HUBER = "huber"


AGGREGATORS = tuple(a.value for a in Aggregator)
LOSSES = tuple(loss.value for loss in Loss)
STROMA_WEIGHTS = tuple(w.value for w in StromaWeight)
SCORINGS = tuple(m.value for m in Scoring)
STOPPINGS = tuple(m.value for m in Stopping)


@dataclass(frozen=True)
class Architecture:
    """Everything needed to rebuild the network before loading its weights."""

    input_dim: int
    hidden: int = 128
    layers: int = 1
    dropout: float = 0.25
    aggregator: str = settings.AGGREGATOR
    attention_dim: int = 64
    stroma_weight: str = settings.STROMA_WEIGHT
    #: the tiles' stain/morphometry measurements are appended to the embeddings (weakstil.tilestats)
    tile_stats: bool = False
    #: each slide's embeddings minus their slide mean (weakstil.mil.bank.centre_slide_embeddings);
    #: False for models made before the option existed
    centre_embeddings: bool = False

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

    aggregator: str = settings.AGGREGATOR
    stroma_weight: str = settings.STROMA_WEIGHT
    #: append the tiles' stain/morphometry measurements to the embeddings; None: when every
    #: feature file has them (resolved by weakstil.train before training, recorded as a bool)
    tile_stats: bool | None = None
    scoring: str = settings.SCORING  #: new slides scored by the "final" model or the "ensemble" of fold models
    hidden: int = settings.HIDDEN
    layers: int = 1
    dropout: float = 0.25
    attention_dim: int = 64
    #: how many epochs: ``fixed`` (exactly ``epochs``) or ``early`` (``epochs`` is an upper bound)
    stopping: str = settings.STOPPING
    epochs: int = settings.EPOCHS
    patience: int = 15  #: early stopping only
    lr: float = 2e-3
    #: Gaussian noise added to the training tiles' features, in units of each feature's standard
    #: deviation over the training tiles: the regressor cannot lean on small, look-specific
    #: differences (benchmarks/accuracy.py: better leave-centre-out at no cost on an unseen look)
    feature_noise: float = settings.FEATURE_NOISE
    #: subtract each slide's mean embedding (not the tile measurements): a slide-wide shift of
    #: the encoder's output with the stain or scanner is gone (weakstil.mil.bank.centre_slide_embeddings).
    #: Off by default: much better within a cohort (leave-centre-out R² +0.07 on hard cohorts) but
    #: worse on an unseen look (README "Accuracy off the home ground"); needs the tile measurements,
    #: without them the slide-level abundance of lymphocytes the embeddings' mean carries is lost
    centre_embeddings: bool = settings.CENTRE_EMBEDDINGS
    weight_decay: float = 1e-4
    #: models per cross-validation fold, each with its own seed (settings.MEMBERS); the final model is one
    members: int = settings.MEMBERS
    batch_slides: int = 8
    max_tiles: int = 512  #: tiles sampled per slide per training step (all tiles at evaluation)
    loss: str = "mse"
    huber_delta: float = 0.1  #: on the 0-1 scale
    val_fraction: float = 0.2  #: inner validation split for early stopping
    seed: int = settings.SEED
    device: str = settings.DEVICE
    threads: int = 0  #: torch threads; 0 = automatic (see weakstil.runtime.choose_threads)

    def architecture(self, input_dim: int) -> Architecture:
        return Architecture(input_dim=input_dim, hidden=self.hidden, layers=self.layers, dropout=self.dropout,
                            aggregator=self.aggregator, attention_dim=self.attention_dim,
                            stroma_weight=self.stroma_weight, tile_stats=bool(self.tile_stats),
                            centre_embeddings=self.centre_embeddings)

    def check(self) -> None:
        if self.loss not in LOSSES:
            raise WeakSTILError(f"unknown loss {self.loss!r}", fix=f"use one of {', '.join(LOSSES)}")
        if self.epochs < 1 or self.batch_slides < 1 or self.max_tiles < 1:
            raise WeakSTILError("epochs, batch size and --max-tiles must be positive", fix="check the options")
        if self.lr <= 0:
            raise WeakSTILError(f"learning rate must be positive, got {self.lr}", fix="check --lr")
        if not 1 <= self.members <= 100:
            raise WeakSTILError(f"members per fold must be 1 to 100, got {self.members}", fix="check --members")
        if self.patience < 1:
            raise WeakSTILError(f"patience must be at least 1, got {self.patience}", fix="check --patience")
        if not 0.0 < self.val_fraction < 1.0:
            raise WeakSTILError(f"validation fraction must be in (0, 1), got {self.val_fraction}",
                                fix="use e.g. 0.2")
        if not 0.0 <= self.feature_noise <= 10.0:
            raise WeakSTILError(f"feature noise must be in [0, 10], got {self.feature_noise}",
                                fix="check --feature-noise")
        if self.stopping not in STOPPINGS:
            raise WeakSTILError(f"unknown stopping {self.stopping!r}", fix=f"use one of {', '.join(STOPPINGS)}")
        if self.scoring not in SCORINGS:
            raise WeakSTILError(f"unknown scoring {self.scoring!r}", fix=f"use one of {', '.join(SCORINGS)}")
        self.architecture(1)  # aggregator, sizes, dropout
