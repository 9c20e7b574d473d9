"""The classification training loop: one loop for every schedule, place and optimizer of the book.

A run is described by a :class:`ClassificationConfig` (network, data sizes, optimizer, the loss-weight
schedule and where it acts, the learning-rate schedule, seed, profile). :func:`train_classifier`
validates it before any work, trains (:func:`train_epoch`), evaluates on the test split after every
epoch (:func:`evaluate`), and writes a run record (:mod:`lossdecay_lib.runs`) keyed by the
configuration, so executing a chapter again loads finished runs instead of training them again.

The weighted step (paper Eq. 1) is written out in :func:`train_epoch`: the weight for this progress,
the learning rate set, ``zero_grad``, the weighted loss's ``backward()``, the step. Metrics accumulate
on the device; the host reads them once per epoch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Dict, Optional, Tuple

import torch
import torch.nn.functional as F

from .loop import EpochSums, NonFiniteWatch, RecordedRun, RunConfig
from ..tracking import CurvatureTracker
from ..models import MODEL_NAMES, build_model, channels_last_is_safe, weight_layers
from ..optimizers import build_optimizer, check_optimizer_name
from ..profiles import resolve_device
from ..data.seeding import seed_everything
from ..schedules import CurvatureAdaptive, Progress, Schedule, constant
from ..checks import check_name, check_non_negative_int
from ..weighting import ScheduledWeight, base_settings, check_weight_decay_over_weight

__all__ = ["AUTHORS_SGD", "ClassificationConfig", "train_classifier", "train_epoch", "evaluate"]

#: The optimizer of the authors' classification script (their text does not give one): SGD with
#: learning rate 0.1, momentum 0.95 and (coupled) weight decay 1e-4.
AUTHORS_SGD: Tuple[Tuple[str, object], ...] = (("lr", 0.1), ("momentum", 0.95), ("weight_decay", 1e-4))


@dataclass(frozen=True)
class ClassificationConfig(RunConfig):
    """Everything that defines a classification run (and so its record's key).

    ``weight`` is the loss-weight schedule (``constant(1.0)``: ordinary training), applied at
    ``weight_place`` (``"loss"``, ``"grad"`` or ``"lr"``); ``weight_decay_over_weight`` (place ``"lr"``
    only) divides the coupled weight decay by ``w_t`` at every step, the learning-rate side of the
    identity ``lr (w g + lambda p) = (lr w)(g + (lambda / w) p)``. ``lr_schedule`` multiplies the base learning
    rate (``optimizer_settings["lr"]``). ``train_per_class``/``test_per_class`` select class-balanced
    subsets (``None``: the whole split); the subsets are drawn with seed 0 for every run, so seeds vary
    the initialisation, batch order and augmentation, not the data.
    """

    profile: str
    model: str = "plain"
    model_settings: Tuple[Tuple[str, object], ...] = (("depth", 20),)
    train_per_class: Optional[int] = None
    test_per_class: Optional[int] = None
    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    optimizer_settings: Tuple[Tuple[str, object], ...] = (("lr", 0.05), ("momentum", 0.9), ("weight_decay", 5e-4))
    weight: Schedule = field(default_factory=constant)
    weight_place: str = "loss"
    lr_schedule: Schedule = field(default_factory=constant)
    allow_negative: bool = False
    seed: int = 0
    augment: bool = True
    curvature_every: int = 0  # measure Eq. 2's terms every this many steps (0: never); see tracking.py
    sharpness_every: int = 0  # also the top Hessian eigenvalue at every k-th of those measurements
    curvature_batch: int = 0  # images in the fixed measurement batch (0: batch_size); cost scales with it
    precision: str = "fp32"  # "bf16": forward under bf16 autocast; the loss and its weight stay fp32
    compile: bool = False  # torch.compile the network for training (off: eager, the default)
    image_size: int = 32  # images average-pooled to this side after augmentation (train, test, measurement)
    weight_decay_over_weight: bool = False  # place "lr": weight decay lambda / w_t (see weighting.py)
    label: str = ""  # a reader's name for the run in figures; not part of the key

    _KEY_DEFAULTS = {"curvature_every": 0, "sharpness_every": 0, "curvature_batch": 0, "precision": "fp32",
                     "compile": False, "image_size": 32, "weight_decay_over_weight": False}
    _POSITIVE = ("epochs", "batch_size")
    _OPTIONAL = {"train_per_class": "", "test_per_class": ""}
    PRECISIONS = ("fp32", "bf16")

    def check(self) -> None:
        check_name(self.model, MODEL_NAMES, "network")
        check_optimizer_name(self.optimizer)
        check_weight_decay_over_weight(self.weight_decay_over_weight, self.weight_place)
        if self.weight_decay_over_weight and not dict(self.optimizer_settings).get("weight_decay", 0) > 0:
            raise ValueError("weight_decay_over_weight divides the coupled weight decay by w_t: it needs "
                             "optimizer_settings with weight_decay > 0")
        for name in ("curvature_every", "sharpness_every", "curvature_batch"):
            check_non_negative_int(name, getattr(self, name))
        check_name(self.precision, self.PRECISIONS, "precision")
        if self.image_size not in (8, 16, 32):
            raise ValueError(f"image_size must be 8, 16 or 32 (CIFAR-10's 32 pixels average-pooled), "
                             f"got {self.image_size!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be True or False, got {self.compile!r}")
        if isinstance(self.weight, CurvatureAdaptive) and not self.curvature_every:
            raise ValueError(f"{self.weight!r} sets the weight from measured curvature: it needs "
                             "curvature_every > 0")
        if "lr" not in dict(self.optimizer_settings):
            raise ValueError("optimizer_settings must include the base learning rate 'lr'")
        build_model(self.model, **dict(self.model_settings))  # raises on a depth the network cannot build

    @classmethod
    def profile_fields(cls, prof, depth: Optional[int] = None, curvature: bool = False) -> Dict:
        """A plain-network run at the sizes of ``profile`` (see :mod:`lossdecay_lib.profiles`), with the
        authors' SGD; ``depth`` defaults to the profile's first depth; ``changes`` override fields.

        ``curvature=True`` takes the sizes of the profile's curvature section instead, and measures
        curvature along the run as that section says.
        """
        sizes = prof.classification
        fields = dict(
            model="plain",
            model_settings=(("depth", depth or sizes.depths[0]), ("widths", sizes.width)),
            train_per_class=sizes.train_per_class, test_per_class=sizes.test_per_class,
            epochs=sizes.epochs, batch_size=sizes.batch_size,
            optimizer="sgd", optimizer_settings=AUTHORS_SGD, image_size=sizes.image_size,
            curvature_every=sizes.curvature_every, sharpness_every=sizes.sharpness_every,
            curvature_batch=sizes.measure_batch,
        )
        if curvature:
            c = prof.curvature
            fields.update(model_settings=(("depth", depth or c.depth), ("widths", c.width)),
                          train_per_class=c.train_per_class, epochs=c.epochs, batch_size=c.batch_size,
                          curvature_every=c.every, sharpness_every=c.sharpness_every,
                          curvature_batch=c.measure_batch, image_size=c.image_size)
        return fields


def _setup(config: ClassificationConfig, data_root, dev) -> SimpleNamespace:
    """Data, network, optimizer, weight and curvature tracker of a run, in the order that fixes its
    random numbers."""
    from ..data import CifarBatches, load_cifar10

    train = load_cifar10("train", data_root, per_class=config.train_per_class, seed=0, download=True)
    test = load_cifar10("test", data_root, per_class=config.test_per_class, seed=0, download=True)
    # channels_last wherever it is safe (models.channels_last_is_safe); decided before seeding, so the
    # probe network does not change the run's random numbers.
    channels_last = channels_last_is_safe(build_model(config.model, **dict(config.model_settings)), dev)
    seed_everything(config.seed)
    batches = dict(device=dev, channels_last=channels_last, pool=32 // config.image_size)
    train_batches = CifarBatches(train, config.batch_size, seed=config.seed, augment=config.augment, **batches)
    test_batches = CifarBatches(test, 500, train=False, **batches)
    steps_per_epoch = len(train_batches)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {config.batch_size} is larger than the {len(train)} training images")
    weight = ScheduledWeight(config.weight, config.weight_place, config.allow_negative,
                             config.weight_decay_over_weight)
    lowest_weight = weight.check(config.epochs, steps_per_epoch)
    model = build_model(config.model, **dict(config.model_settings)).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config.optimizer, model.parameters(), **dict(config.optimizer_settings))
    layers = weight_layers(model)
    t = SimpleNamespace(
        device=dev, train_batches=train_batches, test_batches=test_batches,
        steps_per_epoch=steps_per_epoch, model=model, optimizer=optimizer, base=base_settings(optimizer),
        weight=weight, layer_weights=[layer.weight for _, layer in layers], tracker=None,
        schedule_free=hasattr(optimizer, "train") and callable(getattr(optimizer, "eval", None)),
        # bf16 autocast rounds the forward pass only: the loss, the weight that multiplies it, the
        # gradients and the optimizer state stay fp32, so no GradScaler is needed.
        autocast=torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.precision == "bf16"),
        forward=torch.compile(model) if config.compile else model,
        facts={"data": {"train_images": len(train), "test_images": len(test), "source": train.source,
                        "steps_per_epoch": steps_per_epoch},
               "layers": [name for name, _ in layers], "negative_weights": lowest_weight < 0})
    t.stateful = dict(model=model, optimizer=optimizer)
    if weight.adaptive is not None:  # the adaptive weight's run state (weighting.AdaptiveWeight)
        t.stateful["weight"] = weight.adaptive
    if config.curvature_every:
        fixed = CifarBatches(train, config.curvature_batch or config.batch_size, train=False, **batches)
        t.tracker = CurvatureTracker(model, next(iter(fixed)), config.curvature_every, config.sharpness_every)
        t.stateful["curvature"] = t.tracker
    return t


def train_epoch(config: ClassificationConfig, t: SimpleNamespace, epoch: int, step: int,
                run: RecordedRun) -> Tuple[Dict, NonFiniteWatch]:
    """One epoch of weighted steps (paper Eq. 1) from global ``step``: the means of its steps (and the
    correct and seen images) and its non-finite watch."""
    t.model.train()
    if t.schedule_free:
        t.optimizer.train()
    n = len(t.layer_weights)
    sums = EpochSums(t.device, loss=(), weighted_loss=(), correct=(), grad_norm=(), images=(),
                     layer_grad_norms=n, layer_effective_steps=n)
    watch = NonFiniteWatch(t.device)
    for x, y in t.train_batches.epoch_batches(epoch):
        measure = t.tracker is not None and t.tracker.due(step)
        if measure:
            t.tracker.before_step()
        with t.autocast:
            logits = t.forward(x)
        loss = F.cross_entropy(logits.float(), y)  # fp32 loss: the weight scales the unrounded loss
        before = [p.detach().clone() for p in t.layer_weights]
        progress = Progress(step, t.steps_per_epoch, config.epochs)
        w = t.weight.value(progress)  # the weight for this step
        lr = t.weight.set_lr(t.optimizer, t.base, config.lr_schedule(progress), w)  # x w at place "lr"
        t.optimizer.zero_grad(set_to_none=True)
        t.weight.scale_loss(loss, w).backward()  # w x loss at place "loss"
        norms = torch.stack(torch._foreach_norm([p.grad for p in t.layer_weights]))
        grad_norm = torch.linalg.vector_norm(norms).double()
        t.weight.scale_grads(t.optimizer, w)  # w x gradient at place "grad"
        t.optimizer.step()
        with torch.no_grad():
            moved = torch._foreach_norm(torch._foreach_sub([p.detach() for p in t.layer_weights], before))
            effective = (torch.stack(moved) / torch.stack(torch._foreach_norm(before))).double()
        if measure:
            row = t.tracker.after_step(step, epoch, w, lr)
            if t.weight.adaptive is not None:
                t.weight.adaptive.observe(row["gTg"], row["gTHg"], lr)
        watch.observe(step, loss, grad_norm)
        sums.add(loss=loss.detach().double(), correct=(logits.argmax(1) == y).sum(), images=y.numel(),
                 weighted_loss=loss.detach().double() * (w if config.weight_place == "loss" else 1.0),
                 grad_norm=grad_norm, layer_grad_norms=norms.double(), layer_effective_steps=effective)
        run.log_step(w, lr)
        step += 1
    schedule = run.epoch_schedule()
    return dict(sums.means(schedule["steps"], "correct", "images"), **schedule), watch


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches) -> Tuple[float, float]:
    """Mean cross-entropy and accuracy of ``model`` (in eval mode) over ``batches``."""
    model.eval()
    total = torch.zeros(3, device=next(model.parameters()).device, dtype=torch.float64)
    for x, y in batches:
        logits = model(x)
        total[0] += F.cross_entropy(logits, y, reduction="sum").double()
        total[1] += (logits.argmax(1) == y).sum()
        total[2] += y.numel()
    loss, correct, count = total.tolist()
    return loss / count, correct / count


@torch.no_grad()
def _refresh_batch_norm(model, batches, max_batches: int = 20) -> None:
    # Schedule-Free evaluates at an average of the iterates: batch-norm statistics must be recomputed
    # there (the schedulefree package's documented procedure) before evaluating.
    model.train()
    for i, (x, _) in enumerate(batches):
        if i == max_batches:
            break
        model(x)


def train_classifier(config: ClassificationConfig, data_root=None, device: str = "auto", store=None,
                     force: bool = False, progress: bool = True, checkpoint_every: int = 1) -> Dict:
    """Train (or load) one run and return its record (a JSON-ready dict).

    ``store`` is a :class:`lossdecay_lib.runs.RunStore` (default: the checkout's ``records/``); a
    finished record with the same key is returned as is unless ``force``. Every ``checkpoint_every``
    epochs the run is checkpointed beside its record (``<key>.ckpt.pt``); rerunning an interrupted
    configuration resumes from there (``force`` starts afresh). A CPU run resumed after a kill ends
    with the same record as an uninterrupted one.
    """
    run = RecordedRun.for_config(config, store, force=force, checkpoint_every=checkpoint_every)
    if run.finished is not None:
        return run.finished
    dev = resolve_device(device)
    t = _setup(config, data_root, dev)
    record = run.new_record("classification", config, dev)
    record.update(t.facts)
    start_epoch, step, record = run.resume(record, **t.stateful)
    if t.tracker is not None:
        t.tracker.rows[:] = record.get("curvature", [])
        record["curvature"] = t.tracker.rows
    run.show_progress(config.epochs * t.steps_per_epoch, f"{config.label or config.model}, seed {config.seed}",
                       progress, done=step)
    for epoch in range(start_epoch, config.epochs):
        train, watch = train_epoch(config, t, epoch, step, run)
        step += t.steps_per_epoch
        if watch.first() is not None:
            return run.diverge(record, epoch, watch.first(), step)
        if t.schedule_free:  # evaluated at the averaged iterate: batch-norm statistics recomputed there
            t.optimizer.eval()
            _refresh_batch_norm(t.model, t.train_batches.epoch_batches(epoch))
        test_loss, test_acc = evaluate(t.model, t.test_batches)
        record["epochs"].append({
            "epoch": epoch, "train_loss": train["loss"], "train_loss_weighted": train["weighted_loss"],
            "train_acc": train["correct"] / train["images"], "test_loss": test_loss, "test_acc": test_acc,
            "weight_mean": train["weight_mean"], "lr_mean": train["lr_mean"], "grad_norm": train["grad_norm"],
            "layer_grad_norms": train["layer_grad_norms"],
            # issue 19: per layer, the weight norm at the epoch's end and the mean effective step (the
            # update's norm over the weights' norm: the angular step of a scale-invariant layer)
            "layer_weight_norms": torch.stack(torch._foreach_norm([p.detach() for p in t.layer_weights])).tolist(),
            "layer_effective_steps": train["layer_effective_steps"],
            "seconds": run.elapsed})
        run.bar.set_postfix(test_acc=f"{test_acc:.3f}")
        run.end_epoch(record, epoch, config.epochs, step, **t.stateful)
    accs = [e["test_acc"] for e in record["epochs"]]
    return run.finish(record, {
        "final_test_acc": accs[-1],
        "best_test_acc_over_epochs": max(accs),  # selects on the test set: the authors' number, labelled
        "best_epoch": accs.index(max(accs)),
    })
