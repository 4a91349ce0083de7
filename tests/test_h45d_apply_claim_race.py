"""Helper h45d: two ``tumorbed apply`` runs starting together in a new, empty folder share its detector record.

Old (review h44i): run A wrote the folder's record, run B (the same detector) found it and went on loading its first
slide; A's slides all failed and A, seeing a folder that held only the record, removed it and the folder, so B's beds
carried no claim and a later run with another detector was not refused. Now each run is listed in the record while
it uses it (``runs``), the claim and the release are made under the record's lock, and a record goes only when no run
uses it and the folder holds nothing else.
"""

import json
import multiprocessing
import time


def _sources():
    from weakstil.tumorbed.resolver import BedSources

    return BedSources.open()  # no detector: the record says "none", as a detector's would say its weights


def test_a_run_ending_leaves_the_record_another_run_joined(tmp_path):
    from weakstil.tumorbed.apply import DETECTOR_RECORD, claim_detector_folder, release_detector_claim

    out = tmp_path / "beds"
    assert claim_detector_folder(out, _sources(), run="A")
    assert claim_detector_folder(out, _sources(), run="B")  # started together: joins A's record
    assert json.loads((out / DETECTOR_RECORD).read_text())["runs"] == ["A", "B"]
    release_detector_claim(out, "A", made_folder=True)  # A's slides all failed
    assert (out / DETECTOR_RECORD).is_file()  # was removed, with the folder, while B still ran
    assert json.loads((out / DETECTOR_RECORD).read_text())["runs"] == ["B"]
    release_detector_claim(out, "B", made_folder=False)  # B wrote no bed either: nothing is claimed
    assert not (out / DETECTOR_RECORD).exists()


def test_a_finished_runs_bed_keeps_the_record(tmp_path):
    from weakstil.tumorbed.apply import DETECTOR_RECORD, claim_detector_folder, release_detector_claim

    out = tmp_path / "beds"
    claim_detector_folder(out, _sources(), run="A")
    (out / "S1.h5").write_bytes(b"a bed")
    release_detector_claim(out, "A", made_folder=True)
    assert json.loads((out / DETECTOR_RECORD).read_text())["runs"] == []


def _run(out, name, start, results):
    """One run: claim, a moment's work (its first slide loading), whether the record is still there, release."""
    from weakstil.tumorbed.apply import DETECTOR_RECORD, claim_detector_folder, release_detector_claim

    existed = out.exists()
    start.wait()
    claim_detector_folder(out, _sources(), run=name)
    time.sleep(0.002 if name == "B" else 0.0)
    results.put((name, (out / DETECTOR_RECORD).is_file()))
    release_detector_claim(out, name, made_folder=not existed)


def test_two_processes_starting_together_never_lose_the_record_while_running(tmp_path):
    ctx = multiprocessing.get_context("fork")
    lost = []
    for i in range(10):
        out = tmp_path / f"beds{i}"
        start, results = ctx.Barrier(2), ctx.Queue()
        procs = [ctx.Process(target=_run, args=(out, name, start, results)) for name in ("A", "B")]
        for p in procs:
            p.start()
        for p in procs:
            p.join(20)
            assert p.exitcode == 0
        lost += [name for name, there in (results.get(timeout=5), results.get(timeout=5)) if not there]
    assert not lost
