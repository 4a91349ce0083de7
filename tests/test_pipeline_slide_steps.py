"""The workflow's per-slide steps of a score slide (weakstil/pipeline_slide_steps.py): a slide that
fails on its own account (exit 1) is recorded, anything else fails the job. The workflow end to end
with a damaged score slide: tests/test_pipeline.py."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from weakstil.pipeline_slide_steps import failed_slides, main, run_slide_steps


def test_a_slide_failure_is_recorded_and_stops_its_later_steps(tmp_path):
    marker = tmp_path / "ran_second"
    steps = [("tile", "echo reading; echo 'error: S1.svs: cannot read pixels. Fix: export it again.' >&2; exit 1"),
             ("embed", f"touch {marker}")]
    status = run_slide_steps(steps, tmp_path / "log" / "S1.log", tmp_path / "S1.json", "S1.svs")
    failed_at = status.pop("failed_at")  # each failure's own time: the next run retries it (fix hunt 14 F6)
    assert failed_at and status == {"slide": "S1.svs", "status": "error", "step": "tile",
                                    "error": "S1.svs: cannot read pixels. Fix: export it again."}
    assert json.loads((tmp_path / "S1.json").read_text()) == {**status, "failed_at": failed_at}
    assert not marker.exists()  # the embedding of a slide that could not be tiled never runs
    log = (tmp_path / "log" / "S1.log").read_text()
    assert "reading" in log and "error: S1.svs" in log  # the command's own output, stderr too
    assert failed_slides([tmp_path / "S1.json", tmp_path / "not_yet.json"]) == {
        "S1.svs": "tile: S1.svs: cannot read pixels. Fix: export it again."}

    ok = run_slide_steps([("tile", "true"), ("embed", f"touch {marker}")], tmp_path / "S2.log", tmp_path / "S2.json",
                         "S2.svs")
    assert ok["status"] == "ok" and marker.exists() and failed_slides([tmp_path / "S2.json"]) == {}


@pytest.mark.parametrize("code", [2, 137])
def test_a_usage_error_or_a_killed_step_fails_the_job_and_writes_no_status(tmp_path, code, capsys):
    status = tmp_path / "S1.json"
    with pytest.raises(subprocess.CalledProcessError):
        run_slide_steps([("embed", f"exit {code}")], tmp_path / "S1.log", status, "S1.svs")
    assert not status.exists()  # Snakemake reruns the job, as for any failed job
    assert main(["--status", str(status), "--log", str(tmp_path / "S1.log"), "--slide", "S1.svs",
                 "--step", f"embed=exit {code}"]) == code
    assert "its embed step exited" in capsys.readouterr().err and not status.exists()


def test_the_command_passes_an_earlier_failure_on_without_running(tmp_path):
    tiled = tmp_path / "S1.tiles.json"
    tiled.write_text(json.dumps({"slide": "S1.svs", "status": "error", "step": "tile", "error": "no tissue found"}))
    marker = tmp_path / "embedded"
    proc = subprocess.run([sys.executable, "-m", "weakstil.pipeline_slide_steps", "--status", str(tmp_path / "S1.json"),
                           "--log", str(tmp_path / "S1.log"), "--slide", "S1.svs", "--after", str(tiled),
                           "--step", f"embed=touch {marker}"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((tmp_path / "S1.json").read_text())["error"] == "no tissue found" and not marker.exists()


def test_the_files_a_job_replaces_are_removed_before_its_steps(tmp_path):
    """A rerun after a changed setting (tile size) found the slide's old features, which `weakstil
    embed` keeps and refuses: every score slide became an error row (outside fault hunt 7C #1). The
    job removes the files it writes first, as Snakemake removes a job's declared outputs."""
    old = tmp_path / "features" / "S1.h5"
    old.parent.mkdir()
    old.write_text("features of 224 px tiles")
    seen = tmp_path / "seen"
    assert main(["--status", str(tmp_path / "S1.json"), "--log", str(tmp_path / "S1.log"), "--slide", "S1.svs",
                 "--replaces", str(old), "--replaces", str(tmp_path / "never_made.h5"),
                 "--step", f"embed=test -e {old} && echo kept > {seen} || echo removed > {seen}"]) == 0
    assert seen.read_text().strip() == "removed"


def test_a_current_embedding_is_kept_and_recorded(tmp_path):
    """A score slide's job redone for its bed alone keeps its features (--keep, no embed step) and records
    its embedding key in an ok status, which the workflow compares the next time (hunt 38k: the job removed
    and re-embedded them, for the same features, whenever the detector or the slide's outline changed)."""
    from weakstil.pipeline_slide_steps import embedded_current

    features, status = tmp_path / "S1.h5", tmp_path / "S1.json"
    features.write_text("features")
    assert main(["--status", str(status), "--log", str(tmp_path / "S1.log"), "--slide", "S1.svs",
                 "--replaces", str(features), "--keep", str(features), "--embedded", "k1",
                 "--step", "tumorbed=true"]) == 0
    assert features.read_text() == "features" and json.loads(status.read_text())["embedded"] == "k1"
    assert embedded_current(status, features, "k1") and not embedded_current(status, features, "k2")
    run_slide_steps([("embed", "exit 1")], tmp_path / "S1.log", status, "S1.svs", embedded="k1")
    assert not embedded_current(status, features, "k1")  # a failure is redone whole
