"""Review h45e: a ``tumorbed apply`` run killed (SIGKILL, out of memory) before its first bed no longer claims the
folder for good.

Old (h45d): each run is listed in the folder's detector record (``runs``) until it releases it in a ``finally``; a
killed run never does, so its name stayed. The folder held only the record, yet another detector's run was refused
("holds the beds of DETECTOR": it held none, the hunt 44c complaint), and a later run whose slides all failed kept
the unused record too, as the dead run still "used" it. Now a listed run of this host whose process is gone is no
user: a record only such runs list, in a folder without a bed, is taken over.
"""

import json
import os
import subprocess
import sys

import pytest


def _dead_run() -> str:
    """The name a run of this host had, whose process has ended (as 'tumorbed apply' names its runs)."""
    from weakstil.tumorbed.runs import run_host

    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return f"{run_host()}:{proc.pid}:deadbeef"


def _record(out, runs):
    from weakstil.tumorbed.apply import DETECTOR_RECORD

    out.mkdir(parents=True, exist_ok=True)
    (out / DETECTOR_RECORD).write_text(json.dumps({"detector_sha256": "ab" * 32, "detector_path": "/gone/det",
                                                   "runs": runs}))


def test_a_record_left_by_a_killed_run_before_any_bed_is_taken_over(tmp_path):
    from weakstil.tumorbed.apply import DETECTOR_RECORD, claim_detector_folder
    from weakstil.tumorbed.resolver import BedSources

    out = tmp_path / "beds"
    _record(out, [_dead_run()])
    assert claim_detector_folder(out, BedSources.open(), run="me:1:x")  # was: "holds the beds of /gone/det"
    record = json.loads((out / DETECTOR_RECORD).read_text())
    assert record["detector_sha256"] == "none" and record["runs"] == ["me:1:x"]


@pytest.mark.parametrize("case", ["a live run", "a bed", "another host", "another pid namespace"])
def test_a_record_a_live_run_or_a_bed_needs_is_kept_and_refuses_another_detector(tmp_path, case):
    from weakstil.errors import UsageError
    from weakstil.tumorbed.apply import claim_detector_folder
    from weakstil.tumorbed.resolver import BedSources
    from weakstil.tumorbed.runs import run_host

    out = tmp_path / "beds"
    _record(out, {"a live run": [f"{run_host()}:{os.getppid()}:cafe"], "a bed": [_dead_run()],
                  "another host": ["elsewhere.invalid:1:cafe"],
                  # a container of the same host name (Docker's --network host): its pids are not this one's
                  "another pid namespace": [_dead_run().replace(run_host(), run_host().split("/")[0] + "/1")]}[case])
    if case == "a bed":
        (out / "S1.h5").write_bytes(b"a bed")
    with pytest.raises(UsageError, match="holds the beds of /gone/det"):
        claim_detector_folder(out, BedSources.open(), run="me:1:x")


def test_a_killed_run_does_not_keep_an_unused_record_when_the_last_run_releases_it(tmp_path):
    from weakstil.tumorbed.apply import DETECTOR_RECORD, claim_detector_folder, release_detector_claim
    from weakstil.tumorbed.resolver import BedSources

    out = tmp_path / "beds"
    claim_detector_folder(out, BedSources.open(), run="A")
    dead = _dead_run()
    record = json.loads((out / DETECTOR_RECORD).read_text())
    (out / DETECTOR_RECORD).write_text(json.dumps({**record, "runs": sorted([dead, "A"])}))  # joined, then killed
    release_detector_claim(out, "A", made_folder=True)  # A's slides all failed
    assert not out.exists()  # was: the record kept for the dead run, refusing another detector's run there
