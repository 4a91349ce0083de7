"""An encoder weights file checked from its headers alone (no tensor, no torch): the workflow's preflight."""

from __future__ import annotations

from typing import Any


def weights_file_problem(path: Any) -> tuple[str, str] | None:
    """(reason, fix) when an encoder weights file cannot be what an embed job loads, read from its headers alone
    (no tensor, no torch): the workflow's preflight. It only checked that the path exists, so a copy cut short, an
    empty or text file, a folder or an sTIL model's weights started the run and failed in every embed job."""
    import json
    import zipfile
    from pathlib import Path

    from weakstil.modeldir import ModelDir

    path = Path(path)
    again = "download or export the weights again, or set weights: null for the card's own"
    if path.is_dir():
        return "is a directory, not a weights file", ("set weights to the .safetensors file (a 'weakstil pretrain' "
                                                       "folder goes to the `encoder` key)")
    if not path.is_file():
        return "encoder weights file not found", ("correct the path (relative to the directory Snakemake runs in), "
                                                  "or set weights: null for the card's own")
    folder = ModelDir(path.parent)
    if folder.is_model() and path.resolve() == folder.weights_path.resolve():
        try:
            kind = json.loads(folder.meta_path.read_text(encoding="utf-8-sig")).get("format", "weakstil-tumorbed")
        except (OSError, ValueError, AttributeError):
            kind = "weakstil-tumorbed"
        what = "an sTIL model's ('weakstil train')" if kind == "weakstil-mil" else "a tumour-bed detector's"
        return f"holds {what} weights, not an encoder's", "set weights to the encoder's own file, or to null or random"
    with open(path, "rb") as fh:
        head = fh.read(9)
    if not head:
        return "is empty (0 bytes)", again
    if head.startswith(b"PK\x03\x04"):  # torch.save's zip: its central directory lies at the end of the file
        try:
            with zipfile.ZipFile(path) as zf:
                zf.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            return f"is not a readable PyTorch checkpoint ({exc})", again
        return None
    if head.startswith(b"\x80"):  # a legacy pickle: only torch.load (weights only) can tell
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            fh.keys()
    except Exception as exc:  # noqa: BLE001 - safetensors raises its own error types (and OSError) for a bad header
        return f"is not a readable safetensors file ({' '.join(str(exc).split())[:160]})", again
    return None
