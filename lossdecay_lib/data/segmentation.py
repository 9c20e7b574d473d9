"""Semantic segmentation data: PASCAL VOC 2012 and CamVid behind one interface.

The paper's segmentation experiment trains PSPNet on PASCAL VOC 2012 with 224x224 crops and random
mirroring (Wei 2019, Sec. 4). VOC is read in torchvision's layout; where it is not available (as on
the project's offline machines) CamVid in the SegNet tutorial's layout stands in. Both give an image
and a mask of class indices with one ignored value:

* ``voc2012``: ``VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png,
  ImageSets/Segmentation/<split>.txt}``; 21 classes (background + 20 objects), 255 = ignore (object
  borders). Splits ``train``, ``val``, ``trainval``.
* ``camvid``: ``CamVid/{<split>/X, <split>annot/X.png, <split>.txt}``, each ``.txt`` line naming an image
  and its mask (``train/X.jpg trainannot/X.png``; the SegNet tutorial's absolute ``/SegNet/CamVid/...``
  paths are read by their last two parts). 11 classes, 11 = Unlabelled (ignore). Splits ``train``,
  ``val``, ``test``.

:class:`SegmentationInfo` carries the class names, ignore index and colour palette (for figures);
:class:`SegmentationDataset` is a ``torch.utils.data.Dataset`` of ``(image, mask)`` with the joint
transforms of :class:`JointTransform`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..checks import check_name
from .errors import MalformedDatasetError, MismatchedPairError
from .images import image_size, read_label_mask, read_rgb, require_file, require_folder
from .paths import PathLike, find_dataset
from .seeding import item_generator

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
PRELOAD_BUDGET_BYTES = 512 * 2**20
Colour = Tuple[int, int, int]


@dataclass(frozen=True)
class SegmentationInfo:
    """What a figure or a metric needs to know about a segmentation dataset."""

    name: str
    class_names: Tuple[str, ...]
    ignore_index: int
    palette: Tuple[Colour, ...]  # one RGB colour per class
    ignore_colour: Colour
    splits: Tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def colourise(self, mask: torch.Tensor) -> torch.Tensor:
        """Map a mask of class indices ``[..., H, W]`` to RGB uint8 ``[..., H, W, 3]`` for plotting.

        Raises ``ValueError`` on a value that is neither a class nor the ignore index.
        """
        table = torch.zeros((256, 3), dtype=torch.uint8)
        table[: self.num_classes] = torch.tensor(self.palette, dtype=torch.uint8)
        table[self.ignore_index] = torch.tensor(self.ignore_colour, dtype=torch.uint8)
        mask = mask.long().cpu()
        check_mask_values(mask, self, "mask")
        return table[mask]


def _voc_palette(count: int) -> Tuple[Colour, ...]:
    """PASCAL VOC's colour map: the bits of the class index spread over R, G, B from the high bit down."""
    colours = []
    for index in range(count):
        red = green = blue = 0
        code = index
        for shift in range(7, -1, -1):
            red |= (code & 1) << shift
            green |= ((code >> 1) & 1) << shift
            blue |= ((code >> 2) & 1) << shift
            code >>= 3
        colours.append((red, green, blue))
    return tuple(colours)


VOC2012 = SegmentationInfo(
    name="voc2012",
    class_names=(
        "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
        "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa",
        "train", "tvmonitor",
    ),
    ignore_index=255,
    palette=_voc_palette(21),
    ignore_colour=_voc_palette(256)[255],
    splits=("train", "val", "trainval"),
)

CAMVID = SegmentationInfo(
    name="camvid",
    class_names=(
        "Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence", "Car",
        "Pedestrian", "Bicyclist",
    ),
    ignore_index=11,
    # CamVid's own label colours for these classes (Pole = Column_Pole, Pavement = Sidewalk).
    palette=(
        (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (0, 0, 192), (128, 128, 0),
        (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
    ),
    ignore_colour=(0, 0, 0),
    splits=("train", "val", "test"),
)

SEGMENTATION_DATASETS = {"voc2012": VOC2012, "camvid": CAMVID}


def segmentation_info(name: str) -> SegmentationInfo:
    """The :class:`SegmentationInfo` of ``"voc2012"`` or ``"camvid"``."""
    return SEGMENTATION_DATASETS[check_name(name, SEGMENTATION_DATASETS, "segmentation dataset")]


def check_mask_values(mask: torch.Tensor, info: SegmentationInfo, where: object) -> None:
    """Raise :class:`MalformedDatasetError` if ``mask`` holds values other than classes and ignore."""
    valid = torch.zeros(256, dtype=torch.bool)
    valid[: info.num_classes] = True
    valid[info.ignore_index] = True
    values = mask.long()
    if values.numel() and (values.min() < 0 or values.max() > 255 or not bool(valid[values].all())):
        bad = sorted(set(torch.unique(values).tolist()) - set(torch.nonzero(valid).flatten().tolist()))
        raise MalformedDatasetError(
            f"{where} holds label values {bad[:10]} that are neither classes 0-{info.num_classes - 1} "
            f"nor the ignore index {info.ignore_index} of {info.name}"
        )


# -- Reading the two layouts --

def list_pairs(name: str, folder: PathLike, split: str) -> List[Tuple[Path, Path]]:
    """``(image, mask)`` paths of ``split`` in a dataset folder, every file checked to exist."""
    info = segmentation_info(name)
    check_name(split, info.splits, f"{name} split")
    folder = Path(folder)
    pairs = _voc_pairs(folder, split) if name == "voc2012" else _camvid_pairs(folder, split)
    for image, mask in pairs:
        require_file(image, f"{name} {split} image")
        require_file(mask, f"{name} {split} mask")
    if not pairs:
        raise MalformedDatasetError(f"{name} split {split!r} in {folder} lists no images")
    return pairs


def _voc_pairs(folder: Path, split: str) -> List[Tuple[Path, Path]]:
    images = require_folder(folder / "JPEGImages", "VOC images")
    masks = require_folder(folder / "SegmentationClass", "VOC class masks")
    listing = require_file(folder / "ImageSets" / "Segmentation" / f"{split}.txt", "VOC split list")
    ids = [line.strip() for line in listing.read_text().splitlines() if line.strip()]
    return [(images / f"{i}.jpg", masks / f"{i}.png") for i in ids]


def _camvid_pairs(folder: Path, split: str) -> List[Tuple[Path, Path]]:
    listing = require_file(folder / f"{split}.txt", "CamVid split list")
    pairs = []
    for number, line in enumerate(listing.read_text().splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != 2:
            raise MalformedDatasetError(
                f"{listing} line {number}: expected 'image mask', got {line.strip()!r}"
            )
        image, mask = (folder.joinpath(*Path(field).parts[-2:]) for field in fields)
        pairs.append((image, mask))
    return pairs


def load_pair(image_path: Path, mask_path: Path, info: SegmentationInfo) -> Tuple[torch.Tensor, torch.Tensor]:
    """Decode an image (uint8 ``[3, H, W]``) and its mask (uint8 ``[H, W]``), checking they match."""
    image, mask = read_rgb(image_path), read_label_mask(mask_path)
    if image.shape[1:] != mask.shape:
        raise MismatchedPairError(
            f"image {image_path} is {image.shape[2]}x{image.shape[1]} but its mask {mask_path} is "
            f"{mask.shape[1]}x{mask.shape[0]}"
        )
    check_mask_values(mask, info, f"mask {mask_path}")
    return image, mask


# -- Joint transforms --

class JointTransform:
    """The same geometric transform applied to an image and its mask, then ImageNet normalisation.

    Training (``augment=True``): scale by a factor drawn uniformly from ``scale_range`` (image
    bilinear, mask nearest neighbour, so no label is ever invented), pad up to ``crop_size`` (image
    with the mean colour, i.e. 0 after normalisation; mask with ``ignore_index``, so padding is left
    out of the loss), take a random ``crop_size`` crop, and mirror with probability 1/2. Evaluation
    (``augment=False``): the whole image, only normalised. The defaults follow the paper's PSPNet
    setting (224 crops, random mirror) and PSPNet's scale range 0.5-2.
    """

    def __init__(
        self,
        *,
        augment: bool,
        ignore_index: int,
        crop_size: int = 224,
        scale_range: Tuple[float, float] = (0.5, 2.0),
        flip: bool = True,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        if crop_size < 1 or not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"need crop_size >= 1 and 0 < min scale <= max scale; got "
                             f"crop_size={crop_size}, scale_range={scale_range}")
        self.augment = augment
        self.ignore_index = ignore_index
        self.crop_size = crop_size
        self.scale_range = scale_range
        self.flip = flip
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)

    def __call__(self, image: torch.Tensor, mask: torch.Tensor,
                 generator: Optional[torch.Generator] = None) -> Tuple[torch.Tensor, torch.Tensor]:
        """``image`` uint8 ``[3, H, W]``, ``mask`` ``[H, W]`` -> float ``[3, h, w]``, int64 ``[h, w]``."""
        normalised = (image.float() / 255.0 - self.mean) / self.std
        mask = mask.long()
        if not self.augment:
            return normalised, mask
        low, high = self.scale_range
        scale = low + (high - low) * float(torch.rand((), generator=generator))
        height, width = mask.shape
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        normalised, mask = resize_pair(normalised, mask, size)
        normalised, mask = pad_pair(normalised, mask, self.crop_size, self.ignore_index)
        normalised, mask = random_crop_pair(normalised, mask, self.crop_size, generator)
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            normalised, mask = normalised.flip(-1), mask.flip(-1)
        return normalised.contiguous(), mask.contiguous()


def resize_pair(image: torch.Tensor, mask: torch.Tensor, size: Tuple[int, int]) -> Tuple[torch.Tensor, torch.Tensor]:
    """Resize a float image bilinearly (antialiased) and an integer mask by nearest neighbour."""
    if tuple(mask.shape) == tuple(size):
        return image, mask
    image = F.interpolate(image[None], size=size, mode="bilinear", align_corners=False,
                          antialias=True)[0]
    mask = F.interpolate(mask[None, None].float(), size=size, mode="nearest-exact")[0, 0].long()
    return image, mask


def pad_pair(image: torch.Tensor, mask: torch.Tensor, size: int, ignore_index: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Pad bottom/right up to ``size``: the image with 0, the mask with ``ignore_index``."""
    pad_h, pad_w = max(0, size - mask.shape[0]), max(0, size - mask.shape[1])
    if pad_h or pad_w:
        image = F.pad(image, (0, pad_w, 0, pad_h), value=0.0)
        mask = F.pad(mask, (0, pad_w, 0, pad_h), value=ignore_index)
    return image, mask


def random_crop_pair(image: torch.Tensor, mask: torch.Tensor, size: int,
                     generator: Optional[torch.Generator]) -> Tuple[torch.Tensor, torch.Tensor]:
    """The same random ``size`` x ``size`` window of an image and its mask."""
    height, width = mask.shape
    top = int(torch.randint(0, height - size + 1, (), generator=generator))
    left = int(torch.randint(0, width - size + 1, (), generator=generator))
    return image[:, top:top + size, left:left + size], mask[top:top + size, left:left + size]


# -- The dataset --

class SegmentationDataset(Dataset):
    """``(image, mask)`` pairs of VOC 2012 or CamVid with joint transforms.

    Items are a float image ``[3, h, w]`` (ImageNet-normalised) and an int64 mask ``[h, w]`` of class
    indices with ``info.ignore_index`` where unlabelled. ``augment`` defaults to True for training
    splits (``train``, ``trainval``). ``preload=None`` decodes every pair into memory at construction
    when that fits in 512 MiB (CamVid does; VOC does not), so epochs after the first cost no decoding;
    otherwise pairs are decoded when asked for. Random transforms are seeded by ``(seed, epoch,
    index)``: call :meth:`set_epoch` each epoch for fresh but reproducible augmentation, identical
    with any number of DataLoader workers. Evaluation items keep each image's own size: CamVid's are
    all 480x360 and batch as they are; VOC's vary, so evaluate VOC with ``batch_size=1``.
    """

    def __init__(
        self,
        name: str,
        split: str,
        data_root: Optional[PathLike] = None,
        *,
        cache_dir: Optional[PathLike] = None,
        download: bool = False,
        augment: Optional[bool] = None,
        crop_size: int = 224,
        scale_range: Tuple[float, float] = (0.5, 2.0),
        flip: bool = True,
        preload: Optional[bool] = None,
        seed: int = 0,
    ) -> None:
        self.info = segmentation_info(name)
        check_name(split, self.info.splits, f"{name} split")
        self.split = split
        self.folder = find_dataset(name, data_root, cache_dir=cache_dir, download=download)
        self.pairs = list_pairs(name, self.folder, split)
        self.transform = JointTransform(
            augment=split in ("train", "trainval") if augment is None else augment,
            ignore_index=self.info.ignore_index, crop_size=crop_size, scale_range=scale_range,
            flip=flip,
        )
        self.seed = seed
        self.epoch = 0
        if preload is None:
            width, height = image_size(self.pairs[0][0])
            preload = len(self.pairs) * width * height * 4 <= PRELOAD_BUDGET_BYTES
        self._decoded = [self.load_pair(i) for i in range(len(self.pairs))] if preload else None

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch``."""
        self.epoch = epoch

    def load_pair(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """The untransformed, validated uint8 image ``[3, H, W]`` and mask ``[H, W]`` of item ``index``."""
        if getattr(self, "_decoded", None) is not None:
            return self._decoded[index]
        return load_pair(*self.pairs[index], self.info)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        image, mask = self.load_pair(index)
        generator = item_generator(self.seed, self.epoch, index) if self.transform.augment else None
        return self.transform(image, mask, generator)
