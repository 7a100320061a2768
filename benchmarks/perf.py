"""Where RenseNet spends its CPU time, and what each speed-up buys, as ratios measured in the same run.

    python benchmarks/perf.py [--model rensenet_s] [--size 64] [--threads 2] [--compile] > benchmarks/PERF.md

1. torch.profiler of one training step and one inference step: the top operators by self CPU time.
2. Training step (batch 32) and inference (batch 64 and batch 1) for: the default model; channels-last memory;
   BatchNorm folded into the convolutions (inference); the cheaper 3x3 ECM (``ecm_kernel_size=3``, which changes
   the model, so its accuracy is in the benchmark's ablation); ``torch.compile`` (inductor) with ``--compile``.
Variants are timed round-robin (each repeat times every variant once) and the median is reported, so a slower
moment of the machine hits every variant alike. Every result-preserving variant is checked against the default
model's output first.
"""
from __future__ import annotations

import argparse
import copy
import platform
import time
from datetime import date
from typing import Callable, Dict

import timm
import torch
from torch.profiler import ProfilerActivity, profile

import rensenet  # noqa: F401  (registers the models)
from rensenet.benchmark.cost import gflops, inference as infer_fn, seconds_per_call, train_step
from rensenet.models import fuse_conv_bn


def make(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, num_classes=2, in_chans=1, **kwargs)


def train_step_fn(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, *, compiled: bool = False) -> Callable:
    return train_step(model, x, y, compiled=compiled)


def timed(fns: Dict[str, Callable], *, repeats: int, inner: int) -> Dict[str, float]:
    """Median seconds per call of each fn, timed round-robin after two warm-up calls each."""
    return seconds_per_call(fns, warmup=2, repeats=repeats, inner=inner)


def table(title: str, secs: Dict[str, float], batch: int) -> str:
    base = secs["default"]
    lines = [f"### {title}", "", "| variant | ms per call | images/s | speed-up vs default |", "|---|---|---|---|"]
    for k, s in secs.items():
        lines.append(f"| {k} | {s * 1000:.1f} | {batch / s:,.0f} | {base / s:.2f}x |")
    return "\n".join(lines) + "\n"


def top_ops(fn: Callable, n: int = 10) -> str:
    fn()
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        fn()
    return prof.key_averages(group_by_input_shape=False).table(sort_by="self_cpu_time_total", row_limit=n)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="rensenet_s")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--compile", action="store_true", help="also time torch.compile (slow to compile on CPU)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    s, cl = a.size, torch.channels_last
    xb, yb = torch.randn(32, 1, s, s), torch.randint(0, 2, (32,))
    x64, x1 = torch.randn(64, 1, s, s), torch.randn(1, 1, s, s)

    print(f"# {a.model} on the CPU: profile and speed-ups ({date.today().isoformat()})\n")
    print(f"Machine: {platform.machine()}, {a.threads} threads, torch {torch.__version__}. Input {s} x {s}, 1 channel.")
    print(f"Command: `python benchmarks/perf.py --model {a.model} --size {s} --threads {a.threads}"
          f"{' --compile' if a.compile else ''}`\n")

    base = make(a.model)
    ablation = make(a.model, ecm=False)
    flops = {"with ECM": gflops(base, x1), "without ECM": gflops(ablation, x1)}
    print(f"GFLOPs per image: {flops['with ECM']:.3f} with the ECM, {flops['without ECM']:.3f} without "
          f"(the ECM is {1 - flops['without ECM'] / flops['with ECM']:.0%}).\n")

    print("## Profile: top operators by self CPU time\n\nTraining step, batch 32:\n\n```")
    print(top_ops(train_step_fn(make(a.model), xb, yb)))
    print("```\n\nInference, batch 64:\n\n```")
    print(top_ops(infer_fn(make(a.model), x64)))
    print("```\n")

    # result-preserving variants agree with the default model (eval mode, real running statistics)
    ref_model = make(a.model)
    with torch.no_grad():
        ref_model.train()
        for _ in range(3):
            ref_model(torch.randn(16, 1, s, s) * 2 + 1)
    ref_model.eval()
    fused = fuse_conv_bn(copy.deepcopy(ref_model))
    fused_cl = copy.deepcopy(fused).to(memory_format=cl)
    with torch.inference_mode():
        ref = ref_model(x64)
        diffs = {"fused BN": (fused(x64) - ref).abs().max().item(),
                 "fused BN + channels-last": (fused_cl(x64.to(memory_format=cl)) - ref).abs().max().item()}
    print("Largest logit difference from the default model: " +
          ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()) + f" (logits up to {ref.abs().max().item():.2f}).\n")

    print("## Speed-ups (median of round-robin repeats)\n")
    train = {
        "default": train_step_fn(make(a.model), xb, yb),
        "channels-last": train_step_fn(make(a.model).to(memory_format=cl), xb.to(memory_format=cl), yb),
        "ECM 3x3 (changes the model)": train_step_fn(make(a.model, ecm_kernel_size=3), xb, yb),
        "no ECM (ablation)": train_step_fn(make(a.model, ecm=False), xb, yb),
    }
    compile_s = {}
    if a.compile:
        fn = train_step_fn(make(a.model), xb, yb, compiled=True)
        t = time.perf_counter()
        fn()
        compile_s["train"] = time.perf_counter() - t
        train["torch.compile"] = fn
    print(table(f"Training step, batch 32, {s} px", timed(train, repeats=a.repeats, inner=2), 32))

    def infer_variants(x: torch.Tensor) -> Dict[str, Callable]:
        out = {
            "default": infer_fn(ref_model, x),
            "fused BN": infer_fn(fused, x),
            "channels-last": infer_fn(copy.deepcopy(ref_model).to(memory_format=cl), x.to(memory_format=cl)),
            "fused BN + channels-last": infer_fn(fused_cl, x.to(memory_format=cl)),
            "ECM 3x3 (changes the model)": infer_fn(make(a.model, ecm_kernel_size=3), x),
        }
        if a.compile:
            compiled = torch.compile(copy.deepcopy(fused))
            fn = infer_fn(compiled, x)
            t = time.perf_counter()
            fn()
            compile_s[f"inference batch {len(x)}"] = time.perf_counter() - t
            out["fused BN + torch.compile"] = fn
        return out

    print(table(f"Inference, batch 64, {s} px", timed(infer_variants(x64), repeats=a.repeats, inner=3), 64))
    print(table(f"Inference, batch 1, {s} px", timed(infer_variants(x1), repeats=a.repeats, inner=20), 1))
    if compile_s:
        print("torch.compile's first call (compilation) took " +
              ", ".join(f"{v:.0f} s ({k})" for k, v in compile_s.items()) + ".\n")


if __name__ == "__main__":
    main()
