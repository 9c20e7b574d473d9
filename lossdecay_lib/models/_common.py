"""Small helpers shared by the network modules: parameter counts and the list of weight layers."""

from __future__ import annotations

from typing import List, Tuple

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
