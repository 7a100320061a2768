"""RenseNet: Rense-block backbone, Edge Conservative Module and three heads, registered with timm."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn as nn
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .ecm import UPSAMPLE_MODES, EdgeConservativeModule, FeatureFusion
from .heads import ClassifierHead, RenseNetOutput, ThreeHeadNet
from .layers import ConvNormAct, replace_batch_norm
from .pretrained import checkpoint_filter_fn, rensenet_cfg
from .zoo import pretrained_cfgs
from .rense_block import BlockVariant, RenseBlock
from .transition import Transition

__all__ = ["RenseNet", "RenseNetOutput", "RenseStage"]


class RenseStage(nn.Module):
    """[Transition ->] Rense block. Returns ``(output, pre_pool)``; ``pre_pool`` is None for the first stage."""

    def __init__(
        self,
        in_chs: int,
        *,
        num_layers: int,
        growth_rate: int,
        transition_chs: Optional[int] = None,
        block: BlockVariant = "dense_residual",
        spatial_dims: int = 2,
    ) -> None:
        super().__init__()
        self.transition = (
            Transition(in_chs, transition_chs, spatial_dims=spatial_dims) if transition_chs is not None else None
        )
        block_in = transition_chs if transition_chs is not None else in_chs
        self.block = RenseBlock(
            block_in, num_layers=num_layers, growth_rate=growth_rate, variant=block, spatial_dims=spatial_dims
        )
        self.out_chs = self.block.out_chs

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        pre_pool: Optional[torch.Tensor] = None
        if self.transition is not None:
            x, pre_pool = self.transition(x)
        return self.block(x), pre_pool


class RenseNet(ThreeHeadNet):
    """RenseNet for small-lesion classification (Seo et al., Cancers 2024).

    ``stem (conv7x7/2) -> [Rense block, transition] x n -> fusion(backbone, ECM) -> head``. There is no max-pool
    in the stem, and every transition's pre-pool map feeds the Edge Conservative Module. ``model(x)`` returns
    the fused logits; :meth:`forward_heads` returns all three heads for :class:`rensenet.RenseNetLoss`.

    Args:
        in_chans: input channels (1 for a CT slice, 3 for a 2.5D stack of neighbouring slices).
        num_classes: classes; 0 gives a model that returns pooled features.
        growth_rate: channels k each dense layer adds.
        block_config: layers per stage.
        compression: channel factor of each transition's 1x1 conv.
        stem_chs: stem output channels (default 2k).
        block: Rense block variant, see :class:`rensenet.models.RenseBlock`.
        ecm: attach the Edge Conservative Module (and its head and the fusion).
        ecm_kernel_size: kernel of the ECM's compensation convolutions (5 in the paper; 3 is cheaper).
        ecm_upsample: ``"bilinear"`` (the paper) or ``"nearest"`` for ``up2`` in ``B = |F - up2(avgpool2(F))|``.
        head_hidden: hidden width of each head's FC -> ReLU -> FC (default: half its input width).
        global_pool: ``"avg"`` (the paper), ``"max"``, or ``""`` with ``num_classes=0`` (the fused map itself).
        drop_rate: dropout before each head's last FC.
        norm: ``"batch"`` (the paper) or ``"group"`` (GroupNorm, independent of the batch size).
        spatial_dims: 2 for slices, 3 for volumes.
    """

    def __init__(
        self,
        *,
        in_chans: int = 1,
        num_classes: int = 2,
        growth_rate: int = 12,
        block_config: Sequence[int] = (3, 4, 6, 3),
        compression: float = 0.5,
        stem_chs: Optional[int] = None,
        block: BlockVariant = "dense_residual",
        ecm: bool = True,
        ecm_kernel_size: int = 5,
        ecm_upsample: str = "bilinear",
        head_hidden: Optional[int] = None,
        global_pool: str = "avg",
        drop_rate: float = 0.0,
        norm: str = "batch",
        spatial_dims: int = 2,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        kwargs.pop("pretrained_cfg", None)  # passed by timm, not used by the architecture
        kwargs.pop("pretrained_cfg_overlay", None)
        if kwargs:
            raise TypeError(f"RenseNet got unexpected arguments: {sorted(kwargs)}")
        if not block_config:
            raise ValueError("block_config needs at least one stage")
        if not 0.0 < compression <= 1.0:
            raise ValueError(f"compression must be in (0, 1], got {compression}")
        if ecm and len(block_config) < 2:
            raise ValueError("the ECM needs at least one transition: use two or more stages or ecm=False")
        if ecm_upsample not in UPSAMPLE_MODES:
            raise ValueError(f"ecm_upsample must be one of {UPSAMPLE_MODES}, got {ecm_upsample!r}")
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.spatial_dims = spatial_dims
        self.drop_rate = drop_rate

        stem_chs = stem_chs if stem_chs is not None else 2 * growth_rate
        self.stem = ConvNormAct(in_chans, stem_chs, 7, stride=2, spatial_dims=spatial_dims)
        self.feature_info = []  # list of dicts, as in timm
        stages: List[RenseStage] = []
        chs, reduction, pre_pool_chs = stem_chs, 2, []
        for i, num_layers in enumerate(block_config):
            transition_chs = None
            if i > 0:
                transition_chs = int(chs * compression)
                pre_pool_chs.append(transition_chs)
                reduction *= 2
            stage = RenseStage(
                chs,
                num_layers=num_layers,
                growth_rate=growth_rate,
                transition_chs=transition_chs,
                block=block,
                spatial_dims=spatial_dims,
            )
            stages.append(stage)
            chs = stage.out_chs
            self.feature_info.append(dict(num_chs=chs, reduction=reduction, module=f"stages.{i}.block"))
        self.stages = nn.ModuleList(stages)
        self.backbone_chs = chs

        def make_head(in_chs: int) -> ClassifierHead:
            hidden = head_hidden if head_hidden is not None else max(in_chs // 2, 1)
            return ClassifierHead(in_chs, num_classes, hidden_chs=hidden, drop_rate=drop_rate, pool_type=global_pool,
                                  spatial_dims=spatial_dims)

        if ecm:
            self.ecm = EdgeConservativeModule(
                pre_pool_chs, kernel_size=ecm_kernel_size, upsample_mode=ecm_upsample, spatial_dims=spatial_dims
            )
            self.fusion = FeatureFusion()
            self.num_features = chs + self.ecm.out_chs
            self.feature_info.append(dict(num_chs=self.num_features, reduction=reduction, module="fusion"))
            self.backbone_head = make_head(chs)
            self.ecm_head = make_head(self.ecm.out_chs)
        else:
            self.ecm = None
            self.fusion = None
            self.num_features = chs
            self.backbone_head = None
            self.ecm_head = None
        self.head = make_head(self.num_features)
        self.head_hidden_size = self.num_features
        replace_batch_norm(self, norm)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Conv3d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm)):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias)

    @property
    def default_cam_layers(self) -> List[str]:
        """Modules ``rensenet explain`` targets by default: the second stage (stride 4) and, with the ECM, its
        first compensation map before pooling (stride 2). The 3 x 3 fusion map at 48 px cannot point at a
        5-pixel nodule; these can (chosen on lung-nodule-ct val, see benchmarks/EXPLAIN.md)."""
        stage = f"stages.{min(1, len(self.stages) - 1)}.block"
        return [stage, "ecm.stages.0.conv2"] if self.ecm is not None else [stage]

    # --- timm model API (the rest comes from ThreeHeadNet) ---------------------------------------------------
    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() != self.spatial_dims + 2 or x.shape[1] != self.in_chans:
            raise ValueError(
                f"RenseNet expects input of shape (batch, {self.in_chans}, *{self.spatial_dims} spatial dims), "
                f"got {list(x.shape)}; set in_chans/spatial_dims to match your data"
            )

    def _forward_maps(self, x: torch.Tensor) -> Tuple[torch.Tensor, Optional[torch.Tensor], torch.Tensor]:
        """(backbone map, ECM map or None, fused map) at the final resolution."""
        self._check_input(x)
        x = self.stem(x)
        pre_pool: List[torch.Tensor] = []
        for stage in self.stages:
            x, f = stage(x)
            if f is not None:
                pre_pool.append(f)
        if self.ecm is not None and self.fusion is not None:
            ecm_map = self.ecm(pre_pool)
            return x, ecm_map, self.fusion(x, ecm_map)
        return x, None, x

    def _feature_maps(self, x: torch.Tensor) -> List[torch.Tensor]:
        """Stage outputs, and the fused map when the ECM is on, as listed in ``feature_info``."""
        self._check_input(x)
        x = self.stem(x)
        maps: List[torch.Tensor] = []
        pre_pool: List[torch.Tensor] = []
        for stage in self.stages:
            x, f = stage(x)
            if f is not None:
                pre_pool.append(f)
            maps.append(x)
        if self.ecm is not None and self.fusion is not None:
            maps.append(self.fusion(x, self.ecm(pre_pool)))
        return maps


# --- variants -------------------------------------------------------------------------------------------------
default_cfgs = generate_default_cfgs({  # the first tag of each is the default: untrained, as no weights are general
    "rensenet_s.untrained": rensenet_cfg(),
    **pretrained_cfgs("rensenet_s"),
    "rensenet_m.untrained": rensenet_cfg(),
    **pretrained_cfgs("rensenet_m"),
})

#: Architecture of each registered variant; everything else comes from keyword arguments.
MODEL_ARGS: Dict[str, Dict[str, Any]] = {
    "rensenet_s": dict(growth_rate=12, block_config=(3, 4, 6, 3), compression=0.5),
    "rensenet_m": dict(growth_rate=24, block_config=(3, 4, 8, 6), compression=0.5),
}


def _create_rensenet(variant: str, pretrained: bool = False, **kwargs: Any) -> RenseNet:
    model_args = {**MODEL_ARGS[variant], **kwargs}
    num_features = len(model_args["block_config"]) + int(model_args.get("ecm", True))
    return build_model_with_cfg(
        RenseNet,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=tuple(range(num_features))),
        **model_args,
    )


@register_model
def rensenet_s(pretrained: bool = False, **kwargs: Any) -> RenseNet:
    """The prototype's layout: k=12, stages (3, 4, 6, 3), compression 0.5, ECM on (about 0.41 M parameters)."""
    return _create_rensenet("rensenet_s", pretrained, **kwargs)


@register_model
def rensenet_m(pretrained: bool = False, **kwargs: Any) -> RenseNet:
    """A wider RenseNet (k=24, stages (3, 4, 8, 6), about 2.5 M parameters) sized against ResNet-18 and DenseNet-121."""
    return _create_rensenet("rensenet_m", pretrained, **kwargs)
