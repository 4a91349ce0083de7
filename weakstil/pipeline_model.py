"""The workflow's own model folder (``out/model``) against the evaluation and scores made with it.

Snakemake follows a ``directory()`` output by the time of its ``.snakemake_timestamp`` file, which only the
train job sets: model files copied over ``results/model`` by hand (another training's ``model.json`` and
``model.safetensors``, by ``cp`` or ``rsync``) left that time as it was, and the next run said "Nothing to be
done", keeping ``results/evaluation`` and ``results/scores`` made with the old weights (hunt 38c: scores of
``model@b980dfb6af4c`` beside a model of ``b8bc4449c0a6``). Both outputs record their model's weights
(``metrics.json`` ``model_sha256``, ``results.csv`` ``model_id``), so the run is refused, dry runs too, as
for features of another WeakSTIL (:func:`weakstil.pipeline_reruns.older_features`), naming the folders to
delete. A model the workflow trained again is newer than those outputs: Snakemake redoes them, and it is
not refused.
"""

from __future__ import annotations

import json
from pathlib import Path

#: How many hex digits of the weights' SHA-256 a results.csv ``model_id`` keeps (``model@<12>``).
ID_DIGITS = 12


def folder_time(folder: Path) -> float | None:
    """The time Snakemake gives a ``directory()`` output: its ``.snakemake_timestamp`` file's, else the folder's."""
    for path in (folder / ".snakemake_timestamp", folder):
        try:
            return path.stat().st_mtime
        except OSError:
            continue
    return None


def _recorded(path: Path) -> set[str]:
    """The weights (SHA-256, first digits) an evaluation's ``metrics.json`` or a ``results.csv`` records."""
    try:
        if path.suffix == ".json":
            sha = json.loads(path.read_text(encoding="utf-8")).get("model_sha256")
            return {str(sha)[:ID_DIGITS]} if sha else set()
        import pandas as pd

        ids = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=["model_id"])["model_id"]
    except (OSError, ValueError, AttributeError):  # unreadable, or no such column: nothing to compare
        return set()
    return {i.rpartition("@")[2][:ID_DIGITS] for i in ids if i.strip()}  # error rows have no model


def hand_changed_model(out: str | Path) -> str | None:
    """Why the run would keep an evaluation or scores made with other weights than ``out/model`` now holds
    (model files copied over it), with the fix; ``None`` when they match, or Snakemake redoes them anyway
    (the model is newer than they are), or there is nothing to compare."""
    from weakstil.runtime import sha256_file

    out = Path(out)
    model = out / "model"
    since = folder_time(model)
    try:
        now = sha256_file(model / "model.safetensors")[:ID_DIGITS]
    except OSError:  # no model yet (or unreadable): the train job's to make, or score's to refuse
        return None
    stale: dict[Path, str] = {}
    for folder, file in (("evaluation", "metrics.json"), ("scores", "results.csv")):
        path = out / folder / file
        try:
            kept = since is not None and path.stat().st_mtime >= since  # older: Snakemake redoes it
        except OSError:
            continue
        if kept and (made := _recorded(path)) and now not in made:
            stale[out / folder] = ", ".join(sorted(made))
    if not stale:
        return None
    if out / "evaluation" in stale:
        stale[out / "report"] = stale[out / "evaluation"]  # the report shows that evaluation
    names = " and ".join(str(p) for p in stale if p.name != "report")
    return (f"{model} holds other weights ({now}) than {names} were made with ({next(iter(stale.values()))}): "
            "model files copied over it by hand? Snakemake follows the folder by the time its train job gave it, "
            "so it would keep those outputs (\"Nothing to be done\"). Fix: delete "
            f"{' '.join(str(p) for p in stale)} and run again to evaluate and score with this model, or delete "
            f"{model} to train it again")
