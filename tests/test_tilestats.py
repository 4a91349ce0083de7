"""Per-tile stain and morphometry measurements: they track the truth and survive a change of stain."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from weakstil.errors import WeakSTILError
from weakstil.metrics import pearson
from weakstil.slide import Slide
from weakstil.stain import estimate_slide_stain, normalise
from weakstil.tilestats import COLUMNS, batch_stats

SIZE = (1.2, 1.2)


@pytest.fixture(scope="module")
def two_looks(tmp_path_factory):
    """One slide's content (same seed) rendered in two centres' stain looks, with its truth tiles."""
    from weakstil.synth import generate_slide

    root = tmp_path_factory.mktemp("looks")
    out = {}
    for group in ("centre_1", "centre_2"):
        res = generate_slide(root / f"{group}.tiff", root / group, "s", 5, size_mm=SIZE, target_stil=25.0,
                             group=group, preview=False)
        with h5py.File(res.truth_path) as f:
            truth = {k: f["tiles"][k][:] for k in ("coords", "stroma_fraction", "tissue_fraction",
                                                   "lymphocyte_fraction")}
        keep = truth["tissue_fraction"] > 0.5
        with Slide.open(res.path) as slide:
            stain = estimate_slide_stain(slide)
            tiles = np.stack([slide.read_region(int(x), int(y), 224, 0.5) for x, y in truth["coords"][keep]])
        out[group] = (tiles, stain, {k: v[keep] for k, v in truth.items()})
        out.setdefault("path", res.path)
    return out


def test_stroma_estimate_and_lymphocyte_area_track_the_truth(two_looks):
    tiles, stain, truth = two_looks["centre_1"]
    assert stain.source == "macenko"
    stats = batch_stats(tiles, stain, 0.5)
    assert stats.shape == (len(tiles), len(COLUMNS)) and np.isfinite(stats).all()
    # 0.747 on this one slide with the stain estimated on 48 of its tiles averaged to 4 µm/px (stain
    # estimate 4), 0.85+ with the stored 4 µm/px level's; over 40 hard, 30 alt-look and 40 default-look
    # slides the tile estimate tracks the truth as well or better (benchmarks/stain_angles.py)
    assert pearson(truth["stroma_fraction"], stats[:, COLUMNS.index("stroma_estimate")]) > 0.7
    # lymphocyte area in stroma: dark nuclei of lymphocyte size or larger (touching ones merge)
    dark = [COLUMNS.index(f"{a}_dark_stroma") for a in ("small", "medium", "large")]
    assert pearson(truth["lymphocyte_fraction"], stats[:, dark].sum(1)) > 0.8


def test_measurements_agree_across_stain_looks(two_looks):
    """Same tissue, two centres' stains: the slide-relative measurements barely move."""
    (ta, sa, _), (tb, sb, _) = two_looks["centre_1"], two_looks["centre_2"]
    assert not np.allclose(sa.he, sb.he, atol=1e-3)  # the looks really differ
    a, b = batch_stats(ta, sa, 0.5), batch_stats(tb, sb, 0.5)
    for name in ("stroma_estimate", "nuclear", "large_dark_stroma"):
        j = COLUMNS.index(name)
        assert pearson(a[:, j], b[:, j]) > 0.9, name
    j = COLUMNS.index("stroma_estimate")
    assert abs(a[:, j].mean() - b[:, j].mean()) < 0.1


def test_macenko_normalisation_brings_two_looks_together(two_looks):
    (ta, sa, _), (tb, sb, _) = two_looks["centre_1"], two_looks["centre_2"]
    raw = np.abs(ta.astype(float).mean((0, 1, 2)) - tb.astype(float).mean((0, 1, 2))).sum()
    na, nb = normalise(ta, sa), normalise(tb, sb)
    assert na.dtype == np.uint8 and na.shape == ta.shape
    normed = np.abs(na.astype(float).mean((0, 1, 2)) - nb.astype(float).mean((0, 1, 2))).sum()
    assert normed < raw


def test_macenko_normalisation_is_the_reference_rendering(two_looks):
    """The fast path (lookup table, in-place float32) renders what the textbook expression does:
    concentrations clipped at 0, scaled to the reference strengths, through the reference vectors."""
    from weakstil.stain import IO, REFERENCE_HE, REFERENCE_MAX_C, concentrations

    tiles, stain, _ = two_looks["centre_2"]
    c = concentrations(tiles, stain).astype(np.float64).clip(min=0.0) * REFERENCE_MAX_C
    plain = np.clip(IO * np.exp(-(c @ REFERENCE_HE.T)), 0, 255).astype(np.uint8)
    fast = normalise(tiles, stain)
    diff = np.abs(fast.astype(int) - plain)
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3
    # a GPU-decoded batch is normalised as a tensor where it lies (here on the CPU): the same pixels
    import torch

    from weakstil.stain import normalise_tensor

    as_tensor = normalise_tensor(torch.from_numpy(tiles), stain)
    assert as_tensor.dtype == torch.uint8 and tuple(as_tensor.shape) == tiles.shape
    assert np.abs(as_tensor.numpy().astype(int) - fast).max() <= 1


def _angle(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a / np.linalg.norm(a), b / np.linalg.norm(b)
    return float(np.degrees(np.arccos(np.clip(abs(a @ b), 0.0, 1.0))))


def _inked_tissue(ink_rgb: tuple[float, float, float]):
    """A 400 x 400 px thumbnail of H&E tissue (Beer-Lambert pixels of known stain vectors) under a
    soft-edged marker ring over 14 % of it; returns (thumbnail, tissue mask, H, E)."""
    rng = np.random.default_rng(0)
    h, e = np.array([0.62, 0.78, 0.13]), np.array([0.16, 0.83, 0.53])
    h, e = h / np.linalg.norm(h), e / np.linalg.norm(e)
    n = 400
    nuclei = rng.random((n, n)) < 0.15
    c_h = np.minimum(rng.gamma(2.0, 0.25, (n, n)) * np.where(nuclei, 2.5, 0.3), 1.5)
    c_e = np.minimum(rng.gamma(4.0, 0.1, (n, n)), 1.2)
    from weakstil.stain import IO

    tissue_rgb = np.clip(IO * np.exp(-(c_h[..., None] * h + c_e[..., None] * e)), 0, 255)
    yy, xx = np.mgrid[:n, :n]
    alpha = np.clip(1 - np.abs(np.hypot(yy - n / 2, xx - n / 2) - 150) / 12, 0, 1)[..., None] * 0.7
    thumb = (tissue_rgb * (1 - alpha) + np.array(ink_rgb) * alpha).astype(np.uint8)
    return thumb, np.ones((n, n), bool), h, e  # ink over tissue stays tissue


def test_marker_ink_is_left_out_of_the_stain_estimate(monkeypatch):
    """Macenko's vectors are the extreme angles of the tissue pixels, so a pen ring over 14 % of
    the tissue decides them. Green ink: ``stain_pixels`` leaves the ring and its margin out by
    colour; grey ink over tissue (no colour rule sees it): the plane filter drops the pixels off
    the plane of the two stains. Either way both vectors end within 5° of the truth, and without
    the plane filter the grey ring turns the eosin vector by more than 10°."""
    import weakstil.stain as stain_mod
    from weakstil.stain import estimate_stain, stain_pixels

    thumb, tissue, h, e = _inked_tissue((40.0, 170.0, 90.0))
    kept = stain_pixels(thumb, 4.0, tissue)
    assert 0.75 < kept.mean() < 0.9  # the ring (14 %) and its 24 µm margin
    clean = estimate_stain(thumb, kept)
    assert _angle(clean.he[:, 0], h) < 5 and _angle(clean.he[:, 1], e) < 5
    untouched, _, _, _ = _inked_tissue((255.0, 255.0, 255.0))  # alpha-blended white: no ink at all
    assert stain_pixels(untouched, 4.0, tissue).mean() > 0.999

    grey, tissue, h, e = _inked_tissue((90.0, 90.0, 90.0))
    assert stain_pixels(grey, 4.0, tissue).mean() > 0.99  # over tissue: no colour rule sees it
    planar = estimate_stain(grey, tissue)
    assert _angle(planar.he[:, 0], h) < 5 and _angle(planar.he[:, 1], e) < 5
    monkeypatch.setattr(stain_mod, "PLANE_MAX_SINE", 1.0)  # every pixel
    every = estimate_stain(grey, tissue)
    assert _angle(every.he[:, 1], e) > 10


def test_the_colour_table_renders_what_normalise_does(two_looks):
    """A large slide's tiles go through a 2^24-colour table once enough pixels were rendered: the
    same pixels bit for bit, so the switch never shows in the features."""
    from weakstil.stain import Normaliser

    tiles, stain, _ = two_looks["centre_1"]
    per_call = tiles[:4].size // 3
    norm = Normaliser(stain, table_after_pixels=per_call)
    first = norm(tiles[:4])
    assert norm.table is None  # the first call fits under the threshold: rendered directly
    second = norm(tiles[4:8])
    assert norm.table is not None and norm.pixels == 2 * per_call
    assert np.array_equal(first, normalise(tiles[:4], stain))
    assert np.array_equal(second, normalise(tiles[4:8], stain))
    odd = np.random.default_rng(0).integers(0, 256, (2, 33, 17, 3), dtype=np.uint8)  # every colour region
    assert np.array_equal(norm(odd), normalise(odd, stain))


def test_embed_stores_the_tile_measurements_and_stain_norm_is_in_the_cache_key(two_looks, tmp_path):
    """embed writes tile_stats and stroma_estimate through weakstil.files; normalising the tiles'
    stain changes the features, so it changes the cache key (a cache made without it is not reused)."""
    from weakstil.embed import embed_slide, open_encoder
    from weakstil.feature_cache import cache_key
    from weakstil.files import FeaturesFile
    from weakstil.slide import Slide
    from weakstil.tiles import TilingParams

    slide_path = two_looks["path"]
    params = TilingParams(mpp=1.0)  # 224 µm tiles: a few dozen
    enc, _ = open_encoder("small-cnn", "random", "cpu", workers=1, stain_norm="none")
    plain = embed_slide(slide_path, enc, out_dir=tmp_path / "plain", params=params, workers=0)
    f = FeaturesFile.read(plain.path)
    assert f.tile_stats.shape == (plain.n_tiles, len(COLUMNS)) and np.isfinite(f.tile_stats).all()
    np.testing.assert_array_equal(f.stroma_estimate, f.tile_stats[:, COLUMNS.index("stroma_estimate")])
    assert f.attrs["stain_norm"] == "none" and "he" in f.attrs["stain"]
    normed_enc, _ = open_encoder("small-cnn", "random", "cpu", workers=1)  # the card's default: macenko
    assert normed_enc.card.stain_norm == "macenko"
    with Slide.open(slide_path) as slide:
        assert cache_key(enc, params, slide.mpp) != cache_key(normed_enc, params, slide.mpp)
    # the cache made without normalisation is not reused: kept in a folder of the user's (refused)...
    with pytest.raises(WeakSTILError, match="another stain normalisation.*they are kept"):
        embed_slide(slide_path, normed_enc, out_path=plain.path, params=params, workers=0)
    # ... and redone in one the run owns
    normed = embed_slide(slide_path, normed_enc, out_path=plain.path, params=params, workers=0,
                         keep_other_settings=False)
    assert not normed.skipped
    g = FeaturesFile.read(normed.path)
    assert g.attrs["stain_norm"] == "macenko" and not np.allclose(g.features, f.features)
    np.testing.assert_allclose(g.tile_stats, f.tile_stats)  # measured on the raw tiles either way


def test_opencv_and_numpy_primitives_give_the_same_measurements(two_looks):
    """The OpenCV primitives and their numpy/scipy fallback (a machine without OpenCV) agree bit for
    bit: table lookup, 4-connected labels, mirrored-edge box counts, also on tiles smaller than the box."""
    from weakstil.imageops import image_ops

    tiles, stain, _ = two_looks["centre_1"]
    tiles = tiles[:12]
    for mpp in (0.5, 2.0):
        np.testing.assert_array_equal(batch_stats(tiles, stain, mpp, backend="opencv"),
                                      batch_stats(tiles, stain, mpp, backend="numpy"))
    small = np.ascontiguousarray(tiles[:4, :40, :56])
    np.testing.assert_array_equal(batch_stats(small, stain, 0.5, backend="opencv"),
                                  batch_stats(small, stain, 0.5, backend="numpy"))
    cv, nu = image_ops("opencv"), image_ops("numpy")
    mask = (tiles[0, ..., 0] < np.median(tiles[0, ..., 0])).astype(np.uint8)
    for size in (3, 41, 301):
        np.testing.assert_array_equal(cv.box_count(mask, size), nu.box_count(mask, size))
    n, labels = cv.label4(mask)
    assert n > 1 and labels.max() == n
    np.testing.assert_array_equal(labels, nu.label4(mask)[1])


def test_the_stain_estimate_reads_the_pixels_the_features_are_made_of(two_looks, tmp_path):
    """Identical full-resolution pixels in two files whose reduced levels were written differently
    (one at JPEG quality 25 with its eosin boosted, as another scanner's software might store them):
    the slide's stain estimate, and the tile measurements made with it, are the same. Estimated on a
    4 µm/px thumbnail read from a stored reduced level, the eosin strength doubled and the score
    moved across the 30 % threshold (fault hunt 6D #1)."""
    import tifffile

    from weakstil.synth.pyramid import downsample_mean
    from weakstil.tiles import find_tiles

    with tifffile.TiffFile(two_looks["path"]) as tf:
        level0 = tf.pages[0].asarray()
        mpp = 1e4 / (tf.pages[0].tags["XResolution"].value[0] / tf.pages[0].tags["XResolution"].value[1])

    def write(path, boost_eosin: float, quality: int):
        opts = dict(tile=(256, 256), compression="jpeg", photometric="rgb", resolutionunit="CENTIMETER",
                    metadata=None)
        with tifffile.TiffWriter(path) as tw:
            tw.write(level0, subifds=0, resolution=(1e4 / mpp, 1e4 / mpp), compressionargs={"level": 88}, **opts)
            reduced = level0
            for k in (1, 2):
                reduced = downsample_mean(reduced)
                shown = reduced.astype(np.float32)
                shown[..., 1] = 255 * (shown[..., 1] / 255) ** boost_eosin  # less green: more eosin
                tw.write(np.clip(shown, 0, 255).astype(np.uint8), subfiletype=1, compressionargs={"level": quality},
                         resolution=(1e4 / (mpp * 4 ** k), 1e4 / (mpp * 4 ** k)), **opts)
        return path

    paths = (write(tmp_path / "a.tiff", 1.0, 88), write(tmp_path / "b.tiff", 1.6, 25))
    found = []
    for path in paths:
        with Slide.open(path) as slide:
            tiles = find_tiles(slide)
            found.append((tiles, estimate_slide_stain(slide, tiles)))
    (tiles_a, a), (tiles_b, b) = found
    assert a.source == b.source == "macenko"
    assert np.allclose(a.max_c, b.max_c, rtol=0.02), (a.max_c, b.max_c)
    assert np.allclose(a.he, b.he, atol=0.01), (a.he, b.he)
    # the measurements of the tiles both files have (the tissue masks come from the reduced levels)
    shared = np.array(sorted({tuple(c) for c in tiles_a.coords} & {tuple(c) for c in tiles_b.coords}))[:20]
    stats = []
    for path, stain in zip(paths, (a, b)):
        with Slide.open(path) as slide:
            pixels = np.stack([slide.read_region(int(x), int(y), 224, 0.5) for x, y in shared])
        stats.append(batch_stats(pixels, stain, 0.5))
    continuous = [COLUMNS.index(c) for c in ("stroma_estimate", "eosin_dominant", "nuclear", "mean_h", "mean_e",
                                              "h_p90")]
    assert np.abs(stats[0][:, continuous] - stats[1][:, continuous]).max() < 0.01
    density = COLUMNS.index("nuclei_per_100um2")  # a nucleus at a threshold may count in one file only
    assert abs(stats[0][:, density].mean() - stats[1][:, density].mean()) < 0.02 * stats[0][:, density].mean()
