"""Which encoder and tiles features come from, and whether they fit a model (no torch import)."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from weakstil.errors import WeakSTILError

#: Attributes of a feature cache that identify the encoder and tiles.
IDENTITY_ATTRS = ("encoder", "weights_sha256", "mpp", "tile_px", "stain_norm")


class ModelError(WeakSTILError):
    """A model directory is missing, damaged or does not fit the features."""


def _json_or_raw(value: object) -> object:
    try:
        return json.loads(value) if isinstance(value, str) else value
    except json.JSONDecodeError:
        return value


def check_same_identity(slide_ids: Sequence[str], attrs: Sequence[dict[str, object]]) -> dict[str, object]:
    """Encoder identity shared by all feature files; error naming the odd ones out."""
    def key(a):
        return tuple(str(a.get(k)) for k in IDENTITY_ATTRS)

    keys = [key(a) for a in attrs]
    values, counts = np.unique(np.array([json.dumps(k) for k in keys]), return_counts=True)
    if len(values) > 1:
        common = json.loads(values[np.argmax(counts)])
        odd = [sid for sid, k in zip(slide_ids, keys) if list(k) != common]
        raise WeakSTILError(
            f"feature files come from different encoders, stain normalisations or tile settings: {len(odd)} slides "
            "differ from the "
            f"majority ({', '.join(f'{n}={v}' for n, v in zip(IDENTITY_ATTRS, common))}), e.g. {', '.join(odd[:5])}",
            fix="embed all slides of the cohort with the same encoder, weights, --stain-norm and --mpp/--tile-size",
        )
    a = attrs[0] if attrs else {}
    return {
        "encoder": a.get("encoder"),
        "weights_sha256": a.get("weights_sha256"),
        "encoder_card": _json_or_raw(a.get("encoder_card")),
        "mpp": a.get("mpp"),
        "tile_px": a.get("tile_px"),
        "tiling_key": _json_or_raw(a.get("tiling_key")),
    }


def check_features_match_model(meta: dict, identity: dict[str, object], where: str | Path) -> None:
    """Refuse features made with another encoder, other weights or other tiles than the model's."""
    enc = meta.get("encoder", {})
    tiling = meta.get("tiling", {})
    problems = []
    if str(enc.get("name")) != str(identity.get("encoder")):
        problems.append(f"encoder {identity.get('encoder')!r} but the model was trained on {enc.get('name')!r}")
    if str(enc.get("weights_sha256")) != str(identity.get("weights_sha256")):
        problems.append(f"encoder weights {str(identity.get('weights_sha256'))[:12]} but the model's are "
                        f"{str(enc.get('weights_sha256'))[:12]}")
    for k in ("mpp", "tile_px"):
        mv, fv = tiling.get(k), identity.get(k)
        if mv is not None and fv is not None and not math.isclose(float(mv), float(fv), rel_tol=1e-6):
            problems.append(f"{k} {fv} but the model's is {mv}")
    if problems:
        raise ModelError("features do not fit the model: " + "; ".join(problems), path=where,
                         fix=f"embed the slides with the model's encoder ({enc.get('name')}, same weights, "
                             f"--mpp {tiling.get('mpp')} --tile-size {tiling.get('tile_px')})")
