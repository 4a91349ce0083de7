"""Every option of the ``weakstil`` commands, defined once (defaults from :mod:`weakstil.settings`),
so every command spells a flag the same way. Only typer and the standard library are imported
here: ``weakstil --help`` must answer in about a second.
"""

from __future__ import annotations

import glob
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from weakstil import settings
from weakstil.decode.modes import DecodeMode
from weakstil.mil.config import Aggregator, Loss


def _device(value: str) -> str:
    from weakstil.errors import UsageError
    from weakstil.runtime import check_device

    try:
        return check_device(value)
    except UsageError as exc:
        raise typer.BadParameter(f"unknown device {value!r}: {exc.fix}") from None


# --- inputs and outputs ----------------------------------------------------------------------
SlidesArg = Annotated[list[str], typer.Argument(help="Slide files or glob patterns (quote globs).", show_default=False)]
FeatureFilesArg = Annotated[list[str], typer.Argument(
    help="Feature caches (<slide_id>.h5 from 'weakstil embed') or glob patterns (quote globs).", show_default=False)]
OutOpt = Annotated[Path, typer.Option("--out", "-o", help="Output directory.")]
CohortArg = Annotated[
    Path, typer.Argument(help="Cohort CSV: slide_id,path,stil[,group]; paths relative to the CSV.", show_default=False)
]
FeaturesOpt = Annotated[
    Optional[Path], typer.Option("--features", "-f", help="Feature cache directory (from 'weakstil embed').")
]
FeaturesDirOpt = Annotated[Path, typer.Option("--features", "-f", help="Feature cache directory (from 'weakstil embed').")]
ModelOpt = Annotated[Optional[Path], typer.Option("--model", "-m", help="Model directory (from 'weakstil train').")]
ModelDirOpt = Annotated[Path, typer.Option("--model", "-m", help="Model directory (from 'weakstil train').")]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace an existing output.")]

# --- tiles -------------------------------------------------------------------------------------
SlideMppOpt = Annotated[
    Optional[float],
    typer.Option("--slide-mpp", help="Scan resolution in µm/px, overriding (or replacing missing) slide metadata."),
]
MppOpt = Annotated[float, typer.Option("--mpp", help="Target resolution in µm/px at which tiles are read.")]
TileSizeOpt = Annotated[int, typer.Option("--tile-size", help="Tile side in pixels at --mpp.")]
OverlapOpt = Annotated[int, typer.Option("--overlap", help="Tile overlap in pixels at --mpp.")]
TissueThresholdOpt = Annotated[
    float, typer.Option("--tissue-threshold", help="Minimum tissue fraction for a tile to be kept (0-1).")
]
AllowUpsampleOpt = Annotated[
    bool,
    typer.Option("--allow-upsample", help="Accept slides scanned coarser than --mpp (pixels are upsampled)."),
]

# --- compute -----------------------------------------------------------------------------------
SeedOpt = Annotated[int, typer.Option("--seed", help="Random seed.")]
DeviceOpt = Annotated[str, typer.Option("--device", help="Torch device: cpu, cuda, cuda:N, mps or auto.",
                                        callback=_device)]
ThreadsOpt = Annotated[
    int, typer.Option("--threads", help="Torch CPU threads (0: automatic: the cores not busy with other work; when "
                      "tiles are embedded, planned beside the decode workers from measured speeds).")
]
WorkersOpt = Annotated[int, typer.Option("--workers", help="Tile-decoding worker processes (0: automatic, planned "
                                         "with --threads from measured decode and encoder speeds).")]

DecodeOpt = Annotated[
    DecodeMode, typer.Option("--decode", help="Where JPEG tiles are decoded: cpu (libjpeg-turbo workers), gpu (nvJPEG) "
                         "or auto (gpu when the encoder runs on CUDA and the slide has JPEG tiles). Other formats "
                         "are read by OpenSlide; the path taken is recorded in each feature file.")
]
BatchSizeOpt = Annotated[int, typer.Option("--batch-size", help="Tiles per batch.")]

# --- encoders ----------------------------------------------------------------------------------
EncoderOpt = Annotated[
    str, typer.Option("--encoder", "-e", help="Encoder card name ('weakstil encoders' lists them) or a "
                      "'weakstil pretrain' output directory.")
]
ScoreEncoderOpt = Annotated[Optional[str], typer.Option("--encoder", "-e", help="Encoder card or directory; "
                                                        "default: the one bundled in / recorded by the model.")]
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
StilThresholdOpt = Annotated[
    Optional[float], typer.Option("--threshold", help="sTIL-high cut-off in % (high means >= it; evaluate and "
                                  f"score default to the model's, train to {settings.STIL_THRESHOLD:g}).")
]
FoldsOpt = Annotated[int, typer.Option("--folds", help="Cross-validation folds (1: no cross-validation).")]
AggregatorOpt = Annotated[
    Aggregator, typer.Option("--aggregator", help="Slide score from tile scores: mean (WeakSTIL) or attention.")
]
LossOpt = Annotated[Loss, typer.Option("--loss", help="Slide-level loss on sTIL%/100.")]
EpochsOpt = Annotated[int, typer.Option("--epochs", help="Maximum epochs (early stopping usually ends sooner).")]

# --- tumour bed --------------------------------------------------------------------------------
AnnotationsOpt = Annotated[
    Optional[Path],
    typer.Option("--annotations", help="Directory of tumour-bed annotations (<slide_id>.geojson QuPath GeoJSON or "
                 "<slide_id>.xml ImageScope XML); an annotation overrides detection for its slide."),
]
AnnotationsDirOpt = Annotated[Path, typer.Option("--annotations", help="Directory of tumour-bed annotations "
                                                 "(<slide_id>.geojson or .xml).")]
TumorBedOpt = Annotated[
    Optional[Path],
    typer.Option("--tumorbed", help="Tumour-bed detector (from 'weakstil tumorbed train'); score and evaluate "
                 "default to the one bundled in the model directory, if any."),
]
TumorBedsOpt = Annotated[
    Optional[Path],
    typer.Option("--tumorbed-beds", help="Directory of precomputed tumour beds (<slide_id>.h5 from 'weakstil "
                 "tumorbed apply'); a slide's bed there comes first, before --annotations and --tumorbed."),
]


def expand_slides(patterns: list[str]) -> list[Path]:
    """Expand globs; a pattern that matches nothing is kept so it fails as 'file not found'."""
    out: list[Path] = []
    for pattern in patterns:
        matches = sorted(glob.glob(pattern)) if glob.has_magic(pattern) else []
        out.extend(Path(m) for m in matches) if matches else out.append(Path(pattern))
    return out


# --- synthetic cohorts -------------------------------------------------------------------------
class SynthLook(str, Enum):
    """The looks of ``weakstil.synth.LOOKS``, spelled here so the CLI starts without importing the
    generator (a test checks that both agree)."""

    default = "default"
    alt = "alt"


HardOpt = Annotated[bool, typer.Option(
    "--hard", help="Real-tissue confounders (dark tumour nuclei, plasma cells, necrosis, lymphoid structures outside "
    "the bed, DCIS, stain/focus/fold/pen artefacts...), strengths drawn per slide; labels stay exact.")]
SynthLookOpt = Annotated[SynthLook, typer.Option(
    "--look", help="Appearance family: default, or alt (other palette, nuclei, textures and scanner optics).")]
