"""pix2pix networks: the U-Net-256 generator and the 70x70 PatchGAN discriminator (paper Section III.C).

The paper trains pix2pix (Isola et al., "Image-to-Image Translation with Conditional Adversarial
Networks", CVPR 2017) with a weight on the generator's loss. These are the two networks of the
reference implementation (junyanz/pytorch-CycleGAN-and-pix2pix, ``--model pix2pix`` defaults:
``--netG unet_256 --netD basic --norm batch``, dropout on), rewritten here, with the same layers in the
same order, so that at the reference width (``ngf = ndf = 64``) the parameter counts are the
reference's: 54,413,955 for the generator ("54.414 M") and 2,768,705 for the discriminator
("2.769 M"). Smaller ``ngf``/``ndf`` serve the small profiles.

Two details of the reference that we keep on purpose:

* Convolution biases: with batch norm the reference gives no convolution a bias except the
  generator's last (output) layer and the discriminator's first and last layers; this includes the
  generator's first and innermost down-convolutions, which have no norm after them.
* Skip connections carry the encoder features *after* their LeakyReLU. (In the reference this comes
  from an in-place LeakyReLU that also overwrites the tensor kept for the skip connection; here the
  activation is simply part of the encoder block.)

Note: the authors' script was adapted from the PyTorch-GAN collection, whose pix2pix networks differ
(instance norm, a different U-Net head, a 16x16-patch discriminator). We follow the reference
implementation, as the original pix2pix does; the chapter says so.
"""

from __future__ import annotations

from typing import Callable, List, Optional

import torch
from torch import Tensor, nn

__all__ = ["PatchDiscriminator", "UNetGenerator", "init_pix2pix_weights"]


def _norm_layer(norm: str) -> Callable[[int], nn.Module]:
    if norm == "batch":
        return nn.BatchNorm2d
    if norm == "instance":
        return lambda channels: nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)
    raise ValueError(f"unknown norm {norm!r}; valid norms: 'batch', 'instance'")


def init_pix2pix_weights(module: nn.Module, std: float = 0.02) -> None:
    """pix2pix's initialisation: conv weights ~ N(0, std), biases 0, batch-norm scale ~ N(1, std), shift 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, std)
            nn.init.zeros_(m.bias)


class UNetGenerator(nn.Module):
    """U-Net generator: ``num_downs`` stride-2 4x4 convolutions down, as many transposed ones up.

    Args:
        in_channels, out_channels: image channels (3 and 3 for facades and maps).
        ngf: filters of the first layer (64 in the reference); the encoder doubles them up to
            ``8 * ngf`` and stays there.
        num_downs: number of downsamplings; 8 is "U-Net-256" (a 256x256 image reaches 1x1), 7 is
            "U-Net-128". Input sides must be divisible by ``2**num_downs``.
        dropout: dropout probability in the three decoder blocks just above the innermost one
            (0.5, the reference's default; pix2pix's only source of noise). ``0`` disables it.
        norm: ``"batch"`` (reference default) or ``"instance"``; with instance norm every convolution
            gets a bias, as in the reference.

    Encoder block ``i`` (``down[i]``): 4x4 stride-2 conv, batch norm (not in the first and the innermost
    block), LeakyReLU 0.2 (not in the innermost block). Decoder block ``i`` (``up[i]``, from the
    innermost outwards): ReLU, 4x4 stride-2 transposed conv, batch norm and dropout where stated; the
    outermost one ends with Tanh instead. Each decoder block except the innermost reads the previous
    decoder output concatenated after the matching encoder output (skip first, as in the reference).
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        ngf: int = 64,
        num_downs: int = 8,
        dropout: float = 0.5,
        norm: str = "batch",
    ):
        super().__init__()
        if num_downs < 5:
            raise ValueError(f"num_downs must be >= 5 (the encoder widens over 4 levels), got {num_downs}")
        norm_layer = _norm_layer(norm)
        use_bias = norm == "instance"
        self.num_downs = num_downs
        # channels after encoder block i: ngf, 2ngf, 4ngf, 8ngf, 8ngf, ...
        widths = [ngf * min(2**i, 8) for i in range(num_downs)]

        downs: List[nn.Module] = []
        for i in range(num_downs):
            c_in = in_channels if i == 0 else widths[i - 1]
            innermost = i == num_downs - 1
            layers: List[nn.Module] = [
                nn.Conv2d(c_in, widths[i], kernel_size=4, stride=2, padding=1, bias=use_bias)
            ]
            if 0 < i < num_downs - 1:
                layers.append(norm_layer(widths[i]))
            if not innermost:
                layers.append(nn.LeakyReLU(0.2, inplace=True))
            downs.append(nn.Sequential(*layers))
        self.down = nn.ModuleList(downs)

        ups: List[nn.Module] = []
        for level in reversed(range(num_downs)):  # level of the encoder block this decoder block mirrors
            innermost = level == num_downs - 1
            outermost = level == 0
            c_in = widths[level] if innermost else 2 * widths[level]
            c_out = out_channels if outermost else widths[level - 1]
            if outermost:
                layers = [
                    nn.ReLU(inplace=True),
                    nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1),
                    nn.Tanh(),
                ]
            else:
                layers = [
                    nn.ReLU(inplace=True),
                    nn.ConvTranspose2d(c_in, c_out, kernel_size=4, stride=2, padding=1, bias=use_bias),
                    norm_layer(c_out),
                ]
                # the reference's dropout blocks: the num_downs - 5 levels just outside the innermost one
                if not innermost and level >= 4 and dropout > 0:
                    layers.append(nn.Dropout(dropout))
            ups.append(nn.Sequential(*layers))
        self.up = nn.ModuleList(ups)
        init_pix2pix_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        skips: List[Tensor] = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = self.up[0](skips.pop())
        for block in self.up[1:]:
            x = block(torch.cat([skips.pop(), x], dim=1))
        return x


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: classifies overlapping patches as real or fake (70x70 with 3 layers).

    Args:
        in_channels: channels of the discriminator's input, the condition and the image concatenated
            (3 + 3 = 6 for pix2pix).
        ndf: filters of the first layer (64 in the reference), doubled per layer up to ``8 * ndf``.
        n_layers: stride-2 layers after the first (3 gives the 70x70 receptive field).
        norm: ``"batch"`` (reference default) or ``"instance"``.

    Layers: 4x4 stride-2 conv + LeakyReLU 0.2; ``n_layers - 1`` times 4x4 stride-2 conv + norm + LeakyReLU;
    one 4x4 stride-1 conv + norm + LeakyReLU; a 4x4 stride-1 conv to one channel. The output is a map of
    raw scores (no sigmoid: the GAN loss applies it, or LSGAN uses the raw scores), 30x30 for a 256x256
    input. ``forward(source, target)`` concatenates the two images along channels;
    ``forward(pair)`` takes an already concatenated input.
    """

    def __init__(self, in_channels: int = 6, ndf: int = 64, n_layers: int = 3, norm: str = "batch"):
        super().__init__()
        norm_layer = _norm_layer(norm)
        use_bias = norm == "instance"
        layers: List[nn.Module] = [
            nn.Conv2d(in_channels, ndf, kernel_size=4, stride=2, padding=1),
            nn.LeakyReLU(0.2, inplace=True),
        ]
        channels = ndf
        for n in range(1, n_layers + 1):
            width = ndf * min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(channels, width, kernel_size=4, stride=stride, padding=1, bias=use_bias),
                norm_layer(width),
                nn.LeakyReLU(0.2, inplace=True),
            ]
            channels = width
        layers.append(nn.Conv2d(channels, 1, kernel_size=4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)
        init_pix2pix_weights(self)

    def forward(self, source: Tensor, target: Optional[Tensor] = None) -> Tensor:
        x = source if target is None else torch.cat([source, target], dim=1)
        return self.model(x)
