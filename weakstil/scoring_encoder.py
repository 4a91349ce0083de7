"""The encoder ``weakstil score`` embeds new slides with: the one the model was trained on, checked.

``--encoder``, else the model's bundled ``encoder/``, else the card recorded in ``model.json``; its
weights must hash to what the model recorded, and a batch of its activations must fit in memory.
"""

from __future__ import annotations

import logging
from typing import Any

from weakstil import settings
from weakstil.errors import WeakSTILError
from weakstil.modeldir import ModelDir

log = logging.getLogger(__name__)
#: weakstil.score.ScoreOptions (not imported: score imports this module)
ScoreOptions = Any


def load_scoring_encoder(opts: ScoreOptions, meta: dict):
    """The encoder the model was trained on: ``--encoder``, else ``MODEL/encoder``, else the
    card recorded in the model; its weights must hash to what the model recorded."""
    from weakstil.encoders.cards import UnknownEncoderNameError
    from weakstil.encoders.factory import NoPublishedWeightsError, create_encoder

    recorded = meta.get("encoder", {})
    name = opts.encoder
    bundled = ModelDir(opts.model).bundled_encoder if name is None else None
    if name is None:
        name = str(bundled) if bundled is not None else recorded.get("name")
    if not name:
        raise WeakSTILError("the model does not record its encoder", path=opts.model, fix="pass --encoder")
    try:
        encoder = create_encoder(name, weights=opts.weights, device=opts.device)
    except WeakSTILError as exc:  # the card is not found: CardError
        if opts.weights is None and bundled is None and isinstance(exc, NoPublishedWeightsError):
            # features embedded with --weights random (seeded): the model records their hash, so the
            # same random weights are recognised rather than asked for again
            encoder = create_encoder(name, weights="random", device=opts.device)
            if encoder.weights_sha256 != recorded.get("weights_sha256"):  # random: its state dict's hash, as ever
                raise exc from None
            log.info("encoder '%s': the seeded random weights the model was trained on (%s)", name,
                     encoder.weights_source)
        elif opts.encoder is not None or bundled is not None or not isinstance(exc, UnknownEncoderNameError):
            raise
        else:
            raise no_encoder_folder(name, recorded, opts) from None
    recorded_card = recorded.get("card")
    if isinstance(recorded_card, dict):  # the features' stain normalisation (embed --stain-norm)
        from weakstil.embed import with_stain_norm

        with_stain_norm(encoder, recorded_card.get("stain_norm") or "none")
    check_trained_weights(f"'{name}'", {"weights_sha256": encoder.weights_sha256,
                                        "weights_file_sha256": encoder.weights_file_sha256}, meta, opts)
    check_batch_memory(encoder, opts, int(meta.get("tiling", {}).get("tile_px") or settings.TILE_PX))
    return encoder


def no_encoder_folder(name: str, recorded: dict, opts: ScoreOptions) -> WeakSTILError:
    """The error of a model whose recorded encoder is no built-in one and that has no ``encoder/``."""
    # the folder cannot tell a model copied without its encoder/ from one trained without it: both
    # are said (it blamed training alone, for a model folder copied without encoder/)
    return WeakSTILError(f"the model was trained on features of the encoder '{name}' (weights "
                         f"{str(recorded.get('weights_sha256'))[:12]}), not a built-in one, and has no "
                         "encoder/ folder (copied without it, or trained from features whose encoder "
                         "folder was not found)", path=opts.model,
                         fix="copy the whole model folder again, with its encoder/, or pass --encoder DIR: "
                         "the 'weakstil pretrain' folder the features were made with")


def check_recorded_card(opts: ScoreOptions, meta: dict) -> None:
    """Without ``--encoder`` and a bundled ``encoder/``, the card ``model.json`` names must be found (a
    name lookup, nothing built): a model folder copied without its encoder/ wrote the same error line
    once per slide, on through a whole batch (hunt 38b: 10 of 10 slides, an error row each)."""
    from weakstil.encoders.cards import UnknownEncoderNameError, load_card

    recorded = meta.get("encoder") or {}
    name = recorded.get("name")
    if not name:
        raise WeakSTILError("the model does not record its encoder", path=opts.model, fix="pass --encoder")
    try:
        load_card(str(name))
    except WeakSTILError as exc:  # what building it would raise for every slide (load_scoring_encoder)
        raise (no_encoder_folder(str(name), recorded, opts) if isinstance(exc, UnknownEncoderNameError) else exc) from None


def load_or_failure(opts: ScoreOptions, meta: dict):
    """:func:`load_scoring_encoder`, or the :class:`WeakSTILError` it raised (kept by the caller, so
    a batch does not load changed hub weights again for every slide: 0.6-4 s each)."""
    try:
        return load_scoring_encoder(opts, meta)
    except WeakSTILError as exc:
        return exc


def check_hub_weights_cached(meta: dict) -> None:
    """Offline (``HF_HUB_OFFLINE``), the weights of the hub encoder the model records must be in the
    Hugging Face cache: said once, before any slide, not as an error row per slide. A path lookup,
    nothing loaded or hashed (a rerun whose slides are all scored never builds the encoder)."""
    from weakstil.encoders.cards import load_card
    from weakstil.encoders.factory import hub_offline, hub_weights_path

    try:
        card = load_card(str(meta.get("encoder", {}).get("name")))
    except WeakSTILError:
        return  # not a built-in card: a folder, said when built
    if card.hub_id and hub_offline():
        hub_weights_path(card)  # raises when they are not cached


def check_encoder_files(opts: ScoreOptions, meta: dict) -> None:
    """Before any slide is scored (and before ``--out`` is written): the bundled encoder, or an
    ``--encoder`` folder, whose weights file is missing, modified or not the one the model was
    trained on is the command's fault, not each slide's. Hashes the file and builds nothing: the
    encoder itself is built on the first slide that needs embedding."""
    from pathlib import Path

    from weakstil.encoders.factory import check_encoder_folder
    from weakstil.errors import UsageError

    folder = opts.encoder if opts.encoder is not None else ModelDir(opts.model).bundled_encoder
    if opts.encoder is not None and not Path(opts.encoder).is_dir():
        check_encoder_name(str(opts.encoder), meta, opts)
    if folder is None:
        check_recorded_card(opts, meta)
    if folder is None and opts.weights is None:
        check_hub_weights_cached(meta)
    if opts.weights is not None or folder is None or not Path(folder).is_dir():
        return  # --weights FILE, a built-in or hub encoder: checked when built
    error = UsageError if opts.encoder is not None else WeakSTILError
    from weakstil.encoders.cards import CARD_FILE

    if opts.encoder is None and not (Path(folder) / CARD_FILE).is_file():  # MODEL/encoder copied without its card
        raise WeakSTILError(f"the model's bundled encoder has no {CARD_FILE}", path=Path(folder) / CARD_FILE,
                            fix="copy the whole model folder again (its encoder/ holds card.yaml and model.safetensors)")
    sha = check_encoder_folder(folder)
    if sha:
        from weakstil.encoders.factory import MODEL_FILE, read_state_dict
        from weakstil.weights_id import FILE_ATTR, TENSORS_ATTR, same_weights, sha256_tensors

        enc = meta.get("encoder") or {}
        got = {"weights_sha256": sha}  # the file's hash: what a model trained before hunt 24 records
        if not same_weights(got, enc) or not enc.get(FILE_ATTR):  # else the tensors' (a newer model's)
            try:
                got = {"weights_sha256": sha256_tensors(read_state_dict(Path(folder) / MODEL_FILE)), FILE_ATTR: sha}
            except WeakSTILError:  # no weights file at all (another model's damaged one): said as not the model's
                pass
            if same_weights({"weights_sha256": sha}, enc) and not enc.get(FILE_ATTR) and FILE_ATTR in got:
                # a model from before hunt 24, its own weights file: features made from the same tensors
                # in another container (embedded since, recording their hash) fit it too (in memory only)
                enc[TENSORS_ATTR] = got["weights_sha256"]
        check_trained_weights(str(folder), got, meta, opts, error, fix=None if opts.encoder is not None else
                              f"{folder} was replaced (by another model's?): copy the whole model folder again, "
                              "or pass --encoder DIR, the 'weakstil pretrain' folder the model was trained with")
    check_trained_card(Path(folder), meta, error)


def check_trained_card(folder, meta: dict, error: type[WeakSTILError] = WeakSTILError) -> None:
    """Refuse an encoder folder whose card says otherwise than the card the model recorded (its
    features were made with that one) in :data:`~weakstil.mil.identity.CARD_FIELDS` and ``embed_dim``: the
    same weights give other features (an outside tester's mean 0.485 -> 0.2 scored 2.98 % for 10.41 %); an
    edited embed_dim was an error row per slide of a batch, each the same (hunt 41b)."""
    from weakstil.encoders.cards import CARD_FILE, load_card
    from weakstil.mil.identity import CARD_FIELDS, card_changes

    recorded = meta.get("encoder", {}).get("card")
    if not isinstance(recorded, dict):
        return
    card = load_card(folder).to_dict()
    changed = [f"{key} {card[key]} (trained with {recorded[key]})" for key in card_changes(card, recorded, (*CARD_FIELDS, "embed_dim"))]
    if changed:
        raise error(f"says {'; '.join(changed)}: not the card the model's features were made with", path=folder / CARD_FILE,
                    fix="restore the encoder's card.yaml (or retrain on features embedded with this card)")


def check_encoder_name(name: str, meta: dict, opts: ScoreOptions) -> None:
    """An ``--encoder`` named by card that is not the encoder the model records is refused by name,
    before it is built (offline, its error spoke of downloading weights the model cannot use)."""
    from weakstil.encoders.cards import load_card
    from weakstil.errors import UsageError

    recorded = meta.get("encoder", {}).get("name")
    try:
        card = load_card(name).name
    except WeakSTILError:
        return  # an unknown name: said when it is built
    if recorded and card != recorded:
        raise UsageError(f"--encoder '{name}' is not the encoder the model was trained on ('{recorded}')",
                         path=opts.model, fix="leave out --encoder (the model's own is used), or pass the encoder "
                                              "folder the model was trained with")


def check_trained_weights(name: str, got: dict, meta: dict, opts: ScoreOptions,
                          error: type[WeakSTILError] = WeakSTILError, fix: str | None = None) -> None:
    """Refuse an encoder whose weights (``got``: its ``weights_sha256`` and ``weights_file_sha256``)
    are not the ones the model recorded (when it recorded them): the tensors' hash, or the weights
    file's for a model trained before hunt 24 (:mod:`weakstil.weights_id`)."""
    from weakstil.weights_id import same_weights

    want = meta.get("encoder", {}).get("weights_sha256")
    sha = str(got["weights_sha256"])
    if want and not same_weights(got, meta["encoder"]):
        raise error(f"encoder {name} has weights {sha[:12]} but the model was trained on {str(want)[:12]}",
                    path=opts.model, fix=fix or "pass the encoder the model was trained with (--encoder DIR / "
                                                "--weights FILE)")


def check_batch_memory(encoder, opts: ScoreOptions, tile_px: int) -> None:
    """Refuse a --batch-size whose tiles and activations do not fit (a usage error, not a slide's)."""
    from weakstil.resources import activation_cost, check_memory, decode_ring_slots, embed_bytes

    cost = activation_cost(encoder.model, encoder.input_px, encoder.input_px, card=encoder.card)
    buffers = decode_ring_slots(opts.batch_size, tile_px, opts.workers)
    check_memory(embed_bytes(cost, opts.batch_size, tile_px, encoder.input_px, buffers), encoder.device,
                 what=f"scoring with batches of {opts.batch_size} tiles of {tile_px} px", fix="lower --batch-size")


class LazyEncoder:
    """Looks like an Encoder to embed_slide (the planner sets its micro-batch) but builds the real
    one on first use, so a rerun whose slides are all already scored never loads its weights."""

    def __init__(self, ctx: Any):  # weakstil.score._Context
        object.__setattr__(self, "_ctx", ctx)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._ctx.encoder(), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._ctx.encoder(), name, value)
