"""The folder of a trained model, the one place that knows its layout::

    MODEL/model.safetensors, MODEL/model.json   the MIL regressor (weakstil.mil.store)
    MODEL/encoder/                              the encoder, bundled when it is a local folder
                                                (a 'weakstil pretrain' output: card.yaml + weights)
    MODEL/tumorbed/                             the tumour-bed detector, bundled when one was given
    MODEL/cv/oof_predictions.csv                out-of-fold predictions of the cross-validation,
    MODEL/cv/metrics.json, metrics.csv, calibration.csv, scatter.png, roc.png (+ metrics_by_group.csv with groups)
    MODEL/cv/tiles/<slide_id>.h5                out-of-fold tile scores (weakstil.files.TileScoresFile)
    MODEL/folds/fold_<k>.safetensors            the cross-validation fold models (listed with their
                                                SHA-256 under ``folds`` in model.json)
    MODEL/qc/calibration.json                   the sTIL% interval's calibration (weakstil.confidence)
    MODEL/qc/reference.json                     what the qc flags compare a slide with (weakstil.qc)
    MODEL/qc/embeddings.safetensors             reference tile embeddings of the OOD score
    MODEL/qc/training_slides.csv                every training slide's out-of-fold interval, OOD
                                                score, image statistics and flags

``weakstil score`` uses a bundled encoder and detector unless told otherwise, so a model
folder copied to another machine scores slides on its own.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path

from weakstil.errors import WeakSTILError
from weakstil.settings import STIL_RANGE

log = logging.getLogger(__name__)

WEIGHTS_FILE = "model.safetensors"
META_FILE = "model.json"
ENCODER_DIR = "encoder"
TUMORBED_DIR = "tumorbed"
CV_DIR = "cv"
TILES_DIR = "tiles"
OOF_FILE = "oof_predictions.csv"
FOLDS_DIR = "folds"
QC_DIR = "qc"
CALIBRATION_FILE = "calibration.json"
QC_REFERENCE_FILE = "reference.json"
EMBEDDINGS_FILE = "embeddings.safetensors"
QC_SLIDES_FILE = "training_slides.csv"


#: Sections of ``model.json`` that are JSON objects (read with ``.get()`` by score, evaluate and report).
META_SECTIONS = ("encoder", "tiling", "training", "qc", "architecture", "features")


def check_meta(meta: object, path: Path, fix: str) -> dict:
    """``model.json``'s content when it has the shape ``weakstil train`` writes (an object whose
    sections are objects); one error line when it was edited or damaged into another shape."""
    if not isinstance(meta, dict):
        raise WeakSTILError(f"{META_FILE} is not a JSON object (it holds a {type(meta).__name__})", path=path, fix=fix)
    if meta.get("kind") == "weakstil-tumorbed":  # the two folders look alike: say which one this is
        raise WeakSTILError("is a tumour-bed detector (from 'weakstil tumorbed train'), not an sTIL model",
                            path=path.parent, fix="pass it as --tumorbed; --model takes the --out of 'weakstil train'")
    for section in META_SECTIONS:
        if section in meta and not isinstance(meta[section], dict):
            raise WeakSTILError(f"{META_FILE} '{section}' is not a JSON object", path=path, fix=fix)
    tiling = meta.get("tiling") or {}
    for key, whole in (("mpp", False), ("tile_px", True)):  # the model's tiles: read as numbers by score
        value = tiling.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not 0 < value < math.inf or (whole and value != int(value))):  # NaN: int(NaN) raised
            raise WeakSTILError(f"{META_FILE} tiling {key} {_json(value)} is not a positive "
                                f"{'whole number' if whole else 'number'}", path=path,
                                fix="set it back to what 'weakstil train' wrote, or train the model again")
    _check_own_record(meta, path)
    threshold = meta.get("threshold")  # absent: an older model, read as 30; null: edited (it was read as no number)
    if "threshold" in meta and (isinstance(threshold, bool) or not isinstance(threshold, (int, float))
                                  or not STIL_RANGE[0] <= threshold <= STIL_RANGE[1]):  # NaN fails too
        raise WeakSTILError(f"{META_FILE} threshold {_json(threshold)} is not an sTIL% from 0 to 100", path=path,
                            fix="set it back to a number from 0 to 100, as 'weakstil train' wrote it")
    if "threshold" in meta and 0 < threshold < 1:  # as --threshold refuses it: 30 % written as a fraction
        raise WeakSTILError(f"{META_FILE} threshold {_json(threshold)} looks like a fraction, but the threshold is a "
                            f"percentage (at {threshold:g} % nearly every slide is sTIL-high)", path=path,
                            fix=f"write it as a percentage ({threshold * 100:g} for {threshold * 100:g} %)")
    return meta


def _json(value: object) -> str:
    """``value`` as model.json writes it (null, "text", NaN), not as Python prints it (None, 'text', nan)."""
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return str(value)


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _check_own_record(meta: dict, path: Path) -> None:
    """One error naming ``model.json`` when an edit left it disagreeing with itself: its tiles'
    ``tiling`` mpp / tile_px against the tiling ``key`` train wrote beside them (an edited mpp was blamed
    on "the bundled detector (replaced?)"), or ``architecture`` tile_stats against its input_dim and
    the encoder's embed_dim (``tile_stats: false`` was blamed on every slide's feature cache)."""
    fix = f"set it back to what 'weakstil train' wrote (copy {META_FILE} or the whole model folder again), or train " \
          "the model again"
    tiling = meta.get("tiling") or {}
    key = tiling.get("key") if isinstance(tiling.get("key"), dict) else {}
    for name in ("mpp", "tile_px"):
        said, made = _number(tiling.get(name)), _number(key.get(name))
        if said is not None and made is not None and abs(said - made) > 1e-6 * max(1.0, abs(made)):
            raise WeakSTILError(f"{META_FILE} tiling {name} {tiling[name]!r} is not that of the tiles the model was "
                                f"trained on ({key[name]!r}, its tiling key)", path=path, fix=fix)
    arch = meta.get("architecture") or {}
    card = (meta.get("encoder") or {}).get("card")
    dim, width = _number(arch.get("input_dim")), _number(card.get("embed_dim")) if isinstance(card, dict) else None
    width = width * (2 if card.get("pooling") == "cls_mean_patch" else 1) if width is not None else None  # CLS ‖ mean
    stats = arch.get("tile_stats")
    if dim is None or width is None or not isinstance(stats, bool) or stats == (dim > width):
        return
    raise WeakSTILError(f"{META_FILE} architecture tile_stats {str(stats).lower()} does not fit its input_dim "
                        f"{arch['input_dim']!r} (the encoder gives {width:g} values a tile"
                        f"{'' if stats else ': the rest are tile statistics'})", path=path, fix=fix)


#: What ``weakstil score`` and ``weakstil evaluate --model`` must know from ``model.json``: which
#: encoder made the features and of which tiles (no default can stand in for either).
SCORING_NEEDS = {"encoder": ("name", "weights_sha256"), "tiling": ("mpp", "tile_px")}


def check_scoring_meta(meta: dict, path: Path) -> dict:
    """``meta`` when it says which encoder and tiles the model was trained on; one error line naming
    ``model.json`` when a section or field was deleted (a missing tiling scored silently with the
    default tiles, a missing encoder blamed every slide's features)."""
    fix = f"copy {META_FILE} again from the folder 'weakstil train' wrote, or train the model again"
    for section, keys in SCORING_NEEDS.items():
        what = "the encoder and weights its features were made with" if section == "encoder" else \
            "the µm/px and tile size of its tiles"
        if section not in meta:
            raise WeakSTILError(f"{META_FILE} has no '{section}' section ({what}), so slides cannot be scored "
                                "as the model was trained", path=path, fix=fix)
        missing = [k for k in keys if meta[section].get(k) is None]
        if missing:
            raise WeakSTILError(f"{META_FILE} '{section}' has no {' or '.join(missing)} ({what})", path=path, fix=fix)
    return meta


def folder_of_file_fix(path: Path, option: str) -> str | None:
    """The fix for a folder option (``--model``, ``--tumorbed``) given a file inside a model or detector
    folder (``MODEL/model.json``, a dragged-in weights file): pass the folder it is in (an sTIL
    model's bundled detector for ``--tumorbed``), or given a subfolder of a model (``--model MODEL/cv``);
    ``None`` for a path in no such folder."""
    folder = ModelDir(path.parent)
    if not path.exists() or not folder.is_model():
        return None
    if path.is_dir():  # MODEL/cv, MODEL/folds, MODEL/encoder...: a folder inside the model
        return f"pass {option} {folder.root}, the model folder it is inside" if option == "--model" else None
    try:
        meta = json.loads(folder.meta_path.read_text(encoding="utf-8-sig"))
        kind = meta.get("kind") or meta.get("format")
    except (OSError, ValueError, AttributeError):
        kind = None
    if option == "--tumorbed" and kind == "weakstil-mil":
        return (f"pass {option} {folder.bundled_detector}, the detector bundled in that sTIL model"
                if folder.bundled_detector is not None else "pass the --out folder of 'weakstil tumorbed train'")
    if option == "--model" and kind == "weakstil-tumorbed":
        above = ModelDir(folder.root.parent)
        return (f"pass {option} {above.root}, the sTIL model this detector is bundled in" if above.is_model()
                else f"it is a tumour-bed detector's: pass --tumorbed {folder.root}; --model takes the --out of "
                     "'weakstil train'")
    return f"pass {option} {folder.root}, the folder it is in"


def meta_format_version(meta: dict, path: Path, default: int, fix: str,
                        error: type[WeakSTILError] = WeakSTILError) -> int:
    """``meta['format_version']`` (``default`` when absent) as a whole number; one ``error`` line
    when it was edited into anything else (a text, a fraction, true/false)."""
    version = meta.get("format_version", default)
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise error(f"{META_FILE} format_version {_json(version)} is not a whole number, 0 or more", path=path,
                    fix=fix)
    return version


@dataclass(frozen=True)
class ModelDir:
    """Paths inside a model folder (nothing is read until asked)."""

    root: Path

    def __init__(self, root: str | Path):
        object.__setattr__(self, "root", Path(root))

    @property
    def meta_path(self) -> Path:
        return self.root / META_FILE

    def model_id(self, meta: dict) -> str:
        """How results name the model: its folder and the start of its weights' SHA-256 (``results.csv``
        ``model_id``, an evaluation's metrics)."""
        return f"{self.root.resolve().name}@{str(meta.get('weights_sha256'))[:12]}"

    @property
    def weights_path(self) -> Path:
        return self.root / WEIGHTS_FILE

    @property
    def encoder_dir(self) -> Path:
        return self.root / ENCODER_DIR

    @property
    def tumorbed_dir(self) -> Path:
        return self.root / TUMORBED_DIR

    @property
    def cv_dir(self) -> Path:
        return self.root / CV_DIR

    @property
    def oof_path(self) -> Path:
        return self.cv_dir / OOF_FILE

    @property
    def folds_dir(self) -> Path:
        return self.root / FOLDS_DIR

    def fold_path(self, k: int, member: int | None = None) -> Path:
        """The ``k``-th cross-validation fold model (from 1); its ``member``-th (from 1) of several."""
        return self.folds_dir / (f"fold_{k}.safetensors" if member is None else f"fold_{k}_{member}.safetensors")

    @property
    def qc_dir(self) -> Path:
        return self.root / QC_DIR

    @property
    def calibration_path(self) -> Path:
        return self.qc_dir / CALIBRATION_FILE

    @property
    def qc_reference_path(self) -> Path:
        return self.qc_dir / QC_REFERENCE_FILE

    @property
    def embeddings_path(self) -> Path:
        return self.qc_dir / EMBEDDINGS_FILE

    @property
    def qc_slides_path(self) -> Path:
        return self.qc_dir / QC_SLIDES_FILE

    def cv_tile_scores(self, slide_id: str) -> Path:
        """The out-of-fold tile scores of one slide."""
        from weakstil.files import slide_file

        return slide_file(self.cv_dir / TILES_DIR, slide_id)

    def is_model(self) -> bool:
        return self.meta_path.is_file()

    @property
    def bundled_encoder(self) -> Path | None:
        """``MODEL/encoder`` when the model carries its encoder."""
        return self.encoder_dir if self.encoder_dir.is_dir() else None

    @property
    def bundled_detector(self) -> Path | None:
        """``MODEL/tumorbed`` when the model carries a tumour-bed detector: when either of its two
        files is there (one lost in a copy is an error when it is loaded, not a model that silently
        bundles no detector and scores every slide over the whole tissue)."""
        return self.tumorbed_dir if any((self.tumorbed_dir / name).is_file() for name in (META_FILE, WEIGHTS_FILE)) \
            else None

    def read_meta(self, fix: str = "pass the directory written by 'weakstil train'") -> dict:
        """``model.json`` as a dict; one error line when it is missing or not JSON (a usage error when
        the folder given is a file: ``MODEL/model.json``)."""
        if self.root.is_file():
            from weakstil.errors import UsageError

            raise UsageError("is a file, not the model directory", path=self.root,
                             fix=folder_of_file_fix(self.root, "--model") or fix)
        if not self.meta_path.is_file():
            inner = ModelDir(self.root / "model")  # `weakstil demo --out D` puts its model in D/model
            raise WeakSTILError(f"{META_FILE} not found", path=self.meta_path,
                                fix=f"pass {inner.root}, the model folder inside it" if inner.is_model() else
                                folder_of_file_fix(self.root, "--model") or fix)
        try:
            meta = json.loads(self.meta_path.read_text(encoding="utf-8-sig"))  # (a BOM: saved by Notepad)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise WeakSTILError(f"{META_FILE} is not valid JSON ({exc})", path=self.meta_path, fix=fix) from None
        meta = check_meta(meta, self.meta_path, fix)
        from weakstil.mil.meta_schema import check_model_fields, newer_format

        if not newer_format(meta):  # the types load_model checks, for the readers of the record (report): a 'folds'
            check_model_fields(meta, self.meta_path, required_too=False)  # "5" was read as 5 folds (helper h43d)
        return meta

    def bundle_for_scoring(self, features_dir: str | Path, tumorbed: str | Path | None = None) -> list[str]:
        """Make the model self-contained for ``weakstil score``: copy a local encoder (the
        ``weakstil pretrain`` folder the features were made with) into ``encoder/`` and a
        tumour-bed detector into ``tumorbed/``. Returns what was bundled."""
        import shutil

        from weakstil.encoders.cards import CARD_FILE
        from weakstil.encoders.factory import MODEL_FILE as MODEL_WEIGHTS_FILE
        from weakstil.files import FeaturesFile

        bundled = []
        first = next(iter(sorted(Path(features_dir).glob("*.h5"))), None)
        if first is not None:
            attrs, _ = FeaturesFile.read_header(first)
            source = Path(str(attrs.get("weights_source", "")))
            if source.is_file() and (source.parent / CARD_FILE).is_file():
                self.encoder_dir.mkdir(parents=True, exist_ok=True)
                for name in (CARD_FILE, source.name):
                    shutil.copy2(source.parent / name, self.encoder_dir / name)
                bundled.append("encoder")
            elif source.name == MODEL_WEIGHTS_FILE:  # a 'weakstil pretrain' folder that is not where it was
                log.warning("the encoder the features were made with (%s) is not found, so the model does not "
                            "bundle it; score with --encoder DIR (that 'weakstil pretrain' folder)", source)
        if tumorbed is not None and Path(tumorbed).resolve() != self.tumorbed_dir.resolve():
            shutil.copytree(tumorbed, self.tumorbed_dir, dirs_exist_ok=True)
            bundled.append("tumorbed")
        return bundled
