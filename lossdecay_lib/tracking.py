"""Curvature along a training run: the paper's Eq. 2 measured at the steps the optimizer really takes.

The paper explains loss decay with the second-order expansion of the loss along a step,
``f(x - eta w g) ~ f(x) - eta w g^T g + 1/2 eta^2 w^2 g^T H g`` (Eq. 2), and quotes Goodfellow et al.:
"the gradient norm does not shrink significantly throughout learning, but the g^T H g term grows by
more than an order of magnitude". It measures none of it. A :class:`CurvatureTracker` does, every
``every`` steps of a run, on a fixed evaluation batch of training images:

- ``g^T g`` and ``g^T H g`` at the current weights (the two terms of Eq. 2, for a unit step);
- the step the optimizer actually took, ``d`` (momentum, weight decay and all), the quadratic model's
  prediction of its effect on the evaluation loss, ``g^T d + 1/2 d^T H d``, and the actual change;
- optionally the top Hessian eigenvalue (the sharpness), whose product with the effective learning rate
  is compared with the heavy-ball stability threshold ``2 (1 + momentum)`` by the chapter. Lanczos
  starts from the previous estimate's eigenvector (a warm start), so it usually needs a few products;
- the time each measurement took (``seconds``), so a chapter can say what share of a run they cost.

Batch norm uses the evaluation batch's statistics and the model is left unchanged
(:func:`lossdecay_lib.curvature.measurement_mode`).
"""

from __future__ import annotations

import math
import time
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F

from .curvature import LossHessian, dot, measurement_mode, stability_ratio, trainable_parameters

__all__ = ["CurvatureTracker", "measurement_cost"]


class CurvatureTracker:
    """Measures Eq. 2's terms around the optimizer's step every ``every`` steps.

    Use in a training loop: ``if tracker.due(step): tracker.before_step()``; take the step;
    ``tracker.after_step(step, epoch, weight, lr)``. Rows accumulate in :attr:`rows`.
    ``sharpness_every``: estimate the top Hessian eigenvalue at every k-th measurement (0: never; it
    costs up to ``lanczos_iterations`` Hessian-vector products).
    """

    def __init__(self, model: torch.nn.Module, batch: Tuple[torch.Tensor, torch.Tensor], every: int,
                 sharpness_every: int = 0, lanczos_iterations: int = 20):
        if every < 1:
            raise ValueError(f"every must be a positive number of steps, got {every}")
        if sharpness_every < 0:
            raise ValueError(f"sharpness_every must be >= 0, got {sharpness_every}")
        self.model, self.batch = model, batch
        self.every, self.sharpness_every, self.lanczos_iterations = every, sharpness_every, lanczos_iterations
        self.rows: List[Dict] = []
        self._before: Optional[List[torch.Tensor]] = None
        self._top_vector: Optional[torch.Tensor] = None  # the last top eigenvector: Lanczos starts there

    def state_dict(self) -> Dict:
        """What a checkpoint must keep besides the rows (which live in the run record): the warm start."""
        return {"top_vector": self._top_vector if self._top_vector is not None else torch.empty(0)}

    def load_state_dict(self, state: Dict) -> None:
        v = state["top_vector"]
        self._top_vector = v.to(self.batch[0].device) if v.numel() else None

    def due(self, step: int) -> bool:
        return step % self.every == 0

    @torch.no_grad()
    def before_step(self) -> None:
        self._before = [p.detach().clone() for p in trainable_parameters(self.model)]

    def _eval_loss(self) -> float:
        x, y = self.batch
        with measurement_mode(self.model), torch.no_grad():
            return float(F.cross_entropy(self.model(x), y))

    def after_step(self, step: int, epoch: int, weight: float, lr: float) -> Dict:
        """Measure around the step just taken (the weights before it were saved by :meth:`before_step`)."""
        if self._before is None:
            raise RuntimeError("after_step() without before_step()")
        params = trainable_parameters(self.model)
        with torch.no_grad():
            after = [p.detach().clone() for p in params]
            step_taken = [a - b for a, b in zip(after, self._before)]
            for p, b in zip(params, self._before):
                p.copy_(b)
        started = time.perf_counter()
        try:
            hessian = LossHessian(self.model, *self.batch)
            m = hessian.curvature()
            g = hessian.gradient
            h_step = hessian.hvp(step_taken)
            predicted = float(dot(g, step_taken)) + 0.5 * float(dot(step_taken, h_step))
            sharpness = sharpness_hvps = None
            n = len(self.rows)
            if self.sharpness_every and n % self.sharpness_every == 0:
                # A cold start needs the tight tolerance (its Ritz value can sit on the second eigenvalue
                # for a while, see lanczos_top_eigenvalue). A warm start begins near the top eigenvector,
                # so that plateau is unlikely, and a change below 1e-3 per product is settled enough for
                # the stability test, whose ratios are far from 1 (tests/test_curvature.py checks the
                # warm estimate against a tight cold one).
                rtol = 1e-5 if self._top_vector is None else 1e-3
                top = hessian.top_eigenvalue(max_iterations=self.lanczos_iterations, rtol=rtol,
                                             warm_start=self._top_vector)
                sharpness, sharpness_hvps, self._top_vector = top.value, top.hvp_count, top.vector
            del hessian
        finally:
            with torch.no_grad():
                for p, a in zip(params, after):
                    p.copy_(a)
            self._before = None
        row = {
            "step": step, "epoch": epoch, "weight": weight, "lr": lr,
            "loss": m.loss, "gTg": m.grad_dot_grad, "gTHg": m.grad_hessian_grad,
            "step_norm": float(dot(step_taken, step_taken)) ** 0.5,
            "predicted_change": predicted, "actual_change": self._eval_loss() - m.loss,
            "sharpness": sharpness, "sharpness_hvps": sharpness_hvps,
            "seconds": time.perf_counter() - started,  # the measurement's own time (Lanczos included)
        }
        self.rows.append(row)
        return row


def measurement_cost(records) -> Dict:
    """What the curvature measurements of finished runs cost: measurements per run, the share of the
    runs' wall time they took (mean and std over runs), and the Hessian-vector products per sharpness
    estimate (mean). Runs recorded before measurements were timed are left out (``runs`` says how many
    were counted)."""
    from .statistics import mean_std

    timed = [r for r in records if r.get("status") == "finished" and r.get("curvature")
             and all("seconds" in row for row in r["curvature"])]
    shares = [sum(row["seconds"] for row in r["curvature"]) / r["wall_seconds"] for r in timed]
    hvps = [row["sharpness_hvps"] for r in timed for row in r["curvature"] if row.get("sharpness_hvps")]
    share_mean, share_std = mean_std(shares)
    return {
        "runs": len(timed),
        "measurements_per_run": mean_std([len(r["curvature"]) for r in timed])[0],
        "share_mean": share_mean, "share_std": share_std,
        "hvps_per_sharpness": sum(hvps) / len(hvps) if hvps else float("nan"),
    }


def curvature_growth(record: Dict, key: str = "gTHg", part: float = 0.2) -> Optional[float]:
    """How much ``key`` (``gTHg`` or ``gTg``) of a run's curvature measurements grew: the mean of the last
    ``part`` of its measurements after the first epoch over the mean of the first ``part`` (Eq. 2's
    premise, quoted from Goodfellow et al.: "the g^T H g term grows by more than an order of
    magnitude"). ``None`` when the start is not positive (g^T H g is negative at initialisation in
    some runs: a ratio from there means nothing) or there are no measurements after epoch 1."""
    values = [row[key] for row in record.get("curvature", []) if row["epoch"] >= 1]
    if not values:
        return None
    k = max(1, int(len(values) * part))
    first, last = sum(values[:k]) / k, sum(values[-k:]) / k
    return last / first if first > 0 else None


def gthg_growth_log10(record: Dict) -> Optional[float]:
    """``log10`` of :func:`curvature_growth` of ``g^T H g``: 1 is the paper's "order of magnitude"."""
    growth = curvature_growth(record, "gTHg")
    return None if growth is None or growth <= 0 else math.log10(growth)


gthg_growth_log10.name = "the growth of g^T H g (first to last fifth after epoch 1)"


def last_epoch_above_threshold(record: Dict, momentum: float, weight_decay: float) -> int:
    """The last epoch (1-based) in which a run's effective step ``eta w (lambda_max + wd)`` was above the
    heavy-ball stability threshold ``2 (1 + beta)`` (:func:`lossdecay_lib.curvature.stability_ratio`),
    0 if never: the paper's Assumption, made testable, says death convergence begins after it."""
    above = [row["epoch"] + 1 for row in record.get("curvature", []) if row.get("sharpness") is not None
             and stability_ratio(row["sharpness"], row["lr"], row["weight"], momentum, weight_decay) > 1]
    return max(above, default=0)
