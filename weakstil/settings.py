"""Default settings, defined once: the CLI options, the configuration classes (TilingParams,
PretrainConfig, TrainConfig, ScoreOptions) and the workflow's ``pipelines/config.yaml`` take
their defaults from here (a test checks the YAML agrees).

No imports beyond the standard library: the CLI reads this module at start-up.
"""

from __future__ import annotations

# --- tiles ---------------------------------------------------------------------------------
#: Resolution (µm/px) at which tiles are read; 0.5 µm/px is a 20x scan.
MPP = 0.5
#: Tile side in pixels at ``MPP`` (224 px = 112 µm).
TILE_PX = 224
#: Tile overlap in pixels at ``MPP``.
OVERLAP_PX = 0
#: Minimum share of a tile on the tissue mask for the tile to be kept.
TISSUE_THRESHOLD = 0.5

# --- scoring ---------------------------------------------------------------------------------
#: sTIL-high cut-off in %: a slide is "high" when its sTIL% >= this (the usual clinical 30 %).
STIL_THRESHOLD = 30.0
#: Share of a tile that must lie in the tumour bed for the tile to count.
TILE_IN_BED = 0.5

# --- compute ---------------------------------------------------------------------------------
SEED = 0
#: Torch device: ``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.
DEVICE = "auto"
#: Tiles per encoder batch.
BATCH_SIZE = 64
#: Tile-decoding worker processes while embedding (0: planned with the torch threads from the
#: measured decode and encoder speeds, :mod:`weakstil.decode.plan`).
DECODE_WORKERS = 0
#: Torch CPU threads (0: automatic).
TORCH_THREADS = 0
#: Where JPEG tiles are decoded: ``cpu`` (libjpeg-turbo workers), ``gpu`` (nvJPEG) or ``auto``
#: (the GPU when the encoder runs on CUDA and the slide has JPEG tiles).
DECODE = "auto"

# --- MIL training ----------------------------------------------------------------------------
FOLDS = 5
EPOCHS = 100
AGGREGATOR = "mean"
