"""Hunt 36f: the resource limits of a lab's machines (a small /dev/shm, ulimit -v, dead workers).

What was wrong (measured on a 2-core machine with the demo model, a 3 x 3 mm synthetic slide):

* /dev/shm of 1 MB (a container's is often 64 MB): the decode ring (18.4 MB for two batches of 64
  tiles of 224 px) was created as a sparse file larger than /dev/shm and its worker died of SIGBUS:
  every slide failed with "1 decode worker(s) died (exit code -7). Fix: check memory", exit 1.
  A read-only /dev/shm failed every slide as "OUT: Read-only file system. Fix: choose a writable
  --out" (the output folder was fine). Now the tiles are decoded and measured in the main process
  (the same sTIL%, 33.2248 both ways) with one warning naming /dev/shm and the fix.
* a worker that died of SIGBUS (another process filling /dev/shm mid-run) still said only "check
  memory"; now the error names SIGBUS and /dev/shm.
* ``ulimit -v`` 2 GB: "unexpected ImportError: libtorch_cpu.so: failed to map segment from shared
  object. Fix: this is a bug in weakstil; ... report it" (torch alone reserves 3.3 GB of address
  space); 4 GB: "unexpected RuntimeError: can't start new thread ... a bug in weakstil" and an atexit
  traceback (``cannot join thread before it is started``); 3 GB: "cannot allocate memory for thread-local
  data: ABORT" (exit 127) from glibc inside torch's import. Now one line naming the limit and the fix,
  and a warning before torch loads when ulimit -v is below 5 GB.
* OMP_NUM_THREADS=1 (a cluster's job prologue): the decode planner used up to every core of the
  affinity mask for torch (2 threads on 2 CPUs); now at most OMP_NUM_THREADS, recorded.
* a slide that ran out of memory in ``weakstil score`` ended the whole batch with "out of memory",
  naming no slide; now it is that slide's error row (named, with the fix) and the others are scored.
"""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys

import numpy as np
import pytest

from conftest import CMU, ROOT
from weakstil.decode import tile_batches
from weakstil.decode.readers import plan_reader
from weakstil.decode.workers import DecodePool, DecodeWorkerError, iter_batches_inline
from weakstil.encoders import create_encoder
from weakstil.slide import Slide
from weakstil.tiles import TilingParams, find_tiles

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def small_slide():
    return CMU  # (a synthetic slide made here took 8 s of the module's setup on a busy machine)


def test_unusable_dev_shm_decodes_in_this_process(small_slide, tmp_path, monkeypatch, caplog):
    import weakstil.decode.shm as shm

    monkeypatch.setattr(shm, "SHM_DIR", str(tmp_path / "no-shm"), raising=False)  # a container without /dev/shm
    encoder = create_encoder("small-cnn", weights="random", seed=0)
    with Slide.open(small_slide) as s:
        coords = find_tiles(s, TilingParams()).coords
        batches, provenance = tile_batches(s, coords, 224, 0.5, encoder, batch_size=8, workers=1)
        got = np.concatenate([b.copy() for _, b in batches])  # a batch is valid until the next
        spec = plan_reader(s, 0.5, 224)
    # decoded here, not by a worker writing into a segment /dev/shm cannot hold (it died of SIGBUS)
    assert provenance()["stats"]["workers"] == 0
    assert np.array_equal(got, np.concatenate([b.copy() for _, b in iter_batches_inline(spec, coords, 8)]))
    said = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("no-shm" in m and "in this process" in m and "--shm-size" in m for m in said), said


def test_a_worker_dead_of_sigbus_names_dev_shm(small_slide):
    with Slide.open(small_slide) as s:
        coords = find_tiles(s, TilingParams()).coords
        spec = plan_reader(s, 0.5, 224)
    with DecodePool(1) as pool:
        it = pool.batches(spec, np.concatenate([coords] * 40), 2)
        next(it)
        for proc in pool._procs:  # as the kernel ends a worker touching a page /dev/shm has no room for
            os.kill(proc.pid, signal.SIGBUS)
        with pytest.raises(DecodeWorkerError) as err:
            for _ in it:
                pass
    assert "exit code -7" in str(err.value) and "SIGBUS" in str(err.value) and "/dev/shm" in str(err.value)


def test_address_space_limit_is_one_line_naming_it(small_slide, tmp_path):
    def limit():  # torch reserves about 3.3 GB of address space when imported
        resource.setrlimit(resource.RLIMIT_AS, (3 << 29, resource.RLIM_INFINITY))

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    r = subprocess.run([sys.executable, "-m", "weakstil", "embed", str(small_slide), "--out", str(tmp_path / "f"),
                        "--encoder", "small-cnn", "--weights", "random"], capture_output=True, text=True,
                       preexec_fn=limit, env=env, timeout=120)
    assert r.returncode == 1, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and "ulimit -v" in lines[0] and "1.5 GB" in lines[0], r.stderr
    assert "bug in weakstil" not in r.stderr and "Traceback" not in r.stderr
    # said before torch loads too: under about 3.3 GB it can abort inside torch's import (exit 127)
    assert "may die on loading it" in " ".join(r.stderr.split())
    assert not list((tmp_path / "f").glob("*.h5")) if (tmp_path / "f").exists() else True


def test_thread_and_memory_failures_are_named_not_bugs():
    from weakstil.limits import address_space_limit, out_of_memory, resource_error_line

    line = resource_error_line(RuntimeError("can't start new thread"))  # said "a bug in weakstil"
    if address_space_limit() is None:
        assert line is not None and "ulimit -u" in line and "--workers" in line, line
    else:
        assert line is not None and "ulimit -v" in line, line
    # torch's words for a failed CPU allocation: the slide's error, with the fix
    err = out_of_memory(RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate "
                                     "memory: you tried to allocate 123 bytes"), "slides/big.svs")
    assert err is not None and err.one_line().startswith("slides/big.svs: out of memory") and "Fix:" in err.one_line()
    assert out_of_memory(RuntimeError("shape mismatch")) is None  # another RuntimeError stays a bug


def test_a_slide_out_of_memory_is_its_error_row_and_the_batch_goes_on(tmp_path_factory, monkeypatch):
    import pandas as pd

    import weakstil.score as score
    from conftest import run_cli
    from shared_cohorts import one_epoch_model_copy

    root = tmp_path_factory.mktemp("oom")
    model, cohort, _labels, _ = one_epoch_model_copy(tmp_path_factory, root)
    slides = sorted((cohort / "slides").glob("*.tiff"))[:2]
    real = score.score_slide

    def big_slide_runs_out(path, *args, **kwargs):  # the first slide needs more memory than the machine has
        if path == slides[0]:
            raise MemoryError()
        return real(path, *args, **kwargs)

    monkeypatch.setattr(score, "score_slide", big_slide_runs_out)
    r = run_cli("score", *slides, "--model", model, "--out", root / "scores", "--threads", "1")
    assert r.returncode == 1, r.stderr
    line = next(ln for ln in r.stderr.splitlines() if ln.startswith("error:"))
    assert slides[0].name in line and "out of memory" in line and "--batch-size" in line, r.stderr
    rows = pd.read_csv(root / "scores" / "results.csv").set_index("slide_id")
    assert rows.loc[slides[0].stem, "status"] == "error" and "out of memory" in rows.loc[slides[0].stem, "error"]
    assert rows.loc[slides[1].stem, "status"] == "ok" and rows.loc[slides[1].stem, "stil"] >= 0  # scored after it
    assert not (root / "scores" / f"{slides[0].stem}.h5").exists()  # no partial file of the failed slide


def test_omp_num_threads_caps_the_planned_torch_threads(small_slide, monkeypatch):
    """A cluster's job prologue (or the user) sets OMP_NUM_THREADS=1: the plan used every core of the
    affinity mask all the same (2 torch threads on 2 CPUs) and recorded nothing of it."""
    import torch

    from weakstil.decode import ThreadPlanner

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    encoder = create_encoder("small-cnn", weights="random", seed=0)
    before = torch.get_num_threads()
    try:
        with Slide.open(small_slide) as s:
            coords = find_tiles(s, TilingParams()).coords
            planner = ThreadPlanner(encoder, batch_size=64, cpus=2)
            batches, provenance = tile_batches(s, coords, 224, 0.5, encoder, batch_size=64, planner=planner)
            for _ in batches:
                pass
            record = provenance()
    finally:  # the plan sets the process's torch threads
        torch.set_num_threads(before)
    assert record["plan"]["threads"] == 1 and record["torch_threads"] == 1, record["plan"]
    assert record["omp_num_threads"] == 1
