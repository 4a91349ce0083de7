"""Compare two WeakSTIL output folders file by file, ignoring what legitimately differs between runs.

    python benchmarks/compare_outputs.py BEFORE AFTER [--allow-new-attrs kind,schema_version]

Used to show that a refactor changes no result: run ``weakstil demo --quick --out BEFORE`` on the
old code and ``--out AFTER`` on the new one (same seed), then compare. What is ignored:

* time stamps and durations (``created``, ``*_seconds``, ``seconds``, ``timings_s``, ``total_s``...);
* the two folders' own absolute paths (``BEFORE`` in one file is ``AFTER`` in the other);
* in JSON held in attributes or safetensors metadata, the same time fields;
* HDF5 attributes named in ``--allow-new-attrs`` that only the AFTER file has (new schema fields).

Everything else must be equal: HDF5 datasets (names, dtype, shape, values, attributes), every
other attribute, CSV and JSON contents, safetensors tensors, and the bytes of all other files
(PNG, GeoJSON, TIFF). Prints one line per difference and exits 1 when there is any.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np

#: Attributes / JSON keys / CSV columns whose values are times or durations.
VOLATILE = re.compile(r"^(created|seconds|.*_seconds|timings_s|total_s|embed_seconds|train_seconds|load_seconds)$")


def _norm_text(text: str, root: Path) -> str:
    for r in {str(root), str(root.resolve())}:
        text = text.replace(r, "<ROOT>")
    return text


def _norm(value, root: Path):
    if isinstance(value, bytes):
        value = value.decode()
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, str):
        if value[:1] in "{[":  # JSON in an attribute (an encoder card with its training record)
            try:
                return _strip_json(json.loads(value), root)
            except ValueError:
                pass
        return _norm_text(value, root)
    if isinstance(value, np.ndarray):
        return [_norm(v, root) for v in value.tolist()]
    return value


def _strip_json(obj, root: Path):
    if isinstance(obj, dict):
        return {k: _strip_json(v, root) for k, v in obj.items() if not VOLATILE.match(str(k))}
    if isinstance(obj, list):
        return [_strip_json(v, root) for v in obj]
    if isinstance(obj, str):
        return _norm_text(obj, root)
    return obj


def _compare_attrs(a, b, where: str, ra: Path, rb: Path, allow_new: set[str], out: list[str]) -> None:
    ka = {k for k in a.keys() if not VOLATILE.match(k)}
    kb = {k for k in b.keys() if not VOLATILE.match(k)}
    for k in sorted(ka - kb):
        out.append(f"{where}: attribute {k} missing in AFTER")
    for k in sorted(kb - ka):
        if k not in allow_new:
            out.append(f"{where}: attribute {k} only in AFTER")
    for k in sorted(ka & kb):
        va, vb = _norm(a[k], ra), _norm(b[k], rb)
        # the tumour-bed detector's / features' absolute paths are inside the folders
        if va != vb and not (isinstance(va, float) and isinstance(vb, float) and np.isnan(va) and np.isnan(vb)):
            out.append(f"{where}: attribute {k}: {str(va)[:80]!r} != {str(vb)[:80]!r}")


def compare_h5(pa: Path, pb: Path, ra: Path, rb: Path, allow_new: set[str], out: list[str]) -> None:
    import h5py

    with h5py.File(pa, "r") as fa, h5py.File(pb, "r") as fb:
        names_a, names_b = [], []
        fa.visit(names_a.append)
        fb.visit(names_b.append)
        if sorted(names_a) != sorted(names_b):
            out.append(f"{pb}: objects {sorted(set(names_a) ^ set(names_b))} differ")
        _compare_attrs(fa.attrs, fb.attrs, str(pb), ra, rb, allow_new, out)
        for name in sorted(set(names_a) & set(names_b)):
            oa, ob = fa[name], fb[name]
            _compare_attrs(oa.attrs, ob.attrs, f"{pb}:{name}", ra, rb, allow_new, out)
            if isinstance(oa, h5py.Dataset):
                if oa.dtype != ob.dtype or oa.shape != ob.shape:
                    out.append(f"{pb}:{name}: {oa.dtype}{oa.shape} != {ob.dtype}{ob.shape}")
                elif oa[()].tobytes() != ob[()].tobytes():
                    out.append(f"{pb}:{name}: values differ")


def compare_csv(pa: Path, pb: Path, ra: Path, rb: Path, out: list[str]) -> None:
    import pandas as pd

    a = pd.read_csv(pa, dtype=str, keep_default_na=False)
    b = pd.read_csv(pb, dtype=str, keep_default_na=False)
    a = a[[c for c in a.columns if not VOLATILE.match(c)]].map(lambda v: _norm_text(v, ra))
    b = b[[c for c in b.columns if not VOLATILE.match(c)]].map(lambda v: _norm_text(v, rb))
    if list(a.columns) != list(b.columns) or not a.equals(b):
        out.append(f"{pb}: CSV contents differ")


def compare_safetensors(pa: Path, pb: Path, ra: Path, rb: Path, out: list[str]) -> None:
    """Same tensors (bytes) and the same metadata apart from times (a checkpoint records its run)."""
    from safetensors import safe_open

    with safe_open(str(pa), "np") as fa, safe_open(str(pb), "np") as fb:
        if sorted(fa.keys()) != sorted(fb.keys()):
            out.append(f"{pb}: tensor names differ")
            return
        for k in fa.keys():
            if fa.get_tensor(k).tobytes() != fb.get_tensor(k).tobytes():
                out.append(f"{pb}: tensor {k} differs")
        ma = {k: _norm(v, ra) for k, v in (fa.metadata() or {}).items()}
        mb = {k: _norm(v, rb) for k, v in (fb.metadata() or {}).items()}
        if ma != mb:
            out.append(f"{pb}: metadata differs")


def compare_dirs(before: Path, after: Path, allow_new: set[str] | None = None) -> list[str]:
    """Every difference between the two folders, as lines (empty: the same results)."""
    allow_new = allow_new or set()
    out: list[str] = []
    fa = {p.relative_to(before) for p in before.rglob("*") if p.is_file()}
    fb = {p.relative_to(after) for p in after.rglob("*") if p.is_file()}
    for rel in sorted(fa ^ fb):
        out.append(f"{rel}: only in {'BEFORE' if rel in fa else 'AFTER'}")
    for rel in sorted(fa & fb):
        pa, pb = before / rel, after / rel
        suffix = pa.suffix.lower()
        if suffix in (".h5", ".hdf5"):
            compare_h5(pa, pb, before, after, allow_new, out)
        elif suffix == ".csv":
            compare_csv(pa, pb, before, after, out)
        elif suffix == ".json":
            a = _strip_json(json.loads(pa.read_text()), before)
            b = _strip_json(json.loads(pb.read_text()), after)
            if a != b:
                out.append(f"{rel}: JSON contents differ")
        elif suffix in (".yaml", ".yml"):
            import yaml

            a = _strip_json(yaml.safe_load(pa.read_text()), before)
            b = _strip_json(yaml.safe_load(pb.read_text()), after)
            if a != b:
                out.append(f"{rel}: YAML contents differ")
        elif pa.read_bytes() == pb.read_bytes():
            continue
        elif suffix == ".safetensors":
            compare_safetensors(pa, pb, before, after, out)
        else:
            out.append(f"{rel}: bytes differ")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before", type=Path)
    ap.add_argument("after", type=Path)
    ap.add_argument("--allow-new-attrs", default="", help="comma-separated HDF5 attributes only AFTER may have")
    args = ap.parse_args(argv)
    from inputs import need

    for p in (args.before, args.after):  # a mistyped folder compared as empty: "0 differences", exit 0
        need(p, "output folder", "pass two existing output folders (e.g. of two `weakstil demo --quick` runs)",
             kind="folder")
    allow = {s for s in args.allow_new_attrs.split(",") if s}
    diffs = compare_dirs(args.before, args.after, allow)
    n = sum(1 for p in args.after.rglob("*") if p.is_file())
    for line in diffs:
        print(line)
    print(f"{n} files compared, {len(diffs)} difference(s)")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
