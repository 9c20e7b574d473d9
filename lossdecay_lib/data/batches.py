"""CIFAR-10 batches straight from tensors in memory, augmented a whole batch at a time.

The usual pipeline (PIL image -> RandomCrop -> RandomHorizontalFlip -> ToTensor -> Normalize, one
image at a time in DataLoader workers) costs more than a small network's training step on a CPU.
Here the uint8 images sit on the training device once; each batch is gathered by index, cropped
and flipped by a single indexing operation for all its images, then converted and normalised. In the
spirit of KellerJordan/cifar10-airbench: data as tensors, augmentation on whole batches.

Augmentation is the paper's standard CIFAR-10 one (Wei 2019, Sec. 4): a random 32x32 crop of the
image zero-padded by 4 pixels and a horizontal flip with probability 1/2, exactly the distribution of
torchvision's ``RandomCrop(32, padding=4)`` + ``RandomHorizontalFlip()``.

All random numbers (order, crop offsets, flips) come from a ``torch.Generator`` on the CPU seeded by
``(seed, epoch)``, so the same seed gives identical batches on every device and every run, and any
epoch can be replayed on its own.
"""

from __future__ import annotations

from typing import Iterator, Optional, Sequence, Tuple, Union

import torch
import torch.nn.functional as F

from .cifar import CIFAR10_MEAN, CIFAR10_STD, CifarSplit
from .seeding import epoch_generator

Batch = Tuple[torch.Tensor, torch.Tensor]


def default_device() -> torch.device:
    """The GPU when there is one, else the CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


class CifarBatches:
    """Iterate over normalised ``(images, labels)`` batches of a :class:`CifarSplit` on a device.

    ``train=True`` (the default) shuffles, crops, flips and drops the last incomplete batch;
    ``train=False`` is the evaluation order: every image once, in order, unaugmented. Each of
    ``shuffle``, ``augment`` and ``drop_last`` can be set on its own. Every ``for`` loop over the
    object is one epoch (``epoch`` counts them); :meth:`epoch_batches` replays a given epoch.

    Images come out as ``dtype`` ``[B, 3, 32, 32]`` (``channels_last`` if asked, faster for
    convolutions on CPUs), labels as int64 ``[B]``, both on ``device``. ``pool=k`` average-pools each
    augmented image by ``k`` (``[B, 3, 32/k, 32/k]``): the ``cpu`` profile trains on 16x16 images so that
    a 2-core CPU can use all 50,000.
    """

    def __init__(
        self,
        data: Union[CifarSplit, Tuple[torch.Tensor, torch.Tensor]],
        batch_size: int = 128,
        *,
        train: bool = True,
        device: Optional[Union[str, torch.device]] = None,
        seed: int = 0,
        shuffle: Optional[bool] = None,
        augment: Optional[bool] = None,
        drop_last: Optional[bool] = None,
        padding: int = 4,
        mean: Sequence[float] = CIFAR10_MEAN,
        std: Sequence[float] = CIFAR10_STD,
        dtype: torch.dtype = torch.float32,
        channels_last: bool = False,
        pool: int = 1,
    ) -> None:
        images, labels = (data.images, data.labels) if isinstance(data, CifarSplit) else data
        _check_inputs(images, labels, batch_size, padding)
        self.device = torch.device(device) if device is not None else default_device()
        self.images = images.to(self.device)
        self.labels = labels.to(self.device, torch.int64)
        self.batch_size = batch_size
        self.seed = seed
        self.shuffle = train if shuffle is None else shuffle
        self.augment = train if augment is None else augment
        self.drop_last = train if drop_last is None else drop_last
        self.padding = padding
        self.dtype = dtype
        self.channels_last = channels_last
        if not isinstance(pool, int) or isinstance(pool, bool) or pool < 1 or images.shape[-1] % pool:
            raise ValueError(f"pool must be a positive integer dividing the image side {images.shape[-1]}; got {pool!r}")
        self.pool = pool
        self.epoch = 0
        # Normalisation folded into one multiply-add: (x / 255 - mean) / std.
        std_t = torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1)
        mean_t = torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1)
        self._scale = (1.0 / (255.0 * std_t)).to(self.device)
        self._shift = (-mean_t / std_t).to(self.device)

    def __len__(self) -> int:
        count = self.labels.numel()
        return count // self.batch_size if self.drop_last else -(-count // self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        return self.epoch_batches(epoch)

    def epoch_batches(self, epoch: int) -> Iterator[Batch]:
        """The batches of epoch ``epoch`` (a pure function of ``seed`` and ``epoch``)."""
        count = self.labels.numel()
        generator = epoch_generator(self.seed, epoch)
        order = torch.randperm(count, generator=generator) if self.shuffle else torch.arange(count)
        if self.augment:
            span = 2 * self.padding + 1
            offsets = torch.randint(0, span, (count, 2), generator=generator)
            flips = torch.rand(count, generator=generator) < 0.5
            offsets, flips = offsets.to(self.device), flips.to(self.device)
        order = order.to(self.device)
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            positions = order[start:start + self.batch_size]
            images = self.images[positions]
            if self.augment:
                in_batch = slice(start, start + positions.numel())
                images = crop_and_flip(images, offsets[in_batch], flips[in_batch], self.padding)
            yield self._normalise(images), self.labels[positions]

    def _normalise(self, images: torch.Tensor) -> torch.Tensor:
        x = images.float()
        if self.pool > 1:  # average pooling commutes with the per-channel affine normalisation
            x = F.avg_pool2d(x, self.pool)
        out = torch.addcmul(self._shift, x, self._scale).to(self.dtype)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out


def crop_and_flip(images: torch.Tensor, offsets: torch.Tensor, flips: torch.Tensor,
                  padding: int) -> torch.Tensor:
    """Crop every image of a batch at its own offset in a zero-padded copy, mirroring where ``flips``.

    ``images``: ``[B, C, H, W]``; ``offsets``: ``[B, 2]`` (row, column) in ``[0, 2 * padding]``;
    ``flips``: ``[B]`` bool. Two ``gather`` calls do all crops and flips at once, with no loop over
    images: image b's output row i is padded row ``offsets[b, 0] + i``; its column j is padded column
    ``offsets[b, 1] + j``, or ``offsets[b, 1] + W - 1 - j`` when flipped.
    """
    batch, channels, height, width = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    device = images.device
    steps_h = torch.arange(height, device=device)
    steps_w = torch.arange(width, device=device)
    rows = offsets[:, :1] + steps_h                                                   # [B, H]
    cols = offsets[:, 1:] + torch.where(flips[:, None], width - 1 - steps_w, steps_w)  # [B, W]
    row_index = rows.view(batch, 1, height, 1).expand(batch, channels, height, padded.shape[3])
    cropped_rows = padded.gather(2, row_index)                                        # [B, C, H, W + 2p]
    col_index = cols.view(batch, 1, 1, width).expand(batch, channels, height, width)
    return cropped_rows.gather(3, col_index)


def _check_inputs(images: torch.Tensor, labels: torch.Tensor, batch_size: int, padding: int) -> None:
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be [N, 3, H, W]; got shape {tuple(images.shape)}")
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8 (0-255); got {images.dtype}")
    if labels.shape != (images.shape[0],):
        raise ValueError(f"labels must be [N] with N={images.shape[0]}; got {tuple(labels.shape)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive; got {batch_size}")
    if padding < 0:
        raise ValueError(f"padding must be >= 0; got {padding}")
