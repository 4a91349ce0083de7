"""Hunt 12, area a: ``weakstil score`` as a lab runs it (batch fault matrix). Findings in
``../scratch/hunt12/a_findings.md``."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT


def _tmpfs(tmp_path, size: str):
    mount = tmp_path / f"disk{size}"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs (not root)")
    yield mount
    subprocess.run(["umount", str(mount)], capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    """A 256 KB file system (tmpfs; needs root)."""
    yield from _tmpfs(tmp_path, "256k")


@pytest.fixture
def disk_2m(tmp_path):
    """A 2 MB file system (tmpfs; needs root): room for a few 1 mm slides' score outputs."""
    yield from _tmpfs(tmp_path, "2m")


# --- A1: a full disk while HDF5 writes a file -------------------------------------------------------------
_FILL_AND_WRITE = textwrap.dedent("""
    import os, sys
    import h5py, numpy as np
    from weakstil.errors import OutputError
    from weakstil.files.h5 import open_write

    disk = sys.argv[1]
    for leave in range(0, 40961, 2048):
        st = os.statvfs(disk)
        with open(os.path.join(disk, "filler"), "wb") as fh:
            fh.write(b"\\0" * max(0, st.f_bavail * st.f_frsize - leave))
        target = os.path.join(disk, "x.h5")
        try:
            with open_write(target) as f:
                f.create_dataset("features", data=np.random.default_rng(0).random((60, 128), dtype=np.float32),
                                 compression="gzip", chunks=(16, 128))
                f.create_dataset("coords", data=np.arange(120, dtype=np.int64).reshape(-1, 2))
                for i in range(30):
                    f.attrs[f"a{i}"] = "x" * 300
            with h5py.File(target, "r") as f:  # written: whole
                assert f["features"].shape == (60, 128) and len(f.attrs) == 30
            print(leave, "written")
        except OutputError as exc:
            assert "No space left on device" in str(exc), exc
            assert sorted(os.listdir(disk)) == ["filler"], os.listdir(disk)  # no temporary file left
            print(leave, "OutputError")
        finally:
            os.remove(os.path.join(disk, "filler"))
            if os.path.exists(target):
                os.remove(target)
""")


def test_a_full_disk_during_an_hdf5_write_is_one_output_error_never_a_crash(small_disk):
    """HDF5 wrote through a buffered file: a write the buffer had kept back failed on the next
    ``seek`` (outside the guard: 'Exception ignored in ObjectID.__dealloc__', then a segfault, exit
    139, at 8, 16 and 24 KB left) or when the file was closed (a bare OSError, not the OutputError
    the batch stops on)."""
    proc = subprocess.run([sys.executable, "-c", _FILL_AND_WRITE, str(small_disk)], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, (proc.returncode, proc.stdout[-2000:], proc.stderr[-3000:])
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    outcomes = [line.split()[1] for line in proc.stdout.splitlines()]
    assert len(outcomes) == 21 and "OutputError" in outcomes


# --- A2: a slide whose stain cannot be estimated ----------------------------------------------------------
def _pink_slide(path, size=1000, seed=0):
    """Tissue with no haematoxylin (pale uniform pink, pixel noise): Macenko finds no stains."""
    from weakstil.synth.pyramid import strip_buffer, write_pyramid

    rng = np.random.default_rng(seed)

    def strips():
        for y0 in range(0, size, 256):
            rows = min(256, size - y0)
            buf = strip_buffer(size, rows)
            noise = rng.integers(-15, 15, (rows, size, 1))
            buf[:rows, :size] = np.clip(np.array([225, 150, 190]) + noise, 0, 255)
            yield y0, rows, buf

    write_pyramid(path, size, size, strips(), mpp=0.5)
    return path


def test_a_slide_whose_stain_cannot_be_estimated_is_not_inside_the_training_stain_range(cmu, tmp_path):
    """The stain check compared only the mean optical density when the Macenko estimate failed
    (``stain_source`` reference): a slide of pink tissue without haematoxylin scored 0.9 % with no
    flag (its od ratio, 1.0, under the quick demo model's 1.28)."""
    from weakstil.qc.flags import stain_outside, stain_reference
    from weakstil.qc.image import slide_image_stats
    from weakstil.slide import Slide

    def stats(path):
        with Slide.open(path) as slide:
            return slide_image_stats(slide, np.array([[0, 0], [224, 224]]), None, 224, 0.5)

    real, pink = stats(cmu), stats(_pink_slide(tmp_path / "pink.tiff"))
    assert real.stain_source == "macenko" and pink.stain_source == "reference" and pink.tissue_fraction > 0.5
    reference = stain_reference([real])
    assert stain_outside(real, reference) == []
    assert any(r.startswith("no H&E stain measurable") for r in stain_outside(pink, reference))


# --- A4, A5, A7: which files a slide pattern lists ------------------------------------------------------
def test_a_quoted_pattern_expands_home_and_double_star_at_any_depth_as_a_shell_would(tmp_path, monkeypatch):
    """``'~/slides/*.svs'`` (quoted, as the README asks of globs) matched nothing, and ``**`` matched
    exactly one folder level: ``nest/**/*.tiff`` scored 1 of 3 slides, exit 0."""
    from weakstil.cli.options import expand_slides
    from weakstil.pipeline_settings_check import expand_pattern

    for rel in ("nest/n0.tiff", "nest/a/n1.tiff", "nest/a/b/n2.tiff"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    every = ["nest/a/b/n2.tiff", "nest/a/n1.tiff", "nest/n0.tiff"]
    assert [str(p) for p in expand_slides(["nest/**/*.tiff"])] == every
    assert [str(p) for p in expand_slides(["~/nest/**/*.tiff"])] == [str(tmp_path / p) for p in every]
    assert [str(p) for p in expand_slides(["~/nest/n0.tiff"])] == [str(tmp_path / "nest/n0.tiff")]
    # the workflow's preflight lists the same files as the command
    assert expand_pattern("nest/**/*.tiff") == every
    assert expand_pattern("~/nest/*.tiff") == [str(tmp_path / "nest/n0.tiff")]
    # a file whose name starts with ~ is taken as written
    (tmp_path / "~odd.tiff").write_bytes(b"")
    assert [str(p) for p in expand_slides(["~odd.tiff"])] == ["~odd.tiff"]


def test_a_quoted_out_expands_home_as_a_quoted_slide_pattern_does(tmp_path, monkeypatch, cmu):
    """Hunt 37c: ``--out '~/tiles'`` (quoted, a script's ``OUT='~/tiles'``) made a folder named ``~`` in the
    current folder and wrote there, exit 0, while ``'~/slides/*.svs'`` reads the home folder: the tiles were
    not in ~/tiles. Now both are the home folder's; an existing folder named ``~...`` is taken as written."""
    from conftest import run_cli

    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert run_cli("tile", cmu, "--out", "~/tiles").returncode == 0
    assert (tmp_path / "home" / "tiles" / f"{cmu.stem}.h5").is_file() and not (tmp_path / "~").exists()
    from weakstil.cli.options import out_dir

    (tmp_path / "~odd").mkdir()
    assert out_dir(Path("~odd")) == Path("~odd") and out_dir(Path("~/x")) == tmp_path / "home" / "x"


def test_score_into_a_subfolder_of_the_slides_does_not_list_its_own_folder(tmp_path, monkeypatch):
    """``score 'slides/*' --out slides/scores`` run again listed ``slides/scores`` itself (an
    ``error`` row 'is a directory', exit 1 on every rerun); ``'slides/**/*'`` its feature caches."""
    from weakstil.cli.options import expand_slides
    from weakstil.cli.score import _not_our_outputs

    monkeypatch.chdir(tmp_path)
    slides, out = Path("slides"), Path("slides/scores")
    (out / "features").mkdir(parents=True)
    (slides / "S1.svs").write_bytes(b"")
    (slides / "S2.tiff").write_bytes(b"")
    for name in ("results.csv", "S1.h5", "S1.geojson", "S1_heatmap.png", "features/S1.h5"):
        (out / name).write_bytes(b"")
    for pattern in ("slides/*", "slides/**/*"):
        kept = _not_our_outputs(expand_slides([pattern]), out, out / "features")
        assert sorted(map(str, kept)) == ["slides/S1.svs", "slides/S2.tiff"], pattern


def test_tile_and_embed_into_the_slides_folder_do_not_list_their_own_outputs_next_time(tmp_path, monkeypatch, cmu):
    """Hunt 37c: ``tile 'slides/**/*' --out slides/tiles`` (or ``'slides/*' --out slides``) run again listed its own
    ``<id>.h5`` and ``<id>_tiles.png`` as slides: an error line each, exit 1 on every rerun (``score`` left out its
    own outputs since hunt 12; ``tile`` and ``embed`` did not)."""
    import shutil

    from conftest import run_cli
    from weakstil.cli.options import expand_slides

    monkeypatch.chdir(tmp_path)
    (tmp_path / "slides").mkdir()
    shutil.copyfile(cmu, tmp_path / "slides" / "S1.svs")
    for _ in range(2):
        proc = run_cli("tile", "slides/**/*", "--out", "slides/tiles")
        assert proc.returncode == 0 and "error:" not in proc.stderr, proc.stderr
    assert (tmp_path / "slides" / "tiles" / "S1_tiles.png").is_file()
    (tmp_path / "slides" / "S1.h5").write_bytes(b"")  # embed --out slides: its cache beside the slide
    (tmp_path / "slides" / ".weakstil-output.json").write_bytes(b"")
    from weakstil.cli.batch import without_own_outputs

    kept = without_own_outputs(expand_slides(["slides/*"]), Path("slides"), (".h5",), "embed")
    assert list(map(str, kept)) == ["slides/S1.svs"]


# --- A6: a feature cache holding NaN --------------------------------------------------------------------
def test_a_feature_cache_with_nan_is_named_by_its_file_with_a_fix_that_works(tmp_path):
    """The error named the slide id only and asked to 're-run weakstil embed' (score reuses its own
    cache on every rerun, --overwrite too: the row stayed an error until the user found the file)."""
    from weakstil.errors import WeakSTILError
    from weakstil.files import FeaturesFile
    from weakstil.mil.bank import FeatureBank

    rng = np.random.default_rng(0)
    paths = []
    for sid in ("S1", "S2", "S3"):
        feats = rng.normal(size=(6, 8)).astype(np.float32)
        if sid != "S2":
            feats[2, 3] = np.nan
        cache = FeaturesFile(coords=np.arange(12).reshape(6, 2) * 224, tissue_fraction=np.ones(6, np.float32),
                             tissue_mask=np.ones((8, 8), np.uint8), tissue_mask_mpp=8.0)
        with cache.streaming(tmp_path / f"{sid}.h5", 6, 8) as put:
            put(0, feats)
            cache.attrs.update({"slide_id": sid, "n_tiles": 6, "tile_size_level0": 224.0})
        paths.append(tmp_path / f"{sid}.h5")
    with pytest.raises(WeakSTILError) as one:
        FeatureBank.load(paths[:1], ["S1"])
    assert one.value.one_line().startswith(f"{paths[0]}: features contain NaN") and "delete" in one.value.fix
    with pytest.raises(WeakSTILError) as two:
        FeatureBank.load(paths, ["S1", "S2", "S3"])
    assert str(paths[0]) in two.value.message and str(paths[2]) in two.value.message
    assert str(paths[1]) not in two.value.message


# --- A8: a failed re-scoring keeps the earlier finished score ----------------------------------------------
@pytest.fixture(scope="module")
def scored_world(tmp_path_factory, synth_cohort):
    """Two synthetic slides (the workflow modules' size), their features (seeded random small CNN) and a tiny model."""
    from conftest import WORKFLOW_SLIDE_MM, run_cli

    root = tmp_path_factory.mktemp("a8")
    synth_cohort(root / "cohort", 2, seed=0, size_mm=WORKFLOW_SLIDE_MM, groups=2)
    run_cli("embed", root / "cohort" / "slides" / "*.tiff", "--out", root / "feats", "--encoder", "small-cnn",
            "--weights", "random", "--workers", "1", "--threads", "1", check=True)
    run_cli("train", root / "cohort" / "labels.csv", "--features", root / "feats", "--out", root / "model",
            "--folds", "1", "--epochs", "2", "--hidden", "8", "--members", "1", check=True)
    return root


def test_a_failed_rescoring_keeps_the_earlier_score_its_files_and_its_row(scored_world, disk_2m):
    """A slide scored again (another --threshold) on a full disk lost its finished files and its
    ok row (an error row in its place): the all-or-none clean-up removed the earlier run's files."""
    import pandas as pd

    from conftest import run_cli

    slides = sorted((scored_world / "cohort" / "slides").glob("*.tiff"))
    out = disk_2m / "scores"
    common = ("--model", scored_world / "model", "--features", scored_world / "feats", "--weights", "random",
              "--threads", "1")
    run_cli("score", slides[0], "--out", out, *common, check=True)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "results.csv"}
    st = os.statvfs(disk_2m)
    (disk_2m / "filler").write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 8192))
    proc = run_cli("score", *slides, "--out", out, "--threshold", "20", *common)
    assert proc.returncode == 1 and "No space left on device" in proc.stderr
    assert "1 more slide(s) not scored" in proc.stderr  # the second slide, not tried (it said 2)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file() and p.name != "results.csv"}
    assert after == before  # the earlier heatmap, score and GeoJSON, nothing aside left
    table = pd.read_csv(out / "results.csv")
    first = table[table.slide_id == slides[0].stem]
    assert list(first.status) == ["ok", "error"] and list(first.threshold) == [30, 20]
    (disk_2m / "filler").unlink()
    run_cli("score", *slides, "--out", out, "--threshold", "20", *common, check=True)  # a rerun finishes


def test_replacing_together_puts_the_earlier_set_back_when_the_rewrite_fails(tmp_path):
    from weakstil.atomic import replacing_together

    files = [tmp_path / n for n in ("S.h5", "S_heatmap.png", "S.geojson")]
    for f in files:
        f.write_text("old " + f.name)
    for failure in (OSError(28, "No space left on device"), KeyboardInterrupt()):
        with pytest.raises(type(failure)), replacing_together(files):
            files[1].write_text("new")  # the heatmap is rewritten, then the score file fails
            raise failure
        assert [f.read_text() for f in files] == ["old " + f.name for f in files]
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)
    with replacing_together(files):
        for f in files:
            f.write_text("new")
    assert [f.read_text() for f in files] == ["new"] * 3 and len(list(tmp_path.iterdir())) == 3


# --- A11: WEAKSTIL_LOCK_TIMEOUT checked before the first slide -----------------------------------------------
@pytest.mark.parametrize("value", ["soon", "-1", "nan"])
def test_a_bad_lock_timeout_is_a_usage_line_before_any_slide(cmu, tmp_path, monkeypatch, value):
    """It was read only when a run had to wait for another run's lock: a typo in a cluster job's
    environment ended the batch (exit 2) hours in, at the first wait; '-1' and 'nan' waited for ever."""
    from conftest import run_cli

    monkeypatch.setenv("WEAKSTIL_LOCK_TIMEOUT", value)
    proc = run_cli("tile", cmu, "--out", tmp_path / "tiles")
    assert proc.returncode == 2 and f"WEAKSTIL_LOCK_TIMEOUT={value!r}" in proc.stderr, proc.stderr
    assert not list(tmp_path.rglob("*.h5"))  # before any slide
    monkeypatch.setenv("WEAKSTIL_LOCK_TIMEOUT", "0")  # 0: as long as it takes (documented)
    assert run_cli("tile", cmu, "--out", tmp_path / "tiles").returncode == 0
