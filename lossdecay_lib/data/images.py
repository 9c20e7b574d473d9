"""Reading image and label files into uint8 tensors, with errors that name the file.

These are used when datasets are decoded (once, into memory or a cache), never per step of a CIFAR
training loop. Images come back channel-first (``[3, H, W]``), masks as ``[H, W]``, both uint8.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import List, Tuple

import numpy as np
import torch
from PIL import Image

from .errors import MalformedDatasetError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def read_rgb(path: Path) -> torch.Tensor:
    """Decode an image file as RGB, returned as a uint8 tensor ``[3, H, W]``."""
    try:
        with Image.open(path) as image:
            array = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as error:
        raise MalformedDatasetError(f"cannot read image {path}: {error}") from error
    return torch.from_numpy(array.copy()).permute(2, 0, 1).contiguous()


def read_label_mask(path: Path) -> torch.Tensor:
    """Decode a label PNG (one class index per pixel) as a uint8 tensor ``[H, W]``.

    Palette PNGs (VOC's ``SegmentationClass``) carry the class index as the palette index, and
    greyscale PNGs (CamVid's ``*annot``) carry it as the grey level; both are read as stored, never
    converted to colour. An RGB mask is rejected: its colours would need a colour-to-class map.
    """
    try:
        with Image.open(path) as image:
            if image.mode not in ("P", "L"):
                raise MalformedDatasetError(
                    f"label mask {path} has mode {image.mode!r}; expected a palette ('P') or "
                    "greyscale ('L') PNG holding one class index per pixel"
                )
            array = np.asarray(image)
    except OSError as error:
        raise MalformedDatasetError(f"cannot read label mask {path}: {error}") from error
    return torch.from_numpy(array.astype(np.uint8, copy=True))


def image_size(path: Path) -> Tuple[int, int]:
    """``(width, height)`` from the file header, without decoding the pixels."""
    try:
        with Image.open(path) as image:
            return image.size
    except OSError as error:
        raise MalformedDatasetError(f"cannot read image {path}: {error}") from error


def list_images(folder: Path) -> List[Path]:
    """Image files directly in ``folder``, in natural order (``2.jpg`` before ``10.jpg``)."""
    files = [p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
    return sorted(files, key=_natural_key)


def require_folder(path: Path, what: str) -> Path:
    """Return ``path`` if it is a folder, else raise :class:`MalformedDatasetError` naming it."""
    if not path.is_dir():
        raise MalformedDatasetError(f"malformed dataset: missing folder {path} ({what})")
    return path


def require_file(path: Path, what: str) -> Path:
    """Return ``path`` if it is a file, else raise :class:`MalformedDatasetError` naming it."""
    if not path.is_file():
        raise MalformedDatasetError(f"malformed dataset: missing file {path} ({what})")
    return path


def _natural_key(path: Path):
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", path.name)]
