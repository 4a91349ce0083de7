"""The names of ``tumorbed apply`` runs, as listed in their folder's detector record while they use it
(:func:`weakstil.tumorbed.apply.claim_detector_folder`), and which of them are gone: a run killed (SIGKILL, out of
memory) never took its name off (review h45e)."""

from __future__ import annotations

import os
import socket
import uuid


def run_host() -> str:
    """This host as a run's name gives it: its name and, where there is one, its process-id namespace (two
    containers of one host name, e.g. Docker's ``--network host``, do not see each other's processes)."""
    try:
        space = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:
        space = ""
    return f"{socket.gethostname()}/{space}" if space else socket.gethostname()


def run_name() -> str:
    """A new run's name: ``host:pid:random``."""
    return f"{run_host()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def gone(run: str) -> bool:
    """Whether ``run`` (:func:`run_name`) was a process this one can see (this host, this process-id namespace) that
    has ended. Another host's run, or one named otherwise, cannot be told gone: False."""
    host, _, rest = run.partition(":")
    pid = rest.partition(":")[0]
    if host != run_host() or not pid.isdigit() or int(pid) in (0, os.getpid()):
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # (another user's process: there)
        pass
    return False
