"""The Edge Conservative Module attached to any timm CNN, at the maps before each of its 2x downsamplings.

This is the fair test of whether the ECM helps any backbone or only RenseNet: ``ecm_resnet18`` and
``ecm_densenet121`` are the timm networks, unchanged, plus the ECM, the fusion layer and RenseNet's three heads.
"""
from __future__ import annotations

from typing import Any, Dict, List, Tuple

import timm
import torch
from timm.models import build_model_with_cfg, generate_default_cfgs, register_model

from .ecm import EdgeConservativeModule, FeatureFusion, match_size
from .heads import ClassifierHead, ThreeHeadNet
from .pretrained import checkpoint_filter_fn, rensenet_cfg


class ECMNet(ThreeHeadNet):
    """``backbone`` (any timm CNN with ``features_only`` support) + ECM + fusion + three heads.

    The backbone's feature maps at strides 2, 4, ..., 2^n are the maps just before each 2x downsampling; the
    ECM runs over all but the last and meets the last at the fusion layer. ECM widths are the backbone's,
    capped at ``ecm_max_chs`` (a 1024-channel 5x5 stage would dwarf the backbone).
    """

    def __init__(
        self,
        backbone: str,
        *,
        num_classes: int = 2,
        in_chans: int = 1,
        global_pool: str = "avg",
        ecm_kernel_size: int = 5,
        ecm_upsample: str = "bilinear",
        ecm_max_chs: int = 128,
        drop_rate: float = 0.0,
        **backbone_kwargs: Any,
    ) -> None:
        super().__init__()
        self.body = timm.create_model(backbone, pretrained=False, features_only=True, in_chans=in_chans,
                                      **backbone_kwargs)
        reductions, chs = self.body.feature_info.reduction(), self.body.feature_info.channels()
        if len(reductions) < 2 or any(b != 2 * a for a, b in zip(reductions, reductions[1:])):
            raise ValueError(f"{backbone}: the ECM needs feature maps that halve in size at each step, "
                             f"got reductions {reductions}")
        self.backbone_name = backbone
        self.in_chans = in_chans
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.ecm = EdgeConservativeModule(chs[:-1], out_chs=[min(c, ecm_max_chs) for c in chs[:-1]],
                                          kernel_size=ecm_kernel_size, upsample_mode=ecm_upsample)
        self.fusion = FeatureFusion()
        self.num_features = self.head_hidden_size = chs[-1] + self.ecm.out_chs

        def head(c: int) -> ClassifierHead:
            return ClassifierHead(c, num_classes, hidden_chs=max(c // 2, 1), drop_rate=drop_rate,
                                  pool_type=global_pool)

        self.head, self.backbone_head, self.ecm_head = head(self.num_features), head(chs[-1]), head(self.ecm.out_chs)
        self.feature_info: List[Dict[str, Any]] = [
            # a features_only body flattens nested names (features.denseblock1 -> features_denseblock1)
            dict(num_chs=c, reduction=r, module="body." + m.replace(".", "_"))
            for c, r, m in zip(chs, reductions, self.body.feature_info.module_name())
        ] + [dict(num_chs=self.num_features, reduction=reductions[-1], module="fusion")]

    @property
    def default_cam_layers(self) -> List[str]:
        return ["fusion"]

    def _forward_maps(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        feats = self.body(x)
        ecm_map = match_size(self.ecm(feats[:-1]), feats[-1])  # DenseNet floors odd sizes, the ECM rounds up
        return feats[-1], ecm_map, self.fusion(feats[-1], ecm_map)

    def _feature_maps(self, x: torch.Tensor) -> List[torch.Tensor]:
        """The backbone's feature maps and the fused map, as listed in ``feature_info``."""
        feats = self.body(x)
        return list(feats) + [self.fusion(feats[-1], match_size(self.ecm(feats[:-1]), feats[-1]))]


#: The timm backbone of each registered variant.
MODEL_ARGS: Dict[str, Dict[str, Any]] = {
    "ecm_resnet18": dict(backbone="resnet18"),
    "ecm_densenet121": dict(backbone="densenet121"),
}

default_cfgs = generate_default_cfgs({
    "ecm_resnet18.untrained": rensenet_cfg(first_conv="body.conv1", pool_size=(2, 2)),
    "ecm_densenet121.untrained": rensenet_cfg(first_conv="body.features_conv0", pool_size=(2, 2)),
})


def _create_ecm_net(variant: str, pretrained: bool = False, **kwargs: Any) -> ECMNet:
    return build_model_with_cfg(
        ECMNet,
        variant,
        pretrained,
        pretrained_filter_fn=checkpoint_filter_fn,
        feature_cfg=dict(feature_cls="getter", out_indices=tuple(range(6))),  # 5 backbone maps + the fusion
        **{**MODEL_ARGS[variant], **kwargs},
    )


@register_model
def ecm_resnet18(pretrained: bool = False, **kwargs: Any) -> ECMNet:
    """timm ResNet-18 with the Edge Conservative Module and three heads."""
    return _create_ecm_net("ecm_resnet18", pretrained, **kwargs)


@register_model
def ecm_densenet121(pretrained: bool = False, **kwargs: Any) -> ECMNet:
    """timm DenseNet-121 with the Edge Conservative Module (widths capped at 128) and three heads."""
    return _create_ecm_net("ecm_densenet121", pretrained, **kwargs)
