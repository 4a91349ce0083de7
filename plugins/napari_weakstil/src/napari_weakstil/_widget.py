"""The dock widget: score the open slide with a model, read its sTIL%, inspect tiles, correct
the tumour bed and rescore, export.

Scoring runs ``weakstil.score.score_batch`` (the same code as ``weakstil score``) in a worker
thread (:mod:`napari_weakstil._scoring`: Cancel, errors, the widget closing), so the viewer stays
responsive; its per-tile progress reaches the progress bar through a Qt signal (queued to the GUI
thread). Outputs go to a folder like the CLI's: ``results.csv``, ``<slide_id>.h5``, heatmap PNG
and QuPath GeoJSON, and the ``.h5`` is then shown as layers over the slide layer it was scored from.

*Edit bed* adds the result's tumour bed as an editable Shapes layer; *Rescore* recomputes the sTIL% from the
result's cached tile scores (:mod:`weakstil.bed_edit`, no model needed); *Save bed* writes ``<slide_id>.geojson``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from qtpy.QtCore import QEvent, Qt, Signal
from qtpy.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from napari_weakstil._compat import camera
from napari_weakstil._links import ViewerLinks
from napari_weakstil._scoring import ScoringJob
from napari_weakstil.bed_editor import BedEditor
from napari_weakstil.bed_layer import BED_EDIT_KIND
from napari_weakstil.hover import activate_main_layer_later
from napari_weakstil.outline_width import OUTLINE_SCREEN_PX, OutlineWidths
from napari_weakstil.result_layers import ATTENTION, HEATMAP, TISSUE, TUMORBED, ResultFile, show_legend, tile_info
from napari_weakstil.slide_layers import scan_mpp_override, scored_upsampling
from napari_weakstil.summary import detail_line, qc_view, stil_line, tile_line

if TYPE_CHECKING:  # pragma: no cover
    import napari

log = logging.getLogger(__name__)

SELECTED_TILE = "selected tile"
#: Layer toggles: checkbox label -> the suffix of the result layer it shows or hides.
TOGGLES = {"sTIL heatmap": HEATMAP, "attention": ATTENTION, "tumour-bed outline": TUMORBED, "tissue mask": TISSUE}


class ScoringWidget(QWidget):
    """Score the selected slide, show its sTIL% and call, tune the heatmap, inspect a tile."""

    #: (tiles done, tiles total), emitted from the scoring thread
    tiles_progress = Signal(int, int)

    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__()
        self.viewer = napari_viewer
        self.worker: Any = None
        self.job: ScoringJob | None = None
        self.last_row: dict[str, Any] | None = None
        self.result: ResultFile | None = None
        self._range_followed: set[int] = set()  # heatmap layers whose contrast limits the slider follows
        self._clicked: tuple[float, float] | None = None  # the world point of the tile clicked last
        self._changed: dict[str, Any] = {"gone": []}  # layer changes not yet shown (a batch of napari's under way)
        self._links = ViewerLinks()  # to the viewer while docked: undone when the widget is closed
        self._outline_widths = OutlineWidths(self)
        self._build()
        self.tiles_progress.connect(self._on_tiles_progress)
        self._link_viewer()

    def _link_viewer(self) -> None:
        """React to the viewer's layers, selection, clicks and zoom (again, once docked again)."""
        if self._links.live:
            return
        links, layers = self._links, self.viewer.layers
        links.connect(layers.events.inserted, self._on_layers_changed)
        links.connect(layers.events.removed, self._on_layers_changed)
        links.batches(layers, self._refresh_layers)  # napari's batches of removals: redrawn once, at their end
        links.connect(layers.selection.events.active, self._on_active_layer)
        links.on_mouse_drag(self.viewer, self._on_click)
        links.connect(camera(self.viewer).events.zoom, self._keep_outline_width)
        self._range_followed.clear()
        self._on_layers_changed()

    def event(self, event: QEvent) -> bool:
        """Closed (napari's close button takes the widget out of its dock, parent None, without deleting
        it): no longer linked to the viewer, or a widget docked again beside it would answer every click too,
        and the slide it is scoring is cancelled, as by Cancel (it went on scoring and drew its result into
        the viewer of a panel the pathologist had closed)."""
        if event.type() == QEvent.ParentChange:
            if self.parent() is None:
                self._links.undo()
                if self.job is not None and not self.job.done:  # a closed panel scores no more (as Cancel)
                    self.job.cancel()
            else:
                self._link_viewer()
        return super().event(event)

    # -- layout ---------------------------------------------------------------------------
    def _build(self) -> None:
        from magicgui.widgets import FileEdit
        from superqt import QLabeledDoubleRangeSlider

        root = QVBoxLayout(self)
        form = QFormLayout()
        self.slide_combo = QComboBox()
        self.slide_combo.setToolTip("The slide to score: a slide layer opened with the WeakSTIL reader")
        self.slide_combo.currentTextChanged.connect(self._follow_slide_mpp)
        form.addRow("Slide", self.slide_combo)
        self.model_edit = FileEdit(mode="d", label="model")
        self.model_edit.native.setToolTip("A model folder from 'weakstil train' (model.safetensors + model.json)")
        form.addRow("Model", self.model_edit.native)
        self.out_edit = FileEdit(mode="d", label="output")
        self.out_edit.native.setToolTip("Where results go (default: a 'weakstil_scores' folder beside the slide)")
        form.addRow("Output folder", self.out_edit.native)
        self.weights_edit = QLineEdit()
        self.weights_edit.setPlaceholderText("the model's own")
        self.weights_edit.setToolTip("Encoder weights (--weights): a .safetensors file, or 'random' for a "
                                     "random-init baseline; empty uses the weights the model was trained with")
        form.addRow("Encoder weights", self.weights_edit)
        self.slide_mpp_spin = QDoubleSpinBox()
        self.slide_mpp_spin.setRange(0.0, 20.0)
        self.slide_mpp_spin.setDecimals(4)
        self.slide_mpp_spin.setSingleStep(0.05)
        self.slide_mpp_spin.setSpecialValueText("from the file")
        self.slide_mpp_spin.setToolTip("Scan resolution in µm/px (--slide-mpp), for files that do not record it")
        form.addRow("Scan µm/px", self.slide_mpp_spin)
        self.upsample_box = QCheckBox("Allow upsampling")
        self.upsample_box.setToolTip("Score a scan coarser than the model's µm/px, read upsampled (--allow-upsample)")
        form.addRow("", self.upsample_box)
        root.addLayout(form)

        buttons = QHBoxLayout()
        self.score_button = QPushButton("Score slide")
        self.score_button.clicked.connect(self.score)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop scoring at the next batch of tiles; the slide's unfinished outputs are "
                                      "removed")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.cancel)
        buttons.addWidget(self.score_button)
        buttons.addWidget(self.cancel_button)
        root.addLayout(buttons)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("")  # idle: no "0 / 1"
        root.addWidget(self.progress)
        self.status_label = QLabel("Open a slide (File > Open), choose a model, then Score slide.")
        self.status_label.setWordWrap(True)
        root.addWidget(self.status_label)

        self.stil_label = QLabel("sTIL: —")
        font = self.stil_label.font()
        font.setPointSize(font.pointSize() + 5)
        font.setBold(True)
        self.stil_label.setFont(font)
        self.stil_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        root.addWidget(self.stil_label)
        self.detail_label = QLabel("")
        self.detail_label.setWordWrap(True)
        root.addWidget(self.detail_label)
        self.qc_label = QLabel("")  # the qc flags of a scored slide (advice; the score stands)
        self.qc_label.setWordWrap(True)
        root.addWidget(self.qc_label)

        view = QGroupBox("Heatmap")
        view_layout = QVBoxLayout(view)
        view_layout.addWidget(QLabel("Colour range (tile sTIL %)"))
        self.range_slider = QLabeledDoubleRangeSlider(Qt.Horizontal)
        self.range_slider.setRange(0.0, 100.0)
        self.range_slider.setValue((0.0, 100.0))
        self.range_slider.valueChanged.connect(self._on_range)
        view_layout.addWidget(self.range_slider)
        toggles = QHBoxLayout()
        self.toggles: dict[str, QCheckBox] = {}
        for label, suffix in TOGGLES.items():
            box = QCheckBox(label)
            box.setEnabled(False)
            box.toggled.connect(lambda checked, s=suffix: self._set_visible(s, checked))
            self.toggles[suffix] = box
            toggles.addWidget(box)
        view_layout.addLayout(toggles)
        root.addWidget(view)

        self.tile_label = QLabel("Click a tile to see its score.")
        self.tile_label.setWordWrap(True)
        self.tile_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        root.addWidget(self.tile_label)
        self.bed_editor = BedEditor(self)
        root.addWidget(self.bed_editor)
        self.export_button = QPushButton("Export view as PNG…")
        self.export_button.clicked.connect(self._export_clicked)
        root.addWidget(self.export_button)
        root.addStretch(1)

    # -- slides and result layers ----------------------------------------------------------
    def slide_layers(self) -> list[Any]:
        return [ly for ly in self.viewer.layers if ly.metadata.get("weakstil_kind") == "slide"]

    def selected_slide_layer(self) -> Any | None:
        name = self.slide_combo.currentText()
        for ly in self.slide_layers():
            if ly.name == name:
                return ly
        return None

    def result_layer(self, suffix: str, result_path: str | Path | None = None) -> Any | None:
        """The newest result layer ``<slide_id> <suffix>`` of the result file ``result_path`` (of any
        result when not given). By file, not slide id: two results of one slide (two models, a
        rescore with other beds) are told apart."""
        for ly in reversed(list(self.viewer.layers)):
            role = ly.metadata.get("role", ly.name.split(" ", 1)[-1])  # by role: a 2nd layer's name gets " [1]"
            if ly.metadata.get("weakstil_kind") != "result" or role != suffix:
                continue
            if result_path is None or ly.metadata.get("result_path") == str(result_path):
                return ly
        return None

    @property
    def result_path(self) -> str | None:
        """The file of the result shown (None: none)."""
        return str(self.result.path) if self.result is not None else None

    def _newest_result(self, result_path: str | None = None) -> Any | None:
        """The newest layer holding a result (heatmap, tissue fraction, attention) of ``result_path``
        (of any result when not given)."""
        for ly in reversed(list(self.viewer.layers)):
            if ly.metadata.get("weakstil_kind") == "result" and "result" in ly.metadata and \
                    (result_path is None or ly.metadata.get("result_path") == result_path):
                return ly
        return None

    def _on_layers_changed(self, event: Any = None) -> None:
        """A layer opened or closed: the slide to score, the result shown, its toggles; once a batch of napari's
        has ended (the viewer closing, the selected layers deleted), not at each layer (18 s of 26 closing viewers)."""
        new = getattr(event, "value", None) if getattr(event, "type", "") == "inserted" else None
        if getattr(new, "metadata", {}).get("weakstil_kind") == "slide":
            self._changed["slide"] = new.name  # a slide opened now is the one Score slide scores, not the first
        elif getattr(new, "metadata", {}).get("weakstil_kind") == "result":
            activate_main_layer_later(self.viewer, new)  # hovering a tile then says its score
            self._changed["result"] = True
        if getattr(event, "type", "") == "removed":
            self._changed["gone"].append(event.value)
        if not self._links.batching:
            self._refresh_layers()

    def _refresh_layers(self) -> None:
        changed, self._changed = self._changed, {"gone": []}
        before = self.slide_combo.currentText()
        current = changed.get("slide", before)
        names = [ly.name for ly in self.slide_layers()]
        self.slide_combo.blockSignals(True)
        self.slide_combo.clear()
        self.slide_combo.addItems(names)
        if current in names:
            self.slide_combo.setCurrentText(current)
        self.slide_combo.blockSignals(False)
        # a result opened over the chosen slide says what it was scored with (Scan µm/px, Allow upsampling)
        if self.slide_combo.currentText() != before or changed.get("result"):
            self._follow_slide_mpp()
        # the result shown: the one whose layer (or bed being edited) is selected, else the newest heatmap,
        # else the newest result
        active = self.viewer.layers.selection.active
        chosen = active.metadata.get("result_path") if active is not None and \
            active.metadata.get("weakstil_kind") in ("result", BED_EDIT_KIND) else None
        holder = (chosen and self._newest_result(chosen)) or self.result_layer(HEATMAP) or self._newest_result()
        res = holder.metadata.get("result") if holder is not None else None
        if res is not self.result:
            self.result = res
            self._clear_tile()  # the tile clicked belongs to the result shown before
            if res is not None:
                self._show_result_summary(res)
                self._status(f"Showing {res.path.name}. Click a tile to inspect it.")
            else:  # every result closed: nothing is shown, so no number either
                for label in (self.stil_label, self.detail_label, self.qc_label, self.tile_label):
                    label.setText("")
                self.qc_label.setToolTip("")
            self.bed_editor.show_result(res)
            heat = self.result_layer(HEATMAP, self.result_path) if res is not None else None
            show_legend(self.viewer, heat)  # its colour bar, and the µm scale bar
            if heat is not None:
                self._sync_range(heat)
                if id(heat) not in self._range_followed:  # napari's own layer controls change the limits too
                    self._range_followed.add(id(heat))
                    self._links.connect(heat.events.contrast_limits, lambda event, layer=heat: self._sync_range(layer))
        for gone in changed["gone"] or [None]:  # an edited bed's layer closed: its number goes with it
            self.bed_editor.forget_closed_edits(gone)
        self._keep_outline_width()
        for suffix, box in self.toggles.items():
            layer = self.result_layer(suffix, self.result_path)
            box.setEnabled(layer is not None)
            box.blockSignals(True)
            box.setChecked(bool(layer is not None and layer.visible))
            box.blockSignals(False)

    def _follow_slide_mpp(self, *args: Any) -> None:
        """Scan µm/px and Allow upsampling of the chosen slide: those it was scored with, else "from the file"
        and off (not the last slide's: a coarse scan would be read upsampled instead of refused with the fix)."""
        layer = self.selected_slide_layer()
        self.slide_mpp_spin.setValue(scan_mpp_override(layer) or 0.0)
        self.upsample_box.setChecked(scored_upsampling(layer))

    def _on_active_layer(self, event: Any = None) -> None:
        """Selecting another result's layer, or its bed being edited, shows that result (its number,
        flags and bed: Rescore and Save bed then act on it)."""
        active = self.viewer.layers.selection.active
        if active is not None and active.metadata.get("weakstil_kind") == "slide":
            self.slide_combo.setCurrentText(active.name)  # the slide selected in the layer list is the one to score
        if active is not None and active.metadata.get("weakstil_kind") in ("result", BED_EDIT_KIND) and \
                active.metadata.get("result_path") != self.result_path:
            self._on_layers_changed()

    def outline_layers(self) -> list[Any]:
        return [ly for ly in self.viewer.layers if ly.name == SELECTED_TILE or
                (ly.metadata.get("weakstil_kind") == "result" and ly.metadata.get("role") == TUMORBED) or
                ly.metadata.get("weakstil_kind") == BED_EDIT_KIND]

    def _keep_outline_width(self, event: Any = None) -> None:
        """Outlines at their width on screen: a big bed's once a zoom (``event``) has settled."""
        self._outline_widths.follow(zoomed=event is not None)

    def _set_visible(self, suffix: str, visible: bool) -> None:
        layer = self.result_layer(suffix, self.result_path)
        if layer is not None:
            layer.visible = visible

    def _sync_range(self, heat: Any) -> None:
        """The slider at the heatmap's contrast limits (without echoing them back)."""
        if self.result is None or heat is not self.result_layer(HEATMAP, self.result_path):
            return
        self.range_slider.blockSignals(True)
        self.range_slider.setValue(tuple(float(v) for v in heat.contrast_limits))
        self.range_slider.blockSignals(False)

    def _on_range(self, value: tuple[float, float]) -> None:
        layer = self.result_layer(HEATMAP, self.result_path) if self.result is not None else None
        lo, hi = value
        if layer is not None and hi > lo:
            layer.contrast_limits = (lo, hi)
        elif layer is not None:  # an empty or inverted range: the slider goes back to what is shown
            self._sync_range(layer)

    def _show_result_summary(self, res: ResultFile) -> None:
        """The scored result's number, call, interval, tile counts and qc flags."""
        self.stil_label.setText(stil_line(res))
        self._show_qc(res.attrs or {})
        # a corrected bed saved for the slide: what it gives (a big result's: worked out off the GUI thread)
        saved = self.bed_editor.saved_bed_line(res, then=lambda: self._show_result_summary(res))
        self.detail_label.setText(detail_line(res) + (f"\n{saved}" if saved else ""))

    def _show_qc(self, attrs: dict) -> None:
        """The slide's qc flags in orange, each flag's reason as the tooltip."""
        text, raised, reasons = qc_view(attrs)
        self.qc_label.setText(text)
        self.qc_label.setStyleSheet("color: #ff9f1a;" if raised else "")
        self.qc_label.setToolTip(reasons)

    # -- scoring ---------------------------------------------------------------------------
    def score(self) -> None:
        """Score the selected slide in a background thread (the button's action)."""
        from weakstil.modeldir import ModelDir
        from weakstil.score import ScoreOptions

        layer = self.selected_slide_layer()
        model = Path(str(self.model_edit.value)) if str(self.model_edit.value) not in ("", ".") else None
        if layer is None:
            self._status("Open a slide first (File > Open, WeakSTIL reader).", error=True)
            return
        if model is None or not ModelDir(model).is_model():
            self._status(f"{model or 'no model'}: not a WeakSTIL model folder. Choose the folder "
                         "'weakstil train' wrote (with model.json).", error=True)
            return
        slide_path = Path(layer.metadata["slide_path"])
        out_value = str(self.out_edit.value)
        out = Path(out_value) if out_value not in ("", ".") else slide_path.parent / "weakstil_scores"
        from weakstil.errors import WeakSTILError
        from weakstil.outputdir import check_score_out

        try:
            check_score_out(out)  # as 'weakstil score' checks its --out: never into a model or another command's folder
        except WeakSTILError as exc:
            self._status(exc.one_line(), error=True)
            return
        # the layer takes the µm/px only once a score succeeds with it (a mistyped one must not stick)
        scan_mpp = self.slide_mpp_spin.value() or None  # None: the file's own µm/px
        opts = ScoreOptions(model=model, out=out, weights=self.weights_edit.text().strip() or None, device="auto",
                            slide_mpp=scan_mpp, allow_upsample=self.upsample_box.isChecked())
        self.score_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)  # busy until the first batch reports its total
        self.progress.setFormat("%v / %m tiles")
        self._status(f"Scoring {slide_path.name} with {model.name}…")
        self.job = ScoringJob(self, layer, opts, scan_mpp)
        self.worker = self.job.start()

    def _on_tiles_progress(self, done: int, total: int) -> None:
        self.progress.setRange(0, max(total, 1))
        self.progress.setValue(done)

    def cancel(self) -> None:
        """Stop the scoring under way (the Cancel button's action)."""
        if self.job is not None:
            self.job.cancel()

    def _scoring_ended(self) -> None:
        self.score_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    def _status(self, text: str, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet("color: #ff6b6b;" if error else "")
        (log.error if error else log.info)("%s", text)

    # -- tile inspection -------------------------------------------------------------------
    def _on_click(self, viewer: Any, event: Any) -> None:
        active = self.viewer.layers.selection.active
        if active is not None and active.metadata.get("weakstil_kind") == BED_EDIT_KIND and active.mode != "pan_zoom":
            return  # the click edits the bed
        if event.type == "mouse_press":
            self.inspect_at(tuple(event.position[-2:]))

    def inspect_at(self, world_yx: tuple[float, float], outline: bool = True) -> dict[str, Any] | None:
        """Show the tile under a world point (µm) and outline it; returns its info, or None."""
        heat = self.result_layer(HEATMAP, self.result_path) if self.result is not None else None
        if heat is None or self.result is None:
            return None
        meta = heat.metadata
        self._clicked = world_yx
        i = meta["raster"].tile_at(world_yx, meta["slide_mpp"], meta["tile_index"])
        if i is None:
            self.tile_label.setText("No tile here.")
            return None
        info = tile_info(self.result, i)
        mpp = meta["slide_mpp"]
        self.tile_label.setText(tile_line(i, info, mpp))
        if outline:  # (a refresh leaves the outline, and the layer selected: the bed being edited)
            self._outline_tile(info, mpp)
        return info

    def refresh_tile(self) -> None:
        """The clicked tile's line again, for the bed now scored (its score and bed flag change with a Rescore)."""
        if self._clicked is not None and self.result is not None:
            self.inspect_at(self._clicked, outline=False)

    def _clear_tile(self) -> None:
        """No clicked tile: its line and green outline go (they belonged to the result shown before)."""
        self._clicked = None
        self.tile_label.setText("Click a tile to see its score.")
        if SELECTED_TILE in self.viewer.layers:
            self.viewer.layers[SELECTED_TILE].data = []

    def _outline_tile(self, info: dict[str, Any], mpp: float) -> None:
        x, y, s = info["x"], info["y"], info["size_level0"]
        corners = np.array([[y, x], [y, x + s], [y + s, x + s], [y + s, x]], float) * mpp - 0.5 * mpp
        if SELECTED_TILE in self.viewer.layers:
            outline = self.viewer.layers[SELECTED_TILE]
            outline.data = []  # then added: data assigned after a clear (_clear_tile) would be a polygon
            outline.add_rectangles([corners])
            self._keep_outline_width()
        else:
            self.viewer.add_shapes([corners], shape_type="rectangle", edge_color="#39ff14", face_color="transparent",
                                   edge_width=OUTLINE_SCREEN_PX / camera(self.viewer).zoom, name=SELECTED_TILE,
                                   units=("um", "um"))
        heat = self.result_layer(HEATMAP, self.result_path)
        if heat is not None:  # keep the heatmap active, not the outline (clicks must not edit shapes)
            self.viewer.layers.selection.active = heat

    # -- export ----------------------------------------------------------------------------
    def _export_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Export view as PNG", "weakstil_view.png", "PNG (*.png)")
        if path:
            self.export_png(path)

    def export_png(self, path: str | Path) -> Path:
        """Save what the canvas shows now (slide, heatmap, outlines) as a PNG."""
        path = Path(path)
        if path.suffix.lower() != ".png":  # appended: a name like case_1.5x_view keeps its dots
            path = path.with_name(path.name + ".png")
        self.viewer.screenshot(str(path), canvas_only=True, flash=False)
        self._status(f"View saved to {path}")
        return path

