"""RenseNet model family; importing it registers the variants with timm."""
from .ecm import EdgeConservativeModule, FeatureFusion, pooling_residual
from .heads import ClassifierHead
from .loss import RenseNetLoss
from .rense_block import BLOCK_VARIANTS, DenseLayer, RenseBlock, ResidualUnit
from .rensenet import MODEL_ARGS, RenseNet, RenseNetOutput, rensenet_m, rensenet_s
from .transition import Transition

__all__ = [
    "BLOCK_VARIANTS", "ClassifierHead", "DenseLayer", "EdgeConservativeModule", "FeatureFusion", "MODEL_ARGS",
    "RenseBlock", "RenseNet", "RenseNetLoss", "RenseNetOutput", "ResidualUnit", "Transition", "pooling_residual",
    "rensenet_m", "rensenet_s",
]
