"""What a file must satisfy before a scan trusts it: DICOM tags of the right shape, evenly spaced series, volumes
of a size that fits, finite voxel values. Each check refuses with one line that names the file and what to do, or
(non-finite voxels) repairs and counts, so the scan can say so."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple, Union

import numpy as np

from .readers import ImageReadError

PathLike = Union[str, Path]

#: The largest NIfTI volume opened: 512 x 512 x 2048 voxels, and 1 GiB unpacked from gzip (a 2 MB .nii.gz can
#: claim gigabytes; its header is checked before anything is unpacked).
MAX_VOXELS = 512 * 512 * 2048
MAX_UNPACKED_BYTES = 1 << 30
#: Slices of a series further from even spacing than this share of the step (or a repeated position) are refused.
SPACING_TOLERANCE = 0.1


def numbers(ds, keyword: str, count: int, path: PathLike, *, positive: bool = False) -> np.ndarray:
    """The tag ``keyword`` as ``count`` finite numbers, or one line naming the file, the tag and its value."""
    value = ds.get(keyword)
    items = list(value) if isinstance(value, (list, tuple)) or type(value).__name__ == "MultiValue" else [value]
    try:
        values = np.asarray([float(v) for v in items], dtype=float)
    except (TypeError, ValueError):
        values = np.zeros(0)
    if len(values) != count or not np.isfinite(values).all() or (positive and (values <= 0).any()):
        want = f"{count} {'positive ' if positive else ''}number{'s' if count > 1 else ''}"
        raise ImageReadError(f"{path}: {keyword} is {str(value)[:60]!r}, not {want}; the file's header is damaged: "
                             "re-export the series from the scanner or PACS")
    return values


def orientation(ds, path: PathLike) -> np.ndarray:
    """ImageOrientationPatient as two orthogonal unit vectors, or one line saying what is wrong."""
    iop = numbers(ds, "ImageOrientationPatient", 6, path)
    rows, cols = iop[:3], iop[3:]
    if abs(np.linalg.norm(rows) - 1) > 0.01 or abs(np.linalg.norm(cols) - 1) > 0.01 or abs(rows @ cols) > 0.01:
        raise ImageReadError(f"{path}: ImageOrientationPatient {iop.tolist()} is not two orthogonal unit vectors; "
                             "the file's header is damaged: re-export the series")
    return iop


def check_spacing(positions: np.ndarray, name: str, uid: str) -> None:
    """Refuse a series whose slices (``positions`` along the normal, sorted) are not evenly spaced: a repeated
    position or a gap would put every later slice of a map, and its millimetres, in the wrong place."""
    steps = np.diff(positions)
    if not len(steps):
        return
    repeated = np.flatnonzero(steps < 1e-3)
    if len(repeated):
        k = int(repeated[0])
        raise ImageReadError(f"{name}: series {uid} has {len(repeated)} repeated slice position(s) (slices {k} and "
                             f"{k + 1} both at {positions[k]:.2f} mm along the normal): a duplicated slice or two "
                             "acquisitions in one series; remove the duplicates or scan each acquisition on its own")
    step = float(np.median(steps))
    uneven = np.flatnonzero(np.abs(steps - step) > SPACING_TOLERANCE * step)
    if len(uneven):
        k = int(uneven[0])
        what = "a missing slice?" if steps[k] > step else "an extra slice?"
        raise ImageReadError(f"{name}: series {uid} is not evenly spaced: {step:.3g} mm between slices, but "
                             f"{steps[k]:.3g} mm between slices {k} and {k + 1} ({what}; {len(uneven)} uneven "
                             "step(s)); scan the complete series, or resample it to even spacing first")


def check_size(img, shape: Tuple[int, ...], path: PathLike) -> int:
    """The bytes the volume unpacks to, from its header; a volume over :data:`MAX_VOXELS` or
    :data:`MAX_UNPACKED_BYTES` is refused before anything is read or unpacked."""
    voxels = int(np.prod([int(n) for n in shape], dtype=object))
    offset = max(int(getattr(img.dataobj, "offset", 0) or 0), 352)  # voxels start after the header (and extensions)
    nbytes = offset + voxels * np.dtype(img.get_data_dtype()).itemsize
    if voxels > MAX_VOXELS or nbytes > MAX_UNPACKED_BYTES:
        raise ImageReadError(f"{path}: its header declares {' x '.join(str(int(n)) for n in shape)} voxels "
                             f"({nbytes / 2**30:.1f} GiB), more than the {MAX_VOXELS:,} voxels and "
                             f"{MAX_UNPACKED_BYTES / 2**30:g} GiB rensenet opens; crop or resample it (or store it "
                             "as int16) first")
    return nbytes


def finite(values: np.ndarray, path: PathLike, k: int, seen: Dict[int, int]) -> np.ndarray:
    """Slice ``k`` with NaN and -inf set to its lowest finite value and +inf to its highest (counted in ``seen``,
    so the scan can say so); a slice with no finite value is refused."""
    bad = ~np.isfinite(values)
    if not bad.any():
        return values
    good = values[~bad]
    if not good.size:
        raise ImageReadError(f"{path}: slice {k} holds no finite value (all NaN or inf); re-export the volume")
    seen[k] = int(bad.sum())
    out = values.copy()
    out[np.isposinf(values)] = good.max()
    out[np.isnan(values) | np.isneginf(values)] = good.min()
    return out
