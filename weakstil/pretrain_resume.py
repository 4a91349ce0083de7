"""What ``weakstil pretrain --resume`` checks before it continues a run: the settings, the inputs
(the slide files themselves and how they are read) and the augmentation must be the run's own, or
the result would equal no single run. A checkpoint of an older WeakSTIL that does not record
something is resumed as before (with a warning where it matters)."""

from __future__ import annotations

import json
import logging
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

from weakstil.encoders.cards import EncoderCard
from weakstil.errors import WeakSTILError

log = logging.getLogger("weakstil.pretrain")


class PretrainError(WeakSTILError):
    """Pretraining cannot start or continue (here, below :mod:`weakstil.pretrain`, which re-exports it,
    so that both raise it without an import cycle)."""

#: settings that may not change when resuming
FIXED_ON_RESUME = ("encoder", "init_weights", "batch_size", "tiles_per_slide", "crop_px", "lr", "weight_decay",
                   "temperature", "proj_dim", "proj_hidden", "seed", "mpp", "tile_px", "tissue_threshold",
                   "stain_norm")
#: how the slides are read (arguments of pretrain(), kept in the checkpoint's state since 11A #4)
INPUTS_FIXED_ON_RESUME = ("slide_mpp", "allow_upsample", "listed_mpps")
_NEW_RUN = "or start a new run in another --out"
#: the base card's fields that decide what is trained (kept in the checkpoint's state since hunt 34g): the
#: card file given again by its path may have been edited (other model_kwargs build another network, another
#: mean/std or input size feeds it other tiles); its words (description, licence, notes) may change
CARD_FIXED_ON_RESUME = ("source", "model", "model_kwargs", "hub_id", "input_px", "mpp", "mean", "std", "embed_dim",
                        "pooling", "precision", "stain_norm", "weights_sha256")


def card_identity(card: EncoderCard) -> dict[str, Any]:
    """The base card's :data:`CARD_FIXED_ON_RESUME` fields, as the checkpoint's JSON stores them."""
    d = json.loads(card.to_json())
    return {k: d.get(k) for k in CARD_FIXED_ON_RESUME}


def _effective(config: dict[str, Any], card: EncoderCard) -> dict[str, Any]:
    """``config`` with the card's µm/px and input size where it leaves them to the card (None): a
    checkpoint of the CLI before 11A #5 records 0.5 / 224, one of now None, and both are the same run."""
    return {**config, "mpp": config.get("mpp") or card.mpp, "tile_px": config.get("tile_px") or card.input_px}


def encoder_identity(value: Any) -> Any:
    """``--encoder`` as the card it names: a card folder or file by its absolute path (a resume may
    spell it otherwise, or run from another folder: a cluster job), a built-in name as it is."""
    path = Path(str(value))
    if (path.is_dir() and (path / "card.yaml").is_file()) or (path.is_file() and path.suffix in (".yaml", ".yml")):
        return str(path.resolve())
    return value


def check_settings(state: dict[str, Any], cfg: Any, card: EncoderCard, *, slide_mpp: float | None,
                   allow_upsample: bool, out_dir: Path, listed_mpps: dict[str, float] | None = None) -> None:
    """Refuse, before any slide is read, a resume with other settings or another slide reading."""
    old, new = _effective(state["config"], card), _effective(asdict(cfg), card)
    old["encoder"], new["encoder"] = encoder_identity(old.get("encoder")), encoder_identity(new.get("encoder"))
    changed = [k for k in FIXED_ON_RESUME if old.get(k) != new.get(k)]
    if changed:
        raise PretrainError("settings differ from the checkpoint's: " + ", ".join(
            f"{k} {old.get(k)!r} -> {new.get(k)!r}" for k in changed), path=out_dir,
            fix="resume with the same settings (only --steps/--epochs may change)")
    recorded, now = state.get("base_card"), card_identity(card)  # None: a checkpoint of before hunt 34g
    changed = [k for k in CARD_FIXED_ON_RESUME if recorded is not None and recorded.get(k) != now[k]]
    if changed:  # an edited card went on silently (mean), or failed after the slides were read as 'pass the weights'
        raise PretrainError(f"the encoder card {card.path or card.name} is not the one the checkpoint was trained "
                            "with: " + ", ".join(f"{k} {recorded.get(k)!r} -> {now[k]!r}" for k in changed),
                            path=out_dir, fix=f"resume with the card as it was ({', '.join(changed)}), {_NEW_RUN}")
    inputs = {"slide_mpp": slide_mpp, "allow_upsample": allow_upsample, "listed_mpps": listed_mpps or {}}
    state = {**state, "listed_mpps": state.get("listed_mpps", {})}  # a slide list's mpp column (hunt 33g)
    changed = [k for k in INPUTS_FIXED_ON_RESUME if k in state and state[k] != inputs[k]]
    if changed:
        raise PretrainError("the slides are read otherwise than for the checkpoint: " + ", ".join(
            f"{k} {state[k]!r} -> {inputs[k]!r}" for k in changed), path=out_dir,
            fix=f"resume with the same --slide-mpp, --allow-upsample and slide list mpp column, {_NEW_RUN}")


def run_length(state: dict[str, Any], cfg: Any, out_dir: Path) -> Any:
    """``cfg`` with the checkpoint's ``--steps``/``--epochs`` when the resume gives neither: a rerun
    with ``--resume`` and the other options as before finishes the run that was started (it took the
    default 200 steps, so a 300-step run stopped at step 50 ended at 200, on a shortened schedule)."""
    recorded = state.get("config", {})
    if cfg.init_weights is None and recorded.get("init_weights") == "random":  # a hub card's run of before hunt 28
        log.info("%s: the checkpoint's run started from a random init: it goes on from it", out_dir)
        cfg = replace(cfg, init_weights="random")
    if cfg.steps is not None or cfg.epochs is not None:
        return cfg
    steps, epochs = recorded.get("steps"), recorded.get("epochs")
    if steps is None and epochs is None:
        return cfg
    log.info("%s: --steps/--epochs not given: the checkpoint's run length (%s)", out_dir,
             f"{steps} steps" if steps is not None else f"{epochs} epochs")
    return replace(cfg, steps=steps, epochs=epochs)


def check_inputs(state: dict[str, Any], slide_ids: list[str], n_tiles: int, fingerprints: dict[str, str],
                 out_dir: Path) -> None:
    """Refuse a resume on tiles other than the checkpoint's: other slides, another number of tiles,
    or another file under a slide's name (its content fingerprint, :mod:`weakstil.fingerprint`)."""
    if state["slides"] != slide_ids or state["n_tiles"] != n_tiles:
        raise PretrainError(f"the slides give other tiles than the checkpoint's ({len(slide_ids)} slides, "
                            f"{n_tiles} tiles vs {len(state['slides'])} slides, {state['n_tiles']} tiles)",
                            path=out_dir, fix=f"resume with the same slides, {_NEW_RUN}")
    recorded = state.get("slide_fingerprints")
    if recorded is None:  # a checkpoint of WeakSTIL before 11A #4: names and tile counts only
        return
    other = [s for s in slide_ids if recorded.get(s) != fingerprints.get(s)]
    if other:
        raise PretrainError(f"{len(other)} slide file(s) are not the ones the checkpoint was trained on, though "
                            f"named the same ({', '.join(other[:3])}{', ...' if len(other) > 3 else ''}: the file "
                            "content differs)", path=out_dir, fix=f"resume with the same slide files, {_NEW_RUN}")


def check_augment(state: dict[str, Any], settings: dict[str, Any], out_dir: Path) -> None:
    """A resumed run must augment as the run it continues did: the defaults change between versions
    (scanner optics since 2026-12-01), and a run that switched recipe half-way equals neither."""
    recorded = state.get("augment")
    if recorded is None:  # checkpoints of WeakSTIL before the optics did not record it
        log.warning("%s: the checkpoint does not record its augmentation (an older WeakSTIL); the rest of the "
                    "run uses this version's (card.yaml records it)", out_dir)
        return
    settings = json.loads(json.dumps(settings))  # as the checkpoint stores it (tuples -> lists)
    changed = sorted(k for k in set(recorded) | set(settings) if recorded.get(k) != settings.get(k))
    if changed:
        raise PretrainError("augmentation differs from the checkpoint's: " + ", ".join(
            f"{k} {recorded.get(k)!r} -> {settings.get(k)!r}" for k in changed), path=out_dir,
            fix="finish the run with the WeakSTIL version that started it, or start a new one in another --out")


def warn_threads(state: dict[str, Any], threads: int, out_dir: Path) -> None:
    """Torch's CPU kernels sum in another order with another thread count: the run goes on, but its
    weights no longer equal those of an uninterrupted run bit for bit."""
    recorded = state.get("torch_threads")
    if recorded is not None and recorded != threads and state.get("device", "cpu") == "cpu":
        log.warning("%s: the checkpoint trained with %d torch thread(s), this run has %d: the weights will differ "
                    "slightly from an uninterrupted run's (pass --threads %d to match)", out_dir, recorded, threads,
                    recorded)
