"""Each tissue piece's own sTIL% in napari, and recomputed when the bed is edited and rescored (helper h39h).

What was wrong: since h39g a score file of a slide of several tissue pieces (cores, levels, TMA spots) records
each piece's own sTIL% (``tissue_pieces``: sect3 71.5/69.5/74.9 %, the TMA composite's 7 spots 4.4-49.4 %), but
the napari plugin showed none of them: no label on the canvas, nothing in the widget's text. And the bed
editor's Rescore recomputed only the slide's number: no piece's number existed for the edited bed
(``BedScore`` had none), so the only per-piece numbers anywhere were the scored bed's.

What is right now: a Points layer ``<slide_id> tissue pieces`` writes "1: 71.5 %" at each piece's centre and
the detail line lists the pieces; Rescore recomputes them for the edited bed by the rule of the score file's
(:func:`weakstil.qc.pieces.of_bed`, which gives back the file's numbers exactly for its own bed: 3 composed
slides of h39g checked, and the synthetic one here), labels and text follow; Edit bed again (the scored bed)
shows the file's again. Save bed writes only the bed's GeoJSON: no ``tissue_pieces`` to go stale.
"""

from __future__ import annotations

import json
import shutil

import h5py
import numpy as np
import pytest

from napari_plugin_fixtures import dock, scored  # noqa: F401  (scored: a session fixture)


def _two_piece_result(scored, folder):  # noqa: F811
    """A copy of the scored synthetic slide cut in two tissue pieces at a tile column (a band of glass), with the
    ``tissue_pieces`` that ``weakstil score`` would write for it (by h39g's functions)."""
    from weakstil.bed_edit import ScoredTiles
    from weakstil.qc.pieces import JOIN_UM, piece_stils, slide_pieces

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / scored["score_h5"].name
    shutil.copy(scored["score_h5"], path)
    g = ScoredTiles.read(path).geometry
    bed = np.asarray(h5py.File(path, "r")["tumorbed"], bool)
    columns = np.unique(g.coords[bed, 0])
    mid = float(columns[len(columns) // 2])  # a tile column's left edge: tiles lie either side of it
    cut = int(round(mid * g.slide_mpp / g.mask_mpp))
    # a band of glass down the slide, wider than the gap a marker stroke leaves (parts closer are one piece, h39l)
    half = int(np.ceil(JOIN_UM / g.mask_mpp / 2)) + 1
    with h5py.File(path, "r+") as f:
        f["tissue_mask"][:, max(0, cut - half):cut + half] = 0
    tiles = ScoredTiles.read(path)
    g = tiles.geometry
    tile_piece, pieces = slide_pieces(g.coords, g.tile_size_level0, g.tissue_mask, g.mask_mpp, g.slide_mpp)
    per_piece = piece_stils(pieces, tile_piece, tiles.tile_scores, bed, tiles.aggregator, tiles.stroma, tiles.logits)
    assert len(per_piece) == 2  # the bed lies on both halves
    with h5py.File(path, "r+") as f:
        f.attrs["tissue_pieces"] = json.dumps(per_piece)
    return path, per_piece, mid


def test_piece_numbers_are_shown_and_follow_rescore(make_napari_viewer, scored, tmp_path):  # noqa: F811
    path, scored_pieces, mid = _two_piece_result(scored, tmp_path / "scores")
    viewer = make_napari_viewer()
    widget = dock(viewer)
    viewer.open(path, plugin="napari-weakstil")

    def labels():
        layer = next(ly for ly in viewer.layers if ly.metadata.get("role") == "tissue pieces")
        return list(layer.features["label"]), np.asarray(layer.data)

    # shown: each piece's own number at its centre (world µm = level-0 px x slide µm/px), and in the detail line
    texts, where = labels()
    mpp = float(widget.result.slide_mpp)
    assert texts == [f"{p['piece']}: {p['stil']:.1f} %" for p in scored_pieces]
    np.testing.assert_allclose(where, [[(p["centre"][1] - 0.5) * mpp, (p["centre"][0] - 0.5) * mpp]
                                       for p in scored_pieces])
    for p in scored_pieces:
        assert f"{p['piece']}: {p['stil']:.1f} % ({p['n_tumorbed_tiles']:,}" in widget.detail_label.text()

    # the scored bed rescored gives back the file's pieces exactly (the same rule as `weakstil score`)
    editor = widget.bed_editor
    layer = editor.edit_bed()
    unedited = editor.rescore()
    assert unedited.tissue_pieces == scored_pieces

    # the pathologist keeps only the bed left of the cut: one piece with a bed, its number the slide's
    tile = float(widget.result.tile_size)
    ys = np.array([-tile, 1e6])
    layer.selected_data = set(range(len(layer.data)))
    layer.remove_selected()
    layer.add_polygons([np.array([[ys[0], -tile], [ys[0], mid - tile], [ys[1], mid - tile], [ys[1], -tile]])])
    new = editor.rescore()
    assert 0 < new.n_bed_tiles < int(widget.result.tumorbed.sum())
    assert [p["piece"] for p in new.tissue_pieces] == [1]
    assert new.tissue_pieces[0]["stil"] == pytest.approx(new.stil, abs=1e-3)
    texts, _ = labels()
    assert texts == [f"1: {new.stil:.1f} %"]  # not the scored bed's two numbers
    detail = widget.detail_label.text()
    assert f"Edited bed: tissue pieces' own sTIL% (numbered left to right, labelled on the canvas): 1: " \
           f"{new.tissue_pieces[0]['stil']:.1f} % ({new.n_bed_tiles:,} bed tiles)" in detail
    assert f"2: {scored_pieces[1]['stil']:.1f} %" not in detail

    # Save bed writes the bed alone: nothing of the scored bed's pieces goes stale in it
    editor.folder_edit.value = tmp_path / "beds"
    saved = editor.save_bed()
    written = json.loads(saved.read_text())
    assert "tissue_pieces" not in saved.read_text() and set(written) == {"type", "weakstil_written_by", "features"}
    # Edit bed again: the scored bed, and its pieces' numbers again
    assert editor.edit_bed() is not None
    assert labels()[0] == [f"{p['piece']}: {p['stil']:.1f} %" for p in scored_pieces]
    assert f"2: {scored_pieces[1]['stil']:.1f} %" in widget.detail_label.text()


def test_a_file_scored_before_pieces_gets_its_labels_at_rescore(make_napari_viewer, scored, tmp_path):  # noqa: F811
    """Hunt 39k: a score file written before pieces were recorded (no ``tissue_pieces``: every file of
    9510b95 and earlier) had no labels layer, so after Rescore the detail line said the edited bed's pieces
    were "labelled on the canvas" over no label at all. Now Rescore adds the layer."""
    path, scored_pieces, _ = _two_piece_result(scored, tmp_path / "scores")
    with h5py.File(path, "r+") as f:
        del f.attrs["tissue_pieces"]  # as the old code wrote it
    viewer = make_napari_viewer()
    widget = dock(viewer)
    viewer.open(path, plugin="napari-weakstil")
    assert not [ly for ly in viewer.layers if ly.metadata.get("role") == "tissue pieces"]
    editor = widget.bed_editor
    editor.edit_bed()
    new = editor.rescore()
    assert new.tissue_pieces == scored_pieces
    layers = [ly for ly in viewer.layers if ly.metadata.get("role") == "tissue pieces"]
    assert len(layers) == 1  # was none
    assert list(layers[0].features["label"]) == [f"{p['piece']}: {p['stil']:.1f} %" for p in scored_pieces]
    mpp = float(widget.result.slide_mpp)
    np.testing.assert_allclose(np.asarray(layers[0].data), [[(p["centre"][1] - 0.5) * mpp,
                                                             (p["centre"][0] - 0.5) * mpp] for p in scored_pieces])
    assert "labelled on the canvas" in widget.detail_label.text()
