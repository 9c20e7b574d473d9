"""When is multiplying the loss by ``w_t`` the same as multiplying the learning rate by ``w_t``?

The paper (Wei 2019) answers "no" from one experiment (Fig. 4d: "the gradient weight strategy does not
improve by indirectly adjusting the learning rate") and notes in passing that with loss decay "the value
of the weight decay is constantly changing". This module answers exactly, by training the same network
on the same batches twice, with the schedule at two places, and measuring how far the two parameter
trajectories drift apart (in float64, so that "identical" means rounding error).

The answers, each checked by :func:`check_identities` (and a unit test):

- plain SGD: identical, ``theta - lr * (w g) = theta - (lr w) * g``;
- SGD with PyTorch's momentum (``v = mu v + g; p -= lr v``): different, the weight enters the velocity
  while a learning-rate factor multiplies the whole velocity; with heavy-ball momentum, learning rate
  inside the velocity (``v = mu v + lr g``), identical;
- coupled weight decay ``lambda``: loss decay equals learning-rate decay *with the weight decay divided
  by* ``w_t``: ``lr (w g + lambda p) = (lr w)(g + (lambda / w) p)``. As ``w_t -> 0`` the weight decay wins;
- decoupled weight decay (AdamW): different, the decay is outside the gradient and is not scaled;
- Adam: a constant weight changes nothing but ``eps``; a time-varying weight acts only through the lag
  of the moment averages (:func:`adam_step_multiplier`);
- gradient clipping: different; while clipping is active, ``clip(w g) = clip(g)`` and the loss weight
  is erased, whereas a learning-rate factor survives;
- AMP's GradScaler: identical (the scale is a power of two, undone before the step).

Under the paper's own optimizers (:func:`paper_identities`): with the authors' SGD (PyTorch momentum 0.95,
coupled weight decay 1e-4) loss decay is *not* learning-rate decay of the same optimizer, as the paper
says; it is exactly learning-rate decay of heavy-ball SGD (learning rate inside the velocity) with the
weight decay divided by ``w_t``: with ``u = lr v``, ``u <- mu u + (lr w)(g + (lambda / w) p)`` is
``lr (mu v + w g + lambda p)``. Under Adam (pix2pix) it is neither. :func:`equivalence_finding` states
this as the fields of the chapter's claim.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .optimizers import ShadowAdam, build_optimizer
from .schedules import Progress, Schedule, constant, linear_decay
from .weighting import ScheduledWeight, base_settings

__all__ = [
    "Recipe",
    "Trajectory",
    "trajectory",
    "trajectory_gap",
    "Identity",
    "IdentityResult",
    "standard_identities",
    "check_identities",
    "adam_step_multiplier",
    "AdamLagModel",
    "lag_model_multipliers",
    "IDENTICAL_BELOW",
    "PAPER_SGD",
    "PAPER_ADAM",
    "paper_identities",
    "loss_vs_lr",
    "equivalence_finding",
    "seeded",
    "first_batches",
    "IdentitySetup",
    "identity_setup",
]

#: Two trajectories whose relative gap stays below this are "identical" (float64 rounding is ~1e-16).
IDENTICAL_BELOW = 1e-9
#: The authors' classification SGD (their main.py; Sec. III.A): PyTorch's momentum and coupled weight decay.
PAPER_SGD = (("lr", 0.1), ("momentum", 0.95), ("weight_decay", 1e-4))
#: The authors' pix2pix Adam (their pix2pix.py; the text says beta1 = 0.9, the script 0.5).
PAPER_ADAM = (("lr", 2e-4), ("betas", (0.5, 0.999)))

Batches = Sequence[Tuple[torch.Tensor, torch.Tensor]]


def seeded(build: Callable[[], torch.nn.Module], seed: int, dtype: torch.dtype = torch.float64):
    """A model factory that builds the same initial network at every call (for :func:`trajectory`)."""

    def model_fn() -> torch.nn.Module:
        torch.manual_seed(seed)
        return build().to(dtype)

    return model_fn


def first_batches(epochs_of_batches: Callable[[int], Iterable], steps: int) -> List[Tuple[torch.Tensor, torch.Tensor]]:
    """The first ``steps`` batches of a run, epoch after epoch (``epochs_of_batches(e)`` gives epoch e)."""
    if steps < 1:
        raise ValueError(f"steps must be a positive integer, got {steps}")
    out: List[Tuple[torch.Tensor, torch.Tensor]] = []
    for epoch in itertools.count():
        before = len(out)
        for batch in epochs_of_batches(epoch):
            out.append(batch)
            if len(out) == steps:
                return out
        if len(out) == before:
            raise ValueError(f"epoch {epoch} gave no batches: is the data smaller than one batch?")
    raise AssertionError("unreachable")


@dataclass(frozen=True)
class IdentitySetup:
    """What an identity check trains on: the first batches of a run (float64) and a model factory that
    builds the same initial plain network at every call."""

    batches: List[Tuple[torch.Tensor, torch.Tensor]]
    model_fn: Callable[[], torch.nn.Module]
    steps_per_epoch: int
    images: int
    source: str


def identity_setup(sizes, data_root, seed: int, download: bool = False) -> IdentitySetup:
    """The float64 setup of the identity checks (the chapters "Loss decay or learning-rate decay?" and
    "What loss decay changes"): ``sizes.per_class`` CIFAR-10 training images per class, the first
    ``sizes.steps`` batches of ``sizes.batch_size`` (crop and flip as in training), and a PlainNet of
    ``sizes.depth`` layers and ``sizes.width`` channels, all seeded by ``seed``."""
    from .data import CifarBatches, load_cifar10
    from .models import PlainNet

    data = load_cifar10("train", data_root, per_class=sizes.per_class, seed=seed, download=download)
    loader = CifarBatches(data, sizes.batch_size, device="cpu", seed=seed, dtype=torch.float64)
    return IdentitySetup(batches=first_batches(loader.epoch_batches, sizes.steps),
                         model_fn=seeded(lambda: PlainNet(depth=sizes.depth, widths=sizes.width), seed),
                         steps_per_epoch=len(loader), images=len(data), source=data.source)


@dataclass(frozen=True)
class Recipe:
    """How one run is optimised: the optimizer and its settings, where the schedule acts, and extras.

    ``weight_decay_over_weight`` divides the coupled weight decay by ``w_t`` at every step (the right-hand
    side of the weight-decay identity). ``clip_norm`` clips the gradient norm before the step.
    ``grad_scaler`` runs the backward pass through ``torch.amp.GradScaler``.
    """

    optimizer: str
    settings: Dict = field(default_factory=dict)
    place: str = "loss"
    clip_norm: Optional[float] = None
    grad_scaler: bool = False
    weight_decay_over_weight: bool = False

    def describe(self) -> str:
        extras = []
        if self.clip_norm is not None:
            extras.append(f"clip {self.clip_norm:.3g}")
        if self.grad_scaler:
            extras.append("GradScaler")
        if self.weight_decay_over_weight:
            extras.append("weight decay / w")
        s = ", ".join(f"{k}={v}" for k, v in self.settings.items())
        return f"{self.optimizer}({s}) on the {self.place}" + (f" [{'; '.join(extras)}]" if extras else "")


@dataclass
class Trajectory:
    """Flattened parameters after every step (row 0: the initial point) and the weights applied."""

    params: torch.Tensor
    weights: List[float]
    losses: List[float]


def _flat(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in params]).clone()


def trajectory(
    model_fn: Callable[[], torch.nn.Module],
    batches: Batches,
    recipe: Recipe,
    schedule: Schedule,
    steps_per_epoch: int,
) -> Trajectory:
    """Train ``model_fn()`` for one step per batch with ``schedule`` applied as ``recipe`` says.

    ``model_fn`` must build the same initial network at every call (seed inside it); the batches are
    used in order, so two calls see identical data. Cross-entropy loss; the model stays in train mode.
    """
    model = model_fn()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = build_optimizer(recipe.optimizer, params, **recipe.settings)
    weight = ScheduledWeight(schedule, recipe.place, weight_decay_over_weight=recipe.weight_decay_over_weight)
    device = params[0].device
    scaler = torch.amp.GradScaler(device.type, init_scale=2.0**16) if recipe.grad_scaler else None
    base = base_settings(opt)
    epochs = len(batches) / steps_per_epoch

    snapshots, weights, losses = [_flat(params)], [], []
    for step, (x, y) in enumerate(batches):
        w = weight.value(Progress(step, steps_per_epoch, epochs))
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(x), y)
        scaled = weight.scale_loss(loss, w)
        if scaler is not None:
            scaler.scale(scaled).backward()
            scaler.unscale_(opt)
        else:
            scaled.backward()
        if recipe.clip_norm is not None:
            torch.nn.utils.clip_grad_norm_(params, recipe.clip_norm)
        weight.set_lr(opt, base, 1.0, w)  # place "lr": lr x w (and weight decay / w when asked)
        weight.scale_grads(opt, w)
        scaler.step(opt) if scaler is not None else opt.step()
        if scaler is not None:
            scaler.update()
        snapshots.append(_flat(params))
        weights.append(w)
        losses.append(float(loss.detach()))
    return Trajectory(torch.stack(snapshots), weights, losses)


def trajectory_gap(a: Trajectory, b: Trajectory) -> float:
    """Largest distance between the two trajectories, relative to how far ``a`` has travelled.

    ``max_t ||a_t - b_t|| / max_t ||a_t - a_0||``: about 1e-16 when they are the same computation in
    float64, order 1e-2 to 1 when they are different methods.
    """
    travelled = (a.params - a.params[0]).norm(dim=1).max()
    return float((a.params - b.params).norm(dim=1).max() / travelled.clamp_min(1e-300))


@dataclass(frozen=True)
class Identity:
    """A claim that two recipes follow the same trajectory (``expect_identical``) or do not."""

    setting: str
    left: Recipe
    right: Recipe
    expect_identical: bool
    why: str
    left_schedule: Optional[Schedule] = None  # defaults to the schedule passed to check_identities
    right_schedule: Optional[Schedule] = None


@dataclass(frozen=True)
class IdentityResult:
    identity: Identity
    gap: float

    @property
    def identical(self) -> bool:
        return self.gap < IDENTICAL_BELOW

    @property
    def as_expected(self) -> bool:
        return self.identical == self.identity.expect_identical


def standard_identities(lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 5e-3,
                        clip_norm: float = 1.0, adam_lr: float = 1e-3) -> List[Identity]:
    """The identities of the chapter, with the schedule at ``loss`` on the left and ``lr`` on the right."""
    sgd = Recipe("sgd", dict(lr=lr))
    mom = Recipe("sgd", dict(lr=lr, momentum=momentum))
    heavy = Recipe("heavy_ball_sgd", dict(lr=lr, momentum=momentum))
    wd = Recipe("sgd", dict(lr=lr, weight_decay=weight_decay))
    adamw = Recipe("adamw", dict(lr=adam_lr, weight_decay=0.1))
    # eps so small it never matters (a plain 0 would divide 0 by 0 on a dead ReLU's zero gradient).
    adam = Recipe("adam", dict(lr=adam_lr, eps=1e-30))
    clip = Recipe("sgd", dict(lr=lr), clip_norm=clip_norm)
    scaled = Recipe("sgd", dict(lr=lr), grad_scaler=True)
    at = lambda r, place: replace(r, place=place)  # noqa: E731
    return [
        Identity("plain SGD", sgd, at(sgd, "lr"), True, "lr * (w g) = (lr w) * g"),
        Identity("plain SGD, loss vs gradients", sgd, at(sgd, "grad"), True, "backward is linear in the loss"),
        Identity("SGD, PyTorch momentum", mom, at(mom, "lr"), False,
                 "w enters the velocity (v = mu v + w g) but an lr factor scales all of it"),
        Identity("SGD, heavy-ball momentum (lr inside)", heavy, at(heavy, "lr"), True,
                 "v = mu v + (lr w) g either way"),
        Identity("SGD, coupled weight decay", wd, at(wd, "lr"), False,
                 "the decay term lambda p is not weighted by the loss weight"),
        Identity("SGD, coupled weight decay / w on the lr side", wd, replace(at(wd, "lr"), weight_decay_over_weight=True), True,
                 "lr (w g + lambda p) = (lr w)(g + (lambda/w) p)"),
        Identity("AdamW, decoupled weight decay", adamw, at(adamw, "lr"), False,
                 "Adam normalises w away; the decay lr*lambda*p is unscaled"),
        Identity("Adam, constant weight 0.1 vs no weight", adam, adam, True,
                 "m / sqrt(v) is invariant to a constant gradient scale (up to eps)",
                 left_schedule=constant(0.1), right_schedule=constant(1.0)),
        Identity("Adam, decaying weight", adam, at(adam, "lr"), False,
                 "the weight acts only through the lag of the moment averages"),
        Identity("SGD, gradient clipping", clip, at(clip, "lr"), False,
                 "while clipping is active clip(w g) = clip(g): the loss weight is erased"),
        Identity("SGD, gradient clipping, gradients vs lr", at(clip, "grad"), at(clip, "lr"), True,
                 "the gradient place acts after clipping"),
        Identity("SGD, AMP GradScaler", scaled, at(scaled, "lr"), True,
                 "the scale is a power of two, undone before the step"),
    ]


def paper_identities(sgd=PAPER_SGD, adam=PAPER_ADAM) -> List[Identity]:
    """The identities under the paper's own optimizers (loss on the left): its SGD against the same SGD
    with the schedule on the learning rate (different), against heavy-ball SGD with the schedule on the
    learning rate and the weight decay divided by ``w_t`` (identical: the identity that does hold), and
    its Adam against the same Adam with the schedule on the learning rate (different)."""
    paper = Recipe("sgd", dict(sgd))
    heavy = Recipe("heavy_ball_sgd", dict(sgd), place="lr", weight_decay_over_weight=True)
    pix2pix = Recipe("adam", dict(adam))
    return [
        Identity("paper's SGD (PyTorch momentum, coupled weight decay)", paper, replace(paper, place="lr"), False,
                 "w enters the velocity and leaves the decay term lambda p unweighted; an lr factor scales both"),
        Identity("paper's SGD vs heavy-ball SGD, weight decay / w on the lr side", paper, heavy, True,
                 "with u = lr v: u <- mu u + (lr w)(g + (lambda/w) p) = lr (mu v + w g + lambda p)"),
        Identity("paper's Adam (pix2pix)", pix2pix, replace(pix2pix, place="lr"), False,
                 "Adam normalises w away except through the lag of its averages"),
    ]


def check_identities(
    model_fn: Callable[[], torch.nn.Module],
    batches: Batches,
    schedule: Optional[Schedule] = None,
    steps_per_epoch: Optional[int] = None,
    identities: Optional[Sequence[Identity]] = None,
) -> List[IdentityResult]:
    """Run both sides of each identity on the same network and batches; return the measured gaps.

    ``schedule`` defaults to the paper's ``linear_decay(start=2.0)`` over the batches given.
    """
    schedule = schedule or linear_decay(2.0)
    steps_per_epoch = steps_per_epoch or len(batches)
    identities = identities if identities is not None else standard_identities()
    results, threads = [], torch.get_num_threads()
    torch.set_num_threads(1)  # gaps of 1e-14 depend on the order of parallel sums: one thread repeats them
    try:
        for ident in identities:
            a = trajectory(model_fn, batches, ident.left, ident.left_schedule or schedule, steps_per_epoch)
            b = trajectory(model_fn, batches, ident.right, ident.right_schedule or schedule, steps_per_epoch)
            results.append(IdentityResult(ident, trajectory_gap(a, b)))
    finally:
        torch.set_num_threads(threads)
    return results


class AdamLagModel:
    """The step multiplier a loss weight ``w_t`` gives Adam when the gradients' scale is stationary.

    Adam's bias-corrected averages of ``w g`` divide into ``EMA_beta1(w) / sqrt(EMA_beta2(w^2))`` times
    the unweighted step: :meth:`update` takes this step's weight and returns that prediction. A constant
    weight gives 1; the weight matters only while it changes faster than the averages forget.
    """

    def __init__(self, betas: Tuple[float, float] = (0.9, 0.999)):
        self.b1, self.b2 = betas
        self.t, self.ema_w, self.ema_w2 = 0, 0.0, 0.0

    def update(self, w: float) -> float:
        self.t += 1
        self.ema_w = self.b1 * self.ema_w + (1 - self.b1) * w
        self.ema_w2 = self.b2 * self.ema_w2 + (1 - self.b2) * w * w
        c1, c2 = 1 - self.b1**self.t, 1 - self.b2**self.t
        return (self.ema_w / c1) / max((self.ema_w2 / c2) ** 0.5, 1e-300)

    def state_dict(self) -> Dict:
        return {"t": self.t, "ema_w": self.ema_w, "ema_w2": self.ema_w2}

    def load_state_dict(self, state: Dict) -> None:
        self.t, self.ema_w, self.ema_w2 = int(state["t"]), float(state["ema_w"]), float(state["ema_w2"])


def lag_model_multipliers(weight: Schedule, epochs: int, steps_per_epoch: int,
                          betas: Tuple[float, float] = (0.9, 0.999), place: str = "loss",
                          lr_schedule: Optional[Schedule] = None) -> List[float]:
    """The lag model's step multiplier at every step of a run (no training: a prediction for any scale).

    ``place="loss"`` (or ``"grad"``): the weight passes through Adam's averages,
    ``lr factor x EMA_beta1(w) / sqrt(EMA_beta2(w^2))``; ``place="lr"``: ``lr factor x w``.
    """
    lag = AdamLagModel(betas)
    out = []
    for step in range(int(round(epochs * steps_per_epoch))):
        p = Progress(step, steps_per_epoch, epochs)
        w = weight(p)
        lr_factor = lr_schedule(p) if lr_schedule is not None else 1.0
        out.append(lr_factor * (w if place == "lr" else lag.update(w)))
    return out


@dataclass
class AdamMultiplier:
    """Per step: the loss weight ``w``, the measured step multiplier, and the lag-model prediction."""

    weights: List[float]
    measured: List[float]
    predicted: List[float]
    final_params: Optional[torch.Tensor] = None  # flattened, after the last step


def adam_step_multiplier(
    model_fn: Callable[[], torch.nn.Module],
    batches: Batches,
    schedule: Schedule,
    steps_per_epoch: Optional[int] = None,
    lr: float = 1e-3,
    betas: Tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
) -> AdamMultiplier:
    """How much a loss weight really changes Adam's steps.

    Trains with loss decay under Adam, and beside it keeps a shadow Adam state fed the *unweighted*
    gradients of the same trajectory. The measured multiplier at step t is ``||update_w|| /
    ||update_1||``: what the weight did to the step, compared with the learning-rate decay's exact
    ``w_t``. For gradients of stationary scale, Adam's bias-corrected averages predict
    ``EMA_beta1(w) / sqrt(EMA_beta2(w^2))``: the weight matters only while it changes faster than the
    averages forget (``1/(1 - beta2)`` = 1000 steps by default).
    """
    steps_per_epoch = steps_per_epoch or len(batches)
    epochs = len(batches) / steps_per_epoch
    model = model_fn()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    weighted, unweighted = (ShadowAdam(params, lr, betas, eps) for _ in range(2))
    lag = AdamLagModel(betas)
    out = AdamMultiplier([], [], [], None)
    for t, (x, y) in enumerate(batches, start=1):
        w = schedule(Progress(t - 1, steps_per_epoch, epochs))
        grads = torch.autograd.grad(F.cross_entropy(model(x), y), params)
        weighted.update(grads, w)
        unweighted.update(grads)
        upd_w, upd_1 = weighted.step_direction(), unweighted.step_direction()
        with torch.no_grad():
            torch._foreach_sub_(params, upd_w)
        out.weights.append(w)
        out.measured.append(float(_flat(upd_w).norm() / _flat(upd_1).norm().clamp_min(1e-300)))
        out.predicted.append(lag.update(w))
    out.final_params = _flat(params)
    return out


def loss_vs_lr(result: IdentityResult) -> bool:
    """Whether an identity compares the schedule on the loss with the same schedule on the learning rate
    of the same optimizer and settings (nothing else changed): only these say "identical to lr decay"."""
    left, right = result.identity.left, result.identity.right
    return (left.place == "loss" and right.place == "lr" and replace(right, place="loss") == left
            and result.identity.left_schedule is None and result.identity.right_schedule is None)


def equivalence_finding(standard: Sequence[IdentityResult], paper: Sequence[IdentityResult]) -> Dict:
    """The fields of the equivalence chapter's claims (Sec. III.A, Fig. 4d: "Whether this method can be
    approximated to adjust the learning rate? The answer is negative."), from the measured gaps.

    ``paper`` holds :func:`paper_identities`' three results in their order. Returns ``finding`` (for
    the claim), ``loss_differs`` (loss decay differs from lr decay under both of the paper's optimizers)
    and ``identity_holds`` (the heavy-ball identity holds under the paper's SGD)."""
    sgd, heavy, adam = paper
    same = [r.identity.setting for r in standard if loss_vs_lr(r) and r.identical]
    differ = [r.identity.setting for r in standard if loss_vs_lr(r) and not r.identical]
    finding = {
        "paper's SGD, schedule on the loss vs on the lr": f"{'identical' if sgd.identical else 'different'} "
                                                          f"(gap {sgd.gap:.1e})",
        "paper's SGD on the loss vs heavy-ball SGD on the lr with weight decay lambda / w_t":
            f"{'identical' if heavy.identical else 'different'} (gap {heavy.gap:.1e})",
        "paper's Adam, loss vs lr": f"{'identical' if adam.identical else 'different'} (gap {adam.gap:.1e})",
        "identical to lr decay (loss vs lr, same optimizer)": same,
        "different from lr decay (loss vs lr, same optimizer)": differ,
        "identical below": f"{IDENTICAL_BELOW:.0e} (float64 trajectories, relative gap)",
    }
    return {"finding": finding, "loss_differs": not sgd.identical and not adam.identical,
            "identity_holds": heavy.identical}
