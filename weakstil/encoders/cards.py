"""Encoder cards: one YAML file per tile encoder, saying how to build it and how to feed it.

The built-in cards live in ``weakstil/encoders/cards/*.yaml`` (shipped with the package);
``weakstil pretrain`` writes a ``card.yaml`` next to its ``model.safetensors``. Fields:

=================  ==================================================================
``name``           registry name (``weakstil embed --encoder NAME``)
``source``         ``timm`` (``timm.create_model(model, **model_kwargs)``) or ``weakstil``
``model``          timm architecture name, or a WeakSTIL model (``small_cnn``)
``model_kwargs``   keyword arguments for the constructor; ``"@Name"`` strings name an
                   allow-listed layer (:data:`weakstil.encoders.layers.LAYER_NAMES`)
``hub_id``         ``hf-hub:org/repo`` holding the weights, or null
``input_px``       side of the square input in pixels
``mpp``            µm/px the encoder was trained at
``mean``/``std``   per-channel normalisation of RGB in [0, 1]
``embed_dim``      length of the tile embedding
``pooling``        ``default`` (model output) or ``cls_mean_patch`` (CLS ‖ mean patch token)
``precision``      ``fp32``, ``bf16`` or ``fp16``: autocast dtype on CUDA (CPU runs fp32)
``licence``        licence of the weights; ``gated``: true when the hub asks for a login
``weights_sha256`` sha256 of the weights file when the weights are local (pretrain output)
``status``         ``ok``, ``experimental`` (unverified) or ``unsupported``
``stain_norm``     optional: ``macenko`` re-renders every tile with reference stain vectors
                   (per-slide estimate, :mod:`weakstil.stain`) before the network; absent = none
=================  ==================================================================
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from weakstil.errors import UsageError, WeakSTILError

PRECISIONS = ("fp32", "bf16", "fp16")
POOLINGS = ("default", "cls_mean_patch")
SOURCES = ("timm", "weakstil")
STATUSES = ("ok", "experimental", "unsupported")
CARD_FILE = "card.yaml"
_SHA_RE = re.compile(r"^[0-9a-f]{64}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]*$")


class CardError(WeakSTILError):
    """An encoder card is missing, unknown or invalid."""


class UnknownEncoderError(CardError, UsageError):
    """An encoder name that is no built-in card, folder or card file: the command line is wrong (exit 2)."""


class UnknownEncoderNameError(UnknownEncoderError):
    """A bare name that is no built-in card (not a path, a file, a hub id or a timm architecture): what a model
    records of an encoder from 'weakstil pretrain', whose folder the model should bundle. Scoring tells this one
    by its class (it matched the text 'unknown encoder' in the message until helper h39d)."""


@dataclass(frozen=True, kw_only=True)
class EncoderCard:
    name: str
    description: str = ""
    source: str
    model: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    hub_id: str | None = None
    input_px: int
    mpp: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    embed_dim: int
    pooling: str = "default"
    precision: str = "fp32"
    licence: str = "unknown"
    gated: bool = False
    weights_sha256: str | None = None
    status: str = "ok"
    notes: str = ""
    #: tile stain normalisation before the network (None/"none": off; "macenko")
    stain_norm: str | None = None
    #: for cards written by ``weakstil pretrain``: the card it started from and how it was trained
    base: str | None = None
    training: dict[str, Any] | None = None
    #: where the card was read from (not part of the card's content)
    path: str | None = field(default=None, compare=False)

    # -- conversions ---------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("path")
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return {k: v for k, v in d.items() if v is not None}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def summary(self) -> str:
        """One line for ``weakstil encoders``: name, architecture, size, input, precision, weights, licence."""
        weights = self.hub_id or "none published (train with 'weakstil pretrain')"
        flags = ", ".join(x for x in ("gated" if self.gated else "", self.status if self.status != "ok" else "") if x)
        return (f"{self.name:<20} {self.model:<28} {self.embed_dim:>5}-d  {self.input_px} px @ {self.mpp:g} µm/px  "
                f"{self.precision:<4}  {weights}  [{self.licence}]" + (f"  ({flags})" if flags else ""))

    @property
    def hub_repo(self) -> str | None:
        """``org/repo`` of :attr:`hub_id`."""
        if not self.hub_id:
            return None
        return self.hub_id.split(":", 1)[1]

    @classmethod
    def from_dict(cls, data: Any, path: str | Path | None = None) -> EncoderCard:
        """Validate ``data`` (a parsed YAML mapping); raises :class:`CardError`."""
        where = str(path) if path else "card"
        fix = "see weakstil/encoders/cards.py for the card fields"

        def bad(message: str, how: str = fix) -> CardError:
            return CardError(message, path=where, fix=how)

        if not isinstance(data, dict):
            raise bad("an encoder card must be a YAML mapping")
        known = {f for f in cls.__dataclass_fields__ if f != "path"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise bad(f"unknown card field(s) {', '.join(unknown)}")
        for key in ("name", "source", "model", "input_px", "mpp", "mean", "std", "embed_dim"):
            if data.get(key) is None:
                raise bad(f"missing required field '{key}'")
        d = dict(data)
        if not isinstance(d["name"], str) or not _NAME_RE.match(d["name"]):
            raise bad(f"name {d['name']!r} must be letters, digits, '.', '_', '+' or '-'")
        if d["source"] not in SOURCES:
            raise bad(f"source must be one of {', '.join(SOURCES)}, not {d['source']!r}")
        for key in ("input_px", "embed_dim"):
            if not isinstance(d[key], int) or isinstance(d[key], bool) or d[key] <= 0:
                raise bad(f"{key} must be a positive integer, not {d[key]!r}")
        try:
            d["mpp"] = float(d["mpp"])
        except (TypeError, ValueError):
            raise bad(f"mpp must be a number, not {d['mpp']!r}") from None
        if not 0.05 <= d["mpp"] <= 20:
            raise bad(f"mpp {d['mpp']} is outside 0.05-20 µm/px")
        for key in ("mean", "std"):
            v = d[key]
            if not isinstance(v, (list, tuple)) or len(v) != 3 or not all(
                    isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
                raise bad(f"{key} must be a list of 3 numbers, not {v!r}")
            d[key] = tuple(float(x) for x in v)
        if min(d["std"]) <= 0:
            raise bad("std values must be positive")
        # tiles are scaled to [0, 1] before (x - mean) / std: a mean/std on the 0-255 scale (mmcv's 123.675...)
        # turned every tile into nearly the same input, and embed ran on with features that were noise
        if max(d["mean"]) > 1 or min(d["mean"]) < 0 or max(d["std"]) > 1:
            scaled = max(*d["mean"], *d["std"]) > 1 and min(*d["mean"], *d["std"]) >= 0
            # only the list on the 0-255 scale is divided: a 0-1 std beside a 0-255 mean was divided too
            # (std 0.229 -> 0.0009, which would blow every tile up 255-fold)
            on_255 = [k for k in ("mean", "std") if max(d[k]) > 1]
            unit = {k: [round(x / 255, 4) for x in d[k]] if k in on_255 else list(d[k]) for k in ("mean", "std")}
            which = on_255[0] if len(on_255) == 1 else "them"
            raise bad(f"mean {list(d['mean'])} / std {list(d['std'])} are not on the [0, 1] scale of RGB the tiles "
                      "are normalised on" + (" (0-255 values?)" if scaled else ""),
                      f"divide {which} by 255: mean: {unit['mean']}, std: {unit['std']}" if scaled else
                      "give mean in 0-1 and std in (0, 1], as for RGB scaled to [0, 1]")
        if d.get("pooling", "default") not in POOLINGS:
            raise bad(f"pooling must be one of {', '.join(POOLINGS)}, not {d['pooling']!r}")
        if d.get("precision", "fp32") not in PRECISIONS:
            raise bad(f"precision must be one of {', '.join(PRECISIONS)}, not {d['precision']!r}")
        if d.get("status", "ok") not in STATUSES:
            raise bad(f"status must be one of {', '.join(STATUSES)}, not {d['status']!r}")
        if d.get("stain_norm") not in (None, "none", "macenko"):
            raise bad(f"stain_norm must be none or macenko, not {d['stain_norm']!r}")
        if d.get("stain_norm") == "none":
            d["stain_norm"] = None
        hub = d.get("hub_id")
        if hub is not None and (not isinstance(hub, str) or not re.match(r"^hf-hub:[\w.\-]+/[\w.\-]+$", hub)):
            raise bad(f"hub_id must look like 'hf-hub:org/repo', not {hub!r}")
        sha = d.get("weights_sha256")
        if sha is not None and (not isinstance(sha, str) or not _SHA_RE.match(sha)):
            raise bad("weights_sha256 must be 64 lowercase hex digits")
        kwargs = d.get("model_kwargs") or {}
        if not isinstance(kwargs, dict):
            raise bad("model_kwargs must be a mapping")
        d["model_kwargs"] = kwargs
        if "gated" in d and not isinstance(d["gated"], bool):
            raise bad("gated must be true or false")
        return cls(**d, path=str(path) if path else None)


# -- the registry of built-in cards ----------------------------------------------------
def _card_dir():
    return resources.files("weakstil.encoders") / "cards"


def builtin_card_names() -> list[str]:
    return sorted(p.name[:-5] for p in _card_dir().iterdir() if p.name.endswith(".yaml"))


def read_card_file(path: str | Path) -> EncoderCard:
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CardError("card file not found", path=path, fix="check the path") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        from weakstil.pipeline_yaml import refused_tag

        if (refused := refused_tag(exc, "an encoder card")) is not None:
            raise CardError(refused[0], path=path, fix=refused[1]) from None
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise CardError(f"card is not valid YAML{where}", path=path, fix="fix the YAML syntax") from None
    return EncoderCard.from_dict(data, path=path)


def load_card(name_or_path: str | Path) -> EncoderCard:
    """A built-in card by name, a ``card.yaml`` file, or a directory holding ``card.yaml``.

    A directory without ``card.yaml`` that has a built-in card's name (e.g. ``embed -o small-cnn
    -e small-cnn`` made it) does not hide the built-in card; given as a path (``./small-cnn``) it
    is an error."""
    text = str(name_or_path)
    if not text.strip():  # `--encoder ""` was Path('.'): ". has no card.yaml" (exit 1), a folder never meant
        raise UnknownEncoderError("empty encoder name", path=None,
                                  fix=f"pass --encoder NAME: one of {', '.join(builtin_card_names())}, a 'weakstil "
                                      "pretrain' output directory, or a card.yaml file")
    path = Path(text)
    if path.is_dir() and (path / CARD_FILE).exists():
        return read_card_file(path / CARD_FILE)
    if path.is_file() and path.suffix in (".yaml", ".yml"):
        return read_card_file(path)
    names = builtin_card_names()
    if path.is_dir() and text not in names:  # built-in names have no '/' and start with a letter or digit
        inner = path / "encoder"  # a model folder (train bundles its encoder) or a demo folder
        fix = (f"pass {inner}, the encoder folder inside it" if (inner / CARD_FILE).is_file() else
               _pretrain_folder_fix(path) or _checkpoint_folder_fix(path) or "pass a 'weakstil pretrain' output directory or a built-in encoder name")
        raise CardError(f"directory has no {CARD_FILE}", path=path, fix=fix)
    if text in names:
        resource = _card_dir() / f"{text}.yaml"
        with resources.as_file(resource) as p:
            card = read_card_file(p)
        if card.name != text:
            raise CardError(f"built-in card file {text}.yaml is named {card.name!r}", path=resource,
                            fix="make the file name match the card name")
        return card
    if path.is_file():  # e.g. the weights given to --encoder
        raise UnknownEncoderError("is a file but not an encoder card (a card file ends in .yaml or .yml)", path=path,
                                  fix="pass a card.yaml file, a 'weakstil pretrain' output directory or a built-in "
                                      "encoder name to --encoder (weights files go to --weights)")
    if _HUB_ID.match(text) and not path.exists():  # a hub id, read as a path by the check below
        _refuse_hub_id(text)
    if "/" in text or "\\" in text or path.suffix.lower() in (".yaml", ".yml"):  # a path, not a name
        raise UnknownEncoderError("no such card file or encoder folder", path=text,
                                  fix="check the path, or use a built-in encoder name: " + ", ".join(names))
    near = _near_name(text, names)
    if not near:
        _refuse_timm_name(text)
    raise UnknownEncoderNameError(f"unknown encoder {text!r}" + (f" (did you mean {near!r}?)" if near else ""), path=None,
                              fix=f"pass --encoder {near} (or a 'weakstil pretrain' output directory or a card.yaml "
                                  "file)" if near else
                              f"use one of {', '.join(names)}, a 'weakstil pretrain' output directory, or a "
                              "card.yaml file (for a timm or hf-hub: model: docs/encoders.md)")


def _near_name(text: str, names: list[str]) -> str | None:
    """The built-in name ``text`` misspells: another case or spaces (``UNI``, ``'small-cnn '``), or one close
    edit away (``virchov``); names are exact, so ``UNI`` was only 'unknown encoder' beside a list."""
    import difflib

    folded = {n.casefold(): n for n in names}
    key = "".join(text.split()).casefold().replace("_", "-")
    if key in folded:
        return folded[key]
    close = difflib.get_close_matches(key, list(folded), n=1, cutoff=0.8)
    return folded[close[0]] if close else None


_HUB_ID = re.compile(r"^(hf[-_]hub|timm):", re.IGNORECASE)
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")


def _pretrain_folder_fix(path: Path) -> str | None:
    """The fix for a ``weakstil pretrain`` folder (``checkpoint.json``) that lost its ``card.yaml``:
    ``--resume`` writes it again, the same. It was told to write a timm card (``source: timm``), which
    for a small-cnn run names no network that fits its weights."""
    try:
        state = json.loads((path / "checkpoint.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    config = state.get("config") if isinstance(state, dict) else None
    base = config.get("encoder") if isinstance(config, dict) else \
        (m.group(1) if (m := re.search(r"'encoder': '([^']*)'", str(config))) else None)
    slides = state.get("slides") if isinstance(state.get("slides"), list) else []
    names = ", ".join(map(str, slides[:3])) + (", ..." if len(slides) > 3 else "")
    return (f"it is a 'weakstil pretrain' folder (checkpoint.json{f' of {base}' if base else ''}); copy it again whole, "
            f"or write the card again with `weakstil pretrain SLIDES -o {path} -e {base or 'ENCODER'} --resume` "
            f"(its slides: {names or 'those of the run'}; a finished run's weights are not changed)")


def _checkpoint_folder_fix(path: Path) -> str | None:
    """The fix for a folder of a checkpoint without ``card.yaml`` (a timm ``save_pretrained`` folder,
    ``config.json`` + ``model.safetensors``): the card to write into it, with what timm's
    ``config.json`` says filled in. It was told to pass a pretrain folder or a built-in name."""
    weights = sorted(p.name for p in path.iterdir() if p.is_file() and p.suffix.lower() in _WEIGHT_SUFFIXES)
    if not weights:
        return None
    try:
        config = json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    config = config if isinstance(config, dict) else {}
    pretrained = config.get("pretrained_cfg") if isinstance(config.get("pretrained_cfg"), dict) else {}
    size = pretrained.get("input_size")
    fields = [f"model: {config['architecture']}" if isinstance(config.get("architecture"), str) else
              "model: <timm architecture>",
              f"input_px: {size[-1]}" if isinstance(size, list) and size else "input_px",
              "mpp", *(f"{k}: {pretrained[k]}" if isinstance(pretrained.get(k), list) else k for k in ("mean", "std")),
              f"embed_dim: {config['num_features']}" if isinstance(config.get("num_features"), int) else "embed_dim"]
    card = f"write {path / CARD_FILE} (name: {path.resolve().name}, source: timm, {', '.join(fields)}: docs/encoders.md)"
    if "model.safetensors" in weights:
        return f"{card}: its model.safetensors is then the encoder's weights"
    return f"{card} and pass --weights {path / weights[0]}"


def weights_path_problem(path: Path) -> tuple[str, str]:
    """(reason, fix) for a ``--weights`` that is no file; a hub id (``hf-hub:org/repo``) is named as one
    (it was 'weights file not found. Fix: check the --weights path')."""
    if _HUB_ID.match(str(path)) and not path.exists():
        return ("is a hub id, not a weights file (nothing was downloaded)",
                f"write it into the encoder card as hub_id: {path} and leave --weights out (the weights are then "
                "read from the Hugging Face cache: docs/encoders.md), or pass a downloaded weights file")
    return ("is a directory, not a weights file" if path.is_dir() else "weights file not found",
            "check the --weights path (a .safetensors file; a 'weakstil pretrain' folder goes to --encoder)")


def _refuse_timm_name(text: str) -> None:
    """``--encoder resnet18`` (a timm architecture, the natural try with ``--weights FILE``) is no card: the
    card to write, with timm's input size and mean/std for it. It was only 'unknown encoder' and the list."""
    try:
        import timm
        from timm.models import get_pretrained_cfg

        if not timm.is_model(text):
            return
        cfg = get_pretrained_cfg(text)
    except Exception:  # noqa: BLE001 - no timm, or a name it cannot parse: the generic line
        return
    size = f"input_px: {cfg.input_size[-1]}" if cfg and cfg.input_size else "input_px"
    norm = f"mean: {list(cfg.mean)}, std: {list(cfg.std)}" if cfg and cfg.mean and cfg.std else "mean, std"
    raise UnknownEncoderError(
        "is a timm architecture, not an encoder card", path=text,
        fix=f"write a card.yaml (name: my-{text.split('.')[0]}, source: timm, model: {text.split('.')[0]}, {size}, "
            f"mpp, {norm}, embed_dim: docs/encoders.md) and pass --encoder CARD.yaml --weights FILE")


def _refuse_hub_id(text: str) -> None:
    """``--encoder hf-hub:org/repo`` (or ``timm:arch``) is no card: name the built-in card with that hub
    id, or say how to write one (an id does not give the input size, µm/px, mean/std a card needs)."""
    import difflib

    ident = _HUB_ID.sub("", text).strip()
    if not ident:
        raise UnknownEncoderError("names no model after its prefix", path=text,
                                  fix=f"pass a built-in encoder name ({', '.join(builtin_card_names())}) or a card.yaml file")
    hubs = {_HUB_ID.sub("", c.hub_id).strip().lower(): c for c in list_cards() if c.hub_id}
    if ident.lower() in hubs:
        name = hubs[ident.lower()].name
        raise UnknownEncoderError(f"names the weights of the built-in encoder card {name!r}", path=text,
                                  fix=f"pass --encoder {name}")
    near = difflib.get_close_matches(ident.lower(), list(hubs), n=1, cutoff=0.9)
    if near:  # a typo of a built-in card's repository (hf-hub:MahmoodLab/unii) was told to write a card
        card = hubs[near[0]]
        raise UnknownEncoderError(f"is no built-in encoder's hub id (did you mean {card.hub_id}, the weights of "
                                  f"{card.name!r}?); nothing was downloaded", path=text,
                                  fix=f"pass --encoder {card.name} (for another repository, write a card.yaml "
                                      "with its hub_id: docs/encoders.md)")
    timm = text.lower().startswith("timm:")
    what = "a timm model name" if timm else "a Hugging Face hub id"
    fields = f"model: {ident}, hub_id: null" if timm else f"model: <timm architecture>, hub_id: hf-hub:{ident}"
    raise UnknownEncoderError(
        f"is {what}, not an encoder card (nothing was downloaded)", path=text,
        fix=f"write a card.yaml for it (name: {ident.rsplit('/', 1)[-1]}, source: timm, {fields}, input_px, mpp, mean, std, embed_dim: "
            "docs/encoders.md) and pass that file to --encoder")


def list_cards() -> list[EncoderCard]:
    return [load_card(n) for n in builtin_card_names()]
