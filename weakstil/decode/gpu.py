"""Batched JPEG-tile decoding on the GPU (nvJPEG through ``torchvision.io.decode_jpeg``).

For a batch of output tiles: find the JPEG tiles their regions cover, read the compressed bytes
(a background thread reads the next batch meanwhile), complete them with the level's JPEGTables,
decode them all in one ``decode_jpeg(list, device=...)`` call, lay them out on one canvas,
cut every tile's region out with a single gather and resize the regions together (a box average
over whole blocks of pixels, then bicubic, antialiased: Pillow's filters, as the CPU path) to uint8
``(B, px, px, 3)`` on the device, which
the encoder's transform normalises as it does CPU batches. The same code runs on the CPU with
torchvision's libjpeg decoder (``device="cpu"``): that is how the tests check it.

Differences from the CPU path: no DCT-domain downscaling (nvJPEG decodes full tiles; the resize
does the reduction), nvJPEG's IDCT and chroma upsampling (not bit-exact with libjpeg-turbo), and
a region that starts between level pixels (levels > 0 only) starts at the pixel before.

Colour: YCbCr streams are decoded to RGB. RGB-colourspace streams (Aperio) cannot go through
torchvision on CUDA: it asks nvJPEG for RGB output, which applies the YCbCr->RGB transform to the
stored R, G, B and clips (mean error 37-48 grey levels on an H200). They are decoded by nvJPEG's
batched decoder called directly for its UNCHANGED output (:mod:`weakstil.decode.nvjpeg_raw`: the
stored planes, bit-exact with libjpeg-turbo on the synthetic SVS, 0.17 grey levels on CMU-1), which
works for unsubsampled (4:4:4) RGB, what Aperio writes; anything else stays on the CPU. On the CPU
torchvision's libjpeg reads them with ``ImageReadMode.UNCHANGED`` and the Adobe marker the stream
gets. On CUDA the first tile is checked against libjpeg-turbo; a mismatch falls back to the CPU path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from weakstil.decode.geometry import tile_regions, tiles_covered
from weakstil.decode.jpeg_streams import sof_info, with_rgb_component_ids
from weakstil.decode.jpeg_tiles import JpegPlan, JpegTileReader

log = logging.getLogger(__name__)

#: Mean absolute difference (grey levels) above which nvJPEG's pixels are taken as wrong: IDCT and
#: chroma-upsampling differences stay near 1, a colour-space mistake gives tens.
CHECK_MAX_MEAN_DIFF = 6.0


def decode_jpeg_fn():
    """``torchvision.io.decode_jpeg`` (torchvision >= 0.29 warns that its image I/O moves to TorchCodec;
    the function is still there and is what the GPU machines' torchvision has)."""
    import warnings

    import torch
    from torchvision.io import ImageReadMode, decode_jpeg

    def decode(data, **kwargs):
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == "cuda":
            # nvJPEG's hardware decoder does not honour the stream it is given: it writes its outputs
            # (blocks of PyTorch's caching allocator, possibly just freed on this stream while queued
            # kernels still read them) before that stream's queued work has run, which corrupts
            # unrelated tensors (seen here as a device-side index assert in the tile gather). Drain
            # this stream first (pytorch/vision#9606, meta-pytorch/torchcodec#1634); the encoder runs
            # on its own stream, so this host wait does not stall it.
            torch.cuda.current_stream(torch.device(device)).synchronize()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return decode_jpeg(data, **kwargs)
    return decode, ImageReadMode


def _rgb_to_ycc(t):
    """JFIF RGB -> YCbCr (full range) on a uint8 (3, H, W) tensor: undoes a YCbCr->RGB transform
    a decoder applied to components that were stored as RGB."""
    import torch

    f = t.to(torch.float32)
    r, g, b = f[0], f[1], f[2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cb = -0.168736 * r - 0.331264 * g + 0.5 * b + 128.0
    cr = 0.5 * r - 0.418688 * g - 0.081312 * b + 128.0
    return torch.stack([y, cb, cr]).round_().clamp_(0, 255).to(torch.uint8)


class GpuDecodeUnavailable(RuntimeError):
    """The GPU path cannot read this slide (reason in the message); the CPU path can."""


def full_scale(plan: JpegPlan) -> JpegPlan:
    """The same level without DCT reduction (nvJPEG decodes whole tiles)."""
    if plan.reduce == 1:
        return plan
    return replace(plan, reduce=1, l0_per_decoded=plan.l0_per_decoded / plan.reduce)


def gpu_problem(plan: JpegPlan, device) -> str | None:
    """Why the GPU path cannot read ``plan`` on ``device`` (None when it can)."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        return "no CUDA device"
    try:
        decode_jpeg_fn()
    except Exception as exc:  # torchvision missing or broken
        return f"torchvision cannot decode JPEG ({type(exc).__name__}: {exc})"
    if plan.level.colourspace == "rgb":
        reader = JpegTileReader(plan.level, 1, plan.l0_per_decoded, plan.l0_per_out)
        try:
            first = next((i for i in range(len(reader._counts)) if reader._counts[i] > 0), None)
            info = sof_info(reader.stream(first)) if first is not None else None
        finally:
            reader.close()
        if info is None:
            return "no readable JPEG tile"
        if any((h, v) != (1, 1) for _, h, v in info[2]):
            return "RGB JPEG with chroma subsampling (nvJPEG can only pass RGB through unsubsampled)"
    return None


class GpuTileBatches:
    """Iterate ``(start, uint8 (b, px, px, 3) tensor on device)`` for ``coords`` of one slide.

    ``prefetch``: batches prepared ahead by a producer thread (0: in the consumer's thread, on its
    stream). ``timings`` (a dict, optional) gathers host seconds per stage: ``layout`` and ``read``
    (reader thread), ``decode`` (the decode_jpeg call, which returns when nvJPEG is done),
    ``assemble`` (issuing canvas/crop/resize), ``put_wait`` (producer blocked: the consumer is
    behind), ``get_wait`` (consumer blocked: the producer is behind), and ``tiles_read``."""

    def __init__(self, plan: JpegPlan, coords: np.ndarray, tile_px: int, batch_size: int, device,
                 check: bool | None = None, prefetch: int = 2, timings: dict | None = None):
        import torch

        self.plan = full_scale(plan)
        self.coords = np.asarray(coords, np.int64)
        self.px = int(tile_px)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.check = self.device.type == "cuda" if check is None else check
        self.prefetch = max(0, int(prefetch))
        self.timings = timings
        self.reader = JpegTileReader(self.plan.level, 1, self.plan.l0_per_decoded, self.plan.l0_per_out)
        lv = self.plan.level
        self.tw, self.th, self.across, self.down = lv.tile_w, lv.tile_h, lv.tiles_across, lv.tiles_down
        self._cache: dict[int, object] = {}  # tile index -> decoded (3, th, tw) tensor, previous batch
        self._fetched_prev: set[int] = set()  # tiles the previous fetched batch needed (decoded by then)
        self.tiles_decoded = 0
        self.checked = False
        self._decode_jpeg, ImageReadMode = decode_jpeg_fn()
        self._modes = ImageReadMode
        self.mode = ImageReadMode.UNCHANGED if lv.colourspace == "rgb" else ImageReadMode.RGB
        # how the streams are read: ("torchvision", mode, undo the YCbCr->RGB transform a decoder applied
        # to RGB-stored components, components renamed 'R','G','B') or ("raw",): nvJPEG's stored planes
        # through ctypes (nvjpeg_raw)
        self.reading: tuple = ("torchvision", self.mode, False, False)
        self.reading_name = self.mode.name
        self._raw = None

    def close(self) -> None:
        self.reader.close()
        self._cache.clear()

    def _time(self, key: str, seconds: float) -> None:
        if self.timings is not None:
            self.timings[key] = self.timings.get(key, 0.0) + seconds

    # geometry (host) -------------------------------------------------------------
    def _layout(self, coords: np.ndarray):
        """Regions of the batch, the tile-aligned canvas covering them, the tiles to decode
        (vectorised: a batch's layout costs the same few numpy calls whatever its size)."""
        r = self.reader
        xs = coords[:, 0] / r.l0_per_decoded
        ys = coords[:, 1] / r.l0_per_decoded
        ix, iy, _fx, _fy, w, h = tile_regions(xs, ys, self.px, r.l0_per_out / r.l0_per_decoded)
        tx0, ty0 = int(ix.min()) // self.tw, int(iy.min()) // self.th
        tx1, ty1 = (int(ix.max()) + w - 1) // self.tw, (int(iy.max()) + h - 1) // self.th
        needed = tiles_covered(ix, iy, w, h, self.tw, self.th, self.across, r.valid_w, r.valid_h)
        return ix, iy, w, h, (tx0, ty0, tx1, ty1), needed

    def _fetch(self, i: int):
        """Host work for batch ``i`` (reader thread, batches in order): the layout and the compressed
        streams of the tiles the previous batch did not need (those are still decoded then)."""
        import time

        import torch

        t0 = time.perf_counter()
        s = i * self.batch_size
        part = self.coords[s:s + self.batch_size]
        layout = self._layout(part)
        t1 = time.perf_counter()
        needed = layout[5]
        new = [int(k) for k in needed if int(k) not in self._fetched_prev]
        self._fetched_prev = {int(k) for k in needed}
        buf, spans = self.reader.streams_buffer(new)
        data = torch.from_numpy(buf)
        streams = {k: data[a:b] for k, a, b in spans}
        self._time("layout", t1 - t0)
        self._time("read", time.perf_counter() - t1)
        self._time("tiles_read", len(spans))
        return s, part, layout, streams

    # device work -----------------------------------------------------------------
    def _decode(self, needed, streams: dict) -> dict:
        """Decoded tiles of ``needed``: the previous batch's, and ``streams`` decoded now."""
        import torch

        out = {k: self._cache[k] for k in (int(k) for k in needed) if k in self._cache}
        todo = [k for k in streams if k not in out]
        missing = [int(k) for k in needed if int(k) not in out and int(k) not in streams
                   and self.reader._counts[int(k)] > 0]
        if missing:  # not read ahead (cannot happen when batches come in order): read them now
            buf, spans = self.reader.streams_buffer(missing)
            data = torch.from_numpy(buf)
            streams = {**streams, **{k: data[a:b] for k, a, b in spans}}
            todo += [k for k, _a, _b in spans]
        if todo and self.check and not self.checked:
            self._choose_colour(streams[todo[0]], todo[0])
        if todo:
            decoded = self._decode_streams([streams[k] for k in todo], self.reading)
            for k, t in zip(todo, decoded):
                if tuple(t.shape) != (3, self.th, self.tw):
                    raise GpuDecodeUnavailable(f"JPEG tile {k} decoded to shape {tuple(t.shape)}, expected "
                                               f"(3, {self.th}, {self.tw})")
                out[k] = t
            self.tiles_decoded += len(todo)
        self._cache = out
        return out

    def _decode_streams(self, data: list, reading: tuple) -> list:
        """Decode CPU uint8 tensors of complete streams to (3, h, w) device tensors, read as ``reading``."""
        import torch

        def relabel(t, fn, *args):
            return torch.frombuffer(bytearray(fn(bytes(t.numpy()), *args)), dtype=torch.uint8)

        kind = reading[0]
        if kind == "raw":
            if self._raw is None:
                from weakstil.decode.nvjpeg_raw import raw_decoder

                self._raw = raw_decoder(self.device)
            return list(self._raw.decode(data, self.th, self.tw))
        _kind, mode, undo, ids = reading
        if ids:
            data = [relabel(t, with_rgb_component_ids) for t in data]
        decoded = self._decode_jpeg(data, mode=mode, device=self.device)
        return [_rgb_to_ycc(t) for t in decoded] if undo else decoded

    def _choose_colour(self, stream, idx: int) -> None:
        """Check the first tile against libjpeg-turbo and settle how to read the colours.

        torchvision's nvJPEG call applies the YCbCr->RGB transform to RGB-stored (Aperio) components
        whatever the mode (its UNCHANGED is RGB output), which clips; on CUDA such streams are read
        first through nvJPEG's own UNCHANGED output (:mod:`weakstil.decode.nvjpeg_raw`), then the
        torchvision readings (other decoders, and the CPU, where the tests run them)."""
        ref = JpegTileReader(self.plan.level, 1, self.plan.l0_per_decoded, self.plan.l0_per_out)
        try:
            want = ref.decoded_tile(idx).astype(np.float32)
        finally:
            ref.close()
        rgb = self.plan.level.colourspace == "rgb"
        cuda = self.device.type == "cuda"
        modes = [self.mode] + ([self._modes.RGB] if rgb else [])
        stream = stream.clone()
        from weakstil.decode import nvjpeg_raw

        candidates = [("raw",)] if rgb and cuda and nvjpeg_raw.enabled() else []
        candidates += [("torchvision", mode, undo, ids) for ids in ([False, True] if rgb else [False])
                       for mode in modes for undo in ([False, True] if rgb and not ids else [False])]
        tried = []
        for reading in candidates:
            name = (reading[0] if reading[0] != "torchvision" else
                    f"{reading[1].name}{' + inverse YCbCr' if reading[2] else ''}{' + RGB ids' if reading[3] else ''}")
            try:
                t = self._decode_streams([stream], reading)[0]
            except Exception as exc:  # a reading this decoder refuses for the stream
                tried.append(f"{name}: {type(exc).__name__}: {str(exc)[:120]}")
                continue
            got = t.permute(1, 2, 0).cpu().numpy().astype(np.float32)
            diff = float(np.abs(got - want).mean()) if got.shape == want.shape else float("inf")
            tried.append(f"{name}: {diff:.1f}")
            if diff <= CHECK_MAX_MEAN_DIFF:
                self.reading, self.checked = reading, True
                self.reading_name = name
                log.debug("GPU decode check: mean |diff| %.3f grey levels (%s)", diff, tried[-1])
                return
        raise GpuDecodeUnavailable(f"nvJPEG's pixels differ from libjpeg-turbo's ({self.plan.level.colourspace} "
                                   f"JPEG; mean |diff| per reading: {'; '.join(tried)})")

    def _index_tensor(self, parts: list[np.ndarray]):
        """Small int64 arrays -> one device tensor per array, in one asynchronous copy (pinned
        staging on CUDA: no host<->device synchronisation per batch)."""
        import torch

        flat = torch.from_numpy(np.concatenate([np.asarray(p, np.int64).ravel() for p in parts]))
        if self.device.type == "cuda":
            flat = flat.pin_memory().to(self.device, non_blocking=True)
        out, pos = [], 0
        for p in parts:
            out.append(flat[pos:pos + np.size(p)])
            pos += np.size(p)
        return out

    def _assemble(self, part, layout, tiles: dict):
        import torch
        import torch.nn.functional as F

        from weakstil.resample import READ_FILTER

        ix, iy, w, h, (tx0, ty0, tx1, ty1), _ = layout
        ntx, nty = tx1 - tx0 + 1, ty1 - ty0 + 1
        dev = self.device
        keys = np.array(sorted(tiles), np.int64)
        rows, cols, oy0, ox0 = self._index_tensor([keys // self.across - ty0, keys % self.across - tx0,
                                                   iy - ty0 * self.th, ix - tx0 * self.tw])
        canvas = torch.full((nty, ntx, 3, self.th, self.tw), 255, dtype=torch.uint8, device=dev)
        if len(keys):
            canvas[rows, cols] = torch.stack([tiles[int(k)] for k in keys])
        canvas = canvas.permute(2, 0, 3, 1, 4).reshape(3, nty * self.th, ntx * self.tw)
        # beyond the level's extent the tiles hold padding: white, as OpenSlide shows it
        vx, vy = self.reader.valid_w - tx0 * self.tw, self.reader.valid_h - ty0 * self.th
        if vx < canvas.shape[2]:
            canvas[:, :, max(vx, 0):] = 255
        if vy < canvas.shape[1]:
            canvas[:, max(vy, 0):, :] = 255
        oy = oy0[:, None] + torch.arange(h, device=dev)
        ox = ox0[:, None] + torch.arange(w, device=dev)
        crops = canvas[:, oy[:, :, None], ox[:, None, :]].permute(1, 0, 2, 3)  # (n, 3, h, w)
        if (h, w) != (self.px, self.px):
            x = crops.float()
            k = min(h, w) // self.px  # as Pillow with reducing_gap 1: whole blocks averaged first (box) ...
            if k >= 2:
                x = F.avg_pool2d(x, k, stride=k, ceil_mode=True)  # the last block partial, as Pillow's reduce
                if tuple(x.shape[-2:]) != (self.px, self.px):
                    # ... then the region's own extent (h / k, not the pooled pixels' ceil) resized (READ_FILTER)
                    x = F.interpolate(x, scale_factor=(self.px * k / h, self.px * k / w), mode=READ_FILTER,
                                      align_corners=False, antialias=True, recompute_scale_factor=False)
            elif (h, w) != (self.px, self.px):
                x = F.interpolate(x, size=(self.px, self.px), mode=READ_FILTER, align_corners=False, antialias=True)
            crops = x.round_().clamp_(0, 255).to(torch.uint8)
        return crops.permute(0, 2, 3, 1)  # (n, px, px, 3) view

    def _prepare(self, fetched):
        """Decode and assemble one fetched batch (on the producer's CUDA stream when on a GPU)."""
        import time

        s, part, layout, streams = fetched
        t0 = time.perf_counter()
        tiles = self._decode(layout[5], streams)
        t1 = time.perf_counter()
        out = self._assemble(part, layout, tiles)
        self._time("decode", t1 - t0)
        self._time("assemble", time.perf_counter() - t1)
        return s, out

    def __iter__(self) -> Iterator[tuple[int, object]]:
        """Batches in order. A producer thread reads, decodes and assembles up to ``prefetch`` batches
        ahead (on its own CUDA stream), so the GPU decodes the next batch while the encoder runs;
        with ``prefetch=0`` all of it happens here, on the consumer's stream."""
        import queue
        import threading
        import time

        import torch

        n_batches = math.ceil(len(self.coords) / self.batch_size)
        if n_batches == 0:
            return
        self._fetched_prev = set()
        self._cache = {}
        if self.prefetch == 0:
            for i in range(n_batches):
                yield self._prepare(self._fetch(i))
            return
        cuda = self.device.type == "cuda"
        side = torch.cuda.Stream(self.device) if cuda else None
        ready: queue.Queue = queue.Queue(maxsize=self.prefetch)
        stop = threading.Event()

        def produce() -> None:
            try:
                with ThreadPoolExecutor(1, thread_name_prefix="weakstil-jpeg-read") as reader:
                    fetched = [reader.submit(self._fetch, i) for i in range(min(2, n_batches))]
                    nxt = len(fetched)
                    while fetched and not stop.is_set():
                        item = fetched.pop(0).result()
                        if nxt < n_batches:
                            fetched.append(reader.submit(self._fetch, nxt))
                            nxt += 1
                        if cuda:
                            with torch.cuda.stream(side):
                                out = self._prepare(item)
                                event = torch.cuda.Event()
                                event.record(side)
                        else:
                            out, event = self._prepare(item), None
                        t0 = time.perf_counter()
                        while not stop.is_set():
                            try:
                                ready.put((out, event, None), timeout=0.2)
                                break
                            except queue.Full:
                                continue
                        self._time("put_wait", time.perf_counter() - t0)
                    for f in fetched:
                        f.cancel()
            except BaseException as exc:  # handed to the consumer
                ready.put((None, None, exc))

        thread = threading.Thread(target=produce, name="weakstil-gpu-decode", daemon=True)
        thread.start()
        try:
            for _ in range(n_batches):
                t0 = time.perf_counter()
                out, event, exc = ready.get()
                self._time("get_wait", time.perf_counter() - t0)
                if exc is not None:
                    raise exc
                s, batch = out
                if event is not None:
                    cur = torch.cuda.current_stream(self.device)
                    cur.wait_event(event)
                    batch.record_stream(cur)  # its memory came from the producer's stream
                yield s, batch
        finally:
            stop.set()
            while thread.is_alive():
                try:
                    ready.get(timeout=0.05)
                except queue.Empty:
                    pass
                thread.join(timeout=0.05)
