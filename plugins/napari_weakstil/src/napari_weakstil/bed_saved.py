"""The bed box's files: where Save bed writes, the line that says what a saved bed gives, and helpers of
:mod:`napari_weakstil.bed_editor` that need no widget.

The saved bed's line (beneath the number whenever no bed is being edited) is what ``weakstil score
--annotations`` gives the file. It is computed once per saved file (kept by its path, time and size): read as the
CLI reads it, or, right after Save bed, from the very shape Save bed wrote (GeoJSON keeps every digit), so closing
the edited bed's layer does not read and rescore the file it has just written (47-142 s on a 100,000-tile slide's
fragmented bed, on the GUI thread, until hunt 32: the file's rings were put together again ring by ring).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.bed_edit import BedScore, ScoredTiles

log = logging.getLogger(__name__)


def bed_folder_of(editor: Any, result_path: Path) -> Path:
    """The folder Save bed writes into: the one chosen in ``editor``'s box, else the default beside the result."""
    value = str(editor.folder_edit.value)
    return Path(value) if value not in ("", ".") else default_bed_folder(Path(str(result_path)))


def file_key(path: Path) -> tuple:
    stat = path.stat()
    return (str(path), stat.st_mtime_ns, stat.st_size)


def saved_line(path: Path, folder: Path, new: BedScore, scored_stil: float | None) -> str:
    """What the bed saved in ``path`` gives (``new``), beside the scored bed's number ``scored_stil``."""
    from weakstil.metrics import called_high

    differs = new.found and scored_stil is not None and new.stil_high != bool(called_high(scored_stil, new.threshold))
    return (f"The bed saved in {path} gives {new.label() if new.found else 'no score (no tumour bed)'}"
            + (f" over {new.n_bed_tiles:,} tiles" if new.found else "")
            + (" (another call than the number above, which is the scored bed's)" if differs
               else " (the number above is the scored bed's)")
            + f", as 'weakstil score --annotations {folder}' gives it. Edit bed continues it.")


def remember_saved(res: Any, path: Path, folder: Path, new: BedScore) -> None:
    """Save bed knows what the file it wrote gives: kept as its line (not read and rescored again on close)."""
    try:
        res.saved_bed_view = (file_key(path), saved_line(path, folder, new, res.stil))
    except OSError:  # gone already: read again when shown
        res.saved_bed_view = None


def saved_bed_line(editor: Any, res: Any, then: Callable[[], Any] | None = None) -> str:
    """What the bed saved for ``res``'s slide in ``editor``'s bed folder gives, as ``--annotations`` scores it
    (empty when there is none or a bed is being edited). ``then``: on a big result (:data:`BACKGROUND_TILES`)
    the file is read and rescored in a worker thread (about 5 s on a 100,000-tile slide's fragmented bed, on the
    GUI thread as the result opened until hunt 33): a line that says so is returned, and ``then()`` is called in
    the GUI thread once the line is known (kept: asked again, it is returned at once), if ``res`` is still shown."""
    from weakstil.annotations import find_annotation
    from weakstil.errors import WeakSTILError

    if res is None or res.tile_scores is None or editor.layer() is not None:
        return ""
    folder = bed_folder_of(editor, Path(res.path))
    try:
        path = find_annotation(folder, res.slide_id)
        if path is None:
            return ""
        key = file_key(path)
    except WeakSTILError as exc:
        return f"A bed of the slide in {folder} cannot be read: {exc.one_line()}"
    except OSError as exc:
        return f"A bed of the slide in {folder} cannot be read: {exc.strerror or exc}."
    if res.saved_bed_view is not None and res.saved_bed_view[0] == key:
        return res.saved_bed_view[1]
    if then is None or len(res.tile_scores) <= BACKGROUND_TILES:
        return _keep(res, key, *_work_out(res, path, folder))
    if (key, id(res)) not in _working:
        from napari.qt.threading import create_worker

        def returned(out: tuple) -> None:
            _keep(res, key, *out)

        def failed(exc: BaseException) -> None:  # a bug: said in the line (kept: not tried again at every refresh)
            log.warning("%s: working out what it gives failed", path, exc_info=exc)
            res.saved_bed_view = (key, f"What the bed saved in {path} gives could not be worked out "
                                       f"({type(exc).__name__}: {exc}).")

        def done(*_: Any) -> None:
            _working.pop((key, id(res)), None)
            # still shown, no bed being edited, and the widget not closed meanwhile
            if getattr(editor.owner, "result", None) is res and editor.layer() is None and not editor.tasks.gone:
                then()

        # superqt raises a worker's error again in the GUI thread without an own "errored" handler
        worker = create_worker(_work_out, res, path, folder, _start_thread=False, _connect={"errored": failed})
        worker.returned.connect(returned)
        worker.finished.connect(done)
        _working[(key, id(res))] = worker  # (the result's id: two opens of one file are two results)
        worker.start()
    return f"Working out what the bed saved in {path} gives…"


#: Saved beds' lines being worked out in a worker thread, by their file's key and result (the workers kept alive)
_working: dict[tuple, Any] = {}
#: Tiles above which a saved bed's line is worked out in a worker thread when the widget asks (see saved_bed_line)
BACKGROUND_TILES = 20_000


def _work_out(res: Any, path: Path, folder: Path) -> tuple[ScoredTiles | None, str]:
    """The result's tile scores (read here when not yet) and the saved bed's line, read as the CLI reads it;
    ``res`` is only read (it may run in a worker thread: :func:`_keep` keeps what it found, in the GUI thread)."""
    from weakstil.errors import WeakSTILError

    from napari_weakstil.result_layers import file_identity

    tiles = res.scored_tiles
    try:
        if tiles is None and (res.file_key is None or file_identity(Path(res.path)) == res.file_key):
            from weakstil.bed_edit import ScoredTiles

            tiles = ScoredTiles.read(res.path)
        if tiles is None:  # the result's file changed since it was opened: nothing said (Edit bed says why)
            return None, ""
        # the file's shape as the CLI reads it, rescored whole (its rings put together again in drawing order
        # were the same shape, at 40 unions and differences of the whole bed: 115 s on a big fragmented bed)
        new = tiles.rescore_shape(read_saved(path, tiles.geometry), clip=True)
    except WeakSTILError as exc:
        return tiles, f"A bed of the slide in {folder} cannot be read: {exc.one_line()}"
    except OSError as exc:
        return tiles, f"A bed of the slide in {folder} cannot be read: {exc.strerror or exc}."
    return tiles, saved_line(path, folder, new, res.stil)


def _keep(res: Any, key: tuple, tiles: ScoredTiles | None, text: str) -> str:
    """What :func:`_work_out` found, kept on ``res`` (the line for the saved file ``key``); the line."""
    if res.scored_tiles is None and tiles is not None:
        res.scored_tiles = tiles
    res.saved_bed_view = (key, text)
    return text


def read_saved(path: Path, geometry: Any) -> Any:
    """A bed file of the slide in the bed folder, as ``--annotations`` reads it: a QuPath export on a slide with a
    scanned area's corner (MIRAX) moved into OpenSlide's frame, and refused, as ``score`` refuses it, when less
    than half of it lies on the slide (another slide's outline, or µm). Until hunt 41f the widget read neither:
    such an outline gave "no score (no tumour bed)" in its words, not the CLI's refusal, and a QuPath export on a
    MIRAX slide was continued and rescored where it lay unmoved, a corner's width off the CLI's bed."""
    from weakstil.annotation_frame import to_openslide_frame
    from weakstil.annotations import check_inside, load_polygons

    shape = to_openslide_frame(load_polygons(path, geometry), path, geometry)[0]
    check_inside(shape, geometry.width, geometry.height, path)
    return shape


def bed_score(tiles: ScoredTiles, rings: tuple[list[np.ndarray], list[str]]) -> BedScore:
    """A saved bed's score by the rule of ``--annotations`` (drawn rings, cut to the slide)."""
    from weakstil.bed_edit import bed_tile_flags, clip_to_slide, ordered_bed_shape

    g = tiles.geometry
    shape = clip_to_slide(ordered_bed_shape(*rings), g.width, g.height)
    return tiles.score_flags(bed_tile_flags(shape, g, where=tiles.path or tiles.slide_id))


def scored_parts(tiles: ScoredTiles) -> tuple[list[np.ndarray], list[str]]:
    """The scored bed's rings and parts, traced once per result (a 100,000-tile slide's fragmented bed: 29 s on
    2 busy cores), not again at every Edit bed."""
    cached = getattr(tiles, "_editor_bed_parts", None)
    if cached is None:
        cached = tiles.bed_parts()
        tiles._editor_bed_parts = cached
    return [np.array(r) for r in cached[0]], list(cached[1])


def changed_since_opened(path: Path, gone: bool) -> str:
    """Why a result's bed cannot be edited from its file: the file is no longer what its layers show."""
    if gone:
        return (f"{path}: no longer there (moved or deleted since it was opened), so its bed cannot be read. "
                "Fix: open the result from where it is now.")
    return (f"{path}: written again since it was opened (scored again?); its layers show the file as it was, "
            "and its bed and scores are not edited under them. Fix: open it again (File > Open) to edit what it "
            "holds now.")


def default_bed_folder(result_path: Path) -> Path:
    """``beds/`` beside the result, unless the result lies in a folder that a rerun with --overwrite
    replaces whole (a model's ``cv/tiles``, an evaluation's ``tiles``): then ``<that folder>_beds``
    beside that folder, where the corrected beds outlive the rerun."""
    from weakstil.outputdir import replaced_folder_around

    owner = replaced_folder_around(result_path.parent)
    return owner.parent / f"{owner.name}_beds" if owner is not None else result_path.parent / "beds"


def warm_up_aggregation() -> None:
    """Import torch (the aggregation's maths, about 2 s cold) in the background while the
    pathologist edits, so the first Rescore takes as long as the others."""
    import sys
    import threading

    if "torch" not in sys.modules:
        threading.Thread(target=lambda: __import__("torch"), name="weakstil-warm-up", daemon=True).start()
