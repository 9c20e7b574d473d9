"""CIFAR-10 reading (official pickles and a JPEG class tree), the tensor cache, and subsets."""

import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lossdecay_lib.data import cifar, paths
from lossdecay_lib.data.cifar import CIFAR10_CLASSES, balanced_indices, load_cifar10
from lossdecay_lib.data.errors import MalformedDatasetError


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def write_official_batches(root: Path, per_batch: int = 20, seed: int = 0) -> dict:
    """torchvision's ``cifar-10-batches-py``: five train pickles and a test pickle. Returns the arrays."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    written = {}
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for name in names:
        data = rng.integers(0, 256, size=(per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=per_batch)]
        batch = {"batch_label": name, "data": data, "labels": labels,
                 "filenames": [f"{name}_{i}.png" for i in range(per_batch)]}
        if name == "test_batch":  # also accept the bytes keys of Python 2 pickles read as bytes
            batch = {key.encode(): value for key, value in batch.items()}
        with open(folder / name, "wb") as handle:
            pickle.dump(batch, handle)
        written[name] = (data, labels)
    with open(folder / "batches.meta", "wb") as handle:
        pickle.dump({"label_names": list(CIFAR10_CLASSES), "num_vis": 3072}, handle)
    return written


def class_colour(label: int) -> int:
    return 20 + 22 * label


def write_jpeg_tree(root: Path, per_class: int = 3, splits=("train", "test")) -> Path:
    """``cifar10-jpeg/<split>/<class>/NNNN.jpg``: flat images whose grey level encodes the class."""
    folder = root / "cifar10-jpeg"
    for split in splits:
        for label, name in enumerate(CIFAR10_CLASSES):
            class_folder = folder / split / name
            class_folder.mkdir(parents=True)
            for index in range(per_class):
                pixels = np.full((32, 32, 3), class_colour(label), dtype=np.uint8)
                Image.fromarray(pixels).save(class_folder / f"{index:04d}.jpg", quality=75)
    return folder


def test_official_pickles_are_read_in_channel_plane_order(tmp_path):
    written = write_official_batches(tmp_path / "data")
    train = load_cifar10("train", tmp_path / "data")
    assert train.source == "official" and len(train) == 100
    assert train.images.dtype == torch.uint8 and train.images.shape == (100, 3, 32, 32)
    data, labels = written["data_batch_2"]
    image = train.images[20]  # first image of the second batch
    assert torch.equal(image[0], torch.from_numpy(data[0, :1024].reshape(32, 32)))  # red plane
    assert torch.equal(image[2], torch.from_numpy(data[0, 2048:].reshape(32, 32)))  # blue plane
    assert train.labels[20:40].tolist() == labels
    test = load_cifar10("test", tmp_path / "data")
    assert len(test) == 20 and test.labels.tolist() == written["test_batch"][1]


def test_missing_official_batch_is_named(tmp_path):
    write_official_batches(tmp_path / "data")
    (tmp_path / "data" / "cifar-10-batches-py" / "data_batch_4").unlink()
    with pytest.raises(MalformedDatasetError, match="data_batch_4"):
        load_cifar10("train", tmp_path / "data")


def test_jpeg_tree_labels_follow_cifar_class_names(tmp_path):
    write_jpeg_tree(tmp_path / "data", per_class=3)
    train = load_cifar10("train", tmp_path / "data")
    assert train.source == "jpeg" and len(train) == 30
    assert train.class_counts().tolist() == [3] * 10
    grey = train.images.float().mean(dim=(1, 2, 3))
    expected = torch.tensor([float(class_colour(int(label))) for label in train.labels])
    assert torch.allclose(grey, expected, atol=2.0)  # JPEG keeps flat colours within a grey level or two


def test_missing_class_folder_is_named(tmp_path):
    folder = write_jpeg_tree(tmp_path / "data", per_class=1)
    for file in (folder / "test" / "cat").iterdir():
        file.unlink()
    (folder / "test" / "cat").rmdir()
    with pytest.raises(MalformedDatasetError, match=r"test/cat"):
        load_cifar10("test", tmp_path / "data")


def test_missing_split_folder_and_stray_class_are_named(tmp_path):
    folder = write_jpeg_tree(tmp_path / "data", per_class=1, splits=("train",))
    with pytest.raises(MalformedDatasetError, match=r"cifar10-jpeg/test"):
        load_cifar10("test", tmp_path / "data")
    (folder / "train" / "Cat").mkdir()
    with pytest.raises(MalformedDatasetError, match="'Cat'"):
        load_cifar10("train", tmp_path / "data")


def test_wrong_image_size_is_named(tmp_path):
    folder = write_jpeg_tree(tmp_path / "data", per_class=1)
    odd = folder / "train" / "dog" / "0000.jpg"
    Image.fromarray(np.zeros((30, 32, 3), dtype=np.uint8)).save(odd)
    with pytest.raises(MalformedDatasetError, match=r"dog/0000.jpg is 32x30"):
        load_cifar10("train", tmp_path / "data")


def test_decoded_split_is_cached_and_reused(tmp_path, monkeypatch):
    write_jpeg_tree(tmp_path / "data", per_class=2)
    first = load_cifar10("train", tmp_path / "data")
    cached = list((tmp_path / "cache" / "tensors").iterdir())
    assert len(cached) == 1 and cached[0].name.startswith("cifar10-jpeg-train-")

    def must_not_decode(*args, **kwargs):
        raise AssertionError("the second load must come from the cache")

    monkeypatch.setattr(cifar, "read_class_tree", must_not_decode)
    started = time.perf_counter()
    second = load_cifar10("train", tmp_path / "data")
    assert time.perf_counter() - started < 1.0
    assert torch.equal(first.images, second.images) and torch.equal(first.labels, second.labels)


def test_cache_is_rebuilt_when_the_tree_changes(tmp_path):
    folder = write_jpeg_tree(tmp_path / "data", per_class=2)
    assert len(load_cifar10("train", tmp_path / "data")) == 20
    Image.fromarray(np.zeros((32, 32, 3), dtype=np.uint8)).save(folder / "train" / "ship" / "0099.jpg")
    assert load_cifar10("train", tmp_path / "data").class_counts()[8] == 3


def test_corrupt_cache_file_is_rebuilt(tmp_path):
    write_jpeg_tree(tmp_path / "data", per_class=1)
    load_cifar10("test", tmp_path / "data")
    (cache_file,) = (tmp_path / "cache" / "tensors").iterdir()
    cache_file.write_bytes(b"truncated")
    assert len(load_cifar10("test", tmp_path / "data")) == 10


def test_balanced_subset_is_balanced_seeded_and_sorted(tmp_path):
    labels = torch.arange(10).repeat_interleave(7)[torch.randperm(70, generator=torch.Generator().manual_seed(1))]
    chosen = balanced_indices(labels, per_class=3, seed=5)
    assert torch.bincount(labels[chosen], minlength=10).tolist() == [3] * 10
    assert torch.equal(chosen, torch.sort(chosen).values)
    assert torch.equal(chosen, balanced_indices(labels, per_class=3, seed=5))
    assert not torch.equal(chosen, balanced_indices(labels, per_class=3, seed=6))
    with pytest.raises(ValueError, match="only 7 examples"):
        balanced_indices(labels, per_class=8)


def test_load_with_per_class_gives_a_balanced_subset(tmp_path):
    write_official_batches(tmp_path / "data", per_batch=100)
    subset = load_cifar10("train", tmp_path / "data", per_class=5, seed=3)
    assert len(subset) == 50 and subset.class_counts().tolist() == [5] * 10


def test_invalid_split_lists_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid splits: train, test"):
        load_cifar10("validation", tmp_path)
