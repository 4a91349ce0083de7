"""Hunt 36l: outside testers' leftovers of hunt 36 (out of memory in tile/embed, --slide-mpp on
non-square pixels, a slide list's ``nan`` mpp cell).

What was wrong:

* ``weakstil tile`` and ``weakstil embed`` ended the whole batch when one slide ran out of memory
  (MemoryError, or torch's "can't allocate memory"): one line, "error: out of memory. Fix: lower
  --batch-size (or --crop-px, --workers)...", naming no slide (tile has no --batch-size), and the
  slides after it were never processed (2 slides given: none written). A decode worker killed by the
  out-of-memory killer said "1 decode worker(s) died (exit code -9 ...)", naming no slide either.
  Now, as in ``score`` (hunt 36f), that slide's error line names it and the fix, the others go on,
  nothing of it is left, and the run exits 1 at the end.
* ``--slide-mpp 0.5`` on a scan recorded at 0.25 µm/px along x and 0.5 along y warned "overrides
  the metadata value 0.25 µm/px" (y unnamed); ``--slide-mpp 0.25`` warned nothing, though it read
  y at half its recorded size. Now the warning names both axes.
* a slide list's mpp cell "nan", "NaN" or "None" was read as an empty cell: the file's own
  metadata was used without a word (exit 0), while docs/scoring.md says only an empty cell means
  that ("inf", "-1" and "0" were already refused). Now it is refused as any bad cell is: one line
  naming the list's line and the fix (exit 2).
"""

from __future__ import annotations

import logging
import shutil

import pytest

from conftest import run_cli, write_disc_slide

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def two_slides(tmp_path_factory):
    """Two small slides (a 1,024 px disc of tissue; 2 CMU copies took 2.5 s to tile on a busy machine)."""
    folder = tmp_path_factory.mktemp("slides")
    paths = [write_disc_slide(folder / "a.tiff"), folder / "b.tiff"]
    shutil.copyfile(paths[0], paths[1])
    return paths


def _error_lines(stderr: str) -> list[str]:
    return [ln for ln in stderr.splitlines() if ln.startswith("error:")]


def test_tile_out_of_memory_is_that_slides_error_and_the_batch_goes_on(two_slides, tmp_path, monkeypatch):
    import weakstil.tiles as tiles

    real = tiles.write_tiles_h5

    def big_slide_runs_out(t, path):  # after its overview picture was written (into a temporary file)
        if path.stem == "a":
            raise MemoryError()
        return real(t, path)

    monkeypatch.setattr(tiles, "write_tiles_h5", big_slide_runs_out)
    out = tmp_path / "tiles"
    r = run_cli("tile", *two_slides, "--out", out)
    assert r.returncode == 1, r.stderr
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and str(two_slides[0]) in lines[0] and "out of memory" in lines[0], r.stderr
    assert "more memory" in lines[0] and "--batch-size" not in lines[0]  # tile has no --batch-size
    assert (out / "b.h5").is_file() and (out / "b_tiles.png").is_file()  # the slide after it was tiled
    assert not [p.name for p in out.iterdir() if p.name.startswith(("a", ".a"))]  # nothing of the failed one


def test_embed_out_of_memory_mid_slide_leaves_nothing_and_the_batch_goes_on(two_slides, tmp_path, monkeypatch):
    import weakstil.embed as embed

    real = embed.embed_batches
    calls = []

    def runs_out_after_a_batch(encoder, batches, sink, **kwargs):  # the first slide: one batch written, then none
        calls.append(1)
        if len(calls) > 1:
            return real(encoder, batches, sink, **kwargs)

        def sink_then_out(start, feats):
            sink(start, feats)
            raise MemoryError()
        return real(encoder, batches, sink_then_out, **kwargs)

    monkeypatch.setattr(embed, "embed_batches", runs_out_after_a_batch)
    out = tmp_path / "features"
    r = run_cli("embed", *two_slides, "--out", out, "--encoder", "small-cnn", "--weights", "random", "--workers", "0",
                "--threads", "1", "--batch-size", "4", "--no-tile-stats")
    assert r.returncode == 1, r.stderr
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and str(two_slides[0]) in lines[0] and "out of memory" in lines[0], r.stderr
    assert "Fix: lower --batch-size" in lines[0]
    assert (out / "b.h5").is_file()  # embedded after it
    assert not [p.name for p in out.iterdir() if p.name.startswith(("a", ".a"))]  # no partial cache, no temp


def test_a_worker_death_names_the_slide_it_failed_on(capsys):
    """A decode worker killed by the out-of-memory killer (hunt 36f's words) named no slide in a batch."""
    from weakstil.cli.errors import Failures
    from weakstil.decode.workers import DecodeWorkerError

    failures = Failures()
    with failures.each("slides/big.svs"):  # DecodePool's words
        raise DecodeWorkerError("1 decode worker(s) died (exit code -9: SIGKILL, e.g. the out-of-memory killer)",
                                fix="check memory")
    with failures.each("slides/other.svs"):  # a message naming it already is not named twice
        raise DecodeWorkerError("slides/other.svs could not be read")
    with pytest.raises(RuntimeError):  # another RuntimeError stays a bug
        with failures.each("slides/c.svs"):
            raise RuntimeError("shape mismatch")
    assert failures.count == 2
    lines = _error_lines(capsys.readouterr().err)
    assert lines[0].startswith("error: slides/big.svs: 1 decode worker(s) died (exit code -9"), lines
    assert lines[1] == "error: slides/other.svs could not be read.", lines


def test_slide_mpp_over_non_square_pixels_names_both_axes(tmp_path, caplog):
    import numpy as np
    import tifffile

    from weakstil.slide import Slide

    path = tmp_path / "aniso.tif"  # 0.25 µm/px along x, 0.5 along y
    tifffile.imwrite(path, np.full((512, 1024, 3), 200, np.uint8), tile=(256, 256), photometric="rgb",
                     resolution=(1e4 / 0.25, 1e4 / 0.5), resolutionunit="CENTIMETER")
    for given in (0.5, 0.25):  # 0.25 said nothing: y was read at half its recorded size
        caplog.clear()
        with caplog.at_level(logging.WARNING), Slide.open(path, slide_mpp=given) as s:
            assert s.mpp == given
        said = [r.getMessage() for r in caplog.records if "--slide-mpp" in r.getMessage()]
        assert len(said) == 1 and "0.25 µm/px along x and 0.5 along y" in said[0], said


@pytest.mark.parametrize("cell", ["nan", "NaN", "None"])
def test_a_nan_mpp_cell_is_refused_not_read_as_empty(two_slides, tmp_path, cell):
    listing = tmp_path / "list.csv"
    listing.write_text(f"path,mpp\n{two_slides[0]},\n{two_slides[1]},{cell}\n", encoding="utf-8")
    r = run_cli("info", "--slides", listing)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = _error_lines(r.stderr)
    assert len(lines) == 1 and str(listing) in lines[0] and "line 3 " in lines[0] and repr(cell) in lines[0], lines
    assert "leave the cell empty" in lines[0]
    # an empty cell, and a row shorter than the header (csv reads None, pandas NaN): the file's own metadata
    listing.write_text(f"path,mpp\n{two_slides[0]},\n{two_slides[1]}\n", encoding="utf-8")
    assert run_cli("info", "--slides", listing).returncode == 0
    listing.write_text(f"slide_id,path,mpp\nA,{two_slides[0]}\nB,{two_slides[1]},\n", encoding="utf-8")
    assert run_cli("info", "--slides", listing).returncode == 0
