"""Dataset tables: a manifest CSV (the format of the benchmark data) or a class-per-folder tree, validated early.

Problems are reported with the file and the CSV line (header = line 1) and what to do about them.
"""
from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np
import pandas as pd

from .readers import DICOM_SUFFIXES, IMAGE_SUFFIXES

log = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("path", "label")
OPTIONAL_COLUMNS = ("label_name", "patient_id", "split", "mask_path", "bbox", "lesion_px", "source")
SPLIT_ORDER = ("train", "val", "test")


class DataError(ValueError):
    """The dataset cannot be used as it is; the message says which file, which row and what to do."""


def _line(df: pd.DataFrame, i: int) -> str:
    return f"line {int(df['_line'].iloc[i])}" if "_line" in df else f"row {i}"


def read_manifest(root: Union[str, Path], *, check_files: bool = True) -> pd.DataFrame:
    """Read ``root/manifest.csv`` (or ``root`` itself when it is a CSV file), else scan a class-per-folder tree.

    The frame has the manifest columns (missing optional ones filled in), ``_line`` (the CSV line) and the
    attribute ``df.attrs["root"]`` against which ``path`` and ``mask_path`` are resolved.
    """
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".csv":
        csv, base = root, root.parent
    elif (root / "manifest.csv").is_file():
        csv, base = root / "manifest.csv", root
    elif root.is_dir():
        df = scan_class_folders(root)
        df.attrs["source"] = str(root)
        return validate_manifest(df, root, check_files=check_files)
    else:
        raise DataError(f"{root}: no such dataset; give a folder with manifest.csv or class sub-folders, or a CSV")
    try:
        df = pd.read_csv(csv, dtype={"path": str, "mask_path": str, "bbox": str, "patient_id": str, "split": str},
                         keep_default_na=False, na_values={"lesion_px": [""], "label": [""]})
    except (pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(f"{csv}: not a readable CSV file ({e})") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{csv}: the manifest is empty; it needs a header with at least {REQUIRED_COLUMNS}") from None
    df["_line"] = np.arange(len(df)) + 2
    df.attrs["source"] = str(csv)
    return validate_manifest(df, base, check_files=check_files)


def scan_class_folders(root: Path) -> pd.DataFrame:
    """``root/<class>/*.png`` or ``root/<split>/<class>/*.png``; classes in sorted order, one patient per file."""
    suffixes = IMAGE_SUFFIXES + DICOM_SUFFIXES
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    split_dirs = [p for p in subdirs if p.name in SPLIT_ORDER]
    layout = [(p.name, p) for p in split_dirs] if split_dirs else [("", root)]
    classes = sorted({c.name for _, d in layout for c in d.iterdir() if c.is_dir()})
    if not classes:
        raise DataError(f"{root}: no manifest.csv and no class sub-folders; see the README for the two layouts")
    rows = []
    for split, folder in layout:
        for label, name in enumerate(classes):
            for f in sorted((folder / name).glob("*")) if (folder / name).is_dir() else []:
                if f.suffix.lower() in suffixes:
                    rows.append(dict(path=str(f.relative_to(root)), label=label, label_name=name,
                                     patient_id=str(f.relative_to(root)), split=split or "all"))
    if not rows:
        raise DataError(f"{root}: class folders {classes} hold no images ({', '.join(suffixes)})")
    df = pd.DataFrame(rows)
    df["_line"] = np.arange(len(df)) + 2
    return df


def validate_manifest(df: pd.DataFrame, base: Path, *, check_files: bool = True) -> pd.DataFrame:
    source = df.attrs.get("source", str(base))
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise DataError(f"{source}: missing required column(s) {missing}; a manifest needs {list(REQUIRED_COLUMNS)} "
                        f"and may have {list(OPTIONAL_COLUMNS)}")
    if len(df) == 0:
        raise DataError(f"{source}: the manifest has a header but no rows")
    labels = pd.to_numeric(df["label"], errors="coerce")
    bad = np.flatnonzero(labels.isna().to_numpy() | (labels.to_numpy() % 1 != 0) | (labels.to_numpy() < 0))
    if len(bad):
        i = bad[0]
        raise DataError(f"{source}, {_line(df, i)}: label '{df['label'].iloc[i]}' is not a class index "
                        f"(0, 1, ...); {len(bad)} row(s) affected")
    df["label"] = labels.astype(int)
    for col, default in (("patient_id", None), ("split", "all"), ("mask_path", ""), ("bbox", ""), ("source", "")):
        if col not in df.columns:
            df[col] = df["path"] if default is None else default
        df[col] = df[col].fillna("" if default is not None else df["path"]).astype(str)
    if "lesion_px" not in df.columns:
        df["lesion_px"] = np.nan
    df["lesion_px"] = pd.to_numeric(df["lesion_px"], errors="coerce")
    if "label_name" not in df.columns:
        df["label_name"] = [f"class_{v}" for v in df["label"]]
    names = df.groupby("label")["label_name"].nunique()
    if (names > 1).any():
        lab = int(names[names > 1].index[0])
        raise DataError(f"{source}: label {lab} has several names {sorted(set(df.loc[df.label == lab, 'label_name']))}")
    df.attrs["root"] = str(base)
    df.attrs["source"] = source
    if check_files:
        _check_files(df, base, source)
    _warn_patient_leak(df, source)
    return df


def _check_files(df: pd.DataFrame, base: Path, source: str) -> None:
    for col in ("path", "mask_path"):
        values = df[col].to_numpy()
        exists = np.array([(not v) or (base / v).is_file() for v in values])
        if col == "path":
            exists &= np.array([bool(v) for v in values])
        if not exists.all():
            bad = np.flatnonzero(~exists)
            shown = ", ".join(f"{_line(df, i)}: {values[i] or '(empty)'}" for i in bad[:3])
            raise DataError(f"{source}: {len(bad)} {col} file(s) not found under {base} ({shown}); "
                            "paths are relative to the manifest's folder")


def _warn_patient_leak(df: pd.DataFrame, source: str) -> None:
    per_patient = df.groupby("patient_id")["split"].nunique()
    leaked = per_patient[per_patient > 1]
    if len(leaked):
        example = leaked.index[0]
        msg = (f"{source}: {len(leaked)} patient(s) appear in more than one split (e.g. {example!r} in "
               f"{sorted(set(df.loc[df.patient_id == example, 'split']))}); scores will be optimistic. "
               "Split by patient_id.")
        warnings.warn(msg, UserWarning, stacklevel=2)
        log.warning(msg)


def _lines(df: pd.DataFrame, rows: np.ndarray, shown: int = 3) -> str:
    return ", ".join(_line(df, i) for i in rows[:shown]) + (f" and {len(rows) - shown} more" if len(rows) > shown else "")


def class_names(df: pd.DataFrame, names: Optional[Sequence[str]] = None) -> List[str]:
    """Names of classes 0..n-1: ``names`` when given, else from ``label_name`` (``class_i`` where unnamed).

    Labels are class indices, so a label of 7 in a two-class task would create six classes without an image and
    train an 8-class model: that is refused, naming the rows, unless ``names`` lists every class.
    """
    source = df.attrs.get("source", "the manifest")
    labels = df["label"].to_numpy()
    if names is not None:
        names = [str(n) for n in names]
        outside = np.flatnonzero(labels >= len(names))
        if len(outside):
            raise DataError(f"{source}: {len(outside)} row(s) have a label outside the {len(names)} class names "
                            f"given ({_lines(df, outside)}); labels index --class-names from 0")
        return names
    present = set(labels.tolist())
    empty = [c for c in range(max(present) + 1) if c not in present]
    if empty:
        above = np.flatnonzero(labels > empty[0])
        raise DataError(
            f"{source}: no image has label {', '.join(map(str, empty))}, so those classes would be empty; "
            f"{len(above)} row(s) have a label above {empty[0]} ({_lines(df, above)}). Fix those labels (they "
            f"index classes from 0), or pass --class-names with all {max(present) + 1} names if the empty classes "
            "are meant")
    mapping = dict(zip(df["label"], df["label_name"]))
    return [str(mapping.get(i, f"class_{i}")) for i in range(max(present) + 1)]


def window_class_names(df: pd.DataFrame, names: Optional[Sequence[str]] = None) -> List[str]:
    """The two classes of windows cut from whole images: no lesion (0) and lesion (1), named from the manifest
    (``label_name`` of label 1, e.g. ``stone``; class 0 ``no_<name>`` unless some image is labelled 0)."""
    source = df.attrs.get("source", "the manifest")
    if names is not None:
        if len(names) != 2:
            raise DataError(f"{source}: windows of whole images have two classes (no lesion, lesion); "
                            f"--class-names gave {len(names)}")
        return [str(n) for n in names]
    other = sorted(set(df["label"].tolist()) - {0, 1})
    if other:
        raise DataError(f"{source}: labels {other} in a manifest of whole images; for --patch-size an image is "
                        "labelled 1 when it holds lesions (boxes or a mask) and 0 when it holds none")
    mapping = dict(zip(df["label"], df["label_name"]))
    lesion = str(mapping.get(1, "lesion"))
    return [str(mapping.get(0, f"no_{lesion}")), lesion]


def select_split(df: pd.DataFrame, split: str) -> pd.DataFrame:
    """Rows of one split (``"all"``: every row); an unknown or empty split is an error naming the ones there are."""
    if split == "all":
        out = df
    else:
        available = sorted(set(df["split"]))
        if split not in available:
            raise DataError(f"{df.attrs.get('source')}: no split {split!r}; the manifest has {available} (or use 'all')")
        out = df[df["split"] == split]
    if len(out) == 0:
        raise DataError(f"{df.attrs.get('source')}: split {split!r} is empty")
    out = out.reset_index(drop=True)
    out.attrs.update(df.attrs)
    return out


def image_paths(df: pd.DataFrame) -> List[str]:
    """The image files of a manifest (or of a split of it), resolved against its root: what ``scan`` is given."""
    return [str(Path(df.attrs["root"]) / p) for p in df["path"]]


def parse_boxes(bbox: str) -> List[tuple]:
    """``"x0 y0 x1 y1; ..."`` (x1, y1 exclusive) -> list of int tuples."""
    boxes = []
    for part in filter(None, (p.strip() for p in str(bbox).split(";"))):
        vals = part.split()
        if len(vals) != 4:
            raise DataError(f"bbox {bbox!r}: each box needs 'x0 y0 x1 y1'")
        boxes.append(tuple(int(float(v)) for v in vals))
    return boxes
