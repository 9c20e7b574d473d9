"""Evaluation metrics of the book's tasks, one section per task.

Segmentation (paper Section III.B, Table I): a confusion matrix accumulated on the device over a whole
split, and from it mean IoU, per-class IoU and pixel accuracy.

Image metrics (pix2pix, paper Section III.C): L1, PSNR and SSIM of generated images against the real
ones, per image, accumulated on the device over a split (PSNR and SSIM by torchmetrics).
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional

import torch

__all__ = ["ConfusionMatrix", "segmentation_scores", "iou_per_class", "image_scores", "ImageScores"]


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


# ==================================================================================================
# Image metrics (pix2pix): L1, PSNR, SSIM against the real images
# ==================================================================================================

def image_scores(fake: torch.Tensor, real: torch.Tensor) -> Dict[str, torch.Tensor]:
    """Per-image L1, PSNR (dB) and SSIM of ``fake`` against ``real``, both ``[N, C, H, W]`` in [-1, 1].

    L1 is the mean absolute error in the generator's own range [-1, 1] (the scale of pix2pix's L1
    loss, so a test L1 reads like the training L1). PSNR and SSIM are computed on the images mapped to
    [0, 1] with ``data_range=1`` by torchmetrics (Gaussian 11x11 window, sigma 1.5, for SSIM). Identical
    images give PSNR ``inf`` and SSIM 1. Values stay on the device (no host read).
    """
    from torchmetrics.functional.image import peak_signal_noise_ratio, structural_similarity_index_measure

    if fake.shape != real.shape or fake.dim() != 4:
        raise ValueError(f"fake {tuple(fake.shape)} and real {tuple(real.shape)} must be [N, C, H, W] of one shape")
    fake01 = ((fake.detach().float() + 1) / 2).clamp(0, 1)
    real01 = ((real.detach().float() + 1) / 2).clamp(0, 1)
    return {
        "l1": (fake.detach().float() - real.detach().float()).abs().mean(dim=(1, 2, 3)),
        "psnr": peak_signal_noise_ratio(fake01, real01, data_range=1.0, reduction="none", dim=(1, 2, 3)),
        "ssim": structural_similarity_index_measure(fake01, real01, data_range=1.0, reduction="none"),
    }


class ImageScores:
    """Means and standard deviations over a split of :func:`image_scores`, accumulated on the device.

    :meth:`update` adds a batch; :meth:`result` reads the sums once: ``{"l1", "psnr", "ssim"}`` means
    over images, ``"<name>_std"`` their standard deviations over images, and ``"images"``.
    """

    NAMES = ("l1", "psnr", "ssim")

    def __init__(self, device=None):
        self._sums = torch.zeros(2 * len(self.NAMES) + 1, dtype=torch.float64, device=device)

    @torch.no_grad()
    def update(self, fake: torch.Tensor, real: torch.Tensor) -> None:
        scores = image_scores(fake, real)
        values = torch.stack([scores[n].double() for n in self.NAMES])  # [3, N]
        self._sums = self._sums.to(values.device)
        self._sums[: len(self.NAMES)] += values.sum(1)
        self._sums[len(self.NAMES): 2 * len(self.NAMES)] += (values * values).sum(1)
        self._sums[-1] += values.shape[1]

    def result(self) -> Dict[str, float]:
        sums = self._sums.tolist()
        k, n = len(self.NAMES), sums[-1]
        out: Dict[str, float] = {"images": int(n)}
        for i, name in enumerate(self.NAMES):
            mean = sums[i] / n if n else math.nan
            var = (sums[k + i] / n - mean * mean) * n / (n - 1) if n > 1 else 0.0
            out[name] = mean
            out[f"{name}_std"] = math.sqrt(max(var, 0.0)) if math.isfinite(var) else math.nan
        return out
