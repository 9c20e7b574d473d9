"""PSPNet for semantic segmentation (the paper's Section III.B and Table I).

The paper trains PSPNet-101 (Zhao et al., "Pyramid Scene Parsing Network", CVPR 2017) on PASCAL VOC
2012 and reports its mean IoU with and without the gradient weight (Table I). This module builds that
network from torchvision parts:

* :class:`DilatedResNet`: a torchvision ResNet trunk (``resnet18``/``34``/``50``/``101``) whose last
  two stages trade their stride for dilation (layer3 dilation 2, layer4 dilation 4), so the features
  are 1/8 of the input size (output stride 8) instead of 1/32. The dilation rule is torchvision's
  ``replace_stride_with_dilation``: the first 3x3 convolution of a dilated stage keeps the previous
  stage's dilation (1 in layer3, 2 in layer4) and the others take the stage's. hszhao/semseg (the
  PSPNet code of Zhao et al.) sets the stage's dilation on every block's 3x3 convolution instead,
  the first included; the two differ only in that first convolution of layer3 and of layer4.
* :class:`PyramidPooling`: the pyramid pooling module. The layer4 features are average-pooled to
  1x1, 2x2, 3x3 and 6x6 bins, each reduced by a 1x1 convolution (+ batch norm + ReLU) to 1/4 of the
  input channels, upsampled back and concatenated with the features themselves.
* :class:`ConvHead`: 3x3 convolution (512 channels) + batch norm + ReLU + dropout 0.1 + 1x1
  classifier on the pooled features; the same form with 256 channels is the auxiliary head on layer3,
  whose loss (weight :data:`AUX_LOSS_WEIGHT`) only helps training ("deep supervision").

Deliberate differences from Zhao et al.'s own network, to say in the chapter: the stem is torchvision's
(one 7x7 convolution and a max-pool) rather than their three 3x3 convolutions; upsampling uses
``align_corners=False`` so any input size works; ``resnet18``/``resnet34`` trunks exist only to make the
small profiles affordable (PSPNet was defined on ResNet-50 and deeper).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, NamedTuple, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models import resnet as tv_resnet

from ..checks import check_name
from ._common import init_conv_bn

__all__ = [
    "AUX_LOSS_WEIGHT",
    "BACKBONES",
    "ConvHead",
    "DilatedResNet",
    "PSPNet",
    "PSPNetOutput",
    "PyramidPooling",
    "cached_imagenet_weights",
]

AUX_LOSS_WEIGHT: float = 0.4
"""Weight of the auxiliary head's loss in training: ``loss = main_loss + AUX_LOSS_WEIGHT * aux_loss``.

Zhao et al. (2017) found 0.4 best for their deep supervision, and the authors' segmentation script
uses it too. The network only returns the two outputs; the training loop applies this weight.
"""

PathLike = Union[str, "os.PathLike[str]"]

# name -> (torchvision builder, torchvision weights enum, uses bottleneck blocks)
_BACKBONE_SPECS = {
    "resnet18": (tv_resnet.resnet18, tv_resnet.ResNet18_Weights, False),
    "resnet34": (tv_resnet.resnet34, tv_resnet.ResNet34_Weights, False),
    "resnet50": (tv_resnet.resnet50, tv_resnet.ResNet50_Weights, True),
    "resnet101": (tv_resnet.resnet101, tv_resnet.ResNet101_Weights, True),
}
BACKBONES: Tuple[str, ...] = tuple(_BACKBONE_SPECS)
"""Names accepted as ``backbone``: resnet50/resnet101 for the large profiles, resnet18/34 for small ones."""


def cached_imagenet_weights(backbone: str) -> Optional[Path]:
    """Path of torchvision's ImageNet weights for ``backbone`` if they are already in torch hub's cache.

    Looks in ``torch.hub.get_dir()/checkpoints`` for the file names torchvision downloads to (its
    default weights first, then the others). Returns ``None`` when none is there; never downloads.
    """
    _, weights_enum, _ = _backbone_spec(backbone)
    folder = Path(torch.hub.get_dir()) / "checkpoints"
    members = [weights_enum.DEFAULT] + [w for w in weights_enum if w is not weights_enum.DEFAULT]
    for weights in members:
        candidate = folder / weights.url.rsplit("/", 1)[-1]
        if candidate.is_file():
            return candidate
    return None


def _backbone_spec(name: str):
    return _BACKBONE_SPECS[check_name(name, BACKBONES, "backbone")]


def _load_trunk_weights(net: nn.Module, path: Path) -> None:
    state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    missing = [k for k in missing if not k.startswith("fc.")]
    if missing or unexpected:
        raise ValueError(
            f"{path} is not a state dict of this torchvision ResNet: missing {missing[:5]}, "
            f"unexpected {list(unexpected)[:5]}"
        )


def _dilate_basic_stage(stage: nn.Sequential, dilation: int, previous_dilation: int) -> None:
    """Replace the stride of a stage of BasicBlocks by dilation, in place.

    torchvision's BasicBlock refuses ``dilation > 1`` at construction, so we change the built
    convolutions. The rule mirrors torchvision's ``replace_stride_with_dilation`` for bottleneck blocks:
    the convolution that used to have stride 2 (the first block's ``conv1``) keeps the previous stage's
    dilation, every other 3x3 convolution of the stage uses ``dilation``, and the shortcut projection
    loses its stride. Padding equals dilation, so a 3x3 convolution keeps the feature-map size.
    """
    for index, block in enumerate(stage):
        for conv_name in ("conv1", "conv2"):
            conv = getattr(block, conv_name)
            d = previous_dilation if (index == 0 and conv_name == "conv1") else dilation
            conv.stride, conv.dilation, conv.padding = (1, 1), (d, d), (d, d)
        if block.downsample is not None:
            block.downsample[0].stride = (1, 1)
        block.stride = 1


class DilatedResNet(nn.Module):
    """A torchvision ResNet trunk with output stride 8, returning the layer3 and layer4 features.

    Args:
        name: one of :data:`BACKBONES`.
        pretrained: ``None`` (random initialisation, the default), a path to a state dict of the
            matching torchvision ResNet (its ``fc`` entries are ignored), or ``"imagenet"`` to load
            torchvision's ImageNet weights from torch hub's local cache (``FileNotFoundError`` if they
            are not there: nothing is ever downloaded).

    ``resnet50``/``resnet101`` use torchvision's ``replace_stride_with_dilation=[False, True, True]``;
    ``resnet18``/``resnet34`` are dilated after construction (see :func:`_dilate_basic_stage`). Module
    names equal torchvision's (``conv1``, ``bn1``, ``layer1`` ...), so torchvision state dicts load.
    ``init_source`` records what the weights came from: ``"random"`` or the file's path.
    """

    def __init__(self, name: str = "resnet50", pretrained: Optional[PathLike] = None):
        super().__init__()
        builder, _, bottleneck = _backbone_spec(name)
        if bottleneck:
            net = builder(weights=None, replace_stride_with_dilation=[False, True, True])
        else:
            net = builder(weights=None)
            _dilate_basic_stage(net.layer3, dilation=2, previous_dilation=1)
            _dilate_basic_stage(net.layer4, dilation=4, previous_dilation=2)

        self.init_source = "random"
        if pretrained is not None:
            if isinstance(pretrained, str) and pretrained == "imagenet":
                path = cached_imagenet_weights(name)
                if path is None:
                    raise FileNotFoundError(
                        f"no ImageNet weights for {name} in {Path(torch.hub.get_dir()) / 'checkpoints'}; "
                        "pass pretrained=None for random initialisation or a path to a state dict"
                    )
            else:
                path = Path(pretrained)
            _load_trunk_weights(net, path)
            self.init_source = str(path)

        self.name = name
        self.conv1, self.bn1, self.relu, self.maxpool = net.conv1, net.bn1, net.relu, net.maxpool
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        self.out_channels: int = net.fc.in_features
        self.aux_channels: int = net.fc.in_features // 2
        self.output_stride = 8

    def forward(self, x: Tensor) -> Tuple[Tensor, Tensor]:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer2(self.layer1(x))
        c3 = self.layer3(x)
        c4 = self.layer4(c3)
        return c3, c4


class PyramidPooling(nn.Module):
    """Pyramid pooling module: pool to each bin size, 1x1 conv + BN + ReLU, upsample, concatenate.

    With ``in_channels`` C and the default bins (1, 2, 3, 6) each branch has C/4 channels, so the
    output has 2C channels (the input features followed by the four branches).
    """

    def __init__(
        self, in_channels: int, bins: Sequence[int] = (1, 2, 3, 6), branch_channels: Optional[int] = None
    ):
        super().__init__()
        if branch_channels is None:
            branch_channels = in_channels // len(bins)
        self.bins = tuple(bins)
        self.branches = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                nn.Conv2d(in_channels, branch_channels, kernel_size=1, bias=False),
                nn.BatchNorm2d(branch_channels),
                nn.ReLU(inplace=True),
            )
            for b in self.bins
        )
        self.out_channels = in_channels + len(self.bins) * branch_channels

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        pooled = [
            F.interpolate(branch(x), size=size, mode="bilinear", align_corners=False) for branch in self.branches
        ]
        return torch.cat([x] + pooled, dim=1)


class ConvHead(nn.Sequential):
    """3x3 conv (no bias) + batch norm + ReLU + channel dropout + 1x1 classifier conv (with bias)."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int, dropout: float = 0.1):
        super().__init__(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Dropout2d(dropout),
            nn.Conv2d(mid_channels, num_classes, kernel_size=1),
        )


class PSPNetOutput(NamedTuple):
    """What :class:`PSPNet` returns in training mode: logits of both heads at the input's size."""

    main: Tensor
    """Main head's logits, shape ``(N, num_classes, H, W)``."""
    aux: Optional[Tensor]
    """Auxiliary head's logits (same shape), or ``None`` for a network built with ``aux=False``."""


class PSPNet(nn.Module):
    """PSPNet: dilated ResNet + pyramid pooling + convolutional head, with an auxiliary head on layer3.

    Args:
        num_classes: number of classes (21 for VOC, 11 or 12 for CamVid).
        backbone: one of :data:`BACKBONES`; ``"resnet101"`` is the paper's PSPNet-101 (Table I).
        pretrained_backbone: ``None`` (default: random initialisation), a path to a state dict of the
            torchvision ResNet, or ``"imagenet"`` for torchvision's weights from the local torch hub
            cache (see :func:`cached_imagenet_weights`; never downloaded). PSPNet is normally trained
            from ImageNet weights, so the chapter must report which was used: ``self.backbone_init``
            holds ``"random"`` or the weights file's path.
        bins: pyramid bin sizes.
        head_channels: width of the main head's 3x3 convolution (512 in Zhao et al.).
        aux_channels: width of the auxiliary head's 3x3 convolution (256 in Zhao et al.).
        dropout: dropout probability in both heads (0.1).
        aux: build the auxiliary head.

    ``forward(x)`` takes ``(N, 3, H, W)`` images of any size and returns logits upsampled bilinearly to
    ``(H, W)``:

    * in training mode (``model.train()``) a :class:`PSPNetOutput` ``(main, aux)``; the loop computes
      ``loss(main) + AUX_LOSS_WEIGHT * loss(aux)``;
    * in evaluation mode (``model.eval()``) the main logits only, a tensor: the auxiliary head is not
      evaluated.

    Training needs a batch of at least 2: the 1x1 pyramid bin's batch norm sees one value per channel
    and image.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: str = "resnet50",
        pretrained_backbone: Optional[PathLike] = None,
        bins: Sequence[int] = (1, 2, 3, 6),
        head_channels: int = 512,
        aux_channels: int = 256,
        dropout: float = 0.1,
        aux: bool = True,
    ):
        super().__init__()
        self.backbone = DilatedResNet(backbone, pretrained=pretrained_backbone)
        self.ppm = PyramidPooling(self.backbone.out_channels, bins)
        self.head = ConvHead(self.ppm.out_channels, head_channels, num_classes, dropout)
        self.aux_head = ConvHead(self.backbone.aux_channels, aux_channels, num_classes, dropout) if aux else None
        for part in (self.ppm, self.head, self.aux_head):
            if part is not None:
                init_conv_bn(part, "fan_out")

    @property
    def backbone_init(self) -> str:
        """``"random"`` or the path of the weights the backbone was loaded from."""
        return self.backbone.init_source

    def forward(self, x: Tensor) -> Union[Tensor, PSPNetOutput]:
        size = x.shape[-2:]
        c3, c4 = self.backbone(x)
        main = F.interpolate(self.head(self.ppm(c4)), size=size, mode="bilinear", align_corners=False)
        if not self.training:
            return main
        aux = None
        if self.aux_head is not None:
            aux = F.interpolate(self.aux_head(c3), size=size, mode="bilinear", align_corners=False)
        return PSPNetOutput(main, aux)

    def parameter_groups(self) -> Dict[str, list]:
        """Parameters split into ``"backbone"`` and ``"heads"``, e.g. for a smaller backbone learning rate."""
        backbone = list(self.backbone.parameters())
        ids = {id(p) for p in backbone}
        return {"backbone": backbone, "heads": [p for p in self.parameters() if id(p) not in ids]}
