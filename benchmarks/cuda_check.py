"""CUDA check for a lent GPU: AMP training really learns there, and training/inference throughput per model.

    python benchmarks/cuda_check.py            # needs a CUDA GPU; about a minute

1. ``rensenet train`` on the embedded lung-nodule sample on CUDA with AMP (bf16) for 3 epochs: the loss must be
   finite and fall, and validation AUC must beat chance.
2. Images/s of one SGD training step (the three-head loss for RenseNet) and of inference, fp32 vs AMP bf16,
   NCHW vs channels-last, at the lung task's 48 px and batch 32 (the benchmark recipe) and 256.
Prints tables; exits non-zero when the check fails.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import timm
import torch

import rensenet  # noqa: F401  (registers the RenseNet models with timm)
from rensenet.benchmark.cost import inference, seconds_per_call, train_step

MODELS = ["rensenet_s", "rensenet_m", "resnet18", "densenet121", "efficientnet_b0"]


def train_check() -> bool:
    sample = Path(rensenet.__file__).parent / "data" / "sample" / "lung-nodule-ct"
    with tempfile.TemporaryDirectory() as out:
        t = time.time()
        subprocess.run([sys.executable, "-m", "rensenet", "train", "--data", str(sample), "--out", out,
                        "--epochs", "3", "--device", "cuda", "--no-progress"], check=True)
        hist = pd.read_csv(Path(out) / "history.csv")
        cfg = json.loads((Path(out) / "config.json").read_text())
    print(hist.to_string(index=False))
    ok = bool(hist["train_loss"].notna().all() and hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]
              and hist["val_auc"].max() > 0.6)
    print(f"CUDA AMP training on the sample: {time.time() - t:.1f} s, amp={cfg.get('amp')} (None: on for CUDA), ok={ok}")
    return ok


def images_per_s(name: str, *, batch: int, size: int, amp: bool, channels_last: bool, train: bool) -> float:
    """Images/s of one SGD step (``train``) or one forward pass, timed by the package's cost timer."""
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = timm.create_model(name, num_classes=2, in_chans=1).cuda().to(memory_format=fmt)
    x = torch.randn(batch, 1, size, size, device="cuda").contiguous(memory_format=fmt)
    y = torch.randint(0, 2, (batch,), device="cuda")
    fn = train_step(model, x, y, amp=amp) if train else inference(model, x, amp=amp)
    return batch / seconds_per_call({"fn": fn}, warmup=5, repeats=5, inner=4)["fn"]


def main() -> int:
    if not torch.cuda.is_available():
        print("no CUDA device")
        return 2
    print(f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}, timm {timm.__version__}")
    ok = train_check()
    rows = []
    for name in MODELS:
        for batch in (32, 256):
            row = {"model": name, "batch": batch}
            for label, amp, cl in (("fp32", False, False), ("bf16", True, False), ("bf16+cl", True, True)):
                row[f"train {label}"] = images_per_s(name, batch=batch, size=48, amp=amp, channels_last=cl, train=True)
            row["infer bf16"] = images_per_s(name, batch=batch, size=48, amp=True, channels_last=False, train=False)
            rows.append(row)
    table = pd.DataFrame(rows)
    print("images/s at 48 px (train: SGD step incl. backward; cl = channels-last)")
    print(table.to_string(index=False, float_format=lambda v: f"{v:,.0f}"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
