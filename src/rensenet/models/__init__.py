"""RenseNet model family; importing it registers the variants with timm."""
from .dense import WindowInContext
from .ecm import EdgeConservativeModule, FeatureFusion, pooling_residual
from .ecm_net import ECMNet, ecm_densenet121, ecm_resnet18
from .heads import ClassifierHead
from .inference import fuse_conv_bn, optimize_for_inference
from .loss import RenseNetLoss
from .pretrained import CLASSIFIERS, checkpoint_filter_fn, rensenet_cfg
from .rense_block import BLOCK_VARIANTS, DenseLayer, RenseBlock, ResidualUnit
from .rensenet import MODEL_ARGS, RenseNet, RenseNetOutput, rensenet_m, rensenet_s
from .transition import Transition

__all__ = [
    "BLOCK_VARIANTS", "CLASSIFIERS", "ClassifierHead", "checkpoint_filter_fn", "DenseLayer", "ECMNet", "ecm_densenet121", "ecm_resnet18", "EdgeConservativeModule", "FeatureFusion", "fuse_conv_bn", "MODEL_ARGS", "optimize_for_inference",
    "RenseBlock", "RenseNet", "RenseNetLoss", "RenseNetOutput", "ResidualUnit", "Transition", "WindowInContext", "pooling_residual", "rensenet_cfg",
    "rensenet_m", "rensenet_s",
]
