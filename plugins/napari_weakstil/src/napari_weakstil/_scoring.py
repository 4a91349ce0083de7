"""One slide scored for the dock widget in a worker thread, and its result put on the canvas.

The thread runs ``weakstil.score.score_batch`` (the same code as ``weakstil score``); its per-tile
callback reports progress to the widget and is where a cancellation takes effect: Cancel, or the
widget being deleted (the viewer closed), makes the next callback raise :class:`ScoringCancelled`,
which ``score_batch`` lets through after removing the slide's unfinished outputs, as on Ctrl-C.
Nothing touches the widget once Qt has deleted it.

The result is drawn only over the slide layer it was scored from: one closed or replaced meanwhile
gets no layers (the files are written all the same). A Scan µm/px and Allow upsampling reach the
slide layer only once a score with them has succeeded. A big bed's outline follows the result's other layers,
built in a worker thread (``outline_later``), as on File > Open.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class ScoringCancelled(Exception):
    """Scoring stopped by Cancel or by the widget closing (an Exception, not a KeyboardInterrupt:
    the worker thread reports Exceptions and would let a KeyboardInterrupt end the thread)."""


class ScoringJob:
    """Score ``layer``'s slide with ``opts`` for ``widget`` (:meth:`start`, :meth:`cancel`)."""

    def __init__(self, widget: Any, layer: Any, opts: Any, scan_mpp: float | None):
        # widget: the ScoringWidget (not imported: it imports this module)
        self.widget = widget
        self.layer_id = layer.unique_id  # the very layer: a slide closed and opened again is another
        self.slide_path = Path(layer.metadata["slide_path"])
        self.opts = opts
        self.scan_mpp = scan_mpp  #: the Scan µm/px entered (None: the file's own)
        self.stop = threading.Event()  #: set by Cancel or the widget's deletion; read by the thread
        self.gone = False  #: the widget has been deleted: no more calls on it
        self.worker: Any = None
        self.done = False  #: the run has ended (returned, failed or cancelled)
        self.skipped = False  #: the slide was already scored (same file, model and settings): not scored again
        widget.destroyed.connect(self._on_widget_destroyed)

    def start(self) -> Any:
        from napari.qt.threading import create_worker

        stop, emit, slide_path, opts = self.stop, self.widget.tiles_progress.emit, self.slide_path, self.opts

        def on_tiles(_id: str, done: int, total: int) -> None:
            if stop.is_set():
                raise ScoringCancelled(slide_path.name)
            try:
                emit(done, total)
            except RuntimeError as exc:  # the widget was deleted since the check above
                stop.set()
                raise ScoringCancelled(slide_path.name) from exc

        def run() -> dict[str, Any]:
            from weakstil.score import score_batch

            # its error lines are the command line's words: the widget says them in its own (_on_returned)
            rows = score_batch([slide_path], opts, progress=False, on_tiles=on_tiles,
                               say_error=lambda text: log.debug("score_batch: %s", text))
            self.skipped = bool(rows.skipped)  # read in the GUI thread once this has returned
            return rows[0]

        # an own "errored" handler: without one, superqt raises the error again in the GUI thread,
        # which outside napari.run() aborts Python
        self.worker = create_worker(run, _start_thread=False, _connect={"errored": self._on_error})
        self.worker.returned.connect(self._on_returned)
        self.worker.finished.connect(self._on_finished)
        self.worker.start()
        return self.worker

    def cancel(self) -> None:
        """Stop at the next batch of tiles (the slide's unfinished outputs are removed)."""
        if not self.stop.is_set():
            self.stop.set()
            self.widget._status(f"Cancelling {self.slide_path.name}…")

    def _on_widget_destroyed(self, *args: Any) -> None:
        self.gone = True
        self.stop.set()
        if self.worker is not None:
            self.worker.quit()

    # -- in the GUI thread, after the run ----------------------------------------------------
    def _on_finished(self) -> None:
        self.done = True
        if not self.gone:
            self.widget.destroyed.disconnect(self._on_widget_destroyed)  # a widget scores many slides
            self.widget._scoring_ended()

    def _on_error(self, exc: BaseException) -> None:
        from weakstil.errors import WeakSTILError

        if self.gone:
            return
        w = self.widget
        w.progress.setRange(0, 1)
        w.progress.setFormat("")
        if isinstance(exc, ScoringCancelled):
            w._status(f"Scoring {self.slide_path.name} cancelled; it has no result (scoring it again starts over).")
            return
        log.debug("scoring %s failed", self.slide_path, exc_info=exc)
        text = exc.one_line() if isinstance(exc, WeakSTILError) else \
            f"{self.slide_path.name}: scoring failed ({type(exc).__name__}: {exc})."
        w._status(text, error=True)

    def _on_returned(self, row: dict[str, Any]) -> None:
        if self.gone:
            return
        w = self.widget
        w.last_row = row
        total = int(row.get("n_tiles") or 0)
        w.progress.setRange(0, max(total, 1))
        w.progress.setValue(max(total, 1))
        w.progress.setFormat(f"{total:,} tiles" if total else "")
        if row.get("status") == "error":
            w._status(self._error_text(str(row.get("error"))), error=True)
            w.stil_label.setText("sTIL: — (error)")
            w._show_qc({"qc": row["qc"]} if row.get("qc") else {})  # no "no flags" beside a failed slide
            return
        self._show(row)

    def _error_text(self, text: str) -> str:
        """The slide's error in the widget's words: its fields, not the command line's options."""
        import re

        text = text.replace("pass --slide-mpp", "set Scan µm/px (--slide-mpp)")
        # a slide recording no (or an implausible, or non-square) µm/px: the fix named the command line's
        # --slide-mpp and a --slides CSV's mpp column, which the widget has not (its field is Scan µm/px)
        text = re.sub(r"(?:pass|give) (the (?:real )?scan(?:'s µm/px| resolution)|the resolution) with --slide-mpp",
                      r"set Scan µm/px (--slide-mpp) to \1", text)
        text = re.sub(r";\s*in a batch, in an mpp column of a --slides CSV(?: \([^)]*\))?", "", text)
        text = text.replace("pass --allow-upsample", "tick Allow upsampling (--allow-upsample)")
        if self.scan_mpp is not None:
            text += f" (Scan µm/px is set to {self.scan_mpp:g}: check it against the scan.)"
        return text

    def _slide_layer(self) -> Any | None:
        for ly in self.widget.viewer.layers:
            if ly.unique_id == self.layer_id and ly.metadata.get("slide_path") == str(self.slide_path):
                return ly
        return None

    def _show(self, row: dict[str, Any]) -> None:
        from napari_weakstil import outline_later
        from napari_weakstil.result_layers import read_result, result_layers
        from napari_weakstil.slide_layers import set_scan_mpp

        w, out = self.widget, self.opts.out
        h5 = out / f"{row['slide_id']}.h5"
        layer = self._slide_layer()
        if layer is None:  # closed or replaced while it scored: its result would land on another slide
            w._status(f"Scored {self.slide_path.name} -> {out}, but its slide layer was closed meanwhile: the result "
                      f"is not shown (open {h5.name} to see it).")
            return
        res = read_result(h5)
        if res.slide_mpp and (layer.metadata.get("mpp") is None or layer.metadata.get("mpp_source") == "override"):
            # shown in pixels, or at a Scan µm/px entered before: now at the one it was scored with
            set_scan_mpp(layer, float(res.slide_mpp))
        layer.metadata["allow_upsample"] = bool(self.opts.allow_upsample)  # what the widget shows for this slide
        for ly in [ly for ly in w.viewer.layers if ly.metadata.get("weakstil_kind") == "result"
                   and ly.metadata.get("result_path") == str(res.path)]:  # this file's older layers only
            w.viewer.layers.remove(ly)
        # placed at the µm/px the layer is shown at (result_layers rescales the masks, which are in
        # the µm of the µm/px the slide was scored at)
        mpp = layer.metadata.get("mpp")
        # a big bed's outline: traced and built off the GUI thread once these layers are in, then added over
        # them, as File > Open does (on the GUI thread a 100,000-tile slide's froze the viewer for 8 s)
        later = outline_later.big_outline(res) and outline_later.build_later(res, mpp or res.slide_mpp, w.viewer)
        for data, kwargs, kind in result_layers(res, slide_mpp=mpp, outline=not later):
            getattr(w.viewer, f"add_{kind}")(data, **kwargs)
        if self.skipped:  # score_batch skipped it: the seconds are the earlier run's, nothing was scored now
            w._status(f"{self.slide_path.name} was already scored in {out} with this model and settings: that "
                      f"score is shown. To score it again, choose another Output folder (or delete {h5.name} there).")
            return
        w._status(f"Scored {self.slide_path.name} in {float(row.get('seconds', 0)):.0f} s -> {out}")
