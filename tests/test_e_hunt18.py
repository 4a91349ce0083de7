"""Hunt 18 (e): the cohort workflow as an outside researcher runs it locally."""

from __future__ import annotations

from pathlib import Path

import yaml

from conftest import run_cli
from test_pipeline_preflight import cohort_csv



def test_relative_paths_of_a_config_run_from_another_folder_name_where_they_were_read(tmp_path: Path,
                                                                                         monkeypatch) -> None:
    """A config beside its cohort (`cohort: cohort.csv`, `annotations: truth`) run from another folder:
    Snakemake reads relative paths from its working directory, and the error said only "cohort CSV not
    found. Fix: check the path" of a file that is there. It now names the directory the path was read
    from, and the folder to run from (or the absolute path to set)."""
    project = tmp_path / "project"
    project.mkdir()
    cohort_csv(project)
    (project / "truth").mkdir()
    (project / "truth" / "s0.geojson").write_text("{}")
    (project / "my.yaml").write_text(yaml.safe_dump({"cohort": "cohort.csv", "folds": 3, "annotations": "truth"}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    bad = run_cli("preflight", project / "my.yaml")
    assert bad.returncode == 1 and bad.stderr.count("\n") == 1, bad.stderr
    assert "cohort.csv: cohort CSV not found" in bad.stderr
    assert f"read from the directory Snakemake runs in, {elsewhere}" in bad.stderr
    assert f"run Snakemake from {project} or set cohort to {project / 'cohort.csv'}" in bad.stderr
    # the cohort given absolutely: the annotations folder is named the same way
    bad = run_cli("preflight", project / "my.yaml", "--config", f"cohort={project / 'cohort.csv'}")
    assert bad.returncode == 1 and "truth: annotations folder not found" in bad.stderr, bad.stderr
    assert f"run Snakemake from {project} or set annotations to {project / 'truth'}" in bad.stderr
    # a path that exists nowhere gets the working directory only; one found there no note at all
    bad = run_cli("preflight", "--config", "cohort=nowhere.csv", "--config", "folds=3")
    assert f"runs in, {elsewhere})" in bad.stderr and "beside" not in bad.stderr, bad.stderr
    monkeypatch.chdir(project)
    assert run_cli("preflight", project / "my.yaml").returncode == 0
