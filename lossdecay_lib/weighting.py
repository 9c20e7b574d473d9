"""One mechanism to apply a schedule to the loss, the gradients or the learning rate.

The paper (Wei 2019, Section II.A, Eq. 1) keeps the learning rate fixed and multiplies the loss by a
weight ``w_t``; it then writes "gradient weight" for the same thing. Whether that equals multiplying the
learning rate by ``w_t`` depends on the optimizer (see the chapter "Loss decay or learning-rate decay?"
and :mod:`lossdecay_lib.equivalence`). To compare the three honestly they must differ by one argument:

>>> weight = ScheduledWeight(linear_decay(start=2.0), place="loss")       # the paper
>>> weight = ScheduledWeight(linear_decay(start=2.0), place="lr")         # the same on the learning rate

and a training step reads, whatever the place::

    w = weight.value(progress)
    lr = weight.set_lr(optimizer, base, lr_factor, w)   # the one writer of the learning rate
    optimizer.zero_grad()
    weight.scale_loss(loss, w).backward()               # place "loss": w * loss
    weight.scale_grads(optimizer, w)                     # place "grad": w * g
    optimizer.step()

``place="loss"`` multiplies the loss before backward (everything downstream sees scaled gradients:
gradient clipping, AMP's GradScaler, Adam's moment estimates). ``place="grad"`` multiplies the gradients
just before the optimizer step (after any clipping). ``place="lr"`` multiplies every parameter group's
learning rate for that step: :meth:`ScheduledWeight.set_lr` writes ``base x lr schedule x w``, and is the
only code that writes the learning rate.

``weight_decay_over_weight=True`` (place ``"lr"`` only) also divides every group's coupled weight decay
by ``w_t`` for that step: the right-hand side of the identity that makes loss weighting with coupled
weight decay ``lambda`` into learning-rate weighting, ``lr (w g + lambda p) = (lr w)(g + (lambda/w) p)``
(chapter "Weight decay amplified by 1/w_t"). It needs ``w_t > 0`` at every step.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

import torch

from .schedules import CurvatureAdaptive, Progress, Schedule, check_schedule

__all__ = ["PLACES", "ScheduledWeight", "AdaptiveWeight", "NegativeWeightError", "base_settings",
           "check_place", "check_weight_decay_over_weight", "decay_per_step"]

PLACES = ("loss", "grad", "lr")


def check_place(place) -> str:
    """``place`` if it is one of :data:`PLACES`, else an error listing them."""
    if place not in PLACES:
        raise ValueError(f"unknown place {place!r}; a schedule can act on one of: {', '.join(PLACES)}")
    return place


def check_weight_decay_over_weight(flag, place) -> bool:
    """``flag`` if it is a bool that fits ``place``; else a one-line error (the option acts on the lr only)."""
    if not isinstance(flag, bool):
        raise ValueError(f"weight_decay_over_weight must be True or False, got {flag!r}")
    if flag and place != "lr":
        raise ValueError(f"weight_decay_over_weight divides the weight decay by the weight applied to the "
                         f"learning rate: it needs place 'lr', got {place!r}")
    return flag


def decay_per_step(config, lr: float, weight: float) -> float:
    """The fraction of the weights that SGD's coupled weight decay removes in one step (before momentum
    multiplies it by up to ``1 / (1 - mu)``), for a run described by ``config`` (a record's
    ``"config"``), at learning rate ``lr`` and weight ``weight``.

    The loss and gradient places leave the decay term unweighted, ``lr lambda`` (the paper's Eq. 1 with
    coupled decay: ``lr (w g + lambda p)``); the lr place weights it, ``lr w lambda``; with
    ``weight_decay_over_weight`` the lr place divides it back, ``(lr w)(lambda / w) = lr lambda``.
    """
    if config["optimizer"] not in ("sgd", "heavy_ball_sgd"):
        raise ValueError(f"decay_per_step is SGD's coupled weight decay; got optimizer {config['optimizer']!r}")
    decay = lr * dict(config["optimizer_settings"]).get("weight_decay", 0.0)
    if config["weight_place"] == "lr" and not config.get("weight_decay_over_weight", False):
        decay *= weight
    return decay


class NegativeWeightError(ValueError):
    """A schedule produced a negative or non-finite weight where that was not allowed."""


class ScheduledWeight:
    """A schedule and where it acts: ``"loss"``, ``"grad"`` or ``"lr"``.

    ``allow_negative`` must be set to run a schedule that goes negative (the authors' code schedule
    after epoch 100); records of such runs are labelled. ``weight_decay_over_weight``: see the module
    docstring (place ``"lr"`` only; refuses a weight that reaches 0). A
    :class:`~lossdecay_lib.schedules.CurvatureAdaptive` schedule gets its run state here
    (:attr:`adaptive`, an :class:`AdaptiveWeight`): one per run, checkpointed by the loop.
    """

    def __init__(self, schedule: Schedule, place: str = "loss", allow_negative: bool = False,
                 weight_decay_over_weight: bool = False):
        if not isinstance(schedule, Schedule):
            raise TypeError(f"schedule must be a lossdecay_lib.schedules.Schedule, "
                            f"got {type(schedule).__name__}")
        check_place(place)
        check_weight_decay_over_weight(weight_decay_over_weight, place)
        self.schedule, self.place, self.allow_negative = schedule, place, bool(allow_negative)
        self.weight_decay_over_weight = weight_decay_over_weight
        adaptive = isinstance(schedule, CurvatureAdaptive)
        self.adaptive: Optional[AdaptiveWeight] = AdaptiveWeight(schedule) if adaptive else None

    def __repr__(self):
        extra = ", weight_decay_over_weight=True" if self.weight_decay_over_weight else ""
        return (f"ScheduledWeight({self.schedule!r}, place={self.place!r}, "
                f"allow_negative={self.allow_negative}{extra})")

    def check(self, epochs: int, steps_per_epoch: int) -> float:
        """Validate the whole run's weights before any work starts; return the lowest
        (see :func:`check_schedule`)."""
        lowest = check_schedule(self.schedule, epochs, steps_per_epoch, self.allow_negative)
        if self.weight_decay_over_weight and not lowest > 0:
            raise ValueError(f"weight_decay_over_weight divides the weight decay by w_t, but "
                             f"{self.schedule!r} reaches {lowest:.4g} in this run: it needs a weight "
                             f"> 0 at every step")
        return lowest

    def value(self, progress: Progress) -> float:
        """The weight for this step; refuses a non-finite one, and a negative one unless allowed."""
        w = self.adaptive.current if self.adaptive is not None else self.schedule(progress)
        if not math.isfinite(w) or (w < 0 and not self.allow_negative):
            raise NegativeWeightError(
                f"weight {w!r} from {self.schedule!r} at epoch {progress.epoch:g} (step "
                f"{progress.step}); negative weights need allow_negative=True")
        return w

    def set_lr(self, optimizer: torch.optim.Optimizer, base: Sequence[Dict], lr_factor: float,
               w: float) -> float:
        """Write every group's learning rate for this step, the one place that does: ``base lr x
        lr_factor`` (the learning-rate schedule), times ``w`` at place ``"lr"`` (and weight decay
        ``lambda / w`` with ``weight_decay_over_weight``). ``base``: :func:`base_settings`, read
        before training. Returns the scheduled learning rate of the first group (without ``w``)."""
        for g, b in zip(optimizer.param_groups, base):
            g["lr"] = b["lr"] * lr_factor * w if self.place == "lr" else b["lr"] * lr_factor
            if self.weight_decay_over_weight:
                g["weight_decay"] = b["weight_decay"] / w  # lambda / w_t: see the module docstring
        return base[0]["lr"] * lr_factor

    def scale_loss(self, loss: torch.Tensor, w: float) -> torch.Tensor:
        """The loss to backpropagate: ``w * loss`` when the weight acts on the loss, else ``loss``."""
        return loss * w if self.place == "loss" else loss

    @torch.no_grad()
    def scale_grads(self, optimizer: torch.optim.Optimizer, w: float) -> None:
        """Multiply the gradients by ``w`` when the weight acts on them (call just before the step,
        after any clipping); else nothing."""
        if self.place == "grad":
            grads = [p.grad for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, w)


def base_settings(optimizer: torch.optim.Optimizer) -> List[Dict]:
    """Each group's base learning rate and weight decay, read once before training (and before a
    checkpoint's optimizer state, which holds the last step's values, is loaded)."""
    return [{"lr": g["lr"], "weight_decay": g.get("weight_decay", 0.0)} for g in optimizer.param_groups]


class AdaptiveWeight:
    """The run state of a :class:`~lossdecay_lib.schedules.CurvatureAdaptive` weight: the current
    weight, starting at ``max_weight``, moved by every curvature measurement of the run.

    The schedule stays a frozen description (its repr keys the record); this object is created per
    run by :class:`ScheduledWeight` and saved in the run's checkpoints (key ``"weight"``).
    """

    def __init__(self, schedule: CurvatureAdaptive):
        self.schedule, self.current = schedule, schedule.max_weight

    def observe(self, grad_dot_grad: float, grad_hessian_grad: float, lr: float) -> float:
        """Move the weight towards the schedule's target for one measurement (an exponential moving
        average with the schedule's ``smoothing``); returns the new weight."""
        t = self.schedule.target(grad_dot_grad, grad_hessian_grad, lr)
        if math.isfinite(t):
            s = self.schedule.smoothing
            self.current = s * self.current + (1.0 - s) * t
        return self.current

    def state_dict(self) -> Dict:
        return {"current": self.current}

    def load_state_dict(self, state: Dict) -> None:
        self.current = float(state["current"])
