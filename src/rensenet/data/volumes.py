"""Whole slices and volumes with their place in patient space: images, DICOM files and series, NIfTI volumes.

A :class:`Volume` reads one slice at a time (a 300-slice series is never held whole) as float32 in [0, 1], and
its :class:`Geometry` maps a pixel to millimetres: DICOM in the patient's LPS space, NIfTI in its affine's RAS
space. CT is windowed from Hounsfield units; other modalities are refused unless allowed, and then scaled per
volume, never windowed as if they held Hounsfield units.
"""
from __future__ import annotations

import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from .checks import check_size, check_spacing, finite, numbers, orientation
from .readers import ImageReadError, apply_window, parse_window, read_image

PathLike = Union[str, Path]
Window = Optional[Tuple[float, float]]
#: NIfTI planes: voxel axes (column, row, slice) oriented as a radiologist reads them.
PLANES = {"axial": ("L", "P", "S"), "coronal": ("L", "I", "P"), "sagittal": ("P", "I", "L")}


@dataclass(frozen=True)
class Geometry:
    """Pixel (row, col) of slice k lies at ``origins[k] + row * row_step + col * col_step`` (mm, in ``space``)."""

    space: str  # "LPS" (DICOM patient coordinates) or "RAS" (NIfTI world coordinates)
    origins: np.ndarray  # (S, 3)
    row_step: np.ndarray  # (3,) mm per row
    col_step: np.ndarray  # (3,) mm per column

    def world(self, k: int, row: float, col: float) -> np.ndarray:
        return self.origins[k] + row * self.row_step + col * self.col_step

    @property
    def pixel_spacing(self) -> Tuple[float, float]:
        """(mm between rows, mm between columns)."""
        return float(np.linalg.norm(self.row_step)), float(np.linalg.norm(self.col_step))

    def affine_ras(self) -> np.ndarray:
        """4 x 4 affine of voxels (column, row, slice) to RAS mm, for a NIfTI of the scanned volume."""
        step = self.origins[1] - self.origins[0] if len(self.origins) > 1 else np.cross(self.col_step, self.row_step)
        affine = np.eye(4)
        affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = self.col_step, self.row_step, step, self.origins[0]
        return affine if self.space == "RAS" else np.diag([-1.0, -1.0, 1.0, 1.0]) @ affine


@dataclass
class Volume:
    """One scan input: ``read(k)`` gives slice k as (H, W) float32 in [0, 1]."""

    name: str
    kind: str  # image | dicom | dicom-series | nifti
    n_slices: int
    shape: Tuple[int, int]
    read: Callable[[int], np.ndarray]
    geometry: Optional[Geometry] = None
    series_uid: str = ""
    modality: str = ""
    window: Window = None  # the CT window applied, None for images (already windowed) and scaled modalities
    plane: str = ""
    affine: Optional[np.ndarray] = None  # NIfTI: the source's own affine, for maps written back in its voxel order
    to_source: Optional[np.ndarray] = None  # NIfTI: nibabel orientation from display (col, row, slice) to source
    read_raw: Optional[Callable[[int], np.ndarray]] = None  # slice k unwindowed, in ``units`` (what a viewer shows)
    units: str = "display"  # HU (CT), raw (other modalities) or display (images, already windowed to [0, 1])
    nonfinite: Dict[int, int] = field(default_factory=dict)  # slice -> NaN/inf voxels replaced when it was read

    @property
    def is_volume(self) -> bool:
        return self.kind in ("dicom-series", "nifti")


def image_volume(path: PathLike) -> Volume:
    """A PNG/JPG/TIFF slice (already windowed) as a one-slice volume without geometry."""
    image = read_image(path)
    return Volume(str(path), "image", 1, image.shape, lambda k: image, read_raw=lambda k: image)


# --- DICOM ------------------------------------------------------------------------------------------------------
def dicom_header(path: PathLike):
    """The dataset with its pixel data deferred (read only when needed); one-line errors for non-images."""
    import pydicom

    try:
        ds = pydicom.dcmread(str(path), defer_size="1 KB")
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except Exception as e:
        raise ImageReadError(f"{path}: not a readable DICOM file ({type(e).__name__}: {e})") from None
    if "PixelData" not in ds:
        raise ImageReadError(f"{path}: a DICOM file without pixel data (a report, a structured document or a "
                             "presentation state?); remove it from the input or point at the image files")
    if int(getattr(ds, "NumberOfFrames", 1) or 1) > 1:
        raise ImageReadError(f"{path}: a multi-frame DICOM; convert it to NIfTI (e.g. with dcm2niix) and scan that")
    return ds


def check_modality(ds, path: PathLike, allow: Sequence[str], window: Window) -> bool:
    """True for CT (windowed in Hounsfield units); False for an allowed other modality (scaled, not windowed)."""
    modality = str(getattr(ds, "Modality", "") or "").upper()
    if modality in ("CT", ""):
        return True
    if modality not in {m.upper() for m in allow}:
        raise ImageReadError(f"{path}: modality {modality}, not CT; the model was trained on CT windows. Pass "
                             f"--allow-modality {modality} to scan it anyway (scaled per volume, not HU-windowed)")
    if window is not None:
        raise ImageReadError(f"{path}: modality {modality} has no Hounsfield units, so a CT window cannot apply; "
                             "leave out --window (the image is scaled to its own range)")
    return False


def _rescale(ds, path: PathLike) -> Tuple[float, float]:
    """(RescaleSlope, RescaleIntercept); absent tags mean 1 and 0, as they did."""
    slope = float(numbers(ds, "RescaleSlope", 1, path)[0]) if ds.get("RescaleSlope") not in (None, "") else 1.0
    intercept = float(numbers(ds, "RescaleIntercept", 1, path)[0]) if ds.get("RescaleIntercept") not in (None, "") \
        else 0.0
    return slope or 1.0, intercept


def _hu(ds, path: PathLike) -> np.ndarray:
    slope, intercept = _rescale(ds, path)
    try:
        pixels = ds.pixel_array.astype(np.float32)
    except Exception as e:  # pydicom raises many types for broken or compressed-without-codec files
        raise ImageReadError(f"{path}: pixel data not readable ({type(e).__name__}: {e})") from None
    if pixels.ndim != 2:
        raise ImageReadError(f"{path}: expected a single 2D slice, got pixel data of shape {pixels.shape}")
    return pixels * slope + intercept


def _own_window(ds) -> Window:
    import pydicom

    if "WindowWidth" not in ds or "WindowCenter" not in ds:
        return None
    first = lambda v: float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else float(v)  # noqa: E731
    return first(ds.WindowWidth), first(ds.WindowCenter)


def _scaler(samples: List[np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
    """Per-volume scaling to [0, 1] between the 0.5th and 99.5th percentile of ``samples``."""
    lo, hi = np.percentile(np.concatenate([s.ravel() for s in samples]), [0.5, 99.5])
    return lambda a: np.clip((a - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.zeros_like(a)


def _dicom_geometry(headers: Sequence, path: PathLike) -> Optional[Geometry]:
    first = headers[0]
    if not all(hasattr(h, "ImagePositionPatient") for h in headers) or not hasattr(first, "ImageOrientationPatient"):
        return None
    iop = orientation(first, path)
    row_mm, col_mm = numbers(first, "PixelSpacing", 2, path, positive=True) if "PixelSpacing" in first else (1.0, 1.0)
    # IOP: the direction of increasing column index (along a row), then of increasing row index
    origins = np.stack([numbers(h, "ImagePositionPatient", 3, path) for h in headers])
    return Geometry("LPS", origins, iop[3:] * row_mm, iop[:3] * col_mm)


def dicom_volume(paths: Sequence[PathLike], *, window: Window, allow_modality: Sequence[str] = (),
                 own_window: bool = False) -> Volume:
    """One DICOM file, or the files of one series ordered along the slice normal (ImagePositionPatient, not
    file names), as a volume in Hounsfield units windowed by ``window`` (or each file's own window)."""
    headers = [dicom_header(p) for p in paths]
    name = str(paths[0]) if len(paths) == 1 else str(Path(paths[0]).parent)
    first = headers[0]
    uid = str(getattr(first, "SeriesInstanceUID", "") or "")
    is_ct = check_modality(first, paths[0], allow_modality, window)
    if is_ct and window is None and not own_window:
        raise ImageReadError(f"{name}: a CT window is needed to read Hounsfield units and the checkpoint records "
                             "none (it was trained on PNG/JPG images); pass --window lung|abdomen|bone|brain|W,L, "
                             "as its training images were windowed")
    if len(headers) > 1:
        sizes = {(int(h.Rows), int(h.Columns)) for h in headers}
        if len(sizes) > 1:
            raise ImageReadError(f"{name}: series {uid} mixes slice sizes {sorted(sizes)}; scan its parts separately")
        iops = {tuple(np.round(orientation(h, p), 4)) if "ImageOrientationPatient" in h else (0.0,) * 6
                for h, p in zip(headers, paths)}
        if len(iops) > 1:
            raise ImageReadError(f"{name}: series {uid} mixes slice orientations {sorted(iops)}; scan its parts "
                                 "separately")
        if all(hasattr(h, "ImagePositionPatient") for h in headers) and hasattr(first, "ImageOrientationPatient"):
            iop = orientation(first, paths[0])
            normal = np.cross(iop[:3], iop[3:])
            along = np.asarray([float(numbers(h, "ImagePositionPatient", 3, p) @ normal) for h, p in zip(headers, paths)])
            order = np.argsort(along, kind="stable")
            check_spacing(along[order], name, uid)
        else:
            raise ImageReadError(f"{name}: series {uid} has slices without ImagePositionPatient or "
                                 "ImageOrientationPatient, so their order is unknown; export it with geometry")
        headers, paths = [headers[i] for i in order], [paths[i] for i in order]
    for h, p in zip(headers, paths):  # a damaged tag of any slice is named before any slice is scanned
        _rescale(h, p)
        if "PixelSpacing" in h:
            numbers(h, "PixelSpacing", 2, p, positive=True)
    scale = None
    if not is_ct:
        picks = np.unique(np.linspace(0, len(paths) - 1, min(len(paths), 16)).round().astype(int))
        scale = _scaler([_hu(headers[i], paths[i]) for i in picks])

    def read(k: int) -> np.ndarray:
        ds = dicom_header(paths[k]) if len(paths) > 1 else headers[0]
        hu = _hu(ds, paths[k])
        if scale is not None:
            return scale(hu).astype(np.float32)
        win = window if window is not None else _own_window(ds)
        if win is None:
            raise ImageReadError(f"{paths[k]}: --window dicom, but the file has no WindowCenter/WindowWidth")
        return apply_window(hu, win)

    def read_raw(k: int) -> np.ndarray:
        return _hu(dicom_header(paths[k]) if len(paths) > 1 else headers[0], paths[k])

    return Volume(name, "dicom" if len(paths) == 1 else "dicom-series", len(paths),
                  (int(first.Rows), int(first.Columns)), read, geometry=_dicom_geometry(headers, paths[0]),
                  series_uid=uid, modality=str(getattr(first, "Modality", "")), window=window if is_ct else None,
                  read_raw=read_raw, units="HU" if is_ct else "raw")


def group_series(paths: Sequence[PathLike]) -> List[List[Path]]:
    """DICOM files grouped by SeriesInstanceUID (each file without one alone), in the order first seen."""
    import pydicom

    groups: dict = {}
    for p in paths:
        try:
            uid = str(pydicom.dcmread(str(p), stop_before_pixels=True, specific_tags=["SeriesInstanceUID"])
                      .get("SeriesInstanceUID", "") or f"file:{p}")
        except Exception as e:
            raise ImageReadError(f"{p}: not a readable DICOM file ({type(e).__name__}: {e})") from None
        groups.setdefault(uid, []).append(Path(p))
    return list(groups.values())


# --- NIfTI ------------------------------------------------------------------------------------------------------
def nifti_volume(path: PathLike, *, window: Window, plane: str = "auto") -> Volume:
    """A NIfTI volume (values taken as Hounsfield units) sliced in ``plane`` (``auto``: the acquisition plane,
    the voxel axis with the largest spacing), each slice oriented as a radiologist reads it."""
    import nibabel as nib
    from nibabel.orientations import axcodes2ornt, io_orientation, ornt_transform

    try:
        img = nib.load(str(path))
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except Exception as e:
        raise ImageReadError(f"{path}: not a readable NIfTI volume ({type(e).__name__}: {e})") from None
    shape = img.shape
    if len(shape) == 4 and shape[3] == 1:
        shape = shape[:3]
    if len(shape) != 3 or min(shape) == 0:
        raise ImageReadError(f"{path}: a {len(shape)}D volume of shape {tuple(img.shape)}; scan needs one 3D volume "
                             "(extract one time point, e.g. with fslroi or nibabel)")
    if window is None:
        raise ImageReadError(f"{path}: a CT window is needed to read its Hounsfield units and the checkpoint records "
                             "none; pass --window lung|abdomen|bone|brain|W,L")
    unpacked_bytes = check_size(img, shape, path)
    source = io_orientation(img.affine)
    if plane == "auto":
        zooms = np.asarray(img.header.get_zooms()[:3], dtype=float)
        thick = int(np.argmax(zooms)) if zooms.max() > 1.01 * np.sort(zooms)[-2] else None
        world_axis = int(source[thick, 0]) if thick is not None else 2
        plane = {0: "sagittal", 1: "coronal", 2: "axial"}[world_axis]
    if plane not in PLANES:
        raise ValueError(f"unknown plane {plane!r}: use auto or one of {sorted(PLANES)}")
    to_display = ornt_transform(source, axcodes2ornt(PLANES[plane]))
    display_affine = img.affine @ nib.orientations.inv_ornt_aff(to_display, shape)
    src_axis = {int(t): (i, int(f)) for i, (t, f) in enumerate(to_display)}  # display axis -> (source axis, flip)
    n_slices = shape[src_axis[2][0]]

    unpacked = None
    if str(path).lower().endswith(".gz"):
        # gzip cannot seek: unpack once into a temporary file (removed with the volume) that slices are read from,
        # so that the volume is never held whole
        unpacked = _gunzip_to_temp(path, unpacked_bytes)
        img = nib.load(unpacked, mmap=False)
    proxy = img.dataobj

    def read_raw(k: int) -> np.ndarray:
        axis, flip = src_axis[2]
        index = [slice(None)] * 3
        index[axis] = k if flip == 1 else shape[axis] - 1 - k
        at = tuple(index) + ((0,) if len(img.shape) == 4 else ())
        try:
            plane_data = np.asarray(proxy[at], np.float32)
        except Exception as e:
            raise ImageReadError(f"{path}: slice {k} not readable ({type(e).__name__}: {e})") from None
        kept = [a for a in range(3) if a != axis]  # source axes left, in order
        col_axis, col_flip = src_axis[0]
        row_axis, row_flip = src_axis[1]
        arr = plane_data if kept.index(col_axis) == 0 else plane_data.T  # -> (col, row)
        arr = arr[::col_flip, ::row_flip]
        return finite(np.ascontiguousarray(arr.T), path, k, nonfinite)  # (row, col), Hounsfield units

    def read(k: int) -> np.ndarray:
        return apply_window(read_raw(k), window)

    nonfinite: Dict[int, int] = {}

    origins = np.stack([(display_affine @ [0, 0, k, 1])[:3] for k in range(n_slices)])
    geometry = Geometry("RAS", origins, display_affine[:3, 1].copy(), display_affine[:3, 0].copy())
    h, w = shape[src_axis[1][0]], shape[src_axis[0][0]]
    back = ornt_transform(axcodes2ornt(PLANES[plane]), source)
    volume = Volume(str(path), "nifti", n_slices, (h, w), read, geometry=geometry, window=window, plane=plane,
                    affine=img.affine, to_source=back, modality="CT", read_raw=read_raw, units="HU",
                    nonfinite=nonfinite)
    if unpacked is not None:
        weakref.finalize(volume, _remove, unpacked)
    return volume


def _gunzip_to_temp(path: PathLike, limit: int) -> str:
    """Unpack into a private temporary file, never more than ``limit`` bytes (what the header declares)."""
    import gzip
    import tempfile

    fd, name = tempfile.mkstemp(prefix="rensenet-", suffix=".nii")
    try:
        with gzip.open(path, "rb") as src, os.fdopen(fd, "wb") as dst:
            left = limit
            while left > 0:
                chunk = src.read(min(left, 1 << 22))
                if not chunk:
                    break
                dst.write(chunk)
                left -= len(chunk)
    except (OSError, EOFError) as e:
        _remove(name)
        raise ImageReadError(f"{path}: the gzip stream is damaged ({type(e).__name__}: {e}); re-export the "
                             "volume") from None
    return name


def _remove(name: str) -> None:
    try:
        os.unlink(name)
    except FileNotFoundError:
        pass


def display_to_source(volume: Volume, data: np.ndarray) -> np.ndarray:
    """A (slices, rows, cols) array of a NIfTI volume back in the source file's voxel order (for its affine)."""
    from nibabel.orientations import apply_orientation

    return apply_orientation(np.transpose(data, (2, 1, 0)), volume.to_source)


__all__ = ["Geometry", "PLANES", "Volume", "check_modality", "dicom_header", "dicom_volume", "display_to_source",
           "group_series", "image_volume", "nifti_volume", "parse_window"]
