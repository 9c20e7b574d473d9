"""CIFAR-10 as uint8 tensors: read once (official pickles or a JPEG class tree), cached, subsettable.

The paper trains its plain deep networks on CIFAR-10 with the standard random crop and flip (Wei
2019, Sec. 4). Here the whole split is decoded once into a ``[N, 3, 32, 32]`` uint8 tensor and kept
in a cache file, so later loads take a fraction of a second and the training loop never touches
files or PIL (batches and augmentation: :mod:`lossdecay_lib.data.batches`).

Two on-disk formats are read:

* ``official``: torchvision's ``cifar-10-batches-py`` (``data_batch_1..5``, ``test_batch``): pickled
  dicts whose ``data`` is a ``[10000, 3072]`` uint8 array (the red, green and blue 32x32 planes in
  turn) and ``labels`` a list of class indices. Pickles can run code when loaded: only read files
  from a source you trust (torchvision's download, or your own copy).
* ``jpeg``: a class-folder tree ``<root>/{train,test}/<class>/*.jpg`` with the ten CIFAR-10 class names
  as folder names (as in the project's ``cifar10-jpeg.tar.gz``). JPEG compression changes pixels by
  a few grey levels and loses the original order, so accuracies on it are close to, not identical
  with, published ones; :attr:`CifarSplit.source` records which format was read.
"""

from __future__ import annotations

import hashlib
import os
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

from ..atomic import write_atomically
from ..checks import check_name
from .errors import MalformedDatasetError
from .images import list_images, read_rgb, require_file, require_folder
from .paths import PathLike, find_dataset, resolve_cache_dir

CIFAR10_CLASSES: Tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)
# Per-channel mean and standard deviation of the official training images (pixel values in [0, 1]).
CIFAR10_MEAN: Tuple[float, float, float] = (0.4914, 0.4822, 0.4465)
CIFAR10_STD: Tuple[float, float, float] = (0.2470, 0.2435, 0.2616)

SPLITS = ("train", "test")
SOURCE_OFFICIAL = "official"
SOURCE_JPEG = "jpeg"
_OFFICIAL_FILES = {
    "train": tuple(f"data_batch_{i}" for i in range(1, 6)),
    "test": ("test_batch",),
}
_CACHE_VERSION = 1


@dataclass
class CifarSplit:
    """One split of CIFAR-10 in memory.

    ``images`` is uint8 ``[N, 3, 32, 32]`` and ``labels`` int64 ``[N]``, both on the CPU; ``source``
    is ``"official"`` (torchvision's pickles) or ``"jpeg"`` (the re-encoded class-folder copy) and
    ``path`` the folder read.
    """

    images: torch.Tensor
    labels: torch.Tensor
    split: str
    source: str
    path: Optional[Path] = None
    classes: Tuple[str, ...] = CIFAR10_CLASSES

    def __len__(self) -> int:
        return int(self.labels.numel())

    def class_counts(self) -> torch.Tensor:
        """Number of images of each class, ``[num_classes]``."""
        return torch.bincount(self.labels, minlength=len(self.classes))

    def select(self, indices: torch.Tensor) -> "CifarSplit":
        """A new split holding the images at ``indices`` (in that order)."""
        return CifarSplit(self.images[indices], self.labels[indices], self.split, self.source,
                          self.path, self.classes)

    def balanced_subset(self, per_class: int, seed: int = 0) -> "CifarSplit":
        """``per_class`` images of every class, drawn at random with ``seed`` (see :func:`balanced_indices`)."""
        return self.select(balanced_indices(self.labels, per_class, seed, len(self.classes)))


def balanced_indices(labels: torch.Tensor, per_class: int, seed: int = 0,
                     num_classes: Optional[int] = None) -> torch.Tensor:
    """Indices of ``per_class`` examples of each class, random but fixed by ``seed``, sorted.

    The small profiles train on subsets; drawing the same number per class keeps the subset's class
    balance equal to CIFAR-10's, so a schedule cannot look better by luck of the class mix.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be a positive integer, got {per_class}")
    num_classes = int(labels.max()) + 1 if num_classes is None else num_classes
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in range(num_classes):
        members = torch.nonzero(labels == label).flatten()
        if members.numel() < per_class:
            raise ValueError(
                f"per_class={per_class} but class {label} has only {members.numel()} examples"
            )
        order = torch.randperm(members.numel(), generator=generator)
        chosen.append(members[order[:per_class]])
    return torch.sort(torch.cat(chosen)).values


def load_cifar10(
    split: str = "train",
    data_root: Optional[PathLike] = None,
    *,
    cache_dir: Optional[PathLike] = None,
    download: bool = False,
    per_class: Optional[int] = None,
    seed: int = 0,
) -> CifarSplit:
    """Load a CIFAR-10 split (``"train"``: 50,000 images, ``"test"``: 10,000) as uint8 tensors.

    The dataset is found by the data-root rule (:func:`~lossdecay_lib.data.paths.find_dataset`),
    decoded once and cached in ``<cache>/tensors/``; ``per_class`` keeps a class-balanced random
    subset fixed by ``seed``.
    """
    check_name(split, SPLITS, "split")
    folder = find_dataset("cifar10", data_root, cache_dir=cache_dir, download=download)
    data = read_cifar10_folder(folder, split, cache_dir=cache_dir)
    return data if per_class is None else data.balanced_subset(per_class, seed)


def read_cifar10_folder(folder: PathLike, split: str, *, cache_dir: Optional[PathLike] = None,
                        use_cache: bool = True) -> CifarSplit:
    """Read ``split`` from a CIFAR-10 folder in either format, through the decoded-tensor cache."""
    check_name(split, SPLITS, "split")
    folder = Path(folder)
    source = detect_format(folder)
    cache_file = _cache_file(folder, split, source, cache_dir) if use_cache else None
    if cache_file is not None and cache_file.is_file():
        cached = _read_cache(cache_file)
        if cached is not None:
            return CifarSplit(cached[0], cached[1], split, source, folder)
    if source == SOURCE_OFFICIAL:
        images, labels = read_official_batches(folder, split)
    else:
        images, labels = read_class_tree(folder, split)
    if cache_file is not None:
        _write_cache(cache_file, images, labels)
    return CifarSplit(images, labels, split, source, folder)


def detect_format(folder: Path) -> str:
    """``"official"`` if ``folder`` holds torchvision's pickled batches, else ``"jpeg"`` (class tree)."""
    if (folder / "batches.meta").is_file() or (folder / "data_batch_1").is_file() \
            or (folder / "test_batch").is_file():
        return SOURCE_OFFICIAL
    if (folder / "train").is_dir() or (folder / "test").is_dir():
        return SOURCE_JPEG
    raise MalformedDatasetError(
        f"malformed CIFAR-10 folder {folder}: neither the official pickles (data_batch_1..5, "
        "test_batch) nor a class tree (train/<class>/, test/<class>/) is there"
    )


def read_official_batches(folder: Path, split: str) -> Tuple[torch.Tensor, torch.Tensor]:
    """Read torchvision's ``cifar-10-batches-py`` pickles of ``split`` into uint8 images and labels."""
    images, labels = [], []
    for name in _OFFICIAL_FILES[split]:
        path = require_file(folder / name, f"CIFAR-10 {split} batch")
        with open(path, "rb") as handle:
            batch = pickle.load(handle, encoding="latin1")
        batch = {(k.decode() if isinstance(k, bytes) else k): v for k, v in batch.items()}
        if "data" not in batch or "labels" not in batch:
            raise MalformedDatasetError(f"CIFAR-10 batch {path} lacks 'data' or 'labels'")
        data = np.asarray(batch["data"], dtype=np.uint8)
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or data.shape[0] != len(batch["labels"]):
            raise MalformedDatasetError(
                f"CIFAR-10 batch {path}: data has shape {data.shape} for {len(batch['labels'])} "
                "labels; expected [N, 3072]"
            )
        images.append(data.reshape(-1, 3, 32, 32))
        labels.append(np.asarray(batch["labels"], dtype=np.int64))
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def read_class_tree(folder: Path, split: str,
                    classes: Sequence[str] = CIFAR10_CLASSES) -> Tuple[torch.Tensor, torch.Tensor]:
    """Decode ``<folder>/<split>/<class>/*`` (class index = position in ``classes``) into uint8 tensors."""
    split_folder = require_folder(folder / split, f"CIFAR-10 {split} split")
    unexpected = sorted(p.name for p in split_folder.iterdir()
                        if p.is_dir() and not p.name.startswith(".") and p.name not in classes)
    if unexpected:
        raise MalformedDatasetError(
            f"{split_folder} holds folders that are not CIFAR-10 classes: {unexpected}; "
            f"expected exactly: {list(classes)}"
        )
    files, labels = [], []
    for label, name in enumerate(classes):
        class_folder = require_folder(split_folder / name, f"class {name!r}")
        members = list_images(class_folder)
        if not members:
            raise MalformedDatasetError(f"malformed dataset: class folder {class_folder} has no images")
        files.extend(members)
        labels.extend([label] * len(members))
    images = torch.empty((len(files), 3, 32, 32), dtype=torch.uint8)
    for index, path in enumerate(files):
        image = read_rgb(path)
        if image.shape != (3, 32, 32):
            raise MalformedDatasetError(
                f"CIFAR-10 image {path} is {image.shape[2]}x{image.shape[1]}; expected 32x32"
            )
        images[index] = image
    return images, torch.tensor(labels, dtype=torch.int64)


def _cache_file(folder: Path, split: str, source: str, cache_dir: Optional[PathLike]) -> Path:
    """``<cache>/tensors/cifar10-<source>-<split>-<key>.npz``.

    The key hashes the folder's resolved path and a cheap fingerprint (sizes and modification times
    of the batch files, or modification times and entry counts of the split's class folders, which
    change when images are added, removed or renamed), so an edited copy is decoded again instead of
    served stale.
    """
    if source == SOURCE_OFFICIAL:
        watched = [folder / name for name in _OFFICIAL_FILES[split]]
    else:
        split_folder = folder / split
        children = split_folder.iterdir() if split_folder.is_dir() else []
        watched = [split_folder] + sorted(p for p in children if p.is_dir())
    fingerprint = [(p.name, p.stat().st_size, p.stat().st_mtime_ns,
                    len(os.listdir(p)) if p.is_dir() else 0) for p in watched if p.exists()]
    text = f"{_CACHE_VERSION}|{folder.resolve()}|{fingerprint}"
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    return resolve_cache_dir(cache_dir) / "tensors" / f"cifar10-{source}-{split}-{key}.npz"


def _write_cache(path: Path, images: torch.Tensor, labels: torch.Tensor) -> None:
    def write(temporary: Path) -> None:
        with open(temporary, "wb") as handle:
            np.savez(handle, images=images.numpy(), labels=labels.numpy())

    write_atomically(path, write)


def _read_cache(path: Path) -> Optional[Tuple[torch.Tensor, torch.Tensor]]:
    """The cached tensors, or ``None`` if the file is unreadable or inconsistent (then it is rebuilt)."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            images, labels = stored["images"], stored["labels"]
    except (OSError, ValueError, KeyError):
        return None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 32, 32) \
            or labels.shape != (images.shape[0],):
        return None
    return torch.from_numpy(images), torch.from_numpy(labels.astype(np.int64, copy=False))
