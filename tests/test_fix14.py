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
