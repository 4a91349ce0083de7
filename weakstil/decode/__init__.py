"""Tile decoding for embedding: JPEG tiles read straight from TIFF/SVS and decoded by
libjpeg-turbo in worker processes (or by nvJPEG on the GPU), OpenSlide for everything else, and
the split of the CPUs between decoding and the encoder planned from measured stage costs.

Modules: :mod:`.jpeg_tiles` (TIFF JPEG levels, streams, CPU decoding, region geometry),
:mod:`.openslide_reader`, :mod:`.readers` (which path a slide takes), :mod:`.workers` (processes
and shared-memory batches), :mod:`.gpu` (nvJPEG batches), :mod:`.plan` (threads from measured
rates), :mod:`.batches` (what ``embed`` calls), :mod:`.svswriter` (Aperio-like test slides).
Heavy imports (torch, torchvision, OpenSlide) stay inside functions.
"""

from weakstil.decode.batches import DecodeMode, ThreadPlanner, tile_batches
from weakstil.decode.readers import ReadPath, ReadSpec, plan_reader

__all__ = ["DecodeMode", "ReadPath", "ReadSpec", "ThreadPlanner", "plan_reader", "tile_batches"]
