"""The machine a run uses: torch devices, CPU threads, package versions and file hashes.

One place for all of it, used by every stage. torch is imported inside the functions that
need it, so the CLI can import this module at start-up.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import platform
import re
from pathlib import Path
from typing import TYPE_CHECKING

from weakstil.code_version import version as code_version
from weakstil.errors import UsageError

if TYPE_CHECKING:  # pragma: no cover
    import torch

log = logging.getLogger(__name__)

#: Device strings WeakSTIL accepts (``--device``).
DEVICE_PATTERN = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
DEVICE_HELP = "use auto, cpu, cuda, cuda:N or mps"


# --- devices -----------------------------------------------------------------------------------
def check_device(device: str) -> str:
    """``device`` when it is a device string WeakSTIL accepts; else a :class:`UsageError`.

    Cheap (no torch import): the CLI checks ``--device`` with it before any work starts."""
    text = str(device).strip().lower()
    if not DEVICE_PATTERN.match(text):
        raise UsageError(f"unknown device {device!r}", fix=DEVICE_HELP)
    return text


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for ``auto``/``cpu``/``cuda[:N]``/``mps``.

    Unknown names, and a GPU this machine does not have, are a :class:`UsageError` (the command
    line, not a slide: exit 2 before any slide). On CUDA, cuBLAS is made deterministic (read when its first handle
    is created)."""
    import torch

    if isinstance(device, torch.device):
        dev = device
    else:
        name = check_device(device)
        if name == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda asked for, but no CUDA GPU is available",
                            fix="use --device cpu or --device auto")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--device mps asked for, but this machine has no Apple GPU",
                            fix="use --device cpu or --device auto")
    if dev.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    return dev


# --- threads -----------------------------------------------------------------------------------
def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask, e.g. a SLURM allocation)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def omp_counts(text: str) -> list[int] | None:
    """The thread counts ``OMP_NUM_THREADS=text`` gives (a list: nested levels' counts), as libgomp reads it
    (``strtoul`` for each: spaces round it, one optional ``+``, ASCII digits; 1 or more and below 2**63),
    else None: libgomp prints "Invalid value for environment variable OMP_NUM_THREADS" and ignores it.
    ``+2`` is 2 to libgomp and to torch (``std::stoi``): it was dropped with a warning (helper h43d)."""
    counts = []
    for part in text.split(","):
        if not re.fullmatch(r"\s*\+?[0-9]+\s*", part, flags=re.ASCII) or not 0 < int(part) < 2 ** 63:
            return None
        counts.append(int(part))
    return counts


def env_threads() -> int | None:
    """``OMP_NUM_THREADS`` when set to a positive number (by the user, or a cluster's job prologue: often
    the job's CPUs), else None. torch starts with that many threads; plans that pick a thread count
    themselves stay within it."""
    counts = omp_counts(os.environ.get("OMP_NUM_THREADS", ""))
    return counts[0] if counts else None


def idle_cpus() -> int:
    """CPUs not already busy with other processes (1-minute load average), at least 1."""
    cpus = cpu_count()
    try:
        busy = os.getloadavg()[0]
    except OSError:  # pragma: no cover - not on this platform
        busy = 0.0
    return max(1, min(cpus, int(cpus - busy + 0.5)))


def plan_threads(device_type: str, workers: int | None = None, cpus: int | None = None) -> tuple[int, int]:
    """``(decode threads, torch threads)`` for embedding tiles on a device.

    On CPU the cores are split: decoding gets ``workers`` (default: a third of the cores, at
    least 1) and torch the rest, so the two stages run side by side without oversubscription.
    With a GPU, torch needs few threads and decoding gets most cores.
    """
    cpus = cpu_count() if cpus is None else cpus
    if device_type == "cuda":
        w = workers or max(1, min(16, cpus - 1))
        return w, max(1, min(4, cpus - w))
    w = workers or max(1, cpus // 3)
    return w, max(1, cpus - w)


#: Below this many multiply-adds per forward pass, extra threads cost more than they give.
SMALL_WORK = 5e7


def choose_threads(work: float, requested: int = 0) -> int:
    """Torch threads for a network doing ``work`` multiply-adds per forward pass.

    ``requested`` > 0 is obeyed. Otherwise: one thread for small networks (thread start-up
    dominates), else the idle cores, at most torch's default. On a loaded machine, more threads
    than free cores make every parallel region wait for a descheduled thread: training ran 6x
    slower with 2 threads than with 1 on a 2-core machine already running two other jobs.
    """
    if requested > 0:
        return int(requested)
    if work < SMALL_WORK:
        return 1
    import torch

    return max(1, min(torch.get_num_threads(), idle_cpus()))


class TorchThreads:
    """Run torch with ``n`` threads inside the block (``None``: as they are), and give back the caller's
    count afterwards, also when the block set its own (the decode planner sets the embedding's per slide:
    a script that called ``score_batch`` or ``embed_slide`` kept running on the plan's count, 1 -> 2 on a
    2-core machine, until hunt 36d)."""

    def __init__(self, n: int | None):
        self.n = n

    def __enter__(self) -> TorchThreads:
        import torch

        self.prev = torch.get_num_threads()
        if self.n is not None and self.n != self.prev:
            torch.set_num_threads(self.n)
            log.debug("torch threads: %d", self.n)
        return self

    def __exit__(self, *exc: object) -> None:
        import torch

        if torch.get_num_threads() != self.prev:
            torch.set_num_threads(self.prev)


def _use_deterministic_algorithms(mode: bool, warn_only: bool) -> None:
    """``torch.use_deterministic_algorithms``, without importing ``torch._inductor.config`` to set its flag: that
    import took 1.1 s of CPU in every `weakstil train` process (and each training job of the workflow), for a
    setting only ``torch.compile`` reads, which WeakSTIL never calls. Set there too where it is loaded."""
    import sys

    import torch

    setter = getattr(torch._C, "_set_deterministic_algorithms", None)
    if setter is None:  # another torch: its public call
        torch.use_deterministic_algorithms(mode, warn_only=warn_only)
        return
    inductor_config = sys.modules.get("torch._inductor.config")
    if inductor_config is not None:
        inductor_config.deterministic = mode
    setter(mode, warn_only=warn_only)


class Deterministic:
    """Deterministic torch algorithms inside the block (restored afterwards)."""

    def __enter__(self) -> Deterministic:
        import torch

        self.prev = torch.are_deterministic_algorithms_enabled()
        self.prev_warn = torch.is_deterministic_algorithms_warn_only_enabled()
        _use_deterministic_algorithms(True, warn_only=True)
        return self

    def __exit__(self, *exc: object) -> None:
        _use_deterministic_algorithms(self.prev, warn_only=self.prev_warn)


# --- versions ----------------------------------------------------------------------------------
def package_version(name: str) -> str:
    """Installed version of a distribution, without importing it (timm's import alone takes seconds)."""
    from importlib.metadata import PackageNotFoundError, version

    if name == "weakstil":
        return code_version()
    if name == "torch" and (built := torch_version()) is not None:
        return built
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def torch_version() -> str | None:
    """torch's version as it reports itself (e.g. ``2.14.1+cu130``; ``None``: not installed), without
    importing it (1.3 s): a wheel's metadata may leave out the build label (``2.14.1``), so a report or
    an out-of-fold evaluation listed another torch than the model.json and score files of the same
    installation (which record ``torch.__version__``)."""
    import importlib.util
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        return str(torch.__version__)
    try:
        spec = importlib.util.find_spec("torch")
        text = Path(next(iter(spec.submodule_search_locations)), "version.py").read_text(encoding="utf-8")
    except (ImportError, ValueError, AttributeError, TypeError, StopIteration, OSError):
        return None
    found = re.search(r"^__version__\s*(?::\s*str\s*)?=\s*['\"]([^'\"]+)['\"]", text, re.M)
    return found.group(1) if found else None


def versions() -> dict[str, str]:
    """The versions recorded with a trained model or an evaluation: torch as it reports itself (e.g.
    ``2.5.1+cpu``), also where this process never imports it (an evaluation from out-of-fold
    predictions: 1.5 s of a 4.9 s ``weakstil evaluate``)."""
    import numpy as np

    return {"weakstil": code_version(), "torch": package_version("torch"), "python": platform.python_version(),
            "numpy": np.__version__}


def installed_versions(packages: tuple[str, ...]) -> dict[str, str]:
    """Python's version and those of ``packages`` that are installed."""
    out = {"python": platform.python_version()}
    for name in packages:
        version = package_version(name)
        if version != "not installed":
            out[name] = version
    return out


#: The packages whose releases can change a slide's tiles, features or scores: the slide readers and
#: JPEG decoders (the pixels), the image and stain code (tissue mask, stain, tile measurements).
PIXEL_PACKAGES = ("numpy", "scipy", "scikit-image", "opencv-python-headless", "pillow", "openslide-python",
                  "openslide-bin", "tifffile", "imagecodecs", "simplejpeg", "torchstain")


@functools.lru_cache(maxsize=None)  # looked up once a process, not once a slide
def _library_versions(extra: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    return tuple(_library_versions_now(extra).items())


def library_versions(*extra: str) -> dict[str, str]:
    """See :func:`_library_versions_now` (a copy of the process's answer)."""
    return dict(_library_versions(tuple(extra)))


def _library_versions_now(extra: tuple[str, ...]) -> dict[str, str]:
    """WeakSTIL's, Python's and the installed :data:`PIXEL_PACKAGES`' versions (and ``extra``'s, e.g.
    torch, timm), with the OpenSlide C library's as it reports itself (``openslide``): recorded in
    every tiles, features and score file, as a reader or decoder release changes pixels."""
    import sys

    out = {"weakstil": code_version(), **installed_versions(PIXEL_PACKAGES + tuple(extra))}
    torch = sys.modules.get("torch")
    if "torch" in out and torch is not None:
        out["torch"] = str(torch.__version__)  # as it reports itself (e.g. 2.5.1+cpu), as model.json's
    try:
        import openslide

        out["openslide"] = str(openslide.__library_version__)
    except (ImportError, OSError, AttributeError):  # no C library: slides are read by tifffile
        pass
    return out


#: Keys :func:`run_record` adds to a settings record (the workflow's settings.json): not settings themselves.
RECORD_KEYS = ("weakstil_version", "library_versions", "written")


def run_record() -> dict[str, object]:
    """What every output records besides its settings: WeakSTIL's and the libraries' versions (torch as it reports
    itself, without importing it) and when it was written (the workflow's settings.json had none; hunt 36b)."""
    import time

    versions = library_versions("timm")
    if (torch := torch_version()) is not None:
        versions["torch"] = torch
    return {"weakstil_version": code_version(), "library_versions": versions,
            "written": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


# --- hashes ------------------------------------------------------------------------------------
def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


#: How a Git LFS pointer file starts (a repository cloned without git-lfs holds these in place of the files).
LFS_POINTER = b"version https://git-lfs.github.com/spec/"


def lfs_pointer_note(path: str | Path) -> str | None:
    """``"is a Git LFS pointer, not the file itself"`` when ``path`` is one (a model folder kept in a
    Git repository and cloned without git-lfs: each weights file is a 130-byte text), else ``None``."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(LFS_POINTER))
    except OSError:
        return None
    return "is a Git LFS pointer, not the file itself (cloned without git-lfs)" if head == LFS_POINTER else None


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


_WARNED: set[tuple] = set()


def warn_once(logger: logging.Logger, key: tuple, message: str, *args: object) -> None:
    """``logger.warning`` once per ``key`` in this process: a slide opened by several stages
    (embedding, quality checks, heatmap) says the same thing once."""
    if key not in _WARNED:
        _WARNED.add(key)
        logger.warning(message, *args)


def _can_make(folder: Path) -> bool:
    """Whether ``folder`` is, or can be made, a folder this user writes into."""
    for there in (folder, *folder.parents):
        if there.exists():
            return there.is_dir() and os.access(there, os.W_OK | os.X_OK)
    return False


def quiet_matplotlib_home() -> None:
    """A temporary matplotlib config/cache folder when the home's cannot be written (a read-only home on a
    cluster node or in a container): matplotlib makes one itself, but says so in two warnings (7 lines,
    "it is highly recommended to set the MPLCONFIGDIR environment variable") in every run's log (hunt 35c)."""
    import atexit
    import shutil
    import tempfile

    if os.environ.get("MPLCONFIGDIR"):
        return
    home = Path.home() if os.environ.get("HOME", "") else Path("/")
    config = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config") / "matplotlib"
    cache = Path(os.environ.get("XDG_CACHE_HOME") or home / ".cache") / "matplotlib"
    if _can_make(config) and _can_make(cache):
        return
    try:
        folder = tempfile.mkdtemp(prefix="weakstil-matplotlib-")
    except OSError:  # no writable temporary folder either: matplotlib's own fallback and words
        return
    atexit.register(shutil.rmtree, folder, ignore_errors=True)
    os.environ["MPLCONFIGDIR"] = folder


def drop_bad_thread_env() -> None:
    """``OMP_NUM_THREADS`` set to what is not a positive whole number (``0``, ``-3``, ``abc``, ``2,``):
    said in one warning naming it and taken out of this run's environment before torch loads. It was left for torch's libgomp, which printed "libgomp: Invalid value for environment variable
    OMP_NUM_THREADS" (naming neither the value nor what it did) in every run and each spawned worker (helper h42b)."""
    text = os.environ.get("OMP_NUM_THREADS")
    # libgomp takes spaces round each number (" 2", "4, 2"): those are kept, as env_threads reads them; only
    # ASCII digits ("²".isdigit() is true, and int() of it raised a ValueError out of the CLI)
    if text == "":  # `export OMP_NUM_THREADS=$SLURM_CPUS_PER_TASK` outside a job: unset, taken out without a word
        del os.environ["OMP_NUM_THREADS"]  # (libgomp printed its bare line for it too, helper h42g)
        return
    if text is None or omp_counts(text) is not None:  # (' 2', '+2', '4,2': libgomp's and torch's numbers)
        return
    del os.environ["OMP_NUM_THREADS"]
    log.warning("OMP_NUM_THREADS=%r is not a whole number of threads of 1 or more: ignored (torch and the plans "
                "pick the thread count; set it to a number such as 4, or unset it, and use --threads to choose)", text)
