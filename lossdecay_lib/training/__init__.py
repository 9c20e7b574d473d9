"""Training loops: one module per task, sharing the step and the recorded-run lifecycle.

- :mod:`.loop`: what every loop shares around its steps (records, resume, divergence, progress).
- :mod:`.classification`: CIFAR-10 classification (paper Figs. 1-4), :class:`ScheduleController`
  (the shared step: learning rate from its schedule, loss weight at its place, backward, step).
- :mod:`.pix2pix`: pix2pix with a weighted generator loss (paper Section III.C).
- :mod:`.segmentation`: PSPNet semantic segmentation (paper Section III.B, Table I).
"""

from .classification import (AUTHORS_SGD, ClassificationConfig, ScheduleController, evaluate, train_classifier,
                             train_seeds)
from .loop import NonFiniteWatch, RecordedRun, progress_bar
from .pix2pix import Pix2PixConfig, load_samples, train_pix2pix, train_pix2pix_seeds
from .segmentation import SegmentationConfig, train_segmenter, train_segmenter_seeds

__all__ = ["AUTHORS_SGD", "ClassificationConfig", "ScheduleController", "evaluate", "train_classifier",
           "train_seeds", "NonFiniteWatch", "RecordedRun", "progress_bar"]
__all__ += ["SegmentationConfig", "train_segmenter", "train_segmenter_seeds"]
__all__ += ["Pix2PixConfig", "load_samples", "train_pix2pix", "train_pix2pix_seeds"]
