"""The dock widget's connections to its viewer, made while it is docked and undone when it is closed.

napari's close button takes a dock widget out of the window (its parent becomes None) but does not
delete it: connections left to the viewer's events and mouse callbacks keep it alive and reacting,
so a widget docked again beside it meant two widgets answering every click and layer change.
"""

from __future__ import annotations

from typing import Any, Callable


class ViewerLinks:
    """Event connections and mouse-drag callbacks, undone all at once by :meth:`undo`."""

    def __init__(self) -> None:
        self._events: list[tuple[Any, Callable]] = []
        self._mouse: list[tuple[list, Callable]] = []

    @property
    def live(self) -> bool:
        return bool(self._events or self._mouse)

    def connect(self, emitter: Any, callback: Callable) -> None:
        emitter.connect(callback)
        self._events.append((emitter, callback))

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
        self._events, self._mouse = [], []
