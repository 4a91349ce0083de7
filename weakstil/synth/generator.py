"""Slide and cohort generation (the public entry points)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from weakstil.atomic import remove_stale_temps
from weakstil.errors import WeakSTILError
from weakstil.files.h5 import attrs_of, open_read
from weakstil.runtime import library_versions

from ._io import atomic_path, write_json_atomic
from .artefacts import make_render_extras
from .cells import CellSet, FixedCells, place_cells
from .constants import (
    BLOCK,
    DCIS,
    FAT,
    MASK_FACTOR,
    MASK_MPP,
    NECROSIS,
    REGION_NAMES,
    REGION_NAMES_HARD,
    SLIDE_MPP,
    STIL_FORMULA,
    STROMA,
    TUMOR,
)
from .distribution import sample_target_stil, stratified_target_stil
from .hard import Confounders, hard_params, hard_style, sample_confounders
from .hard_cells import add_confounder_cells, fixed_cells
from .hard_layout import HardLayout, add_hard_regions
from .layout import Layout, generate_layout
from .looks import check_look, look_render, sample_look_style
from .orientation import OrientationField
from .pyramid import strip_buffer, write_pyramid
from .render import RenderPlan, render_block, workspace
from .style import LayoutParams, SlideStyle, sample_layout_params, sample_style
from .truth import (
    TruthMasks,
    compute_stil,
    tile_truth,
    tile_truth_extra,
    tumorbed_geojson,
    write_geojson,
    write_preview,
    write_truth_h5,
)

__all__ = [
    "SlidePlan",
    "SlideTruth",
    "generate_cohort",
    "generate_slide",
    "generator_version",
    "plan_slide",
    "slide_seed",
    "slide_shape",
]

logger = logging.getLogger(__name__)

LABEL_COLUMNS = ["slide_id", "path", "stil", "group"]

# named random streams of one slide (adding a stream never changes the others); the default
# output draws only from the first seven, so --hard and --look leave it byte-identical
_S_TARGET, _S_STYLE, _S_PARAMS, _S_LAYOUT, _S_ORIENT, _S_CELLS, _S_RENDER = range(7)
_S_HARD, _S_HARD_STYLE, _S_HARD_LAYOUT, _S_HARD_FIXED, _S_HARD_CELLS, _S_EXTRAS = range(7, 13)
# stream of a cohort's stratified targets, drawn from the cohort seed (not a slide's)
_S_COHORT_TARGETS = 13


def generator_version() -> str:
    try:
        from weakstil import __version__  # type: ignore[attr-defined]
    except ImportError:
        return "0"
    return str(__version__)


def _rng(seed: int, stream: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(stream,))))


def slide_shape(size_mm: tuple[float, float]) -> tuple[int, int]:
    """Level-0 (width, height) for a slide of ``size_mm`` (rounded to mask pixels)."""
    w = max(1, round(size_mm[0] * 1000.0 / SLIDE_MPP / MASK_FACTOR)) * MASK_FACTOR
    h = max(1, round(size_mm[1] * 1000.0 / SLIDE_MPP / MASK_FACTOR)) * MASK_FACTOR
    return int(w), int(h)


#: Peak memory of ``synth`` for one slide: a fixed part and bytes per level-0 pixel (the mask-scale
#: fields, the cells and the half-resolution pyramid level; level 0 is written in strips). Measured
#: with /usr/bin/time -v (hunt 29a): 8 mm 0.79 GB, 16 mm 1.46 GB, i.e. 0.87 B/px over 0.57 GB; rounded up.
SYNTH_BASE_BYTES = 600 * 1024**2
SYNTH_BYTES_PER_PX = 1.0


def synth_bytes(size_mm: tuple[float, float]) -> int:
    """Peak memory (bytes) of generating one slide of ``size_mm`` (slides are made one at a time)."""
    w, h = slide_shape(size_mm)
    return int(SYNTH_BASE_BYTES + SYNTH_BYTES_PER_PX * w * h)


@dataclass(frozen=True)
class SlideTruth:
    slide_id: str
    path: Path  # pyramidal TIFF
    truth_path: Path  # HDF5 masks + per-tile truth
    geojson_path: Path  # tumour-bed annotation
    preview_path: Path | None
    stil: float  # the label: computed from what was drawn
    target_stil: float  # what the sampler asked for
    group: str
    seed: int
    width: int
    height: int
    n_levels: int
    seconds: float
    hard: bool = False
    look: str = "default"


@dataclass
class SlidePlan:
    """Everything decided before rendering (deterministic in the seed)."""

    seed: int
    group: str
    width: int
    height: int
    target_stil: float
    style: SlideStyle
    params: LayoutParams
    layout: Layout
    cells: CellSet
    render: RenderPlan
    look: str = "default"
    confounders: Confounders | None = None  # None: not hard
    hard_layout: HardLayout | None = None
    hard_attrs: dict[str, Any] | None = None  # what the confounders drew (truth attributes)

    @property
    def default_output(self) -> bool:
        return self.confounders is None and self.look == "default"


def plan_slide(seed: int, *, size_mm: tuple[float, float] = (2.5, 2.5), target_stil: float | None = None,
               group: str = "centre_0", style: SlideStyle | None = None, hard: bool = False,
               look: str = "default", confounders: Mapping[str, float] | None = None) -> SlidePlan:
    """Draw the target, style, layout and every cell of a slide (no pixels yet).

    ``hard`` adds the real-tissue confounders (``confounders`` fixes some strengths, see
    ``weakstil.synth.hard``); ``look`` picks the appearance family (``weakstil.synth.looks``).
    """
    if isinstance(size_mm, (int, float)):  # one number: a square (a TypeError after the folders were made,
        size_mm = (float(size_mm), float(size_mm))  # until hunt 36d)
    look = check_look(look)
    hard = bool(hard or confounders)
    width, height = slide_shape(size_mm)
    if target_stil is None:
        target_stil = float(sample_target_stil(_rng(seed, _S_TARGET)))
    if style is None:
        style = (sample_style(_rng(seed, _S_STYLE), group) if look == "default"
                 else sample_look_style(_rng(seed, _S_STYLE), group, look))
    params = sample_layout_params(_rng(seed, _S_PARAMS), target_stil)
    conf, agg_scale, drawn = None, 1.0, {}
    if hard:
        conf = sample_confounders(_rng(seed, _S_HARD), group, confounders)
        params, agg_scale = hard_params(params, conf, target_stil)
        style, drawn = hard_style(_rng(seed, _S_HARD_STYLE), style, conf, group)
    layout = generate_layout(_rng(seed, _S_LAYOUT), (height // MASK_FACTOR, width // MASK_FACTOR), params)
    hl = add_hard_regions(_rng(seed, _S_HARD_LAYOUT), layout, conf) if conf is not None else None
    orient = OrientationField.random(_rng(seed, _S_ORIENT), width, height)
    fixed: FixedCells | None = None
    counts: dict[str, int] = {}
    if conf is not None and hl is not None:
        fixed, counts = fixed_cells(_rng(seed, _S_HARD_FIXED), layout, hl, conf, target_stil, width, height, look)
    cells = place_cells(_rng(seed, _S_CELLS), layout, params, orient, target_stil, width, height, look=look,
                        fixed=fixed, agg_scale=agg_scale)
    if conf is not None:
        counts.update(add_confounder_cells(_rng(seed, _S_HARD_CELLS), cells, layout, conf, orient, width, height,
                                           look))
    plan = RenderPlan.create(_rng(seed, _S_RENDER), width, height, layout, style, cells, orient)
    hard_attrs = None
    if conf is not None or look != "default":
        plan.extra = make_render_extras(_rng(seed, _S_EXTRAS), layout, look_render(look, group), group, conf,
                                        float(drawn.get("stroma_h_extra", 0.0)))
        hard_attrs = {"hard": int(conf is not None), "look": look, **plan.extra.look.attrs()}
        if conf is not None and hl is not None:
            hard_attrs.update(conf.attrs())
            hard_attrs["hard_overrides"] = json.dumps(dict(sorted((confounders or {}).items())))
            hard_attrs.update({f"acq_{k}": v for k, v in drawn.items()})
            hard_attrs.update({f"acq_{k}": v for k, v in plan.extra.attrs.items()})
            hard_attrs.update({"agg_scale": agg_scale, **hl.counts, **counts})
    return SlidePlan(int(seed), group, width, height, float(target_stil), style, params, layout, cells, plan,
                     look, conf, hl, hard_attrs)


def generate_slide(
    path: Path,
    truth_dir: Path,
    slide_id: str,
    seed: int,
    *,
    size_mm: tuple[float, float] = (2.5, 2.5),
    target_stil: float | None = None,
    group: str = "centre_0",
    style: SlideStyle | None = None,
    preview: bool = True,
    hard: bool = False,
    look: str = "default",
    confounders: Mapping[str, float] | None = None,
) -> SlideTruth:
    """Render one synthetic H&E slide plus its exact truth.

    Writes ``path`` (pyramidal JPEG TIFF, 0.5 µm/px) and, in ``truth_dir``,
    ``<slide_id>.h5``, ``<slide_id>_tumorbed.geojson`` and (optionally)
    ``<slide_id>_preview.png``; the HDF5 file is written last, so its presence
    marks a complete slide.  ``target_stil`` defaults to a draw from the
    TCGA-like distribution; the returned/stored ``stil`` is computed from what
    was actually drawn. ``hard``/``confounders``/``look``: see ``plan_slide``.
    """
    t0 = time.perf_counter()
    path = Path(path)
    truth_dir = Path(truth_dir)
    sp = plan_slide(seed, size_mm=size_mm, target_stil=target_stil, group=group, style=style, hard=hard,
                    look=look, confounders=confounders)
    width, height, style, layout, cells = sp.width, sp.height, sp.style, sp.layout, sp.cells
    t_plan = time.perf_counter() - t0

    cov = np.zeros(layout.shape, np.float32)
    plasma = None if sp.default_output else np.zeros(layout.shape, np.float32)
    parts: dict[str, np.ndarray] | None = None if plasma is None else {}

    def strips() -> Iterator[tuple[int, int, np.ndarray]]:
        for y0 in range(0, height, BLOCK):
            y1 = min(y0 + BLOCK, height)
            buf = strip_buffer(width, y1 - y0)
            for x0 in range(0, width, BLOCK):
                x1 = min(x0 + BLOCK, width)
                _, c = render_block(sp.render, y0, y1, x0, x1, out=buf[: y1 - y0, x0:x1], parts=parts)
                cov[y0 // MASK_FACTOR:y1 // MASK_FACTOR, x0 // MASK_FACTOR:x1 // MASK_FACTOR] = c
                if plasma is not None and parts:
                    plasma[y0 // MASK_FACTOR:y1 // MASK_FACTOR, x0 // MASK_FACTOR:x1 // MASK_FACTOR] = parts["plasma"]
            yield y0, y1 - y0, buf
            del buf

    truth_dir.mkdir(parents=True, exist_ok=True)
    try:
        with atomic_path(path) as tmp:
            n_levels, thumb = write_pyramid(tmp, width, height, strips(), mpp=SLIDE_MPP,
                                            quality=style.jpeg_quality,
                                            description=f"weakstil synthetic slide {slide_id}")
    finally:
        workspace().clear()
    t_tiff = time.perf_counter() - t0 - t_plan

    reg = layout.regions
    masks = TruthMasks(
        tissue=layout.tissue,
        tumorbed=layout.bed,
        tumor=reg == TUMOR,
        stroma=reg == STROMA,
        fat=reg == FAT,
        lymphocyte=cov,
    )
    stil = compute_stil(masks.lymphocyte, masks.tumorbed, masks.stroma)
    tiles = tile_truth(masks, width, height)
    extra_masks = None
    if not sp.default_output:
        lymphoid = sp.hard_layout.lymphoid if sp.hard_layout is not None else np.zeros(layout.shape, bool)
        extra_masks = {"necrosis": reg == NECROSIS, "dcis": reg == DCIS, "lymphoid": lymphoid & ~layout.bed,
                       "plasma": plasma}
        tiles.update(tile_truth_extra(masks, extra_masks, width, height))
    geo_path = truth_dir / f"{slide_id}_tumorbed.geojson"
    write_geojson(geo_path, tumorbed_geojson(masks.tumorbed, slide_id))
    preview_path: Path | None = None
    if preview:
        preview_path = truth_dir / f"{slide_id}_preview.png"
        write_preview(preview_path, thumb, masks, reg,
                      lymphoid=None if extra_masks is None else extra_masks["lymphoid"])
    attrs: dict[str, Any] = {
        "slide_id": slide_id,
        "stil": stil,
        "target_stil": sp.target_stil,
        "predicted_stil": float(cells.predicted_stil),
        "stil_formula": STIL_FORMULA,
        "mask_mpp": MASK_MPP,
        "slide_mpp": SLIDE_MPP,
        "mask_factor": MASK_FACTOR,
        "width": width,
        "height": height,
        "seed": int(seed),
        "group": group,
        "generator": "weakstil.synth",
        "generator_version": generator_version(),
        "n_levels": n_levels,
        "n_lymphocytes_bed": cells.n_lymph_bed,
        "n_lymphocytes_other": cells.n_lymph_other,
        **style.attrs(),
        **sp.params.attrs(),
        **(sp.hard_attrs or {}),
    }
    write_truth_h5(truth_dir / f"{slide_id}.h5", masks, reg, attrs, tiles,
                   REGION_NAMES if sp.confounders is None else REGION_NAMES_HARD, extra_masks=extra_masks)
    dt = time.perf_counter() - t0
    logger.debug("%s: plan %.2fs, tiff %.2fs, total %.2fs", slide_id, t_plan, t_tiff, dt)
    return SlideTruth(
        slide_id=slide_id,
        path=path,
        truth_path=truth_dir / f"{slide_id}.h5",
        geojson_path=geo_path,
        preview_path=preview_path,
        stil=stil,
        target_stil=sp.target_stil,
        group=group,
        seed=int(seed),
        width=width,
        height=height,
        n_levels=n_levels,
        seconds=dt,
        hard=sp.confounders is not None,
        look=sp.look,
    )


def slide_seed(cohort_seed: int, index: int) -> int:
    """Seed of slide ``index`` of a cohort (independent of the cohort size)."""
    state = np.random.SeedSequence(int(cohort_seed), spawn_key=(1 << 20, int(index))).generate_state(2, np.uint32)
    return int((int(state[0]) << 32 | int(state[1])) >> 1)


def _existing(truth_path: Path, slide: Path, seed: int, width: int, height: int, group: str,
              hard: bool, look: str, overrides: str, target_stil: float) -> float | None:
    """The stored label if a complete slide with the same identity exists."""
    if not (truth_path.is_file() and slide.is_file()):
        return None
    try:
        with open_read(truth_path) as h5:
            a = attrs_of(h5)
        same = (int(a["seed"]) == seed and int(a["width"]) == width and int(a["height"]) == height
                and str(a["group"]) == group and str(a["generator_version"]) == generator_version()
                and bool(int(a.get("hard", 0))) == hard and str(a.get("look", "default")) == look
                and (not hard or str(a.get("hard_overrides", "{}")) == overrides)
                and abs(float(a["target_stil"]) - target_stil) < 1e-9)
        return float(a["stil"]) if same else None
    except (WeakSTILError, KeyError):
        return None


def _stored_confounders(truth_path: Path) -> dict[str, float]:
    """The confounder strengths recorded in a hard slide's truth file."""
    from .hard import CONFOUNDERS

    with open_read(truth_path) as h5:
        a = attrs_of(h5)
    return {k: round(float(a[f"hard_{k}"]), 4) for k in ("severity", *CONFOUNDERS)}


def generate_cohort(
    out_dir: str | Path,
    n_slides: int,
    seed: int,
    *,
    size_mm: float | tuple[float, float] = (2.5, 2.5),
    n_groups: int = 4,
    progress: bool = True,
    hard: bool = False,
    look: str = "default",
    confounders: Mapping[str, float] | None = None,
    stratified: bool = False,
) -> pd.DataFrame:
    """Generate ``n_slides`` slides under ``out_dir`` and return the labels table.

    Layout: ``labels.csv`` (slide_id, path, stil, group; paths relative to the
    CSV), ``slides/<id>.tiff``, ``truth/<id>.h5|_tumorbed.geojson|_preview.png``,
    ``cohort.json``.  Complete slides of an interrupted run with the same seed are
    reused.  Slide ``i`` is ``synth_{i:04d}`` in group ``centre_{i % n_groups}``.

    ``hard`` draws the real-tissue confounders (``confounders`` fixes strengths for every
    slide); ``look`` the appearance family. Either adds the columns ``look`` and ``hard`` to
    ``labels.csv`` and the per-slide confounder strengths to ``cohort.json``; the default
    output is byte-identical to the generator before these options existed.

    ``stratified`` draws the slides' target sTIL% by Latin-hypercube sampling of the TCGA-like
    distribution (``stratified_target_stil``: every probability bin once, so a small cohort
    always has its TIL-rich tail) instead of independently per slide; the targets then depend on
    ``n_slides``, and ``cohort.json`` records ``"stratified": true``.
    """
    if isinstance(size_mm, (int, float)):  # one number: a square (a TypeError after the folders were made,
        size_mm = (float(size_mm), float(size_mm))  # until hunt 36d)
    look = check_look(look)
    hard = bool(hard or confounders)
    overrides = json.dumps(dict(sorted((confounders or {}).items())))
    default_output = not hard and look == "default"
    if n_slides < 0 or n_groups < 1:
        raise ValueError("n_slides must be >= 0 and n_groups >= 1")
    out_dir = Path(out_dir)
    slides_dir = out_dir / "slides"
    truth_dir = out_dir / "truth"
    slides_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    width, height = slide_shape(size_mm)
    level = logging.INFO if progress else logging.DEBUG
    rows: list[dict[str, Any]] = []
    meta: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    targets: list[float | None] = [None] * n_slides
    if stratified:
        targets = [float(t) for t in stratified_target_stil(_rng(seed, _S_COHORT_TARGETS), n_slides)]
    for i in range(n_slides):
        sid = f"synth_{i:04d}"
        s_seed = slide_seed(seed, i)
        group = f"centre_{i % n_groups}"
        rel = f"slides/{sid}.tiff"
        # a run killed mid-slide (SIGKILL: no clean-up) left its temporary slide, as large as the slide;
        # a rerun redid or kept the slide but kept that file for good (synth holds the folder's lock)
        for written in (out_dir / rel, *(truth_dir / f"{sid}{end}" for end in (".h5", "_tumorbed.geojson",
                                                                                 "_preview.png"))):
            remove_stale_temps(written)
        # a stratified slide is not reused by an independent run (nor the reverse): the targets differ
        expected = targets[i] if stratified else float(sample_target_stil(_rng(s_seed, _S_TARGET)))
        stil = _existing(truth_dir / f"{sid}.h5", out_dir / rel, s_seed, width, height, group, hard, look, overrides,
                         expected)
        if stil is None:
            res = generate_slide(out_dir / rel, truth_dir, sid, s_seed, size_mm=size_mm, target_stil=targets[i],
                                 group=group, hard=hard, look=look, confounders=confounders)
            stil = res.stil
            logger.log(level, "synth %d/%d %s stil=%.2f (target %.2f) %s %.1fs", i + 1, n_slides, sid,
                       res.stil, res.target_stil, group, res.seconds)
        else:
            logger.log(level, "synth %d/%d %s exists (stil=%.2f), kept", i + 1, n_slides, sid, stil)
        row: dict[str, Any] = {"slide_id": sid, "path": rel, "stil": round(float(stil), 4), "group": group}
        m: dict[str, Any] = {"slide_id": sid, "seed": s_seed, "group": group}
        if not default_output:
            row.update({"look": look, "hard": int(hard)})
            if hard:
                m["confounders"] = _stored_confounders(truth_dir / f"{sid}.h5")
        rows.append(row)
        meta.append(m)
    stale = sorted(q.name for q in slides_dir.glob("synth_*.tiff") if q.stem not in {r["slide_id"] for r in rows})
    if stale:  # an earlier run with more slides: not in labels.csv, but a slides/*.tiff glob would take them
        logger.warning("%s: %d slide(s) of an earlier run are not in this cohort's labels.csv (%s%s); remove them "
                       "or generate into a new folder", slides_dir, len(stale), ", ".join(stale[:3]),
                       " ..." if len(stale) > 3 else "")
    df = pd.DataFrame(rows, columns=LABEL_COLUMNS if default_output else LABEL_COLUMNS + ["look", "hard"])
    with atomic_path(out_dir / "labels.csv") as tmp:
        df.to_csv(tmp, index=False)
    extra_meta = {} if default_output else {"hard": hard, "look": look, "confounder_overrides": json.loads(overrides)}
    write_json_atomic(out_dir / "cohort.json", {
        "generator": "weakstil.synth",
        "generator_version": generator_version(),
        "seed": int(seed),
        "n_slides": int(n_slides),
        "size_mm": [float(size_mm[0]), float(size_mm[1])],
        "width": width,
        "height": height,
        "n_groups": int(n_groups),
        "slide_mpp": SLIDE_MPP,
        "mask_mpp": MASK_MPP,
        "stil_formula": STIL_FORMULA,
        "library_versions": library_versions(),  # numpy's streams, the JPEG encoder: the slides' bytes
        **extra_meta,
        **({"stratified": True} if stratified else {}),
        "slides": meta,
    })
    logger.log(level, "synth cohort: %d slides in %.1fs -> %s", n_slides, time.perf_counter() - t0, out_dir)
    return df
