"""rensenet: RenseNet for small-lesion CT, from windows to whole scans.

``import rensenet`` registers ``rensenet_s``, ``rensenet_m``, ``ecm_resnet18`` and ``ecm_densenet121`` with timm.
The Python API mirrors the command line::

    model, cfg = rensenet.load_model("runs/kidney/best.pt")
    result = rensenet.scan("runs/kidney/best.pt", ["series/"], out="scan")   # a typed ScanResult
"""
from .base import TrainConfig, load_model
from .models import RenseNet, RenseNetLoss, RenseNetOutput

__version__ = "0.2.0"


def __getattr__(name: str):
    """The heavier entry points, imported on first use (``rensenet.scan``, ``rensenet.train``, ...)."""
    if name in ("scan", "ScanSettings", "ScanResult"):
        from .scanning import run

        return getattr(run, name)
    if name == "evaluate_scans":
        from .evaluation.scans import evaluate_scans

        return evaluate_scans
    if name == "evaluate":
        from .evaluation.report import evaluate

        return evaluate
    if name == "train":
        from .training import train

        return train
    if name == "explain":
        from .explanation import explain

        return explain
    raise AttributeError(f"module 'rensenet' has no attribute {name!r}")


__all__ = ["RenseNet", "RenseNetLoss", "RenseNetOutput", "ScanResult", "ScanSettings", "TrainConfig", "evaluate",
           "evaluate_scans", "explain", "load_model", "scan", "train", "__version__"]
