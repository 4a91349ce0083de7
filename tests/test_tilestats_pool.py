"""Tile measurements in worker processes beside the encoder: the same numbers, and a dead worker
stops the slide cleanly."""

from __future__ import annotations

import json
import os
import signal

import numpy as np
import pytest

from weakstil.decode.shm import leaked_segments
from weakstil.errors import WeakSTILError
from weakstil.files import FeaturesFile
from weakstil.tiles import TilingParams

PARAMS = TilingParams()  # 224 px at 0.5 µm/px: a few dozen tiles on a 1 mm synthetic slide


@pytest.fixture(scope="module")
def synthetic_slide(tmp_path_factory):
    from weakstil.synth import generate_slide

    root = tmp_path_factory.mktemp("statspool")
    return generate_slide(root / "s.tiff", root / "truth", "s", 3, size_mm=(1.0, 1.0), target_stil=30.0,
                          preview=False).path


@pytest.fixture(scope="module")
def encoder():
    from weakstil.embed import open_encoder

    enc, _ = open_encoder("small-cnn", "random", "cpu", workers=1)
    return enc


@pytest.fixture(autouse=True)
def close_pools():
    # segments an earlier module's long-lived decode pool holds in this process are not this test's
    before = set(leaked_segments(os.getpid()))
    yield
    from weakstil.tilestats_pool import close_shared_stats_pool

    close_shared_stats_pool()
    assert not set(leaked_segments(os.getpid())) - before


def test_pool_measurements_are_bit_identical_to_the_serial_path(synthetic_slide, encoder, tmp_path, one_torch_thread):
    from weakstil.embed import embed_slide

    serial = embed_slide(synthetic_slide, encoder, tmp_path / "serial.h5", PARAMS, workers=0, batch_size=8,
                         stats_processes=0)
    pooled = embed_slide(synthetic_slide, encoder, tmp_path / "pool.h5", PARAMS, workers=0, batch_size=8,
                         stats_processes=2)
    a, b = FeaturesFile.read(serial.path), FeaturesFile.read(pooled.path)
    assert serial.n_tiles > 3 * 8  # several batches in flight across both workers
    assert np.isfinite(a.tile_stats).all() and a.tile_stats.std(axis=0).max() > 0
    np.testing.assert_array_equal(a.tile_stats, b.tile_stats)
    np.testing.assert_array_equal(a.stroma_estimate, b.stroma_estimate)
    np.testing.assert_array_equal(a.features, b.features)
    assert a.attrs["cache_key"] == b.attrs["cache_key"]  # how the numbers were computed is not in the key
    record = json.loads(b.attrs["decode"])["tile_stats"]
    assert record["processes"] == 2 and record["tiles"] == serial.n_tiles
    assert json.loads(a.attrs["decode"])["tile_stats"] == {"processes": 0}
    # GPU-decoded batches arrive as (n, px, px, 3) views of NCHW tensors: copied into the ring as such
    import torch

    from weakstil.slide import Slide
    from weakstil.stain import estimate_slide_stain
    from weakstil.tilestats import COLUMNS, batch_stats
    from weakstil.tilestats_pool import shared_stats_pool

    with Slide.open(synthetic_slide) as slide:
        stain = estimate_slide_stain(slide)
        tiles = np.stack([slide.read_region(int(x), int(y), 224, 0.5) for x, y in a.coords[:12]])
    rows = np.zeros((12, len(COLUMNS)), np.float32)
    job = shared_stats_pool(2).job(rows, stain, 0.5, 8, 224)
    nchw = torch.from_numpy(tiles).permute(0, 3, 1, 2).contiguous()
    job.submit(0, nchw[:8].permute(0, 2, 3, 1))
    job.submit(8, nchw[8:].permute(0, 2, 3, 1))
    job.finish()
    np.testing.assert_array_equal(rows, batch_stats(tiles, stain, 0.5))
    np.testing.assert_array_equal(rows, a.tile_stats[:12])


def test_a_killed_measurement_worker_stops_the_slide_with_no_output(synthetic_slide, encoder, tmp_path,
                                                                     one_torch_thread):
    from weakstil.embed import embed_slide
    from weakstil.tilestats_pool import shared_stats_pool

    pool = shared_stats_pool(1)
    out = tmp_path / "killed.h5"

    def kill_worker(done: int, total: int) -> None:
        if done == 8:  # mid-slide: the worker dies as the OOM killer would
            os.kill(pool._procs[0].pid, signal.SIGKILL)
            pool._procs[0].join(5)

    with pytest.raises(WeakSTILError, match="measurement worker"):
        embed_slide(synthetic_slide, encoder, out, PARAMS, workers=0, batch_size=8, stats_processes=1,
                    progress=kill_worker)
    assert not out.exists() and not list(tmp_path.glob("*.h5*"))
    # the next slide starts a fresh pool and finishes
    again = embed_slide(synthetic_slide, encoder, out, PARAMS, workers=0, batch_size=8, stats_processes=1)
    assert FeaturesFile.read(again.path).tile_stats.shape[0] == again.n_tiles


def test_the_plan_leaves_cores_for_the_measurements():
    """On a many-core CPU node the measurements (~3.4 ms/tile) would cap a light encoder at one
    process's rate if the plan gave every core to decoding and torch; counted, they get cores."""
    from weakstil.decode.plan import interpolate_rates, plan_cpu, predict

    enc = {1: 500.0, 2: 950.0, 4: 1800.0, 8: 3200.0, 16: 5000.0}
    rates = interpolate_rates(enc, 16)
    blind, aware = plan_cpu(1000.0, enc, 16), plan_cpu(1000.0, enc, 16, stats=290.0)
    assert aware.stats_processes == 16 - aware.workers - aware.threads >= 4
    assert aware.predicted_tiles_per_s <= aware.stats_processes * 290.0
    counted = [predict(p.workers, p.threads, 16, 1000.0, rates, 290.0) for p in (blind, aware)]
    assert counted[1] > 3 * counted[0]
    assert plan_cpu(1000.0, enc, 16, stats=float("nan")).stats_processes == 0  # not measured: not planned
