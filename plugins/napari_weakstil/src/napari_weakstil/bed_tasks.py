"""The bed box's long steps (Edit bed, Rescore, Save bed) off the GUI thread.

On a big slide's fragmented bed (100,000 tiles, 5,293 outlines, 545,000 vertices) tracing the bed, building the
layer's triangles, rasterising the edited bed and writing it take 14-20 s each on 2 busy cores; run on the GUI
thread they froze the viewer without a word (read as a hang). A step now computes in a worker thread while a busy
bar and the seconds run in the bed box and its buttons are disabled; its result is applied in the GUI thread, and
an error is said in the widget (not lost in the thread). Called from Python (``editor.rescore()``), a step runs at
once and returns its result, as before; the buttons run it in the background.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Callable

from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QProgressBar

log = logging.getLogger(__name__)


class Said(Exception):
    """A step's failure in the widget's words (shown as it is)."""


def failure_text(what: str, exc: BaseException) -> str:
    """A step's error in one line: a WeakSTIL error's own line (it names the file and the fix), else what failed."""
    from weakstil.errors import WeakSTILError

    if isinstance(exc, Said):
        return str(exc)
    if isinstance(exc, WeakSTILError):
        return exc.one_line()
    return f"{what} failed ({type(exc).__name__}: {exc})."


class BedTasks:
    """One long step at a time for the bed box (``editor``): :meth:`run`."""

    def __init__(self, editor: Any):  # the BedEditor (not imported: it imports this module)
        self.editor = editor
        self.worker: Any = None
        self.what = ""
        self.started = 0.0
        self.gone = False
        self.bar = QProgressBar()
        self.bar.setRange(0, 0)  # busy: a rasterisation or a triangulation says nothing of its progress
        self.bar.setTextVisible(False)
        self.bar.setVisible(False)
        self.timer = QTimer(editor)
        self.timer.setInterval(1000)
        self.timer.timeout.connect(self._tick)
        editor.destroyed.connect(self._on_gone)

    @property
    def busy(self) -> bool:
        """Whether a step is running in the background."""
        return self.worker is not None

    def run(self, what: str, compute: Callable[[], Any], apply: Callable[[Any], Any], background: bool,
            failed: Callable[[BaseException], str] | None = None) -> Any:
        """``apply(compute())``: at once (returns what ``apply`` returns), or with ``compute`` in a worker thread and
        ``apply`` in the GUI thread once it returns (returns None). ``what``: the step, said while it runs;
        ``failed``: an error's line (default :func:`failure_text`)."""
        from weakstil.errors import WeakSTILError

        say = failed or (lambda exc: failure_text(what, exc))
        if not background:
            try:
                out = compute()
            except (WeakSTILError, Said, OSError) as exc:  # said, as the buttons say them; a bug raises
                self.editor.owner._status(say(exc), error=True)
                return None
            return apply(out)
        if self.busy:
            self.editor.owner._status(f"{self.what} is still running: wait for it to finish.", error=True)
            return None
        from napari.qt.threading import create_worker

        self.what, self.started = what, time.perf_counter()
        self._set_busy(True)
        self.editor.owner._status(f"{what}…")
        # an own "errored" handler: without one, superqt raises the error again in the GUI thread
        worker = create_worker(compute, _start_thread=False, _connect={"errored": lambda exc: self._failed(exc, say)})
        worker.returned.connect(lambda out: self._returned(apply, out))
        worker.finished.connect(self._finished)
        self.worker = worker
        worker.start()
        return None

    def wait(self, timeout_s: float = 300.0) -> None:
        """Process Qt events until the background step (if any) has been applied (scripts and benchmarks)."""
        from qtpy.QtWidgets import QApplication

        end = time.perf_counter() + timeout_s
        while self.busy and time.perf_counter() < end:
            QApplication.processEvents()
            time.sleep(0.01)
        if self.busy:
            raise TimeoutError(f"{self.what}: still running after {timeout_s:.0f} s")

    # -- in the GUI thread --------------------------------------------------------------------
    def _set_busy(self, busy: bool) -> None:
        ed = self.editor
        for button in (ed.edit_button, ed.rescore_button, ed.save_button):
            button.setEnabled(not busy)
        self.bar.setVisible(busy)
        if busy:
            self.timer.start()
        else:
            self.timer.stop()

    def _tick(self) -> None:
        if self.busy and not self.gone:
            self.editor.owner._status(f"{self.what}… {time.perf_counter() - self.started:.0f} s")

    def _returned(self, apply: Callable[[Any], Any], out: Any) -> None:
        if self.gone:
            return
        self.worker = None  # applied as the step's end: a step it starts (none yet) may run
        self._set_busy(False)
        try:
            apply(out)
        except Exception as exc:  # noqa: BLE001  (said in the widget, not lost in Qt's event loop)
            log.exception("%s: applying its result failed", self.what)
            self.editor.owner._status(failure_text(self.what, exc), error=True)

    def _failed(self, exc: BaseException, say: Callable[[BaseException], str]) -> None:
        if self.gone:
            return
        log.debug("%s failed", self.what, exc_info=exc)
        self.timer.stop()  # (no tick of its seconds over the error before the worker's end arrives)
        self.editor.owner._status(say(exc), error=True)

    def _finished(self) -> None:
        if self.gone:
            return
        self.worker = None
        self._set_busy(False)
        if self.editor.owner.status_label.text().startswith(f"{self.what}…"):  # no step's end said it: not left running
            self.editor.owner._status(f"{self.what}: done.")

    def _on_gone(self, *args: Any) -> None:
        self.gone = True
        self.timer.stop()
