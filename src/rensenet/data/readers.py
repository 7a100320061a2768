"""Readers for CT slices: PNG/JPG (8/16-bit), DICOM (to Hounsfield units, then a window) and NIfTI volumes.

Every reader returns float32 arrays scaled to [0, 1]: ``(H, W)`` for a slice, ``(S, C, H, W)`` for a volume.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np
from PIL import Image

PathLike = Union[str, Path]

#: CT windows as (width, level) in Hounsfield units.
WINDOWS = {"lung": (1500.0, -600.0), "abdomen": (400.0, 40.0), "bone": (1800.0, 400.0), "brain": (80.0, 40.0)}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")


class ImageReadError(ValueError):
    """A file that cannot be used as a CT image; the message names the file and what to do."""


def parse_window(window: Union[None, str, Tuple[float, float]]) -> Optional[Tuple[float, float]]:
    """``"lung"`` / ``"abdomen"`` / ``"bone"`` / ``"brain"``, ``"W,L"`` (e.g. ``"400,40"``), a (W, L) pair, or None."""
    if window is None or isinstance(window, tuple):
        return window
    if window in WINDOWS:
        return WINDOWS[window]
    try:
        width, level = (float(v) for v in window.split(","))
    except ValueError:
        raise ValueError(
            f"unknown CT window {window!r}: use one of {sorted(WINDOWS)} or 'WIDTH,LEVEL' in HU, e.g. '400,40'"
        ) from None
    if width <= 0:
        raise ValueError(f"CT window width must be positive, got {width}")
    return width, level


def apply_window(hu: np.ndarray, window: Tuple[float, float]) -> np.ndarray:
    """Map Hounsfield units to [0, 1]: level - width/2 -> 0, level + width/2 -> 1, clipped."""
    width, level = window
    return np.clip((hu.astype(np.float32) - (level - width / 2)) / width, 0.0, 1.0)


def file_kind(path: PathLike) -> str:
    """'image', 'dicom' or 'nifti' from the name (or the DICOM preamble for files without a suffix)."""
    name = str(path).lower()
    if name.endswith(NIFTI_SUFFIXES):
        return "nifti"
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    if name.endswith(DICOM_SUFFIXES):
        return "dicom"
    try:
        with open(path, "rb") as f:
            f.seek(128)
            if f.read(4) == b"DICM":
                return "dicom"
    except OSError:
        pass
    raise ImageReadError(
        f"{path}: unsupported file type; use PNG/JPG/TIFF slices, DICOM (.dcm) files or NIfTI (.nii, .nii.gz) volumes"
    )


def read_image(path: PathLike) -> np.ndarray:
    """A PNG/JPG/TIFF slice as grayscale (H, W) in [0, 1]; 8-bit is divided by 255, 16-bit by 65535, and a float
    image is taken as it is, if all its values are finite and in [0, 1] (its only range a file does not declare)."""
    try:
        with Image.open(path) as im:
            _check_pixels(im, path)
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im, dtype=np.float32) / 65535.0
            elif im.mode == "F":
                arr = _float_image(np.asarray(im, dtype=np.float32), path)
            else:
                arr = np.asarray(im.convert("L"), dtype=np.float32) / 255.0
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except Image.DecompressionBombError:
        raise ImageReadError(_too_large(path, "far more")) from None
    except (OSError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e}); re-export it as PNG") from None
    if arr.ndim != 2 or min(arr.shape) == 0:
        raise ImageReadError(f"{path}: expected a 2D image, got shape {arr.shape}")
    return np.clip(arr, 0.0, 1.0)


#: The largest slice read: 8192 x 8192 pixels (a CT slice is 512 x 512; a header may claim anything).
MAX_PIXELS = 8192 * 8192


def _too_large(path: PathLike, size: str) -> str:
    return (f"{path}: its header declares {size} pixels than the {MAX_PIXELS:,} rensenet reads from one slice; "
            "crop or downsample it first")


def _check_pixels(im: Image.Image, path: PathLike) -> None:
    if im.size[0] * im.size[1] > MAX_PIXELS:
        raise ImageReadError(_too_large(path, f"{im.size[0]} x {im.size[1]}, more"))


def _float_image(arr: np.ndarray, path: PathLike) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise ImageReadError(f"{path}: a float image with NaN or inf pixels; replace them and save it again")
    lo, hi = float(arr.min()), float(arr.max())
    if lo < 0.0 or hi > 1.0:
        raise ImageReadError(f"{path}: a float image with values in [{lo:g}, {hi:g}]; rensenet reads float images "
                             "as intensities in [0, 1]: scale it to [0, 1], or save it as an 8- or 16-bit PNG of "
                             "the windowed slice")
    return arr


def image_shape(path: PathLike) -> Tuple[int, int]:
    """(H, W) of a PNG/JPG/TIFF slice from its header, without decoding the pixels."""
    try:
        with Image.open(path) as im:
            return im.size[::-1]
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except Image.DecompressionBombError:
        raise ImageReadError(_too_large(path, "far more")) from None
    except (OSError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e}); re-export it as PNG") from None


def read_dicom(path: PathLike, window: Union[None, str, Tuple[float, float]] = "abdomen") -> np.ndarray:
    """A DICOM slice: pixel data -> HU (RescaleSlope/Intercept) -> window -> (H, W) in [0, 1].

    ``window=None`` uses the file's own WindowWidth/WindowCenter, or min-max scaling when it has none.
    """
    import pydicom

    try:
        ds = pydicom.dcmread(str(path))
        pixels = ds.pixel_array.astype(np.float32)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except Exception as e:  # pydicom raises many types for broken files
        raise ImageReadError(f"{path}: not a readable DICOM image ({type(e).__name__}: {e})") from None
    if pixels.ndim != 2:
        raise ImageReadError(f"{path}: expected a single 2D slice, got pixel data of shape {pixels.shape}")
    hu = pixels * float(getattr(ds, "RescaleSlope", 1.0)) + float(getattr(ds, "RescaleIntercept", 0.0))
    win = parse_window(window)
    if win is None and "WindowWidth" in ds and "WindowCenter" in ds:
        first = lambda v: float(v[0]) if isinstance(v, pydicom.multival.MultiValue) else float(v)  # noqa: E731
        win = (first(ds.WindowWidth), first(ds.WindowCenter))
    if win is None:
        lo, hi = float(hu.min()), float(hu.max())
        return (hu - lo) / (hi - lo) if hi > lo else np.zeros_like(hu)
    return apply_window(hu, win)


def read_nifti(
    path: PathLike, window: Union[None, str, Tuple[float, float]] = "abdomen", *, context: int = 0
) -> np.ndarray:
    """Axial slices of a NIfTI volume as (S, 2*context+1, H, W) in [0, 1].

    The volume is reoriented to RAS so the last axis is axial; with ``context=1`` each slice carries its
    previous and next neighbour as channels (2.5D), repeating the edge slice at the ends. Values are taken as
    HU and windowed; ``window=None`` min-max scales the whole volume.
    """
    import nibabel as nib

    try:
        img = nib.as_closest_canonical(nib.load(str(path)))
        vol = np.asarray(img.dataobj, dtype=np.float32)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except Exception as e:
        raise ImageReadError(f"{path}: not a readable NIfTI volume ({type(e).__name__}: {e})") from None
    if vol.ndim == 4 and vol.shape[-1] == 1:
        vol = vol[..., 0]
    if vol.ndim != 3 or min(vol.shape) == 0:
        raise ImageReadError(f"{path}: expected a 3D volume, got shape {vol.shape}")
    win = parse_window(window)
    if win is None:
        lo, hi = float(vol.min()), float(vol.max())
        vol = (vol - lo) / (hi - lo) if hi > lo else np.zeros_like(vol)
    else:
        vol = apply_window(vol, win)
    # (X, Y, Z) in RAS -> (Z, H=Y flipped so anterior is up, W=X)
    slices = np.flip(np.transpose(vol, (2, 1, 0)), axis=1)
    return stack_neighbours(slices, context)


def stack_neighbours(slices: np.ndarray, context: int) -> np.ndarray:
    """(S, H, W) -> (S, 2*context+1, H, W): each slice with its neighbours as channels, edges repeated."""
    n = slices.shape[0]
    idx = np.clip(np.arange(n)[:, None] + np.arange(-context, context + 1)[None, :], 0, n - 1)
    return np.ascontiguousarray(slices[idx])


def read_slice(path: PathLike, window: Union[None, str, Tuple[float, float]] = None) -> np.ndarray:
    """One 2D slice from an image or DICOM file, (H, W) in [0, 1]; for PNG/JPG the window is already applied."""
    kind = file_kind(path)
    if kind == "image":
        return read_image(path)
    if kind == "dicom":
        return read_dicom(path, window)
    raise ImageReadError(f"{path}: a NIfTI volume where a 2D slice was expected; list its slices with read_nifti")


def read_mask(path: PathLike, shape: Sequence[int]) -> np.ndarray:
    """A lesion mask (nonzero = lesion) as a bool (H, W) array that must match the image's shape."""
    mask = read_image(path) > 0
    if tuple(mask.shape) != tuple(shape):
        raise ImageReadError(f"{path}: mask is {mask.shape} but its image is {tuple(shape)}; masks must match")
    return mask
