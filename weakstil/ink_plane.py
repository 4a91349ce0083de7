"""Marker ink against the plane of the slide's stains, shared by the tumour-bed ink veto
(:mod:`weakstil.tumorbed.ink`) and the slide QC's ink measure (:mod:`weakstil.qc.image`).

Absorbance adds (Beer-Lambert): a stained pixel's optical density is a mix of the slide's H and E
optical-density vectors, so it lies in their plane whatever colour the mix looks, while marker ink
(grey, black, blue, green or red) lies 0.2-0.4 of its density out of it. So ink over tissue is
tissue whose smoothed optical density lies off the plane (:func:`ink_and_stain`'s first mask), and
a pixel that the colour rules (:func:`weakstil.pen.ink_pixels`) call ink but whose optical density
lies within :data:`IN_PLANE_SHARE` of the plane is stain, not ink (its second mask): the alt look's
grey H+E mix (hunt 40a) and a blue-haematoxylin / orange-eosin look's blue nuclei over orange stroma,
grey at 4 µm/px (hunt 40i).
"""

from __future__ import annotations

import contextlib
import contextvars
import hashlib
import logging
import zlib
from collections.abc import Iterator

import numpy as np

from weakstil.scoped_cache import scoped_dict

log = logging.getLogger(__name__)

#: Ink over tissue: optical density at least this far out of the plane of the slide's stains ...
OFF_PLANE_OD = 0.03
#: ... smoothed over this (Gaussian sigma, µm: the texture of nuclei and fibres averages out) ...
OFF_PLANE_SIGMA_UM = 8.0
#: ... in strokes at least this wide (a marker's is 60 µm and more; thinner lines are stain edges)
OFF_PLANE_MIN_WIDTH_UM = 24.0
#: A pixel the colour rules call ink whose optical density lies within this share of its density of the
#: plane of the slide's stains is stain, not ink (grey, black, blue and green markers lie 0.2-0.4 out of it; stained
#: tissue 0.003-0.01): on a look whose haematoxylin passes green and whose H+E mix is neutral grey (the alt look:
#: the grey direction lies 0.01 from its plane) its tumour sheets and lymphoid aggregates are 'dark grey' and
#: 'green' to those rules (hunt 40a: 95 of a slide's 255 tiles, its tumour, vetoed as ink; Dice 0.34 -> 0.90).
IN_PLANE_SHARE = 0.1
#: Pixels with less optical density than this (sum over the channels' norm) are glass, not stain.
OFF_PLANE_MIN_DENSITY = 0.15
#: The plane is refitted on the pixels within this sine of it (:data:`weakstil.stain.PLANE_MAX_SINE`).
OFF_PLANE_FIT_SINE = 0.08
#: More than this share of the stained tissue off the plane is no marker ink: the plane is wrong
#: (with an eosin vector a black ring had turned 31° to grey, the pink stroma of a hard synthetic
#: slide read as ink: 33 % of the thumbnail, 82 of its 99 tiles vetoed; 32 with the generator's own
#: vectors). A ring round the tumour covers 5-25 % of the tissue on our synthetic slides.
OFF_PLANE_MAX_SHARE = 0.5
#: The plane the slide's own stained pixels hold (:func:`own_plane`), where it holds clearly more of them than the
#: plane of its stain vectors, is the stains' when at most this share as much tissue lies off it: stain mixtures
#: are most of any tissue, and marker ink a minority, so a wrong plane leaves stain off it, and the stains' plane
#: only the ink. A plane through two near-parallel vectors is ill-set: on a purple look over pale eosin stroma with a
#: haematoxylin tint (no pixel pure eosin; hunt 44b) Macenko's eosin lay 14-25° off towards haematoxylin, 10-14°
#: from it, and a few degrees out of plane turned the plane 40-52°; refitted from there it held 15-49 % of the
#: stained pixels, the slide's own 87-94 %, and 25-49 % of the tissue of slides with no ink read as ink, just under
#: OFF_PLANE_MAX_SHARE (151-221 tiles ink-vetoed on 4 of 36 slides, silently); off their own plane 0-2 %. Where ink
#: itself pulls the own plane (a black stroke over a third of the tissue) it trades the ink for stain: as much off.
OWN_PLANE_INK_RATIO = 0.5
#: The planes are fitted on this many of the stained pixels at most (:func:`subsample`).
PLANE_SAMPLE = 200_000
#: Which rule chose the plane ink over tissue is measured against, recorded with each bed (``ink_plane_rule``) and
#: each detector's ink veto: 1, the stain vectors' plane refitted, the slide's own only where over
#: :data:`OFF_PLANE_MAX_SHARE` of the tissue lay off it (before hunt 44b); 2, also the slide's own plane where it holds
#: clearly more of the stained pixels and leaves at most :data:`OWN_PLANE_INK_RATIO` as much off it (hunt 44b); 3, the
#: same whichever way the slide lies (:func:`absorbance`'s glass and :func:`subsample`'s pixels: helper h45d). A
#: detector whose veto was chosen under another rule is told (its veto tiles differ on some slides), not silently.
INK_PLANE_RULE = 3

#: What ``ink_and_stain`` records as the slide's ink test (``test["ink_test"]``): the plane the ink was measured against.
STAIN_PLANE, OWN_PLANE, NOT_CHECKED = "stain plane", "own plane", "not checked"


def rule_said(rule: int) -> str:
    """An ink-plane rule as a warning names it: 0 is a detector or bed that records none, made before helper h45d
    recorded it, so under rule 1 or 2 (which of the two cannot be told: until review h45e it was called rule 1, and
    the detectors and beds most in use, drawn since hunt 44b, are rule 2)."""
    return f"ink-plane rule {rule}" if rule > 0 else f"an ink-plane rule before {INK_PLANE_RULE} (1 or 2, not recorded)"


def rules_said(rules) -> str:
    """Several ink-plane rules (a record's keys, as strings or numbers) as a warning names them, in a fixed order."""
    return ", ".join(rule_said(int(r)) for r in sorted(rules))


def ink_and_stain(rgb: np.ndarray, stain_he: np.ndarray, mpp: float,
                  name: object = None, test: dict | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Marker ink over tissue (:func:`weakstil.tumorbed.ink.ink_over_tissue`), and the stained pixels whose own optical density lies within
    :data:`IN_PLANE_SHARE` of the plane it was measured against (stain, whatever its colour; none
    where no plane could be trusted). ``name``: the slide, named in the warning (hunt 41a: in a batch it named
    none, and the line sat before another slide's). ``test``: a dict given is told the plane the ink was measured
    against (``ink_test``: :data:`STAIN_PLANE`, :data:`OWN_PLANE` or :data:`NOT_CHECKED`) and the rule that chose it
    (``ink_plane_rule``: :data:`INK_PLANE_RULE`), recorded with the slide's bed. Inside :func:`ink_tests_kept` a test
    made already on the same slide, thumbnail, stain and resolution is given again (its masks read-only)."""
    told = {} if test is None else test
    rgb = np.ascontiguousarray(np.asarray(rgb)[..., :3])
    he = np.asarray(stain_he, np.float64)
    kept = _KEPT.get()
    key = None if kept is None else (str(name), rgb.shape, hashlib.blake2b(rgb).digest(), he.tobytes(), float(mpp))
    if key is not None and key in kept:
        masks, said = kept[key]
        told.update(said)
        return _unpacked(masks, rgb.shape[:2]) if isinstance(masks[0], bytes) else masks
    told.update(ink_test=NOT_CHECKED, ink_plane_rule=INK_PLANE_RULE)
    masks = _ink_and_stain(rgb, he, mpp, name, told)
    if key is not None:
        for mask in masks:
            mask.flags.writeable = False  # shared by the slide's callers
        said = {k: told[k] for k in ("ink_test", "ink_plane_rule")}
        # every slide's, until the block ends, packed: a 6-megapixel thumbnail's two masks 0.2-0.26 MB, nearly all the
        # stain mask's (half the tissue set, pixel by pixel; the ink mask 7-21 kB); at most 1.5 MB (review r46c)
        if kept.get(_EVERY_SLIDE):
            kept[key] = tuple(zlib.compress(np.packbits(m).tobytes(), 1) for m in masks), said
        else:
            kept.clear()  # the last slide's only
            kept[key] = masks, said
    return masks


def _unpacked(packed: tuple[bytes, ...], shape: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    """The masks :func:`ink_and_stain` kept packed, read-only as the ones it gives."""
    out = []
    for blob in packed:
        m = np.unpackbits(np.frombuffer(zlib.decompress(blob), np.uint8), count=shape[0] * shape[1]).astype(bool)
        m = m.reshape(shape)
        m.flags.writeable = False
        out.append(m)
    return tuple(out)


#: The ink tests made inside :func:`ink_tests_kept` (None outside one): (slide, thumbnail, stain, µm/px) -> the masks
#: and the test told; the last slide's only.
_KEPT: contextvars.ContextVar[dict | None] = contextvars.ContextVar("weakstil_ink_tests", default=None)


#: The key in :data:`_KEPT` that keeps every slide's test, not the last one's only.
_EVERY_SLIDE = "every slide"


@contextlib.contextmanager
def ink_tests_kept(every_slide: bool = False) -> Iterator[None]:
    """Inside the block a slide's ink test is made once for the callers that ask for it on the same thumbnail, stain
    and resolution (``score``: the bed's ink veto and the QC's ink measure, 1-4 s each on a 6-megapixel thumbnail;
    helper h45h), its masks read-only; at the block's end it is let go. Nested blocks share the outermost one's.
    ``every_slide``: each slide's test kept until the end, not the last slide's only, its masks packed and compressed
    (``train``: the beds of every slide are drawn before the QC reads the first one; helper h46c)."""
    with scoped_dict(_KEPT):
        if every_slide:
            _KEPT.get()[_EVERY_SLIDE] = True
        yield


def ink_test_read(name: object) -> None:
    """Inside :func:`ink_tests_kept`, let go of the ink tests kept for the slide ``name`` (its last reader has had
    them: ``train``'s QC, after every bed was drawn); they were kept until the run's end (review r46c, helper h47c)."""
    kept = _KEPT.get()
    for key in [k for k in kept or () if isinstance(k, tuple) and k[0] == str(name)]:
        del kept[key]


def _ink_and_stain(rgb: np.ndarray, he: np.ndarray, mpp: float, name: object, told: dict) -> tuple[np.ndarray, np.ndarray]:
    """:func:`ink_and_stain` made (``rgb`` the three channels, ``he`` float64)."""
    none = np.zeros(rgb.shape[:2], bool)
    normal = np.cross(he[:, 0], he[:, 1])
    if not np.isfinite(normal).all() or np.linalg.norm(normal) < 1e-6:
        return none, none
    od = np.stack([absorbance(rgb[..., c], mpp) for c in range(3)], axis=-1)
    density = np.sqrt((od * od).sum(axis=-1))
    stained = od[density > OFF_PLANE_MIN_DENSITY]
    sample = subsample(stained, PLANE_SAMPLE)  # drawn once: each fit below took the same draw again
    normal = refit_normal(sample, normal / np.linalg.norm(normal))
    tissue = _smoothed_stain(density, mpp)  # the same for each plane tried
    ink, share = off_plane(od, density, normal, mpp, tissue)
    own = own_plane(sample, normal) if share > 0 else None
    own_ink, own_share = off_plane(od, density, own, mpp, tissue) if own is not None else (ink, share)
    if own is None or own_share > OWN_PLANE_INK_RATIO * share:
        if share <= OFF_PLANE_MAX_SHARE:
            own = None
        else:  # most of the tissue off the plane is no ink: the image's own plane, whatever it holds
            own = refit_normal(sample, None)
            own_ink, own_share = off_plane(od, density, own, mpp, tissue)
    if own is not None:
        _say_refitted(name, share, own_share)
        if own_share > OFF_PLANE_MAX_SHARE:
            return none, none
        normal, ink = own, own_ink
    told["ink_test"] = STAIN_PLANE if own is None else OWN_PLANE
    in_plane = np.abs(od @ normal.astype(np.float32)) < IN_PLANE_SHARE * density
    return ink, in_plane & (density > OFF_PLANE_MIN_DENSITY)


def own_plane(stained: np.ndarray, normal: np.ndarray) -> np.ndarray | None:
    """The plane of the stained optical densities ``stained`` (n, 3) fitted from no start (:func:`refit_normal`) where
    it holds clearly more of them than the slide's stain plane refitted on them (unit ``normal``) and lies far from
    it, by the rule :func:`weakstil.stain.stain_plane_normal` chooses between its own two fits by
    (:data:`weakstil.stain.PLANE_CONSENSUS`, :data:`weakstil.stain.PLANE_SWITCH_DEG`); else None. The refit only
    searches near its start, and a plane through two near-parallel stain vectors is ill-set (:data:`OWN_PLANE_INK_RATIO`)."""
    from weakstil.stain import PLANE_CONSENSUS, PLANE_SWITCH_DEG

    if len(stained) < 100:
        return None
    stained = subsample(stained, PLANE_SAMPLE)
    own = refit_normal(stained, None)
    od = stained.astype(np.float64)
    near = np.linalg.norm(od, axis=1) * OFF_PLANE_FIT_SINE
    held, held_own = (int((np.abs(od @ n) < near).sum()) for n in (normal, own))
    tilt = float(np.degrees(np.arccos(min(1.0, abs(float(np.dot(normal, own)))))))
    return own if held_own > held + PLANE_CONSENSUS * len(od) and tilt > PLANE_SWITCH_DEG else None


#: Slides whose refitted plane was already told in this run (a run reads a slide's thumbnail for the
#: bed's ink veto and again for its QC: said once, then at debug level). Emptied where a run starts
#: (:func:`new_run`): a process outlives a run in napari and in a notebook, and a slide scored again there
#: (another model) had its lost check said at debug level only, no warning (helper h44l).
_SAID: set[tuple[str, bool]] = set()


def new_run() -> None:
    """Forget which slides' refitted planes were told: a run (a ``score_batch``) says each once again."""
    _SAID.clear()


def _say_refitted(name: object, share: float, again: float) -> None:
    """Tell that the ink test left the slide's stain plane for its own (hunt 44b: "59 % ... lies off the plane
    of the slide's stain vectors, which cannot be marker ink", said as a warning by every command reading a
    slide with no ink at all, read as news of ink). Most of the tissue off the plane is the slide's own colour
    (a grey haze over a thick section, a stain estimate that fits it poorly), not ink: the test adapted, and
    only where its own plane fails too is a check lost (a warning)."""
    who = f"{name}: " if name else ""
    lost = again > OFF_PLANE_MAX_SHARE
    key = (str(name), lost)  # the bed's read and the QC's differ a little in resolution, so in their shares
    level = logging.DEBUG if name and key in _SAID else logging.WARNING if lost else logging.INFO
    if name:
        _SAID.add(key)
    found = (f"{_percent(share)} % of the stained tissue is no mix of the slide's estimated haematoxylin and eosin, "
             + ("more than any marker covers" if share > OFF_PLANE_MAX_SHARE else "while its own colours hold it")
             + " (a third absorbance such as a thick section's grey haze or yellowing, or a stain estimate that fits "
             "the slide poorly)")
    if not lost:
        log.log(level, "%sink check adapted, not a sign of ink: %s; ink over tissue was measured against the slide's "
                "own tissue colours instead (%s %% off them); no action needed", who, found, _percent(again))
    else:
        log.log(level, "%sink over tissue not checked: %s, and %s %% lies off the slide's own tissue colours too; "
                "coloured ink and ink on the glass are still found: check the slide for marker ink by eye",
                who, found, _percent(again))


def _percent(share: float) -> str:
    """A share as the message says it, in percent: whole from 10 %, one decimal from 1 %, two significant digits below
    (since hunt 44b the own plane is taken where under 1 % of the tissue lay off the refitted one, and og44b_015, a
    hazy slide with 0.5 % off, was told "0 % of the stained tissue is no mix of the slide's estimated haematoxylin
    and eosin ... (0 % off them)")."""
    pct = 100 * share
    return f"{pct:.0f}" if pct >= 9.5 else f"{pct:.1f}" if pct >= 0.995 else f"{pct:.2g}"


def off_plane(od: np.ndarray, density: np.ndarray, normal: np.ndarray, mpp: float,
              tissue: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """The ink over tissue against the plane with unit ``normal`` (module docstring), and its share of
    the stained (smoothed) tissue. ``tissue``: :func:`_smoothed_stain` of ``density`` where the caller has it (the
    same for every plane tried)."""
    from scipy import ndimage as ndi

    from weakstil.morphology import open_disk

    off = ndi.gaussian_filter(od @ normal.astype(np.float32), OFF_PLANE_SIGMA_UM / mpp)
    stained = _smoothed_stain(density, mpp) if tissue is None else tissue
    ink = (np.abs(off) >= OFF_PLANE_OD) & stained
    radius = int(round(OFF_PLANE_MIN_WIDTH_UM / (2 * mpp)))
    if radius > 0 and ink.any():
        ink = open_disk(ink, radius)
    return ink, float(ink.sum() / max(1, stained.sum()))


def _smoothed_stain(density: np.ndarray, mpp: float) -> np.ndarray:
    """The stained tissue as :func:`off_plane` counts it: the smoothed optical density over :data:`OFF_PLANE_MIN_DENSITY`."""
    from scipy import ndimage as ndi

    return ndi.gaussian_filter(density, OFF_PLANE_SIGMA_UM / mpp) > OFF_PLANE_MIN_DENSITY


def absorbance(plane: np.ndarray, mpp: float) -> np.ndarray:
    """Optical density of one colour plane (uint8, ``mpp`` µm/px) against its own glass: the
    bright end (99th percentile) of the plane, or where the glass nearby is dimmer (uneven
    lighting: the bright end of :data:`weakstil.tissue.GLASS_BLOCK_PX` blocks, the brightest within
    :data:`weakstil.tissue.GLASS_REACH_UM`) that level. A lamp's fall-off is a neutral optical
    density, out of the plane of the stains like grey ink.

    The same whichever way the slide lies (a quarter turn or a mirror image gives the same densities, turned):
    the 99th percentile is of every pixel, and the blocks are laid from each of the four corners, the brightest of
    the four levels taken. Until helper h45d the blocks were anchored at the top-left corner and the percentile
    taken on every second pixel, so a quarter turn moved 8 % of og44b_018's pixels by up to 0.098 OD and its ink
    test's own-plane switch (:data:`OWN_PLANE_INK_RATIO`) was taken in 4 of its 8 orientations."""
    plane = np.asarray(plane)
    glass = max(float(np.percentile(plane, 99)), 1.0)
    level = _glass_level(plane, mpp, glass)  # float32, this call's own: the density is made in its place
    np.divide(level, np.maximum(plane, 1).astype(np.float32), out=level)
    return np.maximum(np.log10(level, out=level), np.float32(0.0), out=level)


def _glass_level(plane: np.ndarray, mpp: float, glass: float) -> np.ndarray:
    """Each pixel's glass level (float32, at most ``glass``, at least 1; :func:`absorbance`): the brightest of the
    levels of the block grids laid from each corner. A side of whole blocks lays the same grid from either end, so
    one grid per side is laid there; a side of another length two, offset. The grids' edges cut the image into cells
    that each lie in one block of every grid: the brightest level is taken per cell, and the cells are spread over
    their pixels once (helper h45h: each grid's levels were spread over the whole image, turned and mirrored back,
    and the four taken pixel by pixel; 6 MP of odd sides took 1 s more per ink test than one grid)."""
    from weakstil.tissue import GLASS_BLOCK_PX

    b = GLASS_BLOCK_PX
    h, w = plane.shape
    rows, cols = _grid_cells(h, b), _grid_cells(w, b)
    cell = None
    for r_pad, r_index in rows[1].items():
        for c_pad, c_index in cols[1].items():
            here = _block_glass(plane, mpp, glass, r_pad, c_pad)[np.ix_(r_index, c_index)]
            cell = here if cell is None else np.maximum(cell, here)
    return np.repeat(np.repeat(cell, rows[0], axis=0), cols[0], axis=1)


def _grid_cells(n: int, b: int) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Along a side of ``n`` pixels: the lengths of the cells that the block grids' edges cut it into, and for each
    grid (by the empty pixels before its first block: 0 laid from the start, ``-n % b`` from the end) the block
    each cell lies in."""
    pads = [0] + ([-n % b] if n % b else [])
    edges = np.unique(np.concatenate([np.arange(-pad, n + b, b) for pad in pads]).clip(0, n))
    return np.diff(edges), {pad: (edges[:-1] + pad) // b for pad in pads}


def _block_glass(plane: np.ndarray, mpp: float, glass: float, r_pad: int = 0, c_pad: int = 0) -> np.ndarray:
    """The glass level (at most ``glass``, at least 1) of each block of a grid laid ``r_pad`` and ``c_pad`` empty
    pixels before the image's top-left corner (:func:`absorbance`): the bright end of the block, empty pixels
    counted as 0, the brightest within :data:`weakstil.tissue.GLASS_REACH_UM`. Laid from the bottom-right corner
    the blocks are those of the image turned half round, read back (the filter is symmetric)."""
    from scipy import ndimage as ndi

    from weakstil.tissue import GLASS_BLOCK_PX, GLASS_REACH_UM

    b = GLASS_BLOCK_PX
    h, w = plane.shape
    hb, wb = -(-(h + r_pad) // b), -(-(w + c_pad) // b)
    padded = np.zeros((hb * b, wb * b), np.uint8)
    padded[r_pad:r_pad + h, c_pad:c_pad + w] = plane
    blocks = _block_percentile_90(padded.reshape(hb, b, wb, b).transpose(0, 2, 1, 3).reshape(hb, wb, b * b))
    reach = max(1, int(round(GLASS_REACH_UM / (mpp * b))))
    local = np.minimum(ndi.maximum_filter(blocks, size=2 * reach + 1, mode="nearest"), glass)
    return np.maximum(local, 1.0).astype(np.float32)


def _block_percentile_90(blocks: np.ndarray) -> np.ndarray:
    """``np.percentile(blocks, 90, axis=-1)`` (float64) of uint8 values, exactly, from a radix sort (the two values
    either side of the 90th percentile's place, halfway between them for 256 values): 40 % less time. Other
    lengths go to ``np.percentile``."""
    n = blocks.shape[-1]
    if blocks.dtype != np.uint8 or n != 256:
        return np.percentile(blocks, 90, axis=-1)
    ordered = np.sort(blocks, axis=-1, kind="stable")  # uint8: a radix sort
    return (ordered[..., 229].astype(np.float64) + ordered[..., 230]) * 0.5


def refit_normal(od: np.ndarray, normal: np.ndarray | None, max_pixels: int | None = None) -> np.ndarray:
    """The normal of the stains' plane through the origin, refitted (uncentred second moments,
    three times) on the optical densities ``od`` (n, 3) within :data:`OFF_PLANE_FIT_SINE` of the
    current plane, starting from ``normal``: the feature file's stain vectors come from a few
    tiles, and the plane of the thumbnail's own stained pixels is what the ink is measured against.
    Ink, being off the plane, is left out of the fit. ``normal`` None: the image's own plane, from
    no start (:func:`weakstil.stain.stain_plane_normal`)."""
    from weakstil.stain import stain_plane_normal

    od = subsample(od, PLANE_SAMPLE if max_pixels is None else max_pixels)
    if len(od) < 100 and normal is not None:
        return normal
    return stain_plane_normal(od.astype(np.float64), OFF_PLANE_FIT_SINE, start=normal)


def subsample(od: np.ndarray, n: int) -> np.ndarray:
    """``n`` of the rows of ``od`` (all when there are no more), chosen by their values, not their places: those of the
    smallest hash of their bits, in that order. The pixels come in raster order, so a random draw of places took other
    pixels from a turned or mirrored copy of the slide (og44b_027 and og44b_033's planes moved a little with
    orientation; helper h44n); a draw by value takes the same ones whichever way the slide lies."""
    if len(od) <= n:
        return od
    bits = np.ascontiguousarray(od, np.float32).view(np.uint32)
    # (b0 * 0x9E3779B1 ^ b1 * 0x85EBCA77 ^ b2 * 0xC2B2AE3D) % 0xFFFFFFFB in uint64, column by column in place (a third
    # of the time of the (n, 3) uint64 copy and its temporaries: helper h45h)
    key = bits[:, 0].astype(np.uint64)
    key *= np.uint64(0x9E3779B1)
    for column, factor in ((1, 0x85EBCA77), (2, 0xC2B2AE3D)):
        term = bits[:, column].astype(np.uint64)
        term *= np.uint64(factor)
        key ^= term
    key %= np.uint64(0xFFFFFFFB)
    chosen = np.argpartition(key, n - 1)[:n]
    return od[chosen[np.argsort(key[chosen], kind="stable")]]
