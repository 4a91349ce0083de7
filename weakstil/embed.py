"""Stage 1: embed every tile of a slide with an encoder, cached per slide in HDF5.

HDF5 layout of ``CACHE/<slide_id>.h5`` (coordinates in level-0 pixels):

* ``features`` (N, D) float32: one embedding per tile, in the order of ``coords``
* ``coords`` (N, 2) int64: ``[x, y]`` top-left of each tile at level 0
* ``tissue_fraction`` (N,) float32: share of the tile on the tissue mask
* ``tissue_mask`` (H, W) uint8, attribute ``mpp``: the tissue mask the tiles were chosen on
* ``tile_stats`` (N, K) float32, attribute ``columns``: stain and nuclear-morphometry
  measurements per tile (:mod:`weakstil.tilestats`), and ``stroma_estimate`` (N,) float32, its
  colour-deconvolution stroma share (the stroma aggregator's optional tile weight)
* file attributes:

  - everything of :meth:`weakstil.tiles.SlideTiles.attrs`: ``mpp``, ``tile_px``, ``tile_um``,
    ``tile_size_level0``, ``overlap_px``, ``tissue_threshold``, ``tile_mode``, ``mask_mpp``,
    ``tissue_params`` (JSON), ``tiling_key`` (JSON), ``n_tiles``, ``slide_path``, ``slide_id``,
    ``slide_mpp``, ``slide_mpp_source``, ``slide_width``, ``slide_height``, ``slide_vendor``,
    ``slide_levels``
  - ``encoder`` (card name), ``encoder_card`` (the card as JSON), ``embed_dim``,
    ``weights_sha256``, ``weights_source``, ``normalisation`` (JSON mean/std/input_px),
    ``precision`` (what ran: fp32 on CPU, the card's precision under CUDA autocast),
    ``device``, ``torch_version``, ``timm_version``, ``weakstil_version``, ``seed``,
    ``batch_size``, ``embed_seconds``, ``warnings`` (JSON), ``created``
  - ``stain`` (JSON: the slide's Macenko stain vectors and strengths, :mod:`weakstil.stain`),
    ``stain_norm`` (``none`` or ``macenko``: what the encoder saw), ``tilestats_version``
  - ``cache_key``: sha256 of the encoder name, its weights' sha256, the card fields that change
    features (model, kwargs, input size, mean/std, pooling, stain normalisation), the tile
    statistics' version, the tiling key and the slide's µm/px
  - ``complete`` = 1, set last

The file is written under a temporary name beside the target and renamed when complete, so an
interrupted run never leaves a file that looks complete; a rerun removes such leftovers. A
rerun skips a slide only when its cache is complete and its ``cache_key`` matches.

Speed: tiles are decoded by a pool of threads (OpenSlide and Pillow release the GIL) into a
bounded ring of batch buffers (pinned on CUDA) while the main thread runs the encoder, so
memory does not grow with the slide.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from weakstil import __version__
from weakstil.atomic import atomic_path, remove_stale_temps
from weakstil.errors import NoTissueError, WeakSTILError
from weakstil.slide import Slide, slide_id_from_path
from weakstil.tiles import SlideTiles, TilingParams, find_tiles

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.encoders.factory import Encoder

log = logging.getLogger(__name__)

#: Bumped when the cache layout changes (part of the cache key).
CACHE_FORMAT = 2
#: Card fields that change the features (besides the weights).
_CARD_KEY_FIELDS = ("source", "model", "model_kwargs", "input_px", "mean", "std", "pooling", "stain_norm")


class CacheError(WeakSTILError):
    """A feature cache file is missing, incomplete or unreadable."""


@dataclass
class EmbedResult:
    path: Path
    n_tiles: int
    skipped: bool
    seconds: float

    @property
    def tiles_per_s(self) -> float:
        return self.n_tiles / self.seconds if self.seconds > 0 else float("nan")


# -- threads ----------------------------------------------------------------------------
def package_version(name: str) -> str:
    """Installed version of a distribution, without importing it (timm's import alone takes seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def plan_threads(device_type: str, workers: int | None = None, cpus: int | None = None) -> tuple[int, int]:
    """``(decode threads, torch threads)`` for a device.

    On CPU the cores are split: decoding gets ``workers`` (default: a third of the cores, at
    least 1) and torch the rest, so the two stages run side by side without oversubscription.
    With a GPU, torch needs few threads and decoding gets most cores.
    """
    if cpus is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if device_type == "cuda":
        w = workers or max(1, min(16, cpus - 1))
        return w, max(1, min(4, cpus - w))
    w = workers or max(1, cpus // 3)
    return w, max(1, cpus - w)


# -- cache ------------------------------------------------------------------------------
def cache_key(encoder: Encoder, params: TilingParams, slide_mpp: float) -> str:
    from weakstil.tilestats import TILESTATS_VERSION

    card = encoder.card.to_dict()
    payload = {
        "format": CACHE_FORMAT,
        "tilestats": TILESTATS_VERSION,
        "encoder": encoder.name,
        "weights_sha256": encoder.weights_sha256,
        "card": {k: card.get(k) for k in _CARD_KEY_FIELDS},
        "tiling": params.key(),
        "slide_mpp": round(float(slide_mpp), 6),
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def cache_is_current(path: str | Path, key: str) -> bool:
    """True when ``path`` is a complete cache written with ``key``."""
    import h5py

    path = Path(path)
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            return (int(f.attrs.get("complete", 0)) == 1 and f.attrs.get("cache_key") == key
                    and "features" in f and f["features"].shape[0] == int(f.attrs.get("n_tiles", -1)))
    except (OSError, KeyError, ValueError):  # truncated or not HDF5
        return False


def read_features(path: str | Path) -> dict[str, Any]:
    """A complete feature cache as a dict: ``features``, ``coords``, ``tissue_fraction``,
    ``tissue_mask`` (bool) and every file attribute (``encoder_card`` etc. as stored)."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise CacheError("feature cache not found", path=path, fix="run 'weakstil embed' for this slide")
    try:
        with h5py.File(path, "r") as f:
            if int(f.attrs.get("complete", 0)) != 1:
                raise CacheError("feature cache is incomplete", path=path, fix="run 'weakstil embed' again")
            out: dict[str, Any] = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in f.attrs.items()}
            out["features"] = f["features"][:]
            out["coords"] = f["coords"][:]
            out["tissue_fraction"] = f["tissue_fraction"][:]
            out["tissue_mask"] = f["tissue_mask"][:].astype(bool)
            out["tissue_mask_mpp"] = float(f["tissue_mask"].attrs["mpp"])
            if "stroma_estimate" in f:
                out["stroma_estimate"] = f["stroma_estimate"][:]
    except OSError as exc:
        raise CacheError(f"not a readable HDF5 file ({exc})", path=path, fix="run 'weakstil embed' again") from None
    except KeyError as exc:  # an HDF5 file of another kind, e.g. a 'weakstil tile' output
        raise CacheError(f"not a feature cache (no {exc})", path=path,
                         fix="pass the <slide_id>.h5 files written by 'weakstil embed'") from None
    return out


# -- decoding ---------------------------------------------------------------------------
def iter_tile_batches(slide: Slide, coords: np.ndarray, tile_px: int, mpp: float, batch_size: int,
                      workers: int = 1, prefetch: int | None = None, pin_memory: bool = False,
                      ) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, uint8 (b, tile_px, tile_px, 3))`` batches in order, decoded ahead by threads.

    At most ``prefetch`` batches are in flight; buffers are reused from a fixed ring, so memory
    is bounded whatever the slide's size. A yielded array is valid until the next one is asked for.
    Close the generator (``contextlib.closing``) before closing ``slide`` when stopping early:
    closing waits for the decode threads.
    """
    n = len(coords)
    if n == 0:
        return
    workers = max(1, int(workers))
    prefetch = max(1, prefetch or 2 * workers)
    n_batches = (n + batch_size - 1) // batch_size
    n_buf = min(n_batches, prefetch + 2)
    buffers = _alloc_buffers(n_buf, batch_size, tile_px, pin_memory)
    stop = threading.Event()

    def read(i: int) -> tuple[int, np.ndarray]:
        start = i * batch_size
        stop_at = min(n, start + batch_size)
        buf = buffers[i % n_buf]
        for j, (x, y) in enumerate(coords[start:stop_at]):
            if stop.is_set():
                break
            buf[j] = slide.read_region(int(x), int(y), tile_px, mpp)
        return start, buf[: stop_at - start]

    pending: collections.deque = collections.deque()
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="weakstil-decode") as pool:
        try:
            nxt = 0
            while nxt < n_batches and len(pending) < prefetch:
                pending.append(pool.submit(read, nxt))
                nxt += 1
            while pending:
                start, batch = pending.popleft().result()
                yield start, batch
                if nxt < n_batches:
                    pending.append(pool.submit(read, nxt))
                    nxt += 1
        finally:
            stop.set()
            for fut in pending:
                fut.cancel()


def _alloc_buffers(n: int, batch_size: int, tile_px: int, pin_memory: bool) -> list[np.ndarray]:
    if pin_memory:
        import torch

        return [torch.empty((batch_size, tile_px, tile_px, 3), dtype=torch.uint8, pin_memory=True).numpy()
                for _ in range(n)]
    return [np.empty((batch_size, tile_px, tile_px, 3), np.uint8) for _ in range(n)]


def embed_batches(encoder: Encoder, batches: Iterator[tuple[int, np.ndarray]],
                  sink: Callable[[int, np.ndarray], None]) -> None:
    """Run ``encoder`` over ``batches`` and hand each ``(start, float32 features)`` to ``sink``."""
    import torch

    dev = encoder.device
    try:
        with torch.inference_mode():
            for start, batch in batches:
                t = torch.from_numpy(batch)
                x = encoder.transform(t.to(dev, non_blocking=True) if dev.type != "cpu" else t)
                sink(start, encoder.forward(x).cpu().numpy())
    finally:
        # an error or interrupt must stop the decode threads before the slide is closed
        close = getattr(batches, "close", None)
        if close is not None:
            close()


def measured_batches(batches: Iterator[tuple[int, np.ndarray]], stain: Any, mpp: float, stats: Any,
                     stain_norm: str = "none") -> Iterator[tuple[int, np.ndarray]]:
    """Pass ``batches`` through, writing each tile's :mod:`weakstil.tilestats` row into ``stats``
    first and stain-normalising the tiles when ``stain_norm`` is ``macenko``."""
    from weakstil.stain import normalise
    from weakstil.tilestats import batch_stats

    try:
        for start, batch in batches:
            stats[start:start + len(batch)] = batch_stats(batch, stain, mpp)
            yield start, (normalise(batch, stain) if stain_norm == "macenko" else batch)
    finally:
        close = getattr(batches, "close", None)
        if close is not None:
            close()


# -- one slide --------------------------------------------------------------------------
def cache_path(out_dir: str | Path, slide_path: str | Path) -> Path:
    return Path(out_dir) / f"{slide_id_from_path(slide_path)}.h5"


def embed_slide(slide_path: str | Path, encoder: Encoder, out_path: str | Path | None = None,
                params: TilingParams | None = None, *, out_dir: str | Path | None = None,
                slide_mpp: float | None = None, allow_upsample: bool = False, batch_size: int = 64,
                workers: int = 1, prefetch: int | None = None, overwrite: bool = False, seed: int = 0,
                progress: Callable[[int, int], None] | None = None) -> EmbedResult:
    """Embed the tissue tiles of one slide into ``out_path`` (or ``out_dir/<slide_id>.h5``).

    Skips the slide when a complete cache with the same cache key exists (unless
    ``overwrite``). ``progress(done, total)`` is called after every batch. Raises a
    :class:`~weakstil.errors.WeakSTILError` (and leaves no output) for a bad slide.
    """
    import h5py

    if out_path is None:
        if out_dir is None:
            raise ValueError("give out_path or out_dir")
        out_path = cache_path(out_dir, slide_path)
    out_path = Path(out_path)
    params = params or TilingParams()
    t0 = time.perf_counter()
    with Slide.open(slide_path, slide_mpp=slide_mpp) as slide:
        slide.check_target_mpp(params.mpp, allow_upsample=allow_upsample)
        key = cache_key(encoder, params, slide.mpp)
        remove_stale_temps(out_path)  # leftovers of a killed run (one run per cache directory at a time)
        if not overwrite and cache_is_current(out_path, key):
            with h5py.File(out_path, "r") as f:
                n = int(f.attrs["n_tiles"])
            return EmbedResult(out_path, n, True, time.perf_counter() - t0)
        _check_resolution(encoder, params, slide)
        tiles = find_tiles(slide, params, allow_upsample=allow_upsample)
        n = len(tiles.coords)
        if n == 0:
            raise NoTissueError("no tissue found (0 tiles)", path=slide.path,
                                fix="check the slide is not blank; lower --tissue-threshold if tissue is faint")
        with atomic_path(out_path) as tmp:
            _write_cache(tmp, slide, tiles, encoder, key, batch_size=batch_size, workers=workers,
                         prefetch=prefetch, seed=seed, progress=progress, t0=t0)
    return EmbedResult(out_path, n, False, time.perf_counter() - t0)


def _check_resolution(encoder: Encoder, params: TilingParams, slide: Slide) -> None:
    card = encoder.card
    if abs(params.mpp - card.mpp) / card.mpp > 0.1:
        log.warning("%s: tiles at %.3g µm/px but encoder '%s' was trained at %.3g µm/px", slide.path,
                    params.mpp, card.name, card.mpp)
    if params.tile_px != card.input_px:
        log.info("%s: %d px tiles are resized to the encoder's %d px input", slide.path, params.tile_px,
                 card.input_px)


def _write_cache(tmp: Path, slide: Slide, tiles: SlideTiles, encoder: Encoder, key: str, *, batch_size: int,
                 workers: int, prefetch: int | None, seed: int, progress: Callable[[int, int], None] | None,
                 t0: float) -> None:
    import h5py
    import torch

    n, d = len(tiles.coords), encoder.embed_dim
    with h5py.File(tmp, "w") as f:
        f.attrs["complete"] = 0
        feats = f.create_dataset("features", shape=(n, d), dtype=np.float32, chunks=(min(n, 256), d))
        f.create_dataset("coords", data=tiles.coords.astype(np.int64))
        f.create_dataset("tissue_fraction", data=tiles.tissue_fraction.astype(np.float32))
        ds = f.create_dataset("tissue_mask", data=tiles.tissue_mask.astype(np.uint8), compression="gzip")
        ds.attrs["mpp"] = float(tiles.mask_mpp)
        done = 0
        bad = 0

        def sink(start: int, out: np.ndarray) -> None:
            nonlocal done, bad
            bad += int((~np.isfinite(out)).any(axis=1).sum())
            feats[start:start + len(out)] = out
            done += len(out)
            if progress is not None:
                progress(done, n)

        from weakstil.stain import estimate_slide_stain
        from weakstil.tilestats import COLUMNS, STROMA_COLUMN

        stain = estimate_slide_stain(slide)
        stats = f.create_dataset("tile_stats", shape=(n, len(COLUMNS)), dtype=np.float32)
        stats.attrs["columns"] = json.dumps(list(COLUMNS))
        norm = getattr(encoder.card, "stain_norm", None) or "none"
        batches = iter_tile_batches(slide, tiles.coords, tiles.params.tile_px, tiles.params.mpp, batch_size,
                                    workers=workers, prefetch=prefetch,
                                    pin_memory=encoder.device.type == "cuda")
        embed_batches(encoder, measured_batches(batches, stain, tiles.params.mpp, stats, norm), sink)
        f.create_dataset("stroma_estimate", data=stats[:, COLUMNS.index(STROMA_COLUMN)])
        f.attrs["stain"] = json.dumps(stain.to_dict())
        f.attrs["stain_norm"] = norm
        if done != n:
            raise WeakSTILError(f"embedded {done} of {n} tiles", path=slide.path, fix="run again")
        if bad:
            raise WeakSTILError(f"{bad} of {n} tiles gave non-finite features (encoder '{encoder.name}', "
                                f"precision {encoder.precision})", path=slide.path,
                                fix="check the encoder weights, or run in fp32 (--device cpu)")
        for k, v in tiles.attrs().items():
            f.attrs[k] = v
        f.attrs["encoder"] = encoder.name
        f.attrs["encoder_card"] = encoder.card.to_json()
        f.attrs["embed_dim"] = d
        f.attrs["weights_sha256"] = encoder.weights_sha256
        f.attrs["weights_source"] = encoder.weights_source
        f.attrs["normalisation"] = json.dumps(encoder.normalisation())
        f.attrs["precision"] = encoder.precision
        f.attrs["device"] = str(encoder.device)
        f.attrs["torch_version"] = str(torch.__version__)
        f.attrs["timm_version"] = package_version("timm")
        f.attrs["weakstil_version"] = __version__
        f.attrs["seed"] = int(seed if encoder.seed is None else encoder.seed)
        f.attrs["batch_size"] = int(batch_size)
        f.attrs["warnings"] = json.dumps(tiles.warnings)
        f.attrs["cache_key"] = key
        f.attrs["cache_format"] = CACHE_FORMAT
        f.attrs["embed_seconds"] = float(time.perf_counter() - t0)
        f.attrs["created"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        f.attrs["complete"] = 1
