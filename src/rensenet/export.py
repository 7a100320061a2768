"""``rensenet export``: a trained model as ONNX or TorchScript, for deployment without this package.

BatchNorm is folded into the convolutions first (the logits stay the same to about 1e-6). The ONNX graph takes a
dynamic batch, height and width (any 2D size from one training window up), with opset :data:`OPSET`, and carries
what a deployment needs in its metadata: normalisation, class names, CT window, input size and training scale.
With ``dense=True`` the graph is the whole-image scanner instead: window logits at the model's reduction stride
(:class:`WindowLogits`), the fully-convolutional evaluation ``rensenet scan`` runs.
"""
from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Dict, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from .base import TrainConfig
from .base.io import atomic_write
from .models.dense import _classify, reduction
from .models.inference import optimize_for_inference

OPSET = 17
FORMATS = ("onnx", "torchscript")


class WindowLogits(nn.Module):
    """Logits (B, K, h, w) of every window whose corner lies on the model's reduction grid: window (i, j) covers
    rows ``i*R .. i*R + window`` (R: :func:`rensenet.models.dense.reduction`). Rows and columns whose window
    would leave the image (past ``(H - window) // R``) are to be ignored. Finer strides: shift the input by
    multiples of the stride and interleave (shift-and-stitch)."""

    def __init__(self, model: nn.Module, window: int) -> None:
        super().__init__()
        self.model, self.cells = model, window // reduction(model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = F.avg_pool2d(self.model.forward_features(x), self.cells, stride=1)
        b, c, h, w = pooled.shape
        logits = _classify(self.model, pooled.permute(0, 2, 3, 1).reshape(-1, c))
        return logits.reshape(b, h, w, -1).permute(0, 3, 1, 2)


def metadata(cfg: TrainConfig, model: nn.Module, *, dense: bool) -> Dict[str, str]:
    """What the exported file says about its inputs and outputs (ONNX metadata_props; TorchScript extra files)."""
    return {
        "producer": "rensenet", "model": cfg.model, "kind": "window_logits" if dense else "classifier",
        "class_names": json.dumps(cfg.class_names), "mean": json.dumps(cfg.mean), "std": json.dumps(cfg.std),
        "in_chans": str(cfg.in_chans), "img_size": str(cfg.img_size), "native_size": str(cfg.native_size or ""),
        "scale": str(cfg.scale), "window": str(cfg.window or ""), "opset": str(OPSET),
        "context": str(cfg.context),  # px of image the classifier was trained to see around a window
        "input": "float32 (batch, in_chans, height, width): pixels in [0, 1] after the CT window, then (x - mean) / std",
        "reduction": str(reduction(model)),
        "output": ("window logits (batch, classes, rows, cols): window (i, j) covers rows i * reduction .. "
                   "i * reduction + img_size" if dense else "logits (batch, classes); softmax for probabilities"),
    }


def export_model(model: nn.Module, cfg: TrainConfig, out: Union[str, Path], *, fmt: str = "onnx", dense: bool = False,
                 force: bool = False) -> Path:
    """Write ``model`` to ``out``; an existing file is kept unless ``force``, and a failed export writes nothing."""
    out = Path(out)
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: use one of {FORMATS}")
    if out.exists() and not force:
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")
    net = optimize_for_inference(copy.deepcopy(model).cpu(), channels_last=False)
    net = WindowLogits(net, int(cfg.img_size)).eval() if dense else net
    size = int(cfg.img_size) * (2 if dense else 1)
    example = torch.zeros(1, cfg.in_chans, size, size)
    meta = metadata(cfg, model, dense=dense)
    if fmt == "torchscript":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            scripted = torch.jit.trace(net, example) if dense else torch.jit.script(net)
        return atomic_write(out, lambda p: torch.jit.save(scripted, str(p), _extra_files={"rensenet.json":
                                                                                            json.dumps(meta)}))

    def write(path: Path) -> None:
        import onnx

        with warnings.catch_warnings():  # the input checks in forward are constant for a given model: traced once
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(net, (example,), str(path), input_names=["image"], output_names=["logits"],
                              opset_version=OPSET, dynamo=False,
                              dynamic_axes={"image": {0: "batch", 2: "height", 3: "width"},
                                            "logits": {0: "batch", **({2: "rows", 3: "cols"} if dense else {})}})
        proto = onnx.load(str(path))
        for key, value in meta.items():
            proto.metadata_props.add(key=key, value=value)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(path))

    try:
        return atomic_write(out, write)
    except Exception as e:  # an exporter error, deep inside torch.onnx: one line, and nothing written
        raise ValueError(f"export to {out} failed, nothing was written ({type(e).__name__}: {e})") from e
