"""Batched JPEG-tile decoding on the GPU (nvJPEG through ``torchvision.io.decode_jpeg``).

For a batch of output tiles: find the JPEG tiles their regions cover, read the compressed bytes
(a background thread reads the next batch meanwhile), complete them with the level's JPEGTables,
decode them all in one ``decode_jpeg(list, device=...)`` call, lay them out on one canvas,
cut every tile's region out with a single gather and resize the regions together (bilinear,
antialiased: Pillow's filter, as the CPU path) to uint8 ``(B, px, px, 3)`` on the device, which
the encoder's transform normalises as it does CPU batches. The same code runs on the CPU with
torchvision's libjpeg decoder (``device="cpu"``): that is how the tests check it.

Differences from the CPU path: no DCT-domain downscaling (nvJPEG decodes full tiles; the resize
does the reduction), nvJPEG's IDCT and chroma upsampling (not bit-exact with libjpeg-turbo), and
a region that starts between level pixels (levels > 0 only) starts at the pixel before.

Colour: YCbCr streams are decoded to RGB; RGB-colourspace streams (Aperio) are decoded with
``ImageReadMode.UNCHANGED``, which hands back the stored components without a colour transform
(nvJPEG) or, with the Adobe marker the stream gets, reads them as RGB (libjpeg). nvJPEG can only
do that for unsubsampled (4:4:4) RGB, which is what Aperio writes; anything else stays on the CPU.
On CUDA the first tiles are checked against libjpeg-turbo; a mismatch falls back to the CPU path.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import numpy as np

from weakstil.decode.jpeg_tiles import JpegPlan, JpegTileReader, sof_info, with_rgb_component_ids

log = logging.getLogger(__name__)

#: Mean absolute difference (grey levels) above which nvJPEG's pixels are taken as wrong: IDCT and
#: chroma-upsampling differences stay near 1, a colour-space mistake gives tens.
CHECK_MAX_MEAN_DIFF = 6.0


def decode_jpeg_fn():
    """``torchvision.io.decode_jpeg`` (torchvision >= 0.29 warns that its image I/O moves to TorchCodec;
    the function is still there and is what the GPU machines' torchvision has)."""
    import warnings

    from torchvision.io import ImageReadMode, decode_jpeg

    def decode(data, **kwargs):
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
    """Iterate ``(start, uint8 (b, px, px, 3) tensor on device)`` for ``coords`` of one slide."""

    def __init__(self, plan: JpegPlan, coords: np.ndarray, tile_px: int, batch_size: int, device,
                 check: bool | None = None, prefetch: int = 2):
        import torch

        self.plan = full_scale(plan)
        self.coords = np.asarray(coords, np.int64)
        self.px = int(tile_px)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)
        self.check = self.device.type == "cuda" if check is None else check
        self.prefetch = max(1, prefetch)
        self.reader = JpegTileReader(self.plan.level, 1, self.plan.l0_per_decoded, self.plan.l0_per_out)
        lv = self.plan.level
        self.tw, self.th, self.across, self.down = lv.tile_w, lv.tile_h, lv.tiles_across, lv.tiles_down
        self._cache: dict[int, object] = {}  # tile index -> decoded (3, th, tw) tensor, previous batch
        self.tiles_decoded = 0
        self.checked = False
        self._decode_jpeg, ImageReadMode = decode_jpeg_fn()
        self._modes = ImageReadMode
        self.mode = ImageReadMode.UNCHANGED if lv.colourspace == "rgb" else ImageReadMode.RGB
        self.undo_ycc = False  # nvJPEG applied a YCbCr->RGB transform to RGB-stored components
        self.rgb_ids = False  # components renamed 'R','G','B' so the decoder reads them as RGB

    def close(self) -> None:
        self.reader.close()
        self._cache.clear()

    # geometry (host) -------------------------------------------------------------
    def _layout(self, coords: np.ndarray):
        """Regions of the batch, the tile-aligned canvas covering them, the tiles to decode."""
        regions = [self.reader.region_of(int(x), int(y), self.px) for x, y in coords]
        w, h = regions[0].w, regions[0].h
        ix = np.array([r.ix for r in regions], np.int64)
        iy = np.array([r.iy for r in regions], np.int64)
        tx0, ty0 = int(ix.min()) // self.tw, int(iy.min()) // self.th
        tx1, ty1 = (int(ix.max()) + w - 1) // self.tw, (int(iy.max()) + h - 1) // self.th
        vw, vh = self.reader.valid_w, self.reader.valid_h
        needed: set[int] = set()
        for x0, y0 in zip(ix, iy):
            x1, y1 = min(x0 + w, vw), min(y0 + h, vh)
            if x1 <= max(x0, 0) or y1 <= max(y0, 0):
                continue
            for ty in range(max(y0, 0) // self.th, (y1 - 1) // self.th + 1):
                for tx in range(max(x0, 0) // self.tw, (x1 - 1) // self.tw + 1):
                    needed.add(ty * self.across + tx)
        return ix, iy, w, h, (tx0, ty0, tx1, ty1), sorted(needed)

    def _fetch(self, i: int):
        """Host work for batch ``i``: layout and the compressed streams not decoded last batch."""
        import torch

        s = i * self.batch_size
        part = self.coords[s:s + self.batch_size]
        layout = self._layout(part)
        streams = {}
        for idx in layout[5]:
            data = self.reader.stream(idx)
            if data and self.rgb_ids:
                data = with_rgb_component_ids(data)
            if data:
                streams[idx] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return s, part, layout, streams

    # device work -----------------------------------------------------------------
    def _decode(self, streams: dict) -> dict:
        decode_jpeg = self._decode_jpeg
        todo = [k for k in streams if k not in self._cache]
        out = {k: self._cache[k] for k in streams if k in self._cache}
        if todo and self.check and not self.checked:
            self._choose_colour(streams[todo[0]], todo[0])
        if todo:
            decoded = decode_jpeg([streams[k] for k in todo], mode=self.mode, device=self.device)
            if self.undo_ycc:
                decoded = [_rgb_to_ycc(t) for t in decoded]
            for k, t in zip(todo, decoded):
                if tuple(t.shape) != (3, self.th, self.tw):
                    raise GpuDecodeUnavailable(f"JPEG tile {k} decoded to shape {tuple(t.shape)}, expected "
                                               f"(3, {self.th}, {self.tw})")
                out[k] = t
            self.tiles_decoded += len(todo)
        self._cache = out
        return out

    def _choose_colour(self, stream, idx: int) -> None:
        """Check the first tile against libjpeg-turbo and settle how to read the colours.

        Some nvJPEG builds apply the YCbCr->RGB transform to RGB-stored (Aperio) components in
        every mode; the exact inverse transform on the device recovers the stored components
        (within rounding), so that reading is tried when the plain one does not match."""
        ref = JpegTileReader(self.plan.level, 1, self.plan.l0_per_decoded, self.plan.l0_per_out)
        try:
            want = ref.decoded_tile(idx).astype(np.float32)
        finally:
            ref.close()
        import torch

        rgb = self.plan.level.colourspace == "rgb"
        modes = [self.mode] + ([self._modes.RGB] if rgb else [])
        renamed = torch.frombuffer(bytearray(with_rgb_component_ids(bytes(stream.numpy()))), dtype=torch.uint8)
        tried = []
        candidates = [(ids, mode, undo) for ids in ([False, True] if rgb else [False]) for mode in modes
                      for undo in ([False, True] if rgb and not ids else [False])]
        for ids, mode, undo in candidates:
            data = renamed if ids else stream
            try:
                t = self._decode_jpeg([data], mode=mode, device=self.device)[0]
            except RuntimeError as exc:  # a mode this decoder refuses for the stream
                tried.append(f"{mode.name}: {exc}")
                continue
            if undo:
                t = _rgb_to_ycc(t)
            got = t.permute(1, 2, 0).cpu().numpy().astype(np.float32)
            diff = float(np.abs(got - want).mean()) if got.shape == want.shape else float("inf")
            tried.append(f"{mode.name}{' + inverse YCbCr' if undo else ''}{' + RGB ids' if ids else ''}: "
                         f"{diff:.1f}")
            if diff <= CHECK_MAX_MEAN_DIFF:
                self.mode, self.undo_ycc, self.rgb_ids, self.checked = mode, undo, ids, True
                log.debug("GPU decode check: mean |diff| %.3f grey levels (%s)", diff, tried[-1])
                return
        raise GpuDecodeUnavailable(f"nvJPEG's pixels differ from libjpeg-turbo's ({self.plan.level.colourspace} "
                                   f"JPEG; mean |diff| per reading: {'; '.join(tried)})")

    def _assemble(self, part, layout, tiles: dict):
        import torch
        import torch.nn.functional as F

        ix, iy, w, h, (tx0, ty0, tx1, ty1), _ = layout
        ntx, nty = tx1 - tx0 + 1, ty1 - ty0 + 1
        dev = self.device
        canvas = torch.full((nty, ntx, 3, self.th, self.tw), 255, dtype=torch.uint8, device=dev)
        if tiles:
            keys = sorted(tiles)
            stack = torch.stack([tiles[k] for k in keys])
            kt = torch.tensor(keys, dtype=torch.int64)
            canvas[(kt // self.across - ty0).to(dev), (kt % self.across - tx0).to(dev)] = stack
        canvas = canvas.permute(2, 0, 3, 1, 4).reshape(3, nty * self.th, ntx * self.tw)
        # beyond the level's extent the tiles hold padding: white, as OpenSlide shows it
        vx, vy = self.reader.valid_w - tx0 * self.tw, self.reader.valid_h - ty0 * self.th
        if vx < canvas.shape[2]:
            canvas[:, :, max(vx, 0):] = 255
        if vy < canvas.shape[1]:
            canvas[:, max(vy, 0):, :] = 255
        oy = torch.as_tensor(iy - ty0 * self.th, device=dev)[:, None] + torch.arange(h, device=dev)
        ox = torch.as_tensor(ix - tx0 * self.tw, device=dev)[:, None] + torch.arange(w, device=dev)
        crops = canvas[:, oy[:, :, None], ox[:, None, :]].permute(1, 0, 2, 3)  # (n, 3, h, w)
        if (h, w) != (self.px, self.px):
            x = F.interpolate(crops.float(), size=(self.px, self.px), mode="bilinear", align_corners=False,
                              antialias=True)
            crops = x.round_().clamp_(0, 255).to(torch.uint8)
        return crops.permute(0, 2, 3, 1)  # (n, px, px, 3) view, channels-last storage

    def _prepare(self, fetched):
        """Decode and assemble one fetched batch (on the producer's CUDA stream when on a GPU)."""
        s, part, layout, streams = fetched
        return s, self._assemble(part, layout, self._decode(streams))

    def __iter__(self) -> Iterator[tuple[int, object]]:
        """Batches in order. A producer thread reads, decodes and assembles up to ``prefetch`` batches
        ahead (on its own CUDA stream), so the GPU decodes the next batch while the encoder runs."""
        import queue
        import threading

        import torch

        n_batches = math.ceil(len(self.coords) / self.batch_size)
        if n_batches == 0:
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
                        while not stop.is_set():
                            try:
                                ready.put((out, event, None), timeout=0.2)
                                break
                            except queue.Full:
                                continue
                    for f in fetched:
                        f.cancel()
            except BaseException as exc:  # handed to the consumer
                ready.put((None, None, exc))

        thread = threading.Thread(target=produce, name="weakstil-gpu-decode", daemon=True)
        thread.start()
        try:
            for _ in range(n_batches):
                out, event, exc = ready.get()
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
