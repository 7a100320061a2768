"""onnxruntime against PyTorch on the CPU: latency at batch 1 and images/s at batch 64, and a whole-slice scan.

    python benchmarks/export_speed.py --model rensenet_s.kidney_stone_scan > benchmarks/EXPORT.md

Both run the exported model's computation: PyTorch with BatchNorm folded and channels-last weights (what
``rensenet predict`` runs), onnxruntime the file ``rensenet export`` writes, at the same thread count. Timed
round-robin by the package's cost timer (median of repeats).
"""
from __future__ import annotations

import argparse
import copy
import sys
import tempfile
from datetime import date
from pathlib import Path

import numpy as np
import torch

from rensenet.base import load_model, weights_file
from rensenet.benchmark.cost import seconds_per_call
from rensenet.benchmark.processes import machine_description
from rensenet.export import OPSET, WindowLogits, export_model
from rensenet.models import optimize_for_inference


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="rensenet_s.kidney_stone_scan")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=9)
    a = ap.parse_args()
    import onnxruntime as ort

    torch.set_num_threads(a.threads)
    model, cfg = load_model(weights_file(tag=a.model))
    fast = optimize_for_inference(copy.deepcopy(model))
    dense = WindowLogits(optimize_for_inference(copy.deepcopy(model)), int(cfg.img_size)).eval()
    size = int(cfg.img_size)
    options = ort.SessionOptions()
    options.intra_op_num_threads = a.threads
    with tempfile.TemporaryDirectory() as tmp:
        sessions = {}
        for name, is_dense in (("model", False), ("dense", True)):
            path = export_model(model, cfg, Path(tmp) / f"{name}.onnx", dense=is_dense)
            sessions[name] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    rows = []
    for label, shape, torch_model, session in (
            (f"batch 1, {size} px", (1, cfg.in_chans, size, size), fast, sessions["model"]),
            (f"batch 64, {size} px", (64, cfg.in_chans, size, size), fast, sessions["model"]),
            ("one 391 x 320 slice, window logits at stride 16", (1, cfg.in_chans, 320, 391), dense, sessions["dense"])):
        x = torch.randn(*shape)
        xn = x.numpy()
        with torch.inference_mode():
            diff = float(np.abs(torch_model(x).numpy() - session.run(None, {"image": xn})[0][..., :torch_model(x).shape[-1]]).max())

        def run_torch() -> None:
            with torch.inference_mode():
                torch_model(x)

        secs = seconds_per_call({"torch": run_torch, "onnx": lambda: session.run(None, {"image": xn})},
                                warmup=3, repeats=a.repeats, inner=3 if shape[0] == 1 else 1)
        rows.append((label, shape[0], secs["torch"], secs["onnx"], diff))
    print(f"# Exported model speed ({date.today().isoformat()})\n")
    print(f"`{a.model}`, ONNX opset {OPSET}, onnxruntime {ort.__version__}, torch {torch.__version__}, "
          f"{a.threads} threads. Machine: {machine_description(cpu=True)}.")
    print(f"Command: `python benchmarks/export_speed.py {' '.join(sys.argv[1:])}`.\n")
    print("| input | PyTorch ms | onnxruntime ms | PyTorch images/s | onnxruntime images/s | speed-up | max logit diff |")
    print("|---|---|---|---|---|---|---|")
    for label, batch, t, o, diff in rows:
        print(f"| {label} | {t * 1000:.2f} | {o * 1000:.2f} | {batch / t:,.0f} | {batch / o:,.0f} | {t / o:.2f}x | "
              f"{diff:.1e} |")


if __name__ == "__main__":
    main()
