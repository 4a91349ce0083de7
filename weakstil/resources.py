"""Memory a run will need, checked against what the machine has before the run starts.

``pretrain --batch-size B --crop-px C`` holds two augmented views of B crops of C x C pixels and
every activation of the network on them for the backward pass; ``embed`` holds a ring of decoded
tile batches and one forward pass. Both grow with batch x pixels, so a large value of either
option (a typo, or a crop meant in µm) can ask for tens of GB and set off the machine's
out-of-memory killer. :func:`check_memory` refuses such a run with one line: the estimate, the
memory available and the fix.

The network's share is measured, not guessed: one forward pass at a small size with hooks on
every leaf module gives its activation bytes per input pixel, which scale with the pixel count
for convolutional networks (for ViTs the input is resized to the card's size anyway).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from weakstil import settings
from weakstil.errors import UsageError, WeakSTILError, short_reason
from weakstil.memory import _cgroup_limit, available_memory  # noqa: F401 (imported from here too)

log = logging.getLogger(__name__)

GB = 1024**3
#: Side of the probe's input (px): small, but large enough for every card's downsampling.
PROBE_PX = 64


@dataclass(frozen=True)
class ActivationCost:
    """Activation bytes per input pixel of a network in float32: all leaf modules together
    (what training keeps for the backward pass) and the largest one (inference's peak)."""

    total_per_px: float
    largest_per_px: float


class InputSizeError(WeakSTILError):
    """The network does not run on inputs of the probed size (a ViT's fixed position grid, a Swin's
    windows); ``px`` is that size and ``reason`` the network's own words."""

    def __init__(self, message: str, *, px: int, reason: str, path: Any = None, fix: str | None = None) -> None:
        super().__init__(message, path=path, fix=fix)
        self.px, self.reason = px, reason


def activation_cost(model: Any, px: int = PROBE_PX, fallback_px: int | None = None, *,
                    card: Any = None) -> ActivationCost:
    """Measure :class:`ActivationCost` with one forward pass of a ``px`` input (no grad); networks
    that only take their own input size (ViTs) are measured at ``fallback_px``. A network that runs
    on neither raises :class:`InputSizeError`: with ``card`` (an encoder card whose ``input_px`` was
    probed), one naming the card and its fix."""
    if card is not None:
        _check_patch_grid(model, card)
    try:
        return _activation_cost(model, px)
    except Exception as exc:  # noqa: BLE001 - e.g. a ViT's fixed position embedding
        last, error = px, exc
        if fallback_px is not None and fallback_px != px:
            try:
                return _activation_cost(model, fallback_px)
            except Exception as exc2:  # noqa: BLE001
                last, error = fallback_px, exc2
    reason = short_reason(error)
    if card is not None and last == card.input_px:
        from weakstil.encoders.factory import _where

        raise InputSizeError(f"encoder '{card.name}' ({card.model}) does not run on its card's {last} px input "
                             f"({reason})", px=last, reason=reason, path=_where(card),
                             fix="fix input_px or model_kwargs in the card (a timm ViT takes other sizes with "
                                 "model_kwargs dynamic_img_size: true)") from None
    raise InputSizeError(f"the network does not run on {last} px inputs ({reason})", px=last, reason=reason) \
        from None


def patch_px(model: Any) -> int | None:
    """The patch side of a ViT that does not pad its input to whole patches; None for other networks."""
    embed = getattr(model, "patch_embed", None)
    patch = getattr(embed, "patch_size", None)
    if not isinstance(patch, (tuple, list)) or not patch or getattr(embed, "dynamic_img_pad", False):
        return None
    return int(patch[-1]) if int(patch[-1]) > 1 else None


def _check_patch_grid(model: Any, card: Any) -> None:
    """Refuse a ViT whose patch does not divide its card's input: its patch embedding (a strided
    convolution) dropped the last rows and columns of every tile without a word (vit_tiny_patch16 at
    ``img_size: 200``: 8 px of 200), and with ``dynamic_img_size`` the fix named was that very setting."""
    embed = getattr(model, "patch_embed", None)
    step, px = patch_px(model), card.input_px
    fixed = getattr(embed, "img_size", None) if getattr(embed, "strict_img_size", False) else None
    if step and px % step and (fixed is None or tuple(fixed)[-1] == px):  # another fixed size: the probe says it
        from weakstil.encoders.factory import _where

        near = sorted({max(step, px - px % step), px - px % step + step})
        raise InputSizeError(f"encoder '{card.name}' ({card.model}) cuts its card's {px} px input into {step} px "
                             f"patches, which do not divide it: the last {px % step} px of every tile would be left "
                             "out", px=px, reason=f"{px} px is not a multiple of the {step} px patch",
                             path=_where(card), fix=f"set input_px to a multiple of {step} in the card ("
                             f"{' or '.join(map(str, near))}, with model_kwargs img_size the same), or add "
                             "model_kwargs dynamic_img_pad: true to pad the tiles")


def _activation_cost(model: Any, px: int, in_channels: int = 3) -> ActivationCost:
    import torch

    sizes: list[int] = []

    def hook(_module: Any, _inputs: Any, output: Any) -> None:
        for t in output if isinstance(output, (tuple, list)) else (output,):
            if isinstance(t, torch.Tensor):
                sizes.append(t.numel() * 4)

    leaves = [m for m in model.modules() if not any(True for _ in m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    was_training = model.training
    try:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, in_channels, px, px, device=device))
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    pixels = px * px
    return ActivationCost(sum(sizes) / pixels, (max(sizes) if sizes else 0) / pixels)


def check_memory(need: int, device: Any, *, what: str, fix: str) -> None:
    """Refuse (a :class:`UsageError`, exit 2) when ``need`` bytes exceed the share
    ``settings.MEMORY_SHARE`` of the memory available on ``device``."""
    have = available_memory(device)
    log.debug("%s: about %.2f GB needed, %.2f GB available", what, need / GB, have / GB)
    if need > settings.MEMORY_SHARE * have:
        raise UsageError(f"{what} {memory_shortfall(need, have)}", fix=fix)


def memory_shortfall(need: int, have: int) -> str:
    """What a refusal says of ``need`` bytes against ``have`` available: the share a run may take."""
    return (f"needs about {need / GB:.1f} GB of memory, more than the {100 * settings.MEMORY_SHARE:.0f} % of the "
            f"{have / GB:.1f} GB available it may take ({settings.MEMORY_SHARE * have / GB:.1f} GB)")


def pretrain_bytes(cost: ActivationCost, batch: int, crop_px: int, n_tiles: int, tile_px: int,
                   n_params: int) -> int:
    """Pretraining: two views of ``batch`` crops with their activations kept for the backward pass
    (x2 for their gradients), the tile sample (uint8) and the weights with AdamW's moments."""
    views = 2 * batch * crop_px * crop_px
    return int(views * (cost.total_per_px * 2 + 3 * 4 * 2) + n_tiles * tile_px * tile_px * 3 + n_params * 4 * 4)


def decode_ring_slots(batch: int, tile_px: int, workers: int) -> int:
    """Batches held by the decode ring (:mod:`weakstil.decode.workers`): two per worker, within its
    byte cap."""
    from weakstil.decode.workers import RING_MAX_BYTES
    from weakstil.runtime import cpu_count

    slot = max(1, batch * tile_px * tile_px * 3)
    return max(2, min(2 * (workers or cpu_count()) + 1, RING_MAX_BYTES // slot + 1))


def embed_bytes(cost: ActivationCost, batch: int, tile_px: int, input_px: int, buffers: int) -> int:
    """Embedding: ``buffers`` decoded uint8 batches of tiles, the batch as float at the encoder's
    input size, and the largest activation of the forward pass (x3: its input, output and workspace)."""
    return int(buffers * batch * tile_px * tile_px * 3
               + batch * input_px * input_px * (3 * 4 * 2 + cost.largest_per_px * 3))
