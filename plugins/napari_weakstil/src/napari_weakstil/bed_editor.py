"""The dock widget's *Tumour bed* box: edit the shown result's bed, rescore, save.

A thin layer over :mod:`weakstil.bed_edit`: *Edit bed* puts the result's bed on the canvas as an
editable Shapes layer (:mod:`napari_weakstil.bed_layer`): the bed saved for its slide in the bed folder
in an earlier session when there is one (:mod:`weakstil.bed_read`), else the scored bed; *Rescore* recomputes the sTIL% and the
call from the result's cached tile scores with the model's own aggregator and threshold (no model
or encoder needed; each tissue piece's own sTIL% too, :mod:`napari_weakstil.piece_labels`), *Save bed*
writes ``<slide_id>.geojson`` for ``--annotations``. The buttons run their long work in a worker thread
(:mod:`napari_weakstil.bed_tasks`); called from Python, they run at once.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import QCheckBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from napari_weakstil import bed_layer, bed_saved, piece_labels
from napari_weakstil._compat import camera
from napari_weakstil.bed_layer import BED_EDIT_KIND
from napari_weakstil.bed_saved import default_bed_folder  # noqa: F401  (where it was; tests import it here)
from napari_weakstil.bed_tasks import BedTasks, Said, failure_text
from napari_weakstil.outline_width import OUTLINE_SCREEN_PX  # the width the widget keeps on zooming
from napari_weakstil.result_layers import HEATMAP, file_identity

if TYPE_CHECKING:  # pragma: no cover
    from weakstil.bed_edit import BedScore, ScoredTiles

#: The bed box's line once a result's edited bed layer is closed.
CLOSED_NOTE = ("The edited bed was closed: the scored bed is shown (Edit bed starts again from the bed saved in "
               "the bed folder, else from the scored bed).")

class BedEditor(QGroupBox):
    """Edit bed / Rescore / Save bed for the result the scoring widget shows."""

    def __init__(self, owner: Any):  # the ScoringWidget (not imported: it imports this module)
        super().__init__("Tumour bed")
        from magicgui.widgets import FileEdit

        self.owner = owner
        self.last_rescore: BedScore | None = None
        self._slow_armed: tuple | None = None  # the bed said to be slow to draw: drawn when pressed again
        layout = QVBoxLayout(self)
        buttons = QHBoxLayout()
        self.edit_button = QPushButton("Edit bed")
        self.edit_button.setToolTip("Show the result's tumour bed as polygons to edit (move, add or delete "
                                    "vertices; draw or delete polygons): the bed saved for this slide in the bed "
                                    "folder when there is one, else the scored bed. Pressed again: the scored bed.")
        self.edit_button.clicked.connect(lambda: self.edit_bed(background=True))
        self.rescore_button = QPushButton("Rescore")
        self.rescore_button.setToolTip("Recompute the sTIL% from the cached tile scores with the edited bed")
        self.rescore_button.clicked.connect(lambda: self.rescore(background=True))
        self.save_button = QPushButton("Save bed")
        self.save_button.setToolTip("Write <slide_id>.geojson (a QuPath annotation) into the bed folder, for "
                                    "'weakstil train / score / tumorbed train --annotations FOLDER'")
        self.save_button.clicked.connect(lambda: self.save_bed(background=True))
        for b in (self.edit_button, self.rescore_button, self.save_button):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        self.holes_box = QCheckBox("new shapes are holes")
        self.holes_box.setToolTip("Shapes drawn now cut holes in the bed (red) instead of adding to it")
        self.holes_box.toggled.connect(self.follow_holes)
        layout.addWidget(self.holes_box)
        form = QFormLayout()
        self.folder_edit = FileEdit(mode="d", label="beds")
        self.folder_edit.native.setToolTip("Where Save bed writes (default: a 'beds' folder beside the result; for "
                                           "a result inside a model or evaluation folder, '<folder>_beds' beside it)")
        form.addRow("Bed folder", self.folder_edit.native)
        layout.addLayout(form)
        self.tasks = BedTasks(self)  # the long steps, run by the buttons in a worker thread
        layout.addWidget(self.tasks.bar)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        layout.addWidget(self.label)

    # -- layers and data -------------------------------------------------------------------
    def layer(self) -> Any | None:
        """The editable bed of the shown result, or None."""
        res = self.owner.result
        for ly in reversed(list(self.owner.viewer.layers)):
            if ly.metadata.get("weakstil_kind") == BED_EDIT_KIND and res is not None \
                    and ly.metadata.get("result_path", str(res.path)) == str(res.path):
                return ly
        return None

    def scored_tiles(self) -> ScoredTiles | None:
        """The shown result's tile scores, read once from the very file its layers show. A file written
        again since it was opened (scored again into its folder) is not read under the old layers: its
        bed and scores would be edited and rescored beside the number and heatmap of the file before
        (opened again, it is read again); a file moved away since is said to be so."""
        from weakstil.bed_edit import ScoredTiles
        from weakstil.errors import WeakSTILError

        res = self.owner.result
        if res is None or res.tile_scores is None:
            self.owner._status("Score a slide or open a result with tile scores first.", error=True)
            return None
        if res.scored_tiles is not None:
            return res.scored_tiles
        now = file_identity(Path(res.path))
        if res.file_key is not None and now != res.file_key:
            self.owner._status(bed_saved.changed_since_opened(Path(res.path), gone=len(now) == 1), error=True)
            return None
        try:
            res.scored_tiles = ScoredTiles.read(res.path)
        except WeakSTILError as exc:
            self.owner._status(exc.one_line(), error=True)
            return None
        return res.scored_tiles

    def edited_rings(self) -> tuple[list[np.ndarray], list[str]] | None:
        """The edited bed's rings (level-0 ``[x, y]``) in drawing order and each one's part (bed or hole)."""
        layer = self.layer()
        active = self.owner.viewer.layers.selection.active
        if layer is None and active is not None and active.metadata.get("weakstil_kind") == BED_EDIT_KIND:
            # the bed being drawn on belongs to a result whose layers are all closed: another result is shown
            owner = active.metadata.get("result_path", "its result")
            shown = self.owner.result.path.name
            self.owner._status(f"'{active.name}' is the bed of {owner}, whose layers are closed ({shown} is shown). "
                               f"Fix: open {Path(str(owner)).name} again to rescore or save that bed (its edits are "
                               "kept).", error=True)
            return None
        if layer is None:
            self.owner._status("Press Edit bed first.", error=True)
            return None
        parts = list(layer.features["part"]) if "part" in layer.features else None
        # where the shapes are shown: a bed dragged whole with the transform mode is scored where it lies
        return bed_layer.shapes_to_parts(bed_layer.level0_data(layer), list(layer.shape_type), parts)

    @staticmethod
    def _unsaved(layer: Any) -> bool:
        """Whether an edited bed layer holds changes since it was loaded or last saved."""
        return layer.metadata.get("clean") != _bed_key(layer)

    def _unclosed_note(self, layer: Any = None) -> str:
        """What the bed leaves out: lines and paths (the line and path tools) enclose no area."""
        layer = layer if layer is not None else self.layer()
        n = sum(kind in ("line", "path") for kind in layer.shape_type) if layer is not None else 0
        return (f" {n} line or path shape(s) left out: they enclose no area (draw the bed with the polygon, "
                "rectangle, ellipse or lasso tools)." if n else "")

    def follow_holes(self, *args: Any) -> None:
        """Every bed layer draws what the box says, not only the shown result's: a layer is
        selected (and drawn on) before or after its result is shown."""
        part = bed_layer.HOLE if self.holes_box.isChecked() else bed_layer.BED
        for ly in self.owner.viewer.layers:
            if ly.metadata.get("weakstil_kind") == BED_EDIT_KIND:
                bed_layer.set_drawing(ly, part)

    def show_result(self, res: Any) -> None:
        """The box for the result now shown (the widget calls it on every change): that result's
        own edit line and last Rescore, not the previous slide's."""
        self.follow_holes()
        self.last_rescore = res.bed_rescore if res is not None else None
        self.label.setText(res.bed_note if res is not None else "")
        if self.last_rescore is not None:
            self._show_rescored(self.last_rescore)

    def forget_closed_edits(self, closed: Any = None) -> None:
        """A result whose edited bed layer is closed shows its scored bed again (number, interval, qc,
        heatmap, tile clicks): the edit's number belonged to a bed that is no longer anywhere, nor can be
        saved (the widget calls it on every change of the layers)."""
        if closed is not None and closed.metadata.get("weakstil_kind") == BED_EDIT_KIND and self._unsaved(closed):
            # closing the layer throws its edit away: said, not silent, when it was never saved
            self.owner._status(f"{closed.name} was closed with changes not saved: they are gone (napari cannot "
                               "reopen a closed layer). Save bed keeps an edit before its layer is closed.", error=True)
        layers = list(self.owner.viewer.layers)
        edits = [ly.metadata.get("result_path") for ly in layers if ly.metadata.get("weakstil_kind") == BED_EDIT_KIND]
        if None in edits:  # a bed layer of no recorded result: it may be any result's
            return
        seen: set[int] = set()
        for ly in layers:
            res = ly.metadata.get("result") if ly.metadata.get("weakstil_kind") == "result" else None
            if res is None or id(res) in seen or str(res.path) in edits:
                continue
            seen.add(id(res))
            if res.bed_rescore is None and res.file_tile_scores is None and res.bed_note in ("", CLOSED_NOTE):
                continue  # never edited, or shown as scored already
            res.bed_rescore, res.bed_note = None, CLOSED_NOTE
            piece_labels.follow(self.owner.viewer, res)  # the scored bed's pieces again
            self._show_tile_values(res, None)
            if res is self.owner.result:
                self.last_rescore = None
                self.label.setText(res.bed_note)
                self.owner._show_result_summary(res)
                self.owner.refresh_tile()

    def _show_tile_values(self, res: Any, values: np.ndarray | None) -> None:
        """The heatmap and tile clicks show ``values`` (None: the file's own tile scores)."""
        if values is None and res.file_tile_scores is None:
            return
        if res.file_tile_scores is None:
            res.file_tile_scores = res.tile_scores
        res.tile_scores = res.file_tile_scores if values is None else np.asarray(values, np.float32)
        if values is None:
            res.file_tile_scores = None
        heat = self.owner.result_layer(HEATMAP, res.path)
        if heat is not None:
            heat.data = heat.metadata["raster"].paint(res.tile_scores)

    # -- actions (the buttons run them in the background: bed_tasks) ------------------------
    def edit_bed(self, background: bool = False) -> Any | None:
        """Add the shown result's bed as an editable Shapes layer and select it: the bed saved for its slide
        in the bed folder when there is one, else (and when pressed again while editing) the scored bed.
        ``background``: the bed is read, traced and triangulated in a worker thread (returns None)."""
        from napari.layers import Shapes

        tiles = self.scored_tiles()
        res = self.owner.result
        # the heatmap, else another layer of the result (the heatmap closed): where the bed goes
        heat = (self.owner.result_layer(HEATMAP, res.path) or self.owner._newest_result(str(res.path))) \
            if res is not None else None
        if tiles is not None and heat is None:
            self.owner._status(f"{res.path.name}: its layers are closed; open it again to edit its bed.", error=True)
        if tiles is None or heat is None:
            return None
        old = self.layer()
        if old is not None and self._unsaved(old) and old.metadata.get("discard_armed") != _bed_key(old):
            old.metadata["discard_armed"] = _bed_key(old)  # pressed again on this very bed: thrown away
            self.owner._status(f"{old.name}: its changes are not saved. Press Edit bed again to throw them away "
                               "and start from the scored bed, or Save bed first to keep them.", error=True)
            return None
        mpp = float(heat.metadata["slide_mpp"])
        width = OUTLINE_SCREEN_PX / camera(self.owner.viewer).zoom / mpp  # edge widths are in data units: level-0 px
        armed, folder = self._slow_armed, self.bed_folder(tiles)  # (read here: Qt's widgets are the GUI thread's)
        bed_layer.compiled_triangulation()  # (imports napari's triangulation here, not in the thread)

        def compute() -> tuple:
            saved = None
            if old is None:  # a new edit continues the bed saved for this slide; pressed again: the scored bed
                from weakstil.errors import WeakSTILError

                try:
                    saved = self.saved_bed(tiles, folder)
                except WeakSTILError as exc:
                    raise Said(exc.one_line() + " (Edit bed continues the slide's bed in the bed folder: mend or "
                               "move that file, or choose another bed folder.)") from exc
            data, parts = bed_layer.parts_to_shapes(*(saved[1] if saved else bed_saved.scored_parts(tiles)))
            vertices = sum(len(d) for d in data)
            if vertices > bed_layer.SLOW_VERTICES and not bed_layer.compiled_triangulation() and \
                    armed != (str(tiles.path), vertices):
                return saved, data, None, None  # said first (minutes in pure Python), not drawn
            # the layer's triangles are made here, off the GUI thread (a big bed: 15-26 s)
            layer = Shapes(data or None, **bed_layer.layer_kwargs(tiles.slide_id, mpp, parts, width,
                                                                  result_path=str(res.path)))
            return saved, data, layer, _rescore_work(tiles, saved[1]) if saved else None

        return self.tasks.run(f"Edit bed: putting {tiles.slide_id}'s bed on the canvas", compute,
                              lambda out: self._bed_on_canvas(tiles, res, heat, old, *out), background)

    def _bed_on_canvas(self, tiles: ScoredTiles, res: Any, heat: Any, old: Any, saved: Any, data: list,
                       layer: Any, first: tuple | None) -> Any | None:
        """Edit bed's end, in the GUI thread: the layer built (or the bed said to be slow to draw) on the canvas."""
        if layer is None:
            self._slow_to_draw(tiles, data)
            return None
        viewer = self.owner.viewer
        if heat not in viewer.layers:
            self.owner._status(f"{res.path.name}: its layers were closed meanwhile; open it again to edit its bed.",
                               error=True)
            return None
        bed_saved.warm_up_aggregation()
        if old is not None and old in viewer.layers:
            old.metadata["clean"] = _bed_key(old)  # thrown away on purpose (pressed again): not said to be lost
            viewer.layers.selection.active = heat  # so that removing the old layer keeps this result shown
            viewer.layers.remove(old)
        viewer.add_layer(layer)
        bed_layer.set_drawing(layer, bed_layer.HOLE if self.holes_box.isChecked() else bed_layer.BED)
        layer.metadata["clean"] = _bed_key(layer)  # as loaded: nothing to save yet
        viewer.layers.selection.active = layer
        layer.mode = "direct"  # move vertices; the layer controls add, delete and draw
        res.bed_rescore = self.last_rescore = None
        piece_labels.follow(viewer, res)
        what = f"the bed saved in {saved[0]}" if saved else "the scored bed"
        res.bed_note = (f"Editing {what} ({len(data)} shapes; holes red): move, add or delete vertices, "
                        "draw or delete polygons, then Rescore" + (" for its sTIL% (the number shown is the "
                        "scored bed's). Edit bed again starts from the scored bed." if saved else "."))
        self.label.setText(res.bed_note)
        self._show_tile_values(res, None)  # back to the scored bed's tile scores,
        self.owner._show_result_summary(res)  # number, interval and qc, and the clicked tile's
        self.owner.refresh_tile()
        if saved:
            from weakstil.annotations import geojson_written_by
            from weakstil.bed_edit import SAVED_BY

            # the number shown is the bed on the canvas, the saved one (it was the detector's: 33.0 % high beside
            # a saved bed of 29.1 % low), as 'weakstil score --annotations' scores that file
            if first is not None and self._rescored(tiles, res, layer, _bed_key(layer), *first) is not None:
                res.bed_note = f"Continuing the bed saved in {saved[0]}. " + res.bed_note
                self.label.setText(res.bed_note)

            elsewhere = saved[0].suffix.lower() not in (".geojson", ".json") or geojson_written_by(saved[0]) != SAVED_BY
            self.owner._status(f"Edit bed: {tiles.slide_id} continues the bed saved in {saved[0]}" + (
                " (an outline drawn elsewhere: Save bed will not replace it; choose another bed folder to save "
                "the edit)" if elsewhere else "") + "; Edit bed again starts from the scored bed.")
        else:
            self.owner._status(f"Edit bed: {tiles.slide_id} starts from the scored bed" + (
                "." if old is not None else f" (no bed of the slide saved in {self.bed_folder(tiles)})."))
        return layer

    def _slow_to_draw(self, tiles: ScoredTiles, data: list[np.ndarray]) -> bool:
        """A bed napari would triangulate in pure Python for minutes (the viewer frozen, read as a hang) is said
        first, with the fix; pressed again, it is drawn."""
        vertices = sum(len(d) for d in data)
        key = (str(tiles.path), vertices)
        if vertices <= bed_layer.SLOW_VERTICES or bed_layer.compiled_triangulation() or self._slow_armed == key:
            return False
        self._slow_armed = key
        self.owner._status(f"Edit bed: {tiles.slide_id}'s bed is {len(data):,} outlines of {vertices:,} vertices, "
                           f"which napari draws here in pure Python: the viewer would be frozen for about "
                           f"{max(1, round(vertices / 60_000))} min or more. Fix: 'pip install bermuda' (napari's "
                           "compiled triangulation: seconds) and start napari again; or press Edit bed again to wait.",
                           error=True)
        return True

    def bed_folder(self, tiles: ScoredTiles) -> Path:
        """The folder Save bed writes into: the one chosen, else the default beside the result."""
        return bed_saved.bed_folder_of(self, Path(str(tiles.path)))

    def saved_bed(self, tiles: ScoredTiles, folder: Path | None = None) -> tuple[Path, tuple[list, list[str]]] | None:
        """The bed of this slide in the bed folder (``folder``: that folder, given), as ``--annotations`` reads it
        there (a bed saved in an earlier session), and its rings and parts; None when there is none."""
        from weakstil.annotations import find_annotation
        from weakstil.bed_read import shape_parts

        path = find_annotation(folder or self.bed_folder(tiles), tiles.slide_id)
        return (path, shape_parts(bed_saved.read_saved(path, tiles.geometry))) if path is not None else None

    def saved_bed_line(self, res: Any, then: Any = None) -> str:
        """What the bed saved for the shown result's slide in the bed folder gives, as ``--annotations`` scores it
        (:func:`napari_weakstil.bed_saved.saved_bed_line`; ``then``: a big result's is worked out in the background)."""
        return bed_saved.saved_bed_line(self, res, then)

    def rescore(self, background: bool = False) -> BedScore | None:
        """Recompute the sTIL% and the call from the cached tile scores with the edited bed (``background``: the
        bed is rasterised in a worker thread; returns None)."""
        tiles = self.scored_tiles()
        res = self.owner.result
        rings = self.edited_rings() if tiles is not None else None
        if tiles is None or rings is None:
            return None
        layer = self.layer()
        key = _bed_key(layer)  # the bed as pressed: an edit made while it runs is not the one scored
        return self.tasks.run(f"Rescoring {tiles.slide_id}'s edited bed ({len(tiles.tile_scores):,} tiles)",
                              lambda: _rescore_work(tiles, rings),
                              lambda out: self._rescored(tiles, res, layer, key, *out), background)

    def _rescored(self, tiles: ScoredTiles, res: Any, layer: Any, key: bytes, new: BedScore,
                  estimates: np.ndarray | None) -> BedScore | None:
        """Rescore's end, in the GUI thread: the edited bed's number (on the result it was pressed for)."""
        if layer not in self.owner.viewer.layers:
            self.owner._status(f"{layer.name} was closed while it was rescored: its number is not shown.", error=True)
            return None
        before = f"{tiles.original_stil:.1f} %" if tiles.original_stil is not None else "—"
        note = f"Edited bed: {new.n_bed_tiles:,} of {new.n_tiles:,} tiles ({new.aggregator} aggregation); the " \
               f"scored bed gave {before}."
        if estimates is not None:
            # a stroma model's published tile scores lean towards the bed's sTIL%: shown for this bed now
            self._show_tile_values(res, estimates)
            note += " The heatmap and tile clicks show the tile scores for this bed."
        elif tiles.stroma is not None:
            self._show_tile_values(res, None)
        note += self._unclosed_note(layer)
        res.bed_rescore, res.bed_note = new, note
        piece_labels.follow(self.owner.viewer, res)  # each piece's number for this bed, not the scored bed's
        layer.metadata["rescored"] = (key, new.n_bed_tiles)  # Save bed of this very bed: not again
        layer.metadata["rescored_score"] = new
        if res is self.owner.result:  # (another result shown meanwhile: its own line stays; this one's is kept)
            self._show_rescored(new)
            self.label.setText(note)
            if new.found:
                self.owner._status(f"Rescored {tiles.slide_id} with the edited bed (Save bed keeps it).")
            else:  # "Save bed keeps it" was said of a bed Save bed refuses (no shape) or saves as no score
                self.owner._status(f"Rescored {tiles.slide_id}: the edited bed holds no tile of the slide (none is "
                                   "half inside it), so it has no sTIL%, nor has 'weakstil score --annotations' for it."
                                   " Fix: draw the bed over the tumour's tissue." + self._unclosed_note(layer), error=True)
            self.last_rescore = new
            self.owner.refresh_tile()  # the clicked tile: in or out of the edited bed, its score for this bed
        else:  # said all the same: the line read "Rescoring …" (its seconds) long after the step had ended
            closed = self.owner._newest_result(str(res.path)) is None
            self.owner._status(f"Rescored {tiles.slide_id}'s edited bed ({new.n_bed_tiles:,} of {new.n_tiles:,} "
                               + ("tiles); its result's layers are closed: open " + res.path.name
                                  + " again to see its number." if closed else
                                  f"tiles): {res.path.name} is not shown; select its layer to see its number."))
        return new

    def _show_rescored(self, new: BedScore) -> None:
        # the 90 % interval and the qc flags belong to the scored bed (they need the fold models and
        # the slide's pixels): say so rather than show them beside a number they were not made for
        self.owner.stil_label.setText(f"{new.label()} · edited bed, no interval" if new.found
                                      else "sTIL: — (no tumour bed)")
        self._show_edited_qc(new)
        if self.owner.result is not None:  # the edited bed's tile count beside its number, not the scored bed's
            from napari_weakstil.summary import detail_line

            self.owner.detail_label.setText(detail_line(self.owner.result, new))

    def _show_edited_qc(self, new: BedScore) -> None:
        """The qc line for the edited bed: the scored bed's flags do not hold for it, and of them
        only the tile count can be checked here (the rest need the slide and the fold models)."""
        from weakstil.qc.flags import MIN_BED_TILES

        qc = self.owner.qc_label
        few = new.found and new.n_bed_tiles < MIN_BED_TILES
        qc.setText("qc (edited bed): " + (f"few tumour-bed tiles ({new.n_bed_tiles} < {MIN_BED_TILES}); " if few else "")
                   + "the other flags need 'weakstil score --annotations' on the saved bed")
        qc.setStyleSheet("color: #ff9f1a;" if few else "")
        qc.setToolTip("The qc flags shown before belong to the scored bed, not to this edit.")

    def save_bed(self, background: bool = False) -> Path | None:
        """Write the edited bed as ``<slide_id>.geojson`` into the bed folder (``background``: in a worker
        thread; returns None)."""
        from weakstil.bed_edit import bed_file, write_bed_geojson
        from weakstil.errors import WeakSTILError

        tiles = self.scored_tiles()
        res = self.owner.result
        rings = self.edited_rings() if tiles is not None else None
        if tiles is None or rings is None:
            return None
        value = str(self.folder_edit.value)
        if value in ("", ".") and not Path(str(tiles.path)).parent.is_dir():  # not made again where it was moved from
            self.owner._status(f"{Path(str(tiles.path)).parent}: the result's folder is gone (moved since it was "
                               "opened), and the default bed folder is beside it. Fix: choose a bed folder.", error=True)
            return None
        folder = self.bed_folder(tiles)
        g = tiles.geometry
        replaced = bed_file(folder, tiles.slide_id).exists()  # only a bed saved before is replaced (else refused)
        layer = self.layer()
        key = _bed_key(layer)  # the bed as pressed: an edit made while it is written is not saved
        known = layer.metadata.get("rescored", (None, None))
        known_score = layer.metadata.get("rescored_score") if known[0] == key else None
        note = self._unclosed_note(layer)

        def compute() -> tuple[Path, BedScore | None]:
            path = write_bed_geojson(folder, rings[0], tiles.slide_id, parts=rings[1], slide_size=(g.width, g.height),
                                     clip=True, origin=g.origin)  # QuPath's frame on a MIRAX slide
            if known_score is not None:  # the bed rescored as it is: not rasterised again (half of Save bed)
                return path, known_score
            try:
                return path, bed_saved.bed_score(tiles, rings)
            except WeakSTILError:
                return path, None

        def failed(exc: BaseException) -> str:
            if isinstance(exc, OSError) and not isinstance(exc, WeakSTILError):
                return f"{folder}: cannot write the bed ({exc.strerror or exc}). Fix: choose a writable bed folder."
            return failure_text("Save bed", exc) + note

        def apply(out: tuple[Path, BedScore | None]) -> Path:
            path, new = out
            if layer in self.owner.viewer.layers:
                layer.metadata["clean"] = key  # saved: nothing is lost when it is closed or reloaded
            if new is not None:  # what the file gives, kept: closing the layer does not read it again
                bed_saved.remember_saved(res, path, folder, new)
            empty = new is not None and new.n_bed_tiles == 0
            self.owner._status(f"Bed saved to {path}" + (" (the bed saved there before is replaced)" if replaced else "")
                               + f"; use it with --annotations {folder}." + note
                               + (" It holds no tile of the slide (none is half inside it): 'weakstil score "
                                  "--annotations' gives the slide no score (no tumour bed) and 'train' leaves it out. "
                                  "Fix: draw the bed over the tumour's tissue." if empty else ""), error=empty)
            return path

        return self.tasks.run(f"Saving {tiles.slide_id}'s bed", compute, apply, background, failed=failed)


def _bed_key(layer: Any) -> bytes:
    """The bed a layer holds (its shapes where shown, their kinds and parts), to tell an edit from what was loaded
    or saved."""
    import hashlib

    digest = hashlib.sha1()
    parts = list(layer.features["part"]) if "part" in layer.features else []
    digest.update(repr((list(layer.shape_type), parts)).encode())
    for ring in bed_layer.level0_data(layer):
        digest.update(np.ascontiguousarray(ring, np.float64).tobytes())
    return digest.digest()


def _rescore_work(tiles: ScoredTiles, rings: tuple[list[np.ndarray], list[str]]) -> tuple[BedScore, np.ndarray | None]:
    """Rescore's maths (in the worker thread): the bed's score and, for a stroma model, the tiles' published scores
    for it."""
    new = tiles.rescore_parts(*rings, clip=True)  # a shape dragged past the slide's edge is cut to it
    blend = tiles.stroma is not None and tiles.prior_stroma > 0 and new.found
    return new, tiles.tile_estimates(new.tile_flags) if blend else None
