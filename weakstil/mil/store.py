"""Saving and loading a trained MIL model: ``model.safetensors`` (weights and feature
normalisation buffers) and ``model.json`` (architecture, encoder identity, tiling, threshold,
training settings and cross-validated metrics, seed, versions, SHA-256 of the weights); see
:mod:`weakstil.modeldir` for the rest of the folder. Loading is strict.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict
from pathlib import Path
from types import MappingProxyType
from typing import Any

import torch

from weakstil.atomic import atomic_path, write_json
from weakstil.errors import UsageError, WeakSTILError
from weakstil.mil.bank import FeatureBank
from weakstil.mil.config import Architecture, TrainConfig
from weakstil.mil.identity import MEASUREMENT_ATTRS, ModelError
from weakstil.mil.meta_schema import FORMAT_VERSION, check_model_fields, shown
from weakstil.mil.model import TileMIL
from weakstil.modeldir import WEIGHTS_FILE, ModelDir, check_meta, folder_of_file_fix, meta_format_version
from weakstil.runtime import lfs_pointer_note, sha256_file, versions

FORMAT = "weakstil-mil"
#: The fix for a model file that is a Git LFS pointer.
LFS_FIX = "run 'git lfs pull' in the repository the model folder was cloned from, or copy the model folder again"


def save_model(model: TileMIL, directory: str | Path, meta: dict[str, object]) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``directory`` (atomically each)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    folder = ModelDir(directory)
    with atomic_path(folder.weights_path) as tmp:
        # one metadata key only: safetensors writes several in random (hash) order, which would
        # make the bytes of identical models differ
        save_file(state, str(tmp), metadata={"weakstil": json.dumps({"format": FORMAT, "version": FORMAT_VERSION})})
    full = {"format": FORMAT, "format_version": FORMAT_VERSION, **meta,
            "architecture": asdict(model.arch), "weights_file": WEIGHTS_FILE,
            "weights_sha256": sha256_file(folder.weights_path)}
    write_json(folder.meta_path, full, indent=2)  # strict JSON: a missing metric is null, never NaN
    return directory


@functools.lru_cache(maxsize=8)
def _expected_state(arch: Architecture) -> MappingProxyType:
    """The names, shapes and dtypes of ``arch``'s weights (tensors on 'meta', no storage), read-only. Built
    once per architecture: building even a meta network runs every layer's init under a torch function
    mode (1-2 ms a network): a 15-fold model's load_scoring_models took 26 ms instead of 14 (hunt 39j; now 16)."""
    with torch.device("meta"):
        return MappingProxyType(TileMIL(arch).state_dict())


def _built(arch: Architecture, state: dict | None = None, path: Path | None = None) -> TileMIL:
    """The network to load weights into, its random init drawn on a forked generator: loading a model
    moved the caller's torch random stream on (a script's next torch.rand differed) until hunt 36d.
    With ``state``: its names and shapes are compared first on a network without storage ('meta'), so
    a model.json from elsewhere with absurd sizes (hidden 10**9: 1.1 TB) fails as a mismatch instead of
    allocating the network (an "out of memory ... raise ulimit" error, or the OOM killer, until hunt 39f)."""
    if state is not None:
        from weakstil.weights import kind_mismatches, state_dict_diff

        shapes = _expected_state(arch)
        missing, unexpected, wrong = state_dict_diff(shapes, state)
        kinds = kind_mismatches(shapes, state)  # integer weights were cast silently
        if missing or unexpected or wrong or kinds:
            parts = [f"{what} {', '.join(keys[:6])}{', …' * (len(keys) > 6)}" for what, keys in
                     (("missing", missing), ("unexpected", unexpected), ("wrong shape", wrong),
                      ("not floating-point", kinds)) if keys]
            raise ModelError("weights do not match the architecture in model.json: " + "; ".join(parts),
                             path=path, fix="copy the whole model folder again, or train the model again")
        if not all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point()):
            raise ModelError("weights hold NaN or infinite values (every slide scored as an empty sTIL%)", path=path,
                             fix="copy the whole model folder again, or train the model again")
    with torch.random.fork_rng(devices=[]):
        return TileMIL(arch)


def _regular_file(path: Path, fix: str) -> None:
    """A model file must be a regular file: a FIFO, or a link to /dev/zero, in a model folder from
    elsewhere hung the SHA-256 check forever (hunt 39f); a folder, a device: one error line."""
    import stat

    try:
        mode = path.stat().st_mode
    except OSError:
        raise ModelError(f"{path.name} is missing", path=path.parent, fix=fix) from None
    if not stat.S_ISREG(mode):
        what = "a folder" if stat.S_ISDIR(mode) else "a FIFO" if stat.S_ISFIFO(mode) else "a device or special file"
        raise ModelError(f"is {what}, not a file", path=path, fix="copy the model folder again (its files, not links "
                                                                    "to devices)")


def _inside(folder: Path, name: str) -> Path | None:
    """``folder / name`` when ``name`` is a path inside the folder (relative, no ``..``): a model.json
    from elsewhere named fold files such as ``../../../etc/passwd`` or ``/etc/hostname`` and they were
    opened and hashed (hunt 39f)."""
    from pathlib import PurePosixPath, PureWindowsPath

    parts = PurePosixPath(name.replace("\\", "/"))
    if not name or parts.is_absolute() or PureWindowsPath(name).drive or ".." in parts.parts:
        return None
    return folder / parts


def load_model(directory: str | Path) -> tuple[TileMIL, dict]:
    """Rebuild the network from ``model.json`` and load its weights strictly.

    Fails with a :class:`ModelError` when a file is missing, the weights' hash differs
    from the one recorded, or the weight names/shapes do not match the architecture.
    """
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    directory = Path(directory)
    folder = ModelDir(directory)
    meta_path, weights_path = folder.meta_path, folder.weights_path
    fix = "pass the directory written by 'weakstil train' (it holds model.json and model.safetensors)"
    inner = ModelDir(directory / "model")  # `weakstil demo --out D` puts its model in D/model
    if not meta_path.exists() and inner.meta_path.is_file() and inner.weights_path.is_file():
        fix = f"pass {inner.root}, the model folder inside it"
    elif directory.is_dir() and not meta_path.exists():  # MODEL/cv, MODEL/folds: the model folder above it
        fix = folder_of_file_fix(directory, "--model") or fix
    if directory.is_file():  # a folder option given a file: a usage mistake (exit 2), as for every folder option
        raise UsageError("is a file, not the model directory", path=directory,
                         fix=folder_of_file_fix(directory, "--model") or fix)
    if not directory.is_dir():
        raise ModelError("model directory not found", path=directory, fix=fix)
    for p in (meta_path, weights_path):
        _regular_file(p, fix)
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8-sig"))  # (a BOM: edited and saved by Notepad)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelError(f"model.json is not valid JSON ({exc})", path=meta_path, fix="train the model again") from None
    meta = check_meta(meta, meta_path, "train the model again")
    if meta.get("format") != FORMAT:
        said = f"format {shown(meta['format'])}" if "format" in meta else "no 'format'"
        raise ModelError(f"not a WeakSTIL MIL model ({said})", path=meta_path, fix=fix)
    newer = meta.get("format_version")
    if isinstance(newer, int) and not isinstance(newer, bool) and newer > FORMAT_VERSION:  # before its fields: a
        # newer train's field (a tiling one) was "which WeakSTIL does not read ... Fix: remove it" (helper h42g)
        raise ModelError(f"model format version {newer} is newer than this weakstil understands ({FORMAT_VERSION})",
                         path=meta_path, fix="upgrade weakstil")
    check_model_fields(meta, meta_path)  # every field rebuilt or scored from has the type train wrote
    version = meta_format_version(meta, meta_path, 0, "train the model again", ModelError)
    # an explicit 0 (an edit: train has written 1 since model.json had a format_version) was read without a
    # word (helper h42f); absent: a model from before it was written, read as before
    if "format_version" in meta and version < 1:
        raise ModelError(f"model.json 'format_version' is {version}, a version 'weakstil train' never wrote (it "
                         f"writes {FORMAT_VERSION})",
                         path=meta_path, fix=f"set it back to {FORMAT_VERSION}, as 'weakstil train' wrote it, or "
                                             "train the model again")
    recorded = meta.get("weights_sha256")
    actual = sha256_file(weights_path)
    if recorded != actual and (pointer := lfs_pointer_note(weights_path)):
        raise ModelError(pointer, path=weights_path, fix=LFS_FIX)
    if recorded != actual:
        raise ModelError(f"model.safetensors does not match model.json (SHA-256 {actual[:12]}, recorded "
                         f"{str(recorded)[:12]})", path=weights_path,
                         fix="copy the model folder again from where 'weakstil train' wrote it (the weights were "
                             "changed, damaged in a copy or mixed up with another model's), or train again")
    try:
        arch = Architecture(**meta["architecture"])
    except (KeyError, TypeError) as exc:
        raise ModelError(f"model.json architecture is incomplete ({exc})", path=meta_path, fix=fix) from None
    except WeakSTILError as exc:  # a value edited into one no model has (an unknown aggregator): name the file
        raise ModelError(f"model.json architecture: {exc.message}", path=meta_path, fix=exc.fix or fix) from None
    try:
        state = load_file(str(weights_path))
    except (SafetensorError, OSError) as exc:
        raise ModelError(f"cannot read weights ({exc})", path=weights_path, fix="train the model again") from None
    model = _built(arch, state, weights_path)
    model.load_state_dict(state, strict=True)
    model.eval()
    return model, meta


def used_config(cfg: TrainConfig, *, threads: int) -> dict:
    """The training settings as used: the resolved device and torch threads (the requested ones
    under ``requested`` where they differ, e.g. ``auto`` and 0), and ``None`` for a setting the
    aggregator does not use (the stroma weight of a mean or attention model)."""
    from weakstil.mil.config import Aggregator
    from weakstil.runtime import resolve_device

    config = asdict(cfg)
    used = {"device": str(resolve_device(cfg.device)), "threads": int(threads)}
    requested = {k: config[k] for k, v in used.items() if config[k] != v}
    config.update(used)
    if requested:
        config["requested"] = requested
    if cfg.aggregator != Aggregator.STROMA.value:
        config["stroma_weight"] = None
    return config


def model_meta(bank: FeatureBank, cfg: TrainConfig, *, threshold: float, extra: dict | None = None,
               threads: int = 0) -> dict:
    """The model.json fields that describe where the model comes from (``threads``: the torch
    threads training used)."""
    ident = bank.identity
    return {
        "encoder": {"name": ident.get("encoder"), "weights_sha256": ident.get("weights_sha256"),
                    **({"weights_file_sha256": ident["weights_file_sha256"]} if ident.get("weights_file_sha256") else {}),
                    "card": ident.get("encoder_card")},
        "tiling": {"mpp": ident.get("mpp"), "tile_px": ident.get("tile_px"), "key": ident.get("tiling_key")},
        # how the slides' stain was estimated and their tiles measured (checked where scored)
        "features": {k: ident.get(k) for k in MEASUREMENT_ATTRS},
        "threshold": float(threshold),
        "seed": int(cfg.seed),
        "training": {"config": used_config(cfg, threads=threads), **(extra or {})},
        "versions": versions(),  # of training; the features' (the slide reader's, the encoder's) below
        "features_library_versions": ident.get("library_versions") or [],
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def save_fold_models(models: list[TileMIL], directory: str | Path, members: int = 1) -> list[dict[str, Any]]:
    """Write the cross-validation fold models to ``folds/fold_<k>.safetensors`` (k from 1; with
    several ``members`` per fold, fold-major: ``fold_<k>_<m>.safetensors``) and return their
    ``model.json`` entries (``file`` relative to the model folder, ``sha256``, ``fold``, ``member``)."""
    from safetensors.torch import save_file

    folder = ModelDir(directory)
    folder.folds_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, model in enumerate(models):
        k, m = i // members + 1, i % members + 1
        path = folder.fold_path(k, m if members > 1 else None)
        state = {name: v.detach().cpu().contiguous() for name, v in model.state_dict().items()}
        with atomic_path(path) as tmp:
            save_file(state, str(tmp), metadata={"weakstil": json.dumps({"format": FORMAT, "version": FORMAT_VERSION,
                                                                         "fold": k, "member": m})})
        entries.append({"file": path.relative_to(folder.root).as_posix(), "sha256": sha256_file(path),
                        "fold": k, "member": m})
    return entries


def load_fold_models(directory: str | Path, meta: dict, arch: Architecture) -> list[TileMIL]:
    """The fold models listed in ``model.json`` (empty for models trained without them);
    each must match its recorded SHA-256 and the architecture exactly."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = ModelDir(directory)
    models = []
    fix = "copy the whole model folder, or train the model again"
    entries = meta.get("folds") or []
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        raise ModelError("model.json's 'folds' is not a list of fold model entries", path=folder.root / "model.json",
                         fix=f"the model folder was changed; {fix}")
    for entry in entries:
        path = _inside(folder.root, str(entry.get("file", "")))
        if path is None:
            raise ModelError(f"model.json names a fold model outside the model folder ({shown(entry.get('file'))})",
                             path=folder.root / "model.json", fix=f"the model folder was changed; {fix}")
        if not path.is_file():
            raise ModelError("fold model is missing", path=path, fix=fix)
        if sha256_file(path) != entry.get("sha256"):
            if pointer := lfs_pointer_note(path):
                raise ModelError(pointer, path=path, fix=LFS_FIX)
            raise ModelError("fold model does not match model.json (SHA-256 differs)", path=path, fix=fix)
        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"cannot read fold model ({exc})", path=path, fix=fix) from None
        model = _built(arch, state, path)
        model.load_state_dict(state, strict=True)
        models.append(model.eval())
    return models
