"""``rensenet train``: its arguments are generated from :class:`rensenet.base.TrainConfig`."""
from __future__ import annotations

import argparse

from ..base import TrainConfig
from .args import add_config_arguments, config_from_args


def add(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train a RenseNet or any timm model on images, or on windows of whole images",
                       description="Train on a manifest (or class folders). With --patch-size, windows are sampled "
                                   "from whole images with lesion boxes or masks, with hard-negative mining.")
    add_config_arguments(p, TrainConfig)


def run(a: argparse.Namespace) -> None:
    from ..training import train

    train(config_from_args(a, TrainConfig))
