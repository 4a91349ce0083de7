"""The dock widget's *Tumour bed* box: edit the shown result's bed, rescore, save.

A thin layer over :mod:`weakstil.bed_edit`: *Edit bed* puts the result's bed on the canvas as an
editable Shapes layer (:mod:`napari_weakstil.bed_layer`): the bed saved for its slide in the bed folder
in an earlier session when there is one (:mod:`weakstil.bed_read`), else the scored bed; *Rescore* recomputes the sTIL% and the
call from the result's cached tile scores with the model's own aggregator and threshold (no model
or encoder needed), *Save bed* writes ``<slide_id>.geojson`` for ``--annotations``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtWidgets import QCheckBox, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout

from napari_weakstil import bed_layer
from napari_weakstil._compat import camera
from napari_weakstil.bed_layer import BED_EDIT_KIND
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
        self.edit_button.clicked.connect(self.edit_bed)
        self.rescore_button = QPushButton("Rescore")
        self.rescore_button.setToolTip("Recompute the sTIL% from the cached tile scores with the edited bed")
        self.rescore_button.clicked.connect(self.rescore)
        self.save_button = QPushButton("Save bed")
        self.save_button.setToolTip("Write <slide_id>.geojson (a QuPath annotation) into the bed folder, for "
                                    "'weakstil train / score / tumorbed train --annotations FOLDER'")
        self.save_button.clicked.connect(self.save_bed)
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
            self.owner._status(_changed_since_opened(Path(res.path), gone=len(now) == 1), error=True)
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

    def _unclosed_note(self) -> str:
        """What the bed leaves out: lines and paths (the line and path tools) enclose no area."""
        layer = self.layer()
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

    # -- actions ---------------------------------------------------------------------------
    def edit_bed(self) -> Any | None:
        """Add the shown result's bed as an editable Shapes layer and select it: the bed saved for its slide
        in the bed folder when there is one, else (and when pressed again while editing) the scored bed."""
        from weakstil.errors import WeakSTILError

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
        saved = None
        if old is None:  # a new edit continues the bed saved for this slide; pressed again: the scored bed
            try:
                saved = self.saved_bed(tiles)
            except WeakSTILError as exc:
                self.owner._status(exc.one_line() + " (Edit bed continues the slide's bed in the bed folder: "
                                   "mend or move that file, or choose another bed folder.)", error=True)
                return None
        data, parts = bed_layer.parts_to_shapes(*(saved[1] if saved else _scored_parts(tiles)))
        if self._slow_to_draw(tiles, data):
            return None
        _warm_up_aggregation()
        viewer = self.owner.viewer
        if old is not None:
            old.metadata["clean"] = _bed_key(old)  # thrown away on purpose (pressed again): not said to be lost
            viewer.layers.selection.active = heat  # so that removing the old layer keeps this result shown
            viewer.layers.remove(old)
        mpp = float(heat.metadata["slide_mpp"])
        width = OUTLINE_SCREEN_PX / camera(viewer).zoom / mpp  # edge widths are in data units: level-0 px
        layer = viewer.add_shapes(data or None, **bed_layer.layer_kwargs(tiles.slide_id, mpp, parts, width,
                                                                          result_path=str(res.path)))
        bed_layer.set_drawing(layer, bed_layer.HOLE if self.holes_box.isChecked() else bed_layer.BED)
        layer.metadata["clean"] = _bed_key(layer)  # as loaded: nothing to save yet
        viewer.layers.selection.active = layer
        layer.mode = "direct"  # move vertices; the layer controls add, delete and draw
        res.bed_rescore = self.last_rescore = None
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
            if self.rescore() is not None:
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
        value = str(self.folder_edit.value)
        return Path(value) if value not in ("", ".") else default_bed_folder(Path(str(tiles.path)))

    def saved_bed(self, tiles: ScoredTiles) -> tuple[Path, tuple[list[np.ndarray], list[str]]] | None:
        """The bed of this slide in the bed folder, as ``--annotations`` reads it there (a bed saved in an
        earlier session), and its rings and parts; None when there is none."""
        from weakstil.annotations import find_annotation
        from weakstil.bed_read import read_bed_parts

        path = find_annotation(self.bed_folder(tiles), tiles.slide_id)
        return (path, read_bed_parts(path, tiles.geometry)) if path is not None else None

    def saved_bed_line(self, res: Any) -> str:
        """What the bed saved for the shown result's slide in the bed folder gives, as ``--annotations`` scores it:
        the number shown is the scored bed's, and a corrected bed saved in an earlier session (which gave another
        number, maybe another call) was not mentioned until Edit bed. Empty when there is none or it is edited now."""
        from weakstil.annotations import find_annotation
        from weakstil.bed_read import read_bed_parts
        from weakstil.errors import WeakSTILError

        if res is None or res.tile_scores is None or self.layer() is not None:
            return ""
        value = str(self.folder_edit.value)
        folder = Path(value) if value not in ("", ".") else default_bed_folder(Path(res.path))
        try:
            path = find_annotation(folder, res.slide_id)
            if path is None:
                return ""
            stat = path.stat()
            key = (str(path), stat.st_mtime_ns, stat.st_size)
            if res.saved_bed_view is not None and res.saved_bed_view[0] == key:
                return res.saved_bed_view[1]
            if res.scored_tiles is None and (res.file_key is None or file_identity(Path(res.path)) == res.file_key):
                from weakstil.bed_edit import ScoredTiles

                res.scored_tiles = ScoredTiles.read(res.path)
            if res.scored_tiles is None:
                return ""
            new = res.scored_tiles.rescore_parts(*read_bed_parts(path, res.scored_tiles.geometry), clip=True)
        except WeakSTILError as exc:
            return f"A bed of the slide in {folder} cannot be read: {exc.one_line()}"
        except OSError as exc:
            return f"A bed of the slide in {folder} cannot be read: {exc.strerror or exc}."
        from weakstil.metrics import called_high

        differs = new.found and res.stil is not None and new.stil_high != bool(called_high(res.stil, new.threshold))
        text = (f"The bed saved in {path} gives {new.label() if new.found else 'no score (no tumour bed)'}"
                + (f" over {new.n_bed_tiles:,} tiles" if new.found else "")
                + (" (another call than the number above, which is the scored bed's)" if differs
                   else " (the number above is the scored bed's)")
                + f", as 'weakstil score --annotations {folder}' gives it. Edit bed continues it.")
        res.saved_bed_view = (key, text)
        return text

    def rescore(self) -> BedScore | None:
        """Recompute the sTIL% and the call from the cached tile scores with the edited bed."""
        from weakstil.errors import WeakSTILError

        tiles = self.scored_tiles()
        res = self.owner.result
        rings = self.edited_rings() if tiles is not None else None
        if tiles is None or rings is None:
            return None
        try:
            new = tiles.rescore_parts(*rings, clip=True)  # a shape dragged past the slide's edge is cut to it
        except WeakSTILError as exc:
            self.owner._status(exc.one_line(), error=True)
            return None
        self._show_rescored(new)
        before = f"{tiles.original_stil:.1f} %" if tiles.original_stil is not None else "—"
        note = f"Edited bed: {new.n_bed_tiles:,} of {new.n_tiles:,} tiles ({new.aggregator} aggregation); the " \
               f"scored bed gave {before}."
        if tiles.stroma is not None and tiles.prior_stroma > 0 and new.found:
            # a stroma model's published tile scores lean towards the bed's sTIL%: shown for this bed now
            self._show_tile_values(res, tiles.tile_estimates(new.tile_flags))
            note += " The heatmap and tile clicks show the tile scores for this bed."
        elif tiles.stroma is not None:
            self._show_tile_values(res, None)
        note += self._unclosed_note()
        self.label.setText(note)
        self.owner._status(f"Rescored {tiles.slide_id} with the edited bed (Save bed keeps it).")
        res.bed_rescore, res.bed_note = new, note
        layer = self.layer()
        layer.metadata["rescored"] = (_bed_key(layer), new.n_bed_tiles)  # Save bed of this very bed: not again
        self.last_rescore = new
        self.owner.refresh_tile()  # the clicked tile: in or out of the edited bed, its score for this bed
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

    def save_bed(self) -> Path | None:
        """Write the edited bed as ``<slide_id>.geojson`` into the bed folder."""
        from weakstil.bed_edit import bed_file, write_bed_geojson
        from weakstil.errors import WeakSTILError

        tiles = self.scored_tiles()
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
        try:
            path = write_bed_geojson(folder, rings[0], tiles.slide_id, parts=rings[1], slide_size=(g.width, g.height),
                                     clip=True, origin=g.origin)  # QuPath's frame on a MIRAX slide
        except WeakSTILError as exc:
            self.owner._status(exc.one_line() + self._unclosed_note(), error=True)
            return None
        except OSError as exc:
            self.owner._status(f"{folder}: cannot write the bed ({exc.strerror or exc}). Fix: choose a writable "
                               "bed folder.", error=True)
            return None
        layer = self.layer()
        key = layer.metadata["clean"] = _bed_key(layer)  # saved: nothing is lost when it is closed or reloaded
        known = layer.metadata.get("rescored", (None, None))
        # the bed rescored as it is: its tile count, not a second rasterisation (half of Save bed on a big bed)
        empty = known[1] == 0 if known[0] == key else _holds_no_tile(tiles, rings)
        self.owner._status(f"Bed saved to {path}" + (" (the bed saved there before is replaced)" if replaced else "")
                           + f"; use it with --annotations {folder}." + self._unclosed_note()
                           + (" It holds no tile of the slide (none is half inside it): 'weakstil score --annotations' "
                              "gives the slide no score (no tumour bed) and 'train' leaves it out. Fix: draw the bed "
                              "over the tumour's tissue." if empty else ""), error=empty)
        return path


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


def _holds_no_tile(tiles: ScoredTiles, rings: tuple[list[np.ndarray], list[str]]) -> bool:
    """Whether a saved bed takes in no tile by the rule of ``--annotations`` (drawn over background)."""
    from weakstil.bed_edit import bed_tile_flags, clip_to_slide, ordered_bed_shape

    g = tiles.geometry
    shape = clip_to_slide(ordered_bed_shape(*rings), g.width, g.height)
    return not bed_tile_flags(shape, g, where=tiles.path or tiles.slide_id).any()


def _scored_parts(tiles: ScoredTiles) -> tuple[list[np.ndarray], list[str]]:
    """The scored bed's rings and parts, traced once per result (a 100,000-tile slide's fragmented bed: 29 s on
    2 busy cores), not again at every Edit bed."""
    cached = getattr(tiles, "_editor_bed_parts", None)
    if cached is None:
        cached = tiles.bed_parts()
        tiles._editor_bed_parts = cached
    return [np.array(r) for r in cached[0]], list(cached[1])


def _changed_since_opened(path: Path, gone: bool) -> str:
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


def _warm_up_aggregation() -> None:
    """Import torch (the aggregation's maths, about 2 s cold) in the background while the
    pathologist edits, so the first Rescore takes as long as the others."""
    import sys
    import threading

    if "torch" not in sys.modules:
        threading.Thread(target=lambda: __import__("torch"), name="weakstil-warm-up", daemon=True).start()
