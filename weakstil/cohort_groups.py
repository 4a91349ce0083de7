"""Which cohort column groups slides (patient or centre), and how groups are split: the folds of a
grouped cross-validation and a grouped hold-out. Split from :mod:`weakstil.cohort` (at its 500 lines)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from weakstil.errors import WeakSTILError

#: Used as group column when the user does not name one and the CSV has it.
DEFAULT_GROUP_COLUMN = "group"
#: Values of ``--group-column`` that switch grouping off.
NO_GROUP = {"", "none", "no", "off"}


#: The cohort's own columns, and what grouping by each would do instead of keeping a patient's or
#: centre's slides together.
NOT_GROUPS = {"stil": ("the label column", "slides with the same sTIL% share a fold, and the metrics by group "
                       "are by label value"),
              "slide_id": ("the slide id column", "every slide is a group of its own: no grouping at all"),
              "path": ("the slide file column", "every slide is a group of its own: no grouping at all")}


def group_setting(option: str, value: str) -> str:
    """How to give ``value`` as the group column where the user named it (``option``): ``pass --group-column
    X`` on the command line, ``set group_column: X`` in a workflow config (hunt 39c: the workflow's errors
    named ``--group-column``, an option its user never wrote)."""
    return f"pass {option} {value}" if option.startswith("--") else f"set {option}: {value}"


def resolve_group_column(columns: list[str], group_column: str | None, csv_path: str | Path | None = None,
                         option: str = "--group-column") -> str | None:
    """``None`` means 'use ``group`` if the CSV has it'; 'none' switches grouping off. The label, slide id
    or path column is refused: ``--group-column stil`` grouped the cross-validation folds and the metrics
    by the label itself, without a word; so is another name of the label that the cohort reader knows
    (``sTIL (%)``, ``TILs``: hunt 39c). ``option``: where the user named the column, as errors say it."""
    if group_column is None:
        return DEFAULT_GROUP_COLUMN if DEFAULT_GROUP_COLUMN in columns else None
    if group_column.strip().lower() in NO_GROUP:
        return None
    name = group_column.strip()
    from weakstil.cohort_csv import _required_column

    label = name.casefold() not in NOT_GROUPS and _required_column(name) == "stil"
    if name.casefold() in NOT_GROUPS or label:
        from weakstil.errors import UsageError

        what, effect = NOT_GROUPS["stil" if label else name.casefold()]
        what += " (another name of stil)" if label else ""
        raise UsageError(f"{option} {name!r} is {what}, not a patient or centre column ({effect})",
                         path=csv_path, fix=f"{group_setting(option, 'COLUMN')} with the column of each slide's "
                         f"patient or centre (e.g. group), or {group_setting(option, 'none')} to split by slide")
    return name


#: Words that say a column keeps slides apart in cross-validation (a column name's words, split at
#: spaces, '-', '_' and camelCase, compared without case and with a plural 's' dropped; or the whole name
#: without separators and an 'id' ending): the grouping column under a name ``train`` does not take.
GROUP_LIKE_NAMES = {"group", "groups", "patient", "case", "centre", "center", "site", "subject", "hospital",
                    "institution", "donor"}


def _group_like(name: str) -> bool:
    """``name`` reads as a patient or centre column: 'patient_id', 'Patient ID', and also names whose
    words say so, such as TCGA's 'Medical center', 'bcr_patient_barcode', 'case_submitter_id' or
    'tissue_source_site' (the whole name alone missed them, so their slides were split silently)."""
    key = re.sub(r"[\s_\-]+", "", name.casefold())
    if (key[:-2] if key.endswith("id") and key[:-2] in GROUP_LIKE_NAMES else key) in GROUP_LIKE_NAMES:
        return True
    words = re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+", name)
    return any(w.casefold() in GROUP_LIKE_NAMES or (w.casefold().endswith("s") and w.casefold()[:-1]
                                                     in GROUP_LIKE_NAMES) for w in words)


def group_column_lookalikes(csv_path: str | Path) -> list[str]:
    """The CSV's columns that look like a grouping column but are not the default ``group``
    (``Group``, ``patient_id``, ``Medical center``...): without ``--group-column`` they are not used."""
    from weakstil.cohort_csv import csv_separator

    try:  # (a ';'-separated CSV is read as read_cohort reads it)
        columns = [str(c).strip() for c in pd.read_csv(csv_path, nrows=0, encoding="utf-8-sig",
                                                       sep=csv_separator(Path(csv_path))).columns]
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return []
    return [c for c in columns if c != DEFAULT_GROUP_COLUMN and _group_like(c)]


# --- cross-validation splits ------------------------------------------------------------


def group_kfold(groups: np.ndarray | list, n_folds: int, seed: int = 0, *, what: str = "groups") -> np.ndarray:
    """Fold index (0..n_folds-1) per item, never splitting a group across folds.

    Groups are shuffled with ``seed`` and then placed, largest first, into the fold with
    the fewest items so far (balanced sizes, like scikit-learn's GroupKFold but seeded).
    Raises :class:`WeakSTILError` when there are fewer groups than folds.
    """
    groups = np.asarray(groups, dtype=object)
    uniq, inverse, counts = np.unique(groups.astype(str), return_inverse=True, return_counts=True)
    if n_folds < 2:
        raise WeakSTILError(f"cross-validation needs at least 2 folds, got {n_folds}",
                            fix="pass --folds 2 or more (or --folds 1 to skip cross-validation)")
    if len(uniq) < n_folds:
        noun = what[:-1] if len(uniq) == 1 and what.endswith("s") else what
        by_slide = "" if what == "slides" else "--group-column none to split by slide"
        if len(uniq) >= 2:
            fix = f"pass --folds {len(uniq)} or fewer" + (f", or {by_slide}" if by_slide else "")
        else:  # one group: no split of it holds out anything; --folds 1 trains without cross-validation
            fix = (f"pass {by_slide} (or --folds 1 to skip cross-validation)" if by_slide
                   else "pass --folds 1 to skip cross-validation")
        one = what[:-1] if what.endswith("s") else what  # split by slide: 'one slide', not 'one group'
        raise WeakSTILError(f"{len(uniq)} {noun} but {n_folds} folds: every fold needs at least one {one} of its own",
                            fix=fix)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(uniq))
    # stable sort by size (descending) over the shuffled order: random tie-breaking
    order = perm[np.argsort(-counts[perm], kind="stable")]
    fold_of_group = np.empty(len(uniq), dtype=np.int64)
    sizes = np.zeros(n_folds, dtype=np.int64)
    for g in order:
        k = int(np.argmin(sizes))  # first smallest fold
        fold_of_group[g] = k
        sizes[k] += counts[g]
    return fold_of_group[inverse]


def group_holdout(groups: np.ndarray | list, fraction: float, seed: int = 0) -> np.ndarray:
    """Boolean mask of items held out for validation: about ``fraction`` of the items,
    whole groups only, at least one group, never all groups. All False when there is only one group."""
    groups = np.asarray(groups, dtype=object).astype(str)
    uniq = np.unique(groups)
    if len(uniq) < 2:
        return np.zeros(len(groups), dtype=bool)
    rng = np.random.default_rng(seed)
    target = max(1.0, fraction * len(groups))
    held: list[str] = []
    n = 0
    for g in rng.permutation(uniq):
        if len(held) >= len(uniq) - 1 or n >= target:
            break
        size = int((groups == g).sum())
        # add a group unless it overshoots by more than it helps
        if n > 0 and abs(n + size - target) > abs(n - target):
            continue
        held.append(g)
        n += size
    return np.isin(groups, held)
