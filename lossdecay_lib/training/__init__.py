"""Training loops: one module per task, sharing the recorded-run lifecycle.

- :mod:`.loop`: what every loop shares around its steps (the run-config base, records, resume,
  divergence, epoch sums, progress, :func:`train_seeds`).
- :mod:`.classification`: CIFAR-10 classification (paper Figs. 1-4).
- :mod:`.pix2pix`: pix2pix with a weighted generator loss (paper Section III.C).
- :mod:`.segmentation`: PSPNet semantic segmentation (paper Section III.B, Table I).

Each loop writes its weighted step out (paper Eq. 1): the weight for this progress, the learning rate
set (:meth:`lossdecay_lib.weighting.ScheduledWeight.set_lr`), ``zero_grad``, the weighted loss's
``backward()``, the step.
"""

from .classification import AUTHORS_SGD, ClassificationConfig, evaluate, train_classifier
from .loop import EpochSums, NonFiniteWatch, RecordedRun, RunConfig, progress_bar, train_seeds
from .pix2pix import Pix2PixConfig, load_samples, train_pix2pix
from .segmentation import SegmentationConfig, train_segmenter

__all__ = ["AUTHORS_SGD", "ClassificationConfig", "evaluate", "train_classifier", "train_seeds", "EpochSums",
           "NonFiniteWatch", "RecordedRun", "RunConfig", "progress_bar"]
__all__ += ["SegmentationConfig", "train_segmenter"]
__all__ += ["Pix2PixConfig", "load_samples", "train_pix2pix"]
