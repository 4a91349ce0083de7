"""nvJPEG called directly (ctypes) for the one thing torchvision cannot ask of it: the stored components.

torchvision's CUDA ``decode_jpeg`` always asks nvJPEG for RGB output (its ``UNCHANGED`` mode is
mapped to ``NVJPEG_OUTPUT_RGB``), and nvJPEG then applies the YCbCr->RGB transform to every
three-component stream, Adobe marker or not. For RGB-stored tiles (Aperio SVS) that transform is
wrong and clips (an H&E pink read as YCbCr leaves the 0-255 range), so it cannot be undone. Here the
batched decoder is asked for ``NVJPEG_OUTPUT_UNCHANGED``: the planes as stored, which for
unsubsampled (4:4:4) RGB tiles are R, G and B. The library is the one torchvision already loaded
(its bundled ``libnvjpeg``), found through ``/proc/self/maps``, or one on the library path.
"""

from __future__ import annotations

import ctypes
import glob
import logging
import os
import threading

log = logging.getLogger(__name__)

_BACKEND_DEFAULT, _BACKEND_HARDWARE = 0, 3
_OUTPUT_UNCHANGED = 0
_MAX_COMPONENT = 4


class _Image(ctypes.Structure):  # nvjpegImage_t (pitch is size_t since CUDA 11)
    _fields_ = [("channel", ctypes.c_void_p * _MAX_COMPONENT), ("pitch", ctypes.c_size_t * _MAX_COMPONENT)]


def enabled() -> bool:
    """``WEAKSTIL_NVJPEG_RAW=0`` turns this reading off (RGB-stored slides then decode on the CPU)."""
    return os.environ.get("WEAKSTIL_NVJPEG_RAW", "1").strip() != "0"


class NvjpegUnavailable(RuntimeError):
    """libnvjpeg cannot be found or refused to start."""


def _library_path() -> str:
    """The libnvjpeg this process already mapped (torchvision's), else the first one found nearby."""
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="surrogateescape") as fh:
            for line in fh:
                path = line.rsplit(" ", 1)[-1].strip()
                if "libnvjpeg" in os.path.basename(path):
                    return path
    except OSError:
        pass
    roots = []
    try:
        import torchvision

        roots.append(os.path.join(os.path.dirname(os.path.dirname(torchvision.__file__)), "torchvision.libs"))
    except ImportError:
        pass
    roots += ["/usr/local/cuda/lib64", "/usr/lib/x86_64-linux-gnu"]
    for root in roots:
        found = sorted(glob.glob(os.path.join(root, "libnvjpeg*.so*")))
        if found:
            return found[0]
    raise NvjpegUnavailable("libnvjpeg not found (torchvision's bundled copy or the CUDA library path)")


_DECODERS: dict[str, RawDecoder] = {}
_DECODERS_LOCK = threading.Lock()


def raw_decoder(device) -> RawDecoder:
    """The process's decoder for ``device`` (nvJPEG's handle and state are made once, not per slide)."""
    import torch

    key = str(torch.device(device))
    with _DECODERS_LOCK:
        if key not in _DECODERS:
            _DECODERS[key] = RawDecoder(device)
        return _DECODERS[key]


class RawDecoder:
    """Batched nvJPEG decoding of 4:4:4 three-component streams to their stored planes, on one device
    (one decode at a time: the state is shared; see :func:`raw_decoder`)."""

    def __init__(self, device):
        import torch

        self.device = torch.device(device)
        path = _library_path()
        try:
            lib = ctypes.CDLL(path)
        except OSError as exc:
            raise NvjpegUnavailable(f"cannot load {path}: {exc}") from exc
        c_p = ctypes.c_void_p
        lib.nvjpegCreateEx.argtypes = [ctypes.c_int, c_p, c_p, ctypes.c_uint, ctypes.POINTER(c_p)]
        lib.nvjpegJpegStateCreate.argtypes = [c_p, ctypes.POINTER(c_p)]
        lib.nvjpegDecodeBatchedInitialize.argtypes = [c_p, c_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.nvjpegDecodeBatched.argtypes = [c_p, c_p, ctypes.POINTER(c_p), ctypes.POINTER(ctypes.c_size_t),
                                            ctypes.POINTER(_Image), c_p]
        for fn in ("nvjpegCreateEx", "nvjpegJpegStateCreate", "nvjpegDecodeBatchedInitialize", "nvjpegDecodeBatched"):
            getattr(lib, fn).restype = ctypes.c_int
        self._lib = lib
        self.handle, self.state = c_p(), c_p()
        with torch.cuda.device(self.device):
            status = lib.nvjpegCreateEx(_BACKEND_HARDWARE, None, None, 0, ctypes.byref(self.handle))
            self.backend = "hardware"
            if status != 0:  # no JPEG engine on this GPU (or arch mismatch): the CUDA backend
                status = lib.nvjpegCreateEx(_BACKEND_DEFAULT, None, None, 0, ctypes.byref(self.handle))
                self.backend = "default"
            if status != 0:
                raise NvjpegUnavailable(f"nvjpegCreateEx failed (status {status}) with {path}")
            status = lib.nvjpegJpegStateCreate(self.handle, ctypes.byref(self.state))
            if status != 0:
                raise NvjpegUnavailable(f"nvjpegJpegStateCreate failed (status {status})")
        self.path = path
        self._lock = threading.Lock()
        log.debug("nvJPEG %s backend from %s", self.backend, path)

    def decode(self, streams, height: int, width: int):
        """uint8 ``(n, 3, height, width)`` tensor on the device: the stored planes of each stream
        (CPU uint8 tensors of complete JPEG streams, all ``height`` x ``width``, unsubsampled)."""
        import torch

        n = len(streams)
        out = torch.empty((n, 3, height, width), dtype=torch.uint8, device=self.device)
        if n == 0:
            return out
        streams = [s.contiguous() for s in streams]  # kept alive until the decode returns
        data = (ctypes.c_void_p * n)(*[s.data_ptr() for s in streams])
        lengths = (ctypes.c_size_t * n)(*[s.numel() for s in streams])
        images = (_Image * n)()
        for i in range(n):
            for c in range(3):
                images[i].channel[c] = out[i, c].data_ptr()
                images[i].pitch[c] = width
        stream = torch.cuda.current_stream(self.device)
        # the hardware decoder writes outside stream order (see gpu.decode_jpeg_fn): nothing queued may
        # still use memory it writes, and what follows may read its output only once it is done
        stream.synchronize()
        with self._lock, torch.cuda.device(self.device):
            status = self._lib.nvjpegDecodeBatchedInitialize(self.handle, self.state, n, 1, _OUTPUT_UNCHANGED)
            if status == 0:
                status = self._lib.nvjpegDecodeBatched(self.handle, self.state, data, lengths, images,
                                                       ctypes.c_void_p(stream.cuda_stream))
        if status != 0:
            raise RuntimeError(f"nvjpegDecodeBatched failed (status {status}, {self.backend} backend)")
        stream.synchronize()
        return out
