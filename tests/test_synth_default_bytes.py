"""The default synthetic output never changes: ``weakstil synth`` without ``--hard`` and with the
default look writes the same cohort for a given seed as the generator did before the hard
confounders and looks were added.

Recorded with main's code (commit 7606669's generator) for a 2-slide, 1 mm cohort:
``generate_cohort(out, 2, 5, size_mm=(1.0, 1.0), n_groups=2)``. The labels, the truth files
and the TIFF's page layout are compared byte for byte. The pixels are not: numpy picks its SIMD
kernels by CPU (AVX2 and AVX-512 round a few transcendental results differently), which moves a
few dozen of 4 million pixels by 1-3 grey levels; so the rendered pixels, the decoded TIFF and the
preview are compared as 32-pixel block means within ``MAX_BLOCK_DIFF`` / ``MEAN_BLOCK_DIFF``.
Measured (AVX2 vs baseline-SIMD kernels, ``NPY_DISABLE_CPU_FEATURES=X86_V3``): the rendered pixels'
block means differ by at most 0.003 (mean 1e-5), after JPEG by 0.27 (mean 4e-5), since a changed
pixel can move its whole 8x8 JPEG block; a 1-pixel shift of the tissue moves them by up to 6 (mean
0.4), a 0.5 % brightness change by 1.2 (mean 0.96), one moved nucleus (~150 pixels) by ~15.

Re-record (only after a deliberate change to the default look): ``python
tests/test_synth_default_bytes.py --record``.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import h5py
import numpy as np
import tifffile
from PIL import Image

from weakstil.synth import generate_cohort
from weakstil.synth.constants import BLOCK
from weakstil.synth.generator import plan_slide
from weakstil.synth.render import render_block, workspace

SEED, N, SIZE, GROUPS = 5, 2, (1.0, 1.0), 2
FINGERPRINTS = Path(__file__).parent / "data" / "synth_default_fingerprints.npz"
FP_BLOCK = 32  # pixels per side of a fingerprint block (the coverage grid: 4)
MAX_BLOCK_DIFF, MEAN_BLOCK_DIFF = 1.0, 0.005  # grey levels (coverage: fraction x 255)
EXPECTED = {
    "labels.csv": "c169189c098094cfe5e379ee60670feb49cb9bd9025714606d2ef6351d25146a",
    "truth/synth_0000_tumorbed.geojson": "4546ad3515eb6815d847e69654f0a43745e8dde99ea32615e0b4f96e0f2c5aeb",
    "truth/synth_0000.h5:content": "560e63037eb74cd21240be33b40f9bb665147258fc5718657c0669fb36474824",
    "truth/synth_0001_tumorbed.geojson": "fcf55797726bc60e0a220fe12e1afb9f96247aed6b85503eaec38843ffdd2bda",
    "truth/synth_0001.h5:content": "cec81e5bcc24ec8671760d96bbddc6ded91f7342064e1d9b7907dd800a02c273",
}
# every page: shape, compression, photometric, tile size, resolution (unit), description, subfile type
TIFF_LAYOUT = [
    [[2000, 2000, 3], 7, 6, 256, 256, [20000.0, 20000.0], 3, "weakstil synthetic slide {sid}", 0],
    [[500, 500, 3], 7, 6, 256, 256, [5000.0, 5000.0], 3, "", 1],
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def h5_content_digest(path: Path) -> str:
    """Every dataset (dtype, shape, values) and attribute, except ``generator_version``
    (a release bump must not fail this test)."""
    h = hashlib.sha256()
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: h5py.HLObject) -> None:
            h.update(name.encode())
            if isinstance(obj, h5py.Dataset):
                a = obj[()]
                h.update(str(a.dtype).encode())
                h.update(str(a.shape).encode())
                h.update(np.ascontiguousarray(a).tobytes())
            for k in sorted(obj.attrs):
                if k == "generator_version":
                    continue
                h.update(k.encode())
                h.update(repr(np.asarray(obj.attrs[k]).tolist()).encode())

        visit("/", f)
        f.visititems(visit)
    return h.hexdigest()


def block_means(img: np.ndarray, b: int = FP_BLOCK) -> np.ndarray:
    """Means of ``b`` x ``b`` blocks (the ragged edge is a block of its own)."""
    img = np.asarray(img, np.float64)
    rows = [img[y:y + b] for y in range(0, img.shape[0], b)]
    return np.stack([np.stack([r[:, x:x + b].mean(axis=(0, 1)) for x in range(0, img.shape[1], b)]) for r in rows])


def rendered(seed: int, size_mm: tuple[float, float], group: str) -> tuple[np.ndarray, np.ndarray]:
    """The raw level-0 pixels and the lymphocyte coverage grid, before JPEG."""
    sp = plan_slide(seed, size_mm=size_mm, group=group)
    rgb = np.zeros((sp.height, sp.width, 3), np.uint8)
    cov_rows = []
    for y0 in range(0, sp.height, BLOCK):
        row = []
        for x0 in range(0, sp.width, BLOCK):
            px, cov = render_block(sp.render, y0, min(y0 + BLOCK, sp.height), x0, min(x0 + BLOCK, sp.width))
            rgb[y0:y0 + px.shape[0], x0:x0 + px.shape[1]] = px
            row.append(cov)
        cov_rows.append(np.concatenate(row, axis=1))
    workspace().clear()
    return rgb, np.concatenate(cov_rows, axis=0)


def tiff_layout(path: Path) -> list:
    with tifffile.TiffFile(path) as t:
        return [[list(p.shape), int(p.compression), int(p.photometric), p.tilelength, p.tilewidth,
                 [float(r) for r in p.resolution], int(p.resolutionunit), p.description, int(p.subfiletype)]
                for p in t.pages]


def fingerprints(out: Path) -> tuple[dict[str, str], dict[str, list], dict[str, np.ndarray]]:
    """Generate the cohort into ``out``: its exact digests, TIFF layouts and pixel fingerprints."""
    generate_cohort(out, N, SEED, size_mm=SIZE, n_groups=GROUPS, progress=False)
    digests = {"labels.csv": _sha(out / "labels.csv")}
    meta = json.loads((out / "cohort.json").read_text())
    assert "hard" not in meta and "look" not in meta  # the default cohort.json keeps its keys
    layouts: dict[str, list] = {}
    fps: dict[str, np.ndarray] = {}
    for s in meta["slides"]:
        sid = s["slide_id"]
        digests[f"truth/{sid}_tumorbed.geojson"] = _sha(out / "truth" / f"{sid}_tumorbed.geojson")
        digests[f"truth/{sid}.h5:content"] = h5_content_digest(out / "truth" / f"{sid}.h5")
        layouts[sid] = tiff_layout(out / "slides" / f"{sid}.tiff")
        fps[f"{sid}/tiff_level0"] = block_means(tifffile.imread(out / "slides" / f"{sid}.tiff", level=0))
        fps[f"{sid}/preview"] = block_means(np.asarray(Image.open(out / "truth" / f"{sid}_preview.png").convert("RGB")))
        rgb, cov = rendered(s["seed"], SIZE, s["group"])
        fps[f"{sid}/render_rgb"] = block_means(rgb)
        fps[f"{sid}/render_coverage"] = block_means(cov.astype(np.float64) * 255, FP_BLOCK // 8)
    return digests, layouts, fps


def test_default_output_is_unchanged(tmp_path: Path) -> None:
    digests, layouts, fps = fingerprints(tmp_path)
    wrong = sorted(k for k in EXPECTED if digests.get(k) != EXPECTED[k])
    assert not wrong, f"default synthetic output changed: {wrong}"
    for sid, layout in layouts.items():
        want = [p[:7] + [p[7].format(sid=sid), p[8]] for p in TIFF_LAYOUT]
        assert layout == want, f"{sid}.tiff's pages changed: {layout}"
    with np.load(FINGERPRINTS) as rec:
        assert sorted(rec.files) == sorted(fps), "the fingerprinted images changed"
        for k, got in fps.items():
            want = rec[k]
            assert got.shape == want.shape, f"{k}: {got.shape} vs recorded {want.shape}"
            d = np.abs(got - want)
            assert d.max() <= MAX_BLOCK_DIFF and d.mean() <= MEAN_BLOCK_DIFF, (
                f"{k} changed: block means differ by up to {d.max():.3f} (mean {d.mean():.5f}) grey levels")


def test_the_fingerprint_catches_a_nucleus_or_a_brightness_change_but_not_rounding() -> None:
    """The tolerance sits between what different SIMD kernels do and what a real change does."""
    rng = np.random.default_rng(0)
    img = (rng.random((256, 256, 3)) * 255).astype(np.uint8)
    rounding = img.copy()
    rounding.reshape(-1)[rng.choice(rounding.size, 40, replace=False)] ^= 1  # 40 values off by 1
    d = np.abs(block_means(rounding) - block_means(img))
    assert d.max() <= MAX_BLOCK_DIFF and d.mean() <= MEAN_BLOCK_DIFF
    nucleus = img.copy()
    nucleus[100:112, 100:112] = 40  # one dark nucleus-sized disc (~150 pixels) drawn in
    assert np.abs(block_means(nucleus) - block_means(img)).max() > MAX_BLOCK_DIFF
    brighter = np.clip(img * 1.005, 0, 255).astype(np.uint8)
    assert np.abs(block_means(brighter) - block_means(img)).mean() > MEAN_BLOCK_DIFF


if __name__ == "__main__" and "--record" in sys.argv:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        got_digests, got_layouts, got_fps = fingerprints(Path(d))
    np.savez_compressed(FINGERPRINTS, **{k: v.astype(np.float32) for k, v in got_fps.items()})
    print(json.dumps({"digests": got_digests, "tiff_layouts": got_layouts}, indent=1))
