"""Fault matrix h48d: `weakstil tile` on a full disk whose write names no file (PIL's PNG writer) said
"error: SLIDE: No space left on device" — the slide it read, not the folder that is full."""

from __future__ import annotations

import errno
import shutil
from pathlib import Path

from conftest import TEST_DATA, run_cli


def test_tile_full_disk_names_the_output_folder(tmp_path: Path, monkeypatch) -> None:
    import weakstil.tiles

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")  # as PIL raises it: no filename

    monkeypatch.setattr(weakstil.tiles, "tile_slide_to_dir", full)
    slides = []
    for name in ("a.svs", "b.svs"):
        shutil.copy(TEST_DATA / "CMU-1-Small-Region.svs", tmp_path / name)
        slides.append(tmp_path / name)
    out = tmp_path / "tiles"
    result = run_cli("tile", *slides, "--out", out)
    assert result.returncode == 1
    errors = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert errors[0].startswith(f"error: {out}: No space left on device. Fix: free disk space"), errors
    assert "a.svs" not in errors[0]
    assert "1 more input(s) not processed" in errors[1]  # the batch still stops at a full disk
