"""Half-stride tumour evidence at the detected bed's front (hunt 45b, issue 14).

The detector's tumour evidence is one sample per 112 µm tile, and the classifier reads a tile the
front cuts through as almost all tumour or almost none (docs/tumorbed-quality.md, hunts 44g, 44k):
two thirds of the detected bed's lost Dice lies within half a tile of the true front, and
interpolating the tile evidence cannot place the front finer. So where the bed borders other
tissue, the slide is read again at the three half-tile offsets (½, 0), (0, ½), (½, ½) of each tile,
each such tile embedded as ``weakstil embed`` did (a scanner's sharpening undone, the features' stain
normalisation, the features' own encoder) and read by the detector's own classifier (standardised
with the slide's own tiles). Their evidence joins the tiles' on a grid of half the stride, and the bed
is drawn again from it by the same seeds, bridge, enclosure and margin. Nothing but tumour evidence
and geometry decides the bed (no lymphocyte density); vetoed tiles cap the shifted tiles that
overlap them.

Only near the front: shifted tiles whose centre lies within ``band_tiles`` tiles of the bed's
border with other tissue (inside: within the margin plus that much). It is chosen by
``tumorbed train`` (leave-one-slide-out on the annotated slides, kept only with a gain of
:data:`FRONT_MIN_GAIN` mean Dice) and recorded in model.json as ``front``; detectors written
before it have none and keep their beds. Applied only when the slide can be read: otherwise the
tile-level bed is kept and the bed's ``seed_vetoes`` says ``front: slide not read``.

How far the redrawn bed may grow past the tile-level one (``grow_tiles``, helper h48b, issue 14): a shifted tile reads
half a tile beside a tile, so evidence at half the stride places a front to within about a tile of where the tiles put
it; growth further out is new seeds (stroma read as tumour on a TIL-poor slide: 41a's og41a_006 bed 1.9 x its truth,
the front adding half the true bed, all stroma) with the bridge and infiltrate grown from them, not the front placed.
``tumorbed train`` chooses the bound from :data:`GROW_CHOICES` with the front, the looser only where it gains
(``None``: unbounded, as before; a detector written without it keeps its beds), on the beds the chosen aggregate,
lobule and mucin steps draw (:func:`weakstil.tumorbed.mucin.chosen_structure`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

log = logging.getLogger(__name__)

#: The front refinement is kept only when it raises the annotated slides' mean held-out Dice this much.
FRONT_MIN_GAIN = 0.005
#: Shifted tiles within this many tiles of the bed's border (hunt 45b: 0.5 / 1 / 1.5 gave 0.899 / 0.905 /
#: 0.903 on 44b's held-out slides, 0.930 each on 42a's).
BAND_TILES = 1.0
#: The bounds (tiles beyond the tile-level bed; ``None``: unbounded) ``choose_front`` tries, the tightest first: a looser
#: one is kept only when it gains :data:`FRONT_MIN_GAIN` mean Dice over the one kept so far (growth earns its place
#: as the front itself does).
GROW_CHOICES = (0.0, 0.25, 0.5, 1.0, None)
#: A shifted tile with less of its area on tissue than this is not read (as the tiling keeps tiles).
MIN_TISSUE = 0.5
#: ``seed_vetoes`` word when the slide could not be read for it.
NOT_READ = "front: slide not read"
#: ... followed by this, the file's size, modification and status-change times (``damaged data
#: [SIZE:MTIME_NS:CTIME_NS]``), when the shifted tiles' data is damaged (a JPEG tile only a shifted tile touches:
#: 'embed' stopped at none): the same file fails the same way, so ``score`` does not read it again on every rerun,
#: only once the file has changed (review r46c, helper h47c; its status-change time too, review r47c)
DAMAGED = "damaged data"
#: ``seed_vetoes`` word when the features' encoder could not be built again (weights not here, other weights).
NO_ENCODER = "front: encoder not rebuilt"
#: The front's outcome on a slide (TumorBed.front: the bed file's ``front``, score's ``tumorbed_front``).
FRONT_REFINED = "refined"
FRONT_NOT_READ = "not refined: slide not read"
FRONT_NO_ENCODER = "not refined: encoder not rebuilt"
FRONT_LOST = "not refined: lost beyond front"
FRONT_IMPLAUSIBLE = "not refined: implausible"
#: From this many shifted tiles on a slide a progress bar shows them being read (about a slide's own tile count
#: with a large encoder on a CPU: minutes, said rather than silent; helper h45i).
PROGRESS_TILES = 256

#: ``embed(level-0 xy (k, 2)) -> (k, D) features``, as the slide's features were made.
Embed = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FrontRefine:
    """Half-stride evidence at the bed's front (module docstring); off unless chosen by training."""

    enabled: bool = False
    band_tiles: float = BAND_TILES
    #: the redrawn bed reaches at most this many tiles past the tile-level bed (``None``: unbounded, helper h48b)
    grow_tiles: float | None = None

    def to_dict(self) -> dict[str, float | bool]:
        out = {"enabled": bool(self.enabled), "band_tiles": float(self.band_tiles)}
        return out if self.grow_tiles is None else {**out, "grow_tiles": float(self.grow_tiles)}

    @classmethod
    def from_dict(cls, values: dict | None) -> FrontRefine:
        """From model.json, read strictly (:func:`weakstil.tumorbed.flags.rule_from_json`: a number a finite JSON
        number, an unknown key refused; review r48b: a misspelt ``grow_tiles`` read as unbounded, ``"1.5"`` as a
        band); a detector written without it (before hunt 45b) has it off, one without ``grow_tiles`` (before helper
        h48b) its growth unbounded."""
        from weakstil.tumorbed.flags import rule_from_json

        rule = rule_from_json(cls, values, "front")
        for key in ("band_tiles", "grow_tiles"):
            if (v := getattr(rule, key)) is not None and v < 0:
                raise ValueError(f"'front {key}' is {v!r}, not a number >= 0")
        return rule


def front_points(coords: np.ndarray, tile_size_level0: float, slide_mpp: float, tissue: np.ndarray,
                 mask_mpp: float, bed: np.ndarray, margin_um: float, band_tiles: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The shifted tiles to read: their (k, 2) half-stride grid indices (row, column; a tile's own
    position is (2 r, 2 c)) and level-0 (x, y) corners. Those next to a tile, mostly on tissue, whose
    centre lies within ``band_tiles`` tiles of the bed's border with other tissue (inside the bed:
    within ``margin_um`` plus that)."""
    from scipy import ndimage as ndi

    from weakstil.bed_geometry import grid_cells
    from weakstil.tiling import mask_fractions

    empty = np.zeros((0, 2), np.int64), np.zeros((0, 2), np.float64)
    tissue, bed = np.asarray(tissue, bool), np.asarray(bed, bool)
    other = tissue & ~bed
    if len(coords) == 0 or not bed.any() or not other.any():
        return empty
    rows, cols, stride = grid_cells(coords, tile_size_level0)
    near = {(2 * r + di, 2 * c + dj) for r, c in zip(rows.tolist(), cols.tolist())
            for di in (-1, 0, 1) for dj in (-1, 0, 1) if (di or dj)}
    ij = np.array(sorted(p for p in near if (p[0] % 2 or p[1] % 2) and min(p) >= 0), np.int64).reshape(-1, 2)
    xy = np.stack([np.floor(ij[:, 1] * stride / 2), np.floor(ij[:, 0] * stride / 2)], axis=1)
    on = mask_fractions(xy, tile_size_level0, tissue, mask_mpp, slide_mpp) >= MIN_TISSUE
    ij, xy = ij[on], xy[on]
    f = slide_mpp / mask_mpp
    cy = np.clip(((xy[:, 1] + tile_size_level0 / 2) * f).astype(np.int64), 0, tissue.shape[0] - 1)
    cx = np.clip(((xy[:, 0] + tile_size_level0 / 2) * f).astype(np.int64), 0, tissue.shape[1] - 1)
    reach = band_tiles * tile_size_level0 * slide_mpp
    inside = bed[cy, cx]
    d_in = ndi.distance_transform_edt(~other)[cy, cx] * mask_mpp
    d_out = ndi.distance_transform_edt(~bed)[cy, cx] * mask_mpp
    keep = np.where(inside, d_in <= margin_um + reach, d_out <= reach)
    return ij[keep], xy[keep]


def point_evidence(predict: Callable[[np.ndarray], np.ndarray], features: np.ndarray, sampled: np.ndarray,
                   per_slide: bool, ij: np.ndarray, coords: np.ndarray, tile_size_level0: float,
                   evidence: np.ndarray, raw: np.ndarray) -> np.ndarray:
    """The classifier's evidence for the shifted tiles' features ``sampled``, standardised with the slide's own
    tiles (``features``) when the detector's are; a shifted tile overlapping a tile a veto lowered (``evidence``
    under ``raw``) keeps no more than the largest evidence of the tiles it overlaps."""
    from weakstil.bed_geometry import grid_cells

    x = np.asarray(sampled, np.float32)
    if per_slide:
        f = np.asarray(features, np.float32)
        x = (x - f.mean(0)) / (f.std(0) + 1e-6)
    out = predict(x).astype(np.float32)
    lowered = np.asarray(evidence) < np.asarray(raw) - 1e-6
    if not lowered.any():
        return out
    rows, cols, _ = grid_cells(coords, tile_size_level0)
    at = {(r, c): k for k, (r, c) in enumerate(zip(rows.tolist(), cols.tolist()))}
    for k, (i, j) in enumerate(np.asarray(ij).tolist()):
        over = [at[(a, b)] for a in {i // 2, (i + 1) // 2} for b in {j // 2, (j + 1) // 2} if (a, b) in at]
        if any(lowered[o] for o in over):
            out[k] = min(out[k], max(float(evidence[o]) for o in over))
    return out


def dense_to_mask(evidence: np.ndarray, coords: np.ndarray, tile_size_level0: float, slide_mpp: float,
                  mask_shape: tuple[int, int], mask_mpp: float, smooth_um: float, ij: np.ndarray,
                  sampled: np.ndarray) -> np.ndarray:
    """As :func:`weakstil.bed_geometry.tiles_to_mask`, on a grid of half the stride: the tiles at (2 r, 2 c),
    the shifted tiles' evidence at ``ij``, every other half-stride point the tiles' bilinear value there
    (so away from the shifted tiles the map is the tiles'); ``smooth_um`` blurs that grid."""
    from scipy import ndimage as ndi

    from weakstil.bed_geometry import grid_cells

    h, w = mask_shape
    if len(evidence) == 0:
        return np.zeros((h, w), np.float32)
    rows, cols, stride = grid_cells(coords, tile_size_level0)
    grid_v = np.zeros((rows.max() + 3, cols.max() + 3))
    grid_w = np.zeros_like(grid_v)
    grid_v[rows + 1, cols + 1], grid_w[rows + 1, cols + 1] = evidence, 1.0
    half = np.meshgrid(np.arange(2 * grid_v.shape[0] - 1) / 2, np.arange(2 * grid_v.shape[1] - 1) / 2, indexing="ij")
    num = ndi.map_coordinates(grid_v * grid_w, half, order=1, mode="constant")
    den = ndi.map_coordinates(grid_w, half, order=1, mode="constant")
    dv = np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0)
    dw = (den > 1e-6).astype(np.float64)
    if len(ij):
        ij = np.asarray(ij, np.int64)
        dv[ij[:, 0] + 2, ij[:, 1] + 2], dw[ij[:, 0] + 2, ij[:, 1] + 2] = sampled, 1.0
    sigma = 2 * smooth_um / (stride * slide_mpp)
    if sigma > 0:
        v = ndi.gaussian_filter(dv * dw, sigma, mode="constant")
        dv = np.where(dw > 0, v / np.maximum(ndi.gaussian_filter(dw, sigma, mode="constant"), 1e-9), 0.0)
    f = mask_mpp / slide_mpp
    yy = (((np.arange(h) + 0.5) * f - tile_size_level0 / 2) / stride + 1) * 2
    xx = (((np.arange(w) + 0.5) * f - tile_size_level0 / 2) / stride + 1) * 2
    gy, gx = np.meshgrid(yy, xx, indexing="ij")
    num = ndi.map_coordinates(dv * dw, [gy, gx], order=1, mode="constant")
    den = ndi.map_coordinates(dw, [gy, gx], order=1, mode="constant")
    return np.where(den > 1e-6, num / np.maximum(den, 1e-6), 0.0).astype(np.float32)


def refined_mask(bed: np.ndarray, evidence: np.ndarray, raw: np.ndarray, features: np.ndarray, geom, shape,
                 predict: Callable[[np.ndarray], np.ndarray], per_slide: bool, embed: Embed, band_tiles: float,
                 infiltrate: np.ndarray | None = None, grow_tiles: float | None = None) -> tuple[np.ndarray, int]:
    """The bed drawn again with half-stride evidence at the front of ``bed`` (a mask on ``geom``'s tissue grid),
    and how many shifted tiles were read. ``evidence``/``raw``: the tiles' seed evidence after / before the
    vetoes; ``shape``: the detector's :class:`~weakstil.bed_geometry.BedShape`; ``grow_tiles``: how many tiles
    past ``bed`` the redrawn bed may reach (``None``: unbounded)."""
    from weakstil.bed_geometry import grow_bed, take_in_infiltrate, tiles_to_mask

    tissue = np.asarray(geom.tissue_mask, bool)
    ij, xy = front_points(geom.coords, geom.tile_size_level0, geom.slide_mpp, tissue, geom.mask_mpp, bed,
                          shape.margin_um, band_tiles)
    if not len(ij):
        return np.asarray(bed, bool), 0
    sampled = point_evidence(predict, features, embed(xy), per_slide, ij, geom.coords, geom.tile_size_level0,
                             evidence, raw)
    up = dense_to_mask(evidence, geom.coords, geom.tile_size_level0, geom.slide_mpp, tissue.shape, geom.mask_mpp,
                       shape.smooth_um, ij, sampled)
    seeds = (up >= shape.seed_threshold) & tissue
    if geom.seed_pixels is not None:  # mucin pools with floating clusters seed whatever the evidence (hunt 47f)
        seeds |= geom.seed_pixels & tissue
    mask = grow_bed(seeds, tissue, geom.mask_mpp, shape)
    if shape.infiltrate_um > 0 and infiltrate is not None:
        dark = tiles_to_mask(infiltrate, geom.coords, geom.tile_size_level0, geom.slide_mpp, tissue.shape,
                             geom.mask_mpp)
        mask = take_in_infiltrate(mask, dark, tissue, geom.mask_mpp, shape)
    return bounded_growth(mask, bed, geom.mask_mpp, grow_tiles * geom.tile_size_level0 * geom.slide_mpp
                          if grow_tiles is not None else None), len(ij)


def bounded_growth(redrawn: np.ndarray, bed: np.ndarray, mask_mpp: float, reach_um: float | None) -> np.ndarray:
    """``redrawn`` with what lies more than ``reach_um`` past ``bed`` taken off (``None``: as it is)."""
    from scipy import ndimage as ndi

    redrawn, bed = np.asarray(redrawn, bool), np.asarray(bed, bool)
    if reach_um is None or not bed.any():
        return redrawn
    return redrawn & (bed | (ndi.distance_transform_edt(~bed) * mask_mpp <= reach_um))


def lost_beyond_front(bed: np.ndarray, redrawn: np.ndarray, tissue: np.ndarray, mask_mpp: float,
                      tile_um: float) -> str:
    """Why the ``redrawn`` bed is not used ("" when it is): it gives up more of the tile-level ``bed`` than lies within
    half a tile of that bed's border with other tissue, all that evidence at half the stride can move a front by.
    More is the refinement losing the bed's seeds, not placing its front: nests smaller than a tile, each shifted tile
    seeing part of one, fell under the seed threshold (helper h45g: 42a's og42a_005 0.801 -> 0.529 Dice, og42a_004
    0.198 -> 0.174, gave up 3.2 and 1.2 times that share; 44b's slides, whose Dice it raises, at most 0.63 times)."""
    from scipy import ndimage as ndi

    bed, tissue = np.asarray(bed, bool), np.asarray(tissue, bool)
    other = tissue & ~bed
    if not bed.any() or not other.any():
        return ""
    lost = int(np.count_nonzero(bed & ~np.asarray(redrawn, bool)))
    near = int(np.count_nonzero(bed & (ndi.distance_transform_edt(~other) * mask_mpp <= tile_um / 2)))
    if lost <= near:
        return ""
    total = int(np.count_nonzero(bed))
    return (f"redrawn bed gave up {lost / total:.0%} of the tiles' bed, more than the {near / total:.0%} within half a "
            "tile of its front, not used")


def slide_embedder(attrs: dict, slide_path: str | Path | None = None, encoder=None) -> Embed | None:
    """``embed(xy)`` for a feature file's slide (its ``attrs``): tiles read at level-0 ``xy`` and embedded
    as its features were; ``None`` when the slide is not there (the caller keeps the tile-level bed)."""
    from weakstil.tumorbed.augment import features_encoder
    from weakstil.tumorbed.ink import features_slide

    path = features_slide(attrs, slide_path)
    if path is None:
        return None
    if encoder is None:
        from weakstil import settings

        encoder = features_encoder(attrs, settings.DEVICE)  # as the jittered copies: the GPU where there is one

    def embed(xy: np.ndarray) -> np.ndarray:
        import torch

        from weakstil.decode.batches import tile_batches
        from weakstil.slide import Slide
        from weakstil.stain import Normaliser, SlideStain
        from weakstil.unsharp import Sharpening, unsharpen

        mpp, tile_px = float(attrs["mpp"]), int(attrs["tile_px"])
        sharp = Sharpening.from_json(attrs.get("sharpening"))
        norm = Normaliser(SlideStain.from_attr(attrs.get("stain"))) if str(attrs.get("stain_norm")) == "macenko" else None
        out = np.zeros((len(xy), encoder.embed_dim), np.float32)
        t0 = time.perf_counter()
        bar, task = _bar(len(xy), str(attrs.get("slide_id") or Path(path).stem))
        with Slide.open(path, slide_mpp=float(attrs["slide_mpp"])) as slide, torch.inference_mode(), bar:
            # read as 'weakstil embed' read the tiles (weakstil.decode: a JPEG level's own tiles, reduced as it
            # reduces them), not through OpenSlide's read_region: a 0.25 µm/px slide's tiles at 0.5 µm/px differed
            # by up to 0.006 on features of about 0.07 (0.0002 now; helper h45g)
            for start, batch in tile_batches(slide, np.asarray(xy), tile_px, mpp, encoder, batch_size=64,
                                             decode="cpu", workers=0)[0]:
                tiles = np.array(batch)
                if sharp is not None and sharp.corrected:  # as weakstil.embed._write_cache did
                    tiles = unsharpen(tiles, sharp.amount, sharp.sigma_um / mpp)
                if norm is not None:
                    tiles = norm(tiles)
                out[start:start + len(tiles)] = encoder.run(
                    torch.from_numpy(np.ascontiguousarray(tiles)).to(encoder.device)).float().cpu().numpy()
                if task is not None:
                    bar.update(task, completed=start + len(tiles))
        log.info("%s: %d shifted tiles at the bed's front read and embedded in %.1f s",
                 attrs.get("slide_id") or path, len(xy), time.perf_counter() - t0)
        return out

    return embed


def _bar(n: int, slide_id: str):
    """``(progress, task)``: a bar of the ``n`` shifted tiles (the commands' rich bar on the log console, shown on a
    terminal), or a no-op and None for a few tiles or with INFO lines hidden (``-q``)."""
    from contextlib import nullcontext

    from weakstil.cli.progress import bar_progress, info_hidden

    if n < PROGRESS_TILES or info_hidden():
        return nullcontext(), None
    bar = bar_progress("shifted tiles")
    return bar, bar.add_task(f"{slide_id}: bed front", total=n, info="")


def front_embedder(attrs: dict, slide_path: str | Path | None, encoders: dict,
                   offered: Callable | None = None) -> tuple[Embed | None, str]:
    """:func:`slide_embedder` for ``apply``/``score``, the features' encoder built once per encoder and weights in
    ``encoders`` (a failure kept too: not tried again for every slide); ``(None, why)`` when the slide or the
    encoder is not there (the features embedded where a checkpoint was that is not here, hub weights not cached
    offline, features of other weights, a slide that cannot be read): the caller keeps the tile-level bed and
    records ``why`` (:data:`NOT_READ`, :data:`NO_ENCODER`), rather than failing a slide the detector has a bed for.
    ``offered()``: an encoder the caller already holds (``score``'s, which embeds its slides), used when it has the
    features' weights and card: a second copy of a UNI- or Virchow-sized encoder doubled the memory (helper h45i)."""
    from weakstil.errors import WeakSTILError
    from weakstil.tumorbed.augment import features_encoder
    from weakstil.tumorbed.ink import features_slide

    if (path := features_slide(attrs, slide_path)) is None:
        return None, NOT_READ
    key = tuple(str(attrs.get(k, "")) for k in ("encoder", "weights_sha256", "weights_source", "seed"))
    if key not in encoders:
        from weakstil import settings

        try:
            encoders[key] = _offered(attrs, offered) or features_encoder(attrs, settings.DEVICE)
        except WeakSTILError as exc:
            encoders[key] = exc
    encoder = encoders[key]
    if isinstance(encoder, WeakSTILError):  # ';' separates the words of seed_vetoes
        return None, f"{NO_ENCODER} ({encoder.message.replace(';', ',')})"
    embed = slide_embedder(attrs, slide_path, encoder)

    def guarded(xy: np.ndarray) -> np.ndarray:
        try:
            return embed(xy)
        except WeakSTILError as exc:  # a damaged slide: read as the ink veto reads it, not there
            raise FrontUnread(unread_word(exc, path)) from exc

    return guarded, ""


def unread_word(exc: Exception, path: str | Path) -> str:
    """The bed's word for shifted tiles of the slide at ``path`` not read (``exc``): :data:`NOT_READ` and why, with
    :data:`DAMAGED` and the file's size and times (:func:`_stamp`) when its data is damaged (:func:`damaged_as_recorded`)."""
    import os

    from weakstil.decode.jpeg_tiles import CORRUPT_DATA_WARNINGS, CorruptTileError

    why = str(getattr(exc, "message", exc)).replace(";", ",")  # ';' separates the words of seed_vetoes
    if isinstance(exc, CorruptTileError) or any(w in str(exc) for w in CORRUPT_DATA_WARNINGS):
        try:
            st = os.stat(path)
            return f"{NOT_READ} ({DAMAGED} [{_stamp(st)}]: {why})"
        except OSError:
            pass
    return f"{NOT_READ} ({why})"


def damaged_as_recorded(vetoes: str, path: str | Path) -> bool:
    """Whether a bed's ``vetoes`` say its front was not read for damaged data of the slide file at ``path`` as that
    file still is (its size and times recorded, :func:`_stamp`): reading it again fails again, so it is not retried.
    A read error (a network share gone, a file locked) is retried, and so is a file copied or exported again."""
    import os
    import re

    found = re.search(re.escape(f"{NOT_READ} ({DAMAGED} [") + r"([\d:]+)\]", vetoes)
    try:
        return found is not None and found[1] == _stamp(os.stat(path))
    except OSError:
        return False


def _stamp(st) -> str:
    """The file's size, modification time and status-change time (ns): a file restored over the damaged one with the
    same size and its modification time kept (``cp -p``, ``rsync -a`` of a good copy of a scan damaged in transfer)
    has a new status-change time, which no user sets (review r47c: size and mtime alone kept it unread)."""
    return f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _offered(attrs: dict, offered: Callable | None):
    """``offered()`` when it is the features' encoder (its weights and card), else None (built anew). The weights
    are compared as ``score`` compares them before reusing the features (:func:`weakstil.weights_id.same_weights`):
    a cache from before hunt 24 records the checkpoint file's hash, which was refused here while ``score`` used the
    features, so such a bed was drawn without its front, and the slide scored again, on every run (helper h45l)."""
    from weakstil.errors import WeakSTILError
    from weakstil.feature_cache import _weights_record, card_differences
    from weakstil.weights_id import same_weights

    if offered is None or not attrs.get("weights_sha256"):
        return None
    try:
        encoder = offered()
    except WeakSTILError:  # the caller's could not be built: the features' own is tried
        return None
    if not same_weights(attrs, _weights_record(encoder)) or card_differences(attrs, encoder):
        return None
    return encoder


class FrontUnread(Exception):
    """The shifted tiles could not be read (:func:`front_embedder`); its message is the bed's word."""


def choose_front(slides, evidence: list[np.ndarray], raw: list[np.ndarray], predictors: list, shape, per_slide: bool,
                 embedders: Callable[[str], Embed | None], band_tiles: float = BAND_TILES,
                 prepare: Callable | None = None) -> tuple[FrontRefine, dict]:
    """Whether the detector refines its front (:class:`FrontRefine`) and the record for model.json: each
    annotated slide's bed from its held-out ``evidence`` (after the vetoes; ``raw`` before them, ``predictors``
    the fold's classifier) with ``shape``, without and with the half-stride evidence (its growth past the tile-level
    bed bounded by each of :data:`GROW_CHOICES`), scored by Dice against its annotation on its own mask grid; the front
    is kept when a bound's mean gains :data:`FRONT_MIN_GAIN` over the tile-level beds', and of those bounds the
    tightest unless a looser one gains :data:`FRONT_MIN_GAIN` mean Dice over it.
    ``embedders(slide_id)``: that slide's ``embed`` (None: not readable, the slide is left out of this choice);
    ``prepare(slide, evidence) -> (geom, evidence)``: with the structure steps chosen (mucin.chosen_structure)."""
    from weakstil.bed_geometry import bed_from_evidence
    from weakstil.tissue import dice
    from weakstil.tumorbed.veto import dark_nuclei_area

    t0 = time.perf_counter()
    off, on, per_slide_dice, not_read, shifted, guarded = [], {g: [] for g in GROW_CHOICES}, {}, [], 0, []
    for s, ev, r, predict in zip(slides, evidence, raw, predictors):
        embed = embedders(s.slide_id)
        if embed is None:
            not_read.append(s.slide_id)
            continue
        g, ev = prepare(s, ev) if prepare is not None else (s.geom, ev)
        infiltrate = dark_nuclei_area(s.tile_stats, s.stats_columns) if shape.infiltrate_um > 0 else None
        bed, _ = bed_from_evidence(ev, g.coords, g.tile_size_level0, g.slide_mpp, g.tissue_mask, g.mask_mpp, shape,
                                   infiltrate, extra_seeds=g.seed_pixels)
        redrawn, n = refined_mask(bed, ev, r, s.features, g, shape, predict, per_slide, embed, band_tiles, infiltrate)
        if lost_beyond_front(bed, redrawn, g.tissue_mask, g.mask_mpp, g.tile_size_level0 * g.slide_mpp):
            redrawn = bed  # as detect_file does (TumorBedDetector.refine_front)
            guarded.append(s.slide_id)
        truth = np.asarray(s.bed_mask, bool)
        off.append(dice(bed, truth))
        for grow in GROW_CHOICES:  # the bound is the redraw's last step (refined_mask): applied to the unbounded one
            reach = None if grow is None else grow * g.tile_size_level0 * g.slide_mpp
            on[grow].append(dice(bounded_growth(redrawn, bed, g.mask_mpp, reach), truth))
        shifted += n
        per_slide_dice[s.slide_id] = {"off": round(off[-1], 4), **{_grow_key(k): round(v[-1], 4) for k, v in on.items()}}
    record = {"band_tiles": float(band_tiles), "min_gain": FRONT_MIN_GAIN, "per_slide": per_slide_dice,
              "not_read": not_read, "lost_beyond_front": guarded, "shifted_tiles": int(shifted), "seconds": round(time.perf_counter() - t0, 1)}
    if not off:
        record["chosen"] = "off: no annotated slide could be read"
        return FrontRefine(), record
    means = {k: float(np.mean(v)) for k, v in on.items()}
    # among the bounds the front's gate passes (review r48b: a tight bound gaining too little turned the front off
    # where a looser one passed), the tightest; more growth only where the annotations show it gains
    passing = [k for k in GROW_CHOICES if means[k] - float(np.mean(off)) >= FRONT_MIN_GAIN] or [GROW_CHOICES[0]]
    grow = passing[0]
    for looser in passing[1:]:
        grow = looser if means[looser] >= means[grow] + FRONT_MIN_GAIN else grow
    record.update(dice_off=round(float(np.mean(off)), 4), dice_on=round(means[grow], 4),
                  dice_min_off=round(float(np.min(off)), 4), dice_min_on=round(float(np.min(on[grow])), 4),
                  grow_tiles=grow, dice_on_by_grow={_grow_key(k): round(v, 4) for k, v in means.items()})
    gain = means[grow] - float(np.mean(off))
    chosen = gain >= FRONT_MIN_GAIN
    record["chosen"] = "on" if chosen else f"off: gain {gain:+.4f} < {FRONT_MIN_GAIN:g}"
    log.info("half-stride evidence at the bed's front: held-out Dice %.3f -> %.3f on %d slides (growth past the tiles' "
             "bed %s; %d shifted tiles, %.0f s): %s", record["dice_off"], record["dice_on"], len(off),
             "unbounded" if grow is None else f"at most {grow:g} tile",
             shifted, record["seconds"], record["chosen"])
    return FrontRefine(enabled=chosen, band_tiles=band_tiles, grow_tiles=grow), record


def _grow_key(grow: float | None) -> str:
    """The record's name for a bound: ``on`` unbounded (as records before helper h48b named the front on)."""
    return "on" if grow is None else f"on_grow_{grow:g}"
