"""How fast is the CIFAR-10 batch pipeline, and how much of a training step does data take?

Measures, on the same machine, data and run:

1. ``CifarBatches``: uint8 images in memory on the device, crop + flip on whole batches.
2. torchvision's usual pipeline: a ``DataLoader`` over the same images with per-image PIL transforms
   ``RandomCrop(32, padding=4)``, ``RandomHorizontalFlip()``, ``ToTensor()``, ``Normalize(...)``.
3. One training step (forward, backward, SGD) of a small model on a batch of 128.

and prints images per second, the speed ratio, and the share of a training step spent on data
(``data time / (data time + step time)`` per batch). A script, not a test: timings depend on the
machine and its load. The default run takes well under a minute on two CPU cores; raise
``--batches``, ``--tv-batches`` and ``--steps`` for steadier numbers.

    python benchmarks/bench_data.py [--data-root DIR] [--device cpu|cuda] [--workers 0 2]
                                    [--model small|resnet18] [--batches 100] [--tv-batches 20]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn as nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from lossdecay_lib.data import CIFAR10_MEAN, CIFAR10_STD, CifarBatches, load_cifar10  # noqa: E402
from lossdecay_lib.data.paths import DATA_ENV  # noqa: E402

BATCH = 128


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", default=None,
                        help=f"data root (default: ${DATA_ENV}, else <repo>/../shared/data if present)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--batches", type=int, default=100, help="batches timed for CifarBatches")
    parser.add_argument("--tv-batches", type=int, default=20, help="batches timed for the DataLoader")
    parser.add_argument("--workers", type=int, nargs="+", default=[0],
                        help="DataLoader worker counts to try (e.g. 0 2)")
    parser.add_argument("--steps", type=int, default=10, help="training steps timed")
    parser.add_argument("--model", choices=("small", "resnet18"), default="small")
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    return parser.parse_args()


def default_data_root(argument):
    if argument or os.environ.get(DATA_ENV):
        return argument
    shared = REPO.parent / "shared" / "data"
    return shared if shared.is_dir() else None


def synchronise(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_batches(batches, count: int, device: torch.device, warmup: int = 2) -> float:
    """Seconds per batch over ``count`` batches drawn (and moved to ``device``) after ``warmup``."""
    iterator = iter(batches)
    for _ in range(warmup):
        next(iterator)
    synchronise(device)
    started = time.perf_counter()
    for _ in range(count):
        images, labels = next(iterator)
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
    synchronise(device)
    return (time.perf_counter() - started) / count


def endless(make_batches):
    """Yield batches from fresh epochs forever (so short datasets never run out mid-timing)."""
    while True:
        yield from make_batches()


class PerImageCifar(torch.utils.data.Dataset):
    """The same uint8 images served the torchvision way: one PIL image at a time, then transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor) -> None:
        from torchvision import transforms

        self.images = images.permute(0, 2, 3, 1).numpy()  # HWC, as torchvision's CIFAR10 stores them
        self.labels = labels.tolist()
        self.transform = transforms.Compose([
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ])

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), self.labels[index]


def small_cnn() -> nn.Module:
    """Four conv-BN-ReLU blocks (32-64-128-256 channels) and a linear head: a light CIFAR model."""
    layers, width_in = [], 3
    for width in (32, 64, 128, 256):
        layers += [nn.Conv2d(width_in, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                   nn.ReLU(inplace=True)]
        if width != 32:
            layers.append(nn.MaxPool2d(2))
        width_in = width
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(256, 10))


def make_model(name: str) -> nn.Module:
    if name == "resnet18":
        from torchvision.models import resnet18

        return resnet18(num_classes=10)
    return small_cnn()


def time_training_step(model_name: str, batch, device: torch.device, steps: int) -> float:
    """Seconds per forward + backward + SGD step on one fixed batch."""
    model = make_model(model_name).to(device)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()
    images, labels = batch

    def step():
        optimiser.zero_grad(set_to_none=True)
        loss_fn(model(images), labels).backward()
        optimiser.step()

    for _ in range(2):
        step()
    synchronise(device)
    started = time.perf_counter()
    for _ in range(steps):
        step()
    synchronise(device)
    return (time.perf_counter() - started) / steps


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    started = time.perf_counter()
    train = load_cifar10("train", default_data_root(args.data_root))
    load_seconds = time.perf_counter() - started
    print(f"CIFAR-10 train: {len(train)} images, source={train.source!r}, loaded in {load_seconds:.2f} s "
          f"(from {train.path})")
    print(f"device={device}, torch {torch.__version__}, threads={torch.get_num_threads()}, "
          f"batch={BATCH}, model={args.model}")

    ours = CifarBatches(train, BATCH, device=device, seed=0)
    ours_seconds = time_batches(endless(lambda: iter(ours)), args.batches, device)
    rows = [("CifarBatches (whole-batch, in memory)", ours_seconds)]

    for workers in args.workers:
        loader = torch.utils.data.DataLoader(
            PerImageCifar(train.images, train.labels), batch_size=BATCH, shuffle=True,
            drop_last=True, num_workers=workers, pin_memory=device.type == "cuda",
            persistent_workers=workers > 0,
        )
        seconds = time_batches(endless(lambda: iter(loader)), args.tv_batches, device)
        rows.append((f"torchvision DataLoader, per-image PIL, workers={workers}", seconds))

    step_seconds = time_training_step(args.model, next(iter(ours)), device, args.steps)

    print()
    print(f"{'pipeline':<52} {'images/s':>10} {'ms/batch':>9} {'data share':>11}")
    for name, seconds in rows:
        share = seconds / (seconds + step_seconds)
        print(f"{name:<52} {BATCH / seconds:>10.0f} {1000 * seconds:>9.2f} {100 * share:>10.1f}%")
    print(f"{'training step (' + args.model + ', fwd+bwd+SGD)':<52} {BATCH / step_seconds:>10.0f} "
          f"{1000 * step_seconds:>9.2f}")
    print()
    for name, seconds in rows[1:]:
        print(f"CifarBatches is {seconds / ours_seconds:.1f}x faster than {name}")
    print("data share = data time / (data time + training step time), per batch of "
          f"{BATCH}; timed over {args.batches} / {args.tv_batches} batches and {args.steps} steps")


if __name__ == "__main__":
    main()
