"""The dock widget's connections to its viewer, made while it is docked and undone when it is closed.

napari's close button takes a dock widget out of the window (its parent becomes None) but does not
delete it: connections left to the viewer's events and mouse callbacks keep it alive and reacting,
so a widget docked again beside it meant two widgets answering every click and layer change.

napari removes layers in batches (all of them as the viewer closes, the selected ones at the layer list's
delete button): :meth:`ViewerLinks.batches` lets the widget redraw once a batch has ended, not at each layer.
"""

from __future__ import annotations

from typing import Any, Callable


class ViewerLinks:
    """Event connections and mouse-drag callbacks, undone all at once by :meth:`undo`."""

    def __init__(self) -> None:
        self._events: list[tuple[Any, Callable]] = []
        self._mouse: list[tuple[list, Callable]] = []
        self._batch_depth = 0  # napari's layer-list batches begun and not yet ended

    @property
    def batching(self) -> bool:
        """Within a batch of changes to the viewer's layers: wait for its end (:meth:`batches`)."""
        return self._batch_depth > 0

    @property
    def live(self) -> bool:
        return bool(self._events or self._mouse)

    def connect(self, emitter: Any, callback: Callable) -> None:
        emitter.connect(callback)
        self._events.append((emitter, callback))

    def batches(self, layers: Any, then: Callable[[], None]) -> None:
        """``then()`` once each batch of changes to the layer list ``layers`` has ended (``layers.clear()``
        as the viewer closes, deleting the selected layers); :attr:`batching` meanwhile. A napari whose layer
        list has no batch events: every change is its own (nothing to wait for)."""
        events = layers.events
        if not (hasattr(events, "begin_batch") and hasattr(events, "end_batch")):
            return

        def begun(event: Any = None) -> None:
            self._batch_depth += 1

        def ended(event: Any = None) -> None:
            self._batch_depth = max(0, self._batch_depth - 1)
            if not self._batch_depth:
                then()

        self.connect(events.begin_batch, begun)
        self.connect(events.end_batch, ended)

    def on_mouse_drag(self, viewer: Any, callback: Callable) -> None:
        viewer.mouse_drag_callbacks.append(callback)
        self._mouse.append((viewer.mouse_drag_callbacks, callback))

    def undo(self) -> None:
        for emitter, callback in self._events:
            try:
                emitter.disconnect(callback)
            except (RuntimeError, TypeError, ValueError):  # gone with its layer already
                pass
        for callbacks, callback in self._mouse:
            if callback in callbacks:
                callbacks.remove(callback)
        self._events, self._mouse, self._batch_depth = [], [], 0
