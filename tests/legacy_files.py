"""Per-slide HDF5 files exactly as WeakSTIL 0.1.0 wrote them, before files had a ``kind``.

Each writer repeats the h5py calls of that release's writer (``tiles.write_tiles_h5``,
``embed._write_cache``, ``beds.write_bed``, ``evaluation.write_tile_scores``,
``score_outputs.write_slide_outputs``): dataset names, dtypes, compression and attributes, on a small
made-up slide. The readers of weakstil.files must keep reading them.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np

N = 12  #: tiles
SLIDE = {"slide_path": "/data/S1.svs", "slide_id": "S1", "slide_mpp": 0.25, "slide_mpp_source": "metadata",
         "slide_width": 4000, "slide_height": 3000, "slide_vendor": "aperio", "slide_levels": 3}
TILING = {"mpp": 0.5, "tile_px": 224, "tile_um": 112.0, "tile_size_level0": 448.0, "overlap_px": 0,
          "tissue_threshold": 0.5, "tile_mode": "skip", "mask_mpp": 8.0,
          "tissue_params": json.dumps({"min_saturation": 0.05}),
          "tiling_key": json.dumps({"mpp": 0.5, "tile_px": 224, "overlap_px": 0}, sort_keys=True), "n_tiles": N,
          "weakstil_version": "0.1.0", "created": "2025-01-01T00:00:00+0000"}


def arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    coords = np.array([(448 * (i % 4), 448 * (i // 4)) for i in range(N)], np.int64)
    bed = np.zeros(N, bool)
    bed[:7] = True
    return {"coords": coords, "tissue_fraction": rng.uniform(0.5, 1, N).astype(np.float32),
            "tissue_mask": rng.uniform(size=(94, 125)) > 0.3, "features": rng.normal(size=(N, 8)).astype(np.float32),
            "bed": bed, "bed_fraction": np.where(bed, 0.9, 0.1).astype(np.float32),
            "bed_mask": rng.uniform(size=(94, 125)) > 0.6,
            "scores": rng.uniform(0, 100, N).astype(np.float32), "weights": np.where(bed, 1 / 7, 0).astype(np.float32)}


def write_tiles(path: Path) -> Path:
    a = arrays()
    with h5py.File(path, "w") as f:
        f.create_dataset("coords", data=a["coords"].astype(np.int64))
        f.create_dataset("tissue_fraction", data=a["tissue_fraction"].astype(np.float32))
        ds = f.create_dataset("tissue_mask", data=a["tissue_mask"].astype(np.uint8), compression="gzip")
        ds.attrs["mpp"] = 8.0
        for key, value in {**SLIDE, **TILING}.items():
            f.attrs[key] = value
        f.attrs["warnings"] = json.dumps([])
        f.attrs["complete"] = 1
    return path


def write_features(path: Path, complete: int = 1) -> Path:
    a = arrays()
    with h5py.File(path, "w") as f:
        f.attrs["complete"] = 0
        feats = f.create_dataset("features", shape=(N, 8), dtype=np.float32, chunks=(N, 8))
        f.create_dataset("coords", data=a["coords"])
        f.create_dataset("tissue_fraction", data=a["tissue_fraction"])
        ds = f.create_dataset("tissue_mask", data=a["tissue_mask"].astype(np.uint8), compression="gzip")
        ds.attrs["mpp"] = 8.0
        feats[:] = a["features"]
        for k, v in {**SLIDE, **TILING}.items():
            f.attrs[k] = v
        f.attrs.update({"encoder": "small-cnn", "encoder_card": json.dumps({"name": "small-cnn"}), "embed_dim": 8,
                        "weights_sha256": "ab" * 32, "weights_source": "random init (seed 0)",
                        "normalisation": json.dumps({"mean": [0.5] * 3}), "precision": "fp32", "device": "cpu",
                        "torch_version": "2.5.1", "timm_version": "1.0", "seed": 0, "batch_size": 64,
                        "warnings": "[]", "cache_key": "cd" * 32, "cache_format": 1, "embed_seconds": 1.5})
        f.attrs["complete"] = complete
    return path


def write_bed(path: Path) -> Path:
    a = arrays()
    with h5py.File(path, "w") as f:
        f.create_dataset("tumorbed", data=a["bed"].astype(np.uint8))
        f.create_dataset("tumorbed_fraction", data=a["bed_fraction"])
        ds = f.create_dataset("tumorbed_mask", data=a["bed_mask"].astype(np.uint8), compression="gzip")
        ds.attrs["mpp"] = 8.0
        f.create_dataset("coords", data=a["coords"])
        for key, value in {"slide_id": "S1", "source": "annotation", "detail": "/ann/S1.geojson",
                           "features_path": "/f/S1.h5", "annotation_path": "/ann/S1.geojson", "cache_key": "cd" * 32,
                           "tile_size_level0": 448.0, "slide_mpp": 0.25, "slide_width": 4000, "slide_height": 3000,
                           "slide_path": "/data/S1.svs", "encoder": "small-cnn", "weights_sha256": "ab" * 32,
                           "n_tiles": N, "n_tumorbed_tiles": 7, "tile_threshold": 0.5, "weakstil_version": "0.1.0",
                           "created": "2025-01-01T00:00:00+0000"}.items():
            f.attrs[key] = value
        f.attrs["complete"] = 1
    return path


def write_tile_scores(path: Path, attention: bool = True) -> Path:
    a = arrays()
    with h5py.File(path, "w") as f:
        f.create_dataset("coords", data=a["coords"])
        f.create_dataset("tile_scores", data=a["scores"])
        f.create_dataset("weights", data=a["weights"])
        f.create_dataset("tile_mask", data=a["bed"])
        if attention:
            f.create_dataset("attention", data=a["scores"] / 10)
        f.attrs["slide_id"] = "S1"
        f.attrs["tile_size_level0"] = 448.0
        for k, v in {"stil_pred": 42.0, "stil_true": 40.0, "fold": 1, "source": "cross-validation (out of fold)",
                     "aggregator": "attention", "slide_path": "/data/S1.svs", "slide_mpp": 0.25, "mpp": 0.5,
                     "tile_px": 224, "overlap_px": 0}.items():
            f.attrs[k] = v
        f.attrs["complete"] = 1
    return path


def write_slide_scores(path: Path) -> Path:
    a = arrays()
    with h5py.File(path, "w") as f:
        f.create_dataset("coords", data=a["coords"])
        f.create_dataset("tile_scores", data=a["scores"])
        f.create_dataset("tumorbed", data=a["bed"].astype(np.uint8))
        f.create_dataset("tumorbed_fraction", data=a["bed_fraction"])
        f.create_dataset("tissue_fraction", data=a["tissue_fraction"])
        ds = f.create_dataset("tissue_mask", data=a["tissue_mask"].astype(np.uint8), compression="gzip")
        ds.attrs["mpp"] = 8.0
        ds = f.create_dataset("tumorbed_mask", data=a["bed_mask"].astype(np.uint8), compression="gzip")
        ds.attrs["mpp"] = 8.0
        for key, value in {"slide_id": "S1", "slide_path": "/data/S1.svs", "tile_size_level0": 448.0, "stil": 35.5,
                           "stil_high": "True", "threshold": 30.0, "status": "ok", "n_tiles": N,
                           "n_tumorbed_tiles": 7, "model_id": "model@abc", "model_path": "/m", "aggregator": "mean",
                           "encoder_id": "small-cnn@ab", "weakstil_version": "0.1.0",
                           "created": "2025-01-01T00:00:00+0000", "tumorbed_source": "model",
                           "tumorbed_detail": "tumorbed-6slides", "tumorbed_mask_mpp": 8.0,
                           "tumorbed_tile_threshold": 0.5, "mpp": 0.5, "tile_px": 224, "slide_mpp": 0.25}.items():
            f.attrs[key] = value
        f.attrs["complete"] = 1
    return path


#: kind -> writer of a legacy file of that kind
WRITERS = {"tiles": write_tiles, "features": write_features, "tumorbed": write_bed, "tile_scores": write_tile_scores,
           "slide_scores": write_slide_scores}
