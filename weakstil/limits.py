"""Running out of what a lab's machine allows (memory, address space, threads), said in one line.

A cluster node or a shared server often caps a process: ``ulimit -v`` (address space), ``ulimit -u``
(processes and threads), a cgroup's memory. What torch or Python raise then is no WeakSTIL bug, yet
it was reported as one (hunt 36f): under ``ulimit -v`` 2 GB ``weakstil score`` said "unexpected
ImportError: libtorch_cpu.so: failed to map segment from shared object. Fix: this is a bug in
weakstil; ... report it", under 4 GB "unexpected RuntimeError: can't start new thread" (the whole
batch stopped, an atexit traceback after it), and a slide that ran out of memory ended the batch
with "out of memory", naming no slide. torch alone reserves about 3.3 GB of address space when it
is imported (torch 2.14, Linux x86-64; measured VmPeak of ``import torch``), and scoring peaked at
4.4 GB: an address-space limit counts what is reserved, not what is used, and a limit below that
can end the process inside torch's native code before Python can say anything.
"""

from __future__ import annotations

import resource

from weakstil.errors import WeakSTILError, short_reason

GB = 1024**3
#: Fixes for a process that ran out of memory.
MEMORY_FIX = "lower --batch-size (and --workers), or use a machine or job with more memory"
#: ... for a command without batches (``tile``: the slide's tissue mask and overview picture).
MORE_MEMORY_FIX = "use a machine or job with more memory"
#: Where ``limit`` is the address-space limit: what to set instead.
AS_FIX = ("raise it ('ulimit -v unlimited'), and cap memory where it is used instead (SLURM --mem, "
          "docker --memory, systemd-run -p MemoryMax=): torch reserves far more address space than it uses")


def address_space_limit() -> int | None:
    """This process's address-space limit in bytes (``ulimit -v``), or None when there is none."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (OSError, ValueError, AttributeError):  # pragma: no cover - not POSIX
        return None
    return None if soft == resource.RLIM_INFINITY else int(soft)


#: Address space a torch command reserved at its peak (scoring a 3 x 3 mm slide: VmPeak 4.4 GB;
#: ``import torch`` alone 3.3 GB), rounded up.
TORCH_ADDRESS_SPACE = 5 * GB


def small_address_space() -> str | None:
    """A warning when ``ulimit -v`` is below :data:`TORCH_ADDRESS_SPACE`, said before torch loads: below
    3.3 GB the process can die inside torch's import with glibc's or C++'s words alone ("cannot allocate
    memory for thread-local data: ABORT", exit 127; "std::bad_alloc", exit 134), before WeakSTIL can say
    anything."""
    limit = address_space_limit()
    if limit is None or limit >= TORCH_ADDRESS_SPACE:
        return None
    return (f"the address-space limit (ulimit -v) is {limit / GB:.1f} GB; torch reserves about "
            f"{TORCH_ADDRESS_SPACE / GB:.0f} GB of it (more than it uses), so this run may die on loading it or "
            f"on starting a thread. Fix: {AS_FIX}")


def _limit_words() -> str:
    limit = address_space_limit()
    return f"the address-space limit (ulimit -v) is {limit / GB:.1f} GB" if limit is not None else ""


def is_out_of_memory(exc: BaseException) -> bool:
    """A MemoryError, or torch's or C++'s words for a failed CPU allocation."""
    if isinstance(exc, MemoryError):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "bad_alloc" in text)


def out_of_memory(exc: BaseException, path: object = None, fix: str = MEMORY_FIX) -> WeakSTILError | None:
    """The one-line error for ``exc`` when it is running out of memory (``path``: the slide; ``fix``: what
    the command can lower, :data:`MEMORY_FIX` by default), else None."""
    if not is_out_of_memory(exc):
        return None
    limit = _limit_words()
    if limit:
        return WeakSTILError(f"out of memory ({limit})", path=path, fix=AS_FIX)
    return WeakSTILError("out of memory", path=path, fix=fix)


def resource_error_line(exc: BaseException) -> str | None:
    """The ``error:`` line's text for a run stopped by a limit of the machine, else None."""
    error = out_of_memory(exc)
    if error is not None:
        return error.one_line()
    text = str(exc)
    limit = _limit_words()
    if isinstance(exc, ImportError) and ("failed to map segment" in text or "annot allocate memory" in text):
        what = f"a library could not be loaded ({short_reason(exc)})"
    elif isinstance(exc, RuntimeError) and "can't start new thread" in text:
        what = "no new thread could be started"
        if not limit:
            nproc = resource.getrlimit(resource.RLIMIT_NPROC)[0]
            shown = "unlimited" if nproc == resource.RLIM_INFINITY else str(nproc)
            return (f"{what}: the machine's process/thread limit is reached (ulimit -u: {shown}). Fix: raise it, "
                    "or lower --workers and --threads.")
    else:
        return None
    if limit:
        return f"{what}: {limit}. Fix: {AS_FIX}."
    return f"{what}: out of memory. Fix: {MEMORY_FIX}."
