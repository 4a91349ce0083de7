"""Opening a big result: the scored tumour bed's outline traced and built off the GUI thread.

A 100,000-tile slide's fragmented bed (a 4,450 x 4,450 px mask at 8 µm/px, 5,324 outlines, 523,000 vertices)
took 5.8 s to trace and simplify and 2.1 s for napari to build its Shapes layer (each path's edge triangles) on
2 busy cores, all on the GUI thread while File > Open ran: the viewer stood frozen 8-31 s before the heatmap and
the number showed. The reader now returns the slide, the heatmap and the masks at once, and once napari has added
them a worker thread traces the outline and builds its layer, which the GUI thread puts just above the result's
layers, on the same pixels and in the same colour as before, without taking the selection (a bed being edited
keeps its tools). A result closed meanwhile gets none. The widget's *Score slide* shows a big slide's result the
same way (its viewer known: :func:`build_later`'s ``viewer``). Small beds (the usual, and what scripts and tests
open) are built at once, as before; so is every bed where no napari window is open to add it later.
"""

from __future__ import annotations

import logging
import time
from typing import Any

log = logging.getLogger(__name__)

#: Mask pixels (or tiles, for a bed without a pixel mask) above which the outline is built in the background:
#: a 2,000 x 2,000 px mask traces in about 1 s on 2 busy cores.
BACKGROUND_PIXELS = 4_000_000
BACKGROUND_TILES = 50_000

#: The outlines not yet added or given up (scripts and benchmarks wait for them: :func:`wait`)
pending: list[Later] = []


def big_outline(res: Any) -> bool:
    """Whether tracing ``res``'s bed outline would keep the GUI thread busy for seconds."""
    if res.tile_scores is None and res.tissue_fraction is None:  # no tile layer to put it over: at once
        return False
    mask = res.tumorbed_mask
    if mask is not None and res.tumorbed_mask_mpp:
        return int(mask.size) > BACKGROUND_PIXELS
    return res.tumorbed is not None and len(res.tumorbed) > BACKGROUND_TILES


def open_viewers() -> list[Any]:
    """The viewers of the napari windows open (a reader is not told which one it reads into)."""
    try:
        from napari._qt.qt_main_window import _QtMainWindow
        from qtpy.QtWidgets import QApplication
    except ImportError:  # pragma: no cover  (no Qt: nothing to add a layer later)
        return []
    if QApplication.instance() is None:
        return []
    return [w._qt_viewer.viewer for w in list(getattr(_QtMainWindow, "_instances", []))]


def holds(layer: Any, res: Any) -> bool:
    return layer.metadata.get("result") is res


class Later:
    """One result's outline: waits for napari to add the result's layers, then built in a worker thread."""

    def __init__(self, res: Any, mpp: float, viewers: list[Any]):
        self.res, self.mpp = res, mpp
        self.viewer: Any = None  # the one the result's layers went into
        self.worker: Any = None
        self.started = time.perf_counter()
        self._listening = [(v, self._listener(v)) for v in viewers]
        for viewer, listener in self._listening:
            viewer.layers.events.inserted.connect(listener)

    def _listener(self, viewer: Any) -> Any:
        def inserted(event: Any) -> None:
            if self.viewer is None and holds(event.value, self.res):
                self.viewer = viewer
                self._stop_listening()
                from qtpy.QtCore import QTimer

                QTimer.singleShot(0, self._start)  # once napari has added the reader's other layers too

        return inserted

    def _stop_listening(self) -> None:
        for viewer, listener in self._listening:
            viewer.layers.events.inserted.disconnect(listener)
        self._listening = []

    def never_added(self) -> None:
        """The event loop's next turn after File > Open (or Score slide): the result's layers never went in (the open
        failed)."""
        if self.viewer is None:
            log.info("%s: its layers were not added; no tumour-bed outline", self.res.path)
            self._stop_listening()
            self._done()

    def _start(self) -> None:
        from napari.qt.threading import create_worker

        if not any(holds(ly, self.res) for ly in self.viewer.layers):  # closed already
            self._done()
            return
        # superqt raises a worker's error again in the GUI thread without an own "errored" handler
        self.worker = create_worker(self._compute, _start_thread=False, _connect={"errored": self._failed})
        self.worker.returned.connect(self._returned)
        self.worker.finished.connect(self._done)
        self.worker.start()

    def _compute(self) -> Any:  # in the worker thread: reads the result's arrays, touches no viewer
        from napari.layers import Shapes

        from napari_weakstil.result_layers import outline_layer

        data = outline_layer(self.res, self.mpp)
        return None if data is None else Shapes(data[0], **data[1])

    # -- in the GUI thread --------------------------------------------------------------------
    def _returned(self, layer: Any) -> None:
        if layer is not None and add_over_result(self.viewer, self.res, layer):
            log.info("%s: tumour-bed outline added (%d paths) %.1f s after its result was shown", self.res.path,
                     len(layer.data), time.perf_counter() - self.started)

    def _failed(self, exc: BaseException) -> None:
        log.warning("%s: the tumour-bed outline could not be drawn", self.res.path, exc_info=exc)
        from napari.utils.notifications import show_warning

        show_warning(f"{self.res.path}: the tumour-bed outline could not be drawn ({type(exc).__name__}: {exc}).")

    def _done(self, *args: Any) -> None:
        if self in pending:
            pending.remove(self)


def build_later(res: Any, mpp: float, viewer: Any = None) -> bool:
    """Trace ``res``'s bed outline and build its layer in a worker thread once napari has added the result's
    layers; the layer goes just above them. Called before they are added: into ``viewer`` (the widget's), else any
    open window's (a reader is not told which). False (nothing started): no napari window to add it to."""
    viewers = [viewer] if viewer is not None else open_viewers()
    if not viewers:
        return False
    from napari.layers import Shapes
    from qtpy.QtCore import QTimer

    from napari_weakstil import bed_layer

    # napari's unit registry (pint's, loaded lazily: a worker loading it while the GUI thread does raised
    # "'pixel' is not defined") and triangulation are made ready here, not first in the thread
    Shapes(units=("um", "um"))
    bed_layer.compiled_triangulation()
    later = Later(res, mpp, viewers)
    pending.append(later)
    QTimer.singleShot(0, later.never_added)  # runs after File > Open has added the layers (or failed to)
    return True


def add_over_result(viewer: Any, res: Any, layer: Any) -> bool:
    """Add the outline ``layer`` just above the layers of ``res`` still open in ``viewer``, leaving the layers
    selected as they were (none open: not added)."""
    layers = viewer.layers
    mine = [i for i, ly in enumerate(layers) if holds(ly, res)]
    if not mine:  # closed before its outline was ready
        return False
    selection = layers.selection
    selected = set(selection)
    layers.insert(mine[-1] + 1, layer)  # (napari makes an inserted layer the selected one)
    selection.clear()
    selection.update(selected)  # (one layer selected: napari makes it the active one again)
    return True


def wait(timeout_s: float = 300.0) -> None:
    """Process Qt events until every outline being built has been added (scripts, benchmarks, tests)."""
    from qtpy.QtWidgets import QApplication

    end = time.perf_counter() + timeout_s
    while pending and time.perf_counter() < end:
        QApplication.processEvents()
        time.sleep(0.01)
    QApplication.processEvents()
    if pending:
        names = ", ".join(str(later.res.path) for later in pending)
        raise TimeoutError(f"tumour-bed outline of {names}: still being built after {timeout_s:.0f} s")
