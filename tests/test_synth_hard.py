"""Hard synthetic cohorts (``weakstil synth --hard``) and looks (``--look``): every confounder is
drawn with its truth, and the label stays exact under the TILs Working Group definition."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import openslide
import pandas as pd
import pytest

from weakstil.synth import CONFOUNDERS, LOOKS, generate_cohort, generate_slide, sample_confounders
from weakstil.synth.constants import DCIS, NECROSIS, STROMA, TUMOR
from weakstil.synth.generator import plan_slide
from weakstil.synth.render import render_block, workspace
from weakstil.synth.sprites import TIL_KINDS, bank

SEVERE = {k: 1.0 for k in CONFOUNDERS}  # every confounder at full strength
SEED, SIZE, TARGET = 2, (1.6, 1.6), 40.0  # this seed and size have room for every structure
MASKS = ("tissue", "tumorbed", "tumor", "stroma", "fat", "lymphocyte", "regions", "necrosis", "dcis", "lymphoid",
         "plasma")


@pytest.fixture(scope="module")
def severe(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict, dict]:
    out = tmp_path_factory.mktemp("severe")
    generate_slide(out / "s.tiff", out, "s", SEED, size_mm=SIZE, target_stil=TARGET, confounders=SEVERE)
    with h5py.File(out / "s.h5", "r") as h5:
        t = {k: h5[k][()] for k in MASKS}
        t.update({f"tiles/{k}": h5["tiles"][k][()] for k in h5["tiles"]})
        attrs = dict(h5.attrs)
    return out, t, attrs


def _stil(t: dict) -> float:
    sel = (t["tumorbed"] == 1) & (t["stroma"] == 1)
    return 100.0 * t["lymphocyte"][sel].astype(np.float64).sum() / sel.sum()


def _blocks(img: np.ndarray) -> np.ndarray:
    h, w = img.shape[0] // 8, img.shape[1] // 8
    return img[: h * 8, : w * 8].reshape(h, 8, w, 8, 3).mean(axis=(1, 3))


def _slide_pixels(path: Path) -> np.ndarray:
    s = openslide.OpenSlide(str(path))
    try:
        return np.asarray(s.read_region((0, 0), 0, s.dimensions).convert("RGB"), np.float64)
    finally:
        s.close()


# ---------------------------------------------------------------- exact label


def test_hard_label_recomputes_from_truth(severe: tuple[Path, dict, dict]) -> None:
    _, t, attrs = severe
    assert _stil(t) == pytest.approx(float(attrs["stil"]), abs=1e-3)
    assert abs(float(attrs["stil"]) - TARGET) < 3.0  # the calibration still hits the target
    # the region masks partition the tissue: necrosis and DCIS are neither tumour nor stroma
    reg = t["regions"]
    assert np.array_equal(t["necrosis"] == 1, reg == NECROSIS) and np.array_equal(t["dcis"] == 1, reg == DCIS)
    assert np.array_equal(t["stroma"] == 1, reg == STROMA) and np.array_equal(t["tumor"] == 1, reg == TUMOR)
    # per-tile truth sums back to the slide label
    num = t["tiles/tumorbed_lymphocyte_fraction"].astype(np.float64).sum()
    den = t["tiles/tumorbed_stroma_fraction"].astype(np.float64).sum()
    n = int(SIZE[0] * 2000) // 224 * 28
    sel = (t["tumorbed"][:n, :n] == 1) & (t["stroma"][:n, :n] == 1)
    assert 100 * num / den == pytest.approx(100 * t["lymphocyte"][:n, :n][sel].sum() / sel.sum(), rel=1e-4)


def test_til_truth_is_what_was_drawn(severe: tuple[Path, dict, dict]) -> None:
    """Rasterise every planned TIL sprite (lymphocytes, plasma cells, centroblasts) naively."""
    _, t, _ = severe
    plan = plan_slide(SEED, size_mm=SIZE, target_stil=TARGET, confounders=SEVERE)
    assert np.array_equal(plan.layout.regions, t["regions"])
    h, w = plan.height, plan.width
    pad = 40
    til = np.zeros((h + 2 * pad, w + 2 * pad), bool)
    plasma = np.zeros_like(til)
    kinds = set()
    for st in plan.cells.stamps:
        if st.kind not in TIL_KINDS:
            continue
        kinds.add(st.kind)
        b = st.bank
        for y, x, s in zip(st.y, st.x, st.sprite):
            y0, x0 = y - b.half + pad, x - b.half + pad
            til[y0:y0 + b.size, x0:x0 + b.size] |= b.footprint[s]
            if st.kind == "plasma":
                plasma[y0:y0 + b.size, x0:x0 + b.size] |= b.footprint[s]
    assert kinds == set(TIL_KINDS)

    def cov(a: np.ndarray) -> np.ndarray:
        a = a[pad:pad + h, pad:pad + w]
        return a.reshape(h // 8, 8, w // 8, 8).mean(axis=(1, 3)).astype(np.float32)

    np.testing.assert_array_equal(cov(til), t["lymphocyte"])
    np.testing.assert_array_equal(cov(plasma), t["plasma"])


# ---------------------------------------------------------------- each confounder with its truth


def test_plasma_cells_count_as_tils(severe: tuple[Path, dict, dict]) -> None:
    _, t, attrs = severe
    bed_stroma = (t["tumorbed"] == 1) & (t["stroma"] == 1)
    assert attrs["n_plasma_bed"] > 50
    assert (t["plasma"] <= t["lymphocyte"]).all()  # plasma-cell area is part of the TIL coverage
    share = t["plasma"][bed_stroma].sum() / t["lymphocyte"][bed_stroma].sum()
    assert 0.15 < share < 0.7  # a real part of the label comes from plasma cells
    assert t["tiles/tumorbed_plasma_fraction"].sum() > 0
    # they look like plasma cells: eccentric dark nucleus in ample paler cytoplasm
    b = bank("plasma")
    yy, xx = np.mgrid[0:b.size, 0:b.size]
    for k in range(len(b)):
        fp, nuc = b.footprint[k], b.h[k] > 0.7
        off = np.hypot(yy[nuc].mean() - yy[fp].mean(), xx[nuc].mean() - xx[fp].mean())
        assert off > 1.5 and 2.2 < fp.sum() / nuc.sum() < 8.0


def test_intratumoral_lymphocytes_are_not_counted(severe: tuple[Path, dict, dict]) -> None:
    _, t, _ = severe
    tumor = t["tumor"] == 1
    assert t["lymphocyte"][tumor].mean() > 0.05  # dense lymphocytes inside nests ...
    assert t["tiles/intratumoral_lymphocyte_fraction"].sum() > 0
    assert not (tumor & (t["stroma"] == 1)).any()  # ... which are never stroma, so never counted


def test_lymphoid_structures_outside_the_bed(severe: tuple[Path, dict, dict]) -> None:
    out, t, attrs = severe
    lymphoid = t["lymphoid"] == 1
    assert attrs["n_tls"] >= 1 and attrs["n_lymph_node"] == 1
    assert lymphoid.any() and not (lymphoid & (t["tumorbed"] == 1)).any()
    assert t["lymphocyte"][lymphoid].mean() > 0.4  # lymphocyte-dense ...
    tiles = t["tiles/in_lymphoid_aggregate"] == 1
    assert tiles.any() and (t["tiles/tumorbed_fraction"][tiles] == 0).all()  # ... yet excluded
    # and they look like lymphocytes: as dark and blue as the bed's lymphocytes
    px = _blocks(_slide_pixels(out / "s.tiff"))
    dense = lymphoid & (t["lymphocyte"] > 0.9)
    bed_lymph = (t["tumorbed"] == 1) & (t["stroma"] == 1) & (t["lymphocyte"] > 0.9)
    plain = (t["stroma"] == 1) & (t["lymphocyte"] == 0) & (t["tumorbed"] == 0)
    assert dense.sum() > 100 and bed_lymph.sum() > 20
    assert abs(px[dense].mean() - px[bed_lymph].mean()) < 25
    assert px[dense].mean() < px[plain].mean() - 40


def test_necrosis_dcis_and_dark_cells(severe: tuple[Path, dict, dict]) -> None:
    _, t, attrs = severe
    nec, bed = t["necrosis"] == 1, t["tumorbed"] == 1
    assert (nec & bed).sum() > 200  # necrosis inside the bed, out of the stroma denominator
    assert t["tiles/necrosis_fraction"].max() > 0.3
    dcis = t["dcis"] == 1
    assert attrs["n_dcis_ducts"] >= 1 and dcis.any() and not (dcis & bed).any()
    for key in ("n_tumor_dark", "n_fibroblast_dark", "n_apoptotic", "n_ghost", "n_dcis_nuclei"):
        assert attrs[key] > 0, key
    # hyperchromatic tumour nuclei are as small and as dark as lymphocytes
    td, ly = bank("tumor_dark"), bank("lymphocyte")
    assert td.footprint.sum(axis=(1, 2)).mean() < 1.6 * ly.footprint.sum(axis=(1, 2)).mean()
    assert td.h[td.footprint].mean() > 0.85 * ly.h[ly.footprint].mean()


def _on_off(plan, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A 512 px window centred on artefact ``name``, rendered with and without it; its mask."""
    ex = plan.render.extra
    field = getattr(ex, name)
    ys, xs = np.nonzero(field > 0.6 * field.max())
    k = len(ys) // 2
    y0 = int(np.clip(ys[k] * 8 - 256, 0, plan.height - 512)) // 8 * 8
    x0 = int(np.clip(xs[k] * 8 - 256, 0, plan.width - 512)) // 8 * 8
    rgb_on, cov_on = render_block(plan.render, y0, y0 + 512, x0, x0 + 512)
    setattr(ex, name, None)
    rgb_off, cov_off = render_block(plan.render, y0, y0 + 512, x0, x0 + 512)
    setattr(ex, name, field)
    workspace().clear()
    np.testing.assert_array_equal(cov_on, cov_off)  # the truth does not see it
    where = np.kron(field[y0 // 8:y0 // 8 + 64, x0 // 8:x0 // 8 + 64] > 0.6 * field.max(), np.ones((8, 8), bool))
    return rgb_on.astype(float), rgb_off.astype(float), where


def test_acquisition_artefacts_change_pixels_only() -> None:
    """Fold, pen and focus on, then off, on the same plan: the pixels change, the coverage not."""
    plan = plan_slide(SEED, size_mm=SIZE, target_stil=TARGET, confounders=SEVERE)
    ex = plan.render.extra
    assert ex is not None and ex.fold is not None and ex.pen is not None and ex.focus is not None
    on, off, where = _on_off(plan, "fold")
    sel = where & (off.sum(-1) < 600)  # tissue under the fold
    assert sel.sum() > 500 and on[sel].mean() < off[sel].mean() - 20  # doubled tissue is darker
    on, off, where = _on_off(plan, "pen")
    drop = (off[where] - on[where]).mean(0)  # ink absorbs most where its optical density is highest
    assert drop.max() > 20 and int(np.argmax(drop)) == int(np.argmax(ex.pen_od))
    on, off, where = _on_off(plan, "focus")
    sharpness = [np.abs(np.diff(a.mean(-1), axis=1))[where[:, 1:]].mean() for a in (on, off)]
    assert sharpness[0] < 0.8 * sharpness[1]  # out of focus: weaker pixel-to-pixel contrast


def test_strengths_vary_per_slide_and_are_recorded(tmp_path: Path) -> None:
    sev = [sample_confounders(np.random.default_rng(i), f"centre_{i % 4}") for i in range(200)]
    bio = np.array([np.mean([c.strengths[k] for k in ("tumor_dark", "necrosis", "plasma_cells")]) for c in sev])
    assert (bio < 0.3).mean() > 0.1 and (bio > 0.7).mean() > 0.1  # some slides mild, some severe
    df = generate_cohort(tmp_path, 2, 4, size_mm=(1.0, 1.0), n_groups=2, hard=True, progress=False)
    assert list(df.columns) == ["slide_id", "path", "stil", "group", "look", "hard"]
    assert (df["hard"] == 1).all() and (df["look"] == "default").all()
    meta = json.loads((tmp_path / "cohort.json").read_text())
    assert meta["hard"] is True and meta["look"] == "default"
    for row, m in zip(df.itertuples(), meta["slides"]):
        with h5py.File(tmp_path / "truth" / f"{row.slide_id}.h5", "r") as h5:
            a = h5.attrs
            assert int(a["hard"]) == 1 and a["look"] == "default"
            for k in CONFOUNDERS:
                assert 0.0 <= float(a[f"hard_{k}"]) <= 1.0
                assert m["confounders"][k] == pytest.approx(float(a[f"hard_{k}"]), abs=1e-4)
            lymph, bed, stroma = h5["lymphocyte"][()], h5["tumorbed"][()] == 1, h5["stroma"][()] == 1
            assert 100 * lymph[bed & stroma].astype(np.float64).sum() / (bed & stroma).sum() == pytest.approx(
                row.stil, abs=1e-3)
    # the same seed gives the same bytes
    generate_slide(tmp_path / "again.tiff", tmp_path / "again", "synth_0000", meta["slides"][0]["seed"],
                   size_mm=(1.0, 1.0), group="centre_0", hard=True, preview=False)
    assert (tmp_path / "again.tiff").read_bytes() == (tmp_path / "slides" / "synth_0000.tiff").read_bytes()


# ---------------------------------------------------------------- looks


def test_alt_look_differs_and_keeps_exact_truth(tmp_path: Path) -> None:
    assert LOOKS == ("default", "alt")
    res = {look: generate_slide(tmp_path / f"{look}.tiff", tmp_path / look, "s", 9, size_mm=(1.0, 1.0),
                                look=look, preview=False) for look in LOOKS}
    with h5py.File(res["alt"].truth_path, "r") as h5:
        t = {k: h5[k][()] for k in ("tumorbed", "stroma", "lymphocyte", "tissue")}
        assert h5.attrs["look"] == "alt" and int(h5.attrs["hard"]) == 0
    assert _stil(t) == pytest.approx(res["alt"].stil, abs=1e-3)
    # same seed, same architecture: the looks differ in appearance, not in the label
    assert abs(res["alt"].stil - res["default"].stil) < 1.0
    px = {look: _blocks(_slide_pixels(r.path)) for look, r in res.items()}
    tissue, lymph = t["tissue"] == 1, t["lymphocyte"] > 0.9
    bg = ~tissue
    assert np.abs(px["alt"][bg].mean(0) - px["default"][bg].mean(0)).max() > 4  # tinted background
    stroma = (t["stroma"] == 1) & (t["lymphocyte"] == 0)
    d_stroma = px["alt"][stroma].mean(0) - px["default"][stroma].mean(0)
    assert np.abs(d_stroma).max() > 12  # another eosin
    # nuclei: other sizes and shapes; collagen: another texture
    assert bank("lymphocyte", "alt").footprint.sum() != bank("lymphocyte").footprint.sum()
    assert bank("tumor", "alt").size != bank("tumor").size
    from weakstil.synth.textures import textures

    assert not np.allclose(textures("alt").collagen[0][:64, :64], textures().collagen[0][:64, :64])
    assert lymph.sum() > 10 and px["alt"][lymph].mean() < px["alt"][stroma].mean() - 40


def test_cli_synth_hard_alt(tmp_path: Path) -> None:
    from conftest import run_cli

    from weakstil.cli.options import SynthLook

    assert tuple(v.value for v in SynthLook) == LOOKS  # the CLI spells the same looks

    proc = run_cli("synth", tmp_path / "c", "--slides", 1, "--size-mm", 1.0, 1.0, "--seed", 3, "--hard",
                   "--look", "alt")
    assert proc.returncode == 0, proc.stderr
    df = pd.read_csv(tmp_path / "c" / "labels.csv")
    assert df.loc[0, "look"] == "alt" and df.loc[0, "hard"] == 1
    bad = run_cli("synth", tmp_path / "d", "--look", "neon")
    assert bad.returncode == 2 and "neon" in bad.stderr
