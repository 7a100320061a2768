"""What a user points ``scan`` and ``predict`` at: image files, DICOM files, DICOM series folders and NIfTI volumes,
as :class:`rensenet.data.volumes.Volume` s read one slice at a time."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..data.readers import DICOM_SUFFIXES, IMAGE_SUFFIXES, NIFTI_SUFFIXES, ImageReadError, file_kind, parse_window
from ..data.volumes import Volume, dicom_volume, group_series, image_volume, nifti_volume


@dataclass
class InputError:
    """An input that could not be opened: scanning goes on with the others and reports this."""

    name: str
    message: str


def _is_dicom(path: Path) -> bool:
    try:
        return file_kind(path) == "dicom"
    except ImageReadError:
        return False


def _outside(path: Path, within: Optional[Path]) -> Optional[InputError]:
    """An error for a file whose real path (links resolved) leaves ``within``."""
    if within is None:
        return None
    real = path.resolve()
    if real == within or within in real.parents:
        return None
    return InputError(str(path), f"{path}: a link to a file outside the folder being served; not read")


def _folder(folder: Path, **kw) -> List[Union[Volume, InputError]]:
    found = sorted(f for f in folder.rglob("*") if f.is_file() and not f.name.startswith("."))
    checked = [(f, _outside(f, kw["within"])) for f in found]
    refused = [e for _, e in checked if e is not None]
    files = [f for f, e in checked if e is None]
    dicoms = [f for f in files if f.name.lower().endswith(DICOM_SUFFIXES) or
              (not f.name.lower().endswith(IMAGE_SUFFIXES + NIFTI_SUFFIXES) and _is_dicom(f))]
    others = [f for f in files if f.name.lower().endswith(IMAGE_SUFFIXES + NIFTI_SUFFIXES)]
    if not dicoms and not others and not refused:
        raise ImageReadError(f"{folder}: no DICOM series, images or NIfTI volumes in this folder; point at a "
                             "folder of one or more series (.dcm files), or at image/NIfTI files")
    out: List[Union[Volume, InputError]] = list(refused)
    try:
        groups = group_series(dicoms) if dicoms else []
    except ImageReadError as e:
        return [InputError(str(folder), str(e))]
    for group in groups:
        out.append(_open(lambda: dicom_volume(group, **_dicom_kw(kw)), str(group[0].parent)))
    for f in others:
        out.extend(_file(f, **kw))
    return out


def _dicom_kw(kw: dict) -> dict:
    return {"window": kw["window"], "allow_modality": kw["allow_modality"], "own_window": kw["own_window"]}


def _open(make, name: str) -> Union[Volume, InputError]:
    try:
        return make()
    except ImageReadError as e:
        return InputError(name, str(e))
    except Exception as e:  # noqa: BLE001 - a library's error on a damaged file stops only this input
        return InputError(name, f"{name}: could not be opened ({type(e).__name__}: {e})")


def _file(path: Path, **kw) -> List[Union[Volume, InputError]]:
    try:
        kind = file_kind(path)
    except ImageReadError as e:
        return [InputError(str(path), str(e))]
    if kind == "image":
        return [_open(lambda: image_volume(path), str(path))]
    if kind == "dicom":
        return [_open(lambda: dicom_volume([path], **_dicom_kw(kw)), str(path))]
    return [_open(lambda: nifti_volume(path, window=kw["window"], plane=kw["plane"]), str(path))]


def open_inputs(paths: Sequence[Union[str, Path]], *, window=None, allow_modality: Sequence[str] = (),
                plane: str = "auto", within: Optional[Path] = None) -> List[Union[Volume, InputError]]:
    """Every input under ``paths``, in order: a file as it is, a folder as its DICOM series (one volume per
    SeriesInstanceUID), images and NIfTI volumes. An input that cannot be opened becomes an :class:`InputError`
    (the others are still scanned); a path that does not exist, or a folder with nothing to scan, is an error.
    With ``within`` (a folder a server serves), a file whose real path leaves it is refused, never read."""
    own_window = window == "dicom"
    within = Path(within).resolve() if within is not None else None
    kw = dict(window=None if own_window else parse_window(window), allow_modality=tuple(allow_modality),
              plane=plane, own_window=own_window, within=within)
    found: List[Union[Volume, InputError]] = []
    for p in map(Path, paths):
        if p.is_file() and _outside(p, within) is not None:
            found.append(_outside(p, within))
        elif p.is_dir():
            found += _folder(p, **kw)
        elif p.is_file():
            found += _file(p, **kw)
        else:
            raise ImageReadError(f"{p}: no such file or folder")
    if not found:
        raise ImageReadError(f"nothing to scan in {[str(p) for p in paths]}")
    return found


def collect_inputs(paths: Sequence[Union[str, Path]], **kw) -> List[Volume]:
    """:func:`open_inputs`, where any input that cannot be opened is an error (``predict`` reads all or none)."""
    volumes = open_inputs(paths, **kw)
    for v in volumes:
        if isinstance(v, InputError):
            raise ImageReadError(v.message)
    return volumes  # type: ignore[return-value]


@dataclass
class SliceItem:
    index: int
    image: np.ndarray  # (C, H, W) float32 in [0, 1]: the slice, with its neighbours as channels for 2.5D models


def iter_slices(volume: Volume, *, in_chans: int = 1, only: Optional[Sequence[int]] = None) -> Iterator[SliceItem]:
    """Slices in order; a 3-channel model gets each slice between its neighbours (edges repeated), and at most
    ``in_chans`` slices are held at a time."""
    context = (in_chans - 1) // 2 if in_chans > 1 and volume.is_volume else 0
    cache: dict = {}
    wanted = range(volume.n_slices) if only is None else only
    for k in wanted:
        idx = [min(max(k + d, 0), volume.n_slices - 1) for d in range(-context, context + 1)]
        for j in list(cache):
            if j not in idx:
                del cache[j]
        for j in idx:
            if j not in cache:
                cache[j] = volume.read(j)
        stack = np.stack([cache[j] for j in idx]).astype(np.float32)
        if stack.shape[0] != in_chans:  # a 2D image for a multi-channel model: repeat the slice
            stack = np.repeat(stack[:1], in_chans, axis=0)
        yield SliceItem(k, stack)


def slice_shape(volume: Volume) -> Tuple[int, int]:
    return tuple(volume.shape)  # type: ignore[return-value]
