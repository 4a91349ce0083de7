"""Hunt 35f: the benchmarks run as an outsider would, at their smallest settings.

Memory: ``benchmarks/score_memory.py`` printed "peak RSS of `weakstil score`" from
``getrusage(RUSAGE_CHILDREN).ru_maxrss``: the peak of the *largest single* finished child, not of
``score`` and the decode / tile-measurement worker processes it spawns (a 3,337-tile run: score 0.85 GB
plus workers of 114, 95 and 12 MB; reported 1.04 GB), and it also counted the embed / train runs
that made the model. Now ``benchmarks/memwatch.py`` samples the summed RSS of the command's whole
process tree (an upper bound: pages the workers share are counted in each) and reports it beside the
largest process's own peak (``wait4``: that command only): 1.25 GB beside 1.02 GB on that slide. And a
rerun of score_memory.py reused the first run's features (kept under score's --out) and measured
scoring without embedding or workers (46 s instead of 170 s): the scores folder is removed first.

Missing inputs: compare_outputs.py passed two folders that do not exist ("0 files compared, 0
difference(s)", exit 0); interval_by_slide, confidence_variants, band_errors, stain_angles,
mil_ablation_table, mil_members, appearance_sweep, fingerprint_cost and every script given a missing
slide or encoder folder ended in a traceback (scan_variants after minutes of writing variants,
fingerprint_cost after writing its 3 GB file, knn_eval / confidence / tumorbed_quality after making
their cohorts); now one ``error:`` line naming the file and how to make it, exit 1, before any work.
embed_throughput's ``--max-tiles 64`` was silently ignored (only NAME=N was read: the quick run took
over 400 s); tilestats_compare failed with its default reference (28 tile columns against 29: a
broadcast error after the timing run) and on a revision the clone lacks (a git traceback).
gpu_run.sh ran its wheel install on ``--help`` and, without ``.whl/``, printed pip's resolver errors
and a traceback; gpu_check / gpu_profile left an empty output folder on a machine without CUDA.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

# a parent holding ~60 MB that starts a worker holding ~150 MB, both alive together for a while
_PARENT = """
import subprocess, sys, time
x = b"\\1" * (60 << 20)
child = subprocess.Popen([sys.executable, "-c", "import time; y = b'\\\\1' * (150 << 20); time.sleep(0.5)"])
child.wait()
"""


def test_score_memory_counts_the_workers_a_command_starts():
    from memwatch import run_watched  # old code: no such module; RUSAGE_CHILDREN gave the largest process

    w = run_watched([sys.executable, "-c", _PARENT], interval=0.05, stdout=subprocess.DEVNULL)
    assert w.returncode == 0
    mb = 1 << 20
    # the largest single process is the 150 MB worker; the tree held both at once
    assert 150 * mb <= w.largest_bytes < 200 * mb, w
    assert w.tree_peak_bytes >= 205 * mb, w
    assert w.max_processes >= 2


def test_a_large_caller_is_not_counted_as_the_commands_largest_process():
    """``wait4``'s ``ru_maxrss`` counted the caller's resident pages in the forked child: run from a
    pytest worker grown to 2.5 GB, the 150 MB worker above read 2.5 GB (the full suite's failure)."""
    caller = f"""
import subprocess, sys
sys.path.insert(0, {str(ROOT / "benchmarks")!r})
big = bytearray(800 << 20)
big[::4096] = b"\\1" * len(big[::4096])
from memwatch import run_watched
w = run_watched([sys.executable, "-c", {_PARENT!r}], interval=0.05, stdout=subprocess.DEVNULL)
print(w.largest_bytes >> 20, w.tree_peak_bytes >> 20)
"""
    done = subprocess.run([sys.executable, "-c", caller], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    largest, tree_peak = map(int, done.stdout.split())
    assert 150 <= largest < 200 and 205 <= tree_peak < 300, done.stdout


def test_run_watched_reports_a_failing_command_s_exit_code():
    from memwatch import run_watched

    w = run_watched([sys.executable, "-c", "raise SystemExit(3)"], interval=0.05)
    assert w.returncode == 3


def test_compare_outputs_refuses_folders_that_do_not_exist(tmp_path):
    # two mistyped folders (or the right names from the wrong directory) compared as empty:
    # "0 files compared, 0 difference(s)", exit 0 -- a pass for a check of nothing
    import pytest
    from compare_outputs import main

    with pytest.raises(SystemExit) as err:
        main([str(tmp_path / "before_typo"), str(tmp_path / "after_typo")])
    assert str(err.value).startswith(f"error: {tmp_path / 'before_typo'}: output folder not found. Fix:")


def test_interval_by_slide_names_a_missing_model_in_one_line(tmp_path):
    # was a FileNotFoundError traceback ('.../model.json')
    import pytest
    from interval_by_slide import main

    with pytest.raises(SystemExit) as err:
        main(["--model", str(tmp_path / "model"), f"a={tmp_path}:{tmp_path / 'labels.csv'}"])
    msg = str(err.value)
    assert msg.startswith("error: ") and "model.json" in msg and "weakstil train" in msg and "\n" not in msg


def test_fingerprint_cost_checks_its_slide_before_writing_the_big_file(tmp_path):
    # a mistyped --slide failed with a traceback only after the --size-gb file (3 GB by default) was written
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "fingerprint_cost.py"), "--slide",
                           str(tmp_path / "typo.svs"), "--size-gb", "0.001", "--cache", str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'typo.svs'}: --slide not found. Fix: pass an existing slide file "
        "(default: tests/data/CMU-1-Small-Region.svs)"]
    assert not (tmp_path / "cache").exists()


def test_gpu_run_sh_answers_help_and_says_the_wheels_are_missing(tmp_path):
    # `--help` ran the wheel install; without .whl/ it printed pip's resolver errors and a traceback
    # ("wheel install failed (rc 1)"), not what to do; both left a gpu_out/ folder behind
    import os

    script = str(ROOT / "benchmarks" / "gpu_run.sh")
    # -S: a Python without site-packages, so without openslide (needs the wheels)
    env = dict(os.environ, PYTHON=f"{sys.executable} -S", OUT=str(tmp_path / "out"))
    helped = subprocess.run(["bash", script, "--help"], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=30)
    assert helped.returncode == 0 and "make gpu-wheels" in helped.stdout
    proc = subprocess.run(["bash", script], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "run `make gpu-wheels`" in lines[0], lines
    assert not (tmp_path / "out").exists()


def test_embed_throughput_max_tiles_takes_one_number_for_every_encoder():
    # `--max-tiles 64` (a number, as its help reads) was silently ignored: every measurement ran on all
    # of the slide's ~1,000 tiles (the run passed 400 s with nothing printed instead of about a minute)
    import pytest
    from embed_throughput import tile_caps

    assert tile_caps("64", ["small-cnn"]) == {"small-cnn": 64}
    assert tile_caps("small-cnn=1024,resnet50-l3=192", ["small-cnn"]) == {"small-cnn": 1024, "resnet50-l3": 192}
    for bad in ("many", "smallcnn=64"):
        with pytest.raises(SystemExit, match="--max-tiles"):
            tile_caps(bad, ["small-cnn"])


def test_tilestats_compare_matches_columns_by_name_across_versions():
    # the default reference (5f7fcb8) has 28 tile columns, this checkout 29: the comparison by position
    # failed "operands could not be broadcast together with shapes (384,28) (384,29)" after the timing run
    import numpy as np
    from tilestats_compare import column_differences

    ref = np.array([[1.0, 2.0], [3.0, 4.0]])
    cur = np.array([[1.0, 9.0, 2.5], [3.0, 9.0, 4.0]])  # a new column "b" between the two
    lines = column_differences(ref, ("a", "c"), cur, ("a", "b", "c"))
    assert lines[0] == "tiles with every shared column identical: 1 of 2"
    assert "columns only in this checkout (not compared): b" in lines
    rows = {ln.split()[0]: ln.split()[1:3] for ln in lines if ln.startswith("  ")}
    assert rows == {"a": ["0", "0"], "c": ["0.5", "1"]}


def test_tilestats_compare_names_a_revision_it_cannot_read():
    # a revision a shallow clone lacks (or a typo) was a CalledProcessError traceback
    import pytest
    from tilestats_compare import load_reference

    with pytest.raises(SystemExit, match=r"^error: --ref no-such-revision-h35f: .* Fix: "):
        load_reference("no-such-revision-h35f")


def test_benchmark_errors_of_weakstil_are_one_line():
    # a missing slide (embed_throughput, tilestats_throughput, stain_norm_speed, stain_stability --slide)
    # ended in a SlideError traceback
    import pytest
    from inputs import one_line_errors
    from weakstil.errors import SlideError

    def main():
        raise SlideError("file not found", path="/data/typo.svs", fix="check the path and spelling")

    with pytest.raises(SystemExit) as err:
        one_line_errors(main)
    assert str(err.value) == "error: /data/typo.svs: file not found. Fix: check the path and spelling."


def test_knn_eval_checks_its_encoder_before_making_slides(tmp_path):
    # a mistyped --encoder failed in a traceback after 6 synthetic slides were made (38 s)
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "knn_eval.py"), "--encoder",
                           str(tmp_path / "typo"), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, timeout=20)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"error: {tmp_path / 'typo'}: no such card file or encoder folder. Fix: check the path, or use a built-in "
        "encoder name: " + proc.stderr.split("encoder name: ")[1].strip()]
    assert not (tmp_path / "work").exists()


def test_colour_rule_refuses_too_few_slides_before_making_the_cohort(tmp_path):
    # 4 slides: the cohort was made, then the 5-fold split failed with a fix naming --folds / --group-column,
    # options this script does not have
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "colour_rule.py"), "--slides", "4",
                           "--size-mm", "0.5", "0.5", "--cache", str(tmp_path / "cache")],
                          capture_output=True, text=True, timeout=30)
    assert proc.returncode == 2
    assert "--slides 4 --groups 4: the random 5-fold split needs 5 slides or more" in proc.stderr
    assert not (tmp_path / "cache").exists()


def test_interval_by_slide_says_when_no_slide_has_an_interval(tmp_path):
    # a model without a calibrated interval (too few out-of-fold slides): a KeyError traceback from a merge
    import numpy as np
    import pytest
    from interval_by_slide import load

    (tmp_path / "results.csv").write_text("slide_id,status,stil,stil_lower_90,stil_upper_90,qc\n"
                                          "s1,ok,12.5,,,no_interval\n")
    (tmp_path / "labels.csv").write_text("slide_id,path,stil\ns1,s1.tiff,10\n")
    with pytest.raises(SystemExit, match="scored ok with a 90 % interval. Fix: "):
        load(tmp_path, tmp_path / "labels.csv", np.array([0]))
