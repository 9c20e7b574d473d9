"""Seeding: the global generators (:func:`seed_everything`, at the start of every run) and random
number streams keyed by names and numbers, so augmentation is reproducible anywhere.

Each stream is a fresh CPU ``torch.Generator`` seeded from a hash of its key: the same key gives the
same numbers on every device, in every process and in any order of access (which is what makes
batches identical for the same seed, and dataset items independent of DataLoader worker counts).
"""

from __future__ import annotations

import hashlib
import random

import numpy as np
import torch

from ..checks import check_non_negative_int


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    check_non_negative_int("seed", seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def keyed_generator(*key: object) -> torch.Generator:
    """A CPU generator whose seed is a 63-bit hash of ``key`` (distinct keys, independent streams)."""
    text = "|".join(str(part) for part in ("lossdecay",) + key)
    digest = hashlib.sha256(text.encode()).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest[:8], "little") & ((1 << 63) - 1))


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The stream for one epoch of a batch iterator (order, crops, flips)."""
    return keyed_generator("epoch", seed, epoch)


def item_generator(seed: int, epoch: int, index: int) -> torch.Generator:
    """The stream for one dataset item in one epoch (its random scale, crop and flip)."""
    return keyed_generator("item", seed, epoch, index)
