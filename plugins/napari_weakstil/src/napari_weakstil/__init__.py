"""napari plugin for WeakSTIL: open whole-slide images and WeakSTIL results (tile-score heatmap,
attention, tumour bed, tissue) aligned in micrometres, and score slides from the viewer."""

from __future__ import annotations

import os
import sys

__version__ = "0.1.0"

__all__ = ["__version__", "keep_triton_out"]


def keep_triton_out() -> None:
    """Make ``import triton`` fail cleanly in the viewer's process.

    Triton ships its own LLVM; loaded into a process where napari's OpenGL already brought in
    Mesa's LLVM (llvmpipe under Xvfb, radeonsi/iris on many desktops) it segfaults. torch
    imports it lazily (e.g. from ``torch.use_deterministic_algorithms``) and treats an
    ImportError as "Triton absent", which is fine: WeakSTIL never compiles GPU kernels.
    ``WEAKSTIL_ALLOW_TRITON=1`` turns this off.
    """
    if os.environ.get("WEAKSTIL_ALLOW_TRITON") != "1" and "triton" not in sys.modules:
        sys.modules["triton"] = None  # type: ignore[assignment]


# the package is imported only inside napari (readers, widget): guard before torch is touched
keep_triton_out()
