"""Deep plain convolutional networks: no skip connections (the paper's Fig. 1).

Fig. 1 of the paper compares loss decay with normal training on CIFAR-10 using 40- and 50-layer
networks "without residual connections". The paper does not describe them further, and the authors'
code has no plain network at all (it trains a ResNet-34). We therefore use the plain baseline of
He et al. (2016, Section 4.2, the "plain-20/32/44/56" CIFAR networks): a 3x3 stem convolution, three
stages of 3x3 convolutions at widths 16, 32 and 64 on 32x32, 16x16 and 8x8 feature maps, the first
convolution of stages 2 and 3 with stride 2, global average pooling and one linear classifier.

Depth counts weight layers: every convolution plus the final linear layer, as in "ResNet-56" or the
paper's "50 layers". Batch norm and ReLU follow every convolution; neither counts as a layer.

How convolutions are distributed over stages (:func:`plain_stage_depths`): after the stem and the
classifier, the remaining ``depth - 2`` convolutions are split over the stages as evenly as possible,
and when they do not divide evenly the earlier stages get one more each (the rule of
``numpy.array_split``). With three stages: depth 20 -> 6, 6, 6 (He et al.'s plain-20), depth 40 ->
13, 13, 12, depth 50 -> 16, 16, 16, depth 56 -> 18, 18, 18 (plain-56).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import List, Sequence, Tuple, Union

from torch import Tensor, nn

from ._common import add_stages, init_conv_bn, stages_and_classifier, weight_layers

__all__ = ["PlainNet", "plain_stage_depths"]


def _stage_widths(widths: Union[int, Sequence[int]]) -> Tuple[int, ...]:
    if isinstance(widths, int) and not isinstance(widths, bool):
        widths = (widths, 2 * widths, 4 * widths)
    widths = tuple(widths)
    if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w > 0 for w in widths):
        raise ValueError(f"widths must be a positive int or a non-empty sequence of positive ints, got {widths!r}")
    return widths


def plain_stage_depths(depth: int, num_stages: int = 3) -> Tuple[int, ...]:
    """Number of 3x3 convolutions in each stage of a plain network with ``depth`` weight layers.

    The stem convolution and the linear classifier take two of the ``depth`` layers; the other
    ``depth - 2`` are split over ``num_stages`` stages as evenly as possible, earlier stages taking the
    remainder. Every stage needs at least one convolution, so the valid depths are the integers
    ``>= num_stages + 2``; any other depth raises ``ValueError`` naming that range.
    """
    if num_stages < 1:
        raise ValueError(f"num_stages must be >= 1, got {num_stages}")
    min_depth = num_stages + 2
    if not isinstance(depth, int) or isinstance(depth, bool) or depth < min_depth:
        raise ValueError(
            f"invalid depth {depth!r}: a plain network with {num_stages} stages needs an integer depth "
            f">= {min_depth} (one stem convolution, at least one convolution per stage, one linear "
            f"classifier); valid depths are {min_depth}, {min_depth + 1}, ... with no upper limit"
        )
    base, extra = divmod(depth - 2, num_stages)
    return tuple(base + (1 if i < extra else 0) for i in range(num_stages))


class ConvUnit(nn.Sequential):
    """One 3x3 convolution followed by batch norm (optional) and ReLU: one weight layer.

    Without batch norm the convolution has a bias; with it, the bias would be redundant (the batch
    norm shift replaces it) and is left out.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1, batch_norm: bool = True):
        layers: "OrderedDict[str, nn.Module]" = OrderedDict()
        layers["conv"] = nn.Conv2d(
            in_channels, out_channels, kernel_size=3, stride=stride, padding=1, bias=not batch_norm
        )
        if batch_norm:
            layers["bn"] = nn.BatchNorm2d(out_channels)
        layers["relu"] = nn.ReLU(inplace=True)
        super().__init__(layers)


class PlainNet(nn.Module):
    """A VGG-like CIFAR network of ``depth`` weight layers with no skip connections (paper Fig. 1).

    Args:
        depth: number of weight layers (convolutions + the linear classifier); any integer
            ``>= len(widths) + 2``. The paper's Fig. 1 uses 40 and 50.
        num_classes: outputs of the classifier (10 for CIFAR-10).
        widths: channels of each stage, or one int ``w`` meaning ``(w, 2w, 4w)``. The default
            ``(16, 32, 64)`` is He et al.'s CIFAR width. Every stage after the first starts with a
            stride-2 convolution, so a 32x32 input reaches the last stage at ``32 / 2**(stages-1)``.
        batch_norm: batch norm after every convolution (default). ``False`` gives a plain network
            without normalisation, where convolutions carry a bias instead.
        in_channels: channels of the input image.

    Layout: ``stem`` (3x3 conv to ``widths[0]``), ``layer1`` ... ``layerK`` (one per stage, each an
    ``nn.Sequential`` of :class:`ConvUnit`), global average pooling, ``fc``. The convolutions per stage
    follow :func:`plain_stage_depths` and are stored in ``self.stage_depths``.

    Initialisation: He et al. (2015) normal initialisation of every convolution (``fan_in`` mode, ReLU
    gain), which keeps the forward signal's scale through a deep stack even without batch norm
    (torchvision's ResNets use ``fan_out``; the two coincide wherever a convolution keeps its width),
    biases zero, batch norm scale 1 and shift 0; the classifier uses the same rule with the linear gain
    (standard deviation ``1/sqrt(fan_in)``).

    Works in ``channels_last`` memory format like any convolutional network (nothing depends on the
    layout). :meth:`weight_layers` lists the ``depth`` weight layers from input to output.
    """

    def __init__(
        self,
        depth: int = 20,
        num_classes: int = 10,
        widths: Union[int, Sequence[int]] = (16, 32, 64),
        batch_norm: bool = True,
        in_channels: int = 3,
    ):
        super().__init__()
        widths = _stage_widths(widths)
        self.depth = depth
        self.widths = widths
        self.batch_norm = batch_norm
        self.stage_depths = plain_stage_depths(depth, num_stages=len(widths))

        self.stem = ConvUnit(in_channels, widths[0], stride=1, batch_norm=batch_norm)
        channels = add_stages(self, widths, self.stage_depths, widths[0],
                              lambda c, w, stride: ConvUnit(c, w, stride=stride, batch_norm=batch_norm))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """(Re)initialise all weights as described in the class docstring."""
        init_conv_bn(self, "fan_in")  # the convolutions come before fc: the same random draws as one pass
        nn.init.normal_(self.fc.weight, mean=0.0, std=1.0 / math.sqrt(self.fc.in_features))
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: Tensor) -> Tensor:
        return stages_and_classifier(self, self.stem(x))

    def weight_layers(self) -> List[Tuple[str, nn.Module]]:
        """The ``depth`` weight layers as ``(name, module)`` pairs, from input to output.

        Names are the modules' qualified names, e.g. ``"stem.conv"``, ``"layer2.0.conv"``, ``"fc"``.
        """
        return weight_layers(self)

    def extra_repr(self) -> str:
        return f"depth={self.depth}, stage_depths={self.stage_depths}, batch_norm={self.batch_norm}"
