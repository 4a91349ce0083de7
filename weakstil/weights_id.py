"""The fingerprint of an encoder's weights: what feature files, models and detectors record as
``weights_sha256`` and compare before features are reused or scored.

Since hunt 24 it is a hash of the tensors themselves (:func:`sha256_tensors`: each tensor's name,
dtype, shape and bytes, in name order), so the same weights saved as ``.pth`` or ``.safetensors``
(or with DataParallel's ``module.`` prefix) have one fingerprint. It used to be the sha256 of the
weights *file*, so features of one container were refused by a model bundling the other. That file
hash is still recorded beside it as ``weights_file_sha256``, and a record made before (only
``weights_sha256``, a file hash) matches a new one whose ``weights_file_sha256`` is that hash: an
existing model, detector or feature cache made from the same file is still accepted
(:func:`same_weights`). Seeded random weights (``--weights random``) keep their hash of the
network's state dict, which never depended on a file.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

#: The attribute / model.json field holding the weights file's own sha256 (the fingerprint before hunt 24).
FILE_ATTR = "weights_file_sha256"
#: Set in memory on the ``encoder`` record of a model from before hunt 24 whose bundled weights file
#: was checked against it: those tensors' hash, so features recording only it are recognised.
TENSORS_ATTR = "weights_tensors_sha256"


def sha256_tensors(state: Mapping[str, Any]) -> str:
    """SHA-256 over a state dict's tensors in name order: each one's name, dtype, shape and raw
    bytes (C order, little-endian as stored). Independent of the file format that held them."""
    import torch

    h = hashlib.sha256(b"weakstil-tensors-1\0")
    for name in sorted(state):
        t = state[name].detach().to("cpu").contiguous()
        h.update(json.dumps([name, str(t.dtype).removeprefix("torch."), list(t.shape)]).encode() + b"\0")
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())
    return h.hexdigest()


def sha256_state_dict(state: Mapping[str, Any]) -> str:
    """Hash of a state dict's safetensors serialisation (deterministic: keys are sorted): the
    fingerprint of seeded random weights, as recorded since they were first hashed."""
    from safetensors.torch import save

    from weakstil.runtime import sha256_bytes

    return sha256_bytes(save({k: v.detach().cpu().contiguous() for k, v in state.items()}))


@functools.lru_cache(maxsize=16)
def _file_sha(path: str, mtime_ns: int, size: int) -> str:
    from weakstil.runtime import sha256_file

    return sha256_file(path)


def file_sha256(path: str | Path) -> str:
    """The sha256 of a weights file, hashed once per file version in a process."""
    st = os.stat(path)
    return _file_sha(str(Path(path).resolve()), st.st_mtime_ns, st.st_size)


def _getter(record: Mapping | Callable[[str], Any]) -> Callable[[str], Any]:
    return record.get if isinstance(record, Mapping) else record


def _given(value: Any) -> str | None:
    """A recorded hash as text, or None where nothing was recorded (HDF5 attributes hold "" or "None")."""
    return None if value in (None, "", "None") else str(value)


def file_hash(record: Mapping | Callable[[str], Any]) -> str | None:
    """The weights file's sha256 a record holds beside the tensors' hash (``weights_file_sha256``),
    or None: a record from before hunt 24, or of seeded random weights."""
    return _given(_getter(record)(FILE_ATTR))


def fingerprints(record: Mapping | Callable[[str], Any]) -> set[str]:
    """The weights fingerprints a record holds (a dict such as model.json's ``encoder``, or a feature
    file's ``attr`` getter): its ``weights_sha256`` and, when recorded, ``weights_file_sha256``."""
    get = _getter(record)
    return {v for v in map(_given, (get("weights_sha256"), get(FILE_ATTR), get(TENSORS_ATTR))) if v is not None}


def same_weights(a: Mapping | Callable[[str], Any], b: Mapping | Callable[[str], Any]) -> bool:
    """Whether two records name the same weights: a common fingerprint (the tensors' hash of two new
    records, or the file hash of an old record and the ``weights_file_sha256`` of a new one). Two
    records without any fingerprint are the same (nothing recorded to compare)."""
    fa, fb = fingerprints(a), fingerprints(b)
    return bool(fa & fb) or not (fa or fb)


def canonical_weights(records: list[Mapping | Callable[[str], Any]]) -> list[str | None]:
    """Each record's weights fingerprint, with an old record's file hash replaced by the tensors' hash
    of a new record made from the same file: records of the same weights compare equal."""
    by_file = {file_hash(r): str(_getter(r)("weights_sha256")) for r in records if file_hash(r) is not None}
    out = []
    for r in records:
        sha = _getter(r)("weights_sha256")
        sha = None if sha is None else str(sha)
        out.append(by_file.get(sha, sha) if file_hash(r) is None else sha)
    return out
