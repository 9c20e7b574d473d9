"""What every training loop of the book shares around its steps: one recorded, resumable run.

- :class:`RunConfig`: the base of the three tasks' run configurations (validation before any work,
  ``from_profile``, ``with_``, and ``describe``, from which the record's key is derived).
- :class:`RecordedRun`: the run's life on disk. A finished record with the same key is loaded instead
  of training again (unless ``force``); an interrupted run resumes from its last checkpoint (model,
  optimizer, schedule position, RNG state and partial record, written atomically); a diverged run is
  saved as such and announced; a finished one is saved and its checkpoint removed.
- :class:`EpochSums` and :class:`NonFiniteWatch`: an epoch's named sums and its first non-finite
  step, kept on the device and read by the host once per epoch.
- :func:`train_seeds`: every configuration at every seed, the missing runs in parallel.

A loop reads::

    run = RecordedRun.for_config(config, store, force=force, checkpoint_every=1)
    if run.finished is not None:
        return run.finished
    record = run.new_record(kind, config, device)      # + the loop's own facts
    start, step, record = run.resume(record, model=model, optimizer=optimizer)
    for epoch in range(start, epochs):
        train, watch = train_epoch(...)                 # the weighted steps (run.log_step(w, lr) each)
        if watch.first() is not None:
            return run.diverge(record, epoch, watch.first(), step)
        record["epochs"].append({... evaluate(...) ...})
        run.end_epoch(record, epoch, epochs, step, model=model, optimizer=optimizer)
    return run.finish(record, {...})                    # final metrics
"""

from __future__ import annotations

import inspect
import os
import time
import warnings
from dataclasses import fields, replace
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch

from ..checkpoints import load_checkpoint, remove_checkpoint, save_checkpoint
from ..checks import check_non_negative_int, check_positive_int
from ..profiles import get_profile
from ..schedules import Schedule
from ..weighting import check_place

__all__ = ["RunConfig", "RecordedRun", "EpochSums", "NonFiniteWatch", "progress_bar", "train_seeds"]


class RunConfig:
    """The base of a task's run configuration (a frozen dataclass with ``profile``, ``weight``,
    ``weight_place``, ``lr_schedule``, ``seed`` and ``label`` fields).

    A subclass names its integer fields (``_POSITIVE``; ``_OPTIONAL``: positive or ``None``, with what
    ``None`` means), the fields left out of the key at their defaults (``_KEY_DEFAULTS``: added after
    records existed, so old keys still hold), its own checks (:meth:`check`) and its profile sizes
    (:meth:`profile_fields`).
    """

    _POSITIVE: Tuple[str, ...] = ()
    _OPTIONAL: Dict[str, str] = {}
    _KEY_DEFAULTS: Dict[str, object] = {}

    def validate(self) -> None:
        """Every bad value is an error before any work starts; names list the valid choices."""
        get_profile(self.profile)
        check_place(self.weight_place)
        for name in ("weight", "lr_schedule"):
            if not isinstance(getattr(self, name), Schedule):
                raise TypeError(f"{name} must be a lossdecay_lib.schedules.Schedule, got {getattr(self, name)!r}")
        for name in self._POSITIVE:
            check_positive_int(name, getattr(self, name))
        for name, none_means in self._OPTIONAL.items():
            check_positive_int(name, getattr(self, name), allow_none=True, none_means=none_means)
        check_non_negative_int("seed", self.seed)
        self.check()

    def check(self) -> None:
        """The task's own checks (called by :meth:`validate`)."""

    @classmethod
    def profile_fields(cls, profile) -> Dict:
        """The fields a profile (:class:`lossdecay_lib.profiles.Profile`) sets for this task."""
        raise NotImplementedError

    @classmethod
    def from_profile(cls, profile: str, **changes):
        """A run at the sizes of ``profile``'s section for this task; ``changes`` override fields (the
        keyword arguments of the subclass's :meth:`profile_fields`, e.g. ``depth``, choose sizes)."""
        prof = get_profile(profile)
        options = list(inspect.signature(cls.profile_fields).parameters)[1:]  # after the profile
        chosen = {k: changes.pop(k) for k in list(changes) if k in options}
        return cls(profile=prof.name, **cls.profile_fields(prof, **chosen)).with_(**changes)

    def with_(self, **changes):
        """A copy with some fields changed; a dict for a ``*_settings`` field and a list for a tuple
        field are accepted."""
        for key, value in changes.items():
            if isinstance(value, dict) and key.endswith("_settings"):
                changes[key] = tuple(sorted(value.items()))
            elif isinstance(value, list) and isinstance(getattr(self, key), tuple):
                changes[key] = tuple(value)
        return replace(self, **changes)

    def describe(self) -> Dict:
        """A JSON-ready description (schedules by their repr, settings as dicts, tuples as lists); the
        record's key is derived from it. ``label`` and fields at their ``_KEY_DEFAULTS`` are left out."""
        d = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "label" or self._KEY_DEFAULTS.get(f.name, object()) == value:
                continue
            if isinstance(value, Schedule):
                value = repr(value)
            elif f.name.endswith("_settings"):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            d[f.name] = value
        return d


class RecordedRun:
    """The on-disk life of one training run: load, resume, checkpoint, diverge, finish.

    ``stateful`` objects (models, optimizers, GradScalers: anything with ``state_dict`` and
    ``load_state_dict``) are passed by name to :meth:`resume` and :meth:`end_epoch`; the torch RNG
    state travels with them, so a CPU run resumed after a kill ends with the record of an
    uninterrupted one.
    """

    def __init__(self, store, key: str, *, force: bool = False, checkpoint_every: int = 1, label: str = ""):
        if not isinstance(checkpoint_every, int) or isinstance(checkpoint_every, bool) or checkpoint_every < 1:
            raise ValueError(f"checkpoint_every must be a positive integer (epochs), got {checkpoint_every!r}")
        self.store, self.key, self.force = store, key, bool(force)
        self.checkpoint_every, self.label = checkpoint_every, label
        self.checkpoint_path = store.root / f"{key}.ckpt.pt"
        self._started = time.perf_counter()
        self._cpu_started = time.process_time()  # CPU seconds of this process: core-seconds, whatever the load
        self._weights: List[float] = []
        self._lrs: List[float] = []
        self.bar = progress_bar(0, "", enabled=False)
        existing = None if force else store.load(key)
        if existing is not None:
            existing["label"] = label  # the same run may be shown under another name elsewhere
        self.finished: Optional[Dict] = existing

    @classmethod
    def for_config(cls, config, store=None, *, force: bool = False, checkpoint_every: int = 1) -> "RecordedRun":
        """Validate ``config`` (its ``validate()``) and open its run in ``store`` (default: the checkout's
        records, :meth:`lossdecay_lib.runs.RunStore.default`), keyed by what it trains
        (:func:`lossdecay_lib.runs.run_key`: ``config.describe()`` without the profile's name)."""
        from ..runs import RunStore, run_key

        config.validate()
        store = store or RunStore.default()
        return cls(store, run_key(config), force=force, checkpoint_every=checkpoint_every,
                   label=config.label)

    def new_record(self, kind: str, config, device) -> Dict:
        """The head every run record starts with: key, kind, label, configuration, provenance (profile,
        seed, device, versions, date), ``status: running`` and no epochs yet. A loop adds its own
        fields (data facts, layers, ...)."""
        from ..profiles import get_profile
        from ..provenance import provenance

        return {"key": self.key, "kind": kind, "label": config.label, "config": config.describe(),
                "provenance": provenance(get_profile(config.profile), config.seed, device),
                "status": "running", "epochs": []}

    # -- the steps of an epoch ------------------------------------------------------------------------
    def show_progress(self, total: int, description: str, enabled: bool = True, done: int = 0) -> None:
        """A progress bar of ``total`` steps (:func:`progress_bar`), advanced by :meth:`log_step` and
        closed when the run ends."""
        self.bar = progress_bar(total, description, enabled, done)

    def log_step(self, weight: float, lr: float) -> None:
        """Remember the weight and learning rate in force at this step (host floats, no sync)."""
        self._weights.append(weight)
        self._lrs.append(lr)
        self.bar.update(1)

    def epoch_schedule(self) -> Dict[str, float]:
        """Mean weight (``weight_mean``), mean learning rate (``lr_mean``) and number of steps
        (``steps``) of the epoch so far; starts the next one."""
        n = len(self._weights)
        means = (sum(self._weights) / n, sum(self._lrs) / n) if n else (float("nan"), float("nan"))
        self._epoch_weights, self._epoch_lrs = self._weights, self._lrs
        self._weights, self._lrs = [], []
        return {"weight_mean": means[0], "lr_mean": means[1], "steps": n}

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self._started

    @property
    def cpu_elapsed(self) -> Optional[float]:
        """CPU seconds the run has used (all its threads; resumed runs include the time before the kill).
        Unlike the wall time, it does not grow when other processes share the cores."""
        return None if self._cpu_started is None else time.process_time() - self._cpu_started

    # -- disk -----------------------------------------------------------------------------------------
    def resume(self, record: Dict, **stateful) -> Tuple[int, int, Dict]:
        """Load the last checkpoint into ``stateful`` if there is one (and not ``force``).

        Returns ``(first epoch to run, global step, record)``: ``(0, 0, record)`` for a fresh run.
        """
        saved = None if self.force else load_checkpoint(self.checkpoint_path)
        if saved is None:
            return 0, 0, record
        for name, obj in stateful.items():
            obj.load_state_dict(saved["state"][name])
        torch.set_rng_state(saved["rng"])
        self._started = time.perf_counter() - saved["elapsed"]
        # a checkpoint from before CPU time was kept: the run's CPU time is unknown (None), not undercounted
        cpu = saved.get("cpu_elapsed")
        self._cpu_started = None if cpu is None else time.process_time() - cpu
        return saved["epoch"] + 1, saved["step"], saved["record"]

    def end_epoch(self, record: Dict, epoch: int, epochs: int, step: int, **stateful) -> None:
        """Checkpoint after ``epoch`` when due (every ``checkpoint_every`` epochs, not after the last)."""
        if (epoch + 1) % self.checkpoint_every == 0 and epoch + 1 < epochs:
            save_checkpoint(self.checkpoint_path, {
                "epoch": epoch, "step": step, "elapsed": self.elapsed, "cpu_elapsed": self.cpu_elapsed,
                "record": record,
                "state": {name: obj.state_dict() for name, obj in stateful.items()},
                "rng": torch.get_rng_state(),
            })

    def diverge(self, record: Dict, epoch: int, bad_step: int, step: int) -> Dict:
        """Mark the run diverged at ``bad_step`` (of the epoch that ended at global ``step``), save, warn.

        Call after :meth:`epoch_schedule` or before it; the weight and learning rate are those logged
        for ``bad_step`` in this epoch.
        """
        weights = self._weights or getattr(self, "_epoch_weights", [])
        lrs = self._lrs or getattr(self, "_epoch_lrs", [])
        i = bad_step - (step - len(weights))
        w = weights[i] if 0 <= i < len(weights) else float("nan")
        lr = lrs[i] if 0 <= i < len(lrs) else float("nan")
        record["status"] = "diverged"
        record["diverged_at"] = {"epoch": epoch, "step": bad_step, "weight": w, "lr": lr}
        record["wall_seconds"], record["cpu_seconds"] = self.elapsed, self.cpu_elapsed
        self.store.save(self.key, record)
        remove_checkpoint(self.checkpoint_path)
        self.bar.close()
        warnings.warn(
            f"run {self.label or self.key} diverged: non-finite loss or gradient at step {bad_step} "
            f"(epoch {epoch}, weight {w:.4g}, learning rate {lr:.4g}); its record is marked diverged",
            RuntimeWarning, stacklevel=3,
        )
        return record

    def finish(self, record: Dict, summary: Dict) -> Dict:
        """Save the finished record (``summary``: final metrics) and remove the checkpoint."""
        record.update(summary)
        record["status"] = "finished"
        record["wall_seconds"], record["cpu_seconds"] = self.elapsed, self.cpu_elapsed
        self.store.save(self.key, record)
        remove_checkpoint(self.checkpoint_path)
        self.bar.close()
        return record


class NonFiniteWatch:
    """The first step at which any observed tensor was not finite, kept on the device (no sync)."""

    def __init__(self, device):
        self.first_bad = torch.full((), -1, device=device, dtype=torch.long)

    @torch.no_grad()
    def observe(self, step: int, *tensors: torch.Tensor) -> None:
        bad = torch.zeros((), dtype=torch.bool, device=self.first_bad.device)
        for t in tensors:
            bad = bad | ~torch.isfinite(t.detach()).all()
        self.first_bad.masked_fill_(bad & (self.first_bad < 0), step)

    def first(self) -> Optional[int]:
        """The first non-finite step seen (a host read), or ``None``."""
        v = int(self.first_bad)
        return None if v < 0 else v


def progress_bar(total: int, description: str, enabled: bool = True, done: int = 0):
    """A tqdm bar (a widget in notebooks, text in terminals) starting at ``done`` steps; disabled
    (every call a no-op) when not ``enabled`` or when ``$LOSSDECAY_PROGRESS`` is ``0`` (the chapter
    runner sets it: executed pages carry no bars)."""
    off = not enabled or os.environ.get("LOSSDECAY_PROGRESS", "1") == "0"
    if off:  # not tqdm.auto: importing it warns in a notebook without ipywidgets
        from tqdm import tqdm
    else:
        from tqdm.auto import tqdm
    return tqdm(total=total, initial=done, desc=description, unit="step", leave=False, mininterval=2.0,
                disable=off)


class EpochSums:
    """An epoch's named running sums (float64 tensors on the device, one per name, of the given
    shape): :meth:`add` with no host synchronisation, :meth:`means` once per epoch (one host read)."""

    def __init__(self, device, **shapes):
        self._sums = {name: torch.zeros(shape, device=device, dtype=torch.float64)
                      for name, shape in shapes.items()}

    @torch.no_grad()
    def add(self, **values) -> None:
        for name, value in values.items():
            self._sums[name] += value

    def means(self, steps: int, *totals: str) -> Dict:
        """Each sum over ``steps`` (lists for the vector ones), read by the host at once; the sums
        named in ``totals`` are returned as they are."""
        flat = torch.cat([t.reshape(-1) for t in self._sums.values()]).tolist()
        out, i = {}, 0
        for name, t in self._sums.items():
            values = [v if name in totals else v / steps for v in flat[i:i + t.numel()]]
            out[name] = values[0] if t.dim() == 0 else values
            i += t.numel()
        return out


def train_seeds(train_fn: Callable, configs: Sequence, seeds: Sequence[int], jobs: Optional[int] = None,
                executor: Optional[str] = None, **kwargs) -> List[Dict]:
    """``train_fn`` (:func:`~lossdecay_lib.training.train_classifier`, ``train_segmenter`` or
    ``train_pix2pix``) for every configuration at every seed, records in order; finished runs are
    loaded, not retrained.

    The runs still to train go to ``jobs`` processes of one thread each (default:
    :func:`lossdecay_lib.campaign.default_jobs`: the number of cores on a CPU, 1 with a GPU); each
    record is the one a sequential run writes. ``executor="ray"`` (default: ``$LOSSDECAY_EXECUTOR``,
    else ``"local"``) sends them to a Ray cluster instead (``$RAY_ADDRESS``, else a local one;
    :mod:`lossdecay_lib.executors`). ``kwargs`` go to ``train_fn``.
    """
    from ..campaign import default_jobs
    from ..executors import check_executor, default_executor, run_runs
    from ..runs import RunStore, run_key

    runs = [c.with_(seed=s) for c in configs for s in seeds]
    for c in runs:
        c.validate()
    store = kwargs["store"] = kwargs.get("store") or RunStore.default()
    todo = [c for c in runs if kwargs.get("force", False) or store.load(run_key(c)) is None]
    jobs = default_jobs() if jobs is None else jobs
    remote = check_executor(executor or default_executor()) != "local"
    if todo and (remote or (jobs > 1 and len(todo) > 1)):  # one run at a time here keeps its progress bar
        run_runs(train_fn, todo, executor=executor, jobs=jobs, **dict(kwargs, progress=False))
        kwargs["force"] = False  # trained by the pool or the cluster: load them below
    return [train_fn(c, **kwargs) for c in runs]
