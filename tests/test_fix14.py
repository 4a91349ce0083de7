"""Fix hunt 14: a decode worker's warnings printed again, folder options given a file (exit 2),
and the workflow keeping a failed slide's error row."""

from __future__ import annotations

import subprocess
import sys

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
