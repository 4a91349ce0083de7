"""Runs stopped mid-write, then run again (hunt 38e, interruptions: Ctrl-C, SIGTERM, SIGKILL).

1. A 'tumorbed apply' stopped between a slide's outline and its bed file.

``tumorbed apply`` writes ``<slide>.geojson`` (the outline), then ``<slide>.h5`` (the bed, which
records the outline's SHA-256 so that a pathologist's later edit of the outline is noticed). Each
write was atomic, but the two were not one: a SIGTERM (SLURM preemption, scancel) or Ctrl-C after
the outline's write and before the bed's, when a bed is made again (a corrected annotation, a new
detector, --overwrite), left the NEW outline beside the EARLIER bed. The run said "unfinished
outputs were removed", yet every rerun then refused the slide for good, exit 1: "synth_0001.geojson:
was edited after 'tumorbed apply' wrote it (a corrected outline?) ... not overwriting it" (measured
on 6 slides of 2 mm: 1 of 6 failed on every rerun until the user deleted the outline; a SIGKILL at
the same moment did the same). Now outline and bed are replaced together
(:func:`weakstil.atomic.replacing_together`): an interrupted rewrite puts the earlier pair back, and
a rerun makes the slide's bed from the new inputs, exit 0.

2. ``synth`` killed mid-slide (SIGKILL, or SLURM's SIGKILL after the grace period) left the slide's
temporary TIFF (``slides/.synth_0000.tiff.<host>.<pid>.<hex>.tmp``, as large as the slide); the
rerun redid the slide but kept that file for good (every other writer removes a dead run's
temporary files). Now each slide's dead temporary files are removed, said in one log line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import h5py

from conftest import run_cli
from shared_cohorts import one_epoch_model_copy


def test_sigterm_between_outline_and_bed_leaves_a_pair_a_rerun_redoes(tmp_path_factory, tmp_path, monkeypatch):
    import weakstil.tumorbed.apply as apply

    _, cohort, labels, features = one_epoch_model_copy(tmp_path_factory, tmp_path / "shared")
    sid = str(labels["slide_id"].iloc[0])
    feature_file, beds = features / f"{sid}.h5", tmp_path / "beds"
    ann = tmp_path / "ann"
    ann.mkdir()
    (ann / f"{sid}.geojson").write_bytes((cohort / "truth" / f"{sid}_tumorbed.geojson").read_bytes())
    run_cli("tumorbed", "apply", feature_file, "--out", beds, check=True)  # the whole tissue, no annotation yet
    before = {name: (beds / name).read_bytes() for name in (f"{sid}.geojson", f"{sid}.h5")}

    write_bed = apply.write_bed

    def preempted(*args, **kwargs):  # the job is preempted just as the new outline is written
        os.kill(os.getpid(), signal.SIGTERM)
        return write_bed(*args, **kwargs)

    monkeypatch.setattr(apply, "write_bed", preempted)
    stopped = run_cli("tumorbed", "apply", feature_file, "--out", beds, "--annotations", ann)
    assert stopped.returncode == 143, stopped.stderr
    assert "terminated (SIGTERM)" in stopped.stderr
    # the earlier outline and bed, as a pair (old code: the new outline beside the earlier bed)
    assert {name: (beds / name).read_bytes() for name in before} == before
    assert not [p.name for p in beds.iterdir() if p.name.endswith(".tmp")]

    monkeypatch.setattr(apply, "write_bed", write_bed)
    rerun = run_cli("tumorbed", "apply", feature_file, "--out", beds, "--annotations", ann)
    assert rerun.returncode == 0, rerun.stderr  # old code: 1, "was edited after 'tumorbed apply' wrote it"
    with h5py.File(beds / f"{sid}.h5") as f:
        assert f.attrs["source"] == "annotation"


def test_synth_killed_mid_slide_leaves_no_temporary_slide_after_the_rerun(tmp_path):
    out = tmp_path / "cohort"
    args = ["synth", str(out), "--slides", "1", "--size-mm", "1", "1"]
    proc = subprocess.Popen([sys.executable, "-m", "weakstil", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not list(out.glob("slides/.*.tmp")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # the slide's TIFF is written while it is rendered: about a second
    proc.kill()
    proc.wait()
    assert list(out.glob("slides/.*.tmp")), "the run was not stopped mid-slide"

    rerun = run_cli(*args)
    assert rerun.returncode == 0, rerun.stderr
    assert (out / "slides" / "synth_0000.tiff").is_file()
    left = [p.name for p in out.rglob("*.tmp")]
    assert not left, left  # old code: ['.synth_0000.tiff.<host>.<pid>.<hex>.tmp'], kept for good
