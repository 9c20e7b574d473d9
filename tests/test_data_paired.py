"""pix2pix's paired A|B images: halves, direction, jitter, value range and errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from lossdecay_lib.data import paths
from lossdecay_lib.data.errors import MalformedDatasetError, MismatchedPairError
from lossdecay_lib.data.paired import PairedImages

RED, BLUE = (230, 20, 20), (20, 20, 230)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def write_ab_folder(root: Path, name="facades", splits={"train": 3, "test": 2}, side=32,
                    left=RED, right=BLUE) -> Path:
    """``<name>/<split>/N.jpg``, each ``2*side`` x ``side``: A (left) one colour, B (right) another."""
    folder = root / name
    for split, count in splits.items():
        (folder / split).mkdir(parents=True)
        for number in range(1, count + 1):
            pixels = np.zeros((side, 2 * side, 3), np.uint8)
            pixels[:, :side] = left
            pixels[:, side:] = right
            Image.fromarray(pixels).save(folder / split / f"{number}.jpg", quality=95)
    return folder


def mean_colour(image: torch.Tensor) -> list:
    return ((image.mean(dim=(1, 2)) + 1) * 127.5).tolist()


def test_direction_picks_input_and_target_halves(tmp_path):
    write_ab_folder(tmp_path / "data")
    a_to_b = PairedImages("facades", "test", tmp_path / "data", direction="AtoB")
    source, target = a_to_b[0]
    assert source.shape == (3, 256, 256) and target.shape == (3, 256, 256)
    assert np.allclose(mean_colour(source), RED, atol=4) and np.allclose(mean_colour(target), BLUE, atol=4)
    b_to_a = PairedImages("facades", "test", tmp_path / "data", direction="BtoA")
    assert torch.equal(b_to_a[0][0], target) and torch.equal(b_to_a[0][1], source)
    assert PairedImages("facades", "test", tmp_path / "data").direction == "BtoA"  # labels -> photo


def test_values_are_in_minus_one_to_one(tmp_path):
    write_ab_folder(tmp_path / "data", left=(0, 0, 0), right=(255, 255, 255))
    source, target = PairedImages("facades", "train", tmp_path / "data", direction="AtoB")[0]
    assert source.min() >= -1 and target.max() <= 1
    assert float(source.min()) == pytest.approx(-1.0, abs=0.02)
    assert float(target.max()) == pytest.approx(1.0, abs=0.02)


def test_jitter_is_shared_by_both_halves_and_seeded(tmp_path):
    folder = tmp_path / "data" / "facades" / "train"
    folder.mkdir(parents=True)
    half = np.random.default_rng(0).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    Image.fromarray(np.concatenate([half, half], axis=1)).save(folder / "1.png")  # A == B, lossless
    data = PairedImages("facades", "train", tmp_path / "data", load_size=40, crop_size=32, seed=2)
    crops = []
    for epoch in range(6):
        data.set_epoch(epoch)
        source, target = data[0]
        assert source.shape == (3, 32, 32) and torch.equal(source, target)  # same crop, same flip
        crops.append(source)
    assert any(not torch.equal(crops[0], other) for other in crops[1:])  # jitter varies by epoch
    again = PairedImages("facades", "train", tmp_path / "data", load_size=40, crop_size=32, seed=2)
    again.set_epoch(5)
    assert torch.equal(again[0][0], crops[5])


def test_eval_has_no_jitter(tmp_path):
    write_ab_folder(tmp_path / "data")
    test = PairedImages("facades", "test", tmp_path / "data")
    test.set_epoch(3)
    first = test[0][0]
    test.set_epoch(4)
    assert torch.equal(first, test[0][0])


def test_odd_width_is_named(tmp_path):
    folder = write_ab_folder(tmp_path / "data")
    Image.fromarray(np.zeros((32, 63, 3), np.uint8)).save(folder / "train" / "2.jpg")
    with pytest.raises(MismatchedPairError, match=r"train/2.jpg is 63 pixels wide"):
        PairedImages("facades", "train", tmp_path / "data", preload=True)


def test_missing_or_empty_split_folder_is_named(tmp_path):
    folder = write_ab_folder(tmp_path / "data", splits={"train": 1})
    with pytest.raises(MalformedDatasetError, match=r"facades/val"):
        PairedImages("facades", "val", tmp_path / "data")
    (folder / "test").mkdir()
    with pytest.raises(MalformedDatasetError, match="holds no"):
        PairedImages("facades", "test", tmp_path / "data")


def test_invalid_names_list_the_valid_ones(tmp_path):
    write_ab_folder(tmp_path / "data")
    with pytest.raises(ValueError, match="valid directions: AtoB, BtoA"):
        PairedImages("facades", "train", tmp_path / "data", direction="A2B")
    with pytest.raises(ValueError, match="valid splits: train, val, test"):
        PairedImages("facades", "training", tmp_path / "data")
    with pytest.raises(ValueError, match="valid paired datasets: facades, maps"):
        PairedImages("cityscapes", "train", tmp_path / "data")


def test_maps_folder_is_found_by_name(tmp_path):
    write_ab_folder(tmp_path / "data", name="maps", splits={"train": 2, "val": 1})
    maps = PairedImages("maps", "val", tmp_path / "data")
    assert len(maps) == 1 and maps.direction == "AtoB"
