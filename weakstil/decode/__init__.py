"""Tile decoding for embedding: JPEG tiles read straight from TIFF/SVS and decoded by
libjpeg-turbo in worker processes (or by nvJPEG on the GPU), OpenSlide for everything else, and
the split of the CPUs between decoding and the encoder planned from measured stage costs.

Modules: :mod:`.jpeg_tiles` (TIFF JPEG levels, streams, CPU decoding, region geometry),
:mod:`.geometry` (output tiles over level tiles, pure), :mod:`.openslide_reader`, :mod:`.readers`
(which path a slide takes), :mod:`.workers` (processes, bands of work), :mod:`.shm` (the
shared-memory ring), :mod:`.gpu` (nvJPEG batches), :mod:`.plan` (threads from measured rates),
:mod:`.batches` (what ``embed`` calls), :mod:`.modes`, :mod:`.svswriter` (Aperio-like test slides).
Names are imported lazily, so ``weakstil.decode.modes`` stays cheap for the CLI.
"""

from __future__ import annotations

from typing import Any

from weakstil.decode.modes import DecodeMode

_LAZY = {"ThreadPlanner": "weakstil.decode.batches", "tile_batches": "weakstil.decode.batches",
         "ReadPath": "weakstil.decode.readers", "ReadSpec": "weakstil.decode.readers",
         "plan_reader": "weakstil.decode.readers"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(name)


__all__ = ["DecodeMode", "ReadPath", "ReadSpec", "ThreadPlanner", "plan_reader", "tile_batches"]
