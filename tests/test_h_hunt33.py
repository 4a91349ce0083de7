"""Every slide-reading output records the releases of the code that read its pixels (hunt 33h).

Was: the tiles file (``weakstil tile``) recorded only WeakSTIL's version; the features file added
torch's and timm's; the per-slide score file copied those two; the pretrained encoder's card.yaml
recorded torch, timm and WeakSTIL. None named the OpenSlide release (C library 4.0.1 and
openslide-python 1.4.7 here), the JPEG decoder that made the tiles' pixels (simplejpeg 1.9.0,
named only as ``"decoder": "simplejpeg"``), tifffile/imagecodecs, or the image and stain code
(scikit-image, scipy, OpenCV, Pillow, torchstain) behind the tissue mask, stain estimate and tile
measurements: a reviewer could not tell from a file which reader made it, although a reader or
decoder release changes the pixels and so the features and sTIL%.

Now each of them records ``library_versions`` (JSON in the HDF5 files, a mapping in card.yaml):
WeakSTIL, Python, those packages as installed, the OpenSlide C library as it reports itself, and
torch and timm where an encoder ran; a score file records its own run's and, as
``features_library_versions``, those its features were embedded with; a model's model.json records
(``features_library_versions``) those of its training features (its ``versions`` were the training
process's only: WeakSTIL, torch, Python, numpy).

Also: the QuPath GeoJSONs, often shared without the HDF5 beside them, said only which command wrote
them (and a bed's, the slide). A score's tile GeoJSON now records ``weakstil_provenance`` (model and
encoder id, WeakSTIL version, slide fingerprint, bed source, as the heatmap PNG's Comment), a bed's
(``tumorbed apply``) the WeakSTIL version, bed source, detector id and weights hash (or the
annotation's hash) and the features' cache key; no path or time, so a rerun writes the same bytes.
The tiles overlay PNG (no text chunk at all) now says what made it too (slide fingerprint, tiling).
"""

from __future__ import annotations

import json

import h5py
import yaml

from conftest import run_cli


def _installed(name: str) -> str:
    from importlib.metadata import version

    return version(name)


def _check_reader_versions(recorded: dict, encoder: bool) -> None:
    import numpy as np
    import openslide

    from weakstil.code_version import version as code_version  # with a checkout's commit (38j)

    assert recorded["weakstil"] == code_version()
    assert recorded["openslide"] == openslide.__library_version__  # the C library that read the slide
    for name in ("openslide-python", "simplejpeg", "tifffile", "scikit-image", "scipy", "pillow", "torchstain"):
        assert recorded[name] == _installed(name), name
    assert recorded["numpy"] == np.__version__
    if encoder:
        import torch

        assert recorded["torch"] == torch.__version__ and recorded["timm"] == _installed("timm")


def test_the_tiles_file_records_the_reader_and_image_code_releases(small_demo, tmp_path):
    slide = sorted((small_demo[0] / "cohort" / "slides").glob("*.tiff"))[0]
    run_cli("tile", slide, "--out", tmp_path, check=True)
    with h5py.File(tmp_path / f"{slide.stem}.h5", "r") as f:
        recorded = json.loads(f.attrs["library_versions"])  # old code: KeyError (only weakstil_version)
        fingerprint, tiling = f.attrs["slide_fingerprint"], json.loads(f.attrs["tiling_key"])
    _check_reader_versions(recorded, encoder=False)
    from PIL import Image

    with Image.open(tmp_path / f"{slide.stem}_tiles.png") as im:  # the overlay picture had no text chunk at all
        made = json.loads(im.text["Comment"])
    assert made["slide_fingerprint"] == fingerprint and made["tiling_key"] == tiling


def test_the_features_file_records_the_reader_decoder_and_encoder_releases(small_demo):
    paths = sorted((small_demo[0] / "features").glob("*.h5"))
    assert paths
    for path in paths:
        with h5py.File(path, "r") as f:
            recorded = json.loads(f.attrs["library_versions"])  # old code: KeyError (torch, timm only)
            assert json.loads(f.attrs["decode"])["decoder"]  # named; now its release is recorded too
        _check_reader_versions(recorded, encoder=True)


def test_the_score_file_records_its_run_and_its_features_releases(small_demo):
    out = small_demo[0]
    paths = sorted((out / "scores").glob("*.h5"))
    assert paths
    for path in paths:
        with h5py.File(path, "r") as f:
            mine = json.loads(f.attrs["library_versions"])  # old code: KeyError
            theirs = json.loads(f.attrs["features_library_versions"])
        _check_reader_versions(mine, encoder=True)
        with h5py.File(out / "features" / path.name, "r") as f:
            assert theirs == json.loads(f.attrs["library_versions"])


def test_a_pretrained_encoder_card_records_the_reader_releases(small_demo):
    training = yaml.safe_load((small_demo[0] / "encoder" / "card.yaml").read_text())["training"]
    _check_reader_versions(training["library_versions"], encoder=True)  # old code: KeyError (torch, timm only)


def test_the_model_records_the_releases_its_training_features_were_made_with(small_demo):
    out = small_demo[0]
    meta = json.loads((out / "model" / "model.json").read_text())
    with h5py.File(sorted((out / "features").glob("*.h5"))[0], "r") as f:
        features = json.loads(f.attrs["library_versions"])
    assert meta["features_library_versions"] == [features]  # old code: KeyError (versions: weakstil, torch, python, numpy)
    _check_reader_versions(features, encoder=True)


# --- the QuPath GeoJSONs: what made them, in the file itself ----------------------------------------
def test_a_score_tile_geojson_names_the_model_encoder_and_version(small_demo):
    out = small_demo[0] / "scores"
    path = sorted(out.glob("*.geojson"))[0]
    data = json.loads(path.read_text())
    made = data["weakstil_provenance"]  # old code: KeyError (only weakstil_written_by)
    with h5py.File(path.with_suffix(".h5"), "r") as f:
        for key in ("model_id", "encoder_id", "weakstil_version", "slide_fingerprint", "tumorbed_source"):
            assert made[key] == f.attrs[key], key
    assert not any("/" in str(v) for v in made.values())  # no path: the same scores give the same bytes anywhere


def test_a_bed_geojson_names_its_detector_and_is_the_same_bytes_when_made_again(small_demo, tmp_path):
    from weakstil.runtime import sha256_file

    demo = small_demo[0]
    features = sorted((demo / "features").glob("*.h5"))[0]
    detector = demo / "model" / "tumorbed"
    made = []
    for _ in range(2):
        run_cli("tumorbed", "apply", features, "--tumorbed", detector, "--out", tmp_path, "--overwrite", check=True)
        made.append((tmp_path / f"{features.stem}.geojson").read_bytes())
    assert made[0] == made[1]
    record = json.loads(made[0])["weakstil_provenance"]  # old code: KeyError (only the slide's identity)
    assert record["source"] in ("model", "tissue-fallback")
    assert record["detector_sha256"] == sha256_file(detector / "model.safetensors")
    assert record["detector_id"] == json.loads((detector / "model.json").read_text())["model_id"]
    with h5py.File(features, "r") as f:
        assert record["cache_key"] == f.attrs["cache_key"]
