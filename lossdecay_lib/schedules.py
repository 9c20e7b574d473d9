"""Weight and learning-rate schedules as small, picklable objects of training progress.

A schedule says a value for a step; where that value goes (the loss, the gradients or the learning
rate) is not its business: see :mod:`lossdecay_lib.weighting`. Every schedule is a function of a
:class:`Progress` (the optimizer step, how many steps make an epoch, how many epochs the run has), so
the same object works for a 5-epoch smoke run and a 200-epoch paper run.

Each schedule has one name, a class named like the function it is called as (``linear_decay(3.0)``);
its ``repr`` spells that name in CamelCase (``LinearDecay(start=3.0, end=0.0)``) and is part of
every run record's key, so it must never change.

Schedules of the paper (Wei 2019, "Forget the Learning Rate, Decay Loss") and of its code:

- :class:`linear_decay` -- Fig. 2a, the loss weight falling linearly from 2 to 0 over training;
  with ``start=3.0`` the "linear decrease schedule with a maximum value of 3" of Fig. 3a.
- :class:`long_tail` -- the "long tail relaxation schedule" of Fig. 3a (figure missing from the text:
  our reconstruction, an exponential relaxation whose last epochs keep small but non-zero weights).
- :class:`authors_code_weight` -- what all three of the authors' scripts actually use: 1 before
  epoch 70, then ``2/3 - epoch/150``. It drops 5x at epoch 70 and goes negative after epoch 100. We
  take it as the best available reading of the "new weighting strategy" of Fig. 4a, whose figure is
  missing.
- :class:`constant`; :class:`random_uniform` (Wei 2018, "random gradient": a weight drawn from
  U(0, 1) at every step); :class:`random_half` (the authors' segmentation code: the weight applied to
  a random half of the batches only, weight 1 on the others).

Learning-rate schedules they are compared with, as multipliers of a base learning rate:
:class:`piecewise_constant` (x0.1 steps), :class:`poly` (power 0.9, the paper's Section III.B),
:class:`cosine`, :func:`linear_to_zero`, :class:`one_cycle`, :class:`constant_then_linear` (pix2pix's
own: constant, then linear to zero over the second half).

Composition: ``2 * cosine()``, ``linear_decay() * poly()``, ``per_epoch(poly())``.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Dict, Sequence, Tuple

__all__ = ["Progress", "Schedule", "linear_decay", "long_tail", "authors_code_weight", "constant",
           "random_uniform", "random_half", "piecewise_constant", "poly", "cosine", "linear_to_zero",
           "one_cycle", "constant_then_linear", "per_epoch", "stretched", "curvature_adaptive",
           "CurvatureAdaptive", "curve", "check_schedule"]


@dataclass(frozen=True)
class Progress:
    """Where training is: the optimizer step (0-based), steps per epoch, and epochs in the run."""

    step: int
    steps_per_epoch: int
    epochs: float

    def __post_init__(self):
        if self.steps_per_epoch <= 0:
            raise ValueError(f"steps_per_epoch must be positive, got {self.steps_per_epoch}")
        if self.epochs <= 0:
            raise ValueError(f"epochs must be positive, got {self.epochs}")
        if self.step < 0:
            raise ValueError(f"step must be >= 0, got {self.step}")

    @property
    def epoch(self) -> float:
        """Epochs completed, fractional (step 0 is epoch 0.0)."""
        return self.step / self.steps_per_epoch

    @property
    def fraction(self) -> float:
        """Fraction of the run completed, in [0, 1)."""
        return self.epoch / self.epochs


class Schedule:
    """A number as a function of training progress. Subclasses implement :meth:`value`.

    Calling a schedule with a :class:`Progress` gives its value; ``at(epoch, epochs)`` is the
    convenience form for per-epoch questions. Schedules multiply and scale: ``2 * s``, ``s * t``.
    The ``repr`` (the record key's part) is the class name in CamelCase and the public attributes.
    """

    def value(self, progress: Progress) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, progress: Progress) -> float:
        return float(self.value(progress))

    def at(self, epoch: float, epochs: float, steps_per_epoch: int = 1) -> float:
        """The value at (possibly fractional) ``epoch`` of an ``epochs``-long run."""
        return self(Progress(int(round(epoch * steps_per_epoch)), steps_per_epoch, epochs))

    def __mul__(self, other):
        if isinstance(other, Schedule):
            return _Product(self, other)
        if isinstance(other, (int, float)):
            return _Scaled(self, float(other))
        return NotImplemented

    __rmul__ = __mul__

    def __repr__(self) -> str:
        name = "".join(word[:1].upper() + word[1:] for word in type(self).__name__.split("_"))
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{name}({fields})"

    def __eq__(self, other) -> bool:
        return type(self) is type(other) and vars(self) == vars(other)

    def __hash__(self) -> int:
        return hash(repr(self))


class _Product(Schedule):
    def __init__(self, left: Schedule, right: Schedule):
        self.left, self.right = left, right

    def value(self, progress):
        return self.left(progress) * self.right(progress)

    def __repr__(self):
        return f"({self.left!r} * {self.right!r})"


class _Scaled(Schedule):
    def __init__(self, inner: Schedule, factor: float):
        self.inner, self.factor = inner, factor

    def value(self, progress):
        return self.factor * self.inner(progress)

    def __repr__(self):
        return f"{self.factor!r} * {self.inner!r}"


# --------------------------------------------------------------------------------------------------
# The paper's loss-weight schedules
# --------------------------------------------------------------------------------------------------


class linear_decay(Schedule):
    """The paper's loss weight: linear from ``start`` at the first step to ``end`` at the run's end.

    Fig. 2a ("linear decrease schedule designed for the loss"): 2 -> 0. Fig. 3a's "linear decrease
    schedule with a maximum value of 3": ``linear_decay(start=3.0)``. Evaluated at every step; the
    last step of a run of S steps has weight ``start * (1/S)`` for ``end=0``.
    """

    def __init__(self, start: float = 2.0, end: float = 0.0):
        self.start, self.end = float(start), float(end)

    def value(self, progress):
        return self.start + (self.end - self.start) * progress.fraction


class long_tail(Schedule):
    """The "long tail relaxation schedule" of the paper's Fig. 3a -- our reconstruction.

    The figure is missing from the paper's text, which only says the schedule was designed so that the
    weights of the last 10 epochs differ from the linear schedule's (0.2 -> 0). We read "relaxation" as
    an exponential relaxation, ``start * (end/start) ** fraction``: the weight falls fast early and
    then lingers in a long tail of small, never-zero values (``end`` at the end of the run).
    """

    def __init__(self, start: float = 2.0, end: float = 0.1):
        if start <= 0 or end <= 0:
            raise ValueError(f"long_tail needs start > 0 and end > 0, got start={start}, end={end}")
        self.start, self.end = float(start), float(end)

    def value(self, progress):
        return self.start * (self.end / self.start) ** progress.fraction


class authors_code_weight(Schedule):
    """The weight the authors' public code really applies (all three of its scripts).

    ``w(epoch) = 1`` for ``epoch < 70``, else ``2/3 - epoch/150``, in absolute whole epochs:
    1 at epoch 69, 0.2 at epoch 70 (a 5x drop at once), 0.00667 at 99, 0 at 100, and negative after
    (-0.333 at 150): in a 200-epoch run the second half does gradient ascent. It is not the paper's
    Fig. 2a schedule (linear 2 -> 0); we take it as the best reading of Fig. 4a's "new weighting
    strategy", whose figure is missing. Reproduced faithfully; a negative value is refused by
    :mod:`lossdecay_lib.weighting` unless explicitly allowed.
    """

    def __init__(self, switch_epoch: int = 70, offset: float = 2.0 / 3.0, slope_epochs: float = 150.0):
        self.switch_epoch, self.offset = int(switch_epoch), float(offset)
        self.slope_epochs = float(slope_epochs)

    def value(self, progress):
        epoch = math.floor(progress.epoch + 1e-9)
        return 1.0 if epoch < self.switch_epoch else self.offset - epoch / self.slope_epochs


class constant(Schedule):
    """A constant weight (the baseline of the paper's Fig. 1: "normal training")."""

    def __init__(self, value: float = 1.0):
        self.constant = float(value)

    def value(self, progress):
        return self.constant


def _uniform(seed: int, step: int) -> float:
    # A pure function of (seed, step): resumable from a checkpoint and identical across platforms.
    return random.Random(f"lossdecay:{seed}:{step}").random()


class random_uniform(Schedule):
    """A weight drawn afresh from U(low, high) at every step: Wei (2018), "random gradient".

    The paper cites it (ref. [13]) as its inspiration and promises a comparison. The draw is a pure
    function of ``(seed, step)``, so a resumed run draws the same weights.
    """

    def __init__(self, low: float = 0.0, high: float = 1.0, seed: int = 0):
        if high < low:
            raise ValueError(f"random_uniform needs low <= high, got low={low}, high={high}")
        self.low, self.high, self.seed = float(low), float(high), int(seed)

    def value(self, progress):
        return self.low + (self.high - self.low) * _uniform(self.seed, progress.step)


class random_half(Schedule):
    """The authors' segmentation code: ``inner`` on a random half of the batches, weight 1 on the rest.

    Each step, with ``probability`` (0.5 in their code) the weight is ``inner``'s value, else 1.
    """

    def __init__(self, inner: Schedule, seed: int = 0, probability: float = 0.5):
        if not 0.0 <= probability <= 1.0:
            raise ValueError(f"probability must be in [0, 1], got {probability}")
        self.inner, self.seed, self.probability = inner, int(seed), float(probability)

    def value(self, progress):
        # The authors' code: `if random.random() > 0.5: loss = loss * w`.
        if _uniform(self.seed, progress.step) >= 1.0 - self.probability:
            return self.inner(progress)
        return 1.0


# --------------------------------------------------------------------------------------------------
# Learning-rate schedules (multipliers of a base learning rate)
# --------------------------------------------------------------------------------------------------


class piecewise_constant(Schedule):
    """Step decay: multiply by ``factor`` at each milestone (fractions of the run).

    The paper's "piecewise constant learning rate schedule" (Fig. 4b), which it does not specify; the
    default is the common CIFAR choice, x0.1 at 50% and 75% of training.
    """

    def __init__(self, milestones: Sequence[float] = (0.5, 0.75), factor: float = 0.1):
        ms = tuple(float(m) for m in milestones)
        if any(not 0.0 < m < 1.0 for m in ms) or list(ms) != sorted(ms):
            raise ValueError(
                f"milestones must be increasing fractions of the run in (0, 1), got {milestones}")
        self.milestones, self.factor = ms, float(factor)

    def value(self, progress):
        passed = sum(progress.fraction >= m - 1e-12 for m in self.milestones)
        return self.factor**passed


class poly(Schedule):
    """"poly": ``(1 - iter/max_iter) ** power`` (paper Section III.B, power 0.9; Fig. 2b's "poly")."""

    def __init__(self, power: float = 0.9):
        self.power = float(power)

    def value(self, progress):
        return max(0.0, 1.0 - progress.fraction) ** self.power


class cosine(Schedule):
    """Cosine annealing from 1 to ``final`` over the run (Loshchilov and Hutter 2017): a modern
    baseline."""

    def __init__(self, final: float = 0.0):
        self.final = float(final)

    def value(self, progress):
        return self.final + (1.0 - self.final) * 0.5 * (1.0 + math.cos(math.pi * progress.fraction))


def linear_to_zero() -> Schedule:
    """Linear decay of the learning rate from 1 to 0 over the run: a modern baseline
    (:class:`linear_decay` from 1, the paper's loss-weight shape)."""
    return linear_decay(1.0, 0.0)


class one_cycle(Schedule):
    """One-cycle (Smith and Topin 2017, the paper's ref. [3]) as torch's ``OneCycleLR`` shapes it:
    cosine up from ``1/div_factor`` to 1 over ``peak_fraction`` of the run, then cosine down to
    ``1/(div_factor*final_div_factor)``. Values are relative to the peak learning rate."""

    def __init__(self, peak_fraction: float = 0.3, div_factor: float = 25.0,
                 final_div_factor: float = 1e4):
        if not 0.0 < peak_fraction < 1.0:
            raise ValueError(f"peak_fraction must be in (0, 1), got {peak_fraction}")
        self.peak_fraction = float(peak_fraction)
        self.div_factor, self.final_div_factor = float(div_factor), float(final_div_factor)

    def value(self, progress):
        t, p = progress.fraction, self.peak_fraction
        initial = 1.0 / self.div_factor
        final = initial / self.final_div_factor
        if t < p:
            a, b, u = initial, 1.0, t / p
        else:
            a, b, u = 1.0, final, (t - p) / (1.0 - p)
        return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * min(u, 1.0)))


class constant_then_linear(Schedule):
    """1 until ``start_fraction`` of the run, then linear to 0 at its end: pix2pix's own learning rate.

    pix2pix (Isola et al. 2017; ``--lr_policy linear``, ``--n_epochs 100 --n_epochs_decay 100``) keeps
    the learning rate for the first half of training and decays it linearly to zero over the second.
    """

    def __init__(self, start_fraction: float = 0.5):
        if not 0.0 <= start_fraction < 1.0:
            raise ValueError(f"start_fraction must be in [0, 1), got {start_fraction}")
        self.start_fraction = float(start_fraction)

    def value(self, progress):
        t, s = progress.fraction, self.start_fraction
        return 1.0 if t < s else max(0.0, 1.0 - (t - s) / (1.0 - s))


class per_epoch(Schedule):
    """Hold ``inner`` constant through each epoch, at its value for epoch ``floor(epoch) + offset``.

    The authors' classification code sets its poly learning rate once per epoch, after epoch ``e`` to
    ``(1 - (e + 1)/100) ** 0.9`` for the next one, so during epoch ``e`` it is ``(1 - e/100) ** 0.9``:
    ``per_epoch(poly(0.9))``. ``offset`` shifts the epoch read (``offset=1``: the value one epoch ahead).
    """

    def __init__(self, inner: Schedule, offset: int = 0):
        self.inner, self.offset = inner, int(offset)

    def value(self, progress):
        epoch = math.floor(progress.epoch + 1e-9) + self.offset
        step = epoch * progress.steps_per_epoch
        return self.inner(Progress(max(step, 0), progress.steps_per_epoch, progress.epochs))


class stretched(Schedule):
    """``inner`` as it runs over an ``epochs``-long run, stretched (or squeezed) onto the actual run.

    For schedules written in absolute epochs: the authors' code weight assumes 100 epochs (its cliff is
    at epoch 70), so a 20-epoch run uses ``stretched(authors_code_weight(), 100)``, with its cliff at
    epoch 14.
    """

    def __init__(self, inner: Schedule, epochs: float = 100.0):
        if epochs <= 0:
            raise ValueError(f"epochs must be positive, got {epochs}")
        self.inner, self.epochs = inner, float(epochs)

    def value(self, progress):
        steps_per_epoch = 1000  # fine enough to place every step of the real run
        step = int(math.floor(progress.fraction * self.epochs * steps_per_epoch + 1e-6))
        return self.inner(Progress(step, steps_per_epoch, self.epochs))


# --------------------------------------------------------------------------------------------------
# A weight set from measured curvature instead of by the clock
# --------------------------------------------------------------------------------------------------


class CurvatureAdaptive(Schedule):
    """The loss weight the quadratic model (Eq. 2) asks for, from curvature measured along the run.

    The paper wishes that "the model can automatically decide the time to start death convergence".
    This weight is not a function of the clock: every time the training loop measures ``g^T g`` and
    ``g^T H g`` on its fixed batch (``curvature_every`` steps, see :mod:`lossdecay_lib.tracking`), the
    weight moves towards

        ``w* = g^T g / (eta_eff g^T H g)``,  ``eta_eff = eta / (1 - momentum)``,

    the minimiser of Eq. 2's parabola in ``w``
    (:meth:`lossdecay_lib.curvature.CurvatureMeasurement.optimal_weight`) for a step of heavy-ball SGD's
    effective length, capped at ``max_weight`` (and at ``max_weight`` when
    ``g^T H g <= 0``, where the parabola has no minimum). ``smoothing`` is the weight of the old value
    in an exponential moving average, so one noisy measurement does not set the weight alone. The
    weight starts at ``max_weight``. Between measurements it stays where the last one put it.

    This object is the description only (its repr keys the record): the current weight is run state,
    kept by the loop in a :class:`lossdecay_lib.weighting.AdaptiveWeight`. As a schedule of the clock
    it is its starting weight, ``max_weight``.
    """

    def __init__(self, max_weight: float = 2.0, momentum: float = 0.95, smoothing: float = 0.5):
        if not (math.isfinite(max_weight) and max_weight > 0):
            raise ValueError(f"max_weight must be a positive number, got {max_weight!r}")
        if not 0 <= momentum < 1:
            raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")
        if not 0 <= smoothing < 1:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing!r}")
        self.max_weight, self.momentum, self.smoothing = float(max_weight), float(momentum), float(smoothing)

    def target(self, grad_dot_grad: float, grad_hessian_grad: float, lr: float) -> float:
        """``min(max_weight, w*)`` for one measurement."""
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if grad_hessian_grad <= 0:
            return self.max_weight
        w_star = (1.0 - self.momentum) * grad_dot_grad / (lr * grad_hessian_grad)
        return min(self.max_weight, w_star)

    def value(self, progress):
        return self.max_weight


def curvature_adaptive(max_weight: float = 2.0, momentum: float = 0.95, smoothing: float = 0.5) -> Schedule:
    """A loss weight set from measured curvature (see :class:`CurvatureAdaptive`), at most ``max_weight``."""
    return CurvatureAdaptive(max_weight, momentum, smoothing)



# --------------------------------------------------------------------------------------------------
# Curves and checks
# --------------------------------------------------------------------------------------------------


def curve(schedule: Schedule, epochs: int, steps_per_epoch: int = 1) -> Tuple[list, list]:
    """``(epochs_axis, values)`` at every step of a run, for plots and checks."""
    steps = int(round(epochs * steps_per_epoch))
    xs = [s / steps_per_epoch for s in range(steps)]
    ys = [schedule(Progress(s, steps_per_epoch, epochs)) for s in range(steps)]
    return xs, ys


def check_schedule(schedule: Schedule, epochs: int, steps_per_epoch: int, allow_negative: bool = False) -> float:
    """Refuse, before any training, a schedule that is non-finite or goes negative in this run.

    The authors' code schedule is negative from epoch 101 on: a 200-epoch run with it does gradient
    ascent for 99 epochs. That must be asked for (``allow_negative=True``), never happen by accident.
    Returns the smallest value of the run.
    """
    if epochs <= 0 or steps_per_epoch <= 0:
        raise ValueError(f"epochs and steps_per_epoch must be positive, got {epochs} and {steps_per_epoch}")
    lowest = math.inf
    for step in range(int(round(epochs * steps_per_epoch))):
        p = Progress(step, steps_per_epoch, epochs)
        v = schedule(p)
        lowest = min(lowest, v)
        if not math.isfinite(v):
            raise ValueError(f"schedule {schedule!r} is not finite ({v}) at epoch {p.epoch:g} (step {step})")
        if v < 0 and not allow_negative:
            raise ValueError(
                f"schedule {schedule!r} goes negative ({v:.4g}) at epoch {p.epoch:g} (step {step}) of a "
                f"{epochs}-epoch run: a negative loss weight does gradient ascent. Pass allow_negative=True "
                "to run it anyway (it will be labelled as such)."
            )
    return lowest
