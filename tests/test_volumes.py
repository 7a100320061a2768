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


def _series_error(folder: Path) -> str:
    [result] = open_inputs([folder], window="lung")
    assert isinstance(result, InputError), f"{folder.name} was accepted"
    assert "\n" not in result.message
    return result.message


def test_a_series_with_a_repeated_or_missing_slice_is_refused(tmp_path: Path) -> None:
    """Maps and millimetres assume evenly spaced slices: a gap or a repeated position would put every later slice
    one off, so such a series is refused with the slices named."""
    gap = write_series(tmp_path / "gap", 5, shuffle=(0, 1, 3, 4, 5))  # slice 2 missing: 5 mm between 1 and 3
    assert "not evenly spaced: 2.5 mm between slices, but 5 mm between slices 1 and 2 (a missing slice?" in \
        _series_error(gap)
    repeated = write_series(tmp_path / "repeated", 4, shuffle=(0, 1, 2, 3))
    ds = pydicom.dcmread(repeated / "img003.dcm")
    ds.ImagePositionPatient = pydicom.dcmread(repeated / "img001.dcm").ImagePositionPatient
    ds.save_as(repeated / "img003.dcm")
    assert "1 repeated slice position(s) (slices 1 and 2 both at" in _series_error(repeated)
    same = write_series(tmp_path / "same", 4, step=0.0, shuffle=(0, 1, 2, 3))  # every slice at one position
    assert "3 repeated slice position(s)" in _series_error(same)
    [ok] = open_inputs([write_series(tmp_path / "ok", 4, shuffle=(0, 1, 2, 3))], window="lung")
    assert isinstance(ok, Volume) and ok.n_slices == 4


def _damaged(path: Path, **tags) -> Path:
    from pydicom.dataelem import RawDataElement
    from pydicom.tag import Tag

    ds = pydicom.dcmread(CT)
    for keyword, raw in tags.items():  # raw bytes: pydicom refuses to set a malformed value itself
        tag = Tag(keyword)
        ds._dict[tag] = RawDataElement(tag, "DS", len(raw), raw, 0, False, True)
    ds.save_as(path)
    return path


@pytest.mark.parametrize("tag, raw, words", [
    ("ImageOrientationPatient", b"1\\0\\0\\0\\1 ", "ImageOrientationPatient is '[1, 0, 0, 0, 1]', not 6 numbers"),
    ("ImageOrientationPatient", b"1\\0\\0\\1\\0\\0 ", "ImageOrientationPatient [1.0, 0.0, 0.0, 1.0, 0.0, 0.0] is not two orthogonal"),
    ("PixelSpacing", b"0.7 ", "PixelSpacing is '0.7', not 2 positive numbers"),
    ("PixelSpacing", b"0.7\\0 ", "not 2 positive numbers"),
    ("RescaleSlope", b"abcdefgh", "RescaleSlope is 'abcdefgh', not 1 number"),
    ("ImagePositionPatient", b"1\\2 ", "ImagePositionPatient is '[1, 2]', not 3 numbers"),
])
def test_dicom_tags_of_the_wrong_shape_are_one_line_naming_file_and_tag(tmp_path: Path, tag, raw, words) -> None:
    """Alone and inside a series, a damaged tag is refused when the input is opened, never mid-scan."""
    alone = _damaged(tmp_path / "bad.dcm", **{tag: raw})
    [failed] = open_inputs([alone], window="abdomen")
    assert isinstance(failed, InputError) and failed.message.startswith(f"{alone}: ") and words in failed.message
    series = write_series(tmp_path / "series", 3, shuffle=(0, 1, 2))
    good = pydicom.dcmread(series / "img001.dcm")
    bad = _damaged(tmp_path / "series" / "img001.dcm", **{tag: raw})
    ds = pydicom.dcmread(bad)  # in the series: its UIDs, and its position unless that is the damaged tag
    ds.SeriesInstanceUID, ds.SOPInstanceUID = good.SeriesInstanceUID, good.SOPInstanceUID
    if tag != "ImagePositionPatient":
        ds.ImagePositionPatient = good.ImagePositionPatient
    ds.save_as(bad)
    [failed] = open_inputs([series], window="abdomen")
    assert isinstance(failed, InputError) and tag in failed.message and "img001.dcm" in failed.message


def _nifti_header_only(path: Path, shape: tuple, dtype=np.int16, payload: bytes = b"") -> Path:
    """A .nii(.gz) whose header claims ``shape``, followed by ``payload`` (not the data it claims)."""
    import gzip

    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_qform(np.eye(4), 1)
    header["vox_offset"] = 352
    data = header.binaryblock + b"\0" * (352 - len(header.binaryblock)) + payload
    path.write_bytes(gzip.compress(data) if path.name.endswith(".gz") else data)
    return path


def test_a_nifti_too_large_for_its_file_is_refused_before_anything_is_unpacked(tmp_path: Path, monkeypatch) -> None:
    """A header may claim anything: 30000 x 30000 x 1000 voxels (1.6 TiB), or a 2 GiB volume in a few MB of
    gzip. Both are refused from the header, and nothing is unpacked; a header that claims little is unpacked no
    further than it claims."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "t"))
    (tmp_path / "t").mkdir()
    huge = _nifti_header_only(tmp_path / "huge.nii", (30000, 30000, 1000))
    bomb = _nifti_header_only(tmp_path / "bomb.nii.gz", (2048, 1024, 1024), np.uint8, b"\0" * 2_000_000)
    for path in (huge, bomb):
        [failed] = open_inputs([path], window="abdomen")
        assert isinstance(failed, InputError) and failed.message.startswith(f"{path}: its header declares ")
        assert "crop or resample it" in failed.message
    assert list((tmp_path / "t").iterdir()) == []
    small = _nifti_header_only(tmp_path / "small.nii.gz", (4, 4, 2), np.int16, b"\1\0" * 32 + b"\0" * 5_000_000)
    volume = nifti_volume(small, window=(400.0, 40.0), plane="axial")
    [unpacked] = list((tmp_path / "t").iterdir())
    assert unpacked.stat().st_size == 352 + 4 * 4 * 2 * 2  # what the header declares, not the 5 MB behind it
    assert np.array_equal(volume.read_raw(0), np.ones((4, 4)))


def test_nan_and_inf_voxels_are_replaced_counted_and_said(tmp_path: Path) -> None:
    data = np.full((6, 5, 3), 40.0, np.float32)
    data[1, 1, 1] = 500.0
    data[0:2, 3:5, 1] = np.nan
    data[5, 0, 1] = np.inf
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "v.nii")
    volume = nifti_volume(tmp_path / "v.nii", window=(400.0, 40.0), plane="axial")
    hu = volume.read_raw(1)
    assert np.isfinite(hu).all() and volume.nonfinite == {1: 5}
    assert sorted(np.unique(hu).tolist()) == [40.0, 500.0]  # NaN -> the lowest finite value, +inf -> the highest
    assert int((hu == 500.0).sum()) == 2  # the real 500 and the +inf
    assert volume.read_raw(0).tolist() == np.full((5, 6), 40.0).tolist() and volume.nonfinite == {1: 5}
    data[:, :, 2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "w.nii")
    with pytest.raises(ImageReadError, match="w.nii: slice 2 holds no finite value"):
        nifti_volume(tmp_path / "w.nii", window=(400.0, 40.0), plane="axial").read(2)


def test_float_images_are_read_by_their_values_and_huge_headers_refused(tmp_path: Path) -> None:
    from PIL import Image

    from rensenet.data.readers import read_image

    values = np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8)
    Image.fromarray(values).save(tmp_path / "f.tif")
    assert np.allclose(read_image(tmp_path / "f.tif"), values)  # not 0/1 after an 8-bit conversion
    Image.fromarray(values * 1000).save(tmp_path / "hu.tif")
    with pytest.raises(ImageReadError, match=r"hu.tif: a float image with values in \[0, 1000\]; .* scale it"):
        read_image(tmp_path / "hu.tif")
    bad = values.copy()
    bad[0, 0] = np.nan
    Image.fromarray(bad).save(tmp_path / "nan.tif")
    with pytest.raises(ImageReadError, match="nan.tif: a float image with NaN or inf pixels"):
        read_image(tmp_path / "nan.tif")
    for side in (100000, 9000):  # beyond Pillow's own bomb limit, and beyond ours (8192 x 8192)
        with pytest.raises(ImageReadError, match=f"big{side}.png: its header declares .*pixels than the 67,108,864"):
            read_image(_png_header(tmp_path / f"big{side}.png", side, side))


def _png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims ``width`` x ``height`` pixels, with almost no data."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\0" * 100)) + chunk(b"IEND", b""))
    return path
