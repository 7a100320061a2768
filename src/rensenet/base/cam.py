"""Class activation maps through pytorch-grad-cam, for RenseNet and any timm model, in batches: what ``explain``
scores against lesion masks and what ``scan`` uses to place its candidates."""
from __future__ import annotations

import contextlib
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
import torch.nn as nn
from pytorch_grad_cam import (
    AblationCAM,
    EigenCAM,
    GradCAM,
    GradCAMPlusPlus,
    HiResCAM,
    LayerCAM,
    ScoreCAM,
    XGradCAM,
)
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

#: Chosen on the validation split of lung-nodule-ct (benchmarks/EXPLAIN.md).
DEFAULT_METHOD = "hirescam"

CAM_METHODS = {
    "gradcam": GradCAM,
    "gradcam++": GradCAMPlusPlus,
    "hirescam": HiResCAM,
    "layercam": LayerCAM,
    "xgradcam": XGradCAM,
    "eigencam": EigenCAM,
    "scorecam": ScoreCAM,
    "ablationcam": AblationCAM,
}


def default_target_layers(model: nn.Module) -> List[str]:
    """RenseNet: its ``default_cam_layers``; timm models: the last feature stage in ``feature_info``
    (``layer4`` for ResNet, ``features.norm5`` for DenseNet, ``bn2`` for EfficientNet, ``stages.3`` for ConvNeXt)."""
    if hasattr(model, "default_cam_layers"):
        return list(model.default_cam_layers)
    info = getattr(model, "feature_info", None)
    if info:
        last = info[-1] if isinstance(info, list) else info.get_dicts()[-1]
        return [last["module"]]
    raise ValueError(f"{type(model).__name__} has no feature_info; name a layer with --target-layer")


def resolve_layers(model: nn.Module, names: Sequence[str]) -> List[nn.Module]:
    """Modules by dotted name, with the candidates listed when a name is wrong."""
    layers = []
    for name in names:
        try:
            layers.append(model.get_submodule(name))
        except AttributeError:
            top = [n for n, _ in model.named_children()]
            raise ValueError(f"no layer {name!r} in {type(model).__name__}; top-level layers: {top} "
                             "(use dotted names such as 'stages.2' or 'fusion')") from None
    return layers


@contextlib.contextmanager
def _frozen(params: List[nn.Parameter]) -> Iterator[None]:
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@contextlib.contextmanager
def _graph_from(layers: List[nn.Module]) -> Iterator[None]:
    """Autograd starts at the target layers: an output that needs no gradient (nothing before it does, with the
    weights frozen and the input plain) becomes a leaf that does. A layer's gradient is then computed from what
    follows it alone, which is all it depends on, and nothing upstream is differentiated. Registered before the
    CAM's own hooks, which then see the leaf."""

    def start(module: nn.Module, inputs: tuple, output):
        if isinstance(output, torch.Tensor) and not output.requires_grad:
            return output.detach().requires_grad_(True)
        return None

    handles = [layer.register_forward_hook(start) for layer in layers]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


def compute_cams(
    model: nn.Module,
    images: torch.Tensor,
    classes: Sequence[int],
    *,
    method: str = DEFAULT_METHOD,
    target_layers: Optional[Sequence[str]] = None,
    batch_size: int = 32,
) -> np.ndarray:
    """Heatmaps (N, H, W) in [0, 1] at the input's size, each for its class in ``classes``.

    With several target layers the maps are averaged (pytorch-grad-cam's multi-layer aggregation).
    """
    if method not in CAM_METHODS:
        raise ValueError(f"unknown CAM method {method!r}: choose one of {sorted(CAM_METHODS)}")
    names = list(target_layers) if target_layers else default_target_layers(model)
    model.eval()
    device = next(model.parameters()).device
    out = []
    # the heatmaps need gradients of the target layers' activations only: with the weights frozen for the call
    # (about 15 % of a scan's time) and the graph started at the target layers (_graph_from), nothing before them
    # is differentiated, and the maps are the same
    trainable = [p for p in model.parameters() if p.requires_grad]
    layers = resolve_layers(model, names)
    with _graph_from(layers), CAM_METHODS[method](model=model, target_layers=layers) as cam, _frozen(trainable):
        if hasattr(cam, "batch_size"):
            cam.batch_size = batch_size
        for i in range(0, len(images), batch_size):
            x = images[i:i + batch_size].to(device).detach()
            targets = [ClassifierOutputTarget(int(c)) for c in classes[i:i + batch_size]]
            try:
                out.append(cam(input_tensor=x, targets=targets).astype(np.float32))
            except AttributeError as e:
                if "tuple" not in str(e):
                    raise
                raise ValueError(f"a target layer in {names} returns several tensors; target one of its "
                                 "sub-modules instead (for RenseNet: 'stages.N.block', not 'stages.N')") from None
    cams = np.concatenate(out) if out else np.zeros((0, *images.shape[-2:]), np.float32)
    return np.nan_to_num(cams, nan=0.0)
