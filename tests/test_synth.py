"""Tests of the synthetic cohort generator (weakstil.synth)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import openslide
import pandas as pd
import pytest
from skimage.draw import polygon2mask

from weakstil import synth
from weakstil.synth import generate_cohort, generate_slide, sample_target_stil
from weakstil.synth.generator import plan_slide
from weakstil.synth.sprites import bank

SIZE = (1.2, 1.2)  # mm -> 2400 x 2400 level-0 px, 300 x 300 mask px
SEED = 7
N = 3


@pytest.fixture(scope="module")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cohort")
    generate_cohort(out, N, SEED, size_mm=SIZE, n_groups=2, progress=False)
    return out


def _labels(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "labels.csv")


def _truth(out: Path, sid: str) -> tuple[dict[str, np.ndarray], dict]:
    with h5py.File(out / "truth" / f"{sid}.h5", "r") as h5:
        data = {k: h5[k][()] for k in ("tissue", "tumorbed", "tumor", "stroma", "fat", "lymphocyte", "regions")}
        data.update({f"tiles/{k}": h5["tiles"][k][()] for k in h5["tiles"]})
        attrs = dict(h5.attrs)
        attrs["tile_size_level0"] = h5["tiles"].attrs["tile_size_level0"]
    return data, attrs


# ---------------------------------------------------------------- layout / files


def test_cohort_layout(cohort: Path) -> None:
    df = _labels(cohort)
    assert list(df.columns) == ["slide_id", "path", "stil", "group"]
    assert len(df) == N
    assert list(df.slide_id) == [f"synth_{i:04d}" for i in range(N)]
    assert set(df.group) == {"centre_0", "centre_1"}
    for row in df.itertuples():
        assert not Path(row.path).is_absolute()
        assert (cohort / row.path).is_file()
        for suffix in (".h5", "_tumorbed.geojson", "_preview.png"):
            assert (cohort / "truth" / f"{row.slide_id}{suffix}").is_file()
    meta = json.loads((cohort / "cohort.json").read_text())
    assert meta["seed"] == SEED and meta["n_slides"] == N and meta["size_mm"] == list(SIZE)
    assert [s["slide_id"] for s in meta["slides"]] == list(df.slide_id)
    # atomic writes leave no temporary files behind
    assert not [p for p in cohort.rglob(".*")]


def test_slides_open_in_openslide(cohort: Path) -> None:
    for row in _labels(cohort).itertuples():
        s = openslide.OpenSlide(str(cohort / row.path))
        try:
            assert s.properties["openslide.vendor"] == "generic-tiff"
            assert float(s.properties["openslide.mpp-x"]) == pytest.approx(0.5)
            assert float(s.properties["openslide.mpp-y"]) == pytest.approx(0.5)
            assert s.dimensions == (2400, 2400)
            assert s.level_count > 1
            assert s.level_downsamples[1] == pytest.approx(4.0)
        finally:
            s.close()


# ---------------------------------------------------------------- exact truth


def test_label_recomputes_from_truth(cohort: Path) -> None:
    df = _labels(cohort)
    for row in df.itertuples():
        t, attrs = _truth(cohort, row.slide_id)
        sel = (t["tumorbed"] == 1) & (t["stroma"] == 1)
        assert sel.sum() > 100
        lymph = t["lymphocyte"]
        assert lymph.dtype == np.float32 and lymph.min() >= 0 and lymph.max() <= 1
        # coverage is a count of level-0 pixels in each 8x8 block
        assert np.array_equal(lymph * 64, np.round(lymph * 64))
        stil = 100.0 * lymph[sel].astype(np.float64).sum() / sel.sum()
        assert stil == pytest.approx(row.stil, abs=1e-3)
        assert stil == pytest.approx(float(attrs["stil"]), abs=1e-9)
        assert attrs["mask_mpp"] == 4.0 and attrs["slide_mpp"] == 0.5
        assert int(attrs["width"]) == 2400 and int(attrs["height"]) == 2400
        assert "tumorbed & stroma" in str(attrs["stil_formula"])
        for key in ("style_h_vec", "style_e_vec", "style_brightness", "style_blur_sigma"):
            assert key in attrs
        # calibration: the drawn label lands close to the sampled target
        assert abs(stil - float(attrs["target_stil"])) < 3.0


def test_masks_are_consistent(cohort: Path) -> None:
    t, _ = _truth(cohort, "synth_0000")
    assert t["tissue"].shape == (300, 300)
    tissue, bed, tumor, stroma, fat = (t[k].astype(bool) for k in ("tissue", "tumorbed", "tumor", "stroma", "fat"))
    assert not (tumor & stroma).any() and not (tumor & fat).any() and not (stroma & fat).any()
    assert not (bed & ~tissue).any() and not (tumor & ~bed).any()
    frac = tissue.mean()
    assert 0.35 < frac < 0.85
    assert 0.2 < bed.sum() / tissue.sum() < 0.7
    assert 0.2 < tumor.sum() / bed.sum() < 0.65
    # lymphocytes are only counted where they were drawn; most lie in stroma
    assert t["lymphocyte"][stroma].sum() > 0.6 * t["lymphocyte"].sum()


def test_lymphocyte_truth_is_what_was_drawn(cohort: Path) -> None:
    """Rasterise every planned lymphocyte sprite naively and compare with the truth."""
    meta = json.loads((cohort / "cohort.json").read_text())
    for slide in meta["slides"][:2]:
        t, attrs = _truth(cohort, slide["slide_id"])
        plan = plan_slide(slide["seed"], size_mm=SIZE, group=slide["group"])
        assert np.array_equal(plan.layout.regions, t["regions"])
        ly = plan.cells.by_kind("lymphocyte")
        b = bank("lymphocyte")
        h, w = plan.height, plan.width
        full = np.zeros((h + 2 * b.size, w + 2 * b.size), bool)
        for y, x, s in zip(ly.y, ly.x, ly.sprite):
            y0, x0 = y - b.half + b.size, x - b.half + b.size
            full[y0:y0 + b.size, x0:x0 + b.size] |= b.footprint[s]
        full = full[b.size:b.size + h, b.size:b.size + w]
        cov = full.reshape(h // 8, 8, w // 8, 8).mean(axis=(1, 3))
        np.testing.assert_array_equal(cov.astype(np.float32), t["lymphocyte"])
        assert attrs["n_lymphocytes_bed"] + attrs["n_lymphocytes_other"] == len(ly)


def test_tile_truth(cohort: Path) -> None:
    t, attrs = _truth(cohort, "synth_0001")
    assert attrs["tile_size_level0"] == 224
    coords = t["tiles/coords"]
    n = 2400 // 224
    assert coords.shape == (n * n, 2) and coords.dtype == np.int64
    assert coords.max() + 224 <= 2400 and coords.min() == 0
    area = 224 * 224
    c = n * 28  # tiled part of the mask grid
    lymph, stroma, bed = t["lymphocyte"][:c, :c], t["stroma"][:c, :c] == 1, t["tumorbed"][:c, :c] == 1
    # area-weighted tile sums equal slide-level sums over the tiled area
    assert (t["tiles/stroma_fraction"].astype(np.float64) * area).sum() == pytest.approx(stroma.sum() * 64, rel=1e-5)
    assert (t["tiles/lymphocyte_fraction"].astype(np.float64)).sum() * area == pytest.approx(
        lymph[stroma].sum() * 64, rel=1e-4)
    assert (t["tiles/tumorbed_fraction"].astype(np.float64)).sum() * area == pytest.approx(bed.sum() * 64, rel=1e-5)
    num = t["tiles/tumorbed_lymphocyte_fraction"].astype(np.float64).sum()
    den = t["tiles/tumorbed_stroma_fraction"].astype(np.float64).sum()
    assert 100 * num / den == pytest.approx(100 * lymph[bed & stroma].sum() / (bed & stroma).sum(), rel=1e-4)
    # one tile checked by hand
    k = int(np.argmax(t["tiles/stroma_fraction"] * (t["tiles/lymphocyte_fraction"] > 0)))
    x, y = coords[k] // 8
    st = t["stroma"][y:y + 28, x:x + 28] == 1
    ly = t["lymphocyte"][y:y + 28, x:x + 28]
    assert t["tiles/stroma_fraction"][k] == pytest.approx(st.mean(), abs=1e-6)
    assert t["tiles/stil"][k] == pytest.approx(100 * ly[st].sum() / st.sum(), rel=1e-4)
    no_stroma = t["tiles/stroma_fraction"] == 0
    assert no_stroma.any() and np.isnan(t["tiles/stil"][no_stroma]).all()
    assert not np.isnan(t["tiles/stil"][~no_stroma]).any()


def test_geojson_matches_tumorbed(cohort: Path) -> None:
    for row in _labels(cohort).itertuples():
        fc = json.loads((cohort / "truth" / f"{row.slide_id}_tumorbed.geojson").read_text())
        assert fc["type"] == "FeatureCollection" and fc["features"]
        t, _ = _truth(cohort, row.slide_id)
        raster = np.zeros((300, 300), bool)
        for feat in fc["features"]:
            assert feat["properties"]["objectType"] == "annotation"
            assert feat["properties"]["classification"]["name"] == "Tumor bed"
            geom = feat["geometry"]
            assert geom["type"] in ("Polygon", "MultiPolygon")
            polys = [geom["coordinates"]] if geom["type"] == "Polygon" else geom["coordinates"]
            for rings in polys:
                for i, ring in enumerate(rings):
                    xy = np.asarray(ring, float)
                    assert xy.min() >= 0 and xy[:, 0].max() <= 2400 and xy[:, 1].max() <= 2400
                    # rasterise on the mask grid (pixel centres at (i + 0.5) * 8)
                    m = polygon2mask((300, 300), xy[:, ::-1] / 8.0 - 0.5)
                    raster = raster ^ m if i else raster | m
        bed = t["tumorbed"] == 1
        inter = (raster & bed).sum()
        union = (raster | bed).sum()
        assert inter / union > 0.97
        assert raster.sum() == pytest.approx(bed.sum(), rel=0.03)


# ---------------------------------------------------------------- pixels


def test_rendered_pixels_follow_regions(cohort: Path) -> None:
    s = openslide.OpenSlide(str(cohort / "slides" / "synth_0001.tiff"))
    img = np.asarray(s.read_region((0, 0), 0, s.dimensions).convert("RGB"), np.float64)
    s.close()
    t, _ = _truth(cohort, "synth_0001")
    blocks = img.reshape(300, 8, 300, 8, 3).mean(axis=(1, 3))
    stroma, tissue, tumor = t["stroma"] == 1, t["tissue"] == 1, t["tumor"] == 1
    lymph_px = blocks[stroma & (t["lymphocyte"] == 1)]
    stroma_px = blocks[stroma & (t["lymphocyte"] == 0)]
    assert len(lymph_px) > 20 and len(stroma_px) > 1000
    lm, sm = lymph_px.mean(0), stroma_px.mean(0)
    assert lm.mean() < sm.mean() - 50  # lymphocytes are much darker
    assert (lm[2] - lm[0]) > (sm[2] - sm[0]) + 20  # ... and bluer (B - R)
    assert sm[0] > sm[1] + 30  # stroma is pink: red over green
    from scipy import ndimage

    bg = blocks[ndimage.binary_erosion(~tissue, iterations=2)]
    assert bg.mean() > 225 and bg.mean() > blocks[tissue].mean() + 20
    assert blocks[tumor].mean(0)[0] < sm[0] - 15  # nests carry more haematoxylin


# ---------------------------------------------------------------- reproducibility


def test_same_seed_same_bytes(cohort: Path, tmp_path: Path) -> None:
    generate_cohort(tmp_path, 2, SEED, size_mm=SIZE, n_groups=2, progress=False)
    a = _labels(cohort).iloc[:2].reset_index(drop=True)
    b = _labels(tmp_path)
    pd.testing.assert_frame_equal(a, b)
    for sid in ("synth_0000", "synth_0001"):
        assert (tmp_path / "truth" / f"{sid}.h5").read_bytes() == (cohort / "truth" / f"{sid}.h5").read_bytes()
        assert (tmp_path / "slides" / f"{sid}.tiff").read_bytes() == (cohort / "slides" / f"{sid}.tiff").read_bytes()


def test_different_seed_differs(cohort: Path, tmp_path: Path) -> None:
    generate_cohort(tmp_path, 1, SEED + 1, size_mm=SIZE, progress=False)
    assert _labels(tmp_path).stil[0] != _labels(cohort).stil[0]
    t1, _ = _truth(tmp_path, "synth_0000")
    t0, _ = _truth(cohort, "synth_0000")
    assert not np.array_equal(t1["tissue"], t0["tissue"])


def test_resume_reuses_complete_slides(cohort: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = (cohort / "labels.csv").read_bytes()

    def boom(*args: object, **kwargs: object) -> None:
        raise AssertionError("complete slide regenerated")

    monkeypatch.setattr("weakstil.synth.generator.generate_slide", boom)
    generate_cohort(cohort, N, SEED, size_mm=SIZE, n_groups=2, progress=False)
    assert (cohort / "labels.csv").read_bytes() == before


def test_killed_slide_leaves_no_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from weakstil.synth import generator

    real = generator.render_block
    calls = {"n": 0}

    def flaky(*args: object, **kwargs: object):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] > 1:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(generator, "render_block", flaky)
    with pytest.raises(KeyboardInterrupt):
        generate_slide(tmp_path / "s.tiff", tmp_path, "s", 1, size_mm=(1.2, 1.2))
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- labels


def test_target_sampler_matches_tcga() -> None:
    rng = np.random.Generator(np.random.PCG64(123))
    x = sample_target_stil(rng, 2000)
    assert 0.5 <= x.min() and x.max() <= 90
    assert 10.5 <= np.median(x) <= 14.5
    assert 0.22 <= (x >= 30).mean() <= 0.32
    assert 0.05 <= (x >= 50).mean() <= 0.13
    assert 0.10 <= (x <= 1.5).mean() <= 0.20  # the TCGA 1 % floor (15 % of slides)
    # quantile function is smooth and strictly increasing
    q = synth.stil_quantile(np.linspace(0, 1, 1001))
    assert (np.diff(q) > 0).all()


def test_stratified_targets_draw_every_bin_once() -> None:
    from weakstil.synth.distribution import stratified_target_stil

    for n in (1, 8, 40):
        x = np.sort(stratified_target_stil(np.random.default_rng(n), n))
        bins = synth.stil_quantile(np.arange(n + 1) / n)
        # the k-th smallest target lies in the k-th of n equal-probability bins: the tail is always drawn
        assert ((bins[:-1] <= x) & (x <= bins[1:])).all()
    # independent draws of 40 may hold one slide above 35 %; stratified ones always hold about six
    assert (stratified_target_stil(np.random.default_rng(3), 40) >= 35).sum() >= 5
    # the order is random, so centres (slide i -> centre i % groups) do not sort by sTIL%
    x = stratified_target_stil(np.random.default_rng(0), 40)
    assert not (np.diff(x) > 0).all()


def test_stratified_cohort_uses_its_targets_and_is_not_reused_by_an_independent_run(tmp_path: Path) -> None:
    from weakstil.synth.distribution import stratified_target_stil
    from weakstil.synth.generator import _S_COHORT_TARGETS, _rng

    df = generate_cohort(tmp_path, 2, SEED, size_mm=(0.6, 0.6), stratified=True, progress=False)
    targets = stratified_target_stil(_rng(SEED, _S_COHORT_TARGETS), 2)
    for sid, target in zip(df["slide_id"], targets):
        _, attrs = _truth(tmp_path, sid)
        assert float(attrs["target_stil"]) == pytest.approx(target)
    assert json.loads((tmp_path / "cohort.json").read_text())["stratified"] is True
    # the same folder generated with independent draws regenerates its slides (other targets)
    plain = generate_cohort(tmp_path, 2, SEED, size_mm=(0.6, 0.6), progress=False)
    for sid in plain["slide_id"]:
        _, attrs = _truth(tmp_path, sid)
        assert float(attrs["target_stil"]) not in [pytest.approx(t) for t in targets]
    assert "stratified" not in json.loads((tmp_path / "cohort.json").read_text())


@pytest.mark.parametrize("target", [3.0, 60.0])
def test_explicit_target_is_hit(tmp_path: Path, target: float) -> None:
    res = generate_slide(tmp_path / "s.tiff", tmp_path, "s", 11, size_mm=(1.0, 1.0), target_stil=target,
                         preview=False)
    assert res.target_stil == target
    assert abs(res.stil - target) < max(1.0, 0.05 * target)
    assert res.preview_path is None and res.path.is_file()


def test_geojson_loads_with_weakstil_annotations(cohort: Path) -> None:
    from weakstil.annotations import load_polygons, rasterize

    for row in _labels(cohort).itertuples():
        poly = load_polygons(cohort / "truth" / f"{row.slide_id}_tumorbed.geojson")
        mask = rasterize(poly, 2400, 2400, 0.5, 4.0)
        t, _ = _truth(cohort, row.slide_id)
        bed = t["tumorbed"] == 1
        assert mask.shape == bed.shape
        assert (mask & bed).sum() / (mask | bed).sum() > 0.95
