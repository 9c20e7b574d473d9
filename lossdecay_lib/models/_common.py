"""Small helpers shared by the network modules: parameter counts, the weight layers, initialisation,
memory format."""

from __future__ import annotations

from typing import Callable, List, Sequence, Tuple

import torch
from torch import nn

#: Module types whose weights count as a "weight layer" (a layer that multiplies by learned weights).
WEIGHT_LAYER_TYPES = (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters in ``module`` (all of them, or only those with ``requires_grad``)."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable_only)


def weight_layers(module: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The convolution and linear layers of ``module`` as ``(qualified name, layer)`` pairs.

    Layers come in registration order. The networks in this package register their layers in the order
    the forward pass uses them (input to output), so a training loop can log per-layer gradient norms
    with ``[(name, layer.weight.grad.norm()) for name, layer in weight_layers(model)]``. Batch-norm
    layers are not weight layers here: their affine scale and shift are per-channel, not a linear map.
    """
    return [(name, m) for name, m in module.named_modules() if isinstance(m, WEIGHT_LAYER_TYPES)]


def add_stages(net: nn.Module, widths: Sequence[int], counts: Sequence[int], channels: int,
               unit: Callable[[int, int, int], nn.Module]) -> int:
    """Register ``layer1`` ... ``layerK`` on ``net`` (names in ``net.stage_names``): stage ``i`` is
    ``counts[i]`` units ``unit(in_channels, widths[i], stride)``, the first of every stage after the
    first with stride 2 (He et al. 2016's CIFAR layout). Returns the channels the last stage puts out."""
    net.stage_names = []
    for index, (width, count) in enumerate(zip(widths, counts)):
        units = []
        for j in range(count):
            units.append(unit(channels, width, 2 if index > 0 and j == 0 else 1))
            channels = width
        net.stage_names.append(f"layer{index + 1}")
        net.add_module(net.stage_names[-1], nn.Sequential(*units))
    return channels


def stages_and_classifier(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The rest of a forward pass after the stem: the stages of :func:`add_stages`, global average
    pooling, the linear classifier ``net.fc``."""
    for name in net.stage_names:
        x = getattr(net, name)(x)
    return net.fc(torch.flatten(net.avgpool(x), 1))


def init_conv_bn(module: nn.Module, mode: str) -> None:
    """He et al.'s (2015) initialisation of every convolution of ``module`` (normal, ``mode`` "fan_in"
    or "fan_out", gain for ReLU; biases zero), and batch norm as the identity (scale 1, shift 0)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def channels_last_is_safe(module: nn.Module, device: torch.device) -> bool:
    """Whether to train ``module`` in the channels_last memory format on ``device``.

    channels_last is faster for convolutions on CPUs and GPUs alike (about 1.7x on this project's
    2-core CPUs), and is used wherever it is safe. It is not safe on the CPU for a network with a 1x1
    convolution of stride > 1 over 2 to 7 input channels (a ResNet shortcut at width 2-7): with torch
    2.14.1 its backward pass in channels_last crashes the process (segmentation fault, bus error or
    abort, found here with ``resnet34_cifar(width=4)``; 1 and 8 or more channels are fine). Such a
    network trains in the default format instead (the same numbers up to float rounding).
    """
    if torch.device(device).type != "cpu":
        return True
    for m in module.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1 and 1 < m.in_channels < 8:
            return False
    return True
