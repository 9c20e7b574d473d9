"""Training loops: one module per task, sharing the step and the recorded-run lifecycle.

- :mod:`.loop`: what every loop shares around its steps (records, resume, divergence, progress).
- :mod:`.classification`: CIFAR-10 classification (paper Figs. 1-4), :class:`ScheduleController`
  (the shared step: learning rate from its schedule, loss weight at its place, backward, step).
"""

from .classification import (AUTHORS_SGD, ClassificationConfig, ScheduleController, evaluate, train_classifier,
                             train_seeds)
from .loop import NonFiniteWatch, RecordedRun, progress_bar

__all__ = ["AUTHORS_SGD", "ClassificationConfig", "ScheduleController", "evaluate", "train_classifier",
           "train_seeds", "NonFiniteWatch", "RecordedRun", "progress_bar"]
