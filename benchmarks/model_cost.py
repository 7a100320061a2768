"""Parameters and GFLOPs of the RenseNet variants (and reference timm CNNs) at 64 x 64 and 256 x 256.

    python benchmarks/model_cost.py

FLOPs are counted by torch.utils.flop_counter (a multiply-add counts as 2 FLOPs), one 1-channel image, 2 classes.
"""
from __future__ import annotations

import timm
import torch
import rensenet  # noqa: F401
from rensenet.benchmark.cost import gflops as count_gflops

MODELS = [
    ("rensenet_s", {}), ("rensenet_s", {"ecm": False}), ("rensenet_m", {}), ("rensenet_m", {"ecm": False}),
    ("resnet18", {}), ("densenet121", {}), ("efficientnet_b0", {}),
]


def gflops(model: torch.nn.Module, size: int) -> float:
    return count_gflops(model, torch.randn(1, 1, size, size))


def main() -> None:
    print("| model | parameters | GFLOPs 64 x 64 | GFLOPs 256 x 256 |")
    print("|---|---|---|---|")
    for name, kwargs in MODELS:
        model = timm.create_model(name, num_classes=2, in_chans=1, **kwargs).eval()
        params = sum(p.numel() for p in model.parameters())
        label = name + ("" if not kwargs else " (" + ", ".join(f"{k}={v}" for k, v in kwargs.items()) + ")")
        print(f"| {label} | {params / 1e6:.3f} M | {gflops(model, 64):.3f} | {gflops(model, 256):.2f} |")


if __name__ == "__main__":
    main()
