"""FROC on hand-made candidates, the coverage map against MONAI's sliding-window average, and the peak finder."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from rensenet.base.froc import FP_RATES, cpm, froc_curve, match_image, sensitivity_at
from rensenet.base.windows import coverage_map, find_peaks
from rensenet.cli.main import main as cli
from rensenet.evaluation.scans import evaluate_scans

BOX_A = (10, 10, 20, 20)  # covers pixel centres 10..19
BOX_B = (40, 40, 46, 46)


def test_hits_inside_the_grown_box_first_hit_counts_later_ones_are_ignored() -> None:
    cands = np.array([
        [15, 15, 0.9],  # inside A: detects A
        [22, 15, 0.8],  # 3 px right of A's last column (19), tolerance 4: a later hit on A, ignored
        [24, 15, 0.7],  # 5 px outside A: a false positive
        [47, 41, 0.6],  # 2 px right of B's last column (45): detects B
        [80, 80, 0.5],  # nowhere: a false positive
    ])
    m = match_image(cands, np.array([BOX_A, BOX_B]), tolerance=4)
    assert m.hits.tolist() == [0, -2, -1, 1, -1]
    assert m.lesion_scores.tolist() == [0.9, 0.6] and m.fp_scores.tolist() == [0.7, 0.5]
    strict = match_image(cands, np.array([BOX_A, BOX_B]), tolerance=0)
    assert strict.hits.tolist() == [0, -1, -1, -1, -1]  # without tolerance only the first lies inside a box


def test_a_candidate_in_two_boxes_detects_the_nearest_undetected_one() -> None:
    boxes = np.array([(0, 0, 10, 10), (8, 0, 18, 10)])  # overlapping; centres x = 4.5 and 12.5
    m = match_image(np.array([[8, 5, 0.9], [8, 5, 0.8], [8, 5, 0.7]]), boxes, tolerance=0)
    assert m.hits.tolist() == [0, 1, -2]  # nearest first (|8-4.5| < |8-12.5|), then the other, then ignored


def test_sensitivity_at_fp_rates_and_cpm_by_hand() -> None:
    # two images, three lesions. Image 1: TP 0.9, FP 0.8, FP 0.4. Image 2: FP 0.95, TP 0.5, lesion missed.
    m1 = match_image(np.array([[15, 15, 0.9], [70, 70, 0.8], [90, 90, 0.4]]), np.array([BOX_A]))
    m2 = match_image(np.array([[70, 70, 0.95], [42, 42, 0.5]]), np.array([BOX_B, (60, 0, 66, 6)]))
    fp, sens = froc_curve([m1, m2])
    # thresholds 0.95 0.9 0.8 0.5 0.4 -> FPs 1 1 2 2 3 (per image /2), lesions found 0 1 1 2 2 (of 3)
    assert fp.tolist() == [0.5, 0.5, 1.0, 1.0, 1.5]
    assert sens.tolist() == pytest.approx([0, 1 / 3, 1 / 3, 2 / 3, 2 / 3])
    at = sensitivity_at([m1, m2])
    assert at[0.125] == 0.0 and at[0.25] == 0.0  # no threshold keeps FPs <= 0.25 per image
    assert at[0.5] == pytest.approx(1 / 3) and at[1.0] == pytest.approx(2 / 3) and at[8.0] == pytest.approx(2 / 3)
    assert cpm([m1, m2]) == pytest.approx((0 + 0 + 1 / 3 + 2 / 3 + 2 / 3 * 3) / 7)
    assert list(at) == list(FP_RATES)


def test_no_candidates_give_zero_sensitivity() -> None:
    m = match_image(np.zeros((0, 3)), np.array([BOX_A]))
    assert cpm([m]) == 0.0 and m.lesion_scores.tolist() == [-np.inf]


def test_coverage_map_is_the_sliding_window_average_of_tile_scores() -> None:
    """Per pixel, the mean over the windows covering it; checked against MONAI's sliding_window_inference with
    constant tiles, whose windows lie on the same grid when (size - window) is a multiple of the stride."""
    import torch
    from monai.inferers import sliding_window_inference

    rng = np.random.default_rng(0)
    window, stride, h, w = 16, 4, 48, 40
    ny, nx = (h - window) // stride + 1, (w - window) // stride + 1
    probs = rng.random((ny, nx))
    ours = coverage_map(probs, window=window, stride=stride, shape=(h, w))
    by_hand = np.zeros((h, w))
    count = np.zeros((h, w))
    for i in range(ny):
        for j in range(nx):
            by_hand[i * stride:i * stride + window, j * stride:j * stride + window] += probs[i, j]
            count[i * stride:i * stride + window, j * stride:j * stride + window] += 1
    assert np.allclose(ours, by_hand / count, atol=1e-6)

    corners = {}
    image = torch.zeros(1, 1, h, w)

    def tile_scores(tiles: torch.Tensor) -> torch.Tensor:  # MONAI hands tiles in; we score each by its corner
        out = []
        for tile in tiles:
            y, x = corners[round(float(tile[0, 0, 0]))]
            out.append(torch.full((1, window, window), float(probs[y // stride, x // stride])))
        return torch.stack(out)

    for i in range(ny):  # encode each corner in the pixel value so that a tile says where it came from
        for j in range(nx):
            image[0, 0, i * stride, j * stride] = i * nx + j + 1
            corners[i * nx + j + 1] = (i * stride, j * stride)
    image[0, 0] += torch.zeros(h, w)
    monai = sliding_window_inference(image, (window, window), 8, tile_scores, overlap=1 - stride / window,
                                     mode="constant")
    assert np.allclose(monai[0, 0].numpy(), ours, atol=1e-5)


def test_peaks_are_greedy_nms_in_score_order() -> None:
    m = np.zeros((40, 40))
    m[10, 10], m[12, 12], m[30, 30], m[10, 30] = 0.9, 0.8, 0.7, 0.1
    peaks = find_peaks(m, radius=5, threshold=0.05)
    assert [(p.y, p.x, p.score) for p in peaks] == [(10, 10, 0.9), (30, 30, 0.7), (10, 30, 0.1)]  # (12, 12) suppressed
    assert [(p.y, p.x) for p in find_peaks(m, radius=1, threshold=0.5)] == [(10, 10), (12, 12), (30, 30)]
    plateau = np.zeros((10, 10))
    plateau[3:6, 4:7] = 0.5
    assert [(p.y, p.x) for p in find_peaks(plateau, radius=3, threshold=0.1)] == [(3, 4)]  # row-major first


def test_evaluate_scans_matches_candidates_to_manifest_rows(tmp_path: Path) -> None:
    for name in ("a.png", "b.png"):
        Image.fromarray(np.full((100, 100), 80, np.uint8)).save(tmp_path / name)
    pd.DataFrame({"path": ["a.png", "b.png"], "label": [1, 1], "patient_id": ["p1", "p2"], "split": ["test"] * 2,
                  "bbox": [" ".join(map(str, BOX_A)), f"{' '.join(map(str, BOX_B))};60 0 66 6"]}) \
        .to_csv(tmp_path / "manifest.csv", index=False)
    cands = pd.DataFrame({"path": [str(tmp_path / "a.png")] * 3 + ["b.png"] * 2 + ["elsewhere/c.png"],
                          "x": [15, 70, 90, 70, 42, 1], "y": [15, 70, 90, 70, 42, 1],
                          "score": [0.9, 0.8, 0.4, 0.95, 0.5, 0.99]})
    cands.to_csv(tmp_path / "candidates.csv", index=False)
    assert cli(["evaluate-scans", "--candidates", str(tmp_path / "candidates.csv"), "--data", str(tmp_path),
                "--out", str(tmp_path / "froc")]) == 0
    result = json.loads((tmp_path / "froc" / "froc.json").read_text())
    assert result["n_lesions"] == 3 and result["n_images"] == 2 and result["candidates_outside_split"] == 1
    assert result["cpm"]["value"] == pytest.approx((1 / 3 + 2 / 3 + 2 / 3 * 3) / 7)  # as in the hand-made case
    assert result["sens_at_fp"]["1"]["value"] == pytest.approx(2 / 3)
    assert result["cpm"]["ci_low"] <= result["cpm"]["value"] <= result["cpm"]["ci_high"]
    assert (tmp_path / "froc" / "froc.png").stat().st_size > 5000
    direct = evaluate_scans(cands, tmp_path, split="test", n_boot=10)
    assert direct["cpm"]["value"] == result["cpm"]["value"]
