"""weakstil.decode: JPEG tiles read straight from TIFF/SVS vs OpenSlide, worker processes and their
shared memory, the GPU code path (run on the CPU), the thread plan, and fallbacks."""

from __future__ import annotations

import gc
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
from PIL import Image

from conftest import CMU, ROOT
from weakstil.decode import DecodeMode, ThreadPlanner, plan_reader, tile_batches
from weakstil.decode.jpeg_streams import sof_info
from weakstil.decode.jpeg_tiles import choose_dct_scale
from weakstil.decode.plan import DEFAULT_MICRO_BATCH, choose, measure_encoder, plan_cpu, plan_cuda
from weakstil.decode.svswriter import write_svs
from weakstil.decode.workers import DecodePool, DecodeStats, DecodeWorkerError, iter_batches_inline, leaked_segments
from weakstil.embed import embed_batches, embed_slide
from weakstil.encoders import create_encoder
from weakstil.files import FeaturesFile
from weakstil.slide import Slide
from weakstil.tiles import TilingParams, find_tiles

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# -- slides -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def synth_tiff(tmp_path_factory) -> Path:
    """A weakstil.synth slide: generic tiled TIFF, YCbCr 4:2:0 JPEG tiles, 0.5 µm/px."""
    from weakstil.synth.generator import generate_slide

    d = tmp_path_factory.mktemp("synth")
    generate_slide(d / "syn.tiff", d / "truth", "syn", 3, size_mm=(0.8, 0.6), preview=False)
    return d / "syn.tiff"


@pytest.fixture(scope="module")
def svs40(synth_tiff, tmp_path_factory) -> Path:
    """A 40x-like Aperio SVS (0.25 µm/px, RGB JPEG with JPEGTables) of the synthetic slide."""
    with Slide.open(synth_tiff) as s:
        w, h = s.dimensions
        rgb = np.asarray(s.backend.read_region((0, 0), 0, (w, h)).convert("RGB"))
    rgb = np.asarray(Image.fromarray(rgb).resize((2 * w, 2 * h), Image.Resampling.BICUBIC))
    return write_svs(tmp_path_factory.mktemp("svs") / "s40.svs", rgb, mpp=0.25, tile=240, colourspace="rgb")


@pytest.fixture(scope="module")
def encoder():
    return create_encoder("small-cnn", weights="random", seed=3)


def openslide_tiles(path: Path, coords: np.ndarray, mpp: float = 0.5, px: int = 224) -> np.ndarray:
    with Slide.open(path) as s:
        return np.stack([s.read_region(int(x), int(y), px, mpp) for x, y in coords])


def spec_tiles(spec, coords: np.ndarray, batch: int = 16) -> np.ndarray:
    out = np.empty((len(coords), spec.tile_px, spec.tile_px, 3), np.uint8)
    for start, b in iter_batches_inline(spec, coords, batch):
        out[start:start + len(b)] = b
    return out


def edge_coords(path: Path, mpp: float = 0.5, px: int = 224) -> np.ndarray:
    """Tissue tiles plus tiles over the slide's corners and edges (partly outside)."""
    with Slide.open(path) as s:
        tissue = find_tiles(s, TilingParams(mpp=mpp, tile_px=px)).coords
        W, H = s.dimensions
        step = int(px * mpp / s.mpp)
    extra = [(0, 0), (W - step // 2, 0), (0, H - step // 3), (W - step // 2, H - step // 2), (W // 2, H - 7),
             (W - 5, H // 2), (-step // 3, H // 3)]
    return np.concatenate([tissue, np.array(extra, np.int64)])


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)


# -- pixels -----------------------------------------------------------------------------
def test_cmu_aperio_jpeg_tiles_equal_openslide(tmp_path):
    """Aperio RGB JPEGs with JPEGTables, 240 px tiles; 0.499 µm/px read at 0.5 (225 px regions
    crossing tile borders, resized): the same bytes as OpenSlide, edges included."""
    with Slide.open(CMU) as s:
        spec = plan_reader(s, 0.5, 224)
    assert spec.jpeg is not None and spec.describe()["jpeg_colourspace"] == "rgb" and spec.jpeg.reduce == 1
    assert spec.jpeg.level.tables is not None
    coords = edge_coords(CMU)
    got, want = spec_tiles(spec, coords), openslide_tiles(CMU, coords)
    diff = np.abs(got.astype(int) - want)
    inner = diff[:-7]
    assert inner.max() == 0, inner.max()
    # edge tiles: OpenSlide resizes premultiplied RGBA then composites on white, we resize white-filled RGB
    assert diff.max() <= 2 and diff.mean() < 1e-3
    assert got[-4, -1, -1].tolist() == [255, 255, 255]  # beyond the slide: white


def test_synth_generic_tiff_ycbcr_equals_openslide(synth_tiff):
    with Slide.open(synth_tiff) as s:
        spec = plan_reader(s, 0.5, 224)
        assert s.vendor == "generic-tiff"
    assert spec.jpeg is not None and spec.jpeg.level.colourspace == "ycbcr" and spec.jpeg.level.tables is None
    coords = edge_coords(synth_tiff)
    diff = np.abs(spec_tiles(spec, coords).astype(int) - openslide_tiles(synth_tiff, coords))
    assert diff.max() <= 1 and diff.mean() < 1e-3


def test_40x_svs_dct_downscaled_and_full_scale_paths(svs40, encoder):
    with Slide.open(svs40) as s:
        assert s.vendor == "aperio" and s.mpp == pytest.approx(0.25)
        spec = plan_reader(s, 0.5, 224)
        full = plan_reader(s, 0.25, 224)
    # 0.25 µm/px read at 0.5: decoded at scale 1/2 in the DCT domain
    assert spec.jpeg.reduce == 2 and spec.describe()["dct_scale"] == "1/2"
    # read at its own resolution: exact
    coords = edge_coords(svs40, mpp=0.25)
    d = np.abs(spec_tiles(full, coords).astype(int) - openslide_tiles(svs40, coords, 0.25))
    assert full.jpeg.reduce == 1 and d.max() <= 1
    # downscaled in the decoder vs OpenSlide's full decode + Pillow reduction: close pixels, same features
    coords = edge_coords(svs40)
    got, want = spec_tiles(spec, coords), openslide_tiles(svs40, coords)
    d = np.abs(got.astype(float) - want)
    assert d.mean() < 3.0, d.mean()
    cos = cosine(encoder.embed(got), encoder.embed(want))
    assert cos.min() >= 0.999, cos.min()


def test_dct_scale_choice():
    assert choose_dct_scale(0.25, 0.5, 240, 240) == 2
    assert choose_dct_scale(0.2634, 0.5, 256, 256) == 2  # Aperio GT450 40x: 5 % coarser is accepted
    assert choose_dct_scale(0.25, 1.0, 256, 256) == 4
    assert choose_dct_scale(0.25, 2.0, 256, 256) == 8
    assert choose_dct_scale(0.25, 2.0, 240, 240) == 2  # 240 px tiles: 1/4 and 1/8 are not whole pixels
    assert choose_dct_scale(0.5, 0.5, 256, 256) == 1
    assert choose_dct_scale(0.3, 0.5, 256, 256) == 1  # 0.6 would be 20 % coarser than asked


def test_other_formats_go_through_openslide(tmp_path):
    import tifffile

    rgb = np.full((600, 700, 3), 200, np.uint8)
    path = tmp_path / "deflate.tiff"
    with tifffile.TiffWriter(path) as tw:
        tw.write(rgb, tile=(256, 256), compression="zlib", photometric="rgb", resolution=(2e4, 2e4),
                 resolutionunit="CENTIMETER")
    with Slide.open(path) as s:
        spec = plan_reader(s, 0.5, 224)
    assert spec.jpeg is None and "not JPEG" in spec.reason
    assert spec.describe()["path"] == "openslide"
    assert spec_tiles(spec, np.array([[0, 0]])).mean() == pytest.approx(200, abs=1)


# -- features from every CPU path -------------------------------------------------------
def test_features_of_every_cpu_path_match_openslide(svs40, synth_tiff, encoder, tmp_path):
    from weakstil.decode.gpu import GpuTileBatches

    pool = DecodePool(2)
    for path in (CMU, synth_tiff, svs40):
        with Slide.open(path) as s:
            coords = find_tiles(s, TilingParams()).coords[:16]
            spec = plan_reader(s, 0.5, 224)
        ref = encoder.embed(openslide_tiles(path, coords))
        paths = {"jpeg-inline": spec_tiles(spec, coords)}
        out = np.empty_like(paths["jpeg-inline"])
        for start, b in pool.batches(spec, coords, 7):
            out[start:start + len(b)] = b
        paths["jpeg-workers"] = out
        # the GPU path's code (compressed tiles -> torchvision decode_jpeg -> canvas -> crop/resize) on the CPU
        gpu = GpuTileBatches(spec.jpeg, coords, 224, 10, "cpu")
        paths["gpu-code-on-cpu"] = np.concatenate([b.numpy() for _, b in gpu])
        gpu.close()
        assert np.array_equal(paths["jpeg-workers"], paths["jpeg-inline"])
        for name, tiles in paths.items():
            cos = cosine(encoder.embed(tiles), ref)
            assert cos.min() >= 0.999, (path.name, name, cos.min())
        assert np.abs(paths["gpu-code-on-cpu"].astype(int) - paths["jpeg-inline"]).mean() < 2.0
    pool.close()


def test_gpu_code_path_on_cpu_handles_tables_rgb_and_edges(tmp_path):
    """Aperio RGB streams (abbreviated, tables prepended, Adobe marker added) decode to the right
    colours through torchvision; regions over the slide edge come out white."""
    from weakstil.decode.gpu import GpuTileBatches

    with Slide.open(CMU) as s:
        spec = plan_reader(s, 0.5, 224)
    coords = edge_coords(CMU)
    gpu = GpuTileBatches(spec.jpeg, coords, 224, 16, "cpu")
    got = np.concatenate([b.numpy() for _, b in gpu])
    assert gpu.tiles_decoded <= 130  # each JPEG tile decoded about once (the slide has 130)
    gpu.close()
    want = openslide_tiles(CMU, coords)
    d = np.abs(got.astype(int) - want)
    assert d.mean() < 1.0 and np.percentile(d, 99.9) <= 3, (d.mean(), d.max())
    info = sof_info(spec.jpeg.open().stream(0))
    assert info is not None and [c[1:] for c in info[2]] == [(1, 1)] * 3  # 4:4:4, as nvJPEG needs for RGB


# -- worker processes and shared memory -------------------------------------------------
def test_pool_cleans_up_after_early_stop_and_worker_errors(synth_tiff, tmp_path):
    before = leaked_segments(os.getpid())
    with Slide.open(synth_tiff) as s:
        coords = find_tiles(s, TilingParams()).coords
        spec = plan_reader(s, 0.5, 224)
    with DecodePool(2) as pool:
        stats = DecodeStats()
        it = pool.batches(spec, coords, 4, stats=stats)
        next(it)
        assert len(leaked_segments(os.getpid())) == len(before) + 1
        it.close()  # the consumer stops early
        assert leaked_segments(os.getpid()) == before
        # a worker error: the slide file is gone -> one clear error, nothing left behind
        bad = spec.fall_back("test").__class__(str(tmp_path / "gone.tiff"), spec.slide_mpp, 0.5, 224)
        with pytest.raises(Exception) as err:
            list(pool.batches(bad, coords, 4))
        assert "gone.tiff" in str(err.value) and "not found" in str(err.value)
        assert leaked_segments(os.getpid()) == before
        # a killed worker: reported, the pool restarts for the next slide
        it = pool.batches(spec, np.concatenate([coords] * 40), 2)
        next(it)
        # kill every worker: a task is then certainly left undone (killing one could let the other
        # finish the whole slide before the pool looks, and a complete slide is not an error)
        for proc in pool._procs:
            os.kill(proc.pid, signal.SIGKILL)
        with pytest.raises(DecodeWorkerError, match="died"):
            for _ in it:
                pass
        assert leaked_segments(os.getpid()) == before
        n = sum(len(b) for _, b in pool.batches(spec, coords, 4))
        assert n == len(coords)
    assert leaked_segments(os.getpid()) == before


def test_killed_parent_leaves_no_workers_and_no_segments(synth_tiff, tmp_path):
    script = tmp_path / "run.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time, numpy as np
        from weakstil.decode.readers import plan_reader
        from weakstil.decode.workers import DecodePool
        from weakstil.slide import Slide
        if __name__ == "__main__":
            with Slide.open({str(synth_tiff)!r}) as s:
                spec = plan_reader(s, 0.5, 224)
            pool = DecodePool(2)
            it = pool.batches(spec, np.zeros((4000, 2), np.int64) + 300, 8)
            next(it)
            print(" ".join(str(p.pid) for p in pool._procs), flush=True)
            time.sleep(60)
    """))
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    pids = [int(p) for p in proc.stdout.readline().split()]
    assert len(pids) == 2 and len(leaked_segments(proc.pid)) == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        alive = [p for p in pids if _alive(p)]
        if not alive and leaked_segments(proc.pid) == []:
            break
        time.sleep(0.2)
    assert not [p for p in pids if _alive(p)], "decode workers outlived their parent"
    assert leaked_segments(proc.pid) == []  # Python's resource tracker unlinked the ring


def test_a_new_ring_removes_the_segments_of_killed_runs():
    """A run killed with its resource tracker (``timeout -s KILL`` kills the process group, the
    out-of-memory killer) cannot unlink its ring: the next run does."""
    from weakstil.decode.shm import SHM_PREFIX, Ring

    if not Path("/dev/shm").is_dir():
        pytest.skip("no /dev/shm")
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = Path("/dev/shm") / f"{SHM_PREFIX}{gone.pid}-deadbeef0000"
    live = Path("/dev/shm") / f"{SHM_PREFIX}{os.getppid()}-cafe00000000"  # a live process's segment stays
    odd = Path("/dev/shm") / f"{SHM_PREFIX}notapid-0"
    for seg in (orphan, live, odd):
        seg.write_bytes(b"x" * 64)
    try:
        ring = Ring(1, 1, 8)
        try:
            assert not orphan.exists() and live.exists() and odd.exists()
            assert ring.name in leaked_segments(os.getpid())
        finally:
            ring.close()
    finally:
        for seg in (orphan, live, odd):
            seg.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (reaped later by init) is not running
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


# -- embedding: provenance, plan ----------------------------------------------------------
def test_embed_records_the_decode_path_and_plan(svs40, encoder, tmp_path):
    planner = ThreadPlanner(encoder, batch_size=8, workers=1, threads=1)
    r = embed_slide(svs40, encoder, tmp_path / "a.h5", batch_size=8, planner=planner, decode="gpu")
    with h5py.File(r.path) as f:
        dec = json.loads(f.attrs["decode"])
        key_a = f.attrs["cache_key"]
    assert dec["mode"] == "gpu" and dec["gpu"] == "the encoder runs on the CPU"
    assert dec["path"] == "jpeg-tiles" and dec["dct_scale"] == "1/2" and dec["decoder"] == "simplejpeg"
    assert dec["plan"]["workers"] == 1 and dec["plan"]["threads"] == 1 and dec["plan"]["source"] == "given"
    assert dec["stats"]["tiles"] == r.n_tiles and dec["torch_threads"] == 1
    # the split is given, the micro-batch still measured for it, applied to the encoder and recorded
    assert dec["plan"]["micro_batch"] == dec["plan"]["encoder_micro_batches"]["1"] == encoder.micro_batch
    assert 1 <= encoder.micro_batch <= 8
    # the decode path is not part of the cache key: an OpenSlide-made cache is current for the JPEG path
    b = embed_slide(svs40, encoder, tmp_path / "b.h5", batch_size=8, workers=0, decode="cpu")
    with h5py.File(b.path) as f:
        assert f.attrs["cache_key"] == key_a
    fa, fb = FeaturesFile.read(r.path).features, FeaturesFile.read(b.path).features
    assert np.array_equal(fa, fb)  # workers and in-process decoding: the same bytes


def test_plan_follows_the_measured_rates():
    # ResNet-50-like: 8 tiles/s on 1 thread, 15 on 2; decoding 900/s: every core to torch
    w, t, r = choose(2, 900.0, {1: 8.0, 2: 15.0})
    assert (w, t) == (1, 2) and r == pytest.approx(15.0, rel=0.02)
    # a light encoder (600/s per thread) with slow decoding (300/s per worker) on 8 cores: a decode share
    rates = {k: 600.0 * k ** 0.9 for k in range(1, 9)}
    w, t, r = choose(8, 300.0, rates)
    assert w >= 3 and t <= 5 and r <= 8 / (1 / 300 + t / rates[t]) + 1e-6
    # fixed --workers / --threads are respected, the rest planned
    assert choose(8, 300.0, rates, workers=2)[0] == 2
    assert choose(8, 300.0, rates, threads=3)[1] == 3
    p = plan_cpu(900.0, {1: 8.0, 2: 15.0}, 2)
    assert p.to_dict()["source"] == "measured" and p.workers == 1 and p.threads == 2
    # a light encoder on every core, decoding a quarter of one core: a spare decode worker
    p = plan_cpu(3000.0, {1: 700.0, 2: 1300.0}, 2)
    assert (p.workers, p.threads) == (2, 2) and p.stats_processes == 0
    assert plan_cpu(3000.0, {1: 700.0, 2: 1300.0}, 2, workers=1).workers == 1  # --workers is kept
    assert p.micro_batch == DEFAULT_MICRO_BATCH  # not measured
    p = plan_cpu(900.0, {1: 8.0, 2: 15.0}, 2, micro_batches={1: 4, 2: 2})
    assert p.micro_batch == 2 and p.to_dict()["encoder_micro_batches"] == {"1": 4, "2": 2}


def test_cuda_plan_splits_the_cores_between_decoding_and_the_measurements():
    # 16 CPUs, decoding 1,229 tiles/s per worker, measurements 800 per process (issue 18's GPU run:
    # 15 decode workers left one measurement process and embed_slide ran at 509 tiles/s)
    p = plan_cuda(16, decode=1229.0, stats=800.0)
    assert p.workers + p.stats_processes == 15 and p.workers in (5, 6) and p.threads == 1
    assert p.predicted_tiles_per_s == pytest.approx(min(p.workers * 1229.0, p.stats_processes * 800.0))
    assert p.predicted_tiles_per_s > 5 * 800.0  # not one measurement process's rate
    assert plan_cuda(16, workers=4, decode=1229.0, stats=800.0).workers == 4  # --workers is kept
    assert plan_cuda(2, decode=100.0, stats=10_000.0).workers == 1  # at least one of each
    assert plan_cuda(2, decode=100.0, stats=10_000.0).stats_processes == 1
    assert plan_cuda(16).stats_processes == 0 and plan_cuda(16).workers == 15  # not measured: decoding's


def test_the_micro_batch_is_the_measured_fastest_slice():
    # an encoder whose cost per tile jumps once a slice spills out of the cache (> 8 tiles)
    tried = []

    def run(n: int) -> None:
        tried.append(n)
        time.sleep(0.002 + n * (0.001 if n <= 8 else 0.004))

    rates, chunks = measure_encoder(run, [1, 2], 64, seconds=0.05)
    assert chunks == {1: 8, 2: 8} and rates[2] == pytest.approx(8 / 0.010, rel=0.3)
    assert max(tried) == 16  # past the best slice by far: larger ones are not tried
    after_search = tried[len(tried) - tried[::-1].index(16):]
    assert set(after_search) == {8}  # the other thread count: measured at the best slice only

    # a heavy encoder (20 ms per tile): slices are not grown past a half-second call
    tried.clear()
    rates, chunks = measure_encoder(lambda n: (tried.append(n), time.sleep(0.02 * n)), [1], 64, seconds=0.01)
    assert max(tried) <= 16 and chunks[1] in (1, 2, 4, 8, 16)


def test_micro_batches_give_the_whole_batch_features(encoder):
    tiles = np.random.default_rng(1).integers(0, 256, (11, 224, 224, 3), dtype=np.uint8)
    sizes: list[int] = []
    hook = encoder.model.register_forward_hook(lambda m, i, o: sizes.append(int(i[0].shape[0])))
    before = encoder.micro_batch
    try:
        encoder.micro_batch = 0
        whole = encoder.embed(tiles)
        encoder.micro_batch = 4
        sliced = encoder.embed(tiles)
    finally:
        encoder.micro_batch = before
        hook.remove()
    assert sizes == [11, 4, 4, 3]
    np.testing.assert_allclose(sliced, whole, atol=1e-5, rtol=1e-4)


def test_tile_batches_in_process_equals_openslide_for_cmu(encoder):
    with Slide.open(CMU) as s:
        coords = find_tiles(s, TilingParams()).coords[:10]
        batches, prov = tile_batches(s, coords, 224, 0.5, encoder, batch_size=4, decode=DecodeMode.CPU, workers=0)
        feats = []
        embed_batches(encoder, batches, lambda start, f: feats.append(f))
    rec = prov()
    assert rec["path"] == "jpeg-tiles" and rec["stats"]["workers"] == 0 and rec["gpu"] == "--decode cpu"
    np.testing.assert_allclose(np.concatenate(feats), encoder.embed(openslide_tiles(CMU, coords)), atol=1e-5,
                               rtol=1e-4)


# -- throughput machinery: bands, ring reuse, vectorised layout, the asynchronous loop -----------
def test_bands_of_column_strips_give_the_same_tiles_and_reuse_the_ring(synth_tiff):
    with Slide.open(synth_tiff) as s:
        coords = find_tiles(s, TilingParams()).coords
        spec = plan_reader(s, 0.5, 224)
    coords = coords[:45]
    want = spec_tiles(spec, coords)
    with DecodePool(2) as pool:
        names, decoded = [], 0
        for band in (1, 3, None):
            stats = DecodeStats()
            got = np.concatenate([b.copy() for _, b in pool.batches(spec, coords, 4, stats=stats, band=band)])
            assert np.array_equal(got, want), band
            assert stats.band == (band or stats.band) and stats.tiles == len(coords)
            # a worker keeps its decoded JPEG tiles from one slide to the next, so a repeat may decode none
            decoded += stats.jpeg_tiles_decoded
            names.append(pool._ring.name)
        assert decoded > 0
        assert names[1] == names[2]  # a finished slide leaves its ring to the next one
        it = pool.batches(spec, coords, 4)
        next(it)
        it.close()  # stopped early: tasks may still be writing, so that ring is not reused
        assert pool._ring is None


def test_vectorised_regions_match_the_per_tile_geometry():
    from weakstil.decode.jpeg_tiles import tile_region, tile_regions, tiles_covered

    rng = np.random.default_rng(0)
    x, y = rng.uniform(-300, 5000, 200), rng.uniform(-300, 4000, 200)
    x[:50], y[:50] = np.round(x[:50]), np.round(y[:50])
    ix, iy, fx, fy, w, h = tile_regions(x, y, 224, 1.37)
    want_tiles = set()
    for k in range(len(x)):
        r = tile_region(float(x[k]), float(y[k]), 224, 224, 1.37)
        assert (r.ix, r.iy, r.fx, r.fy, r.w, r.h) == (ix[k], iy[k], fx[k], fy[k], w, h)
        for ty in range(max(r.iy, 0) // 240, (min(r.iy + h, 3900) - 1) // 240 + 1):
            for tx in range(max(r.ix, 0) // 256, (min(r.ix + w, 4700) - 1) // 256 + 1):
                if min(r.ix + w, 4700) > max(r.ix, 0) and min(r.iy + h, 3900) > max(r.iy, 0):
                    want_tiles.add(ty * 19 + tx)
    assert tiles_covered(ix, iy, w, h, 256, 240, 19, 4700, 3900).tolist() == sorted(want_tiles)


def test_embed_loop_with_readback_lag_gives_the_same_features_in_order(synth_tiff, encoder):
    with Slide.open(synth_tiff) as s:
        coords = find_tiles(s, TilingParams()).coords[:23]
        spec = plan_reader(s, 0.5, 224)
    runs = {}
    for lag in (0, 1, 3):
        starts, feats, timings = [], [], {}
        embed_batches(encoder, iter_batches_inline(spec, coords, 5), lambda s, f: (starts.append(s), feats.append(f)),
                      lag=lag, timings=timings)
        n = len(coords)
        assert n > 10 and starts == list(range(0, n, 5)) and timings["tiles"] == n and timings["batches"] == len(starts)
        runs[lag] = np.concatenate(feats)
    assert np.array_equal(runs[0], runs[1]) and np.array_equal(runs[0], runs[3])
    np.testing.assert_allclose(runs[0], encoder.embed(spec_tiles(spec, coords)), atol=1e-5, rtol=1e-4)


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="POSIX semaphores are listed in /dev/shm on Linux")
def test_a_closed_pool_leaves_no_semaphores():
    """A closed pool kept its queues' named semaphores until the interpreter ended; ones still
    there when a process dies are reported by multiprocessing's resource tracker as leaked."""
    from weakstil.tilestats_pool import StatsPool

    for pool in (DecodePool(1), StatsPool(1)):
        pool._start()
        locks = [getattr(q, a) for q in (pool._tasks, pool._results) for a in ("_rlock", "_wlock", "_sem")]
        files = [Path("/dev/shm") / f"sem.{lock._semlock.name.lstrip('/')}" for lock in locks if lock is not None]
        assert files and all(f.exists() for f in files)
        del locks
        pool.close()
        # unlinked when the last reference goes: the queue's feeder thread may hold one for a moment
        deadline = time.monotonic() + 10.0
        while any(f.exists() for f in files) and time.monotonic() < deadline:
            gc.collect()
            time.sleep(0.05)
        assert not any(f.exists() for f in files), files
