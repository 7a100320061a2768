"""``rensenet scan`` and ``evaluate-scans`` on broken and hostile input, with the shipped kidney detector: one bad
input never stops the others and is one line naming its file; NaN voxels and float images give the same findings
as their clean versions; an output folder is never silently mixed; SIGTERM leaves no temporary file."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rensenet.base import weights_file
from rensenet.cli.main import main as cli
from rensenet.data.readers import read_image
from rensenet.demo import sample_data_dir
from rensenet.scanning.run import ScanSettings, scan

from test_volumes import _damaged, _nifti_header_only, _png_header, write_series

TAG = "rensenet_s.kidney_stone_scan"
KIDNEY = sample_data_dir("kidney-stone-scans")
#: a held-out test slice of the embedded sample with several stones
SLICE = KIDNEY / "images" / "tez-study-009_081138393223.jpg"
ABDOMEN = (400.0, 40.0)


def _settings() -> ScanSettings:
    return ScanSettings.for_weights(weights_file(tag=TAG), window="abdomen", progress=False, overlays=1)


def _as_hu_nifti(path: Path, image: np.ndarray, n: int = 3) -> Path:
    """``image`` (H, W in [0, 1], abdomen-windowed) back in HU as an ``n``-slice axial NIfTI that displays as the
    image itself (identity affine: RAS, which the reader shows with both axes flipped)."""
    width, level = ABDOMEN
    hu = (image * width + level - width / 2).astype(np.float32)
    data = np.stack([hu.T[::-1, ::-1]] * n, axis=-1)
    nib.save(nib.Nifti1Image(np.ascontiguousarray(data), np.eye(4)), path)
    return path


def _top(result, path: Path, k: int = 0) -> pd.Series:
    rows = result.candidates[(result.candidates.path == str(path)) & (result.candidates.slice == k)]
    return rows.sort_values("score", ascending=False).iloc[0]


def test_nan_voxels_and_float_images_give_the_findings_of_their_clean_versions(tmp_path: Path) -> None:
    """A 10 x 10 corner of NaN once blanked its slice (status ok, the stones gone), and a float TIFF in [0, 1]
    was read as black (top score 0.0009 instead of 0.995)."""
    image = read_image(SLICE)
    clean = _as_hu_nifti(tmp_path / "clean.nii", image)
    data = np.asarray(nib.load(clean).dataobj).copy()
    data[:10, :10, 1] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), tmp_path / "nan.nii")
    Image.fromarray(image.astype(np.float32)).save(tmp_path / "float.tif")
    result = scan(weights_file(tag=TAG), [clean, tmp_path / "nan.nii", SLICE, tmp_path / "float.tif"],
                  settings=_settings())
    assert set(result.images.status) == {"ok"}
    reference = _top(result, clean, 1)
    assert reference.score > 0.9  # a stone, found
    nan_top = _top(result, tmp_path / "nan.nii", 1)
    assert nan_top.score == pytest.approx(reference.score, abs=0.01)
    assert (nan_top.x, nan_top.y) == pytest.approx((reference.x, reference.y), abs=1.0)
    assert any("nan.nii: 100 NaN/inf voxels in 1 slice(s) (first: slice 1)" in n for n in result.notes)
    jpeg_top, float_top = _top(result, SLICE), _top(result, tmp_path / "float.tif")
    assert float_top.score == pytest.approx(jpeg_top.score, abs=1e-4) and jpeg_top.score > 0.9
    assert (float_top.x, float_top.y) == (jpeg_top.x, jpeg_top.y)


def test_one_bad_input_never_stops_the_others(tmp_path: Path, capsys) -> None:
    """Each of these once ended the run with a traceback naming no file, and the inputs after it were never
    scanned. Now each is one line naming its file, the good input is scanned, and a run where every input failed
    exits non-zero."""
    bad = {
        "bomb.png": _png_header(tmp_path / "bomb.png", 100000, 100000),
        "huge.nii": _nifti_header_only(tmp_path / "huge.nii", (30000, 30000, 1000)),
        "same": write_series(tmp_path / "same", 3, step=0.0, shuffle=(0, 1, 2)),
        "iop.dcm": _damaged(tmp_path / "iop.dcm", ImageOrientationPatient=b"1\\0\\0\\0\\1 "),
        "spacing.dcm": _damaged(tmp_path / "spacing.dcm", PixelSpacing=b"0.7 "),
        "slope.dcm": _damaged(tmp_path / "slope.dcm", RescaleSlope=b"abcdefgh"),
    }
    args = ["scan", "--model", TAG, "--window", "abdomen", "--no-progress", "--overlays", "0"]
    assert cli([*args, *map(str, bad.values()), str(SLICE), "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    images = pd.read_csv(tmp_path / "out" / "images.csv", keep_default_na=False)
    status = dict(zip(images.path.map(lambda p: Path(p).name), images.status))
    assert status[SLICE.name] == "ok" and len(status) == len(bad) + 1
    for name, path in bad.items():
        assert status[name].startswith(f"failed: {path}") and "\n" not in status[name]
        assert sum(str(path) in line for line in err.splitlines()) == 1  # one line each on stderr
    assert "repeated slice position" in status["same"] and "RescaleSlope is 'abcdefgh'" in status["slope.dcm"]
    assert cli([*args, *map(str, bad.values()), "--out", str(tmp_path / "none")]) == 1
    assert f"every input failed ({len(bad)}); nothing was scanned" in capsys.readouterr().err


def test_an_output_folder_is_refused_replaced_or_resumed_never_mixed(tmp_path: Path, capsys) -> None:
    first, second = SLICE, KIDNEY / "images" / "tez-study-008_299717448866.jpg"
    out = tmp_path / "out"
    args = ["scan", "--model", TAG, "--no-progress", "--out", str(out)]
    assert cli([*args, str(first)]) == 0
    before = pd.read_csv(out / "candidates.csv")
    overlays = sorted(p.name for p in (out / "overlays").iterdir())
    assert overlays and (out / "scan.json").exists()
    # again into the same folder: refused, nothing touched
    assert cli([*args, str(second)]) == 2
    assert "is not empty (an earlier scan?); pass --force" in capsys.readouterr().err
    assert pd.read_csv(out / "candidates.csv").equals(before)
    # --force: the earlier scan's outputs go (its overlay and map too), a file of the user's stays
    (out / "notes.txt").write_text("mine")
    assert cli([*args, str(second), "--force"]) == 0
    replaced = pd.read_csv(out / "candidates.csv")
    assert set(replaced.path) == {str(second)} and (out / "notes.txt").read_text() == "mine"
    assert not any(first.stem in p.name for p in [*(out / "overlays").iterdir(), *(out / "maps").iterdir()])
    # --resume: the finished input is kept as it was (not scanned again), the new one is added
    map_file = out / pd.read_csv(out / "images.csv").set_index("path").loc[str(second), "map"]
    stamp = map_file.stat().st_mtime_ns
    assert cli([*args, str(second), str(first), "--resume"]) == 0
    resumed = pd.read_csv(out / "candidates.csv")
    assert set(resumed.path) == {str(first), str(second)}
    kept = resumed[resumed.path == str(second)].reset_index(drop=True)
    assert kept[["x", "y", "score"]].equals(replaced[["x", "y", "score"]])
    assert map_file.stat().st_mtime_ns == stamp
    mine = resumed[resumed.path == str(first)].reset_index(drop=True)
    assert np.allclose(mine[["x", "y", "score"]], before[["x", "y", "score"]])
    assert "scanned 2 inputs" in capsys.readouterr().out and "2 inputs" in (out / "report.md").read_text()
    # --resume with other settings would mix two scans: refused
    assert cli([*args, str(first), "--resume", "--stride", "16"]) == 2
    assert "holds a scan with other weights or settings" in capsys.readouterr().err
    # --out naming a file: refused before anything is scanned
    started = time.perf_counter()
    assert cli(["scan", "--model", TAG, str(first), "--out", str(out / "notes.txt")]) == 2
    assert "notes.txt: a file, not a folder" in capsys.readouterr().err and time.perf_counter() - started < 5


def test_evaluate_scans_names_the_file_and_the_row(tmp_path: Path, capsys) -> None:
    table = tmp_path / "candidates.csv"
    table.write_text(f"path,x,y,score\n{SLICE},10,20,0.9\n{SLICE},30,40,high\n")
    args = ["evaluate-scans", "--candidates", str(table), "--data", str(KIDNEY), "--out", str(tmp_path / "e")]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert f"{table}: row 2 (line 3): score is 'high', not a number (1 such row(s))" in err
    table.write_text("")
    assert cli(args) == 2
    assert f"{table}: an empty file (not even a header)" in capsys.readouterr().err


def test_sigterm_leaves_no_unpacked_volume_behind(tmp_path: Path) -> None:
    """A .nii.gz is unpacked into a temporary file while it is scanned; SIGTERM (what a job scheduler or
    ``docker stop`` sends) once killed the process with the file left behind."""
    import gzip

    volume = _as_hu_nifti(tmp_path / "v.nii", read_image(SLICE), n=60)
    (tmp_path / "v.nii.gz").write_bytes(gzip.compress(volume.read_bytes(), compresslevel=1))
    temp = tmp_path / "tmp"
    temp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "rensenet", "scan", "--model", TAG, str(tmp_path / "v.nii.gz"),
                             "--window", "abdomen", "--out", str(tmp_path / "out"), "--no-progress"],
                            env={**os.environ, "TMPDIR": str(temp), "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not list(temp.glob("rensenet-*.nii")) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert list(temp.glob("rensenet-*.nii")), "the scan never unpacked its volume"
    time.sleep(0.5)
    assert proc.poll() is None, "the scan ended before it could be stopped"
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode != 0 and "Traceback" not in err
    assert list(temp.glob("rensenet-*")) == []
