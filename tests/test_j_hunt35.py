"""Hunt 35j: WeakSTIL's outputs as the tools beside it read them.

1. The heatmap PNG said what made it (``Comment``) but not where the slide lies in the figure nor what its
   colours mean: a script or QuPath laying it over the slide had to guess the title's height (52 px on
   CMU-1-Small-Region, 2 title lines), the margins and the scale (4.008 level-0 px per PNG px at 0.499 µm/px),
   and the two colour maps (inferno 0–100 %, viridis 0–1). Now a ``weakstil_geometry`` text chunk gives each
   panel's box in PNG px, ``level0_px_per_png_px``, ``png_mpp``, colour map and range; mapped through it, every
   pixel of the cyan outline lies on a counted tile's square, and the panel is the slide's size.
2. The HDF5 layouts in the docs left out datasets the files hold: the slide-score file's ``tissue_fraction``,
   ``stroma_estimate`` and ``attention_logits``, the feature file's ``tile_stats``, ``stroma_estimate`` and
   ``tumorbed``, the bed file's ``tumour_evidence`` (and said nothing of ``coords``' order or shape). Now each
   kind's datasets (``weakstil.files``) are named in its section of the docs.
3. The tile GeoJSON's ``Tumor bed`` class had no colour, the bed outline's is red: see its test.
"""

from __future__ import annotations

import inspect
import json
from pathlib import Path

import h5py
import numpy as np
from PIL import Image

DOCS = Path(__file__).resolve().parents[1] / "docs"


def test_heatmap_png_says_where_the_slide_lies(small_demo):
    scores = small_demo[0] / "scores"
    heatmap = sorted(scores.glob("*_heatmap.png"))[0]
    sid = heatmap.name[: -len("_heatmap.png")]
    with Image.open(heatmap) as im:
        geometry = json.loads(im.text["weakstil_geometry"])
        rgb = np.asarray(im.convert("RGB")).astype(int)
    with h5py.File(scores / f"{sid}.h5", "r") as f:
        a = dict(f.attrs)
        coords, counted = f["coords"][:], f["tumorbed"][:].astype(bool)
    k = geometry["level0_px_per_png_px"]
    assert abs(k * a["slide_mpp"] - geometry["png_mpp"]) < 1e-6
    panel = geometry["panels"][0]
    assert (panel["colormap"], panel["range"]) == ("inferno", [0.0, 100.0])
    # the panel is the whole slide at that scale
    assert abs(panel["width"] - a["slide_width"] / k) <= 1 and abs(panel["height"] - a["slide_height"] / k) <= 1
    box = rgb[panel["y"]:panel["y"] + panel["height"], panel["x"]:panel["x"] + panel["width"]]
    cyan = np.argwhere((box == [0, 229, 255]).all(-1))
    assert len(cyan) > 50 and counted.any()
    X, Y, side = (cyan[:, 1] + 0.5) * k, (cyan[:, 0] + 0.5) * k, float(a["tile_size_level0"])
    on_tile = np.zeros(len(cyan), bool)
    for x0, y0 in coords[counted]:  # each outline pixel on a counted tile's square (1 PNG px of slack)
        on_tile |= (X >= x0 - k) & (X <= x0 + side + k) & (Y >= y0 - k) & (Y <= y0 + side + k)
    assert on_tile.all(), f"{(~on_tile).sum()} of {len(cyan)} outline pixels off the counted tiles"


def _section(doc: str, start: str) -> str:
    text = (DOCS / doc).read_text(encoding="utf-8")
    i = text.index(start)  # to the paragraph's end (a heading's: the paragraph under it)
    return text[i:text.find("\n\n", text.index("\n", i) + 1)]


def test_docs_name_every_dataset_of_each_file_kind():
    from weakstil.files import kinds

    sections = {kinds.SlideScoresFile: _section("scoring.md", "- `<slide_id>.h5`"),
                kinds.FeaturesFile: _section("encoders.md", "`weakstil embed` writes `features`"),
                kinds.BedFile: _section("scoring.md", "precedence and writes `BEDS/<slide_id>.h5`"),
                kinds.TilesFile: _section("slides.md", "## Tiles HDF5"),
                kinds.TileScoresFile: _section("training.md", "`cv/tiles/<slide_id>.h5`")}
    missing = {cls.__name__: [d.file_name for d in cls.DATASETS if f"`{d.file_name}`" not in text]
               for cls, text in sections.items()}
    assert not any(missing.values()), f"datasets the docs do not name: {missing}"


def test_tile_geojson_colours_the_bed_class_as_the_bed_outline(small_demo):
    """3. The tile GeoJSON's ``Tumor bed`` class had no colour while ``tumorbed apply``'s bed outline is red
    (255, 0, 0): QuPath holds one class per name, coloured by the first object that brings it, so tiles imported
    first left the outline in a colour QuPath chose. Now the tiles' class is red too; every feature is a closed,
    valid square whose measurements are finite numbers (strict JSON, no NaN)."""
    from shapely.geometry import shape

    from weakstil.annotations import write_geojson

    path = sorted((small_demo[0] / "scores").glob("*.geojson"))[0]

    def no_constant(c):
        raise AssertionError(f"{path.name}: {c} is not JSON")

    features = json.loads(path.read_text(encoding="utf-8"), parse_constant=no_constant)["features"]
    # the bed outline's colour, as tumorbed apply writes it
    bed_colour = list(inspect.signature(write_geojson).parameters["color"].default)
    classes = {json.dumps(f["properties"]["classification"], sort_keys=True) for f in features}
    assert json.dumps({"color": bed_colour, "name": "Tumor bed"}, sort_keys=True) in classes, classes
    for f in features:
        ring = f["geometry"]["coordinates"][0]
        assert f["properties"]["objectType"] == "tile" and ring[0] == ring[-1] and shape(f["geometry"]).is_valid
        assert all(isinstance(v, float) for v in f["properties"]["measurements"].values())
