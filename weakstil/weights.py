"""Strict weight loading shared by every model: a checkpoint must match key for key."""

from __future__ import annotations

from typing import Any


def state_dict_diff(expected: dict[str, Any], state: dict[str, Any]) -> tuple[list[str], list[str], list[str]]:
    """Sorted (missing, unexpected, wrong-shape) keys of ``state`` against ``expected``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shape = sorted(k for k in set(expected) & set(state) if tuple(expected[k].shape) != tuple(state[k].shape))
    return missing, unexpected, shape


def kind_mismatches(expected: dict[str, Any], state: dict[str, Any]) -> list[str]:
    """Sorted keys where ``expected`` holds floating-point values and ``state`` does not (integers,
    booleans, complex numbers): ``load_state_dict`` would cast them silently, a quantised or damaged
    checkpoint giving other features. Another float precision (fp16, bf16) is the same kind."""
    return sorted(k for k in set(expected) & set(state) if expected[k].is_floating_point()
                  and (not state[k].is_floating_point() or state[k].is_complex()))


def resampled_keys(raw: dict[str, Any], filtered: dict[str, Any]) -> list[str]:
    """Keys whose tensor timm's checkpoint filter resampled to the model's geometry (a position
    embedding of another grid, patch kernels of another size): a new tensor of another size under
    the checkpoint's own key name. Renamed, reshaped or sliced tensors (layout conversions of
    official checkpoints: old Swin stage order, DINOv2's position embedding without its class
    token) are views of the checkpoint's tensors and are left to the strict comparison."""
    own_storage = {t.untyped_storage().data_ptr() for t in raw.values()}
    return sorted(k for k, v in filtered.items() if k in raw and v.numel() != raw[k].numel()
                  and v.untyped_storage().data_ptr() not in own_storage)


def nesting_hint(own: dict[str, Any], state: dict[str, Any]) -> tuple[str, str] | tuple[None, None]:
    """(reason, fix) when the file holds every key of the network under a prefix (a training checkpoint:
    ``encoder.``, ``backbone.``, DINO's ``teacher.backbone.``): it was told to pass other weights. The
    prefix is named, never taken off: which sub-network (student or teacher) is the encoder is the user's call."""
    anchor = next(iter(own), None)
    found = []
    for key in state:
        if anchor is not None and key.endswith("." + anchor):
            prefix = key[: len(key) - len(anchor)]
            if all(prefix + k in state for k in own):
                shaped = sum(tuple(state[prefix + k].shape) == tuple(v.shape) for k, v in own.items())
                found.append((-shaped, prefix))
    if not found:
        return None, None
    first, *others = [p for _, p in sorted(found)]
    also = f" (also {', '.join(map(repr, others[:2]))})" if others else ""
    return (f"every key of the network is in the file under the prefix {first!r}{also}",
            f"save that sub-network's weights alone: {{k.removeprefix({first!r}): v for k, v in state.items() "
            f"if k.startswith({first!r})}} (WeakSTIL takes no prefix off but DataParallel's module.)")


def training_checkpoint_fix(state: Any, path: Any) -> str | None:
    """The line that saves a training checkpoint's weights alone (Lightning's ``state_dict`` beside ``epoch``,
    ``optimizer_states``...; its keys under the LightningModule's attribute, ``model.``): it was told only to save
    ``model.state_dict()``, though the weights were in the file. Nothing is taken off here: a module may hold
    several networks, and which one is the encoder is the user's call (the strict load names a wrong one)."""
    import torch

    inner = state.get("state_dict") if isinstance(state, dict) else None
    if not isinstance(inner, dict) or not inner or not all(isinstance(v, torch.Tensor) for v in inner.values()):
        return None
    heads = {k.split(".", 1)[0] for k in inner if "." in k}
    prefix = f"{heads.pop()}." if len(heads) == 1 and all("." in k for k in inner) else ""
    keep = f"{{k.removeprefix({prefix!r}): v for k, v in sd.items()}}" if prefix else "sd"
    return (f"its weights are under 'state_dict'{f' with the prefix {prefix!r}' if prefix else ''}: save them alone, "
            f"sd = torch.load({str(path)!r}, weights_only=True)['state_dict']; torch.save({keep}, 'encoder.pth'), "
            "and pass --weights encoder.pth")


def drop_unused_head(model: Any, own: dict[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    """``state`` without its classifier head when that head is all that does not match: the card builds the
    timm network with ``num_classes: 0`` (features, no logits), so a fine-tuned classifier's checkpoint
    (resnet's ``fc.*``, a ViT's ``head.*``, named by timm's ``pretrained_cfg['classifier']``) holds the encoder
    whole; timm's own ``pretrained=True, num_classes=0`` drops it too. It was refused as '2 unexpected
    key(s) (fc.bias, fc.weight). Fix: pass the weights made for this encoder card'."""
    import logging

    names = (getattr(model, "pretrained_cfg", None) or {}).get("classifier") or ()
    names = (names,) if isinstance(names, str) else tuple(names)
    missing, unexpected, _ = state_dict_diff(own, state)
    head = [k for k in unexpected if k.startswith(tuple(f"{n}." for n in names))]
    if not head or missing or len(head) < len(unexpected):
        return state
    logging.getLogger(__name__).info("the weights' classifier head (%s) is not part of the encoder: left out",
                                     ", ".join(head[:4]))
    return {k: v for k, v in state.items() if k not in head}
