"""Network definitions for the book's experiments.

* :class:`PlainNet`: deep CIFAR networks without skip connections, any depth (paper Fig. 1).
* :func:`resnet34_cifar` (and :func:`resnet18_cifar`): the CIFAR ResNet the authors' code trains.
* :class:`PSPNet`: semantic segmentation on a dilated torchvision ResNet (Section III.B, Table I).
* :class:`UNetGenerator` and :class:`PatchDiscriminator`: pix2pix (Section III.C).

The classification networks are also available by name through :func:`build_model`, so that a
profile or a run record can name its network: ``build_model("plain", depth=40, num_classes=10)``.
"""

from __future__ import annotations

from typing import Callable, Dict, Tuple

from torch import nn

from ._common import channels_last_is_safe, count_parameters, weight_layers
from .pix2pix import PatchDiscriminator, UNetGenerator, init_pix2pix_weights
from .plain import PlainNet, plain_stage_depths
from .pspnet import (
    AUX_LOSS_WEIGHT,
    BACKBONES,
    DilatedResNet,
    PSPNet,
    PSPNetOutput,
    PyramidPooling,
    cached_imagenet_weights,
)
from .resnet_cifar import CifarResNet, resnet18_cifar, resnet34_cifar

_CLASSIFIERS: Dict[str, Callable[..., nn.Module]] = {
    "plain": PlainNet,
    "resnet18_cifar": resnet18_cifar,
    "resnet34_cifar": resnet34_cifar,
}
MODEL_NAMES: Tuple[str, ...] = tuple(sorted(_CLASSIFIERS))
"""Names accepted by :func:`build_model`."""


def build_model(name: str, **kwargs) -> nn.Module:
    """Build a classification network by name; ``kwargs`` go to its constructor.

    ``"plain"`` -> :class:`PlainNet` (``depth``, ``num_classes``, ``widths``, ``batch_norm``),
    ``"resnet34_cifar"`` / ``"resnet18_cifar"`` -> :func:`resnet34_cifar` (``num_classes``, ``width``).
    An unknown name raises ``ValueError`` listing the valid names.
    """
    try:
        factory = _CLASSIFIERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}") from None
    return factory(**kwargs)


__all__ = [
    "AUX_LOSS_WEIGHT",
    "BACKBONES",
    "CifarResNet",
    "DilatedResNet",
    "MODEL_NAMES",
    "PSPNet",
    "PSPNetOutput",
    "PatchDiscriminator",
    "PlainNet",
    "PyramidPooling",
    "UNetGenerator",
    "build_model",
    "cached_imagenet_weights",
    "channels_last_is_safe",
    "count_parameters",
    "init_pix2pix_weights",
    "plain_stage_depths",
    "resnet18_cifar",
    "resnet34_cifar",
    "weight_layers",
]
