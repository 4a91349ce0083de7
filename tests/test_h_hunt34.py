"""Workflow config files a lab edits by hand, and the `slurm:` wall times (hunt 34h, an outside tester's fault matrix).

- A key set twice in a config file (``folds: 2`` on line 1, ``folds: 3`` on line 3; two ``mem_mb:`` under
  ``slurm:``; two ``slurm:`` sections): YAML keeps the last one without a word. ``weakstil preflight`` and the
  Snakefile ran with it (exit 0 where the last value was valid, else an error about the kept value only).
  Now one ``error:`` line names the file, the key and both lines, before any job.
- A tab in the indentation: ``weakstil preflight`` said "not valid YAML (while scanning for the next token)"
  with neither line nor column; Snakemake named its Snakefile's ``configfile:`` line for pipelines/config.yaml.
  Now: ``not valid YAML at line 2, column 1: found character '\\t' ... Fix: indent with spaces, not tabs``.
- ``report_title:`` left empty gave a report headed "None" (``--title None``); now the default title.
- ``slurm.runtime: 0`` (any of the three wall times) passed: the preflight listed "0 min", and the SLURM plugin
  passes no ``--time`` for 0 (the partition's default, and a warning per job). Now refused, as -5 was.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import snakemake_fork
from conftest import ROOT, no_slurm_controller_env, run_cli
from weakstil.pipeline_preflight import load_workflow_config, slurm_problems
from weakstil.errors import WeakSTILError

DEFAULTS = ROOT / "pipelines" / "config.yaml"


@pytest.mark.parametrize(("text", "key", "lines"), [
    ("folds: 2\nencoder: small-cnn\nfolds: 3\n", "folds", (1, 3)),
    ("slurm:\n  mem_mb: 8000\n  runtime: 30\n  mem_mb: 9000\n", "mem_mb", (2, 4)),
    ("slurm:\n  mem_mb: 8000\nepochs: 3\nslurm:\n  runtime: 30\n", "slurm", (1, 4)),
])
def test_a_key_set_twice_is_named_with_both_lines(tmp_path: Path, text: str, key: str, lines: tuple[int, int]):
    path = tmp_path / "mine.yaml"
    path.write_text(text)
    # the preflight's reader: one line naming the file, the key and both lines, not a run with the last value
    with pytest.raises(WeakSTILError) as err:
        load_workflow_config([DEFAULTS, path], [])
    line = err.value.one_line()
    assert f"'{key}' is set twice, on lines {lines[0]} and {lines[1]}" in line and str(path) in line, line

def test_two_sections_of_one_name_are_told_to_be_merged(tmp_path: Path):
    """Hunt 34j: two ``slurm:`` sections were told "keep one slurm: line and delete the other" (losing one
    section's settings); two top-level sections are to be merged, a repeated setting still kept once."""
    from weakstil.pipeline_yaml import ConfigFileError, read_config_yaml

    path = tmp_path / "mine.yaml"
    for text, fix in (("slurm:\n  mem_mb: 8000\nepochs: 3\nslurm:\n  runtime: 30\n",
                       "merge the two slurm: sections into one"),
                      ("folds: 2\nfolds: 3\n", "keep one folds: line"),
                      ("slurm: {a: {x: 1}, a: {y: 2}}\n", "keep one a: line")):  # not top level: as before
        path.write_text(text)
        with pytest.raises(ConfigFileError) as err:
            read_config_yaml(path)
        assert err.value.fix.startswith(fix), (text, err.value.fix)


def test_the_shipped_configs_have_no_repeated_key():
    from weakstil.pipeline_yaml import read_config_yaml

    for path in [DEFAULTS, *sorted((ROOT / "pipelines" / "slurm").glob("*.yaml"))]:
        assert isinstance(read_config_yaml(path), dict), path


def test_a_tab_is_named_with_its_line_and_the_fix(tmp_path: Path):
    path = tmp_path / "mine.yaml"
    path.write_text("folds: 2\n\tthreads: 1\n")
    bad = run_cli("preflight", path)
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
    assert "mine.yaml: not valid YAML at line 2, column 1" in bad.stderr, bad.stderr
    assert "Fix: indent with spaces, not tabs" in bad.stderr, bad.stderr


def test_the_snakefile_refuses_a_key_set_twice_before_any_job(tmp_path: Path):
    """A --configfile whose ``folds`` is valid twice over (2, then 3): Snakemake kept 3 silently."""
    (tmp_path / "mine.yaml").write_text("folds: 2\nthreads: 1\nfolds: 3\n")
    proc = snakemake_fork.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "pipelines" / "Snakefile"), "--cores",
                           "1", "--dry-run", "--configfile", "mine.yaml"], cwd=tmp_path,
                          env=no_slurm_controller_env(tmp_path))
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 1 and len(errors) == 1, proc.stderr[-2000:]
    assert "mine.yaml: 'folds' is set twice, on lines 1 and 3" in errors[0], errors
    assert "Traceback" not in proc.stderr and not (tmp_path / "results").exists()


@pytest.mark.parametrize("key", ["runtime", "embed_runtime", "train_runtime"])
def test_a_wall_time_of_zero_minutes_is_refused(key: str):
    problems = [p.one_line() for p in slurm_problems({"slurm": {key: 0}})]
    assert len(problems) == 1 and f"slurm.{key} is 0, not a whole number of minutes, 1 or more" in problems[0], problems
    assert slurm_problems({"slurm": {"gpus_per_embed": 0}}) == []  # 0 GPUs: embed on CPUs, a valid setting
    assert slurm_problems({"slurm": {key: 1}}) == []



def test_an_empty_report_title_is_the_default_title_not_none(tmp_path: Path):
    """``report_title:`` left empty (YAML null): the report job ran ``weakstil report --title None``, a
    report headed "None"; now the default title."""
    from test_pipeline_preflight import cohort_csv

    csv = cohort_csv(tmp_path)
    (tmp_path / "mine.yaml").write_text(f"cohort: {csv}\nfolds: 3\nthreads: 1\nreport_title:\n")
    proc = snakemake_fork.run([sys.executable, "-m", "snakemake", "-s", str(ROOT / "pipelines" / "Snakefile"), "--cores",
                           "1", "--dry-run", "--printshellcmds", "--configfile", "mine.yaml"], cwd=tmp_path,
                          env=no_slurm_controller_env(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "--title 'WeakSTIL cohort report'" in proc.stdout and "--title None" not in proc.stdout, proc.stdout[-3000:]


def test_a_null_partition_is_refused_before_any_job():
    """Hunt 34j: ``slurm.partition: null`` was listed by the preflight as "partition None", and the cluster check
    then refused a partition named 'None'; the jobs would have asked SLURM for it by that name. It is refused as
    empty, naming the key and how to list the partitions; the GPU partition only where embed jobs ask for GPUs."""
    from weakstil.pipeline_preflight import slurm_problems

    said = [str(p) for p in slurm_problems({"slurm": {"partition": None}})]
    assert len(said) == 1 and "slurm.partition is empty" in said[0] and "sinfo -s" in said[0], said
    assert not slurm_problems({"slurm": {"gpu_partition": None, "gpus_per_embed": 0}})
    said = [str(p) for p in slurm_problems({"slurm": {"gpu_partition": "", "gpus_per_embed": 1}})]
    assert len(said) == 1 and "slurm.gpu_partition is empty" in said[0], said

