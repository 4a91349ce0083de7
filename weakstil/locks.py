"""Locks that let several runs share one ``--out``: each output is written by one run at a time.

A lock on ``DIR/NAME`` is an exclusive ``flock`` on ``DIR/.NAME.lock``. The kernel drops a flock
when its process dies, however it dies (``kill -9``, a node reboot of an NFSv4 client, an
out-of-memory kill), so a lock is never left behind: the next run takes it at once. The file
records the holder's pid and host for the message of a run that waits, and is removed when the
lock is released (safely: a run that took the lock on a file just removed notices it and tries
again).

Per-slide writers (``tile``, ``embed``, ``score``, ``tumorbed apply``) take the slide's lock around
"is it done? if not, write it", so two runs never write one slide and never both do the same
slide: :func:`in_turn` gives a batch's slides to the run one by one, leaves a slide another run is
writing to the end of the batch and then waits for it (it is usually finished by then and is
skipped). Folder writers (``pretrain``, ``train``, ``evaluate``, ``report``, ``tumorbed train``)
refuse to start while another run writes the same folder.

On a file system without ``flock`` (some network mounts) a warning is logged once and runs go
on unlocked. Some cluster file systems take a ``flock`` on each node alone (BeeGFS by default, NFS
mounted with ``local_lock=flock`` or ``nolock``): there a lock file naming another host may belong
to a live run whose lock this node cannot see. A holder renews its lock files' time every
:data:`HEARTBEAT_S`, and a lock file of another host renewed within :data:`STALE_S` is waited for
(said, with how to clear it); an older one is taken over with a warning (that run died).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import TypeVar

from weakstil.errors import UsageError, WeakSTILError

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Locks this process holds: lock file -> (fd, depth). A lock is re-entrant within a process
#: (``score`` holds a slide's lock while ``embed_slide`` takes the same one).
_HELD: dict[str, list[int]] = {}
_GUARD = threading.Lock()
_WARNED_NO_FLOCK = False


#: A run waiting for another run's lock notes it this often (seconds) ...
NOTE_EVERY_S = 300.0
#: ... and checks whether it is free this often.
POLL_S = 0.2
#: A lock file of another host renewed this recently may be a live run's (its flock unseen here) ...
STALE_S = 120.0
#: ... as a holder renews the time of its lock files four times as often.
HEARTBEAT_S = STALE_S / 4
_HEARTBEAT: threading.Thread | None = None
_HOLDER = re.compile(r"pid (\d+) on (\S+)")


class BusyError(WeakSTILError):
    """Another run is writing the same output."""


def lock_timeout() -> float | None:
    """How long a run waits for another run's lock (``WEAKSTIL_LOCK_TIMEOUT``, seconds; unset or
    0: as long as it takes)."""
    text = os.environ.get("WEAKSTIL_LOCK_TIMEOUT", "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value >= 0):  # 'nan' and '-1' waited for ever, without a word
        raise UsageError(f"WEAKSTIL_LOCK_TIMEOUT={text!r} is not a number of seconds",
                         fix="set it to seconds, e.g. 3600, or unset it to wait as long as it takes")
    return value if value > 0 else None


def lock_file(target: str | Path) -> Path:
    """The lock file of ``target``: ``.NAME.lock`` beside it."""
    target = Path(target)
    return target.with_name(f".{target.name}.lock")


def _me() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()}"


class OutputLock:
    """The exclusive lock of one output (a file or a folder); a context manager (blocking)."""

    def __init__(self, target: str | Path):
        self.target = Path(target)
        self.path = lock_file(self.target)
        self._key = os.path.abspath(self.path)
        self._fd: int | None = None
        self._unlocked = False  #: no flock on this file system: held without a lock
        self._made_folder = False  #: the lock made the output folder: removed again if left empty
        self.held = False  #: this object holds the lock (once; the process may hold it deeper)
        self.foreign: str | None = None  #: why a lock file of another host was not taken (acquire without waiting)

    # -- who holds it -------------------------------------------------------------------------
    def holder(self) -> str:
        """Who holds the lock, as its file says (``pid N on HOST``), or ``another run``."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            text = ""
        return text or "another run"

    # -- taking and giving back -----------------------------------------------------------------
    def acquire(self, blocking: bool = True, on_wait: Callable[[str], None] | None = None) -> bool:
        """Take the lock; ``False`` when ``blocking`` is off and another run holds it.
        ``on_wait(holder)`` is called once before waiting."""
        with _GUARD:
            if self.held:
                return True
            held = _HELD.get(self._key)
            if held is not None:
                held[1] += 1
                self.held = True
                return True
        waited, vanished, waiting_since = False, 0, 0.0
        while True:
            if not self.path.parent.is_dir():
                self.path.parent.mkdir(parents=True, exist_ok=True)
                self._made_folder = True
            try:
                fd = _open_lock(self.path)
            except FileNotFoundError as exc:  # another run removed the empty folder just now: try again,
                vanished += 1  # but not for ever: a dangling link as the lock file, or a file system that
                if vanished < 20:  # refuses new files with ENOENT (/proc, some FUSE mounts), spun at full CPU
                    continue
                link = os.readlink(self.path) if self.path.is_symlink() else None
                raise WeakSTILError(f"cannot create the lock file {self.path.name} in {self.path.parent} "
                                    f"({exc.strerror}" + (f": it is a link to {link}, which is not there)" if link
                                                          else ")"), path=self.target,
                                    fix=f"remove the link {self.path}" if link else
                                    "write to a folder on an ordinary writable disk") from None
            except OSError as exc:  # a folder this run may only read (a shared read-only feature cache):
                if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM):  # a write there fails on its own
                    raise
                log.debug("%s: folder not writable (%s); read without a lock", self.path.parent, exc.strerror)
                with _GUARD:
                    _HELD[self._key] = [None, 1]
                self._unlocked = self.held = True
                return True
            try:
                if not self._flock(fd, blocking=False):
                    if not blocking:
                        os.close(fd)
                        return False
                    if on_wait is not None and not waited:
                        on_wait(self.holder())
                    waited = True
                    self._wait(fd)
                # the holder may have removed the file as it let go: then lock the new one
                try:
                    same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
                except FileNotFoundError:
                    same = False
            except BaseException:
                os.close(fd)
                raise
            foreign = _live_elsewhere(fd, self.path) if same and not self._unlocked else None
            if same and foreign is None:
                break
            os.close(fd)  # (lets go of the flock)
            if foreign is not None:
                if not blocking:
                    self.foreign = foreign
                    return False
                if not waited:  # (not on_wait's "is writing it; waiting": whether it is, is unknown)
                    log.warning("%s: %s; waiting until its lock file is %g s old (if that run is gone, delete %s)",
                                self.target, foreign, STALE_S, self.path)
                waited = True
                waiting_since = waiting_since or time.monotonic()
                timeout = lock_timeout()
                if timeout is not None and time.monotonic() - waiting_since >= timeout:
                    raise BusyError(f"{foreign}; waited {timeout:g} s (WEAKSTIL_LOCK_TIMEOUT)", path=self.target,
                                    fix=f"if that run is gone, delete {self.path}; else wait for it")
                time.sleep(POLL_S)
        if not self._unlocked:
            _say_taken_over(fd, self.target)
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{_me()}\n".encode())
        except OSError:  # a full disk must not stop the run that is about to report it
            pass
        with _GUARD:
            _HELD[self._key] = [fd, 1]
        _start_heartbeat()
        self._fd = fd
        self.held = True
        return True

    def _wait(self, fd: int) -> None:
        """Wait for the lock on ``fd``: a note every :data:`NOTE_EVERY_S` while another run holds
        it, and a :class:`BusyError` after ``WEAKSTIL_LOCK_TIMEOUT`` seconds when that is set (a
        holder that hangs, e.g. a job stopped on an NFS client, would otherwise block for good)."""
        timeout = lock_timeout()
        start = time.monotonic()
        next_note = start + NOTE_EVERY_S
        while not self._flock(fd, blocking=False):
            now = time.monotonic()
            if timeout is not None and now - start >= timeout:  # (acquire closes fd)
                raise BusyError(f"another weakstil run ({self.holder()}) has been writing it for over "
                                f"{timeout:g} s (WEAKSTIL_LOCK_TIMEOUT)", path=self.target,
                                fix="if that run hangs, stop it and run again; else raise WEAKSTIL_LOCK_TIMEOUT")
            if now >= next_note:
                log.warning("%s: still waiting for %s (%.0f min); if that run hangs, stop it (WEAKSTIL_LOCK_TIMEOUT "
                            "sets a limit)", self.target, self.holder(), (now - start) / 60)
                next_note += NOTE_EVERY_S
            time.sleep(POLL_S)

    def _flock(self, fd: int, blocking: bool) -> bool:
        import fcntl

        global _WARNED_NO_FLOCK
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            return True
        except BlockingIOError:
            return False
        except OSError as exc:
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            if not _WARNED_NO_FLOCK:
                log.warning("%s: the file system does not support locks (%s); runs sharing this folder are not "
                            "kept apart", self.path.parent, os.strerror(exc.errno))
                _WARNED_NO_FLOCK = True
            self._unlocked = True
            return True

    def release(self) -> None:
        with _GUARD:
            if not self.held:
                return
            self.held = False
            held = _HELD.get(self._key)
            if held is None:
                return
            held[1] -= 1
            if held[1] > 0:
                return
            del _HELD[self._key]
            fd = held[0]
        if fd is None:  # held without a lock file (a read-only folder)
            return
        try:
            os.unlink(self.path)  # while still holding it: see acquire()
        except OSError:
            pass
        try:
            import fcntl

            fcntl.flock(fd, fcntl.LOCK_UN)
        except OSError:
            pass
        os.close(fd)
        self._fd = None
        if self._made_folder:  # a run that wrote nothing leaves no empty --out behind
            try:
                os.rmdir(self.path.parent)
            except OSError:
                pass

    def __enter__(self) -> OutputLock:
        self.acquire(blocking=True, on_wait=lambda who: log.info("%s: %s is writing it; waiting", self.target, who))
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _open_lock(path: Path) -> int:
    """Open (or make) a lock file. One that another user left, which this one may not write, in a
    folder this one may write, is opened to read: its flock still keeps the runs apart (such a lock
    was ignored, so two users' runs wrote one slide together)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except PermissionError:
        if not (path.is_file() and os.access(path.parent, os.W_OK)):
            raise  # (a folder this run may only read: see acquire)
        return os.open(path, os.O_RDONLY)
    try:  # as writable as its folder whatever the umask (0644 with 022): other users of a shared folder open it
        if os.fstat(fd).st_uid == os.geteuid():
            os.fchmod(fd, 0o666 & os.stat(path.parent).st_mode)
    except OSError:
        pass
    return fd


def _holder_in(fd: int) -> tuple[str, str] | None:
    """(pid, host) that the lock file open as ``fd`` names, or None (empty, garbage)."""
    try:
        found = _HOLDER.fullmatch(os.pread(fd, 512, 0).decode("utf-8", "replace").strip())
    except OSError:
        return None
    return (found.group(1), found.group(2)) if found else None


def _live_elsewhere(fd: int, path: Path) -> str | None:
    """Why the lock file open (and flocked) as ``fd`` may still be a live run's: it names another
    host and was renewed within :data:`STALE_S` (that host's flock may not reach this one); else None."""
    holder = _holder_in(fd)
    if holder is None or holder[1] == socket.gethostname():  # this host: the kernel's flock is the truth
        return None
    age = time.time() - os.fstat(fd).st_mtime
    if age >= STALE_S:
        return None
    return (f"pid {holder[0]} on {holder[1]} may still be writing it (its lock file {path.name} was renewed "
            f"{max(age, 0):.0f} s ago, and this file system's locks may not reach across hosts)")


def _say_taken_over(fd: int, target: Path) -> None:
    """A lock file left by a run that died (its flock gone, no renewal): said, not taken silently."""
    holder = _holder_in(fd)
    if holder is None or holder == (str(os.getpid()), socket.gethostname()):
        return
    age = time.time() - os.fstat(fd).st_mtime
    level = logging.WARNING if holder[1] != socket.gethostname() else logging.INFO
    log.log(level, "%s: taking over the lock left by pid %s on %s (not renewed for %.0f s: that run stopped)",
            target, holder[0], holder[1], age)


def _start_heartbeat() -> None:
    """Renew the time of every lock file held, every :data:`HEARTBEAT_S`, from one daemon thread."""
    global _HEARTBEAT
    with _GUARD:
        if _HEARTBEAT is not None and _HEARTBEAT.is_alive():
            return
        _HEARTBEAT = threading.Thread(target=_renew_held, name="weakstil-lock-heartbeat", daemon=True)
        _HEARTBEAT.start()


def _renew_held() -> None:
    while True:
        time.sleep(HEARTBEAT_S)
        renew_held()


def renew_held() -> None:
    """Renew the time of the lock files this process holds (a sign of life to runs on other hosts)."""
    with _GUARD:  # under the guard: release() closes an fd only after dropping it from _HELD
        for fd, _depth in _HELD.values():
            if fd is not None:
                try:
                    os.utime(fd)
                except OSError:
                    pass


def hold_folder(folder: str | Path, command: str) -> OutputLock:
    """The lock of an output folder, taken without waiting: another run writing ``folder`` is
    one :class:`BusyError` line."""
    lock = OutputLock(Path(folder))
    if not lock.acquire(blocking=False):
        if lock.foreign is not None:
            raise BusyError(lock.foreign, path=folder, fix=f"if that run is gone, delete {lock.path}; else wait for "
                                                         f"it to finish, or give this '{command}' another --out")
        raise BusyError(f"another weakstil run ({lock.holder()}) is writing this folder", path=folder,
                        fix=f"wait for it to finish, or give this '{command}' another --out")
    return lock


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def in_turn(items: Iterable[T], target_of: Callable[[T], Path], written_meanwhile: set[T] | None = None,
            on_busy: Callable[[T, BusyError], None] | None = None,
            stop: Callable[[], bool] | None = None) -> Iterator[T]:
    """Yield ``items`` with the lock of ``target_of(item)`` held until the next one is asked for.

    An item whose output another run is writing is put off to the end, then waited for, so two
    runs over the same slides share them out instead of taking turns on each. ``written_meanwhile``
    gets the items whose output another run wrote after this batch began: an ``--overwrite`` run
    does not redo them (two runs with --overwrite each did every slide: twice the work, no speed-up).
    ``on_busy(item, error)``: an item another run held past ``WEAKSTIL_LOCK_TIMEOUT``, and the rest
    go on (without it the error is raised: the items put off after it were left out unsaid). ``stop()`` true
    (``on_busy`` met a full disk writing that item's error): no more items, none waited for (each slide another
    run held was waited for, up to ``WEAKSTIL_LOCK_TIMEOUT`` or for good, after the batch had stopped; h43d)."""
    lock_timeout()  # a bad WEAKSTIL_LOCK_TIMEOUT is said before the first slide, not at the first wait (hours in)
    items = list(items)
    at_start = [_signature(target_of(item)) for item in items] if written_meanwhile is not None else []
    later: list[int] = []

    def note(i: int) -> None:  # (under the item's lock: that run finished it)
        if written_meanwhile is not None and (now := _signature(target_of(items[i]))) is not None \
                and now != at_start[i]:
            written_meanwhile.add(items[i])

    def stopped() -> bool:
        return stop is not None and stop()

    for i, item in enumerate(items):
        if stopped():
            return
        lock = OutputLock(target_of(item))
        try:
            if not lock.acquire(blocking=False):
                later.append(i)
                continue
        except (OSError, WeakSTILError) as exc:
            _lock_failed(item, exc, lock.target, on_busy)
            continue
        try:
            note(i)
            yield item
        finally:
            lock.release()
    for i in later:
        if stopped():
            return
        lock = OutputLock(target_of(items[i]))
        try:
            lock.__enter__()
        except BusyError as exc:
            if on_busy is None:
                raise
            on_busy(items[i], exc)
            continue
        except (OSError, WeakSTILError) as exc:
            _lock_failed(items[i], exc, lock.target, on_busy)
            continue
        try:
            note(i)
            yield items[i]
        finally:
            lock.release()


def _lock_failed(item, exc: OSError | WeakSTILError, target: Path,
                 on_busy: Callable[[T, WeakSTILError], None] | None) -> None:
    """An item whose lock file could not be made (a slide name that makes ``.NAME.h5.lock`` longer than the
    file system allows, a dangling link as the lock file): that item's error (``on_busy``), and the rest go
    on. It was raised out of the batch: the first such slide of ``score a_250_char_name.svs b.svs`` ended the
    run with nothing scored, a later one left the slides after it undone (helper h42b). A full or read-only
    disk stops the batch, as everywhere (raised)."""
    from weakstil.errors import OutputError, from_os_error

    if isinstance(exc, UsageError):
        raise exc
    err = from_os_error(exc, target) if isinstance(exc, OSError) else exc
    if on_busy is None or (isinstance(err, OutputError) and err.stops_batch):
        raise err from None
    on_busy(item, err)
