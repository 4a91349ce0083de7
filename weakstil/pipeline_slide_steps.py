"""The per-slide steps of a workflow score slide (tiles, embedding, tumour bed) and what became of them.

A slide that fails on its own account (no tissue, a dark or damaged scan: the CLI's exit status 1,
with its ``error:`` line) is recorded as failed in a small JSON status file instead of failing the
job: the score job then tries it once more (with its bed sources) and gives it an error row if it fails
there too, as ``weakstil score`` does in a batch, and scores the others. Before, its failed tile or
embed job kept the score job from running at all, and ``scores/results.csv`` stayed the previous run's. Any other exit (killed, out of memory, a usage
error) still fails the job, so Snakemake stops or retries it as it does for every job.

A recorded failure is tried again by every later run, as ``weakstil score`` redoes a failed slide:
:func:`retry_key` is part of the job's ``steps`` param, so Snakemake's params trigger reruns it (the job
had succeeded, and after the cause was gone, another run's lock or a full disk, a rerun said "Nothing
to be done" and the error row stayed).
"""

from __future__ import annotations

import json
import subprocess
from datetime import datetime, timezone
from pathlib import Path

from weakstil.atomic import write_json

#: ``weakstil``'s exit status for a slide that failed (2: a usage error; 128 + N: killed by signal N).
SLIDE_FAILED = 1


def last_error_line(text: str) -> str:
    """The reason on the last ``error: ...`` line a command printed, else its last line."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    errors = [ln.removeprefix("error:").strip() for ln in lines if ln.startswith("error:")]
    return (errors or lines or ["failed without a message"])[-1]


def failed_now() -> str:
    """When a failure is recorded (``failed_at``): each failure's own, so its :func:`retry_key` is new."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def retry_key(status_path: str | Path) -> str:
    """What a score slide's per-slide job adds to its ``steps`` param (``--retrying KEY``), from the
    status its last run wrote: for a recorded failure, a key of that failure, new to the job, so the
    next run redoes it; otherwise the key the job last ran with (``""`` for a slide that never
    failed: its param, and so its job, unchanged)."""
    try:
        status = json.loads(Path(status_path).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):  # not run yet
        return ""
    if status.get("status") != "ok":
        return f"failed {status.get('failed_at') or 'earlier'}"
    return str(status.get("retrying") or "")


def embedded_current(status_path: str | Path, features: str | Path, key: str) -> bool:
    """Whether a score slide's last `score_slide` run embedded it as one with embedding ``key`` would (its
    status ``ok`` with that ``embedded`` key) and its features file is still there: the job, redone for its
    tumour bed alone (another detector or outline), keeps those features instead of embedding again."""
    try:
        status = json.loads(Path(status_path).read_text(encoding="utf-8-sig"))
    except (OSError, ValueError):  # not run yet, or a status of before the key
        return False
    return status.get("status") == "ok" and status.get("embedded") == key and Path(features).is_file()


def run_slide_steps(steps: list[tuple[str, str]], log_path: str | Path, status_path: str | Path,
                    slide: str, retrying: str = "", embedded: str = "") -> dict:
    """Run ``steps`` (name, shell command) in order, their output appended to ``log_path``; write
    ``status_path`` ({"slide", "status": "ok" | "error", "step", "error"}, with ``failed_at`` for a
    failure, ``retrying``, the job's :func:`retry_key`, when not empty, and ``embedded``, the slide's
    embedding key, when every step succeeded: :func:`embedded_current`) and return it. Raises
    :class:`subprocess.CalledProcessError` (``cmd``: the step's name) for an exit other than 0 or
    :data:`SLIDE_FAILED`; no status is written then."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    status: dict = {"slide": str(slide), "status": "ok", "step": None, "error": None,
                    **({"retrying": retrying} if retrying else {})}
    with log_path.open("w", encoding="utf-8", errors="surrogateescape") as log:
        for name, command in steps:
            log.write(f"$ {command}\n")
            log.flush()
            start = log.tell()
            proc = subprocess.run(command, shell=True, stdout=log, stderr=subprocess.STDOUT)  # the log is live
            if proc.returncode == SLIDE_FAILED:
                with log_path.open(encoding="utf-8", errors="replace") as f:
                    f.seek(start)
                    status.update(status="error", step=name, error=last_error_line(f.read()), failed_at=failed_now())
                log.write(f"{slide}: {name} failed; the score job tries it once more (an error row if it fails "
                          "there too) and scores the others; the next run tries it again\n")
                break
            if proc.returncode != 0:
                raise subprocess.CalledProcessError(proc.returncode, name)
    if embedded and status["status"] == "ok":
        status["embedded"] = embedded
    write_json(status_path, status)
    return status


def failed_slides(status_files) -> dict[str, str]:
    """Slide file -> the reason, for the status files that say the slide failed."""
    failed = {}
    for path in status_files:
        if not Path(path).is_file():  # a dry run: the per-slide jobs have not run
            continue
        status = json.loads(Path(path).read_text(encoding="utf-8-sig"))
        if status.get("status") == "error":
            failed[status["slide"]] = f"{status.get('step')}: {status.get('error')}"
    return failed


def main(argv: list[str] | None = None) -> int:
    """``python -m weakstil.pipeline_slide_steps --status S --log L --slide F [--after S0] [--replaces FILE ...]
    --step NAME=CMD ...``: the workflow's `score_slide_*` jobs. ``--after``: an earlier step's status
    file; when that one failed, its status is passed on and nothing runs. ``--replaces``: the files
    the steps write, removed first, as Snakemake removes a job's declared outputs (a rerun after a
    changed tile size found the old features and refused them: every score slide an error row)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m weakstil.pipeline_slide_steps")
    parser.add_argument("--status", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--slide", required=True)
    parser.add_argument("--after")
    parser.add_argument("--step", action="append", default=[], help="NAME=SHELL COMMAND, run in order")
    parser.add_argument("--replaces", action="append", default=[],
                        help="a file the steps write, removed first (as Snakemake removes a job's outputs)")
    parser.add_argument("--retrying", default="", help="the job's retry_key, recorded in its status")
    parser.add_argument("--embedded", default="", help="the slide's embedding key, recorded in an ok status")
    parser.add_argument("--keep", action="append", default=[],
                        help="a --replaces file kept: the embedding it holds is current (no embed step)")
    args = parser.parse_args(argv)
    for path in set(args.replaces) - set(args.keep):  # a rerun with other settings: the command would keep
        Path(path).unlink(missing_ok=True)  # (and refuse) the old file
    steps = [tuple(step.split("=", 1)) for step in args.step]
    before = json.loads(Path(args.after).read_text(encoding="utf-8-sig")) if args.after else None
    if before is not None and before.get("status") != "ok":
        Path(args.log).parent.mkdir(parents=True, exist_ok=True)
        Path(args.log).write_text(f"{args.slide}: not run, its {before.get('step')} step failed\n", encoding="utf-8",
                                  errors="surrogateescape")
        passed_on = {k: v for k, v in before.items() if k != "retrying"} | {"failed_at": failed_now()}
        write_json(args.status, passed_on | ({"retrying": args.retrying} if args.retrying else {}))
    else:
        try:
            status = run_slide_steps(steps, args.log, args.status, args.slide, retrying=args.retrying,
                                     embedded=args.embedded)
        except subprocess.CalledProcessError as exc:
            code = 128 - exc.returncode if exc.returncode < 0 else exc.returncode  # -N: killed by signal N
            print(f"error: {args.slide}: its {exc.cmd} step exited {code} (not a failure of the slide: killed, out "
                  f"of memory or a usage error); see {args.log}", file=sys.stderr)
            return code if 0 < code < 256 else 1
        if status["status"] != "ok":
            print(f"warning: {args.slide} (score_slides): its {status['step']} step failed ({status['error'].rstrip('.')}); "
                  "the score job tries it once more (an error row in scores/results.csv if it fails there too) and "
                  "scores the other slides", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
