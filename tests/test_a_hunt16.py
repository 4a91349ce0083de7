"""Fault hunt 16 (a): blank, dim, tinted and oddly stored slides, as a stranger's fault matrix feeds them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import run_cli, write_disc_slide, write_tiff_slide

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _glass(colour, size: int = 1600, ramp: float = 0.0, mottle: float = 0.0, seed: int = 0) -> np.ndarray:
    """A blank slide (glass only) of ``colour``: lit ``ramp`` dimmer at its right edge, with a
    grain of ``mottle`` grey levels (sd, over 20 µm)."""
    from PIL import Image

    img = np.broadcast_to(np.asarray(colour, np.float32), (size, size, 3)).copy()
    img *= (1.0 - ramp * np.linspace(0.0, 1.0, size, dtype=np.float32))[None, :, None]
    if mottle:
        low = np.random.default_rng(seed).normal(0, mottle, (size // 40, size // 40)).astype(np.float32)
        img += np.asarray(Image.fromarray(low).resize((size, size), Image.Resampling.BICUBIC))[..., None]
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _single_level_jpeg_tiff(path: Path, rgb: np.ndarray, mpp: float = 0.5, quality: int = 60) -> Path:
    """A one-level tiled JPEG TIFF (no pyramid: the overview is read from the full resolution)."""
    import tifffile

    tifffile.imwrite(path, rgb, tile=(256, 256), compression="jpeg", compressionargs={"level": quality},
                     photometric="rgb", resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER")
    return path


BLANKS = {
    "neutral205": dict(colour=(205, 205, 205)),
    "neutral190_grain": dict(colour=(190, 190, 190), mottle=2.0),
    "yellow_dim_uneven": dict(colour=(215, 208, 188), ramp=0.06),
    "blue_uneven": dict(colour=(205, 212, 228), ramp=0.05),
    "bright240_uneven": dict(colour=(240, 240, 240), ramp=0.12),
}


@pytest.fixture(scope="module")
def blanks(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("blank")
    out = {name: write_tiff_slide(root / f"{name}.tiff", _glass(**kw), levels=2) for name, kw in BLANKS.items()}
    out["neutral190_grain"] = _single_level_jpeg_tiff(root / "neutral190_grain.tiff", _glass(**BLANKS["neutral190_grain"]))
    return out


def test_blank_dim_or_tinted_glass_is_refused_as_no_tissue_and_the_batch_goes_on(blanks, tmp_path):
    """A blank slide whose glass is dim (205), tinted (yellow, blue) or unevenly lit was refused as "a
    greyscale image" or "tissue colours are not pink/purple": its glass was taken for tissue (any
    pixel under 220). Now: one "no tissue ... check the slide is not blank" line each, exit 1, no
    outputs for them, and the tissue slide beside them is tiled."""
    disc = write_disc_slide(tmp_path / "disc.tiff")
    out = tmp_path / "out"
    proc = run_cli("tile", *blanks.values(), disc, "--out", out)
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == len(blanks), proc.stderr
    for name, path in blanks.items():
        line = next(line for line in lines if line.startswith(f"error: {path}:"))
        assert line.startswith(f"error: {path}: no tissue found (0 tiles). Fix: check the slide is not blank"), line
        assert not (out / f"{name}.h5").exists() and not (out / f"{name}_tiles.png").exists()
    assert (out / "disc.h5").exists()


def test_grainy_blank_glass_has_no_fat(blanks):
    """The fat step read the grain of a blank slide's glass (2 grey levels) as fat's faint membranes:
    with glass alone, the faint share's Otsu cut split the glass's own noise, and 13 % of a blank
    slide was tissue. Fat lies in stained tissue; a slide with none is blank."""
    from weakstil.slide import Slide
    from weakstil.tissue import detect_tissue

    with Slide.open(blanks["neutral190_grain"]) as slide:
        thumb = slide.read_thumbnail(8.0)
    assert detect_tissue(thumb, 8.0).sum() == 0


def test_the_glass_level_follows_the_overview_below_a_grey_level():
    """The glass level was its histogram's mode bin (+0.5): a third of a level's change in the overview
    moved it by 0 or by a whole level, and the fat step's faint cut with it."""
    from weakstil.tissue import glass_level

    rng = np.random.default_rng(0)
    base = np.round((231.8 + rng.normal(0, 0.6, 20_000)) * 3) / 3  # a mean of three channels: thirds
    levels = [glass_level((base + k / 3).astype(np.float32))[0] for k in range(4)]
    steps = np.diff(levels)
    assert np.all(np.abs(steps - 1 / 3) < 0.12), levels
    assert abs(levels[0] - 231.8) < 0.2


@pytest.fixture(scope="module")
def alt_slide(tmp_path_factory) -> np.ndarray:
    """The level 0 (RGB, 0.5 µm/px) of an alt-look 1 mm synthetic slide."""
    import tifffile

    from weakstil.synth import generate_slide

    root = tmp_path_factory.mktemp("alt")
    generate_slide(root / "s.tiff", root, "s", seed=2, size_mm=(1.0, 1.0), preview=False, look="alt")
    return tifffile.imread(root / "s.tiff", level=0)[..., :3]


@pytest.fixture(scope="module")
def fatty_slide(tmp_path_factory) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """A default-look 1 mm slide (level 0, 0.5 µm/px) and its truth masks (4 µm/px)."""
    import h5py
    import tifffile

    from weakstil.synth import generate_slide

    root = tmp_path_factory.mktemp("fatty")
    generate_slide(root / "s.tiff", root, "s", seed=5, size_mm=(1.0, 1.0), preview=False)
    with h5py.File(root / "s.h5") as f:
        truth = {k: f[k][:].astype(bool) for k in ("tissue", "fat")}
    return tifffile.imread(root / "s.tiff", level=0)[..., :3], truth


@pytest.fixture(scope="module")
def one_slide_four_pyramids(tmp_path_factory, alt_slide) -> dict[str, Path]:
    """An alt-look 1 mm slide written as four pyramids: Aperio SVS (JPEG, x4), one-level LZW, JPEG
    tiles of 512 with a level stored at 8 µm/px (the tissue mask's own resolution), Deflate x2."""
    import tifffile

    from weakstil.decode.svswriter import write_svs
    from weakstil.synth.pyramid import downsample_mean

    root = tmp_path_factory.mktemp("pyramids")
    rgb = alt_slide

    def tiff(name, levels, step, tile, **kw):
        with tifffile.TiffWriter(root / name) as tw:
            img = rgb
            for k in range(levels):
                img = downsample_mean(img, step) if k else img
                lm = 0.5 * rgb.shape[1] / img.shape[1]
                tw.write(img, tile=(tile, tile), resolution=(1e4 / lm, 1e4 / lm), resolutionunit="CENTIMETER",
                         subfiletype=1 if k else 0, photometric="rgb", metadata=None, **kw)
        return root / name

    return {"svs": write_svs(root / "s.svs", rgb, 0.5),
            "lzw": tiff("lzw.tiff", 1, 1, 256, compression="lzw"),
            "jpeg_at_8um": tiff("jpeg.tiff", 3, 4, 512, compression="jpeg", compressionargs={"level": 80}),
            "deflate_x2": tiff("deflate.tiff", 3, 2, 128, compression="zlib")}


def test_the_tile_count_does_not_depend_on_how_the_pyramid_is_stored(one_slide_four_pyramids):
    """One slide, four pyramids: 47, 47, 42 and 47 tiles. A level stored at the mask's own resolution
    (8 µm/px) was read as the overview: its writer's JPEG halos doubled the glass noise and its
    chroma raised the saturation cut, so pale tissue was lost. The overview is now this reader's own
    reduction of a level at least twice finer."""
    from weakstil.slide import Slide
    from weakstil.tiles import TilingParams, find_tiles

    counts = {}
    for name, path in one_slide_four_pyramids.items():
        with Slide.open(path) as slide:
            counts[name] = len(find_tiles(slide, TilingParams()).coords)
    assert max(counts.values()) - min(counts.values()) <= 1, counts


def test_an_under_exposed_scan_is_refused_not_tiled_on_its_glass(alt_slide, tmp_path):
    """A brightfield scan under-exposed to 60 % (glass at 140 of 255) was all "tissue" (every tile of
    the slide, glass included, no warning: its densities were measured against white light; at 50 %
    only the warning "mostly dark image (fluorescence?)"). Now one line says it is under-exposed;
    at 70 % (glass 163) it is tiled as the slide itself is."""
    dark = np.clip(np.round(alt_slide * 0.6), 0, 255).astype(np.uint8)
    path = write_tiff_slide(tmp_path / "dark.tiff", dark, levels=2)
    proc = run_cli("tile", path, "--out", tmp_path / "out")
    assert proc.returncode == 1 and proc.stderr.count("\n") == 1, proc.stderr
    assert proc.stderr.startswith(f"error: {path}: is under-exposed (its glass is at 1")
    assert not (tmp_path / "out" / "dark.h5").exists()
    from weakstil.slide import Slide
    from weakstil.tiles import TilingParams, find_tiles

    counts = []
    for k, gain in enumerate((1.0, 0.7)):
        img = np.clip(np.round(alt_slide * gain), 0, 255).astype(np.uint8)
        with Slide.open(write_tiff_slide(tmp_path / f"s{k}.tiff", img, levels=2)) as slide:
            counts.append(len(find_tiles(slide, TilingParams()).coords))
    assert abs(counts[1] - counts[0]) <= 2, counts


def test_a_crop_within_the_tissue_keeps_its_fat(fatty_slide, tmp_path):
    """A region exported from within the tissue (no glass in view) lost its fat: the fat step's Otsu
    cut splits glass from fat, and with no glass it split the fat itself (cut 0.23 for 0.12), so a
    half of a fatty 0.3 mm crop was "not tissue". The class under the cut must now be as bare as glass."""
    from weakstil.slide import Slide
    from weakstil.tiles import TilingParams, find_tiles

    rgb, truth = fatty_slide
    win = 75  # 300 µm at 4 µm/px
    tissue = truth["tissue"].astype(np.int32).cumsum(0).cumsum(1)
    fat = truth["fat"].astype(np.int32).cumsum(0).cumsum(1)

    def box(c, y, x):
        return c[y + win - 1, x + win - 1] - c[y - 1, x + win - 1] - c[y + win - 1, x - 1] + c[y - 1, x - 1]
    best = max(((box(fat, y, x), y, x) for y in range(1, truth["fat"].shape[0] - win, 5)
                for x in range(1, truth["fat"].shape[1] - win, 5) if box(tissue, y, x) == win * win))
    assert best[0] > 0.5 * win * win  # a crop with a good share of fat, all of it tissue
    y, x = best[1] * 8, best[2] * 8
    path = write_tiff_slide(tmp_path / "crop.tiff", np.ascontiguousarray(rgb[y:y + win * 8, x:x + win * 8]), levels=1)
    with Slide.open(path) as slide:
        tiles = find_tiles(slide, TilingParams())
    assert tiles.tissue_mask.mean() > 0.95, tiles.tissue_mask.mean()


def test_a_blank_slide_with_a_black_border_dust_or_a_bubble_says_no_tissue(tmp_path):
    """The colour checks judged any pixel darker than the glass: a blank slide of normal glass (240)
    with a scanner's black border, dust or an air bubble's rim was "a greyscale image". They now
    judge the detector's tissue, which has none of these."""
    rng = np.random.default_rng(3)
    size = 1200
    yy, xx = np.mgrid[:size, :size]
    glass = np.full((size, size, 3), 240, np.uint8)
    border = glass.copy()
    border[:, :150] = 0
    dust = glass.copy()
    for cy, cx, r in zip(rng.integers(50, size - 50, 30), rng.integers(50, size - 50, 30), rng.integers(3, 15, 30)):
        dust[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] = (90, 85, 80)
    bubble = glass.copy()
    bubble[np.abs(np.hypot(yy - 600, xx - 600) - 250) < 6] = 160
    paths = [write_tiff_slide(tmp_path / f"{name}.tiff", img, levels=2)
             for name, img in (("border", border), ("dust", dust), ("bubble", bubble))]
    proc = run_cli("tile", *paths, "--out", tmp_path / "out")
    assert proc.returncode == 1
    for path in paths:
        assert f"error: {path}: no tissue found (0 tiles). Fix: check the slide is not blank" in proc.stderr, proc.stderr


def test_tissue_too_thin_for_a_tile_is_not_called_a_blank_slide(tmp_path):
    """A strand of tissue 32 µm wide and 0.8 mm long (0.026 mm², over the debris size) fills no tile to
    half: "no tissue found ... check the slide is not blank" sent the user to a slide that is not.
    The line now says how much tissue was found and that the threshold is what leaves it out."""
    rng = np.random.default_rng(0)
    rgb = np.full((2000, 2000, 3), 240, np.uint8)
    # 32 µm x 800 µm at 0.5 µm/px (it was 40 µm, whose 8 µm/px mask, 7 pixels wide, fills a tile of
    # 14 exactly to half since the overview is the scan averaged, hunt 23 a)
    strand = (slice(968, 1032), slice(200, 1800))
    rgb[strand] = (205, 120, 180)
    rgb[strand][rng.random((64, 1600)) < 0.15] = (80, 40, 120)
    path = write_tiff_slide(tmp_path / "strand.tiff", rgb, levels=2)
    proc = run_cli("tile", path, "--out", tmp_path / "out")
    assert proc.returncode == 1
    assert proc.stderr.startswith(f"error: {path}: no tissue found (0 tiles): the tissue found, 0.0"), proc.stderr
    assert "fills no tile to the tissue threshold 0.5. Fix: lower --tissue-threshold" in proc.stderr
    assert run_cli("tile", path, "--out", tmp_path / "low", "--tissue-threshold", "0.2").returncode == 0


def test_the_finer_overview_is_read_only_where_it_costs_little(one_slide_four_pyramids, monkeypatch):
    """The overview from a level twice finer than the mask costs 16 times the pixels on a 20x
    pyramid (about 10 s for a 20 x 15 mm slide): it is read only within a budget of extra pixels,
    and beyond it the stored level is read as before; a slide with no coarser level pays nothing."""
    import weakstil.tiles as tiles
    from weakstil.slide import Slide

    with Slide.open(one_slide_four_pyramids["jpeg_at_8um"]) as slide:
        # within the budget, the finest level: the scan itself (hunt 23 a: the same overview at any µm/px)
        r = tiles.mask_overview_reduction(slide, tiles.TISSUE_MASK_MPP)
        assert r >= tiles.MASK_MIN_REDUCTION and slide.best_level_for_mpp(tiles.TISSUE_MASK_MPP / r) == 0
        monkeypatch.setattr(tiles, "MASK_FINER_MAX_EXTRA_PIXELS", 1000)
        assert tiles.mask_overview_reduction(slide, tiles.TISSUE_MASK_MPP) == 1.0
        assert len(tiles.find_tiles(slide, tiles.TilingParams()).coords) > 0
    with Slide.open(one_slide_four_pyramids["lzw"]) as slide:  # one level: no extra read, the finer path
        assert tiles.mask_overview_reduction(slide, tiles.TISSUE_MASK_MPP) >= tiles.MASK_MIN_REDUCTION
