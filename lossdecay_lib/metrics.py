"""Evaluation metrics of the book's tasks, one section per task.

Segmentation (paper Section III.B, Table I): a confusion matrix accumulated on the device over a whole
split, and from it mean IoU, per-class IoU and pixel accuracy.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch

__all__ = ["ConfusionMatrix", "segmentation_scores", "iou_per_class"]


# ==================================================================================================
# Segmentation: confusion matrix, IoU, pixel accuracy
# ==================================================================================================

class ConfusionMatrix:
    """A ``num_classes x num_classes`` confusion matrix (rows: truth, columns: prediction) on the device.

    :meth:`update` adds a batch of predicted and true label maps; pixels whose truth is ``ignore_index``
    are left out (so are, defensively, truths outside ``0..num_classes-1``). The counts stay on the
    tensors' device in int64 and are added with ``index_add_`` into a fixed-size buffer, so updating
    never synchronises with the host (``torch.bincount`` must read the largest value first, and
    torchmetrics' ``MulticlassConfusionMatrix`` selects the kept pixels by boolean indexing, both host
    reads on a GPU). ``tests/test_metrics.py`` checks it against a hand-computed matrix and against
    torchmetrics.
    """

    def __init__(self, num_classes: int, ignore_index: Optional[int] = None, device=None):
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.num_classes, self.ignore_index = num_classes, ignore_index
        # one spare bin (index num_classes**2) collects every ignored pixel and is dropped when read
        self._counts = torch.zeros(num_classes * num_classes + 1, dtype=torch.long, device=device)

    @torch.no_grad()
    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add label maps: ``prediction`` and ``target`` of the same shape (integer class indices)."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target {tuple(target.shape)} differ in shape")
        c = self.num_classes
        t, p = target.reshape(-1).long(), prediction.reshape(-1).long()
        keep = (t >= 0) & (t < c) & (p >= 0) & (p < c)
        if self.ignore_index is not None:
            keep &= t != self.ignore_index
        index = torch.where(keep, t * c + p, torch.full_like(t, c * c))
        self._counts = self._counts.to(index.device)
        self._counts.index_add_(0, index, torch.ones_like(index))

    @property
    def matrix(self) -> torch.Tensor:
        """The counts, ``[num_classes, num_classes]`` int64, still on the device."""
        c = self.num_classes
        return self._counts[: c * c].view(c, c)

    def reset(self) -> None:
        self._counts.zero_()


def iou_per_class(matrix: torch.Tensor) -> torch.Tensor:
    """IoU of each class from a confusion matrix (float64, on the CPU); NaN for a class absent from
    both prediction and truth (its union is 0: there is nothing to score)."""
    m = matrix.detach().double().cpu()
    tp = m.diag()
    union = m.sum(0) + m.sum(1) - tp
    return torch.where(union > 0, tp / union.clamp_min(1), torch.full_like(tp, math.nan))


def segmentation_scores(matrix: torch.Tensor, class_names: Optional[List[str]] = None) -> Dict:
    """Mean IoU, per-class IoU and pixel accuracy of a confusion matrix (one host read).

    Mean IoU averages the IoU over the classes present in the truth or in the prediction of the split;
    a class absent from both has no IoU (0/0) and is excluded rather than counted as 0 or 1. (With the
    whole of a standard val split every class is present; the exclusion matters for the small subsets
    of the cpu profile, where e.g. "Bicyclist" may not occur.) Per-class IoU keeps such classes as
    ``None`` in the JSON-ready dict. Pixel accuracy is correct pixels over all non-ignored pixels.
    """
    ious = iou_per_class(matrix)
    present = ~torch.isnan(ious)
    m = matrix.detach().double().cpu()
    total = float(m.sum())
    names = class_names or [str(i) for i in range(len(ious))]
    return {
        "miou": float(ious[present].mean()) if bool(present.any()) else math.nan,
        "pixel_acc": float(m.diag().sum() / total) if total else math.nan,
        "per_class_iou": {n: (None if math.isnan(v) else v) for n, v in zip(names, ious.tolist())},
        "classes_scored": int(present.sum()),
        "pixels": int(total),
    }
