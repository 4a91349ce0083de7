"""Fix hunt 14: a decode worker's warnings printed again, folder options given a file (exit 2),
and the workflow keeping a failed slide's error row."""

from __future__ import annotations

import json
import subprocess
import sys

import snakemake_fork
from conftest import write_disc_slide


# -- A3: a decode worker does not print the parent's warnings again -------------------------
A3_SCRIPT = """
import sys
import numpy as np
from weakstil.decode.readers import plan_reader
from weakstil.decode.workers import DecodePool
from weakstil.slide import Slide
if __name__ == "__main__":
    with Slide.open(sys.argv[1], slide_mpp=0.4) as s:  # the file says 0.5: overridden, said here
        spec = plan_reader(s, 0.5, 224, prefer_jpeg=False)  # OpenSlide: each worker opens the Slide again
    with DecodePool(1) as pool:
        print(sum(len(b) for _, b in pool.batches(spec, np.array([[0, 0], [224, 224]]), 2)))
"""


def test_a_decode_worker_does_not_repeat_the_parents_warning(tmp_path):
    """``--slide-mpp`` overriding the metadata is said once: each decode worker opening the slide
    again printed its own copy through logging's last-resort handler (a bare second line). A
    fresh interpreter, as the CLI runs (the parent logs nothing here: no handler is set up)."""
    slide = write_disc_slide(tmp_path / "disc.tiff")
    script = tmp_path / "a3.py"
    script.write_text(A3_SCRIPT)
    done = subprocess.run([sys.executable, str(script), str(slide)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "2", done.stderr
    # the parent's own copy goes through the last-resort handler too (no logging set up): one line
    assert done.stderr.count("overrides the metadata value") == 1, done.stderr


# -- A9: a folder option given a file is a usage error (exit 2), on every command ------------
def test_b_a_folder_option_given_a_file_exits_2_on_every_command(tmp_path):
    """``--features mk.py`` exited 2 but ``--annotations mk.py`` / ``--tumorbed-beds mk.py`` (and
    ``--model model.json``, train's ``--features``) exited 1, as if a slide had failed. Each is one
    ``error:`` line naming the file; a folder that is not there stays exit 1 (a missing input)."""
    from conftest import run_cli

    f = tmp_path / "mk.py"
    f.write_text("x = 1\n")
    slide = write_disc_slide(tmp_path / "s.tiff")
    csv = tmp_path / "c.csv"
    csv.write_text(f"slide_id,path,stil\ns,{slide},5\n")
    nomodel, nofeats = tmp_path / "nomodel", tmp_path / "nofeats"
    cases = {
        "score --features": ["score", slide, "--model", nomodel, "--features", f],
        "score --annotations": ["score", slide, "--model", nomodel, "--annotations", f],
        "score --tumorbed-beds": ["score", slide, "--model", nomodel, "--tumorbed-beds", f],
        "score --model": ["score", slide, "--model", f],
        "train --features": ["train", csv, "--features", f],
        "train --annotations": ["train", csv, "--features", nofeats, "--annotations", f],
        "evaluate --tumorbed-beds": ["evaluate", csv, "--model", nomodel, "--features", nofeats, "--tumorbed-beds", f],
        "tumorbed apply --annotations": ["tumorbed", "apply", tmp_path / "s.h5", "--annotations", f],
        "tumorbed train --features": ["tumorbed", "train", "--features", f, "--annotations", tmp_path],
        "tumorbed train --annotations": ["tumorbed", "train", "--features", tmp_path, "--annotations", f],
        "report --tiles": ["report", "--model", nomodel, "--tiles", f],
    }
    wrong = []
    for i, (case, args) in enumerate(cases.items()):
        r = run_cli(*args, "--out", tmp_path / f"out{i}")
        lines = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        if not (r.returncode == 2 and len(lines) == 1 and "mk.py: " in lines[0] and "is a file, not" in lines[0]):
            wrong.append((case, r.returncode, r.stderr))
    assert not wrong, wrong
    # a folder option naming nothing: a missing input, exit 1 as before
    r = run_cli("score", slide, "--model", nomodel, "--annotations", tmp_path / "nodir", "--out", tmp_path / "o")
    assert r.returncode == 1 and "--annotations folder not found" in r.stderr, r.stderr


# -- F6: the workflow tries a failed score slide again on every run --------------------------
def test_c_a_recorded_slide_failure_is_retried_by_the_next_run_and_then_left_alone(tmp_path, synth_cohort):
    """A score slide whose `score_slide_tiles` job recorded a failure (here another run held the
    slide's tiles file: a passing cause) kept its error status forever: the job had succeeded, so
    after the cause was gone a rerun said "Nothing to be done". Now the next run redoes it, and once
    it succeeded a run after that has nothing to do. Only that job's target: 2 slides of 0.7 mm."""
    import shutil

    import pytest

    pytest.importorskip("snakemake")
    from conftest import ROOT, WORKFLOW_SLIDE_MM, no_slurm_controller_env
    from weakstil.locks import OutputLock

    synth_cohort(tmp_path / "cohort", 3, seed=0, size_mm=WORKFLOW_SLIDE_MM, groups=2)
    lines = (tmp_path / "cohort" / "labels.csv").read_text().splitlines()
    (tmp_path / "cohort" / "labels.csv").write_text("\n".join(lines[:3]) + "\n")  # 2 cohort slides, 2 centres
    (tmp_path / "new").mkdir()
    shutil.move(tmp_path / "cohort" / "slides" / "synth_0002.tiff", tmp_path / "new" / "s.tiff")
    target = "results/score_slides/tiles/s.json"  # this job alone: no training
    status = tmp_path / target
    env = {**no_slurm_controller_env(tmp_path), "WEAKSTIL_LOCK_TIMEOUT": "0.5"}

    def snakemake(*args: str) -> str:
        proc = snakemake_fork.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "pipelines" / "Snakefile"),
                               "--profile", str(ROOT / "pipelines" / "profiles" / "local"), "--directory",
                               str(tmp_path), "--cores", "1", *args, "--config", "folds=2", "threads=1",
                               "score_slides=[new/s.tiff]"], env=env)
        assert proc.returncode == 0, (proc.stdout + proc.stderr)[-3000:]
        return proc.stdout + proc.stderr

    (tmp_path / "results" / "tiles").mkdir(parents=True)
    with OutputLock(tmp_path / "results" / "tiles" / "s.h5"):  # another run writing the slide's tiles
        snakemake(target)
    first = json.loads(status.read_text())
    assert first["status"] == "error" and "another weakstil run" in first["error"], first
    log = snakemake(target)  # the cause is gone: the slide is tiled (it said "Nothing to be done")
    assert json.loads(status.read_text())["status"] == "ok", log[-3000:]
    assert (tmp_path / "results" / "tiles" / "s.h5").is_file()
    assert "Nothing to be done" in snakemake("--dry-run", target)  # no retry of a slide that succeeded


def test_c_a_failure_passed_on_or_repeated_gets_a_new_retry_key(tmp_path):
    """The key a score slide's per-slide job adds to its params: none for a slide that never failed,
    a new one for each recorded failure (a job that fails again is retried again), and after a
    success the key the job ran with (so the params trigger sees no change)."""
    from weakstil.pipeline_slide_steps import main, retry_key

    tiles, status = tmp_path / "s.tiles.json", tmp_path / "s.json"
    assert retry_key(status) == ""  # not run yet
    tiles.write_text(json.dumps({"slide": "s.tiff", "status": "error", "step": "tile", "error": "busy"}))
    key = retry_key(tiles)
    assert key  # an error status of an earlier version (no failed_at) is retried too
    assert main(["--status", str(status), "--log", str(tmp_path / "s.log"), "--slide", "s.tiff", "--after",
                 str(tiles), "--retrying", key, "--step", "embed=true"]) == 0
    passed_on = json.loads(status.read_text())
    assert passed_on["status"] == "error" and passed_on["retrying"] == key and retry_key(status) not in ("", key)
    again = retry_key(status)
    assert main(["--status", str(status), "--log", str(tmp_path / "s.log"), "--slide", "s.tiff",
                 "--retrying", again, "--step", "embed=true"]) == 0
    assert json.loads(status.read_text())["status"] == "ok" and retry_key(status) == again
    assert main(["--status", str(status), "--log", str(tmp_path / "s.log"), "--slide", "s.tiff",
                 "--retrying", again, "--step", "embed=exit 1"]) == 0
    assert retry_key(status) not in ("", again)  # failed again: retried again


def test_a_closed_pool_has_unlinked_its_semaphores_when_close_returns(monkeypatch):
    """A pool's task queue has a feeder thread holding two of its named semaphores; close() left it
    to end on its own, so they were unlinked in that thread, after close() returned, and one unlinked
    there as the interpreter exited (the process's pools close at exit) was never unregistered:
    intermittently "resource_tracker: There appear to be 1 leaked semaphore objects ... No such file
    or directory" after a batch (1 run in 20 of a 3-slide score). close() now waits for the feeder:
    every semaphore is unlinked and unregistered by close() itself."""
    import threading
    from multiprocessing import synchronize

    from weakstil.decode.workers import DecodePool
    from weakstil.tilestats_pool import StatsPool

    cleaned: dict[str, str] = {}
    cleanup = synchronize.SemLock._cleanup

    def recorded(name: str) -> None:  # the stdlib's cleanup, noting the thread it ran in
        cleanup(name)
        cleaned[name] = threading.current_thread().name

    monkeypatch.setattr(synchronize.SemLock, "_cleanup", staticmethod(recorded))
    me = threading.current_thread().name
    for pool in (DecodePool(1), StatsPool(1), DecodePool(1)):
        pool._start()
        pool._tasks.put((0,))  # a task of no current job (skipped by the worker): the feeder thread starts
        names = [getattr(q, a)._semlock.name for q in (pool._tasks, pool._results) for a in ("_rlock", "_wlock", "_sem")]
        pool.close()
        assert {n: cleaned.get(n) for n in names} == {n: me for n in names}
