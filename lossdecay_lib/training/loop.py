"""What every training loop of the book shares around its steps: one recorded, resumable run.

The classification, segmentation and pix2pix loops differ in their data, losses and metrics, and share
everything else, here:

- :class:`RecordedRun`: the run's life on disk. A finished record with the same configuration key is
  loaded instead of training again (unless ``force``); an interrupted run resumes from its last
  checkpoint (model, optimizer, schedule position, RNG state and partial record, written atomically,
  loaded with ``weights_only=True``); a diverged run is saved as such and announced; a finished one is
  saved and its checkpoint removed.
- :class:`NonFiniteWatch`: remembers, on the device and without a host synchronisation, the first step
  whose loss or gradient was not finite, so a divergence names the step, weight and learning rate in
  force there.
- :func:`progress_bar`: a tqdm bar (widget in notebooks, text in terminals), off under the chapter
  runner (``$LOSSDECAY_PROGRESS=0``) so executed pages do not fill with progress text.

The step itself (learning rate from its schedule, loss weight at its place, backward, optimizer step)
is :class:`lossdecay_lib.training.ScheduleController`, also shared.

A loop reads::

    run = RecordedRun.for_config(config, store, force=force, checkpoint_every=1)
    if run.finished is not None:
        return run.finished
    record = {...}                                    # config, provenance, "epochs": []
    start, step, record = run.resume(record, model=model, optimizer=optimizer)
    for epoch in range(start, epochs):
        watch = NonFiniteWatch(device)
        ...  steps: watch.observe(step, loss, grad_norm); run.log_step(weight, lr)
        if not all finite:                             # read once per epoch
            return run.diverge(record, epoch, watch.first(), step)
        record["epochs"].append({...})
        run.end_epoch(record, epoch, epochs, step, model=model, optimizer=optimizer)
    return run.finish(record, {...})                   # final metrics
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Dict, List, Optional, Tuple

import torch

from ..checkpoints import load_checkpoint, remove_checkpoint, save_checkpoint

__all__ = ["RecordedRun", "NonFiniteWatch", "progress_bar"]


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
    def log_step(self, weight: float, lr: float) -> None:
        """Remember the weight and learning rate in force at this step (host floats, no sync)."""
        self._weights.append(weight)
        self._lrs.append(lr)

    def epoch_schedule(self) -> Tuple[float, float, int]:
        """Mean weight, mean learning rate and number of steps of the epoch so far; starts the next one."""
        n = len(self._weights)
        means = (sum(self._weights) / n, sum(self._lrs) / n) if n else (float("nan"), float("nan"))
        self._epoch_weights, self._epoch_lrs = self._weights, self._lrs
        self._weights, self._lrs = [], []
        return means[0], means[1], n

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


def progress_bar(total: int, description: str, enabled: bool = True):
    """A tqdm bar (a widget in notebooks, text in terminals), or ``None`` when disabled or when
    ``$LOSSDECAY_PROGRESS`` is ``0`` (the chapter runner sets it: executed pages carry no bars)."""
    if not enabled or os.environ.get("LOSSDECAY_PROGRESS", "1") == "0":
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit="step", leave=False, mininterval=2.0)
