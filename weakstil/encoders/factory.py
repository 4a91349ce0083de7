"""Build a tile encoder from its card and load its weights strictly.

Weights come from, in this order: ``weights=`` (a ``.safetensors`` file, a PyTorch state dict read with
``torch.load(weights_only=True)``, or ``"random"`` for a seeded random init), the ``model.safetensors`` beside
a pretrain card, or the card's ``hf-hub:`` repository (the local Hugging Face cache first, then a download
unless ``HF_HUB_OFFLINE=1``). Nothing touches the network at import time. Every key must match: missing or
unexpected keys, or a wrong shape, stop with one :class:`EncoderError` line.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from weakstil.encoders.cards import CARD_FILE, EncoderCard, load_card, weights_path_problem
from weakstil.errors import WeakSTILError, short_reason as _short
from weakstil.runtime import lfs_pointer_note, resolve_device, sha256_bytes, sha256_file  # noqa: F401 (re-exported)
from weakstil.weights_id import file_sha256, sha256_state_dict, sha256_tensors

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

#: File names tried, in order, in a hub repository.
HUB_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
#: Weights file of a ``weakstil pretrain`` output directory.
MODEL_FILE = "model.safetensors"
RANDOM = "random"


class EncoderError(WeakSTILError):
    """The encoder cannot be built or its weights cannot be found or loaded."""


class NoPublishedWeightsError(EncoderError):
    """The card names no weights (no hub id, none beside it) and none were given: scoring then tries the
    seeded random weights a model may have been trained on (decided on this class, not the message's words)."""


def check_encoder_folder(card_dir: str | Path) -> str | None:
    """Raise when an encoder folder's card records its own weights (pretrained) but ``model.safetensors``
    is not beside it (a model folder copied without it), or is not the file the card records (modified or
    damaged). Returns the weights file's sha256 (``None``: no weights file, e.g. a hub card); builds nothing."""
    card_dir = Path(card_dir)
    if not (card_dir / CARD_FILE).is_file():
        return None
    card = load_card(card_dir / CARD_FILE)
    wpath = card_dir / MODEL_FILE
    if not wpath.is_file():
        if card.weights_sha256 and not card.hub_id:
            raise _weights_missing(card, card_dir)
        return None
    sha = file_sha256(wpath)
    _check_against_card(card, wpath, sha)
    return sha


def _check_against_card(card: EncoderCard, wpath: Path, sha: str) -> None:
    if card.weights_sha256 and sha != card.weights_sha256:
        pointer = lfs_pointer_note(wpath)
        said = f"{MODEL_FILE} does not match its card (sha256 {sha[:12]}..., card says {card.weights_sha256[:12]}...)"
        model = wpath.parent.parent  # a model's encoder pretrained anew is refused by its model (hunt 27a)
        fix = "run 'git lfs pull' in its repository, or copy the folder again" if pointer else \
            f"the model's bundled encoder was changed or damaged: copy the whole model folder {model} again" \
            if wpath.parent.name == "encoder" and (model / "model.json").is_file() else \
            "the folder was changed or damaged in a copy: copy it again, or run 'weakstil pretrain' again"
        raise EncoderError(pointer or said, path=wpath, fix=fix)


def _weights_missing(card: EncoderCard, card_dir: Path) -> EncoderError:
    # one other .safetensors beside the card (pretrain's checkpoint aside) is the weights renamed (it was told
    other = sorted(p.name for p in card_dir.glob("*.safetensors")  # to copy the whole folder again)
                   if p.name not in (MODEL_FILE, "checkpoint.safetensors"))
    fix = f"rename {other[0]} back to {MODEL_FILE}" if len(other) == 1 else \
        "copy the whole folder (a model folder with its encoder/), or pretrain it again"
    return EncoderError(f"{MODEL_FILE} is missing beside card.yaml (the card records weights "
                        f"{card.weights_sha256[:12]}...)", path=card_dir / MODEL_FILE, fix=fix)


def _where(card: EncoderCard) -> str | None:
    """The card's file for error messages; None for built-in cards (their name says it all)."""
    if not card.path:
        return None
    builtin = Path(card.path).resolve().parent == (Path(__file__).parent / "cards").resolve()
    return None if builtin else card.path


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


@dataclass
class Encoder:
    """A ready-to-run tile encoder: model in eval mode on ``device``, plus its card and transform."""

    card: EncoderCard
    model: Any = field(repr=False)
    device: Any
    weights_sha256: str  # the tensors' hash (weakstil.weights_id): one for .pth and .safetensors
    weights_source: str
    transform: Any = field(repr=False)
    weights_file_sha256: str = ""  # the weights file's own sha256 (the fingerprint before hunt 24); "" for random
    seed: int | None = None
    #: Tiles per encoder call on the CPU (0: the whole batch). A slice whose activations stay in the
    #: CPU caches runs up to twice as fast as a 64-tile batch; the thread planner measures the best
    #: one (:mod:`weakstil.decode.plan`). CPU only (a GPU runs whole batches). Features equal the
    #: whole batch's within float rounding.
    micro_batch: int = 0

    @property
    def name(self) -> str:
        return self.card.name

    @property
    def embed_dim(self) -> int:
        return self.card.embed_dim

    @property
    def input_px(self) -> int:
        return self.card.input_px

    @property
    def precision(self) -> str:
        """What actually runs: the card's precision under CUDA autocast, fp32 elsewhere."""
        return self.card.precision if self.device.type == "cuda" else "fp32"

    def normalisation(self) -> dict[str, object]:
        return {"mean": list(self.card.mean), "std": list(self.card.std), "input_px": self.card.input_px}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised ``(B, 3, S, S)`` on the device -> float32 ``(B, D)`` embeddings."""
        import contextlib

        import torch

        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.precision)
        ctx = torch.autocast(self.device.type, dtype=dtype) if dtype is not None else contextlib.nullcontext()
        with ctx:
            if self.card.pooling == "cls_mean_patch":
                tokens = self.model.forward_features(x)
                prefix = int(getattr(self.model, "num_prefix_tokens", 1))
                out = torch.cat([tokens[:, 0], tokens[:, prefix:].mean(dim=1)], dim=1)
            else:
                out = self.model(x)
        return out.float()

    def run(self, tiles: torch.Tensor) -> torch.Tensor:
        """uint8 ``(B, H, W, 3)`` on the device -> float32 ``(B, D)``: transform and forward, in
        slices of :attr:`micro_batch` tiles on the CPU."""
        import torch

        m = self.micro_batch
        if self.device.type != "cpu" or m <= 0 or len(tiles) <= m:
            return self.forward(self.transform(tiles))
        return torch.cat([self.forward(self.transform(tiles[i:i + m])) for i in range(0, len(tiles), m)])

    def embed(self, tiles: np.ndarray | torch.Tensor) -> np.ndarray:
        """uint8 ``(B, H, W, 3)`` tiles -> float32 ``(B, D)`` numpy embeddings."""
        import torch

        from weakstil.encoders.transforms import as_uint8_batch

        with torch.inference_mode():
            return self.run(as_uint8_batch(tiles).to(self.device, non_blocking=True)).cpu().numpy()


# -- building -------------------------------------------------------------------------
def build_model(card: EncoderCard) -> torch.nn.Module:
    """The card's network with random weights (CPU, eval mode not yet set)."""
    from weakstil.encoders.layers import WEAKSTIL_MODELS, resolve_kwargs

    try:
        kwargs = resolve_kwargs(card.model_kwargs)
    except KeyError as exc:
        raise EncoderError(f"encoder card '{card.name}': {exc.args[0]}", path=_where(card),
                           fix="use an allow-listed '@layer' name") from None
    if card.source == "weakstil":
        if card.model not in WEAKSTIL_MODELS:
            raise EncoderError(f"encoder card '{card.name}': unknown WeakSTIL model {card.model!r}",
                               path=_where(card), fix=f"use one of {', '.join(WEAKSTIL_MODELS)}")
        try:
            return WEAKSTIL_MODELS[card.model](**kwargs)
        except (TypeError, ValueError) as exc:
            raise EncoderError(f"encoder card '{card.name}': bad model_kwargs ({exc})", path=_where(card),
                               fix="fix model_kwargs in the card") from None
    import timm

    if not timm.is_model(card.model):
        raise EncoderError(f"encoder card '{card.name}': timm {timm.__version__} has no model {card.model!r}",
                           path=_where(card), fix="check the model name or upgrade timm")
    kwargs.setdefault("num_classes", 0)
    try:
        return timm.create_model(card.model, pretrained=False, **kwargs)
    except (TypeError, ValueError, AssertionError) as exc:
        raise EncoderError(f"encoder card '{card.name}': timm cannot build {card.model} ({exc})",
                           path=_where(card), fix="fix model_kwargs in the card") from None


def expected_embed_dim(card: EncoderCard, model: torch.nn.Module) -> int | None:
    n = getattr(model, "num_features", None)
    if n is None:
        return None
    return int(n) * (2 if card.pooling == "cls_mean_patch" else 1)


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a ``.safetensors`` file or a weights-only PyTorch checkpoint (never unpickles code)."""
    import pickle
    import warnings

    import torch

    path = Path(path)
    if not path.is_file():
        reason, fix = weights_path_problem(path)
        raise EncoderError(reason, path=path, fix=fix)
    if _weights_format(path) == "safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state: Any = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise EncoderError(f"not a readable safetensors file ({_short(exc)})", path=path,
                               fix="download or export the weights again") from None
    else:
        try:
            with warnings.catch_warnings():  # torch warns about a pickle it refuses; our error line says it
                warnings.simplefilter("ignore", UserWarning)
                with open(path, "rb") as fh:  # a path named .safetensors would make torch.load read safetensors
                    state = torch.load(fh, map_location="cpu", weights_only=True)
        except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError, IndexError,
                TypeError, AttributeError) as exc:  # torch.load of an arbitrary file fails in many ways
            raise EncoderError(f"not a weights-only PyTorch state dict ({_torch_load_reason(exc)})", path=path,
                               fix="save the model's state_dict() with torch.save, or convert it to .safetensors") \
                from None
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict) and len(state) <= 3:
            state = state[key]
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        held = f"; it holds {', '.join(map(repr, list(state)[:8]))}{', …' * (len(state) > 8)}" if isinstance(state, dict) \
            and state else ""  # a training checkpoint (Lightning's: 'state_dict' beside 'epoch', 'optimizer_states'...)
        from weakstil.weights import training_checkpoint_fix

        raise EncoderError(f"does not hold a state dict (a mapping of names to tensors){held}", path=path,
                           fix=training_checkpoint_fix(state, path) or
                           "save model.state_dict(), not the whole model or a training checkpoint")
    for prefix in ("module.", "_orig_mod.", "module."):  # DistributedDataParallel's, torch.compile's, or both
        if all(k.startswith(prefix) for k in state):
            state = {k[len(prefix):]: v for k, v in state.items()}
    return state


def _weights_format(path: Path) -> str:
    """``safetensors`` or ``torch``, by the file's first bytes (a safetensors file starts with its
    header's length, 8 bytes little-endian, then the JSON header's ``{``; PyTorch writes a zip or
    a pickle); by the suffix, any case, when the start says neither (a damaged file)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(9)
        size = path.stat().st_size
    except OSError:
        head, size = b"", 0
    if len(head) == 9 and head[8:9] == b"{" and 2 <= int.from_bytes(head[:8], "little") <= size - 8:
        return "safetensors"
    if head.startswith((b"PK\x03\x04", b"\x80")):  # torch.save's zip; a legacy (protocol >= 2) pickle
        return "torch"
    return "safetensors" if path.suffix.lower() == ".safetensors" else "torch"


def _torch_load_reason(exc: BaseException) -> str:
    """torch.load's refusal in a few words: its message runs to several paragraphs with terminal
    escape codes and advice to unpickle with ``weights_only=False`` (arbitrary code), which we never do."""
    import re

    text = " ".join(re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", str(exc)).split())
    if not text or isinstance(exc, KeyError):  # an empty file (EOFError); a bad pickle opcode, as a bare number
        return "not a PyTorch file, or a damaged one"
    pickled = re.search(r"GLOBAL ([\w.]+)", text)
    if pickled:
        return f"it pickles Python objects such as {pickled.group(1)}, not only tensors"
    text = text.split("WeightsUnpickler error:", 1)[-1].strip() if "WeightsUnpickler error:" in text else text
    return _short(re.split(r"(?<=[.!?]) ", text, maxsplit=1)[0].rstrip("."))


def load_state_dict_strict(model: torch.nn.Module, state: dict[str, torch.Tensor], *, what: str,
                           path: str | Path | None, timm_filter: bool = False) -> None:
    """Load ``state`` into ``model``; any missing, unexpected or mis-shaped key is an error.

    ``timm_filter``: first convert the layout of official checkpoints with the model's timm
    ``checkpoint_filter_fn`` (renamed keys, dropped buffers), but compare the checkpoint's own
    shapes: the filter would silently resample weights of another geometry."""
    raw = state
    if timm_filter:
        import sys

        filter_fn = getattr(sys.modules.get(type(model).__module__), "checkpoint_filter_fn", None)
        if filter_fn is not None:
            try:
                state = filter_fn(dict(state), model)  # a copy: timm's converters pop keys
            except Exception as exc:  # a foreign checkpoint can trip the converter
                raise EncoderError(f"weights for {what} cannot be converted ({_short(exc)})", path=path,
                                   fix="pass the matching weights for this encoder") from None
    from weakstil.weights import drop_unused_head, kind_mismatches, resampled_keys, state_dict_diff

    own = model.state_dict()
    state = drop_unused_head(model, own, state)
    missing, unexpected, shape = state_dict_diff(own, state)
    shapes = {k: tuple(state[k].shape) for k in shape}
    if state is not raw:
        shapes.update((k, tuple(raw[k].shape)) for k in resampled_keys(raw, state) if k in own)
    kinds = kind_mismatches(own, state)
    if missing or unexpected or shapes or kinds:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing key(s) ({_few(missing)})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected key(s) ({_few(unexpected)})")
        if shapes:
            k = min(shapes)
            parts.append(f"{len(shapes)} shape mismatch(es) ({k}: checkpoint {shapes[k]} vs model "
                         f"{tuple(own[k].shape)})")
        if kinds:
            parts.append(f"{len(kinds)} value type mismatch(es) ({kinds[0]}: checkpoint {state[kinds[0]].dtype} vs "
                         f"model {own[kinds[0]].dtype}: integer or quantised weights are not cast)")
        from weakstil.weights import nesting_hint

        part, fix = nesting_hint(own, state) if missing else (None, None)  # a training checkpoint's backbone
        parts += [part] if part else []
        raise EncoderError(f"weights do not match {what}: " + "; ".join(parts), path=path, fix=fix or
                           "pass the weights made for this encoder card (or the card made for these weights)")
    model.load_state_dict(state, strict=True)


def _few(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (", ..." if len(keys) > n else "")


def hub_weights_path(card: EncoderCard) -> Path:
    """The card's weights from the Hugging Face cache, downloading them when allowed."""
    repo = card.hub_repo
    assert repo is not None
    from huggingface_hub import try_to_load_from_cache

    for fname in HUB_WEIGHT_FILES:
        cached = try_to_load_from_cache(repo, fname)
        if isinstance(cached, str):
            return Path(cached)
    login = (f"`hf auth login`, accept the terms at https://huggingface.co/{repo}, then "
             if card.gated else "")
    how = (f"pass --weights FILE (.safetensors or a PyTorch state dict), or with internet run {login}"
           f"`hf download {repo}` (older: huggingface-cli download); a cache copied from another machine is "
           "found with HF_HOME set to its folder (the one holding hub/)")
    if hub_offline():
        raise EncoderError(f"encoder '{card.name}': weights of {card.hub_id} are not in the Hugging Face "
                           "cache and HF_HUB_OFFLINE=1 forbids downloading", fix=how)
    unreachable = _hub_unreachable()
    if unreachable:  # fail now: the hub client retries each file for about a minute before giving up
        raise EncoderError(f"encoder '{card.name}': weights of {card.hub_id} are not in the Hugging Face cache and "
                           f"the hub cannot be reached ({unreachable})",
                           fix=how + "; on a machine without internet, set HF_HUB_OFFLINE=1")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (EntryNotFoundError, GatedRepoError, HfHubHTTPError,
                                        LocalEntryNotFoundError, RepositoryNotFoundError)

    for fname in HUB_WEIGHT_FILES:
        try:
            return Path(hf_hub_download(repo, fname))
        except GatedRepoError:
            raise EncoderError(f"encoder '{card.name}': {card.hub_id} is gated and this account has no access",
                               fix=how) from None
        except RepositoryNotFoundError:
            raise EncoderError(f"encoder '{card.name}': repository {card.hub_id} not found (or gated and not "
                               "logged in)", fix=how) from None
        except EntryNotFoundError:
            continue
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            raise EncoderError(f"encoder '{card.name}': cannot download {card.hub_id} ({_short(exc)})",
                               fix=how) from None
    # what the hub answers with no network or no access to a gated model too
    raise EncoderError(f"encoder '{card.name}': none of {', '.join(HUB_WEIGHT_FILES)} could be fetched from "
                       f"{card.hub_id} (no network, a gated model this account cannot read, or other file names)",
                       fix=how)


def _hub_unreachable() -> str | None:
    """Why the Hugging Face endpoint's host name does not resolve (no network), or ``None``."""
    import socket
    from urllib.parse import urlparse

    host = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co").hostname or "huggingface.co"
    try:
        socket.getaddrinfo(host, 443)
    except OSError as exc:
        return f"{host}: {exc.strerror or exc}"
    return None


def load_model(card: EncoderCard, weights: str | Path | None = None, *, seed: int = 0
               ) -> tuple[torch.nn.Module, str, str, Path | None]:
    """The card's network on the CPU with its weights: ``(model, weights_sha256, source, path)``. See
    :func:`create_encoder` for ``weights``. The model is left in training mode."""
    import torch

    if card.status == "unsupported":
        raise EncoderError(f"encoder '{card.name}' is not supported by this WeakSTIL version ({card.notes})",
                           path=_where(card), fix="choose another encoder (weakstil encoders lists them)")
    # 1. find the weights before building anything (fail fast, and no giant model for nothing)
    state = None
    card_dir = Path(card.path).parent if card.path and Path(card.path).name == CARD_FILE else None
    if weights is not None and str(weights) == RANDOM:
        wpath, source = None, f"random init (seed {seed})"
        if card_dir is not None and (card_dir / MODEL_FILE).exists():  # asked for, but easy to do by mistake
            from weakstil.runtime import warn_once

            warn_once(log, ("random-over-pretrained", str(card_dir)), "%s holds pretrained weights, but --weights "
                      "random makes a random init of its network: its pretraining is not used (leave --weights out "
                      "to use it)", card_dir)
    elif weights is not None:  # sources absolute: 'train' bundles a pretrained encoder from its path
        wpath, source = Path(weights), str(Path(weights).resolve())
    elif card_dir is not None and (card_dir / MODEL_FILE).exists():
        wpath, source = card_dir / MODEL_FILE, str((card_dir / MODEL_FILE).resolve())
    elif card_dir is not None and card.weights_sha256 and not card.hub_id:  # its weights were beside the card
        raise _weights_missing(card, card_dir)
    elif card.hub_id:
        wpath = hub_weights_path(card)
        source = f"{card.hub_id} ({wpath})"
    else:
        raise NoPublishedWeightsError(f"encoder '{card.name}' has no published weights", path=_where(card),
                                      fix="pass --weights FILE, train it with 'weakstil pretrain', or --weights "
                                          "random for a random-feature baseline")
    sha = ""
    if wpath is not None:
        state = read_state_dict(wpath)
        sha = sha256_tensors(state)  # of the tensors, not the file: a .pth and its .safetensors agree
        # resolved: 'pretrain -e DIR' passes the folder's own file as an absolute --weights (11A #2)
        if card_dir is not None and wpath.resolve() == (card_dir / MODEL_FILE).resolve():
            _check_against_card(card, wpath, file_sha256(wpath))

    # 2. build and load
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = build_model(card)
    expected = expected_embed_dim(card, model)
    if expected is not None and expected != card.embed_dim:
        raise EncoderError(f"encoder card '{card.name}' says embed_dim {card.embed_dim} but the network gives "
                           f"{expected}", path=_where(card), fix="fix embed_dim or model_kwargs in the card")
    if state is not None:
        load_state_dict_strict(model, state, what=f"encoder '{card.name}' ({card.model})", path=wpath,
                               timm_filter=card.source == "timm")
    else:
        sha = sha256_state_dict(model.state_dict())
    return model, sha, source, wpath


def create_encoder(name_or_dir: str | Path, weights: str | Path | None = None, device: str = "cpu", *,
                   seed: int = 0) -> Encoder:
    """Build the encoder named by a card (built-in name, card file, or pretrain output directory).

    ``weights``: ``None`` (the card's own weights: ``model.safetensors`` beside a pretrain card, or the
    card's hub repository), a weights file (``.safetensors`` or a weights-only PyTorch state dict), or
    ``"random"`` (seeded random init: a baseline). ``device``: ``cpu``, ``cuda[:N]`` or ``auto``."""
    import torch

    from weakstil.encoders.transforms import TileTransform

    card = load_card(name_or_dir)
    if card.status == "experimental":
        log.warning("encoder '%s' is experimental: %s", card.name, card.notes or "not verified")
    dev = resolve_device(device)
    model, sha, source, wpath = load_model(card, weights, seed=seed)
    model.eval().to(dev)
    model.to(memory_format=torch.channels_last)
    for p in model.parameters():
        p.requires_grad_(False)
    transform = TileTransform(card.input_px, card.mean, card.std)
    log.debug("encoder %s: %s on %s, weights %s (sha256 %s)", card.name, card.model, dev, source, sha[:12])
    return Encoder(card=card, model=model, device=dev, weights_sha256=sha, weights_source=source,
                   transform=transform, seed=seed if wpath is None else None,
                   weights_file_sha256=file_sha256(wpath) if wpath is not None else "")


def save_state_dict(state: dict[str, torch.Tensor], path: str | Path, metadata: dict[str, str] | None = None) -> str:
    """Write ``state`` as safetensors atomically; returns the file's sha256."""
    from safetensors.torch import save

    from weakstil.atomic import atomic_path

    data = save({k: v.detach().cpu().contiguous() for k, v in state.items()}, metadata=metadata)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            fh.write(data)
    return sha256_bytes(data)
