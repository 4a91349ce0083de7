"""Hunt 36b: defects outside testers left open.

- ``weakstil score SLIDES 2>&1 | head -1`` (and tile, embed, report, train): once ``head`` had gone, the next log line
  met a closed pipe in rich's console, which ends the run with exit 1 (``info | head -1`` ends with 141 since hunt
  35c). Measured: tile, embed, report, train and a score rerun into a closed pipe all exit 1. Now 141, quietly, and
  score's tile bar is on the log's console and only on a terminal (it wrote an empty line on stdout, which was
  ``score ... | head -1``'s only line).
- a ``--features`` folder this user may not write: score said per slide "F/ID.h5: Permission denied. Fix: check the
  permissions of the file and its folder". Now one line naming the folder and the fix (chmod u+w, or another
  --features), refused up front (exit 2) when no slide of the batch is cached there; cached slides are still scored.
- ``weakstil info`` of an OME-TIFF pyramid listed ``levels [1]`` though its SubIFDs (here 4x and 16x) are read for
  its overviews (hunt 35d). Now ``levels [1, 4, 16 (SubIFDs, read for overviews)]``.
(The workflow's settings.json records versions and time now: tests/test_b_hunt26.py.)
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import CMU

NOBODY = 65534


def test_tile_into_a_closed_pipe_ends_quietly_with_141(tmp_path):
    read, write = os.pipe()
    os.close(read)  # 'weakstil tile ... 2>&1 | head -1' once head has its line
    try:
        done = subprocess.run([sys.executable, "-P", "-m", "weakstil", "tile", str(CMU), "-o", str(tmp_path / "t")],
                              stdout=write, stderr=write, timeout=120)
    finally:
        os.close(write)
    assert done.returncode == 141  # old: 1 (rich's console ends the run so at a broken pipe)


def test_read_only_features_folder_is_one_clear_line_up_front():
    folder = Path(tempfile.mkdtemp(prefix="weakstil-h36b-"))
    try:
        features = folder / "features"
        features.mkdir()
        if os.geteuid() == 0:
            os.chown(folder, NOBODY, NOBODY)
        features.chmod(0o555)  # (root's: the other user may only read it)
        slide = shutil.copy(CMU, folder / "s.svs")
        code = textwrap.dedent(f"""
            from pathlib import Path
            import rich.progress, rich.console, rich.logging
            import weakstil.score, weakstil.outputdir, weakstil.feature_cache, weakstil.atomic, weakstil.slide_ids
            import weakstil.fingerprint, weakstil.locks, weakstil.modeldir, weakstil.files
            import subprocess  # (the stdlib is under /root here: what runs after the drop must be imported before)
            from weakstil.errors import WeakSTILError
            from weakstil.score import ScoreOptions, score_batch
            import os
            if os.geteuid() == 0:
                os.setgroups([]); os.setgid({NOBODY}); os.setuid({NOBODY})
            try:
                score_batch([Path({str(slide)!r})], ScoreOptions(model=Path({str(folder / 'model')!r}),
                            out=Path({str(folder / 'out')!r}), features=Path({str(features)!r})), progress=False)
            except Exception as exc:  # (old code went on to load the model: an error of another kind)
                print(type(exc).__name__, exc.one_line() if isinstance(exc, WeakSTILError) else exc)
            """)
        done = subprocess.run([sys.executable, "-P", "-c", code], capture_output=True, text=True, timeout=60,
                              cwd=Path(__file__).resolve().parents[1])
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    assert done.returncode == 0, done.stderr[-2000:]
    # old: the model's error (the folder's only came per slide: "Permission denied. Fix: check the permissions")
    assert done.stdout.startswith(f"UsageError {features}: this user may not write in the feature cache folder"), \
        done.stdout
    assert f"chmod u+w {features}" in done.stdout and "another --features folder" in done.stdout


def test_info_lists_an_ome_tiffs_subifd_levels(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    from weakstil.slide import Slide

    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (512, 512, 3), np.uint8)
    kw = dict(tile=(128, 128), compression="jpeg", photometric="rgb")
    path = tmp_path / "s.ome.tif"
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(base, subifds=2, metadata=dict(axes="YXS", PhysicalSizeX=0.5, PhysicalSizeY=0.5), **kw)
        for f in (4, 16):
            tw.write(base[::f, ::f].copy(), subfiletype=1, metadata=None, **{**kw, "tile": (16, 16)})
    with Slide.open(path) as s:
        assert s.level_count == 1
        line = s.describe()
    assert line.endswith("levels [1, 4, 16 (SubIFDs, read for overviews)]"), line  # old: "levels [1]"
