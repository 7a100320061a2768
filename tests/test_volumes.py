"""Reading what a user scans: DICOM series ordered by position, CT only unless allowed, NIfTI oriented by its
affine, streamed slices with neighbours for 2.5D models, and one clear line for each kind of bad input."""
from __future__ import annotations

from pathlib import Path

import tempfile

import numpy as np
import pytest

from rensenet.data.readers import ImageReadError, apply_window
from rensenet.data.volumes import Volume, dicom_volume, nifti_volume
from rensenet.scanning.inputs import InputError, iter_slices, open_inputs

import pydicom  # noqa: E402
import pydicom.data  # noqa: E402
import nibabel as nib  # noqa: E402
CT = pydicom.data.get_testdata_file("CT_small.dcm")
MR = pydicom.data.get_testdata_file("MR_small.dcm")


def write_series(folder: Path, n: int = 5, *, uid: str = "1.2.826.0.1.3680043.8.498.1", shuffle=(3, 0, 4, 1, 2),
                 step: float = 2.5) -> Path:
    """CT_small.dcm as an n-slice series: slice k sits k * step mm along the normal and its pixels are raised by
    100 * k HU; the files are named in the order ``shuffle`` (so file names do not give the order)."""
    folder.mkdir(parents=True, exist_ok=True)
    base = pydicom.dcmread(CT)
    normal = np.cross(np.asarray(base.ImageOrientationPatient[:3], float), np.asarray(base.ImageOrientationPatient[3:], float))
    for name_index, k in enumerate(shuffle[:n]):
        ds = pydicom.dcmread(CT)
        ds.ImagePositionPatient = [float(v) for v in np.asarray(base.ImagePositionPatient, float) + k * step * normal]
        ds.InstanceNumber = 10 - k  # misleading on purpose
        ds.SeriesInstanceUID = uid
        ds.SOPInstanceUID = f"{uid}.{k + 1}"
        ds.PixelData = (ds.pixel_array + 100 * k).astype(ds.pixel_array.dtype).tobytes()
        ds.save_as(folder / f"img{name_index:03d}.dcm")
    return folder


def test_a_shuffled_series_is_ordered_along_the_slice_normal(tmp_path: Path) -> None:
    series = write_series(tmp_path / "series")
    [volume] = open_inputs([series], window="400,40")
    assert volume.kind == "dicom-series" and volume.n_slices == 5 and volume.series_uid.endswith(".498.1")
    raw = pydicom.dcmread(CT)
    hu0 = raw.pixel_array.astype(np.float32) * float(raw.RescaleSlope) + float(raw.RescaleIntercept)
    for k in range(5):  # slice k holds the pixels raised by 100 * k HU
        assert np.allclose(volume.read(k), apply_window(hu0 + 100 * k, (400.0, 40.0)))
    z = [volume.geometry.world(k, 0, 0)[2] for k in range(5)]
    assert np.allclose(np.diff(z), 2.5) and volume.geometry.space == "LPS"
    # pixel (row, col) lies at IPP + col * column spacing along the row direction + row * row spacing down
    ipp = np.asarray(raw.ImagePositionPatient, float)
    row_mm, col_mm = (float(v) for v in raw.PixelSpacing)
    assert np.allclose(volume.geometry.world(0, 10, 20), ipp + [20 * col_mm, 10 * row_mm, 0])


def test_two_series_in_one_folder_are_two_volumes(tmp_path: Path) -> None:
    write_series(tmp_path / "study" / "a", 3, uid="1.2.3.1", shuffle=(2, 0, 1))
    write_series(tmp_path / "study" / "b", 2, uid="1.2.3.2", shuffle=(1, 0))
    volumes = open_inputs([tmp_path / "study"], window="lung")
    assert sorted((v.series_uid, v.n_slices) for v in volumes) == [("1.2.3.1", 3), ("1.2.3.2", 2)]


def test_mr_is_refused_unless_allowed_and_then_never_hu_windowed(tmp_path: Path) -> None:
    with pytest.raises(ImageReadError, match=r"MR_small.dcm: modality MR, not CT; .*--allow-modality MR"):
        dicom_volume([MR], window=(400.0, 40.0))
    with pytest.raises(ImageReadError, match="modality MR has no Hounsfield units, so a CT window cannot apply"):
        dicom_volume([MR], window=(400.0, 40.0), allow_modality=("MR",))
    volume = dicom_volume([MR], window=None, allow_modality=("mr",))
    image = volume.read(0)
    raw = pydicom.dcmread(MR).pixel_array.astype(np.float32)
    lo, hi = np.percentile(raw, [0.5, 99.5])
    assert volume.window is None and np.allclose(image, np.clip((raw - lo) / (hi - lo), 0, 1), atol=1e-6)
    [failed] = open_inputs([MR], window="abdomen")
    assert isinstance(failed, InputError) and "modality MR" in failed.message


def test_bad_dicom_inputs_each_give_one_line(tmp_path: Path) -> None:
    ds = pydicom.dcmread(CT)
    del ds.PixelData
    ds.save_as(tmp_path / "nopixels.dcm")
    with pytest.raises(ImageReadError, match="nopixels.dcm: a DICOM file without pixel data"):
        dicom_volume([tmp_path / "nopixels.dcm"], window=(400.0, 40.0))
    write_series(tmp_path / "mixed", 3, shuffle=(0, 1, 2))
    small = pydicom.dcmread(tmp_path / "mixed" / "img002.dcm")
    pixels = small.pixel_array[:64, :64].copy()
    small.Rows, small.Columns, small.PixelData = 64, 64, pixels.tobytes()
    small.save_as(tmp_path / "mixed" / "img002.dcm")
    [mixed] = open_inputs([tmp_path / "mixed"], window="lung")
    assert isinstance(mixed, InputError) and "mixes slice sizes [(64, 64), (128, 128)]" in mixed.message
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ImageReadError, match="empty: no DICOM series, images or NIfTI volumes in this folder"):
        open_inputs([tmp_path / "empty"], window="lung")
    with pytest.raises(ImageReadError, match="a CT window is needed .* pass --window"):
        dicom_volume([CT], window=None)
    with pytest.raises(ImageReadError, match="nothing.dcm: no such file or folder"):
        open_inputs([tmp_path / "nothing.dcm"], window="lung")


def test_nifti_is_sliced_in_its_acquisition_plane_with_mm_from_the_affine(tmp_path: Path) -> None:
    """Voxel axes i, j, k point posterior, superior and right (RAS), spaced 0.8, 0.8 and 2 mm. The thick axis k is
    the slice axis, so the volume is read in sagittal slices as a radiologist reads them: columns toward
    posterior (i), rows toward inferior (j reversed), slices toward the left (k reversed: slice = 5 - k)."""
    affine = np.array([[0.0, 0.0, 2.0, -100.0], [-0.8, 0.0, 0.0, 50.0], [0.0, 0.8, 0.0, -30.0], [0, 0, 0, 1]])
    data = np.full((12, 10, 6), -1000.0, np.float32)  # (i, j, k), air
    data[5, 3, 2] = 1000.0
    nib.save(nib.Nifti1Image(data, affine), tmp_path / "v.nii.gz")
    volume = nifti_volume(tmp_path / "v.nii.gz", window=(2000.0, 0.0))
    assert volume.plane == "sagittal" and volume.n_slices == 6 and volume.shape == (10, 12)
    image = volume.read(5 - 2)
    assert np.unravel_index(int(np.argmax(image)), image.shape) == (10 - 1 - 3, 5)
    # by hand: affine @ (5, 3, 2, 1) = (2 * 2 - 100, -0.8 * 5 + 50, 0.8 * 3 - 30)
    assert np.allclose(volume.geometry.world(3, 6, 5), (-96.0, 46.0, -27.6))
    assert volume.geometry.space == "RAS" and np.allclose(volume.geometry.pixel_spacing, (0.8, 0.8))
    axial = nifti_volume(tmp_path / "v.nii.gz", window=(2000.0, 0.0), plane="axial")
    assert axial.n_slices == 10 and axial.shape == (12, 6)  # rows toward posterior (i), columns toward left
    assert np.unravel_index(int(np.argmax(axial.read(3))), (12, 6)) == (5, 6 - 1 - 2)
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), np.eye(4)), tmp_path / "t.nii")
    with pytest.raises(ImageReadError, match=r"t.nii: a 4D volume of shape \(4, 4, 4, 2\); scan needs one 3D volume"):
        nifti_volume(tmp_path / "t.nii", window=(400.0, 40.0))


def test_slices_stream_with_their_neighbours_for_2p5d_models() -> None:
    reads = []

    def read(k: int) -> np.ndarray:
        reads.append(k)
        return np.full((4, 4), k, np.float32)

    volume = Volume("v", "nifti", 5, (4, 4), read)
    stacks = [item.image[:, 0, 0].tolist() for item in iter_slices(volume, in_chans=3)]
    assert stacks == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 4], [3, 4, 4]]  # edges repeated
    assert sorted(reads) == [0, 1, 2, 3, 4]  # every slice read once, at most three held at a time
    image = Volume("i", "image", 1, (4, 4), read)
    assert [item.image.shape for item in iter_slices(image, in_chans=3)] == [(3, 4, 4)]  # a 2D image repeated

def test_a_gzipped_nifti_is_unpacked_once_and_its_temporary_file_removed(tmp_path: Path, monkeypatch) -> None:
    """gzip cannot seek, so a .nii.gz is unpacked into a temporary file that slices are read from (the volume is
    never held whole in memory); the file goes with the volume, and a damaged stream is one line."""
    import gc

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "t"))
    (tmp_path / "t").mkdir()
    data = np.random.default_rng(0).integers(-1000, 1000, (7, 8, 5)).astype(np.int16)
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii.gz")
    volume = nifti_volume(tmp_path / "v.nii.gz", window=(2000.0, 0.0), plane="axial")
    assert len(list((tmp_path / "t").iterdir())) == 1
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii")
    plain = nifti_volume(tmp_path / "v.nii", window=(2000.0, 0.0), plane="axial")
    # read as from the file itself; identity affine = RAS, shown as radiologists do: both axes flipped
    for k in range(5):
        assert np.array_equal(volume.read_raw(k), plain.read_raw(k))
    assert np.array_equal(volume.read_raw(3), data[::-1, ::-1, 3].T)
    del volume
    gc.collect()
    assert list((tmp_path / "t").iterdir()) == []
    whole = (tmp_path / "v.nii.gz").read_bytes()
    (tmp_path / "cut.nii.gz").write_bytes(whole[: len(whole) // 2])
    with pytest.raises(ImageReadError, match=r"cut.nii.gz: .*(damaged|not a readable)"):
        nifti_volume(tmp_path / "cut.nii.gz", window=(2000.0, 0.0))
    assert list((tmp_path / "t").iterdir()) == []
