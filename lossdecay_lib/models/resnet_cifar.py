"""ResNet for 32x32 images: the network the authors' classification code trains (ResNet-34).

The authors' ``main.py`` builds ``ResNet34()`` from a ``resnet.py`` that is not in their repository
(see ``original-code-facts.md``). The common CIFAR variant that this name refers to (the one in the
widely used ``pytorch-cifar`` collection) differs from the ImageNet ResNet only in its stem: one 3x3
convolution with 64 channels and stride 1 instead of a 7x7 stride-2 convolution and a max-pool, so the
four stages run at 32, 16, 8 and 4 pixels. With 10 classes ResNet-34 then has 21,282,122 parameters
(ResNet-18: 11,173,962); ``tests/test_models.py`` checks both.

The residual blocks are torchvision's :class:`~torchvision.models.resnet.BasicBlock` with a 1x1
convolution + batch norm projection where a block changes resolution or width, exactly that variant's
block. Where we differ, deliberately: weights are initialised as in torchvision's ResNet (He normal,
``fan_out``; batch norm 1 and 0) rather than with PyTorch's default layer initialisation, since the
authors' own initialisation is unknown; and the stage widths can be scaled down for the small profiles.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from ._common import add_stages, init_conv_bn, stages_and_classifier, weight_layers

__all__ = ["CifarResNet", "resnet18_cifar", "resnet34_cifar"]


class CifarResNet(nn.Module):
    """A ResNet of basic blocks for 32x32 inputs (3x3 stem, no max-pool).

    Args:
        blocks_per_stage: residual blocks in each stage; ``(3, 4, 6, 3)`` is ResNet-34.
        widths: channels of each stage; the stem has ``widths[0]`` channels. Stages after the first
            start with a stride-2 block.
        num_classes: outputs of the linear classifier.
        in_channels: channels of the input image.
    """

    def __init__(
        self,
        blocks_per_stage: Sequence[int] = (3, 4, 6, 3),
        widths: Sequence[int] = (64, 128, 256, 512),
        num_classes: int = 10,
        in_channels: int = 3,
    ):
        super().__init__()
        if len(blocks_per_stage) != len(widths) or not blocks_per_stage:
            raise ValueError("blocks_per_stage and widths must be non-empty and of the same length")
        if min(blocks_per_stage) < 1 or min(widths) < 1:
            raise ValueError("every stage needs at least one block and a positive width")
        self.conv1 = nn.Conv2d(in_channels, widths[0], kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)

        def block(channels: int, width: int, stride: int) -> BasicBlock:
            shortcut = None
            if stride != 1 or channels != width:  # a projection where the shape changes
                shortcut = nn.Sequential(nn.Conv2d(channels, width, kernel_size=1, stride=stride, bias=False),
                                         nn.BatchNorm2d(width))
            return BasicBlock(channels, width, stride=stride, downsample=shortcut)

        channels = add_stages(self, widths, blocks_per_stage, widths[0], block)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(channels, num_classes)

        init_conv_bn(self, "fan_out")

    def forward(self, x: Tensor) -> Tensor:
        return stages_and_classifier(self, self.relu(self.bn1(self.conv1(x))))

    def weight_layers(self) -> List[Tuple[str, nn.Module]]:
        """Convolutions and the classifier as ``(name, module)``, from input to output.

        Within a block, the shortcut projection (``downsample.0``) comes after the block's two
        convolutions, since it runs in parallel with them.
        """
        return weight_layers(self)


def _scaled(width: int, n: int) -> Tuple[int, ...]:
    return tuple(width * 2**i for i in range(n))


def resnet34_cifar(num_classes: int = 10, width: int = 64, in_channels: int = 3) -> CifarResNet:
    """ResNet-34 for CIFAR: blocks (3, 4, 6, 3), widths ``width * (1, 2, 4, 8)`` (64 -> 512).

    This is the network of the authors' classification code. With the default width and 10 classes it
    has 21,282,122 parameters; a smaller ``width`` keeps the depth for the small profiles.
    """
    return CifarResNet((3, 4, 6, 3), _scaled(width, 4), num_classes=num_classes, in_channels=in_channels)


def resnet18_cifar(num_classes: int = 10, width: int = 64, in_channels: int = 3) -> CifarResNet:
    """ResNet-18 for CIFAR: blocks (2, 2, 2, 2), widths ``width * (1, 2, 4, 8)``; 11,173,962 parameters."""
    return CifarResNet((2, 2, 2, 2), _scaled(width, 4), num_classes=num_classes, in_channels=in_channels)
