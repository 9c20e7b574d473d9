"""Checkpoints that survive a kill at any moment: written to a temporary file, then renamed.

A training run saves its model, optimizer, schedule position (the step), random-number state and the
partial run record at the end of every ``checkpoint_every`` epochs. A rerun of the same configuration
resumes from the last checkpoint, so a disconnected Colab session or a sleeping laptop loses at most
the epoch in progress. Loading uses ``torch.load(weights_only=True)``: a checkpoint cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Union

import torch

from .atomic import write_atomically

__all__ = ["save_checkpoint", "load_checkpoint", "remove_checkpoint"]


def save_checkpoint(path: Union[str, Path], state: Dict) -> Path:
    """Write ``state`` (tensors, numbers, strings, lists and dicts of them) atomically to ``path``."""
    return write_atomically(path, lambda tmp: torch.save(state, tmp))


def load_checkpoint(path: Union[str, Path]) -> Optional[Dict]:
    """The checkpoint at ``path`` (tensors on the CPU), or ``None`` when there is none."""
    path = Path(path)
    if not path.is_file():
        return None
    return torch.load(path, map_location="cpu", weights_only=True)


def remove_checkpoint(path: Union[str, Path]) -> None:
    Path(path).unlink(missing_ok=True)
