"""The real datasets: sizes, classes and label ranges of the copies CI and developers use.

The data root is ``$LOSSDECAY_DATA`` if set, else ``<repo>/../shared/data`` (where CI and the
project's machines keep them). Extraction and the decoded CIFAR-10 tensors go to the normal cache
(``$LOSSDECAY_CACHE`` or the user cache), so only the first run pays for decoding.
"""

import os
import time
from pathlib import Path

import pytest
import torch

from lossdecay_lib.data import PairedImages, SegmentationDataset, find_dataset, load_cifar10
from lossdecay_lib.data.images import image_size, read_label_mask
from lossdecay_lib.data.paths import DATA_ENV

REPO = Path(__file__).resolve().parents[1]
DATA_ROOT = Path(os.environ.get(DATA_ENV) or REPO.parent / "shared" / "data")


def require(name: str, *entries: str) -> Path:
    """Skip (with the reason) unless the data root holds one of ``entries`` for dataset ``name``."""
    if not any((DATA_ROOT / entry).exists() for entry in entries):
        pytest.skip(f"real {name} not available: none of {list(entries)} in {DATA_ROOT} "
                    f"(set {DATA_ENV} to a folder that has it)")
    return DATA_ROOT


def assert_read_in_place_or_from_the_cache(folder: Path, root: Path) -> None:
    """An extracted folder in the data root is read where it is; an archive is extracted elsewhere."""
    if folder.parent != root:
        assert root not in folder.parents, f"{folder} was extracted inside the data root {root}"


def test_cifar10_has_50000_train_and_10000_test_images_balanced():
    root = require("CIFAR-10", "cifar-10-batches-py", "cifar10-jpeg", "cifar10-jpeg.tar.gz")
    train = load_cifar10("train", root)
    test = load_cifar10("test", root)
    assert train.images.shape == (50_000, 3, 32, 32) and train.images.dtype == torch.uint8
    assert test.images.shape == (10_000, 3, 32, 32)
    assert train.class_counts().tolist() == [5_000] * 10
    assert test.class_counts().tolist() == [1_000] * 10
    assert train.source in ("official", "jpeg")
    mean = (train.images.float() / 255).mean(dim=(0, 2, 3))
    assert torch.allclose(mean, torch.tensor([0.4913, 0.4821, 0.4465]), atol=0.002)
    assert_read_in_place_or_from_the_cache(train.path, root)


def test_cifar10_second_load_comes_from_the_cache_quickly():
    root = require("CIFAR-10", "cifar-10-batches-py", "cifar10-jpeg", "cifar10-jpeg.tar.gz")
    load_cifar10("train", root)  # decoded and cached by now (this or the previous test)
    started = time.perf_counter()
    train = load_cifar10("train", root)
    elapsed = time.perf_counter() - started
    assert len(train) == 50_000
    assert elapsed < 3.0, f"a cached load took {elapsed:.2f} s"  # about 0.4 s here; slack for busy CI


def test_camvid_has_367_101_233_pairs_with_labels_0_to_11():
    root = require("CamVid", "CamVid", "camvid.tar.gz")
    folder = find_dataset("camvid", root)
    assert_read_in_place_or_from_the_cache(folder, root)
    sizes = {}
    for split in ("train", "val", "test"):
        data = SegmentationDataset("camvid", split, root, preload=False)
        sizes[split] = len(data)
        for image_path, mask_path in data.pairs:
            mask = read_label_mask(mask_path)
            assert mask.shape == (360, 480), mask_path
            assert int(mask.max()) <= 11, mask_path
            assert image_size(image_path) == (480, 360), image_path
    assert sizes == {"train": 367, "val": 101, "test": 233}
    image, mask = SegmentationDataset("camvid", "train", root, preload=False)[0]
    assert image.shape == (3, 224, 224) and mask.shape == (224, 224)


def test_facades_has_400_train_and_106_test_images_of_512x256():
    root = require("facades", "facades", "facades.tar.gz")
    for split, count in (("train", 400), ("test", 106)):
        data = PairedImages("facades", split, root, preload=False)
        assert len(data) == count
        assert {image_size(path) for path in data.files} == {(512, 256)}
    source, target = PairedImages("facades", "train", root, preload=False)[0]
    assert source.shape == target.shape == (3, 256, 256)
    assert -1.0 <= float(source.min()) and float(source.max()) <= 1.0
