"""The in-memory CIFAR batch iterator: whole-batch crop and flip, normalisation, seeding, drop_last."""

import pytest
import torch
import torch.nn.functional as F

from lossdecay_lib.data.batches import CifarBatches, crop_and_flip
from lossdecay_lib.data.cifar import CIFAR10_MEAN, CIFAR10_STD, CifarSplit

MEAN = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)


def random_split(count: int = 300, seed: int = 0) -> CifarSplit:
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (count, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.arange(count) % 10
    return CifarSplit(images, labels, "train", "official")


def normalised(images: torch.Tensor) -> torch.Tensor:
    return (images.float() / 255 - MEAN) / STD


def all_batches(batches):
    return [(x.clone(), y.clone()) for x, y in batches]


def test_eval_batches_are_ordered_unaugmented_and_complete():
    data = random_split(300)
    batches = CifarBatches(data, 128, train=False, device="cpu")
    out = all_batches(batches)
    assert len(batches) == 3 and [len(y) for _, y in out] == [128, 128, 44]
    images = torch.cat([x for x, _ in out])
    assert torch.equal(torch.cat([y for _, y in out]), data.labels)
    assert torch.allclose(images, normalised(data.images), atol=1e-5)


def test_train_batches_drop_the_last_partial_batch_unless_asked():
    data = random_split(300)
    assert [len(y) for _, y in CifarBatches(data, 128, device="cpu")] == [128, 128]
    kept = CifarBatches(data, 128, device="cpu", drop_last=False)
    assert len(kept) == 3 and [len(y) for _, y in kept] == [128, 128, 44]
    labels = torch.cat([y for _, y in kept])
    assert sorted(labels.tolist()) == sorted(data.labels.tolist())  # a permutation: each image once


def test_same_seed_gives_identical_batches_and_epochs_differ():
    data = random_split(300)
    first = CifarBatches(data, 64, device="cpu", seed=7)
    second = CifarBatches(data, 64, device="cpu", seed=7)
    epoch0, epoch0_again = all_batches(first), all_batches(second)
    for (xa, ya), (xb, yb) in zip(epoch0, epoch0_again):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    epoch1 = all_batches(first)
    assert not torch.equal(epoch0[0][0], epoch1[0][0])
    replay = list(second.epoch_batches(1))
    assert torch.equal(replay[0][0], epoch1[0][0])  # any epoch can be replayed on its own
    other_seed = all_batches(CifarBatches(data, 64, device="cpu", seed=8))
    assert not torch.equal(epoch0[0][1], other_seed[0][1])


def reference_crop_and_flip(images, offsets, flips, padding):
    """One image at a time, the obvious way (the slow reference)."""
    padded = F.pad(images, (padding,) * 4)
    out = []
    for image, (top, left), flip in zip(padded, offsets.tolist(), flips.tolist()):
        crop = image[:, top:top + images.shape[2], left:left + images.shape[3]]
        out.append(crop.flip(-1) if flip else crop)
    return torch.stack(out)


def test_vectorised_crop_and_flip_matches_the_per_image_reference():
    generator = torch.Generator().manual_seed(3)
    images = torch.randint(0, 256, (64, 3, 32, 32), dtype=torch.uint8, generator=generator)
    offsets = torch.randint(0, 9, (64, 2), generator=generator)
    flips = torch.rand(64, generator=generator) < 0.5
    expected = reference_crop_and_flip(images, offsets, flips, 4)
    assert torch.equal(crop_and_flip(images, offsets, flips, 4), expected)
    # Extreme offsets: all zero padding on one side.
    corner = crop_and_flip(images[:1], torch.tensor([[0, 0]]), torch.tensor([False]), 4)
    assert corner[0, :, :4, :].eq(0).all() and torch.equal(corner[0, :, 4:, 4:], images[0, :, :28, :28])


def test_training_batches_are_padded_crops_or_mirrors_of_their_images():
    data = random_split(40)
    data.labels = torch.arange(40)  # unique labels: each output names its source image
    (images, labels), = list(CifarBatches(data, 40, device="cpu", seed=1))
    padded = normalised(F.pad(data.images, (4,) * 4))  # zero pixels, normalised like the pipeline's
    seen_offsets, seen_flips = set(), set()
    for image, label in zip(images, labels):
        source = padded[label]
        windows = [(top, left, flip) for top in range(9) for left in range(9) for flip in (False, True)]
        candidates = torch.stack([_window(source, *window) for window in windows])
        close = (candidates - image).abs().amax(dim=(1, 2, 3)) < 1e-5
        assert int(close.sum()) == 1, "each output must be exactly one crop or mirrored crop"
        top, left, flip = windows[int(close.nonzero())]
        seen_offsets.add((top, left))
        seen_flips.add(flip)
    assert seen_flips == {False, True} and len(seen_offsets) > 15


def _window(padded_image, top, left, flip):
    crop = padded_image[:, top:top + 32, left:left + 32]
    return crop.flip(-1) if flip else crop


def test_output_dtype_layout_and_device():
    data = random_split(64)
    x, y = next(iter(CifarBatches(data, 32, device="cpu", channels_last=True, dtype=torch.bfloat16)))
    assert x.dtype == torch.bfloat16 and x.shape == (32, 3, 32, 32) and y.dtype == torch.int64
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert x.device.type == "cpu"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device on this machine")
def test_gpu_batches_equal_cpu_batches():
    data = random_split(256)
    cpu = all_batches(CifarBatches(data, 128, device="cpu", seed=4))
    gpu = all_batches(CifarBatches(data, 128, device="cuda", seed=4))
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and torch.equal(yc, yg.cpu()) and torch.allclose(xc, xg.cpu(), atol=1e-5)


def test_bad_inputs_are_rejected_with_the_reason():
    data = random_split(8)
    with pytest.raises(ValueError, match="uint8"):
        CifarBatches((data.images.float(), data.labels), 4, device="cpu")
    with pytest.raises(ValueError, match="labels must be"):
        CifarBatches((data.images, data.labels[:5]), 4, device="cpu")
    with pytest.raises(ValueError, match="batch_size"):
        CifarBatches(data, 0, device="cpu")
