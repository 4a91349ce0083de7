"""`weakstil embed` and weakstil.embed: HDF5 layout, caching, interruption, parallel decoding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from conftest import CMU, run_cli, write_tiff_slide
from weakstil.embed import embed_slide
from weakstil.errors import WeakSTILError
from weakstil.files import FeaturesFile, SlideFileError
from weakstil.encoders import create_encoder
from weakstil.slide import Slide
from weakstil.stain import estimate_slide_stain, normalise
from weakstil.tiles import TilingParams, find_tiles

pytestmark = pytest.mark.usefixtures("one_torch_thread")


REQUIRED_ATTRS = {
    "tile_size_level0", "mpp", "tile_px", "tile_um", "overlap_px", "tissue_threshold", "tiling_key", "n_tiles",
    "slide_path", "slide_id", "slide_mpp", "slide_width", "slide_height", "encoder", "encoder_card",
    "weights_sha256", "normalisation", "precision", "device", "torch_version", "timm_version", "weakstil_version",
    "seed", "cache_key", "created", "complete",
}


def temps(directory: Path) -> list[Path]:
    return sorted(directory.glob(".*.tmp"))


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    """One CLI run over the CMU slide and a missing file (the batch goes on past the bad one)."""
    out = tmp_path_factory.mktemp("embed") / "cache"
    proc = run_cli("embed", CMU, out.parent / "missing.svs", "--out", out, "--encoder", "small-cnn",
                   "--weights", "random", "--seed", "3")
    return proc, out


@pytest.fixture(scope="module")
def encoder():
    return create_encoder("small-cnn", weights="random", seed=3)


def test_embed_cmu_writes_the_documented_layout(cli_run, encoder):
    proc, out = cli_run
    assert proc.returncode == 1, proc.stderr  # the missing slide fails, CMU is still embedded
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "missing.svs" in errors[0] and "not found" in errors[0]
    path = out / "CMU-1-Small-Region.h5"
    assert sorted(p.name for p in out.iterdir()) == [".weakstil-output.json", path.name]
    with Slide.open(CMU) as s:
        tiles = find_tiles(s, TilingParams())
        pixels = np.stack([s.read_region(x, y, 224, 0.5) for x, y in tiles.coords])
        # the small-cnn card re-renders every tile with the reference stain (its Macenko default)
        assert encoder.card.stain_norm == "macenko"
        pixels = normalise(pixels, estimate_slide_stain(s))
    n = len(tiles.coords)
    with h5py.File(path) as f:
        assert REQUIRED_ATTRS <= set(f.attrs), REQUIRED_ATTRS - set(f.attrs)
        feats = f["features"][:]
        assert feats.shape == (n, 256) and feats.dtype == np.float32 and np.isfinite(feats).all()
        assert f["coords"].dtype == np.int64 and (f["coords"][:] == tiles.coords).all()
        assert f["tissue_fraction"].shape == (n,)
        assert f["tissue_mask"].dtype == np.uint8 and f["tissue_mask"].attrs["mpp"] == pytest.approx(8.0)
        a = dict(f.attrs)
    assert a["complete"] == 1 and a["n_tiles"] == n
    assert a["encoder"] == "small-cnn" and a["weights_sha256"] == encoder.weights_sha256
    assert json.loads(a["encoder_card"])["embed_dim"] == 256
    assert json.loads(a["normalisation"])["mean"] == [0.485, 0.456, 0.406]
    assert a["precision"] == "fp32" and a["device"] == "cpu" and a["seed"] == 3 and a["stain_norm"] == "macenko"
    assert a["tile_px"] == 224 and a["mpp"] == pytest.approx(0.5) and a["slide_mpp"] == pytest.approx(0.499)
    assert json.loads(a["tiling_key"]) == json.loads(json.dumps(TilingParams().key(), sort_keys=True))
    assert len(a["cache_key"]) == 64
    # row i is the embedding of tile i: the threaded pipeline keeps the order
    np.testing.assert_allclose(feats, encoder.embed(pixels), rtol=1e-4, atol=1e-5)
    r = FeaturesFile.read(path)
    assert r.features.shape == (n, 256) and r.tissue_mask.dtype == bool and r.attrs["encoder"] == "small-cnn"
    assert r.attrs["kind"] == "features" and r.attrs["schema_version"] == FeaturesFile.SCHEMA_VERSION


def test_rerun_skips_and_leaves_the_file_untouched(cli_run):
    _, out = cli_run
    path = out / "CMU-1-Small-Region.h5"
    before, stat = path.read_bytes(), path.stat()
    proc = run_cli("embed", CMU, "--out", out, "--encoder", "small-cnn", "--weights", "random", "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    # rich wraps log lines at the terminal width, and where it breaks depends on the temporary path's length
    assert "up to date" in " ".join(proc.stderr.split())
    assert path.read_bytes() == before and path.stat().st_mtime_ns == stat.st_mtime_ns


def test_changed_weights_tiles_or_overwrite_recompute(tmp_path, encoder):
    path = tmp_path / "c.h5"
    r1 = embed_slide(CMU, encoder, path)
    key1 = h5py.File(path).attrs["cache_key"]
    assert not r1.skipped and embed_slide(CMU, encoder, path).skipped
    other = create_encoder("small-cnn", weights="random", seed=4)
    # another encoder's features are kept (they may be hours of GPU work) unless asked for...
    with pytest.raises(WeakSTILError, match="another encoder.*kept"):
        embed_slide(CMU, other, path)
    assert h5py.File(path).attrs["cache_key"] == key1
    r2 = embed_slide(CMU, other, path, keep_other_settings=False)  # ... or the folder is the run's own
    with h5py.File(path) as f:
        assert not r2.skipped and f.attrs["weights_sha256"] == other.weights_sha256 != encoder.weights_sha256
        assert f.attrs["cache_key"] != key1
    # so is another tiling's (a mistyped --mpp or --tile-size must not replace them)
    with pytest.raises(WeakSTILError, match="another tiling.*224 px tiles, 0 px overlap.*not .*256 px tiles.*kept"):
        embed_slide(CMU, other, path, TilingParams(tile_px=256))
    r3 = embed_slide(CMU, other, path, TilingParams(tile_px=256), keep_other_settings=False)
    with h5py.File(path) as f:
        assert not r3.skipped and f.attrs["tile_px"] == 256 and f["features"].shape[0] == r3.n_tiles != r1.n_tiles
    mtime = path.stat().st_mtime_ns
    assert not embed_slide(CMU, other, path, TilingParams(tile_px=256), overwrite=True).skipped
    assert path.stat().st_mtime_ns != mtime


def test_incomplete_or_foreign_files_are_recomputed_and_leftovers_removed(tmp_path, encoder):
    path = tmp_path / "CMU-1-Small-Region.h5"
    with h5py.File(path, "w") as f:  # looks like a cache but was never finished
        f.create_dataset("features", data=np.zeros((3, 256), np.float32))
        f.attrs["complete"] = 0
    with pytest.raises(SlideFileError, match="incomplete"):
        FeaturesFile.read(path)
    leftover = tmp_path / ".CMU-1-Small-Region.h5.deadbeef.tmp"
    leftover.write_bytes(b"half a file")
    assert not embed_slide(CMU, encoder, path).skipped
    assert FeaturesFile.read(path).attrs["complete"] == 1 and temps(tmp_path) == []
    path.write_bytes(b"not hdf5 at all")
    assert not embed_slide(CMU, encoder, path).skipped
    assert FeaturesFile.read(path).attrs["n_tiles"] > 0


def test_one_and_two_decode_workers_give_the_same_features(tmp_path, encoder):
    a = embed_slide(CMU, encoder, tmp_path / "w1.h5", workers=1, batch_size=8)
    b = embed_slide(CMU, encoder, tmp_path / "w2.h5", workers=2, batch_size=8, prefetch=3)
    fa, fb = FeaturesFile.read(a.path), FeaturesFile.read(b.path)
    assert (fa.coords == fb.coords).all()
    np.testing.assert_allclose(fa.features, fb.features, atol=1e-5, rtol=0)


def test_offline_hub_encoder_fails_with_one_line_and_no_output(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-hf-cache"))
    out = tmp_path / "cache"
    proc = run_cli("embed", CMU, "--out", out, "--encoder", "uni")
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert "encoder 'uni'" in errors[0] and "--weights" in errors[0] and "Fix:" in errors[0]
    assert not list(out.glob("*.h5")) if out.exists() else True


@pytest.fixture(scope="module")
def big_slide(tmp_path_factory) -> Path:
    """A 5000 x 5000 px 'tissue' slide (484 tiles), slow enough to interrupt mid-run: its embedding
    takes seconds after the temporary file appears, where the test waits 0.5 s (7000 px, 961 tiles,
    doubled the in-process rerun for no other check)."""
    rng = np.random.default_rng(0)
    low = rng.integers(0, 4, (625, 625))
    palette = np.array([[225, 150, 200], [180, 110, 180], [120, 60, 150], [235, 175, 210]], np.uint8)
    rgb = np.repeat(np.repeat(palette[low], 8, axis=0), 8, axis=1)
    return write_tiff_slide(tmp_path_factory.mktemp("big") / "big.tiff", rgb, mpp=0.5, levels=3)


def start_embed(slide: Path, out: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "weakstil", "embed", str(slide), "--out", str(out), "--encoder",
                             "small-cnn", "--weights", "random", "--batch-size", "16"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait_for_temp(proc: subprocess.Popen, out: Path, old: list[Path] = (), timeout: float = 90.0) -> None:
    """Wait until the run has created its own temporary file (not one in ``old``) and written a little."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if out.exists() and set(temps(out)) - set(old):
            time.sleep(0.5)  # let it write some batches
            return
        if proc.poll() is not None:
            pytest.fail(f"embed ended before it could be interrupted: {proc.stderr.read()}")
        time.sleep(0.05)
    proc.kill()
    pytest.fail("no temporary output appeared")


def test_killed_run_leaves_nothing_complete_and_a_rerun_finishes(big_slide, tmp_path):
    out = tmp_path / "cache"
    final = out / "big.h5"
    # SIGKILL: no clean-up can run; the leftover temp file must not look complete
    proc = start_embed(big_slide, out)
    wait_for_temp(proc, out)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert not final.exists()
    [left] = temps(out)
    try:
        with h5py.File(left, "r") as f:
            assert int(f.attrs.get("complete", 0)) == 0
    except OSError:
        pass  # killed mid-write: not even a readable HDF5 file
    # SIGTERM: the run stops and removes its own temporary file (the SIGKILL leftover is cleared at start)
    proc = start_embed(big_slide, out)
    wait_for_temp(proc, out, old=[left])
    assert left not in temps(out)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143  # 128 + SIGTERM, as a shell reports it
    assert not final.exists() and temps(out) == []
    # a rerun completes, with correct features (in this process: finishing is not about the process)
    proc = run_cli("embed", big_slide, "--out", out, "--encoder", "small-cnn", "--weights", "random",
                   "--batch-size", "16")
    assert proc.returncode == 0, proc.stderr
    assert temps(out) == [] and sorted(p.name for p in out.iterdir()) == [".weakstil-output.json", "big.h5"]
    r = FeaturesFile.read(final)
    n = r.attrs["n_tiles"]
    assert r.attrs["complete"] == 1 and r.features.shape == (n, 256) and n == 22 * 22  # every 224 px tile
    enc = create_encoder("small-cnn", weights="random")
    with Slide.open(big_slide) as s:
        idx = [0, len(r.coords) // 2, len(r.coords) - 1]
        pixels = normalise(np.stack([s.read_region(*r.coords[i], 224, 0.5) for i in idx]), estimate_slide_stain(s))
    np.testing.assert_allclose(r.features[idx], enc.embed(pixels), rtol=1e-4, atol=1e-5)
    assert os.path.getsize(final) > 0


def test_read_region_opaque_fast_path_gives_the_same_pixels(tmp_path):
    """Slide.read_region drops alpha before resizing when a region is opaque: same bytes as resizing RGBA."""
    from weakstil.slide import read_scale, resize_tile, rgba_to_rgb

    def reference(s: Slide, x: int, y: int, size: int, mpp: float) -> np.ndarray:
        level = s.best_level_for_mpp(mpp)
        ds = s.level_downsamples[level]
        n = max(1, int(np.ceil(size * read_scale(s.mpp, mpp) / ds - 1e-6)))  # (CMU's 0.499: pixel for pixel)
        rgba = s.backend.read_region((x, y), level, (n, n))
        if n != size:
            rgba = resize_tile(rgba, (size, size))
        return rgba_to_rgb(np.asarray(rgba))

    rgb = np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    forty_x = write_tiff_slide(tmp_path / "40x.tiff", rgb, mpp=0.25, levels=2)
    for path, mpp in ((CMU, 0.5), (forty_x, 0.5), (forty_x, 1.1)):
        with Slide.open(path) as s:
            W, H = s.dimensions
            # inside, and over the right/bottom edge (transparent there: the general path)
            for x, y in ((0, 0), (W // 3, H // 4), (W - 100, H - 100)):
                got = s.read_region(x, y, 224, mpp)
                assert got.shape == (224, 224, 3) and got.dtype == np.uint8 and got.flags.writeable
                assert np.array_equal(got, reference(s, x, y, 224, mpp)), (path, mpp, x, y)


def test_a_cache_made_with_other_settings_names_the_ones_that_differ():
    """When a cache is embedded again, the log says which setting differed (not a list of suspects)."""
    import json
    from types import SimpleNamespace

    from weakstil.feature_cache import settings_differences
    from weakstil.tiles import TilingParams

    params = TilingParams()
    encoder = SimpleNamespace(name="small-cnn", weights_sha256="a" * 64, card=SimpleNamespace(stain_norm=None))
    theirs = {**params.key(), "tissue_threshold": 0.95}
    attrs = {"encoder": "small-cnn", "weights_sha256": "a" * 64, "slide_mpp": 0.5, "stain_norm": "none",
             "tilestats_version": 3, "tiling_key": json.dumps(theirs)}
    assert settings_differences(attrs, encoder, params, 0.5) == [f"tissue_threshold: 0.95 -> {params.tissue_threshold}"]
    assert settings_differences({**attrs, "tiling_key": json.dumps(params.key())}, encoder, params, 0.5) == []
    said = settings_differences({**attrs, "encoder": "resnet50", "stain_norm": "macenko"}, encoder, params, 0.25,
                                tile_stats=False)
    assert [s.split(":")[0] for s in said] == ["encoder", "µm/px of the slide", "stain normalisation",
                                               "tile statistics", "tissue_threshold"]
