"""A cohort CSV's `mpp` column (a slide's own scan resolution) in the Snakemake workflow and `pretrain`
(hunt 33g).

`weakstil tile/embed/score/info --slides cohort.csv` read each slide at its row's µm/px (hunt 32d), but:
- the workflow (pipelines/Snakefile) ignored the column: a slide whose file states no µm/px was refused
  by the preflight ("1 cohort slide cannot be tiled: bare.tiff (states no microns-per-pixel and slide_mpp
  is null)", exit 1) though its row gave 0.5, and one whose file states 0.5 for a 0.25 scan was tiled,
  embedded and scored at 0.5 (a tile covering 4 times the area: another sTIL%);
- `weakstil pretrain --slides list.csv` took `--slide-mpp` only: the slide stating none failed
  ("has no microns-per-pixel in its metadata", exit 1) and the encoder learnt from the others alone.
Now each slide's tile, embed and score jobs get its row's µm/px as --slide-mpp (a row equal to what the file
states adds nothing: the jobs' commands, so Snakemake's records, stay as they were, nothing is redone),
pretrain reads each listed slide at it and records it (fixed on --resume), and a bad cell stops the
workflow in one line naming the CSV and its line.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

import snakemake_fork
from conftest import ROOT, no_slurm_controller_env, run_cli, write_tiff_slide

SNAKEFILE = ROOT / "pipelines" / "Snakefile"
LOCAL = ROOT / "pipelines" / "profiles" / "local"


def disc(seed: int) -> np.ndarray:
    """A pink disc of tissue with dark nuclei on white glass, 1024 px."""
    rng = np.random.default_rng(seed)
    rgb = np.full((1024, 1024, 3), 240, np.uint8)
    yy, xx = np.mgrid[:1024, :1024]
    inside = (yy - 512) ** 2 + (xx - 512) ** 2 < 450**2
    rgb[inside] = (205, 120, 180)
    rgb[inside & (rng.random(inside.shape) < 0.1)] = (80, 40, 120)
    return rgb


@pytest.fixture(scope="module")
def lab(tmp_path_factory) -> Path:
    """bare.tiff states no µm/px (a scanner export that drops it), s1 and s2 state 0.5; mpp.csv gives bare
    0.5, s1 0.25 (its file is wrong) and s2 0.5 (what its file states); plain.csv has no mpp column."""
    import tifffile

    root = tmp_path_factory.mktemp("hunt33g")
    slides = root / "cohort" / "slides"
    slides.mkdir(parents=True)
    tifffile.imwrite(slides / "bare.tiff", disc(0), tile=(256, 256), photometric="rgb", compression="jpeg")
    for i in (1, 2):
        write_tiff_slide(slides / f"s{i}.tiff", disc(i), mpp=0.5, levels=2)
    rows = "bare,slides/bare.tiff,10,{}\ns1,slides/s1.tiff,40,{}\ns2,slides/s2.tiff,70,{}\n"
    (root / "cohort" / "mpp.csv").write_text("slide_id,path,stil,mpp\n" + rows.format("0.5", "0.25", "0.5"))
    (root / "cohort" / "plain.csv").write_text("slide_id,path,stil\n" + rows.replace(",{}", ""))
    (root / "cohort" / "bad.csv").write_text("slide_id,path,stil,mpp\n" + rows.format("0.5", "0", "forty"))
    return root


def dry_run(root: Path, *config: str) -> tuple[int, str]:
    cmd = [sys.executable, "-m", "snakemake", "-s", str(SNAKEFILE), "--profile", str(LOCAL), "--directory",
           str(root), "--dry-run", "--config", "folds=2", "threads=1",
           "score_slides=[cohort/slides/bare.tiff, cohort/slides/s1.tiff, cohort/slides/s2.tiff]", *config]
    proc = snakemake_fork.run(cmd, env=no_slurm_controller_env(root.parent))
    return proc.returncode, proc.stdout + proc.stderr


def shells(log: str, rule: str) -> list[str]:
    """The shell commands of the `rule` jobs in a dry run's log."""
    return [next(ln for ln in block.splitlines() if ln.startswith("Shell command:"))
            for block in re.split(rf"\nrule {rule}:", log)[1:]]


def commands(log: str, rule: str) -> dict[str, str]:
    """slide file name -> the shell command of its `rule` job in a dry run's log."""
    return {re.search(r"(\w+)\.tiff", cmd).group(1): cmd for cmd in shells(log, rule)}


def test_the_workflow_tiles_embeds_and_scores_each_slide_at_its_cohort_csv_mpp(lab: Path) -> None:
    rc, before = dry_run(lab, "cohort=cohort/plain.csv", "slide_mpp=0.5")  # the only way before: one for all
    assert rc == 0, before[-3000:]
    rc, log = dry_run(lab, "cohort=cohort/mpp.csv")  # slide_mpp null: the column alone
    assert rc == 0, log[-3000:]  # old code: "1 cohort slide cannot be tiled: .../bare.tiff (states no ...)"
    for rule in ("tile", "embed"):
        jobs, old = commands(log, rule), commands(before, rule)
        assert set(jobs) == {"bare", "s1", "s2"}, jobs
        assert "--slide-mpp 0.25" in jobs["s1"]  # old code: at its file's 0.5
        # bare at 0.5, s2 at its file's own: the commands (Snakemake's record of each job) as with slide_mpp,
        # so nothing is tiled or embedded again when a lab moves from slide_mpp to the column
        assert jobs["bare"] == old["bare"] and "--slide-mpp 0.5" in jobs["bare"]
        assert jobs["s2"] == old["s2"] and "--slide-mpp" not in jobs["s2"]
    calls = [c for c in shells(log, "score")[0].split(";") if " score " in c]
    # one call per resolution, each slide scored at the µm/px it was embedded at
    at = {name: re.search(r"--slide-mpp (\S+)", c).group(1) if "--slide-mpp" in c else None
          for c in calls for name in re.findall(r"(\w+)\.tiff", c)}
    assert len(calls) == 3 and at == {"bare": "0.5", "s1": "0.25", "s2": None}, calls
    assert "--slide-mpp" not in shells(log, "report")[0]  # mixed: each heatmap at its tiles' µm/px


def test_a_bad_mpp_cell_in_the_cohort_csv_is_one_line_naming_the_csv_and_its_line(lab: Path) -> None:
    """The workflow's preflight (the Snakefile runs it first; `weakstil preflight` here, in-process)."""
    csv = lab / "cohort" / "bad.csv"
    proc = run_cli("preflight", "--config", f"cohort={csv}", "--config", "folds=2", "--config", f"out={lab / 'out'}")
    errors = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr  # old code: s1 would be tiled at its file's 0.5
    # both bad cells at once (hunt 44c: the first alone was named, the second on the next run)
    assert "bad.csv" in errors[0] and ("the mpp of 2 lines is not a scan resolution in µm/px: line 3 (slides/s1.tiff) "
                                       "'0'; line 4 (slides/s2.tiff) 'forty'") in errors[0], errors
    from weakstil.cohort import read_cohort
    from weakstil.errors import UsageError
    from weakstil.slide_list import cohort_mpps

    word = csv.with_name("word.csv")  # one bad cell, a word
    word.write_text(csv.read_text().replace(",0\n", ",0.25\n"))
    with pytest.raises(UsageError, match=r"word.csv: the mpp of line 4 \(slides/s2.tiff\) is 'forty'"):
        cohort_mpps(word, read_cohort(word, check_files=False).table)


TINY = ["--steps", "1", "--batch-size", "4", "--tiles-per-slide", "1000", "--crop-px", "32", "--tile-size", "128",
        "--stain-norm", "none", "--threads", "1", "--workers", "0", "--device", "cpu"]


def test_pretrain_reads_each_listed_slide_at_its_mpp_and_records_it(lab: Path, tmp_path: Path,
                                                                    one_torch_thread) -> None:
    from weakstil.encoders import load_card

    out = tmp_path / "ssl"
    proc = run_cli("pretrain", "--slides", lab / "cohort" / "mpp.csv", "--out", out, *TINY)
    assert proc.returncode == 0, proc.stderr  # old code: exit 1, bare "has no microns-per-pixel"
    training = load_card(out).training
    assert training["slides"] == ["bare", "s1", "s2"]
    # every tissue tile (--tiles-per-slide 1000, 128 px at 0.5 µm/px): 32 of bare's and of s2's 1024 px, 16 of s1's,
    # whose 1024 px at 0.25 are 512 at 0.5 (at its file's 0.5: 32 too)
    assert training["n_tiles"] == 32 + 16 + 32
    assert training["listed_mpps"] == {"bare": 0.5, "s1": 0.25}  # s2's row is its file's own: read as before
    # a resume that reads the slides otherwise (the column dropped, --slide-mpp for all) is refused, first
    proc = run_cli("pretrain", "--slides", lab / "cohort" / "plain.csv", "--out", out, "--resume",
                   "--slide-mpp", "0.5", *TINY)
    assert proc.returncode != 0 and "listed_mpps {'bare': 0.5, 's1': 0.25} -> {}" in proc.stderr, proc.stderr


def test_an_edited_mpp_cell_without_snakemakes_records_is_refused_naming_the_slide(lab: Path) -> None:
    """Hunt 34c: with .snakemake/ gone (deleted, the project moved), Snakemake compares file times alone, and the
    cohort CSV is no input of the tile job: s1's mpp cell edited from none (its file's 0.5) to 0.25 planned
    `evaluate` and `report` only (old code: 0 of its tile/embed jobs), its tiles, features and the model made at
    0.5 kept. Now the run stops before any job, naming s1, both µm/px and the files to delete."""
    import json

    import yaml

    from weakstil.pipeline_reruns import stale_without_records
    from weakstil.tiles import tile_slide_to_dir

    out = lab / "stale"  # the last run's: settings.json, s1 tiled at its file's 0.5 (the CSV had no mpp then)
    tile_slide_to_dir(lab / "cohort" / "slides" / "s1.tiff", out / "tiles")
    config = yaml.safe_load((ROOT / "pipelines" / "config.yaml").read_text(encoding="utf-8"))
    config |= {"folds": 2, "threads": 1, "score_slides": [f"cohort/slides/{k}.tiff" for k in ("bare", "s1", "s2")]}
    (out / "settings.json").write_text(json.dumps(config))
    rc, log = dry_run(lab, "cohort=cohort/mpp.csv", "out=stale")
    errors = [ln for ln in log.splitlines() if ln.startswith("error:")]
    assert rc != 0 and len(errors) == 1, log[-3000:]  # old code: rc 0, no tile job for s1 (its 0.5 tiles kept)
    # hunt 34f: which of the two gave 0.25 (old code: "(the cohort CSV mpp cell or slide_mpp)")
    assert "slide s1: its tiles were made at 0.5 µm/px, it is now read at 0.25 µm/px (the mpp cell of the cohort " \
        "CSV " in errors[0] and "mpp.csv, line 3)" in errors[0], errors
    assert "Fix: delete stale/tiles/s1.h5 stale/settings.json" in errors[0], errors
    assert "bare" not in errors[0] and "s2" not in errors[0]  # not tiled; its file's own 0.5 (no --slide-mpp)
    from weakstil.pipeline_preflight import default_config_file, load_workflow_config, run_preflight

    with pytest.MonkeyPatch.context() as mp:  # `weakstil preflight` there says the same, as a warning (old: nothing)
        mp.chdir(lab)
        checked = load_workflow_config([default_config_file()], ["cohort=cohort/mpp.csv", "out=stale", "folds=2",
                                                                  "threads=1", f"score_slides={config['score_slides']}"])
        said = run_preflight(checked, slurm=False)
        assert "slide s1: its tiles were made at 0.5 µm/px, it is now read at 0.25 µm/px (the mpp cell of the " \
            "cohort CSV cohort/mpp.csv, line 3)" in said, said

    # the decision itself: a slide tiled at a listed 0.5 whose cell is now empty (its file states none: no
    # µm/px), or is read at the same µm/px again
    tile_slide_to_dir(lab / "cohort" / "slides" / "bare.tiff", out / "tiles", slide_mpp=0.5)
    slides = {k: str(lab / "cohort" / "slides" / f"{k}.tiff") for k in ("bare", "s1")}
    same = {"bare": 0.5, "s1": 0.25}
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(lab)
        line = stale_without_records("stale", config, slides, lambda path: None, same.get)
        assert line is not None and "bare" not in line and "slide s1" in line, line
        # bare's cell emptied (its file states none), s1 read at its file's 0.5 again
        line = stale_without_records("stale", config, slides, lambda path: None, {"s1": None}.get)
        assert line is not None and "slide bare: its tiles were made at 0.5 µm/px, it is now read at no µm/px" \
            in line and "s1" not in line, line
        from weakstil.cohort import read_cohort
        from weakstil.pipeline_reruns import mpp_sources

        # bare tiled at its cell's 0.5, the cell emptied, slide_mpp 0.4 (as in the last run) now gives it its µm/px
        (out / "settings.json").write_text(json.dumps(config | {"slide_mpp": 0.4}))
        plain = read_cohort(Path("cohort/plain.csv"), check_files=False).table
        line = stale_without_records("stale", config | {"slide_mpp": 0.4}, slides, lambda path: None, {"bare": 0.4}.get,
                                     mpp_sources("cohort/plain.csv", plain, ["bare", "s1", "s2"]))
        assert line is not None and "slide bare: its tiles were made at 0.5 µm/px, it is now read at 0.4 µm/px (the " \
            "config's slide_mpp)" in line, line
