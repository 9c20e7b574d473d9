"""Paired images for pix2pix: side-by-side A|B files, split into an input and a target.

The paper also trains pix2pix on facades and maps (Wei 2019, Sec. 4). pix2pix stores each example as
one image twice as wide as high: the left half is A, the right half is B (facades: the photo is A,
the label map is B; maps: the aerial photo is A, the map is B). ``direction="AtoB"`` makes A the
input and B the target; ``"BtoA"`` the reverse. The default is pix2pix's usual task for each dataset:
labels -> photo for facades (``BtoA``), aerial -> map for maps (``AtoB``).

Training uses pix2pix's jitter: both halves resized to 286x286, the same random 256x256 crop taken from
both, and the same mirror with probability 1/2. Evaluation resizes to 256x256. Pixel values are mapped
to [-1, 1] (the range of the generator's tanh output).
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..checks import check_name
from .errors import MalformedDatasetError, MismatchedPairError
from .images import image_size, list_images, read_rgb, require_folder
from .paths import PathLike, find_dataset
from .seeding import item_generator

PAIRED_DATASETS = ("facades", "maps")
DIRECTIONS = ("AtoB", "BtoA")
SPLITS = ("train", "val", "test")
DEFAULT_DIRECTION = {"facades": "BtoA", "maps": "AtoB"}
PRELOAD_BUDGET_BYTES = 512 * 2**20


def split_halves(image: torch.Tensor, path: object = "image") -> Tuple[torch.Tensor, torch.Tensor]:
    """Split an A|B image ``[3, H, 2W]`` into A (left) and B (right), each ``[3, H, W]``."""
    width = image.shape[-1]
    if width % 2:
        raise MismatchedPairError(
            f"{path} is {width} pixels wide: an odd width cannot be split into equal A|B halves"
        )
    return image[..., : width // 2], image[..., width // 2:]


def to_unit_range(image: torch.Tensor) -> torch.Tensor:
    """uint8 (or float 0-255) pixels -> float in [-1, 1]."""
    return image.float().div(127.5).sub(1.0).clamp(-1.0, 1.0)


def resize_square(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize ``[..., C, H, W]`` (float, 0-255) to ``size`` x ``size`` bicubically, as pix2pix does."""
    if image.shape[-2:] == (size, size):
        return image
    batched = image if image.dim() == 4 else image[None]
    out = F.interpolate(batched, size=(size, size), mode="bicubic", align_corners=False, antialias=True)
    out = out.clamp(0.0, 255.0)
    return out if image.dim() == 4 else out[0]


class PairedImages(Dataset):
    """pix2pix pairs ``(input, target)``, each float ``[3, crop_size, crop_size]`` in [-1, 1].

    ``augment`` defaults to True for the ``train`` split. ``preload=None`` decodes all files into
    memory at construction when that fits in 512 MiB (facades does). Random jitter is seeded by
    ``(seed, epoch, index)``; call :meth:`set_epoch` each epoch.
    """

    def __init__(
        self,
        name: str = "facades",
        split: str = "train",
        data_root: Optional[PathLike] = None,
        *,
        direction: Optional[str] = None,
        cache_dir: Optional[PathLike] = None,
        download: bool = False,
        augment: Optional[bool] = None,
        load_size: int = 286,
        crop_size: int = 256,
        flip: bool = True,
        preload: Optional[bool] = None,
        seed: int = 0,
    ) -> None:
        check_name(name, PAIRED_DATASETS, "paired dataset")
        check_name(split, SPLITS, "split")
        self.direction = check_name(direction or DEFAULT_DIRECTION[name], DIRECTIONS, "direction")
        if load_size < crop_size:
            raise ValueError(f"load_size ({load_size}) must be at least crop_size ({crop_size})")
        self.name, self.split = name, split
        self.folder = find_dataset(name, data_root, cache_dir=cache_dir, download=download)
        self.files = list_pair_files(self.folder, split)
        self.augment = split == "train" if augment is None else augment
        self.load_size, self.crop_size, self.flip = load_size, crop_size, flip
        self.seed, self.epoch = seed, 0
        if preload is None:
            width, height = image_size(self.files[0])
            preload = len(self.files) * width * height * 3 <= PRELOAD_BUDGET_BYTES
        self._decoded = [self.load_halves(i) for i in range(len(self.files))] if preload else None

    def __len__(self) -> int:
        return len(self.files)

    def set_epoch(self, epoch: int) -> None:
        """Select the jitter stream of ``epoch``."""
        self.epoch = epoch

    def load_halves(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The uint8 halves ``(A, B)`` of file ``index``, untransformed."""
        if getattr(self, "_decoded", None) is not None:
            return self._decoded[index]
        path = self.files[index]
        return split_halves(read_rgb(path), path)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        a, b = self.load_halves(index)
        pair = torch.stack([a, b]).float()  # [2, 3, H, W]: one resize for both halves
        if self.augment:
            generator = item_generator(self.seed, self.epoch, index)
            pair = resize_square(pair, self.load_size)
            top, left = (int(torch.randint(0, self.load_size - self.crop_size + 1, (), generator=generator))
                         for _ in range(2))
            pair = pair[..., top:top + self.crop_size, left:left + self.crop_size]
            if self.flip and bool(torch.rand((), generator=generator) < 0.5):
                pair = pair.flip(-1)
        else:
            pair = resize_square(pair, self.crop_size)
        a, b = to_unit_range(pair).contiguous().unbind(0)
        return (a, b) if self.direction == "AtoB" else (b, a)


def list_pair_files(folder: PathLike, split: str) -> List[Path]:
    """The A|B image files of ``<folder>/<split>/``, in natural order; an error if there are none."""
    split_folder = require_folder(Path(folder) / split, f"paired split {split!r}")
    files = list_images(split_folder)
    if not files:
        raise MalformedDatasetError(f"malformed dataset: {split_folder} holds no .jpg/.png images")
    return files
