"""Readers, manifest validation, the dataset and the lesion-preserving transforms."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from torchvision import tv_tensors

from rensenet.data import (
    DataError,
    ImageReadError,
    LesionSafeShift,
    SliceDataset,
    apply_window,
    build_transforms,
    image_shape,
    parse_window,
    read_dicom,
    read_image,
    read_manifest,
    read_nifti,
    select_split,
)


def _png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def _manifest(tmp_path: Path, rows: list, columns=("path", "label", "patient_id", "split")) -> Path:
    pd.DataFrame(rows, columns=list(columns)).to_csv(tmp_path / "manifest.csv", index=False)
    return tmp_path


@pytest.fixture()
def tiny_dataset(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        _png(tmp_path / f"img{i}.png", rng.integers(0, 255, (20, 24), dtype=np.uint8))
        rows.append((f"img{i}.png", i % 2, f"p{i // 2}", ["train", "val", "test"][i // 2]))
    return _manifest(tmp_path, rows)


# --- readers ----------------------------------------------------------------------------------------------------
def test_png_8_and_16_bit_scale_to_unit_range(tmp_path: Path) -> None:
    a8 = np.array([[0, 51], [204, 255]], dtype=np.uint8)
    assert np.allclose(read_image(_png(tmp_path / "a.png", a8)), a8 / 255.0)
    a16 = np.array([[0, 65535], [13107, 32768]], dtype=np.uint16)
    Image.fromarray(a16).save(tmp_path / "b.png")
    assert np.allclose(read_image(tmp_path / "b.png"), a16 / 65535.0, atol=1e-6)
    wide = _png(tmp_path / "wide.png", np.zeros((3, 7), dtype=np.uint8))
    assert image_shape(wide) == (3, 7) == read_image(wide).shape  # (H, W), as the pixels are read


def test_windows_by_hand() -> None:
    assert parse_window("lung") == (1500.0, -600.0) and parse_window("abdomen") == (400.0, 40.0)
    assert parse_window("350,50") == (350.0, 50.0)
    hu = np.array([-1000.0, -160.0, 40.0, 240.0, 1000.0])
    # abdomen: 0 at 40 - 200 = -160 HU, 1 at 240 HU
    assert np.allclose(apply_window(hu, (400.0, 40.0)), [0, 0, 0.5, 1, 1])
    with pytest.raises(ValueError, match="unknown CT window 'soft'"):
        parse_window("soft")


def test_dicom_to_hounsfield_then_window() -> None:
    import pydicom.data
    path = pydicom.data.get_testdata_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    out = read_dicom(path, "lung")
    assert out.shape == (128, 128) and out.dtype == np.float32
    assert np.allclose(out, np.clip((hu - (-600 - 750)) / 1500, 0, 1))
    assert float(ds.RescaleIntercept) == -1024  # the file really needs the rescale


def test_nifti_axial_slices_with_2p5d_context(tmp_path: Path) -> None:
    import nibabel as nib
    vol = np.zeros((6, 5, 4), dtype=np.float32)  # (x, y, z), identity affine = RAS
    for z in range(4):
        vol[:, :, z] = z * 100.0
    vol[1, 0, 2] = 1000.0  # x=1, posterior-most row (y=0) of slice 2
    nib.save(nib.Nifti1Image(vol, np.eye(4)), tmp_path / "v.nii.gz")
    out = read_nifti(tmp_path / "v.nii.gz", (1000.0, 500.0), context=1)  # maps 0..1000 HU to 0..1
    assert out.shape == (4, 3, 5, 6)  # (slices, prev/current/next, H=y, W=x)
    assert np.allclose(out[2, 1, -1, 1], 1.0)  # posterior is the bottom row once anterior is up
    assert np.allclose(out[2, :, 0, 0], [0.1, 0.2, 0.3])  # neighbours as channels
    assert np.allclose(out[0, :, 0, 0], [0.0, 0.0, 0.1])  # edge slice repeated


def test_unreadable_and_missing_images_name_the_file(tmp_path: Path) -> None:
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ImageReadError, match="broken.png: not a readable image"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(ImageReadError, match="nope.png: file not found"):
        read_image(tmp_path / "nope.png")
    for bad, why in (("broken.png", "not a readable image"), ("nope.png", "file not found")):
        with pytest.raises(ImageReadError, match=f"{bad}: {why}"):
            image_shape(tmp_path / bad)


# --- manifest ---------------------------------------------------------------------------------------------------
def test_benchmark_manifest_loads_with_patient_level_splits(data_root: Path) -> None:
    df = read_manifest(data_root / "kidney-stone-scans")
    assert set(df["split"]) == {"train", "val", "test"} and df["label"].isin([0, 1]).all()
    assert df.groupby("patient_id")["split"].nunique().max() == 1
    test = select_split(df, "test")
    assert len(test) == (df["split"] == "test").sum() and test.attrs["root"] == df.attrs["root"]


def test_missing_column_is_named(tmp_path: Path) -> None:
    pd.DataFrame({"path": ["a.png"]}).to_csv(tmp_path / "manifest.csv", index=False)
    with pytest.raises(DataError, match=r"manifest.csv: missing required column\(s\) \['label'\]"):
        read_manifest(tmp_path)


def test_bad_label_names_the_line(tiny_dataset: Path) -> None:
    df = pd.read_csv(tiny_dataset / "manifest.csv")
    df.loc[3, "label"] = -1
    df.to_csv(tiny_dataset / "manifest.csv", index=False)
    with pytest.raises(DataError, match="line 5: label '?-1'? is not a class index"):
        read_manifest(tiny_dataset)


def test_missing_file_names_line_and_path(tiny_dataset: Path) -> None:
    (tiny_dataset / "img4.png").unlink()
    with pytest.raises(DataError, match=r"1 path file\(s\) not found .*line 6: img4.png"):
        read_manifest(tiny_dataset)


def test_unknown_and_empty_splits(tiny_dataset: Path) -> None:
    df = read_manifest(tiny_dataset)
    with pytest.raises(DataError, match=r"no split 'holdout'; the manifest has \['test', 'train', 'val'\]"):
        select_split(df, "holdout")
    assert len(select_split(df, "all")) == 6


def test_patient_in_two_splits_warns(tiny_dataset: Path) -> None:
    df = pd.read_csv(tiny_dataset / "manifest.csv")
    df.loc[2, "patient_id"] = "p0"  # p0 now in train and val
    df.to_csv(tiny_dataset / "manifest.csv", index=False)
    with pytest.warns(UserWarning, match="1 patient\\(s\\) appear in more than one split \\(e.g. 'p0'"):
        read_manifest(tiny_dataset)


def test_blank_and_corrupt_images_fail_with_line(tiny_dataset: Path) -> None:
    _png(tiny_dataset / "img1.png", np.full((20, 24), 7, dtype=np.uint8))
    df = read_manifest(tiny_dataset)
    with pytest.raises(DataError, match=r"manifest.csv, line 3: img1.png is blank"):
        SliceDataset(df)
    (tiny_dataset / "img1.png").write_bytes(b"garbage")
    with pytest.raises(DataError, match=r"line 3: .*img1.png: not a readable image"):
        SliceDataset(read_manifest(tiny_dataset))


def test_class_folder_layout(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    for split in ("train", "val"):
        for cls in ("cyst", "normal"):
            for i in range(2):
                _png(tmp_path / split / cls / f"{i}.png", rng.integers(0, 255, (8, 8), dtype=np.uint8))
    df = read_manifest(tmp_path)
    assert len(df) == 8 and sorted(set(df.split)) == ["train", "val"]
    assert dict(zip(df.label_name, df.label)) == {"cyst": 0, "normal": 1}


# --- dataset and transforms ---------------------------------------------------------------------------------------
def test_dataset_sample_has_mask_from_file_or_boxes(data_root: Path) -> None:
    df = select_split(read_manifest(data_root / "kidney-stone-scans"), "test").iloc[:6]
    df.attrs.update(read_manifest(data_root / "kidney-stone-scans").attrs)
    ds = SliceDataset(df, in_chans=3)
    pos = next(i for i in range(len(ds)) if df.label.iloc[i] == 1)
    sample = ds[pos]
    w, h = Image.open(Path(df.attrs["root"]) / df.path.iloc[pos]).size
    assert sample["image"].shape == (3, h, w) == (3, 320, 391) and torch.equal(sample["image"][0], sample["image"][2])
    assert sample["has_lesion"] and int(sample["mask"].sum()) == int(df["lesion_px"].iloc[pos])
    df2 = df.copy()
    df2.attrs.update(df.attrs)
    df2["mask_path"] = ""  # fall back to the boxes
    x0, y0, x1, y1 = map(int, df2["bbox"].iloc[pos].split(";")[0].split())
    assert int(SliceDataset(df2)[pos]["mask"].sum()) >= (x1 - x0) * (y1 - y0)


def _lesion_sample(y: int, x: int, size: int = 20) -> dict:
    mask = torch.zeros(1, size, size, dtype=torch.uint8)
    mask[0, y:y + 2, x:x + 3] = 1
    return {"image": tv_tensors.Image(mask.float().clone()), "mask": tv_tensors.Mask(mask), "label": 1}


@pytest.mark.parametrize("corner", [(0, 0), (18, 17), (9, 0)])
def test_lesion_safe_shift_never_cuts_the_lesion(corner: tuple) -> None:
    shift = LesionSafeShift(8)
    offsets = set()
    for _ in range(200):
        out = shift(_lesion_sample(*corner))
        assert int(out["mask"].sum()) == 6  # the whole 2 x 3 lesion stays in view
        assert (out["image"][out["mask"].bool()] > 0.5).all()  # and the image moved with it
        if corner == (9, 0):  # away from the top/bottom edge: replicate padding adds nothing bright there
            assert int((out["image"][:, :, 8:] > 0.5).sum()) == int(out["mask"][:, :, 8:].sum())
        offsets.add(tuple(torch.nonzero(out["mask"][0])[0].tolist()))
    assert len(offsets) > 3  # it does shift


def test_transforms_keep_mask_aligned_and_normalise() -> None:
    t = build_transforms(img_size=(20, 20), mean=[0.5], std=[0.25], train=True, augment="standard")
    for _ in range(20):
        out = t(_lesion_sample(5, 6))
        assert out["image"].dtype == torch.float32 and out["mask"].dtype == torch.bool
        assert torch.equal(out["image"] > 0, out["mask"])  # (1 - 0.5) / 0.25 = 2 on the lesion, -2 elsewhere
        assert set(out["image"].unique().tolist()) == {-2.0, 2.0}
    resized = build_transforms(img_size=(40, 40), mean=[0.0], std=[1.0])(_lesion_sample(5, 6))
    assert resized["image"].shape == (1, 40, 40) and int(resized["mask"].sum()) == 24  # nearest for masks


def test_window_with_context_by_hand() -> None:
    """A window sampled with 16 px of context: the sample is 16 px larger on every side, the window sits in its
    middle, black fills what lies beyond the image, and the mask holds only the positive window's lesion."""
    from rensenet.data.windows import Window, WindowDataset

    image = np.arange(100 * 120, dtype=np.float32).reshape(100, 120) / 12000
    mask = np.zeros((100, 120), bool)
    mask[20:24, 30:34] = True  # in the window
    mask[2:4, 2:4] = True  # in the context only
    windows = [Window(0, 10, 20, 1), Window(0, 60, 80, 0)]
    ds = WindowDataset([image], [mask], windows, size=32, context=16)
    pos, neg = ds[0], ds[1]
    assert pos["image"].shape == (1, 64, 64) and neg["image"].shape == (1, 64, 64)
    assert torch.equal(pos["image"][0, 16:48, 16:48], torch.from_numpy(image[10:42, 20:52]))
    assert torch.equal(pos["image"][0, :16, 16:48], torch.from_numpy(np.pad(image, ((6, 0), (0, 0)))[:16, 20:52]))
    assert torch.equal(pos["image"][0, 0, :], torch.zeros(64)) and pos["image"][0, 6, 4] == image[0, 8]
    assert int(pos["mask"].sum()) == 16 and bool(pos["mask"][0, 16 + 10, 16 + 10])
    assert int(neg["mask"].sum()) == 0 and neg["label"] == 0
    assert torch.equal(neg["image"][0, 56:, :], torch.zeros(8, 64))  # image rows 100.. and columns 120.. are black
    assert torch.equal(neg["image"][0, :, 56:], torch.zeros(64, 8)) and neg["image"][0, 55, 55] == image[99, 119]
