"""VOC 2012 and CamVid trees, the shared interface, joint transforms and their errors."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from lossdecay_lib.data import paths
from lossdecay_lib.data.errors import MalformedDatasetError, MismatchedPairError
from lossdecay_lib.data.segmentation import (
    CAMVID,
    IMAGENET_MEAN,
    IMAGENET_STD,
    VOC2012,
    JointTransform,
    SegmentationDataset,
    segmentation_info,
)

MEAN = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
STD = torch.tensor(IMAGENET_STD).view(3, 1, 1)


@pytest.fixture(autouse=True)
def isolated_environment(tmp_path, monkeypatch):
    monkeypatch.delenv(paths.DATA_ENV, raising=False)
    monkeypatch.setenv(paths.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))


def label_pattern(height: int, width: int, classes: int, ignore: int, seed: int) -> np.ndarray:
    """Blocks of classes with an ignore border, like VOC's object outlines."""
    rng = np.random.default_rng(seed)
    mask = rng.integers(0, classes, size=(height // 8 + 1, width // 8 + 1)).repeat(8, 0).repeat(8, 1)
    mask = mask[:height, :width].astype(np.uint8)
    mask[0, :] = ignore
    return mask


def write_voc_tree(root: Path, ids=("2007_000032", "2007_000039", "2007_000063"), size=(40, 30)) -> Path:
    """torchvision's VOC layout with palette PNG masks (index = class, 255 = border)."""
    folder = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (folder / sub).mkdir(parents=True)
    palette = [value for colour in (VOC2012.palette + ((0, 0, 0),) * 234 + (VOC2012.ignore_colour,))
               for value in colour]
    width, height = size
    for number, image_id in enumerate(ids):
        Image.fromarray(np.full((height, width, 3), 90, np.uint8)).save(folder / "JPEGImages" / f"{image_id}.jpg")
        mask = Image.fromarray(label_pattern(height, width, 21, 255, number), mode="P")
        mask.putpalette(palette)
        mask.save(folder / "SegmentationClass" / f"{image_id}.png")
    listing = folder / "ImageSets" / "Segmentation"
    (listing / "train.txt").write_text("\n".join(ids[:2]) + "\n")
    (listing / "val.txt").write_text(ids[2] + "\n")
    (listing / "trainval.txt").write_text("\n".join(ids) + "\n")
    return folder


def write_camvid_tree(root: Path, size=(48, 36)) -> Path:
    """The SegNet layout: train with relative lists and JPEGs, val with SegNet's absolute PNG paths."""
    folder = root / "CamVid"
    width, height = size
    lines = {"train": [], "val": [], "test": []}
    for split, count, suffix in (("train", 3, ".jpg"), ("val", 2, ".png"), ("test", 1, ".jpg")):
        (folder / split).mkdir(parents=True)
        (folder / f"{split}annot").mkdir()
        for index in range(count):
            name = f"0001TP_{index:06d}"
            rgb = np.random.default_rng(index).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            Image.fromarray(rgb).save(folder / split / f"{name}{suffix}")
            mask = label_pattern(height, width, 11, 11, index)
            Image.fromarray(mask, mode="L").save(folder / f"{split}annot" / f"{name}.png")
            if split == "val":
                lines[split].append(f"/SegNet/CamVid/val/{name}.png /SegNet/CamVid/valannot/{name}.png")
            else:
                lines[split].append(f"{split}/{name}{suffix} {split}annot/{name}.png")
    for split, split_lines in lines.items():
        (folder / f"{split}.txt").write_text("\n".join(split_lines) + "\n")
    return folder


def test_voc_tree_is_read_with_classes_and_ignore(tmp_path):
    write_voc_tree(tmp_path / "data")
    train = SegmentationDataset("voc2012", "train", tmp_path / "data", crop_size=24)
    assert len(train) == 2 and train.info is VOC2012 and train.info.num_classes == 21
    image, mask = train.load_pair(0)
    assert image.shape == (3, 30, 40) and mask.shape == (30, 40)
    expected = torch.from_numpy(label_pattern(30, 40, 21, 255, 0))
    assert torch.equal(mask, expected)  # palette indices read as class indices, 255 kept
    x, y = train[0]
    assert x.shape == (3, 24, 24) and y.shape == (24, 24) and y.dtype == torch.int64
    assert len(SegmentationDataset("voc2012", "trainval", tmp_path / "data")) == 3


def test_camvid_tree_reads_relative_and_segnet_absolute_lists(tmp_path):
    write_camvid_tree(tmp_path / "data")
    sizes = {split: len(SegmentationDataset("camvid", split, tmp_path / "data")) for split in CAMVID.splits}
    assert sizes == {"train": 3, "val": 2, "test": 1}
    val = SegmentationDataset("camvid", "val", tmp_path / "data")
    assert val.pairs[0][0] == tmp_path / "data" / "CamVid" / "val" / "0001TP_000000.png"
    image, mask = val[1]  # evaluation: whole image, only normalised
    raw = torch.from_numpy(np.random.default_rng(1).integers(0, 256, size=(36, 48, 3), dtype=np.uint8))
    assert torch.allclose(image, (raw.permute(2, 0, 1).float() / 255 - MEAN) / STD, atol=1e-5)
    assert torch.equal(mask, torch.from_numpy(label_pattern(36, 48, 11, 11, 1)).long())


def test_training_items_collate_into_batches(tmp_path):
    write_camvid_tree(tmp_path / "data")
    train = SegmentationDataset("camvid", "train", tmp_path / "data", crop_size=32)
    images, masks = next(iter(DataLoader(train, batch_size=3)))
    assert images.shape == (3, 3, 32, 32) and masks.shape == (3, 32, 32)
    assert set(masks.unique().tolist()) <= set(range(12))


def test_items_are_reproducible_per_seed_and_epoch(tmp_path):
    write_camvid_tree(tmp_path / "data")
    first = SegmentationDataset("camvid", "train", tmp_path / "data", crop_size=32, seed=3)
    again = SegmentationDataset("camvid", "train", tmp_path / "data", crop_size=32, seed=3)
    assert all(torch.equal(a, b) for a, b in zip(first[0], again[0]))
    first.set_epoch(1)
    assert not torch.equal(first[0][0], again[0][0])


def coded_pair(height=20, width=30, classes=11, ignore=11, seed=0):
    """An image whose red channel is 20 x (class) so every pixel says which class it should carry."""
    mask = torch.from_numpy(label_pattern(height, width, classes, ignore, seed))
    image = torch.stack([mask * 20, torch.full_like(mask, 7), torch.full_like(mask, 200)])
    return image.to(torch.uint8), mask


def red_channel(normalised: torch.Tensor) -> torch.Tensor:
    return (normalised * STD + MEAN)[0] * 255


def test_joint_crop_and_flip_keep_image_and_mask_aligned():
    image, mask = coded_pair()
    transform = JointTransform(augment=True, ignore_index=11, crop_size=16, scale_range=(1.0, 1.0))
    flipped = 0
    for seed in range(12):
        out_image, out_mask = transform(image, mask, torch.Generator().manual_seed(seed))
        assert out_image.shape == (3, 16, 16) and out_mask.shape == (16, 16)
        assert torch.allclose(red_channel(out_image), out_mask.float() * 20, atol=1e-3)
        flipped += not any(torch.equal(out_mask, mask[t:t + 16, l:l + 16].long())
                           for t in range(5) for l in range(15))
    assert 0 < flipped < 12  # some crops were mirrored, some not


def test_scaling_uses_nearest_labels_and_padding_is_ignored():
    image, mask = coded_pair(height=10, width=12)
    transform = JointTransform(augment=True, ignore_index=11, crop_size=40, scale_range=(2.0, 2.0), flip=False)
    out_image, out_mask = transform(image, mask, torch.Generator().manual_seed(0))
    assert out_mask.shape == (40, 40)
    assert set(out_mask.unique().tolist()) <= set(mask.unique().tolist())  # no invented labels
    assert out_mask[20:, :].eq(11).all() and out_mask[:, 24:].eq(11).all()  # 20x24 image padded to 40
    assert out_image[:, 20:, :].eq(0).all()  # image padding is the mean colour (0 once normalised)
    assert torch.equal(out_mask[:20, :24], mask.repeat_interleave(2, 0).repeat_interleave(2, 1).long())


def test_image_and_mask_of_different_sizes_name_the_pair(tmp_path):
    folder = write_camvid_tree(tmp_path / "data")
    mask_path = folder / "trainannot" / "0001TP_000001.png"
    Image.fromarray(np.zeros((30, 48), np.uint8), mode="L").save(mask_path)
    with pytest.raises(MismatchedPairError) as caught:
        SegmentationDataset("camvid", "train", tmp_path / "data", preload=True)
    assert "0001TP_000001.jpg" in str(caught.value) and str(mask_path) in str(caught.value)
    lazy = SegmentationDataset("camvid", "train", tmp_path / "data", preload=False)
    with pytest.raises(MismatchedPairError, match="48x36 but its mask .* is 48x30"):
        lazy[1]


def test_missing_mask_file_and_missing_list_are_named(tmp_path):
    folder = write_camvid_tree(tmp_path / "data")
    (folder / "testannot" / "0001TP_000000.png").unlink()
    with pytest.raises(MalformedDatasetError, match=r"testannot/0001TP_000000.png"):
        SegmentationDataset("camvid", "test", tmp_path / "data")
    (folder / "val.txt").unlink()
    with pytest.raises(MalformedDatasetError, match=r"CamVid/val.txt"):
        SegmentationDataset("camvid", "val", tmp_path / "data")
    voc = write_voc_tree(tmp_path / "voc")
    (voc / "ImageSets" / "Segmentation" / "val.txt").unlink()
    with pytest.raises(MalformedDatasetError, match=r"Segmentation/val.txt"):
        SegmentationDataset("voc2012", "val", tmp_path / "voc")


def test_label_values_outside_the_classes_are_an_error(tmp_path):
    folder = write_camvid_tree(tmp_path / "data")
    bad = label_pattern(36, 48, 11, 11, 0)
    bad[5, 5] = 40
    Image.fromarray(bad, mode="L").save(folder / "testannot" / "0001TP_000000.png")
    with pytest.raises(MalformedDatasetError, match=r"\[40\]"):
        SegmentationDataset("camvid", "test", tmp_path / "data", preload=True)


def test_invalid_names_list_the_valid_ones(tmp_path):
    with pytest.raises(ValueError, match="valid segmentation datasets: voc2012, camvid"):
        segmentation_info("cityscapes")
    write_camvid_tree(tmp_path / "data")
    with pytest.raises(ValueError, match="valid camvid splits: train, val, test"):
        SegmentationDataset("camvid", "trainval", tmp_path / "data")


def test_palettes_and_colourise():
    assert VOC2012.palette[:4] == ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0))
    assert VOC2012.palette[15] == (192, 128, 128) and VOC2012.ignore_colour == (224, 224, 192)
    assert len(CAMVID.palette) == CAMVID.num_classes == 11 and CAMVID.ignore_index == 11
    mask = torch.tensor([[0, 3], [11, 10]])
    rgb = CAMVID.colourise(mask)
    assert rgb.shape == (2, 2, 3) and rgb.dtype == torch.uint8
    assert rgb[0, 0].tolist() == [128, 128, 128] and rgb[1, 0].tolist() == [0, 0, 0]
    assert rgb[1, 1].tolist() == list(CAMVID.palette[10])
    with pytest.raises(MalformedDatasetError, match=r"\[12\]"):
        CAMVID.colourise(torch.tensor([[12]]))
