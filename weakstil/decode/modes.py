"""The ``--decode`` modes (no heavy imports: the CLI reads this at start-up)."""

from __future__ import annotations

from enum import Enum


class DecodeMode(str, Enum):
    """Where JPEG tiles are decoded (``--decode``)."""

    CPU = "cpu"  #: libjpeg-turbo in decode worker processes
    GPU = "gpu"  #: nvJPEG (torchvision.io.decode_jpeg) on the encoder's GPU
    AUTO = "auto"  #: the GPU when the encoder runs on CUDA and the slide has JPEG tiles, else the CPU
