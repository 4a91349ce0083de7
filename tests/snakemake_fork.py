"""``python -m snakemake ...`` for the tests, each run a process of its own, forked from one that has
imported Snakemake already.

A Snakemake process spends most of its CPU importing (``snakemake.cli`` and its plugins: 1.1 of the 1.8 s
of a dry run of pipelines/Snakefile), and the workflow modules start about 80 of them per test run. Each
run here is still its own process (forked, so its logging, exit and atexit state are its own) running
Snakemake's command line (``snakemake.cli.main``, as ``python -m snakemake`` does) in the directory and
environment it was given, its output and exit status read back as from ``subprocess.run``. A run that
needs what only a fresh interpreter reads (other ``PYTHON*`` or locale variables) is started as before."""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

#: The forking process: imports Snakemake once, then for each request (a JSON line on stdin) forks a child
#: that runs ``snakemake.cli.main()`` as ``python -m snakemake`` would, and answers the child's exit status.
_SERVER = r"""
import atexit, json, os, sys, traceback
import snakemake, snakemake.cli
main_path = os.path.join(os.path.dirname(snakemake.__file__), "__main__.py")
answers = os.fdopen(int(sys.argv[1]), "w")
for line in sys.stdin:
    req = json.loads(line)
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.chdir(req["cwd"])
            os.environ.clear(); os.environ.update(req["env"])
            for fd, path in ((1, req["stdout"]), (2, req["stderr"])):
                f = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600); os.dup2(f, fd); os.close(f)
            f = os.open(os.devnull, os.O_RDONLY); os.dup2(f, 0); os.close(f)
            sys.stdin = open(os.devnull)
            sys.argv, sys.path[0] = [main_path, *req["args"]], req["cwd"]
            try:
                snakemake.cli.main()
                code = 0
            except SystemExit as stop:
                if stop.code is None or isinstance(stop.code, int):
                    code = stop.code or 0
                else:
                    print(stop.code, file=sys.stderr); code = 1
            except BaseException:
                traceback.print_exc(); code = 1
            atexit._run_exitfuncs()
        finally:
            try:
                sys.stdout.flush(); sys.stderr.flush()
            finally:
                os._exit(code)
    _, status = os.waitpid(pid, 0)
    answers.write(json.dumps(os.waitstatus_to_exitcode(status)) + "\n"); answers.flush()
"""

#: Variables a fresh interpreter reads at start (so a run that sets them otherwise is not forked).
_AT_START = ("PYTHON", "LANG", "LC_")

_lock = threading.Lock()
_server: dict = {}


def _start() -> dict:
    from conftest import no_slurm_controller_env

    folder = Path(tempfile.mkdtemp(prefix="snakemake-fork-"))
    env = no_slurm_controller_env(folder)  # its import asks scontrol (see conftest)
    read, write = os.pipe()
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(write)], stdin=subprocess.PIPE, text=True,
                            env=env, pass_fds=(write,))
    os.close(write)
    return {"proc": proc, "answers": os.fdopen(read), "folder": folder,
            "at_start": {k: v for k, v in env.items() if k.startswith(_AT_START)}}


def close() -> None:
    """Ends the forking process (its CPU, and its children's, then counts towards this one's)."""
    with _lock:
        server = _server.pop("server", None)
        if server:
            server["proc"].stdin.close()
            server["proc"].wait()


def run(cmd: list, env: dict | None = None, cwd: str | Path | None = None) -> subprocess.CompletedProcess:
    """``subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)`` for ``cmd`` =
    ``[sys.executable, "-m", "snakemake", ...]``, forked from the process that imported Snakemake."""
    env = dict(os.environ if env is None else env)
    cwd = str(Path(cwd or os.getcwd()).resolve())
    with _lock:
        if "server" not in _server:
            _server["server"] = _start()
        server = _server["server"]
        if [str(c) for c in cmd[:3]] != [sys.executable, "-m", "snakemake"] or server["proc"].poll() is not None or \
                {k: v for k, v in env.items() if k.startswith(_AT_START)} != server["at_start"]:
            return subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=cwd)
        with tempfile.TemporaryDirectory(dir=server["folder"]) as tmp:
            out, err = Path(tmp) / "stdout", Path(tmp) / "stderr"
            server["proc"].stdin.write(json.dumps({"args": [str(c) for c in cmd[3:]], "env": env, "cwd": cwd,
                                                   "stdout": str(out), "stderr": str(err)}) + "\n")
            server["proc"].stdin.flush()
            code = json.loads(server["answers"].readline())
            return subprocess.CompletedProcess(cmd, code, out.read_text(), err.read_text())


atexit.register(close)
