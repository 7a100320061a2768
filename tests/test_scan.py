"""Whole images end to end: training from whole slices learns, dense maps agree with exact tiling, and
``rensenet scan`` reads series, volumes and images, writes what it promises and survives bad inputs."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pydicom
import pytest
import torch

import rensenet
from rensenet.base import auc_score, load_model, resolve_device, weights_file
from rensenet.base.predict import tiled_window_logits
from rensenet.base.windows import WindowScorer
from rensenet.cli.main import main as cli
from rensenet.data import SliceDataset, image_paths, read_manifest, select_split
from rensenet.data.volumes import image_volume
from rensenet.data.windows import WindowSampler, crop, lesion_boxes
from rensenet.models import WindowInContext, optimize_for_inference
from rensenet.models.dense import dense_window_logits
from rensenet.scanning.run import ScanSettings, scan

from test_volumes import CT, write_series


def _window_auc(model, cfg, frame: pd.DataFrame, seed: int = 0) -> float:
    """AUC on held-out windows: one whole-lesion window and three lesion-free windows of every image."""
    ds = SliceDataset(frame)
    images = [ds.load(i)[0] for i in range(len(ds))]
    boxes = [lesion_boxes(b, ds.load(i)[1]) for i, b in enumerate(frame["bbox"])]
    sampler = WindowSampler([im.shape for im in images], boxes, size=cfg.patch_size)
    rng = np.random.default_rng(seed)
    x, y = [], []
    for w in sampler.epoch(rng, per_image=4, pos_fraction=0.25):
        x.append((crop(images[w.image], w.y, w.x, cfg.patch_size) - cfg.mean[0]) / cfg.std[0])
        y.append(w.label)
    with torch.no_grad():
        probs = torch.softmax(model.eval()(torch.from_numpy(np.stack(x))[:, None].float()), 1).numpy()
    return auc_score(np.asarray(y), probs)


@pytest.fixture(scope="module")
def kidney_scans(data_root: Path, tmp_path_factory) -> Path:
    """The embedded sample's studies of kidney-stone-scans (12 train, 3 val, all 15 test), with absolute paths
    into the data in use, so the tests see the same images with or without ../shared."""
    frame = pd.read_csv(data_root / "kidney-stone-scans" / "manifest.csv", keep_default_na=False)
    sample = pd.read_csv(Path(__file__).parents[1] / "src/rensenet/data/sample/kidney-stone-scans/manifest.csv",
                         keep_default_na=False)
    return _absolute(frame[frame.path.isin(sample.path)], data_root / "kidney-stone-scans",
                     tmp_path_factory.mktemp("kidney"))


def _absolute(frame: pd.DataFrame, src: Path, dest: Path) -> Path:
    frame = frame.copy()
    for col in ("path", "mask_path"):
        frame[col] = [str(src / v) if v else "" for v in frame[col]]
    frame.to_csv(dest / "manifest.csv", index=False)
    return dest


@pytest.fixture(scope="module")
def kidney_model(kidney_scans: Path, tmp_path_factory) -> Path:
    """rensenet_s trained from whole kidney slices: 64-px windows seen with 16 px of context, hard negatives,
    4 epochs (about two minutes)."""
    out = tmp_path_factory.mktemp("kidney-run") / "run"
    assert cli(["train", "--data", str(kidney_scans), "--out", str(out), "--patch-size", "64", "--context", "16",
                "--epochs", "4",
                "--windows-per-image", "16", "--pos-fraction", "0.25", "--hard-negatives", "4", "--batch-size", "32",
                "--seed", "0", "--no-progress"]) == 0
    return out / "best.pt"


def test_training_from_whole_images_learns(kidney_model: Path, kidney_scans: Path) -> None:
    """The model separates held-out whole-stone windows from lesion-free windows of any part of a slice (chance
    0.5; an untrained model scores about that), and its history shows mining and the validation CPM."""
    import timm

    model, cfg = load_model(kidney_model)
    val = select_split(read_manifest(kidney_scans), "val")
    assert cfg.patch_size == 64 and cfg.native_size == 64 and cfg.class_names == ["no_stone", "stone"]
    untrained = timm.create_model("rensenet_s", num_classes=2, in_chans=1)
    assert _window_auc(model, cfg, val) >= 0.85 > _window_auc(untrained, cfg, val) + 0.2
    history = pd.read_csv(kidney_model.parent / "history.csv")
    assert {"val_cpm", "val_sens_at_1fp", "hard_negatives", "mined"} <= set(history.columns)
    assert history.hard_negatives.is_monotonic_increasing and history.hard_negatives.iloc[-1] > 0
    assert history.mined.iloc[0] > 0 and history.mined.iloc[-1] == 0  # nothing mined for an epoch that never comes
    assert history.val_cpm.max() > 0


def test_dense_window_scores_follow_exact_tiling_on_real_slices(kidney_model: Path, kidney_scans: Path) -> None:
    """Dense scores come from the same trunk with the real neighbourhood of every window, and beyond the slice the
    16 px of black its tiles (and training crops) see. Exact tiling classifies each window on its own with that
    context: on real slices the dense map follows it closely, and far more closely than tiles without their context
    (the benchmark measures how close, and the speed-up)."""
    model, cfg = load_model(kidney_model)
    assert cfg.context == 16
    fast = optimize_for_inference(copy.deepcopy(model))
    test = select_split(read_manifest(kidney_scans), "test")
    first = test.iloc[:2].reset_index(drop=True)
    first.attrs.update(test.attrs)
    ds = SliceDataset(first)
    fill = -torch.tensor(cfg.mean) / torch.tensor(cfg.std)
    scorer = WindowScorer(fast, cfg, stride=8, margin=0)
    assert torch.allclose(scorer.black, fill)
    for i in range(2):
        image = ds.load(i)[0]
        x = scorer.prepare(image[None])[0]
        dense = scorer(image[None]).probs
        with torch.no_grad():
            zero_padded = torch.softmax(dense_window_logits(fast, x, window=64, stride=8), 1)[0, 1].numpy()
        tiled, bare = (torch.softmax(tiled_window_logits(m, x, window=64, stride=8, device=resolve_device("cpu"),
                                                         context=c, fill=fill), 1)[0, 1].numpy()
                       for m, c in ((WindowInContext(fast, 16), 16), (fast, 0)))
        assert dense.shape == tiled.shape == bare.shape == zero_padded.shape == ((320 - 64) // 8 + 1, (391 - 64) // 8 + 1)
        assert np.corrcoef(dense.ravel(), tiled.ravel())[0, 1] > 0.98
        assert np.abs(dense - tiled).mean() < 0.5 * np.abs(dense - bare).mean()
        assert not np.allclose(dense[:2], zero_padded[:2], atol=1e-3)  # the first rows see the black
        if i == 0:  # `scan --exact` scores with the tiles and their context
            exact = WindowScorer(fast, cfg, stride=8, margin=0, exact=True)(image[None]).probs
            assert np.allclose(exact, tiled, atol=1e-6) and not np.allclose(exact, dense, atol=1e-3)


def test_the_shipped_lung_detectors_dense_map_is_its_tiling_on_real_views() -> None:
    """On a 96-px lung view the 32 px of context of every window leave the view. The dense map surrounds the view
    with the black its tiles and training crops saw there, and follows exact tiling (0.011 mean difference over 100
    test views in benchmarks/WHOLE_IMAGE.md); with the trunk's zero padding there instead it drifts ten times as far."""
    model, cfg = load_model(weights_file(tag="rensenet_s.lidc_nodule_scan"))
    assert cfg.context == 32 and cfg.img_size == 48
    fast = optimize_for_inference(copy.deepcopy(model))
    sample = Path(rensenet.__file__).parent / "data" / "sample" / "lung-nodule-scans"
    views = image_paths(select_split(read_manifest(sample), "test"))[:4]
    dense_scorer, exact_scorer = WindowScorer(fast, cfg, stride=8), WindowScorer(fast, cfg, stride=8, exact=True)
    near, far = [], []
    for path in views:
        image = image_volume(path).read(0)[None]
        dense, tiled = dense_scorer(image).probs, exact_scorer(image).probs
        with torch.no_grad():
            zero = dense_window_logits(fast, dense_scorer.prepare(image)[0], window=48, stride=8)
        assert dense.shape == tiled.shape == zero.shape[-2:] == ((96 + 48 - 48) // 8 + 1,) * 2
        near.append(np.abs(dense - tiled).mean())
        far.append(np.abs(torch.softmax(zero, 1)[0, 1].numpy() - tiled).mean())
    assert np.mean(near) < 0.03 and np.mean(far) > 3 * np.mean(near)


def test_scan_of_a_manifest_split_writes_everything_and_scores_its_froc(kidney_model: Path, kidney_scans: Path,
                                                                          tmp_path: Path) -> None:
    out = tmp_path / "scan"
    assert cli(["scan", "--checkpoint", str(kidney_model), "--data", str(kidney_scans), "--split", "val",
                "--out", str(out), "--no-progress"]) == 0
    cands = pd.read_csv(out / "candidates.csv")
    images = pd.read_csv(out / "images.csv")
    val = select_split(read_manifest(kidney_scans), "val")
    assert len(images) == len(val) and (images.status == "ok").all() and images.seconds_per_slice.gt(0).all()
    assert {"path", "series_uid", "slice", "x", "y", "score", "size_px", "rank"} <= set(cands.columns)
    assert cands.x.between(0, 390).all() and cands.y.between(0, 319).all() and cands.score.between(0, 1).all()
    first = images.iloc[0]
    pmap = np.load(out / first["map"])
    assert pmap.shape == (320, 391) and pmap.dtype == np.float32
    assert first["map_max"] == pytest.approx(float(pmap.max()), abs=1e-6)
    assert first["max_candidate_score"] <= first["map_max"] + 1e-6
    assert len(list((out / "overlays").glob("*.png"))) >= len(val)
    froc = json.loads((out / "froc.json").read_text())
    assert froc["n_images"] == len(val) and set(froc["sens_at_fp"]) == {"0.125", "0.25", "0.5", "1", "2", "4", "8"}
    report = (out / "report.md").read_text()
    assert "s per slice" in report and "CPM" in report and "![FROC](froc.png)" in report


def test_scan_of_a_series_a_volume_and_bad_inputs(kidney_model: Path, tmp_path: Path) -> None:
    """A DICOM series (candidates in patient mm), a NIfTI volume with a non-trivial affine (mm checked by hand), a
    slice smaller than the window (padded, said so), an MR file (refused), and a series with an unreadable
    slice (stopped, named); the other inputs still finish."""
    series = write_series(tmp_path / "series", 5)
    broken = write_series(tmp_path / "broken", 3, uid="1.2.826.0.1.3680043.8.498.2", shuffle=(2, 0, 1))
    bad = pydicom.dcmread(broken / "img001.dcm")
    bad.PixelData = bad.PixelData[:100]  # truncated pixel data: this slice cannot be decoded
    bad.save_as(broken / "img001.dcm")
    affine = np.array([[0.0, 0.0, -2.0, 60.0], [0.7, 0.0, 0.0, -80.0], [0.0, 0.7, 0.0, 10.0], [0, 0, 0, 1]])
    vol = np.random.default_rng(0).normal(-300, 200, (80, 72, 4)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, affine), tmp_path / "vol.nii.gz")
    ds = pydicom.dcmread(CT)
    small = tmp_path / "small.png"
    from PIL import Image

    Image.fromarray((np.random.default_rng(1).random((40, 50)) * 255).astype(np.uint8)).save(small)
    settings = ScanSettings(window="abdomen", progress=False, allow_modality=())
    result = scan(kidney_model, [series, broken, tmp_path / "vol.nii.gz", small,
                                 pydicom.data.get_testdata_file("MR_small.dcm")], out=tmp_path / "out",
                  settings=settings)
    status = dict(zip(result.images.path.map(lambda p: Path(p).name), result.images.status))
    assert status["series"] == status["vol.nii.gz"] == status["small.png"] == "ok"
    assert status["broken"].startswith("failed: ") and "img001.dcm" in status["broken"]
    assert status["MR_small.dcm"].startswith("failed: ") and "modality MR" in status["MR_small.dcm"]
    assert len(result.errors) == 2
    # the series: candidates in LPS patient coordinates of their slice
    c = result.candidates[result.candidates.path == str(series)].iloc[0]
    ipp, (row_mm, col_mm) = np.asarray(ds.ImagePositionPatient, float), (float(v) for v in ds.PixelSpacing)
    assert c["space"] == "LPS" and c["x_mm"] == pytest.approx(ipp[0] + c["x"] * col_mm, abs=0.01)
    assert c["y_mm"] == pytest.approx(ipp[1] + c["y"] * row_mm, abs=0.01)
    assert c["z_mm"] == pytest.approx(ipp[2] + 2.5 * c["slice"], abs=0.01)
    # the NIfTI: candidates in the RAS mm of its affine, at the voxel worked out by hand (_nifti_voxel)
    v = result.candidates[result.candidates.path == str(tmp_path / "vol.nii.gz")]
    assert len(v) and set(v.space) == {"RAS"}
    for _, r in v.head(5).iterrows():
        i, j, k = _nifti_voxel(r, vol.shape)
        assert (r.x_mm, r.y_mm, r.z_mm) == pytest.approx(tuple((affine @ [i, j, k, 1])[:3]), abs=0.02)
    nifti_map = nib.load(tmp_path / "out" / result.images.set_index(result.images.path.map(lambda p: Path(p).name))
                         .loc["vol.nii.gz", "map"])
    assert nifti_map.shape == vol.shape and np.allclose(nifti_map.affine, affine)  # the source's voxels and affine
    assert 0 <= float(nifti_map.get_fdata().max()) <= 1.0
    series_map = nib.load(tmp_path / "out" / result.images.set_index(result.images.path.map(lambda p: Path(p).name))
                          .loc["series", "map"])
    assert series_map.shape == (128, 128, 5)
    assert any("small.png" in n and "padded" in n for n in result.notes)
    assert "failed:" in (tmp_path / "out" / "report.md").read_text()
    # another heatmap places the candidates: a wrong method or layer stops before any input is read
    with pytest.raises(ValueError, match="unknown CAM method 'gradcam\\+'"):
        ScanSettings(cam_method="gradcam+")
    with pytest.raises(ValueError, match="no layer 'stages.9'"):
        scan(kidney_model, [small], out=tmp_path / "never", settings=ScanSettings(cam_layers=["stages.9"], progress=False))
    assert not (tmp_path / "never").exists()
    other = scan(kidney_model, [small], settings=ScanSettings(cam_method="gradcam", cam_layers=["stages.3.block"],
                                                              progress=False, refine="cam"))
    default = scan(kidney_model, [small], settings=ScanSettings(progress=False, refine="cam"))
    assert other.settings.cam_layers == ("stages.3.block",) and len(other.candidates) and len(default.candidates)
    first = lambda r: r.candidates.sort_values("score", ascending=False)[["x", "y"]].to_numpy()[0]  # noqa: E731
    assert not np.allclose(first(other), first(default))  # the same map peak, refined by another heatmap


def _nifti_voxel(row: pd.Series, shape: tuple) -> tuple:
    """The source voxel of a candidate, by hand for the test's affine: voxel axes i, j, k point anterior
    (+y), superior (+z) and left (-x); k is thick, so slices are sagittal with columns toward posterior (i
    reversed), rows toward inferior (j reversed) and slices toward the left (k as stored)."""
    return shape[0] - 1 - row.x, shape[1] - 1 - row.y, row.slice
