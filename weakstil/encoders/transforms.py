"""Tile transforms in torch, on whole batches and on the encoder's device.

* :class:`TileTransform`: uint8 ``(B, H, W, 3)`` tiles -> normalised float ``(B, 3, S, S)``
  (resized to the encoder's input size, channels-last memory layout).
* :func:`hed_jitter`: H&E-aware colour augmentation (Tellez et al. 2018): convert RGB to
  haematoxylin / eosin / DAB optical densities with scikit-image's matrix, scale and shift each
  stain per image, convert back. Defaults: scale ±10 %, shift ±0.01 (scikit-image's stain
  units, where tissue sits around 0.02-0.15, so a larger shift tints the glass).
* :class:`SSLAugment`: the two-view augmentation of ``weakstil pretrain`` (random resized crops at
  about the native magnification, flips and 90° rotations, HED jitter, brightness/contrast,
  Gaussian blur, occasional greyscale), all vectorised over the batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

#: scikit-image's ``rgb_from_hed`` (Ruifrok & Johnston): rows are the H, E, DAB colour vectors.
RGB_FROM_HED = np.array([[0.65, 0.70, 0.29], [0.07, 0.99, 0.11], [0.27, 0.57, 0.78]])
HED_FROM_RGB = np.linalg.inv(RGB_FROM_HED)
#: scikit-image scales optical density by -log(1e-6) so stain values are about 0-1.
_LOG_ADJUST = -math.log(1e-6)


def as_uint8_batch(tiles: np.ndarray | torch.Tensor) -> torch.Tensor:
    """``(B, H, W, 3)`` uint8 tensor from a numpy array or tensor (a single tile gets B = 1)."""
    t = torch.from_numpy(np.ascontiguousarray(tiles)) if isinstance(tiles, np.ndarray) else tiles
    if t.ndim == 3:
        t = t[None]
    if t.ndim != 4 or t.shape[-1] != 3 or t.dtype != torch.uint8:
        raise ValueError(f"expected uint8 tiles of shape (B, H, W, 3), got {tuple(t.shape)} {t.dtype}")
    return t


class TileTransform:
    """uint8 NHWC tiles -> normalised float NCHW at ``input_px``, on the tiles' device."""

    def __init__(self, input_px: int, mean: Sequence[float], std: Sequence[float]):
        self.input_px = int(input_px)
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self._cache: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def _stats(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        if device not in self._cache:
            # x / 255 - mean) / std  ==  x * scale - shift
            std = torch.tensor(self.std, dtype=torch.float32, device=device).view(1, 3, 1, 1)
            mean = torch.tensor(self.mean, dtype=torch.float32, device=device).view(1, 3, 1, 1)
            self._cache[device] = (1.0 / (255.0 * std), mean / std)
        return self._cache[device]

    def __call__(self, tiles: np.ndarray | torch.Tensor) -> torch.Tensor:
        x = as_uint8_batch(tiles)
        # permute keeps NHWC storage: the result is a channels-last NCHW view, no copy yet
        x = x.permute(0, 3, 1, 2).float()
        if x.shape[-2:] != (self.input_px, self.input_px):
            x = F.interpolate(x, size=(self.input_px, self.input_px), mode="bilinear", align_corners=False,
                              antialias=True)
        scale, shift = self._stats(x.device)
        x = torch.addcmul(-shift, x, scale)  # x * scale - shift, one pass
        return x.contiguous(memory_format=torch.channels_last)

    def describe(self) -> dict[str, object]:
        return {"input_px": self.input_px, "mean": list(self.mean), "std": list(self.std),
                "resize": "bilinear, antialiased, when the tile size differs"}


def rgb_to_hed(x: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 1] ``(B, 3, H, W)`` -> stain densities as scikit-image's ``rgb2hed`` (unclipped)."""
    m = torch.as_tensor(HED_FROM_RGB, dtype=x.dtype, device=x.device)
    od = -torch.log(x.clamp_min(1e-6)) / _LOG_ADJUST
    return torch.einsum("bchw,cd->bdhw", od, m)


def hed_to_rgb(s: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`rgb_to_hed`, clipped to [0, 1]."""
    m = torch.as_tensor(RGB_FROM_HED, dtype=s.dtype, device=s.device)
    return torch.exp(-torch.einsum("bdhw,dc->bchw", s, m) * _LOG_ADJUST).clamp_(0.0, 1.0)


def hed_jitter(x: torch.Tensor, alpha: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """Scale (``alpha``) and shift (``beta``) each stain, per image: both ``(B, 3)``."""
    s = rgb_to_hed(x)
    s = s * alpha[:, :, None, None].to(s) + beta[:, :, None, None].to(s)
    return hed_to_rgb(s)


def _gaussian_kernels(sigma: torch.Tensor, radius: int) -> torch.Tensor:
    """``(B, 2r+1)`` normalised 1-D Gaussian kernels."""
    t = torch.arange(-radius, radius + 1, dtype=sigma.dtype, device=sigma.device)
    k = torch.exp(-0.5 * (t[None, :] / sigma[:, None].clamp_min(1e-3)) ** 2)
    return k / k.sum(dim=1, keepdim=True)


def gaussian_blur(x: torch.Tensor, sigma: torch.Tensor, radius: int = 4) -> torch.Tensor:
    """Per-image separable Gaussian blur of ``(B, C, H, W)`` with ``sigma`` ``(B,)`` pixels."""
    b, c, h, w = x.shape
    k = _gaussian_kernels(sigma, radius).repeat_interleave(c, dim=0)  # (B*C, K)
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="reflect")
    y = F.conv2d(y, k[:, None, None, :], groups=b * c)
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


class SSLAugment:
    """Random view of every tile in a batch, for contrastive pretraining.

    ``crop_px`` is the output side. Crops cover ``crop_px * zoom`` source pixels (zoom drawn
    log-uniformly in ``zoom``), so views stay near the tile's native magnification; on tiles
    smaller than that the crop is the whole tile.
    """

    def __init__(self, crop_px: int, mean: Sequence[float], std: Sequence[float], *,
                 zoom: tuple[float, float] = (0.8, 1.25), hed_alpha: float = 0.1, hed_beta: float = 0.01,
                 brightness: float = 0.15, contrast: float = 0.2, color_p: float = 0.8,
                 blur_p: float = 0.5, blur_sigma: tuple[float, float] = (0.1, 1.5), grey_p: float = 0.1,
                 sharpen_p: float = 0.3, sharpen_amount: float = 1.0, noise_p: float = 0.5, noise_sigma: float = 0.04):
        self.crop_px = int(crop_px)
        # scanner optics beyond focus: unsharp-mask sharpening (on tiles not blurred; scanners sharpen
        # to their own taste) and sensor noise. Without them SimCLR may tell views apart by the
        # scanner's grain and edges, which differ between labs (README: the unseen look, +0.03 R²)
        self.sharpen_p = sharpen_p
        self.sharpen_amount = sharpen_amount
        self.noise_p = noise_p
        self.noise_sigma = noise_sigma
        self.zoom = zoom
        self.hed_alpha = hed_alpha
        self.hed_beta = hed_beta
        self.brightness = brightness
        self.contrast = contrast
        self.color_p = color_p
        self.blur_p = blur_p
        self.blur_sigma = blur_sigma
        self.grey_p = grey_p
        self.norm = TileTransform(crop_px, mean, std)

    def settings(self) -> dict[str, object]:
        return {"crop_px": self.crop_px, "zoom": list(self.zoom), "hed_alpha": self.hed_alpha, "hed_beta": self.hed_beta,
                "brightness": self.brightness, "contrast": self.contrast, "color_p": self.color_p,
                "blur_p": self.blur_p, "blur_sigma": list(self.blur_sigma), "grey_p": self.grey_p,
                "sharpen_p": self.sharpen_p, "sharpen_amount": self.sharpen_amount, "noise_p": self.noise_p,
                "noise_sigma": self.noise_sigma, "flips_rot90": True}

    def _geometry(self, b: int, tile_px: int, g: torch.Generator) -> torch.Tensor:
        """``(B, 2, 3)`` affine matrices for ``affine_grid``: crop, flip, 90° rotation."""
        u = torch.rand(b, 6, generator=g, dtype=torch.float64)
        lo, hi = math.log(self.zoom[0]), math.log(self.zoom[1])
        side = self.crop_px * torch.exp(lo + (hi - lo) * u[:, 0])  # source pixels
        aspect = torch.exp(math.log(4 / 3) * (2 * u[:, 1] - 1))
        w = (side * aspect.sqrt() / tile_px).clamp(max=1.0)  # fraction of the tile
        h = (side / aspect.sqrt() / tile_px).clamp(max=1.0)
        cx = (2 * u[:, 2] - 1) * (1 - w)
        cy = (2 * u[:, 3] - 1) * (1 - h)
        k = torch.floor(u[:, 4] * 4)  # quarter turns
        flip = torch.where(u[:, 5] < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(k * math.pi / 2).round(), torch.sin(k * math.pi / 2).round()
        theta = torch.zeros(b, 2, 3, dtype=torch.float64)
        # output coords -> flip x -> rotate -> scale to the crop -> translate
        theta[:, 0, 0] = w * cos * flip
        theta[:, 0, 1] = -w * sin
        theta[:, 1, 0] = h * sin * flip
        theta[:, 1, 1] = h * cos
        theta[:, 0, 2] = cx
        theta[:, 1, 2] = cy
        return theta.float()

    def __call__(self, tiles: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Augmented, normalised ``(B, 3, crop_px, crop_px)`` views of uint8 NHWC ``tiles``.

        Random numbers come from the CPU generator ``g`` only, so a run is reproducible on any
        device and resumable from a step number.
        """
        x = as_uint8_batch(tiles)
        b, tile_px = x.shape[0], x.shape[1]
        dev = x.device
        x = x.permute(0, 3, 1, 2).float().div_(255.0)
        theta = self._geometry(b, tile_px, g).to(dev)
        grid = F.affine_grid(theta, [b, 3, self.crop_px, self.crop_px], align_corners=False)
        x = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)

        r = torch.rand(b, 12, generator=g)
        colour = (r[:, 0] < self.color_p).float()[:, None]
        alpha = 1 + colour * self.hed_alpha * (2 * r[:, 1:4] - 1)
        beta = colour * self.hed_beta * (2 * r[:, 4:7] - 1)
        x = hed_jitter(x, alpha.to(dev), beta.to(dev))
        bright = (1 + colour[:, 0] * self.brightness * (2 * r[:, 7] - 1)).to(dev)
        contr = (1 + colour[:, 0] * self.contrast * (2 * r[:, 8] - 1)).to(dev)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = ((x - mean) * contr[:, None, None, None] + mean) * bright[:, None, None, None]
        x = x.clamp_(0.0, 1.0)
        grey = (r[:, 9] < self.grey_p).to(dev)
        if bool(grey.any()):
            lum = (x * torch.tensor([0.299, 0.587, 0.114], device=dev).view(1, 3, 1, 1)).sum(1, keepdim=True)
            x = torch.where(grey[:, None, None, None], lum.expand_as(x), x)
        blur = r[:, 10] < self.blur_p
        if bool(blur.any()):
            lo, hi = self.blur_sigma
            sigma = (lo + (hi - lo) * r[:, 11]).to(dev)
            x = torch.where(blur.to(dev)[:, None, None, None], gaussian_blur(x, sigma), x)
        if self.sharpen_p > 0 or self.noise_p > 0:
            x = self._optics(x, blur, g)
        # back to the encoder's normalisation (the same as at embedding time)
        scale, shift = self.norm._stats(dev)
        x = x * (scale * 255.0) - shift
        return x.contiguous(memory_format=torch.channels_last)

    def _optics(self, x: torch.Tensor, blurred: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Unsharp-mask sharpening of tiles that were not blurred, then Gaussian sensor noise."""
        b, dev = x.shape[0], x.device
        r = torch.rand(b, 4, generator=g)
        sharpen = ((r[:, 0] < self.sharpen_p) & ~blurred).to(dev)
        if bool(sharpen.any()):
            amount = (self.sharpen_amount * r[:, 1]).to(dev)[:, None, None, None]
            soft = gaussian_blur(x, torch.full((b,), 1.0, device=dev))
            x = torch.where(sharpen[:, None, None, None], x + amount * (x - soft), x)
        noise = r[:, 2] < self.noise_p
        if bool(noise.any()):
            sd = (self.noise_sigma * r[:, 3] * noise.float()).to(dev)[:, None, None, None]
            x = x + torch.randn(x.shape, generator=g).to(dev) * sd  # CPU generator: same draws on any device
        return x.clamp_(0.0, 1.0)
