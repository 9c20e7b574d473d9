"""Profiles: one parameter, ``profile``, sets the scale of every experiment in the book.

- ``smoke``: for tests; each chapter runs in well under a minute on 2 CPU cores (on real data).
- ``quick``: a real but reduced experiment a laptop CPU finishes in minutes per chapter (2,000
  CIFAR-10 training images, 20 epochs): results in minutes, networks that barely learn.
- ``cpu``: the rendered book's profile on a CPU. Classification on all 50,000 CIFAR-10 training images
  and the whole 10,000-image test set, images average-pooled to 16x16 so that a 2-core CPU can train
  20 epochs of a 40-layer plain network in about 25 minutes per run; the compute goes to depth and
  epochs, not pixels. Segmentation and pix2pix at the ``quick`` sizes.
- ``gpu``: all of CIFAR-10 at 32x32 on one GPU, 8 epochs; the classification chapters sized for about
  8 minutes on one H200 with several runs at once (``benchmarks/gpu_book.sh``; an estimate until measured).
- ``paper``: the paper's own protocol (epochs, batch sizes, networks).
- ``auto`` (the default of every chapter) picks ``gpu`` when CUDA is available, else ``cpu``.

The sizes live here and nowhere else; a chapter reads ``get_profile(profile).<section>``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional, Tuple

import torch

__all__ = ["Profile", "EquivalenceSizes", "ClassificationSizes", "CurvatureSizes", "SegmentationSizes", "Pix2PixSizes", "PROFILES", "PROFILE_NAMES", "get_profile", "resolve_device"]


@dataclass(frozen=True)
class EquivalenceSizes:
    """Chapter "Loss decay or learning-rate decay?": a small real network, trained in float64."""

    steps: int  # optimizer steps compared side by side
    batch_size: int
    per_class: int  # CIFAR-10 training images per class (a balanced subset)
    depth: int  # weight layers of the plain network
    width: int  # channels of its first stage (then 2x, 4x)


@dataclass(frozen=True)
class ClassificationSizes:
    """CIFAR-10 classification chapters (paper Figs. 1-4)."""

    train_per_class: Optional[int]  # class-balanced training subset; None: all 5,000 per class
    test_per_class: Optional[int]  # None: all 1,000 per class
    epochs: int
    batch_size: int
    depths: Tuple[int, ...]  # plain networks compared (the paper's Fig. 1: 40 and 50 layers)
    width: int  # channels of the first stage (then 2x, 4x); He et al.'s CIFAR width is 16
    resnet_width: int  # first-stage width of the authors' CIFAR ResNet-34 (theirs: 64)
    image_size: int = 32  # images average-pooled to this side after augmentation (32: as stored)
    curvature_every: int = 0  # measure Eq. 2's terms along every run every this many steps (0: never)
    sharpness_every: int = 0  # and the top Hessian eigenvalue at every k-th measurement
    measure_batch: int = 0  # images in the fixed measurement batch (0: batch_size)
    #: today's schedules run beside the paper's in "Schedules compared" (experiments.EXTRA_BASELINES)
    extra_baselines: Tuple[str, ...] = ("cosine lr", "linear-to-zero lr", "Schedule-Free SGD")

    @property
    def train_images(self) -> int:
        return 50_000 if self.train_per_class is None else 10 * self.train_per_class

    @property
    def test_images(self) -> int:
        return 10_000 if self.test_per_class is None else 10 * self.test_per_class

    def table(self, seeds, network: str) -> str:
        """The sizes a chapter runs at, as a Markdown table (each chapter states them at its top)."""
        from .tables import markdown_table

        head = ["training images", "test images", "image size", "epochs", "batch", "network", "seeds"]
        row = [f"{self.train_images:,}", f"{self.test_images:,}", f"{self.image_size}x{self.image_size}",
               self.epochs, self.batch_size, network, ", ".join(map(str, seeds))]
        table = markdown_table(head, [row])
        if self.image_size < 32:
            table += (f"\n\nImages are average-pooled from 32x32 to {self.image_size}x{self.image_size} so that a "
                      f"2-core CPU can train on all {self.train_images:,} of them; the compute goes to depth "
                      f"and epochs, not pixels.")
        return table


@dataclass(frozen=True)
class CurvatureSizes:
    """Chapter "A second-order view": plain-network runs with curvature measured along the way."""

    train_per_class: Optional[int]
    epochs: int
    batch_size: int
    depth: int
    width: int
    every: int  # steps between measurements of g^T g and g^T H g
    sharpness_every: int  # top Hessian eigenvalue at every k-th measurement
    measure_batch: int = 0  # training images in the fixed measurement batch (0: batch_size)
    image_size: int = 32  # images average-pooled to this side after augmentation (32: as stored)


@dataclass(frozen=True)
class SegmentationSizes:
    """Chapter "Semantic segmentation" (paper Section III.B, Table I): PSPNet on CamVid (or VOC)."""

    backbone: str  # dilated torchvision ResNet trunk of the PSPNet
    train_images: Optional[int]  # N training pairs spaced evenly over the split; None: the whole split
    val_images: Optional[int]  # N validation pairs spaced evenly over the split; None: the whole split
    crop: int  # training crop side (the paper: 224)
    image_size: Optional[int]  # every image resized to this short side before cropping/scoring; None: as stored
    epochs: int
    batch_size: int  # the paper: 4


@dataclass(frozen=True)
class Pix2PixSizes:
    """Chapter "pix2pix" (paper Section III.C): U-Net generator and PatchGAN on facades."""

    train_images: Optional[int]  # None: all 400
    test_images: Optional[int]  # None: all 106
    image_size: int  # the reference: 256 (with num_downs 8)
    num_downs: int  # U-Net downsamplings; the image side must be divisible by 2**num_downs
    ngf: int  # generator filters at the first layer (the reference: 64)
    ndf: int  # discriminator filters at the first layer (the reference: 64)
    epochs: int  # the reference: 200
    batch_size: int  # the reference: 1


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    equivalence: EquivalenceSizes
    classification: ClassificationSizes
    curvature: CurvatureSizes
    segmentation: SegmentationSizes
    pix2pix: Pix2PixSizes
    seeds: int = 3  # seeds per comparison
    curve_steps_per_epoch: int = 50  # how finely schedule curves are sampled in figures


# Sizes two profiles share (cpu renders segmentation and pix2pix at the quick sizes; gpu and paper
# check the equivalence on the same network).
_SMALL_EQUIVALENCE = EquivalenceSizes(steps=60, batch_size=32, per_class=64, depth=6, width=8)
_LARGE_EQUIVALENCE = EquivalenceSizes(steps=200, batch_size=64, per_class=128, depth=8, width=16)
_SMALL_SEGMENTATION = SegmentationSizes(backbone="resnet18", train_images=80, val_images=24, crop=64,
                                        image_size=72, epochs=8, batch_size=4)
_SMALL_PIX2PIX = Pix2PixSizes(train_images=64, test_images=30, image_size=128, num_downs=7, ngf=16, ndf=16,
                              epochs=10, batch_size=1)

PROFILES: Dict[str, Profile] = {
    "smoke": Profile(
        name="smoke",
        description="tests: every chapter well under a minute on 2 CPU cores",
        equivalence=EquivalenceSizes(steps=20, batch_size=16, per_class=16, depth=6, width=8),
        classification=ClassificationSizes(train_per_class=10, test_per_class=10, epochs=2, batch_size=50, depths=(6, 8), width=4, resnet_width=4),
        curvature=CurvatureSizes(train_per_class=10, epochs=2, batch_size=50, depth=6, width=4, every=1, sharpness_every=2),
        segmentation=SegmentationSizes(backbone="resnet18", train_images=4, val_images=3, crop=48, image_size=48, epochs=1, batch_size=2),
        pix2pix=Pix2PixSizes(train_images=4, test_images=3, image_size=64, num_downs=6, ngf=8, ndf=8, epochs=2, batch_size=1),
        seeds=1,
        curve_steps_per_epoch=5,
    ),
    "quick": Profile(
        name="quick",
        description="results in minutes on a laptop CPU: 2,000 CIFAR-10 training images, 20 epochs",
        equivalence=_SMALL_EQUIVALENCE,
        classification=ClassificationSizes(train_per_class=200, test_per_class=100, epochs=20, batch_size=100, depths=(40, 50), width=8, resnet_width=8),
        curvature=CurvatureSizes(train_per_class=200, epochs=15, batch_size=100, depth=12, width=8, every=20, sharpness_every=3, measure_batch=50),
        segmentation=_SMALL_SEGMENTATION,
        pix2pix=_SMALL_PIX2PIX,
    ),
    "cpu": Profile(
        name="cpu",
        description=("the rendered book on a CPU: all 50,000 CIFAR-10 training images and 10,000 test images, "
                     "average-pooled to 16x16 so that a 2-core CPU can train on all of them, 20 epochs"),
        equivalence=_SMALL_EQUIVALENCE,
        classification=ClassificationSizes(train_per_class=None, test_per_class=None, epochs=20, batch_size=128,
                                           depths=(40, 50), width=8, resnet_width=8, image_size=16,
                                           curvature_every=100, sharpness_every=3, measure_batch=50,
                                           # today's baselines answer no claim of the paper: cut to
                                           # keep the four chapters within 20 core-hours (issue 14)
                                           extra_baselines=()),
        curvature=CurvatureSizes(train_per_class=None, epochs=20, batch_size=128, depth=40, width=8, every=100,
                                 sharpness_every=3, measure_batch=50, image_size=16),
        segmentation=_SMALL_SEGMENTATION,
        pix2pix=_SMALL_PIX2PIX,
    ),
    "gpu": Profile(
        name="gpu",
        description=("all of CIFAR-10 at 32x32 on one GPU, 8 epochs: the four classification chapters sized for "
                     "8 minutes on one H200 (an estimate, not yet measured: benchmarks/gpu_book.py estimate)"),
        equivalence=_LARGE_EQUIVALENCE,
        # Sized by benchmarks/gpu_book.py estimate (training FLOPs counted, throughput assumed: 35 TFLOP/s for
        # the plain networks and 150 for ResNet-34 with several runs sharing the GPU): about 6.7 minutes of
        # training for the four classification chapters (30 epochs and a width-64 ResNet: about 33).
        classification=ClassificationSizes(train_per_class=None, test_per_class=None, epochs=8, batch_size=128,
                                           depths=(40, 50), width=16, resnet_width=32,
                                           extra_baselines=("cosine lr",)),
        curvature=CurvatureSizes(train_per_class=None, epochs=8, batch_size=128, depth=40, width=16, every=100,
                                 sharpness_every=2, measure_batch=64),
        segmentation=SegmentationSizes(backbone="resnet50", train_images=None, val_images=None, crop=224, image_size=None, epochs=50, batch_size=4),
        pix2pix=Pix2PixSizes(train_images=None, test_images=None, image_size=256, num_downs=8, ngf=64, ndf=64, epochs=20, batch_size=1),
    ),
    "paper": Profile(
        name="paper",
        description="the paper's own protocol (epochs, batch sizes, networks)",
        equivalence=_LARGE_EQUIVALENCE,
        classification=ClassificationSizes(train_per_class=None, test_per_class=None, epochs=100, batch_size=128, depths=(40, 50), width=16, resnet_width=64),
        curvature=CurvatureSizes(train_per_class=None, epochs=100, batch_size=128, depth=40, width=16, every=200, sharpness_every=2),
        segmentation=SegmentationSizes(backbone="resnet101", train_images=None, val_images=None, crop=224, image_size=None, epochs=200, batch_size=4),
        pix2pix=Pix2PixSizes(train_images=None, test_images=None, image_size=256, num_downs=8, ngf=64, ndf=64, epochs=200, batch_size=1),
    ),
}
PROFILE_NAMES = tuple(PROFILES) + ("auto",)


def get_profile(name: str = "auto") -> Profile:
    """The profile called ``name``; ``auto`` is ``gpu`` with CUDA, else ``cpu``.

    An unknown name is an error that lists the valid ones.
    """
    if not isinstance(name, str) or name not in PROFILE_NAMES:
        raise ValueError(f"unknown profile {name!r}; valid profiles: {', '.join(PROFILE_NAMES)}")
    if name == "auto":
        name = "gpu" if torch.cuda.is_available() else "cpu"
    return PROFILES[name]


def resolve_device(device: str = "auto") -> torch.device:
    """``auto``: the first CUDA device when there is one, else the CPU."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError as e:
        raise ValueError(f"unknown device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available on this machine")
    return dev
