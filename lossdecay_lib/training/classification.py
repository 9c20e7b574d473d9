"""The classification training loop: one loop for every schedule, place and optimizer of the book.

A run is described by a :class:`ClassificationConfig` (network, data sizes, optimizer, the loss-weight
schedule and where it acts, the learning-rate schedule, seed, profile). :func:`train_classifier`
validates it before any work, trains, evaluates on the test split after every epoch, and writes a run
record (:mod:`lossdecay_lib.runs`) keyed by the configuration, so executing a chapter again loads
finished runs instead of training them again.

The step (:class:`ScheduleController`) is the part every loop of the book shares: set the learning
rate from its schedule, weight the loss (or the gradients, or the learning rate) by the loss-weight
schedule, backpropagate, step. Metrics accumulate on the device; the host reads them once per epoch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

from .loop import NonFiniteWatch, RecordedRun, progress_bar
from ..tracking import CurvatureTracker
from ..models import MODEL_NAMES, build_model, channels_last_is_safe, weight_layers
from ..optimizers import build_optimizer, check_optimizer_name
from ..profiles import get_profile, resolve_device
from ..data.seeding import seed_everything
from ..schedules import Progress, Schedule, constant
from ..checks import check_name, check_non_negative_int, check_positive_int
from ..weighting import ScheduledWeight, check_place, check_weight_decay_over_weight

__all__ = ["AUTHORS_SGD", "ClassificationConfig", "ScheduleController", "train_classifier", "train_seeds", "evaluate"]

#: The optimizer of the authors' classification script (their text does not give one): SGD with
#: learning rate 0.1, momentum 0.95 and (coupled) weight decay 1e-4.
AUTHORS_SGD: Tuple[Tuple[str, object], ...] = (("lr", 0.1), ("momentum", 0.95), ("weight_decay", 1e-4))


@dataclass(frozen=True)
class ClassificationConfig:
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

    #: Fields added after records existed; left out of the key at these defaults so old keys still hold.
    _KEY_DEFAULTS = {"curvature_every": 0, "sharpness_every": 0, "curvature_batch": 0, "precision": "fp32",
                     "compile": False, "image_size": 32, "weight_decay_over_weight": False}
    PRECISIONS = ("fp32", "bf16")

    def validate(self) -> None:
        """Every bad value is an error before any work starts; names list the valid choices."""
        get_profile(self.profile)
        check_name(self.model, MODEL_NAMES, "network")
        check_optimizer_name(self.optimizer)
        check_place(self.weight_place)
        check_weight_decay_over_weight(self.weight_decay_over_weight, self.weight_place)
        if self.weight_decay_over_weight and not dict(self.optimizer_settings).get("weight_decay", 0) > 0:
            raise ValueError("weight_decay_over_weight divides the coupled weight decay by w_t: it needs "
                             "optimizer_settings with weight_decay > 0")
        for name in ("epochs", "batch_size"):
            check_positive_int(name, getattr(self, name))
        for name in ("train_per_class", "test_per_class"):
            check_positive_int(name, getattr(self, name), allow_none=True)
        for name in ("curvature_every", "sharpness_every", "curvature_batch", "seed"):
            check_non_negative_int(name, getattr(self, name))
        check_name(self.precision, self.PRECISIONS, "precision")
        if self.image_size not in (8, 16, 32):
            raise ValueError(f"image_size must be 8, 16 or 32 (CIFAR-10's 32 pixels average-pooled), "
                             f"got {self.image_size!r}")
        if not isinstance(self.compile, bool):
            raise ValueError(f"compile must be True or False, got {self.compile!r}")
        if getattr(self.weight, "adaptive", False) and not self.curvature_every:
            raise ValueError(f"{self.weight!r} sets the weight from measured curvature: it needs curvature_every > 0")
        if "lr" not in dict(self.optimizer_settings):
            raise ValueError("optimizer_settings must include the base learning rate 'lr'")
        build_model(self.model, **dict(self.model_settings))  # raises on a depth the network cannot build

    @classmethod
    def from_profile(cls, profile: str, depth: Optional[int] = None, curvature: bool = False,
                     **changes) -> "ClassificationConfig":
        """A plain-network run at the sizes of ``profile`` (see :mod:`lossdecay_lib.profiles`), with the
        authors' SGD; ``depth`` defaults to the profile's first depth; ``changes`` override fields.

        ``curvature=True`` takes the sizes of the profile's curvature section instead, and measures
        curvature along the run as that section says.
        """
        prof = get_profile(profile)
        sizes = prof.classification
        fields = dict(
            profile=prof.name, model="plain",
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
        return cls(**fields).with_(**changes)

    def with_(self, **changes) -> "ClassificationConfig":
        """A copy with some fields changed; dict values for ``*_settings`` are accepted."""
        for key in ("model_settings", "optimizer_settings"):
            if isinstance(changes.get(key), dict):
                changes[key] = tuple(sorted(changes[key].items()))
        return replace(self, **changes)

    def describe(self) -> Dict:
        """A JSON-ready description (schedules by their repr); the record's key is derived from it."""
        d = asdict(self)
        d.pop("label")
        for name, default in self._KEY_DEFAULTS.items():
            if d[name] == default:
                d.pop(name)
        d["weight"] = repr(self.weight)
        d["lr_schedule"] = repr(self.lr_schedule)
        d["model_settings"] = dict(self.model_settings)
        d["optimizer_settings"] = dict(self.optimizer_settings)
        return d


class ScheduleController:
    """The shared step: learning rate from its schedule, loss weight at its place, backward, step.

    ``lr_schedule`` multiplies each parameter group's base learning rate (read once, at construction).
    """

    def __init__(self, optimizer: torch.optim.Optimizer, weight: ScheduledWeight, lr_schedule: Schedule,
                 steps_per_epoch: int, epochs: int):
        self.optimizer, self.weight, self.lr_schedule = optimizer, weight, lr_schedule
        self.steps_per_epoch, self.epochs = steps_per_epoch, epochs
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]

    def progress(self, step: int) -> Progress:
        return Progress(step, self.steps_per_epoch, self.epochs)

    def step(self, step: int, loss: torch.Tensor, after_backward: Optional[Callable[[], None]] = None) -> Tuple[float, float]:
        """One optimizer step on ``loss`` (unweighted); returns ``(weight, learning rate)`` in force."""
        p = self.progress(step)
        w = self.weight.value(p)
        lr_factor = self.lr_schedule(p)
        for g, base in zip(self.optimizer.param_groups, self.base_lrs):
            g["lr"] = base * lr_factor
        self.optimizer.zero_grad(set_to_none=True)
        self.weight.scale_loss(loss, w).backward()
        if after_backward is not None:
            after_backward()
        self.weight.step(self.optimizer, w)
        return w, self.base_lrs[0] * lr_factor


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


def _uses_schedule_free(optimizer) -> bool:
    return hasattr(optimizer, "train") and hasattr(optimizer, "eval") and callable(getattr(optimizer, "eval"))


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
    from ..data import CifarBatches, load_cifar10

    run = RecordedRun.for_config(config, store, force=force, checkpoint_every=checkpoint_every)
    if run.finished is not None:
        return run.finished

    dev = resolve_device(device)
    train = load_cifar10("train", data_root, per_class=config.train_per_class, seed=0, download=True)
    test = load_cifar10("test", data_root, per_class=config.test_per_class, seed=0, download=True)
    # channels_last wherever it is safe (models.channels_last_is_safe); decided before seeding, so the
    # probe network does not change the run's random numbers.
    channels_last = channels_last_is_safe(build_model(config.model, **dict(config.model_settings)), dev)
    seed_everything(config.seed)
    pool = 32 // config.image_size
    train_batches = CifarBatches(train, config.batch_size, device=dev, seed=config.seed, augment=config.augment,
                                 channels_last=channels_last, pool=pool)
    test_batches = CifarBatches(test, 500, train=False, device=dev, channels_last=channels_last, pool=pool)
    steps_per_epoch = len(train_batches)
    if steps_per_epoch == 0:
        raise ValueError(f"batch_size {config.batch_size} is larger than the {len(train)} training images")

    # A weight set from measured curvature (schedules.CurvatureAdaptive) has run state: reset, checkpointed.
    adaptive = config.weight if getattr(config.weight, "adaptive", False) else None
    if adaptive is not None:
        adaptive.reset()
    weight = ScheduledWeight(config.weight, config.weight_place, config.allow_negative,
                             config.weight_decay_over_weight)
    lowest_weight = weight.check(config.epochs, steps_per_epoch)
    model = build_model(config.model, **dict(config.model_settings)).to(dev)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = build_optimizer(config.optimizer, model.parameters(), **dict(config.optimizer_settings))
    controller = ScheduleController(optimizer, weight, config.lr_schedule, steps_per_epoch, config.epochs)
    layers = weight_layers(model)
    layer_grads = [layer.weight for _, layer in layers]
    schedule_free = _uses_schedule_free(optimizer)

    record = run.new_record("classification", config, dev)
    record.update({
        "data": {"train_images": len(train), "test_images": len(test), "source": train.source,
                 "steps_per_epoch": steps_per_epoch},
        "layers": [name for name, _ in layers],
        "negative_weights": lowest_weight < 0,
    })
    tracker = None
    if config.curvature_every:
        fixed_batch = next(iter(CifarBatches(train, config.curvature_batch or config.batch_size, train=False,
                                             device=dev, channels_last=channels_last, pool=pool)))
        tracker = CurvatureTracker(model, fixed_batch, config.curvature_every, config.sharpness_every)
    stateful = dict(model=model, optimizer=optimizer)
    if adaptive is not None:
        stateful["weight"] = adaptive
    if tracker is not None:
        stateful["curvature"] = tracker
    start_epoch, step, record = run.resume(record, **stateful)
    if tracker is not None:
        tracker.rows[:] = record.get("curvature", [])
        record["curvature"] = tracker.rows
    # bf16 autocast (GPUs that support it; CPUs too) rounds the forward pass only: the loss, the weight
    # that multiplies it, the gradients and the optimizer state stay fp32, so no GradScaler is needed.
    autocast = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=config.precision == "bf16")
    forward = torch.compile(model) if config.compile else model
    bar = progress_bar(config.epochs * steps_per_epoch, f"{config.label or config.model}, seed {config.seed}",
                       progress)
    if bar is not None:
        bar.update(step)
    for epoch in range(start_epoch, config.epochs):
        model.train()
        if schedule_free:
            optimizer.train()
        sums = torch.zeros(4, device=dev, dtype=torch.float64)  # loss, weighted loss, correct, grad norm
        layer_sums = torch.zeros(len(layers), device=dev, dtype=torch.float64)
        step_sums = torch.zeros(len(layers), device=dev, dtype=torch.float64)  # ||w_{t+1} - w_t|| / ||w_t||
        grad_norm = torch.zeros((), device=dev, dtype=torch.float64)
        watch = NonFiniteWatch(dev)
        count = 0

        def log_gradients():
            norms = torch._foreach_norm([t.grad for t in layer_grads])
            layer_sums.add_(torch.stack(norms).double())
            grad_norm.copy_(torch.linalg.vector_norm(torch.stack(norms)).double())
            sums[3] += grad_norm

        for x, y in train_batches.epoch_batches(epoch):
            measure = tracker is not None and tracker.due(step)
            if measure:
                tracker.before_step()
            with autocast:
                logits = forward(x)
            loss = F.cross_entropy(logits.float(), y)  # fp32 loss: the weight scales the unrounded loss
            before = [t.detach().clone() for t in layer_grads]
            w, lr = controller.step(step, loss, after_backward=log_gradients)
            with torch.no_grad():
                moved = torch._foreach_norm(torch._foreach_sub([t.detach() for t in layer_grads], before))
                step_sums.add_((torch.stack(moved) / torch.stack(torch._foreach_norm(before))).double())
            if measure:
                row = tracker.after_step(step, epoch, w, lr)
                if adaptive is not None:
                    adaptive.observe(row["gTg"], row["gTHg"], lr)
            with torch.no_grad():
                watch.observe(step, loss, grad_norm)
                sums[0] += loss.detach().double()
                sums[1] += loss.detach().double() * (w if config.weight_place == "loss" else 1.0)
                sums[2] += (logits.argmax(1) == y).sum()
            run.log_step(w, lr)
            count += y.numel()
            step += 1
            if bar is not None:
                bar.update(1)
        loss_sum, wloss_sum, correct, grad_sum = sums.tolist()
        bad_step = watch.first()
        if bad_step is not None:
            if bar is not None:
                bar.close()
            return run.diverge(record, epoch, bad_step, step)
        weight_mean, lr_mean, n_steps = run.epoch_schedule()
        if schedule_free:
            optimizer.eval()
            _refresh_batch_norm(model, train_batches.epoch_batches(epoch))
        test_loss, test_acc = evaluate(model, test_batches)
        record["epochs"].append({
            "epoch": epoch,
            "train_loss": loss_sum / n_steps,
            "train_loss_weighted": wloss_sum / n_steps,
            "train_acc": correct / count,
            "test_loss": test_loss,
            "test_acc": test_acc,
            "weight_mean": weight_mean,
            "lr_mean": lr_mean,
            "grad_norm": grad_sum / n_steps,
            "layer_grad_norms": [v / n_steps for v in layer_sums.tolist()],
            # issue 19: per layer, the weight norm at the epoch's end and the mean effective step (the
            # update's norm over the weights' norm: the angular step of a scale-invariant layer)
            "layer_weight_norms": [float(v) for v in torch.stack(torch._foreach_norm(
                [t.detach() for t in layer_grads])).tolist()],
            "layer_effective_steps": [v / n_steps for v in step_sums.tolist()],
            "seconds": run.elapsed,
        })
        if bar is not None:
            bar.set_postfix(test_acc=f"{test_acc:.3f}")
        run.end_epoch(record, epoch, config.epochs, step, **stateful)
    if bar is not None:
        bar.close()
    accs = [e["test_acc"] for e in record["epochs"]]
    return run.finish(record, {
        "final_test_acc": accs[-1],
        "best_test_acc_over_epochs": max(accs),  # selects on the test set: the authors' number, labelled
        "best_epoch": accs.index(max(accs)),
    })


def train_seeds(configs: Sequence[ClassificationConfig], seeds: Sequence[int], jobs: Optional[int] = None,
                executor: Optional[str] = None, **kwargs) -> List[Dict]:
    """Every configuration at every seed, records in order; finished runs are loaded, not retrained.

    The runs still to train go to ``jobs`` processes of one thread each (default:
    :func:`lossdecay_lib.campaign.default_jobs`, the number of cores on a CPU); each record is the one a
    sequential run writes. ``executor="ray"`` (default: ``$LOSSDECAY_EXECUTOR``, else ``"local"``) sends
    them to a Ray cluster instead (``$RAY_ADDRESS``, else a local one; :mod:`lossdecay_lib.executors`).
    """
    from ..campaign import default_jobs
    from ..executors import check_executor, default_executor, run_runs
    from ..runs import RunStore, run_key

    runs = [c.with_(seed=s) for c in configs for s in seeds]
    for c in runs:
        c.validate()
    store = kwargs.setdefault("store", None) or RunStore.default()
    kwargs["store"] = store
    force = kwargs.get("force", False)
    todo = [c for c in runs if force or store.load(run_key(c)) is None]
    jobs = default_jobs() if jobs is None else jobs
    remote = check_executor(executor or default_executor()) != "local"
    if todo and (remote or (jobs > 1 and len(todo) > 1)):  # one run at a time here keeps its progress bar
        run_runs(train_classifier, todo, executor=executor, jobs=jobs, **dict(kwargs, progress=False))
        kwargs["force"] = False  # trained by the pool or the cluster: load them below
    return [train_classifier(c, **kwargs) for c in runs]
