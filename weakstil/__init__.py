"""WeakSTIL: stromal tumour-infiltrating lymphocyte scoring of H&E whole-slide images.

Heavy dependencies (torch, openslide, h5py) are imported lazily inside the modules
that need them, so ``import weakstil`` and the CLI start quickly.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
