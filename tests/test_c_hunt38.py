"""Hunt 38c: slide ids copied from a results.csv, one rule for a slide file's id, a model copied by hand over
the workflow's ``results/model``, and SLURM retries of a job that ran out of time.

1. ``results.csv`` writes a formula-like slide id with one ``'`` in front (``=b`` as ``'=b``, CSV injection). A
   researcher who pasted those ids into a label CSV kept the ``'``: ``evaluate --oof results.csv`` stopped with
   "1 cohort slides have no prediction: '=b" (and ``train`` named the slide ``'=b``). The cohort reader now
   takes exactly one ``'`` off such an id, as results.csv's own reader does; a slide file itself named ``'=c``
   keeps its id.
2. ``score`` (and ``tile``, ``embed``) wrote the outputs of ``.dot.tiff`` as hidden files (``.dot.h5``,
   ``.dot_heatmap.png``) with status ok, while ``train`` refused the slide id ``.dot`` in a cohort CSV ("starts
   with '.'"). One function (``weakstil.slide.slide_id_problem``) now judges a CSV's slide_id and a file's own
   id: the file gets an error row (score) or error line (tile, embed) with that reason, and the others go on.
   Also: the workflow's check of a cohort against the model's out-of-fold predictions (a run without
   Snakemake's records) read ``oof_predictions.csv`` raw, so a cohort with the slide ``=b`` always "differed"
   from the file's ``'=b`` and such a run was refused as stale; it reads the file as WeakSTIL wrote it now.
3. Another model's ``model.json`` and ``model.safetensors`` copied over the workflow's ``results/model``: the
   next run said "Nothing to be done" (Snakemake follows the folder by its ``.snakemake_timestamp``, which
   only the train job sets) and kept ``results/evaluation`` and ``results/scores`` of the old weights
   (``model@b980dfb6af4c`` beside a model of ``b8bc4449c0a6``). The run is now refused, naming the folders to
   delete; a model the train job made again (newer than those outputs, which Snakemake redoes) is not.
4. A SLURM job stopped at its wall time (TIMEOUT) was resubmitted (the profile's ``retries: 1``) with the same
   ``runtime`` (train: 240 min, then 240 again) and ran out of time again. The rules' ``runtime`` is now a
   function of Snakemake's ``attempt``: 240, then 480, at most the partition's MaxTime.
"""

from __future__ import annotations

import hashlib
import os
import re
from types import SimpleNamespace
from pathlib import Path

import pandas as pd
import pytest

from weakstil import csv_cells
from weakstil.cohort import CohortError, read_cohort
from weakstil.evaluation import evaluate_oof
from weakstil.score import RESULT_COLUMNS
from weakstil.slide_ids import claim_ids

IDS = ["=b", "+plus", "-minus", "@at", "S5", "-5"]  # (-5 is a number: results.csv writes it as it is)
TRUTH = [35.0, 10.0, 55.0, 5.0, 20.0, 70.0]


def test_label_csv_with_ids_copied_from_results_csv_matches_its_predictions(tmp_path: Path) -> None:
    results = pd.DataFrame({c: [None] * len(IDS) for c in RESULT_COLUMNS})
    results["slide_id"], results["path"] = IDS, [f"/scans/{i}.tiff" for i in IDS]
    results["stil"], results["status"], results["threshold"] = [t + 2 for t in TRUTH], "ok", 30
    csv_cells.defused(results).to_csv(tmp_path / "results.csv", index=False)  # as score writes it
    copied = pd.read_csv(tmp_path / "results.csv", dtype=str)["slide_id"]  # the ids as a spreadsheet shows them
    assert copied.tolist() == ["'=b", "'+plus", "'-minus", "'@at", "S5", "-5"]
    pd.DataFrame({"slide_id": copied, "path": [f"slides/{i}.tiff" for i in IDS], "stil": TRUTH}).to_csv(
        tmp_path / "labels.csv", index=False)
    # old: WeakSTILError "results.csv: 4 cohort slides have no prediction: '=b, '+plus, '-minus, '@at"
    metrics = evaluate_oof(tmp_path / "labels.csv", tmp_path / "results.csv", tmp_path / "eval")
    assert metrics["n"] == len(IDS) and metrics["mae"] == pytest.approx(2.0)
    assert pd.read_csv(tmp_path / "eval" / "predictions.csv", dtype=str)["slide_id"].map(csv_cells.restore).tolist() \
        == IDS


def test_cohort_reader_takes_one_mark_off_unless_the_file_has_it(tmp_path: Path) -> None:
    for name in ("=b.tiff", "'=c.tiff", "'=d.tiff", "'plain.tiff"):  # '=c: a file named with the mark itself
        (tmp_path / name).touch()
    (tmp_path / "labels.csv").write_text("slide_id,path,stil\n'=b,=b.tiff,10\n'=c,'=c.tiff,20\n''=d,'=d.tiff,30\n"
                                         "'plain,'plain.tiff,40\n", encoding="utf-8")
    # ''=d is results.csv's form of the id '=d (one mark more, csv_cells.defuse): one comes off; 'plain is no formula
    assert read_cohort(tmp_path / "labels.csv").slide_ids == ["=b", "'=c", "'=d", "'plain"]


def test_workflow_compares_a_cohort_with_formula_like_ids_to_its_oof_predictions(tmp_path: Path) -> None:
    from weakstil.evaluation import write_predictions
    from weakstil.pipeline_reruns import _cohort_differs

    (tmp_path / "labels.csv").write_text("slide_id,path,stil,group\n=b,=b.tiff,10,c1\nS2,S2.tiff,20,c2\n",
                                         encoding="utf-8")
    write_predictions(pd.DataFrame({"slide_id": ["=b", "S2"], "stil_true": [10.0, 20.0], "stil_pred": [12.0, 18.0],
                                    "group": ["c1", "c2"]}), tmp_path / "oof.csv")  # as train writes cv/
    assert _cohort_differs(str(tmp_path / "labels.csv"), tmp_path / "oof.csv") is False  # old: True ('=b)
    (tmp_path / "labels.csv").write_text("slide_id,path,stil,group\n=b,=b.tiff,15,c1\nS2,S2.tiff,20,c2\n",
                                         encoding="utf-8")
    assert _cohort_differs(str(tmp_path / "labels.csv"), tmp_path / "oof.csv") is True  # a label corrected


def test_a_file_whose_id_a_cohort_csv_refuses_is_refused_by_score_too(tmp_path: Path) -> None:
    for name in (".dot.tiff", "a.dot.tiff"):
        (tmp_path / name).touch()
    (tmp_path / "labels.csv").write_text("slide_id,path,stil\n.dot,.dot.tiff,10\na.dot,a.dot.tiff,20\n",
                                         encoding="utf-8")
    with pytest.raises(CohortError) as train:
        read_cohort(tmp_path / "labels.csv")
    assert "row 2 (.dot): slide_id '.dot' starts with '.' (its output files would be hidden)" in train.value.message
    assert "row 3" not in train.value.message  # a.dot.tiff is the slide a.dot in both
    # score's claim of each file's id (weakstil.score.score_slides): old, both kept, .dot scored into .dot.h5
    todo, refused = claim_ids([tmp_path / ".dot.tiff", tmp_path / "a.dot.tiff"])
    assert todo == [tmp_path / "a.dot.tiff"]
    assert [p.name for p, _ in refused] == [".dot.tiff"]
    assert "slide id '.dot' starts with '.' (its output files would be hidden)" in refused[0][1].message


def test_model_files_copied_over_the_workflows_model_are_noticed(tmp_path: Path) -> None:
    from weakstil.pipeline_model import hand_changed_model  # (old: no such check, module not found)

    out, t0 = tmp_path / "results", 1_700_000_000
    for sub in ("model", "evaluation", "scores"):
        (out / sub).mkdir(parents=True)
    weights = out / "model" / "model.safetensors"
    weights.write_bytes(b"trained by the workflow")
    trained = hashlib.sha256(weights.read_bytes()).hexdigest()
    (out / "model" / ".snakemake_timestamp").touch()
    os.utime(out / "model" / ".snakemake_timestamp", (t0, t0))  # the train job's end
    (out / "evaluation" / "metrics.json").write_text(f'{{"mode": "oof", "model_sha256": "{trained}"}}')
    (out / "scores" / "results.csv").write_text(f"slide_id,stil,status,model_id\nS1,12.5,ok,model@{trained[:12]}\n"
                                                "S2,,error,\n")  # (an error row names no model)
    for made in (out / "evaluation" / "metrics.json", out / "scores" / "results.csv"):
        os.utime(made, (t0 + 60, t0 + 60))
    assert hand_changed_model(out) is None
    weights.write_bytes(b"another training's weights")  # cp -p: the files' own times, not the folder's
    os.utime(weights, (t0 - 3600, t0 - 3600))
    why = hand_changed_model(out)
    assert why is not None and why.startswith(f"{out / 'model'} holds other weights (")
    assert f"made with ({trained[:12]})" in why
    assert f"Fix: delete {out / 'evaluation'} {out / 'scores'} {out / 'report'} and run again" in why
    # the Snakefile refuses the run with it (dry runs too): old, "Nothing to be done"
    snakefile = (Path(__file__).parents[1] / "pipelines" / "Snakefile").read_text(encoding="utf-8")
    assert "(_copied := hand_changed_model(OUT)):" in snakefile and "fail(_copied)" in snakefile
    os.utime(out / "model" / ".snakemake_timestamp", (t0 + 120, t0 + 120))  # trained again: Snakemake redoes them
    assert hand_changed_model(out) is None


def _snakefile_functions(*names: str) -> dict:
    """The Snakefile's resource functions, run as the Snakefile defines them (its plain-Python part)."""
    text = (Path(__file__).parents[1] / "pipelines" / "Snakefile").read_text(encoding="utf-8")
    scope = {"SLURM": {"partition": "short", "gpu_partition": "a100q", "gpus_per_embed": 1, "embed_runtime": 120},
             "memory_resource": lambda config, kind: 2000, "config": {}, "SimpleNamespace": SimpleNamespace}
    if "from weakstil.slurm_retries import runtime_resource" in text:  # (old: the Snakefile gave a number)
        exec("from weakstil.slurm_retries import runtime_resource", scope)
    for name in names:
        exec(re.search(rf"^def {name}\(.*?(?=^\S)", text, re.S | re.M).group(0), scope)
    return scope


def test_a_slurm_retry_asks_more_wall_time_than_the_attempt_before(monkeypatch) -> None:
    scope = _snakefile_functions("cpu_resources", "embed_resources")
    train, embed = scope["cpu_resources"](2000, 240), scope["embed_resources"]()
    # old: runtime 240 on every attempt, so a job out of time on the first ran out of it on the retry too
    assert callable(train["runtime"]) and callable(embed["runtime"]), (train["runtime"], embed["runtime"])
    from weakstil import slurm_retries

    monkeypatch.setattr(slurm_retries, "partition_max_minutes", lambda partition: None)  # (no cluster here)
    assert [train["runtime"](None, attempt=a) for a in (1, 2)] == [240, 480]
    assert embed["slurm_partition"] == "a100q" and [embed["runtime"](None, attempt=a) for a in (1, 2)] == [120, 240]
    assert [slurm_retries.scaled_runtime(240, a, "short") for a in (1, 2, 3)] == [240, 480, 720]
    assert slurm_retries.scaled_runtime(240, 2, "short", lambda p: 300.0) == 300  # at most the partition's MaxTime
    assert slurm_retries.scaled_runtime(240, 1, "short", lambda p: pytest.fail("asked scontrol")) == 240
