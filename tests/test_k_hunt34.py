"""Lock files of another host (hunt 34k): several ``weakstil score``/``embed`` runs on cluster nodes share one --out.

A slide's lock is a ``flock`` on ``.NAME.lock``, whose text names the holder (``pid N on HOST``). On
file systems whose flock is per node (BeeGFS by default, NFS mounted ``local_lock=flock`` or
``nolock``) a run on node B does not see node A's flock. Old: a lock file naming another host was
taken at once and in silence (``acquire`` True after 0 s, no log line), so two nodes wrote one
slide together; a lock file left by a run that died was taken over without a word either.
Now: a holder renews its lock files' time every 30 s; a lock file of another host renewed within
120 s is waited for (a warning naming the holder and the file to delete if that run is gone; with
WEAKSTIL_LOCK_TIMEOUT a BusyError saying the same); an older one is taken over with a warning.
Lock files of this host (the kernel's flock is the truth there), empty or garbage ones are taken
as before.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import pytest

from weakstil import locks


def _foreign(tmp_path, age_s: float = 0.0):
    target = tmp_path / "s.h5"
    lock = locks.lock_file(target)
    lock.write_text("pid 4242 on node-b-of-the-cluster\n")
    if age_s:
        os.utime(lock, (time.time() - age_s,) * 2)
    return target, lock


def test_a_fresh_lock_file_of_another_host_is_not_taken_and_says_how_to_clear_it(tmp_path, monkeypatch, caplog):
    target, lock = _foreign(tmp_path)
    held = locks.OutputLock(target)
    assert held.acquire(blocking=False) is False  # old: True (taken in silence)
    assert "node-b-of-the-cluster" in held.foreign and lock.is_file()
    monkeypatch.setenv("WEAKSTIL_LOCK_TIMEOUT", "0.3")
    with caplog.at_level(logging.WARNING, logger="weakstil.locks"), pytest.raises(locks.BusyError) as busy:
        with locks.OutputLock(target):
            pass
    assert f"delete {lock}" in busy.value.one_line()
    assert f"delete {lock}" in caplog.text  # said while waiting, not only at the timeout
    folder, folder_lock = tmp_path / "model", locks.lock_file(tmp_path / "model")
    folder_lock.write_text("pid 4242 on node-b-of-the-cluster\n")
    with pytest.raises(locks.BusyError, match="delete"):
        locks.hold_folder(folder, "train")


def test_a_stale_lock_file_of_another_host_is_taken_over_with_a_warning(tmp_path, caplog):
    target, lock = _foreign(tmp_path, age_s=3600)
    with caplog.at_level(logging.WARNING, logger="weakstil.locks"):
        with locks.OutputLock(target):
            assert lock.read_text().strip() == f"pid {os.getpid()} on {socket.gethostname()}"
    assert "taking over the lock left by pid 4242 on node-b-of-the-cluster" in caplog.text  # old: no word


@pytest.mark.parametrize("text", ["", "garbage \x00\n", f"pid 999999 on {socket.gethostname()}\n"])
def test_empty_garbage_and_this_hosts_lock_files_are_taken_at_once(tmp_path, text):
    target = tmp_path / "s.h5"
    locks.lock_file(target).write_text(text)
    held = locks.OutputLock(target)
    assert held.acquire(blocking=False) is True
    held.release()
    assert not locks.lock_file(target).exists()


def test_a_holder_renews_its_lock_file_so_a_live_run_never_looks_stale(tmp_path):
    target = tmp_path / "s.h5"
    with locks.OutputLock(target):
        os.utime(locks.lock_file(target), (time.time() - 3600,) * 2)
        assert locks._HEARTBEAT is not None and locks._HEARTBEAT.is_alive()
        locks.renew_held()  # what the heartbeat thread does every HEARTBEAT_S
        assert time.time() - locks.lock_file(target).stat().st_mtime < 60


def test_in_turn_tells_which_outputs_another_run_wrote_since_the_batch_began(tmp_path):
    """What lets an --overwrite run skip them (see test_faults' side-by-side --overwrite runs)."""
    targets = {name: tmp_path / f"{name}.h5" for name in "abc"}
    targets["a"].write_text("earlier run")
    meanwhile: set[str] = set()
    for name in locks.in_turn("abc", targets.get, meanwhile):
        if name == "a":  # another run replaces c's output (a new file, as atomic writes do)
            (tmp_path / "new").write_text("other run")
            os.replace(tmp_path / "new", targets["c"])
    assert meanwhile == {"c"}


def test_a_batch_goes_on_past_each_slide_another_run_holds_too_long(tmp_path, monkeypatch, capsys):
    """embed/tile/tumorbed apply: the first put-off output another (hung) run held past
    WEAKSTIL_LOCK_TIMEOUT raised out of the batch, and the put-off ones after it were never named.
    Now each is one error line, counted, and the rest go on."""
    import subprocess
    import sys

    from weakstil.cli.batch import for_each_slide
    from weakstil.cli.errors import Failures

    names = ["a", "b", "c", "d"]
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; fs = [open(p, 'w') for p in sys.argv[1:]]; "
                               "[fcntl.flock(f, fcntl.LOCK_EX) for f in fs]; print('held', flush=True); time.sleep(60)",
                               str(tmp_path / ".b.h5.lock"), str(tmp_path / ".c.h5.lock")],
                              stdout=subprocess.PIPE, text=True)
    done: list[str] = []
    failures = Failures()
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("WEAKSTIL_LOCK_TIMEOUT", "0.2")
        try:
            for_each_slide(names, failures, lambda n: tmp_path / f"{n}.h5", done.append)
        except locks.BusyError:  # old: out of the batch at b
            pass
    finally:
        holder.kill()
        holder.wait()
    errors = capsys.readouterr().err
    assert done == ["a", "d"] and failures.count == 2
    assert "b.h5" in errors and "c.h5" in errors  # old: c never named


def test_lock_files_in_a_shared_folder_can_be_taken_by_its_other_users(tmp_path, monkeypatch):
    """A lab folder (group-writable, setgid) shared by several users: a lock file was made 0644 by the
    umask, so another user's run could not open it to write, and ran without any lock (a debug line
    only): both users' runs wrote one slide together. Now a lock file is as writable as its folder,
    and one that still cannot be written (an older run's) is opened to read: its flock still counts."""
    shared = tmp_path / "lab"
    shared.mkdir()
    shared.chmod(0o2775)
    old_umask = os.umask(0o022)
    try:
        with locks.OutputLock(shared / "s.h5"):
            assert locks.lock_file(shared / "s.h5").stat().st_mode & 0o777 == 0o664  # old: 0o644
    finally:
        os.umask(old_umask)
    import subprocess
    import sys

    theirs = locks.lock_file(shared / "t.h5")
    holder = subprocess.Popen([sys.executable, "-c", "import fcntl, sys, time; f = open(sys.argv[1], 'w'); "
                               "fcntl.flock(f, fcntl.LOCK_EX); print('held', flush=True); time.sleep(60)", str(theirs)],
                              stdout=subprocess.PIPE, text=True)
    real_open = os.open

    def as_another_user(path, flags, *mode):  # (the tests run as root, whom permissions do not stop)
        if str(path) == str(theirs) and flags & (os.O_RDWR | os.O_WRONLY):
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, flags, *mode)

    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setattr(os, "open", as_another_user)
        assert locks.OutputLock(shared / "t.h5").acquire(blocking=False) is False  # old: True (no lock at all)
    finally:
        holder.kill()
        holder.wait()
