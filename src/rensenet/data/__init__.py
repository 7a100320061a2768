"""CT data: readers (PNG/JPG, DICOM, NIfTI), validated manifests, the slice dataset and transforms."""
from .dataset import SliceDataset, intensity_stats
from .manifest import DataError, class_names, image_paths, parse_boxes, read_manifest, select_split
from .readers import (WINDOWS, ImageReadError, apply_window, image_shape, parse_window, read_dicom, read_image, read_nifti,
                      read_slice)
from .transforms import AUGMENTATIONS, LesionSafeShift, build_transforms

__all__ = [
    "AUGMENTATIONS", "DataError", "ImageReadError", "LesionSafeShift", "SliceDataset", "intensity_stats", "WINDOWS", "apply_window",
    "build_transforms", "class_names", "image_paths", "image_shape", "parse_boxes", "parse_window", "read_dicom", "read_image", "read_manifest",
    "read_nifti", "read_slice", "select_split",
]
