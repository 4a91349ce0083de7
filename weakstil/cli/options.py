"""Every option of the ``weakstil`` commands, defined once (defaults from :mod:`weakstil.settings`),
so every command spells a flag the same way. Only typer and the standard library are imported
here: ``weakstil --help`` must answer in about a second.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import math
import os
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from weakstil import settings
from weakstil.decode.modes import DecodeMode
from weakstil.mil.config import Aggregator, Loss, Scoring, Stopping, StromaWeight
from weakstil.stain import StainNorm

log = logging.getLogger("weakstil")


# --- checks of values: a bad value is a usage error naming the option and its range (exit 2) ---------
def _num(x: float) -> str:
    return str(x) if isinstance(x, int) else f"{x:g}"


def in_range(low: float | None = None, high: float | None = None, *, low_open: bool = False,
             high_open: bool = False, unit: str = "", why: str = "") -> Callable[[Any], Any]:
    """A typer callback accepting finite numbers in ``[low, high]`` (``(`` / ``)`` when open);
    ``None`` (an option left out) passes. Tuples (``--size-mm W H``) are checked element-wise."""
    low_text = None if low is None else f"{'>' if low_open else '>='} {_num(low)}"
    high_text = None if high is None else f"{'<' if high_open else '<='} {_num(high)}"
    if low_text and high_text:
        allowed = f"from {_num(low)} to {_num(high)}" if not (low_open or high_open) else f"{low_text} and {high_text}"
    else:
        allowed = str(low_text or high_text)
    allowed += f" {unit}" if unit else ""

    def check(value: Any) -> Any:
        if value is None:
            return value
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise typer.BadParameter(f"{v} is not a finite number: must be {allowed}")
            bad = (low is not None and (v < low or (low_open and v == low)))
            bad = bad or (high is not None and (v > high or (high_open and v == high)))
            if bad:
                raise typer.BadParameter(f"{_num(v)} is out of range: must be {allowed}" + (f" ({why})" if why else ""))
        return value

    return check


def out_dir(value: Path | None) -> Path | None:
    """``--out``: a directory (made when missing), never an existing file, nor below one."""
    if value is None:
        return value
    if str(value).startswith("~") and not os.path.lexists(value):
        # a quoted '~/scores' (a script's OUT='~/scores'), as slide patterns read it: it made a folder named '~' in
        # the current folder and wrote there, exit 0, where the user then found no ~/scores (hunt 37c)
        value = value.expanduser()
    if value.exists() and not value.is_dir():
        raise typer.BadParameter(f"{value} is an existing file, not a directory. Fix: give a directory path")
    if value.is_symlink() and not value.exists():  # a link to a purged scratch folder: it said "File exists" (hunt 27a)
        from weakstil.slide import _is_link_loop

        target, loop = Path(os.path.join(value.parent, os.readlink(value))), _is_link_loop(value)
        raise typer.BadParameter(f"{value} is a symbolic link to {target}, " + (
            "which leads back to itself (a loop). Fix: point the link at a folder, or give another --out" if loop else
            f"which does not exist. Fix: create that folder (mkdir -p {target}), or give another --out"))
    if value.is_dir() and not os.access(value, os.W_OK | os.X_OK):
        # only its parent was checked: a non-root user's read-only --out failed each slide ("Permission
        # denied", 2 lines for one slide under score) and train replaced it (hunt 35c)
        from weakstil.errors import read_only_mount

        read_only = read_only_mount(value)  # chmod would not mend that
        raise typer.BadParameter(f"{value}: cannot write in it ({'a read-only file system' if read_only else 'no permission'})"
                                 ". Fix: " + ("" if read_only else f"make it writable (chmod u+w {value}) or ") +
                                 "choose another output directory")
    for parent in value.parents:
        if parent.exists():
            if not parent.is_dir():
                raise typer.BadParameter(f"{value}: {parent} is a file, not a directory. Fix: choose another output directory")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise typer.BadParameter(f"{value}: cannot write in {parent} (no permission, or a read-only file "
                                         "system). Fix: choose a writable output directory")
            break
    _try_a_folder_in(value)
    return value


def _try_a_folder_in(value: Path) -> None:
    """Make and remove a folder of a name of its own in ``--out``, or in its deepest existing parent when
    missing: a folder the permissions allow but the file system refuses (/proc/x, /sys/x, even as root) was
    found only after the encoder had loaded, with the fix "check the path" (hunt 44c). A name of its own, not
    ``--out`` itself: jobs of one cohort may make and fill the same ``--out`` at once."""
    import uuid

    where = next((p for p in [value, *value.parents] if p.is_dir()), None)
    if where is None:
        return
    probe = where / f".weakstil-probe-{uuid.uuid4().hex[:8]}"
    try:
        os.mkdir(probe)
    except OSError as exc:
        raise typer.BadParameter(f"{value}: the file system of {where} refuses a new folder ({exc.strerror or exc}). "
                                 "Fix: choose an output directory on a writable disk") from None
    with contextlib.suppress(OSError):
        os.rmdir(probe)


def _device(value: str) -> str:
    from weakstil.errors import UsageError
    from weakstil.runtime import check_device

    try:
        return check_device(value)
    except UsageError as exc:
        raise typer.BadParameter(f"unknown device {value!r}: {exc.fix}") from None


# --- inputs and outputs ----------------------------------------------------------------------
SlidesArg = Annotated[Optional[list[str]], typer.Argument(
    help="Slide files or glob patterns (quote globs); or --slides LIST.", show_default=False)]
#: one definition for every command that takes slides (tile, info, embed, pretrain, score; hunt 32d: only score had it)
SlideListOpt = Annotated[Optional[Path], typer.Option(
    "--slides", help="A slide list: a cohort CSV (its path column, relative to the CSV; its slide_id column, when "
    "there, names embed's and score's outputs, while tile names its files after the slide file; an mpp column, when "
    "there, gives those slides' µm/px) or a text file, one slide path a line (relative to the list; # lines skipped).")]
FeatureFilesArg = Annotated[list[str], typer.Argument(
    help="Feature caches (<slide_id>.h5 from 'weakstil embed') or glob patterns (quote globs).", show_default=False)]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output directory.", callback=out_dir)]
CohortArg = Annotated[
    Path, typer.Argument(help="Cohort CSV: slide_id,path,stil[,group]; paths relative to the CSV.", show_default=False)
]
FeaturesOpt = Annotated[
    Optional[Path], typer.Option("--features", "-f", help="Feature cache directory (from 'weakstil embed').")
]
#: score makes the caches it needs: --features is where they are looked for and written.
ScoreFeaturesOpt = Annotated[Optional[Path], typer.Option(
    "--features", "-f", help="Feature cache directory: caches there (from 'weakstil embed' or an earlier score) are "
    "used, missing ones are written there (default: OUT/features).")]
FeaturesDirOpt = Annotated[Path, typer.Option("--features", "-f", help="Feature cache directory (from 'weakstil embed').")]
ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help="Model directory (from 'weakstil train').")]
ModelDirOpt = Annotated[Path, typer.Option("--model", "-m", help="Model directory (from 'weakstil train').")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output (only one this command "
                                            "wrote: never another folder).")]
#: The sTIL values given are percentages as written: every check that refuses them as fractions (0.35 for 35 %) is
#: skipped. One spelling wherever such a check stands (helper h45d: another tool's TIL-poor predictions in percent, or
#: a TIL-poor cohort's labels, could be refused with no way past).
PercentAsWrittenOpt = Annotated[bool, typer.Option(
    "--percent-as-written", help="The sTIL values given (the cohort CSV's labels, --oof predictions) are percentages "
    "0-100 as written, even where all are at most 1 (a TIL-poor cohort, another tool's predictions): the check that "
    "refuses them as fractions (0.35 for 35 %) is skipped (recorded in metrics.json).")]

# --- tiles -------------------------------------------------------------------------------------
SlideMppOpt = Annotated[
    Optional[float],
    typer.Option("--slide-mpp", help="Scan resolution in µm/px of every slide given, overriding (or replacing missing) slide "
                 "metadata; for some slides of a batch only: an mpp column in a --slides CSV.",
                 callback=in_range(*settings.MPP_RANGE, unit="µm/px")),
]
def target_mpp(value: float | None) -> float | None:
    """``--mpp`` in its range; one of 5 µm/px or coarser is read, with a warning: cells are no longer
    told apart there, and '--mpp 20' is most often a 20x scan's magnification (about 0.5 µm/px)."""
    value = in_range(*settings.MPP_RANGE, unit="µm/px")(value)
    if value is not None and value >= 5.0:
        log.warning(
            "--mpp %g: tiles are read at %g µm/px, where no cell is told apart (a lymphocyte is 7 µm); is %g a "
            "magnification? sTIL is read at about 0.5 µm/px, a 20x scan's (the default)", value, value, value)
    return value


MppOpt = Annotated[float, typer.Option("--mpp", help="Target resolution in µm/px at which tiles are read.",
                                       callback=target_mpp)]
TileSizeOpt = Annotated[int, typer.Option("--tile-size", help="Tile side in pixels at --mpp.",
                                          callback=in_range(*settings.TILE_PX_RANGE, unit="px"))]
OverlapOpt = Annotated[int, typer.Option("--overlap", help="Tile overlap in pixels at --mpp (less than --tile-size).",
                                         callback=in_range(0, settings.TILE_PX_RANGE[1] - 1, unit="px"))]
TissueThresholdOpt = Annotated[
    float, typer.Option("--tissue-threshold", help="Minimum tissue fraction for a tile to be kept (0-1; 0: every "
                        "tile with any tissue).",
                        callback=in_range(0.0, 1.0))
]
AllowUpsampleOpt = Annotated[
    bool,
    typer.Option("--allow-upsample", help="Accept slides scanned coarser than --mpp (pixels are upsampled)."),
]
#: ``score`` has no --mpp: it tiles at the µm/px the model was trained at.
ScoreAllowUpsampleOpt = Annotated[
    bool,
    typer.Option("--allow-upsample", help="Accept slides scanned coarser than the model's µm/px (pixels are "
                 "upsampled)."),
]

# --- compute -----------------------------------------------------------------------------------
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.", callback=in_range(*settings.SEED_RANGE))]
DeviceOpt = Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda, cuda:N, mps or auto.",
                                        callback=_device)]
ThreadsOpt = Annotated[
    int, typer.Option("--threads", help="Torch CPU threads (0: automatic: the cores not busy with other work; when "
                      "tiles are embedded, planned beside the decode workers from measured speeds).",
                      callback=in_range(*settings.THREADS_RANGE))
]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Tile-decoding worker processes (0: automatic, planned "
                                         "with --threads from measured decode and encoder speeds).",
                                         callback=in_range(*settings.THREADS_RANGE))]

DecodeOpt = Annotated[
    DecodeMode, typer.Option("--decode", help="Where JPEG tiles are decoded: cpu (libjpeg-turbo workers), gpu (nvJPEG) "
                         "or auto (gpu when the encoder runs on CUDA and the slide has JPEG tiles). Other formats "
                         "are read by OpenSlide; the path taken is recorded in each feature file.")
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Tiles per batch.",
                                           callback=in_range(*settings.BATCH_SIZE_RANGE))]

# --- encoders ----------------------------------------------------------------------------------
EncoderOpt = Annotated[
    str, typer.Option("--encoder", "-e", help="Encoder card name ('weakstil encoders' lists them), a "
                      "card file (card.yaml) or a 'weakstil pretrain' output directory.")
]
ScoreEncoderOpt = Annotated[Optional[str], typer.Option("--encoder", "-e", help="Encoder card name, card file or "
                                                        "'weakstil pretrain' directory; default: the one bundled in / "
                                                        "recorded by the model.")]
WeightsOpt = Annotated[
    Optional[str],
    typer.Option("--weights", help="Encoder weights: a .safetensors file, a PyTorch state dict, or 'random'; default: "
                 "the card's own (pretrain directory, or the Hugging Face cache/hub)."),
]

# --- cohorts, training, scoring ------------------------------------------------------------------
GroupColumnOpt = Annotated[
    Optional[str],
    typer.Option("--group-column", help="Cohort column whose groups (patient, centre) never straddle a CV split; "
                 "default 'group' when present, 'none' to split by slide."),
]
#: evaluate does no cross-validation: there the column only names each slide's group.
EvalGroupColumnOpt = Annotated[
    Optional[str],
    typer.Option("--group-column", help="Cohort column of each slide's group (patient, centre): the scatter plot is "
                 "coloured by it and predictions.csv names it; default 'group' when present, 'none' for no groups."),
]
def threshold_number(text: str) -> float:
    """``--threshold``'s text as a number; a percentage written with its sign (``30%``) or a decimal comma
    (``30,5``) says what to pass: typer's own line ("Input should be a valid number, unable to parse string
    as a number") named neither the value nor the fix."""
    cleaned = str(text).strip()
    try:
        return float(cleaned)
    except ValueError:
        pass
    if cleaned.endswith("%") and _is_number(cleaned[:-1]):
        raise typer.BadParameter(f"{text!r} has a % sign, but the threshold is a percentage already. Fix: pass "
                                 f"--threshold {cleaned[:-1].strip()}")
    if cleaned.count(",") == 1 and _is_number(cleaned.replace(",", ".")):
        raise typer.BadParameter(f"{text!r} is not a number (a decimal comma?). Fix: pass --threshold "
                                 f"{cleaned.replace(',', '.')}")
    raise typer.BadParameter(f"{text!r} is not a number: give the sTIL-high cut-off in % from 0 to 100 (e.g. 30)")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def stil_threshold(value: float | None) -> float | None:
    """``--threshold``: a percentage 0-100; one strictly between 0 and 1 is a fraction (0.3 for 30 %),
    refused: taken as 0.3 % it called every slide with any TILs sTIL-high, without a word."""
    value = in_range(*settings.STIL_RANGE, unit="%")(value)
    if value is not None:
        value += 0.0  # -0 is 0: it was written "-0" in results.csv and "high at -0 %" in every heatmap title
    if value is not None and 0.0 < value < 1.0:
        raise typer.BadParameter(f"{_num(value)} looks like a fraction, but the threshold is a percentage (at "
                                 f"{_num(value)} % nearly every slide is sTIL-high): pass {_num(value * 100)} for "
                                 f"{_num(value * 100)} %")
    return value


StilThresholdOpt = Annotated[
    Optional[float], typer.Option("--threshold", help="sTIL-high cut-off in % (high means >= it; evaluate and "
                                  f"score default to the model's, train to {settings.STIL_THRESHOLD:g}).",
                                  parser=threshold_number, metavar="<float>", callback=stil_threshold)
]
FoldsOpt = Annotated[int, typer.Option("--folds", help="Cross-validation folds (1: no cross-validation).",
                                       callback=in_range(*settings.FOLDS_RANGE))]
AggregatorOpt = Annotated[
    Aggregator, typer.Option("--aggregator", help="Slide score from tile scores: mean (WeakSTIL), attention, or "
                             "stroma (stroma-weighted mean: the sTIL definition).")
]
StromaWeightOpt = Annotated[
    Optional[StromaWeight], typer.Option(
        "--stroma-weight", help="Tile weights of the stroma aggregator: learned (a head on the tile features) or "
        f"estimate (colour-deconvolution stroma share from the features). Default: {settings.STROMA_WEIGHT}.",
        show_default=False)
]
TileStatsOpt = Annotated[Optional[bool], typer.Option(
    "--tile-stats/--no-tile-stats", help="Append each tile's stain and nuclear-morphometry measurements (made by "
    "embed) to its embedding. Default: when every feature file has them.")]
MeasureTileStatsOpt = Annotated[bool, typer.Option(
    "--tile-stats/--no-tile-stats", help="Measure each tile's stain and nuclear morphometry beside its embedding "
    "(about 1.3 ms of CPU per tile). --no-tile-stats: skip them, for models that use neither the tile measurements "
    "nor the stroma estimate (e.g. train --aggregator mean --no-tile-stats).")]
ScoringOpt = Annotated[Scoring, typer.Option("--scoring", help="How new slides are scored: the final model, or the "
                                             "ensemble of the cross-validation fold models.")]
ScoringOverrideOpt = Annotated[Optional[Scoring], typer.Option(
    "--scoring", help="final or ensemble (the CV fold models); default: what the model says.")]


class StainNormChoice(str, Enum):
    """--stain-norm: what the encoder card says, or an override."""

    CARD = "card"
    NONE = StainNorm.NONE.value
    MACENKO = StainNorm.MACENKO.value


StainNormOpt = Annotated[StainNormChoice, typer.Option(
    "--stain-norm", help="Re-render tiles with reference stain vectors before the encoder (per-slide Macenko "
    "estimate, torchstain): macenko, none, or card (what the encoder card says). embed: part of the feature cache "
    "key; pretrain: the encoder learns on such tiles, and its card records it.")]
LossOpt = Annotated[Loss, typer.Option("--loss", help="Slide-level loss on sTIL%/100.")]
EpochsOpt = Annotated[int, typer.Option("--epochs", help="Epochs per model (--stopping early: the most).",
                                        callback=in_range(1, 100_000))]
StoppingOpt = Annotated[Stopping, typer.Option("--stopping", help="fixed: every model trains --epochs epochs on all "
                                               "its training slides; early: keep the best epoch on an inner "
                                               "validation split (--patience).")]

# --- tumour bed --------------------------------------------------------------------------------
#: The files --annotations finds, said once for every command that takes it (weakstil.annotations'
#: ANNOTATION_PATTERNS; a test checks both agree): score, train, evaluate and tumorbed apply listed
#: .geojson, .xml, .annotations and .ndpa, tumorbed train four suffixes, and none said .json (DSA,
#: GeoJSON) nor .wkt, which every one of them reads.
ANNOTATION_FILES = ("one file a slide, named by its slide_id (or <slide_id>_tumorbed): .geojson or .json (QuPath "
                    "GeoJSON, HistomicsTK/DSA JSON), .xml (Aperio ImageScope, HALO or ASAP XML), .annotations (HALO "
                    "XML), .ndpa (NDP.view) or .wkt (WKT text); QuPath's <slide file>.geojson and NDP.view's <slide "
                    "file>.ndpa too")
AnnotationsOpt = Annotated[
    Optional[Path],
    typer.Option("--annotations", help=f"Directory of tumour-bed annotations, {ANNOTATION_FILES}. An annotation "
                 "overrides detection for its slide."),
]
AnnotationsDirOpt = Annotated[Path, typer.Option("--annotations", help="Directory of the tumour-bed annotations to "
                                                 f"learn from, {ANNOTATION_FILES}.")]
TumorBedOpt = Annotated[
    Optional[Path],
    typer.Option("--tumorbed", help="Tumour-bed detector (from 'weakstil tumorbed train', or a model's "
                 "MODEL/tumorbed); score and evaluate default to the one bundled in the model directory, if "
                 "any; tumorbed apply has no default (whole tissue)."),
]
TumorBedsOpt = Annotated[
    Optional[Path],
    typer.Option("--tumorbed-beds", help="Directory of precomputed tumour beds (<slide_id>.h5 from 'weakstil "
                 "tumorbed apply'); a slide's bed there comes before --tumorbed and the whole tissue, and before "
                 "--annotations unless it is a detector's bed (then the slide's annotation, when given, is used)."),
]


def listed_slides(slides: list[str] | None, slide_list: Path | None, *, ids_name_outputs: bool | None = True):
    """The slides given on the command line and in ``--slides LIST``, and what the list says of each
    file (:class:`weakstil.slide_list.SlideNaming`): its id (the list's own ``slide_id`` column when it
    is a cohort CSV that has one, else the file's name) and its µm/px (a CSV's ``mpp`` column).
    ``ids_name_outputs`` False: the command names its outputs after the slide files whatever the list
    says (``tile``, ``pretrain``), and the log says so (it said "named by the list's slide_id
    column" there too, and ``tile`` then wrote ``synth_0001.h5`` for ``LAB-001``, hunt 34e); None: it writes
    nothing and shows each id beside its path itself (``info``), so nothing is logged."""
    from weakstil.errors import UsageError
    from weakstil.slide_list import SlideNaming

    naming = SlideNaming()
    if slide_list is not None:  # a lab's list: paths with spaces stay whole, relative ones are the list's
        from weakstil.slide_list import read_slide_list

        listed = read_slide_list(slide_list)
        if listed.renamed and ids_name_outputs:
            log.info("%s: %d slide(s) named by the list's slide_id column, not their file's name", slide_list,
                     listed.renamed)
        elif listed.renamed and ids_name_outputs is not None:
            log.info("%s: its slide_id column is not used by this command: %d slide(s) go by their file's name",
                     slide_list, listed.renamed)
        naming = SlideNaming(listed.ids, listed.mpps)
        slides = [*(slides or []), *listed]
    if not slides:
        raise UsageError("no slides given", fix="pass slide files or a quoted glob ('slides/*.svs'), or a slide list "
                                                "with --slides LIST")
    return slides, naming


def expand_slides(patterns: list[str]) -> list[Path]:
    """Expand globs as a shell would (``**``: any depth, as bash's globstar; a leading ``~``: the
    home folder, in a quoted pattern too); a pattern that matches nothing is kept so it fails as
    'file not found'. A path that exists is taken as it is, even with ``[ ] * ?`` in its name
    (``Batch[2]/P9.svs`` is not ``Batch2/P9.svs``).

    A file named twice (or reached twice, e.g. through a symlink or two patterns) is kept once, under
    its own name when one of the names is a symbolic link to it (outputs are named after it)."""
    out: list[Path] = []
    seen: dict[str, int] = {}  # real path -> its index in out
    for pattern in patterns:
        if pattern.startswith("~") and not os.path.lexists(pattern):
            pattern = os.path.expanduser(pattern)
        matches = sorted(glob.glob(pattern, recursive=True)) \
            if glob.has_magic(pattern) and not os.path.lexists(pattern) else []
        matches = _without_folders(pattern, matches)
        for path in [Path(m) for m in matches] or [Path(pattern)]:
            real = os.path.realpath(path)
            if real not in seen:
                seen[real] = len(out)
                out.append(path)
                continue
            kept = out[seen[real]]
            if kept.is_symlink() and not path.is_symlink():
                out[seen[real]], path, kept = path, kept, path
            log.info("%s: the same file as %s; processed once, as %s", path, kept, kept)
    return out


def _without_folders(pattern: str, matches: list[str]) -> list[str]:
    """A glob's matches less the folders among files (``'DIR/**'`` matches DIR itself and every
    subfolder; ``'DIR/*'`` a folder of exports beside the slides): each was an error row "is a directory",
    exit 1, for a batch whose every slide was scored (hunt 30c). A folder whose .dcm files are a DICOM
    series none of which is matched stays (its error names the file to pass), as do the matches of a
    glob of folders only (their error names the glob of their slides)."""
    folders = [m for m in matches if os.path.isdir(m)]
    if not folders or len(folders) == len(matches):
        return matches
    matched = {os.path.realpath(m) for m in matches}

    def series(folder: str) -> bool:
        try:
            names = [e.path for e in os.scandir(folder) if e.is_file() and not e.name.startswith(".")]
        except OSError:
            return False
        return any(n.lower().endswith(".dcm") for n in names) and not any(os.path.realpath(n) in matched for n in names)

    kept = [m for m in matches if not os.path.isdir(m) or series(m)]
    if len(kept) < len(matches):
        left = [os.path.basename(m.rstrip(os.sep)) for m in matches if m not in kept]
        log.info("%s: %d folder(s) it matches are not slides and are left out (%s%s)", pattern, len(left),
                 ", ".join(left[:3]), ", ..." if len(left) > 3 else "")
    return kept


# --- synthetic cohorts -------------------------------------------------------------------------
class SynthLook(str, Enum):
    """The looks of ``weakstil.synth.LOOKS``, spelled here so the CLI starts without importing the
    generator (a test checks that both agree)."""

    default = "default"
    alt = "alt"


HardOpt = Annotated[bool, typer.Option(
    "--hard", help="Real-tissue confounders (dark tumour nuclei, plasma cells, necrosis, lymphoid structures outside "
    "the bed, DCIS, stain/focus/fold/pen artefacts...), strengths drawn per slide; labels stay exact.")]
StratifiedOpt = Annotated[bool, typer.Option(
    "--stratified", help="Draw the slides' target sTIL% by stratified (Latin-hypercube) sampling of the TCGA-like "
    "distribution, so that even a small cohort spans it, TIL-rich tail included (default: independent draws).")]
SynthLookOpt = Annotated[SynthLook, typer.Option(
    "--look", help="Appearance family: default, or alt (other palette, nuclei, textures and scanner optics).")]


class LogLevel(str, Enum):
    """--log-level: the least severe log message shown."""

    DEBUG = "debug"
    INFO = "info"
    WARNING = "warning"
    ERROR = "error"


# the options of 'weakstil' itself (before the command); a batch in a lab logs a line or more per slide
VerboseOpt = Annotated[bool, typer.Option("--verbose", "-v", help="Debug logging (--log-level debug).")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Warnings and errors only (--log-level warning): for "
                                        "batch runs. Error lines, progress bars and the command's closing line (N of M "
                                        "slides scored -> results.csv, evaluate's metrics) are shown still.")]
LogLevelOpt = Annotated[Optional[LogLevel], typer.Option(
    "--log-level", case_sensitive=False, help="The least severe log messages shown (default info). error: only "
    "the slides that failed and the error line.")]
