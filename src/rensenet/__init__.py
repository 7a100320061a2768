"""rensenet: RenseNet for small-lesion CT classification, with training, evaluation and measurable explanations.

``import rensenet`` registers ``rensenet_s`` and ``rensenet_m`` with timm.
"""
from .models import RenseNet, RenseNetLoss, RenseNetOutput

__version__ = "0.1.0"
__all__ = ["RenseNet", "RenseNetLoss", "RenseNetOutput", "__version__"]
