"""`weakstil tile` as a user runs it: real slides, and every bad input the issue lists."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from conftest import run_cli, shared_file
from weakstil.slide import Slide


def assert_one_error_line(proc, name: str) -> None:
    assert proc.returncode != 0
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, proc.stderr
    assert name in errors[0]
    assert "Fix:" in errors[0]


def test_tile_cmu_writes_h5_and_overlay_on_tissue_only(cmu, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("tile", cmu, "--out", out)
    assert proc.returncode == 0, proc.stderr
    h5 = out / "CMU-1-Small-Region.h5"
    assert h5.exists() and (out / "CMU-1-Small-Region_tiles.png").exists()
    with h5py.File(h5) as f:
        coords = f["coords"][:]
        for key, value in {"mpp": 0.5, "tile_px": 224, "tile_um": 112.0, "slide_mpp": 0.499,
                           "slide_width": 2220, "slide_height": 2967, "tissue_threshold": 0.5}.items():
            assert f.attrs[key] == pytest.approx(value), key
        assert f.attrs["tile_size_level0"] == pytest.approx(224 * 0.5 / 0.499)
        assert f.attrs["weakstil_version"]
        assert f.attrs["complete"] == 1
        assert (f["tissue_fraction"][:] >= 0.5).all()
    assert 20 < len(coords) < 130  # CMU has ~ 9x13 grid positions, tissue in the middle
    with Slide.open(cmu) as s:
        tiles = [s.read_region(x, y, 224, 0.5) for x, y in coords]
        W, H = s.dimensions
        corners = [s.read_region(x, y, 224, 0.5) for x, y in [(0, 0), (W - 230, 0), (0, H - 230)]]
    # every kept tile shows tissue (pixels darker than glass), the empty corners do not
    tissue_share = [((t.mean(axis=2) < 215).mean()) for t in tiles]
    assert min(tissue_share) > 0.15 and float(np.median(tissue_share)) > 0.6
    assert max((c.mean(axis=2) < 215).mean() for c in corners) < 0.05
    kept = {tuple(c) for c in coords}
    assert (0, 0) not in kept


def test_tile_missing_path(tmp_path):
    out = tmp_path / "out"
    proc = run_cli("tile", tmp_path / "nope.svs", "--out", out)
    assert_one_error_line(proc, "nope.svs")
    assert "not found" in proc.stderr
    assert not out.exists()


def test_tile_text_file_named_svs(tmp_path):
    bad = tmp_path / "notes.svs"
    bad.write_text("this is not a slide\n")
    out = tmp_path / "out"
    assert_one_error_line(run_cli("tile", bad, "--out", out), "notes.svs")
    assert not out.exists()


def test_tile_truncated_slide(cmu, tmp_path):
    bad = tmp_path / "truncated.svs"
    data = cmu.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    proc = run_cli("tile", bad, "--out", out)
    assert_one_error_line(proc, "truncated.svs")
    assert "truncated" in proc.stderr
    assert not out.exists()


def test_tile_jp2k_without_mpp_refused_then_accepted(tmp_path):
    path = shared_file("slides/tcga-cr-7395-01a-01-ts1_jp2k.svs")
    out = tmp_path / "out"
    proc = run_cli("tile", path, "--out", out)
    assert_one_error_line(proc, path.name)
    assert "--slide-mpp" in proc.stderr
    assert not out.exists()
    proc = run_cli("tile", path, "--out", out, "--slide-mpp", "0.5")
    assert proc.returncode == 0, proc.stderr
    with h5py.File(out / f"{path.stem}.h5") as f:
        assert f.attrs["slide_mpp"] == 0.5 and f.attrs["slide_mpp_source"] == "override"
        assert len(f["coords"]) > 10


def test_tile_dicom_openslide_cannot_open(tmp_path):
    path = shared_file("slides/pathml_small_dicom_TCGA-XK-AAJU.dcm")
    out = tmp_path / "out"
    assert_one_error_line(run_cli("tile", path, "--out", out), path.name)
    assert not out.exists()


def test_tile_dicom_coarser_than_target(tmp_path):
    path = shared_file("slides/slidetool_test_dicom.dcm")
    out = tmp_path / "out"
    proc = run_cli("tile", path, "--out", out)
    assert_one_error_line(proc, path.name)
    assert "coarser" in proc.stderr
    assert not out.exists()
    # tiling at the scan's own resolution works
    ok = run_cli("tile", path, "--out", out, "--mpp", "2.0")
    assert ok.returncode == 0, ok.stderr


def test_tile_all_white_slide(white_slide, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("tile", white_slide, "--out", out)
    assert_one_error_line(proc, "blank.tiff")
    assert "no tissue" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_fluorescence_slide_warns(tmp_path):
    path = shared_file("slides/test3-TRITC_2_560_fluorescence.ndpi")
    proc = run_cli("tile", path, "--out", tmp_path / "out")
    assert "brightfield" in proc.stderr


def test_batch_goes_on_after_a_bad_slide(cmu, tmp_path):
    out = tmp_path / "out"
    proc = run_cli("tile", tmp_path / "missing.svs", cmu, "--out", out)
    assert proc.returncode == 1
    assert (out / "CMU-1-Small-Region.h5").exists()
    # h5 + png + the folder's marker (weakstil.outputdir), no temp files left
    assert sorted(p.name for p in out.iterdir()) == [".weakstil-output.json", "CMU-1-Small-Region.h5",
                                                     "CMU-1-Small-Region_tiles.png"]


def test_glob_expansion(cmu, tmp_path):
    proc = run_cli("tile", str(cmu.parent / "CMU-*.svs"), "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "o" / "CMU-1-Small-Region.h5").exists()
