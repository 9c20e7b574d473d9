"""Curvature of the loss along the step: the second-order view of loss decay.

Wei (2019), Section III.A.1 ("Theoretical analysis"), explains death convergence with the
second-order Taylor expansion of the loss along a gradient step, the paper's Eq. 2::

    f(x) ~ f(x0) - eta g^T g + 1/2 eta^2 g^T H g                                  (Eq. 2)

With a loss weight ``w`` (loss decay) the SGD step is ``x = x0 - eta w g``, so the same expansion
reads, with ``eta`` replaced by the effective learning rate ``eta w``::

    f(x0 - eta w g) ~ f(x0) - eta w g^T g + 1/2 eta^2 w^2 g^T H g

The paper then quotes Goodfellow et al. (Deep Learning, 2016, Sec. 8.2.1): "In many cases, the
gradient norm does not shrink significantly throughout learning, but the g^T H g term grows by
more than an order of magnitude." It never measures either term. This module measures them, so
that the quote and the paper's Assumption ("when the gradient is enough reduced to break the
current training deadlock, death convergence can be turned on") can be tested:

* :class:`LossHessian` -- the loss, gradient and Hessian-vector products of a model on one fixed
  batch, sharing one forward/backward between several measurements:
  :meth:`~LossHessian.curvature` (the loss, ``g^T g`` and ``g^T H g``: one Hessian-vector product)
  and :meth:`~LossHessian.top_eigenvalue` (the sharpness ``lambda_max``, the largest algebraic
  eigenvalue of the Hessian, by Lanczos with a relative tolerance: :func:`lanczos_top_eigenvalue`).
* The quadratic model of Eq. 2 on a :class:`CurvatureMeasurement`: its directional curvature,
  ``predicted_loss_change`` and ``optimal_weight``; and :func:`stability_ratio`, the step against
  heavy-ball SGD's stability threshold (the "edge of stability", Cohen et al. 2021).

What is measured
----------------
``f`` is the *unweighted* loss ``loss_fn(model(inputs), targets)`` on the batch given, ``g`` its
gradient and ``H`` its Hessian with respect to the model's trainable parameters (those with
``requires_grad``). The loss weight ``w`` and the learning rate ``eta`` enter only through the
quadratic-model helpers. Weight decay is not part of ``f``; coupled weight decay ``lambda_wd``
(``torch.optim.SGD(weight_decay=...)``) adds ``lambda_wd`` to every eigenvalue of the Hessian of
the function SGD descends, which :func:`stability_ratio` accepts as ``weight_decay``.

How Hessian-vector products are computed
----------------------------------------
By double backward: one forward and one ``torch.autograd.grad(loss, params, create_graph=True)``
build the gradient *with its graph*; each product ``H v`` is then
``torch.autograd.grad(g, params, grad_outputs=v, retain_graph=True)``, i.e. the gradient of
``g . v``. This was chosen over ``torch.func`` (``jvp`` of ``grad``) because

* it works on any ``nn.Module`` as it is: no ``functional_call`` plumbing, and batch norm's
  in-place running-statistics update, hooks and custom modules need no special casing (under
  ``torch.func.jvp(torch.func.grad(...))`` a train-mode BatchNorm fails with "attempted to call
  in-place operation (aten::add_.Tensor) that would mutate a captured Tensor");
* the graph of the single forward/backward is reused by every product of a Lanczos run, so each
  further ``H v`` costs one double-backward pass and no new forward;
* it exists unchanged in every torch >= 2.4.

The price is memory: the graph of the backward pass is held while a :class:`LossHessian` lives.
Cost measured by ``benchmarks/bench_curvature.py`` (13-layer plain BN conv net, batch 128, one CPU
thread): one product ~2.5-2.8 training steps, of which batch norm's double-backward formula (a
composite of elementwise ops) is nearly half; :meth:`LossHessian.curvature` with its forward and
backward ~3.1-3.6 steps in all.

Batch norm (and other layers with train/eval behaviour)
-------------------------------------------------------
The default, ``bn_stats="batch"``, measures the function SGD actually descends: normalisation
layers (every ``torch.nn.modules.batchnorm._NormBase``: BatchNorm1d/2d/3d, SyncBatchNorm,
InstanceNorm1d/2d/3d) are put in train mode, so they normalise with the *statistics of
the evaluation batch itself*, exactly as in a training step, and the Hessian includes the coupling
between examples that batch statistics create. Use an evaluation batch of the training batch size
so that the statistics are as noisy as in training. Every other module is put in eval mode, so
dropout is off and the measured function is deterministic (the same for every product of one
Lanczos run). ``bn_stats="running"`` puts the whole model in eval mode: normalisation uses the
running statistics, i.e. the function evaluated at test time (the same as ``"batch"`` for layers
built with ``track_running_stats=False``, which always use batch statistics).

Either way a measurement leaves the model exactly as it found it: every buffer (running mean and
variance, ``num_batches_tracked``, ...) is replaced by a clone for the duration of the forward
pass, so the train-mode update of the running statistics lands on the clone, and the original
tensors are put back afterwards (the graph keeps the clones); every module's ``training`` flag is
restored; parameters and their ``.grad`` are never written (``torch.autograd.grad`` does not
accumulate into ``.grad``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from typing import Callable, Iterator, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["BN_STATS_MODES", "CurvatureMeasurement", "EigenvalueEstimate", "LossHessian", "dot", "flatten",
           "lanczos_top_eigenvalue", "measurement_mode", "stability_ratio", "trainable_parameters",
           "unflatten_like"]

LossFn = Callable[[Tensor, Tensor], Tensor]

#: The two batch-norm policies: ``"batch"`` (train-mode batch statistics, the default) and
#: ``"running"`` (eval mode, running statistics). See the module docstring.
BN_STATS_MODES = ("batch", "running")

_NORM_LAYERS = (nn.modules.batchnorm._NormBase,)


# --------------------------------------------------------------------------------------------
# Parameter lists and flat vectors
# --------------------------------------------------------------------------------------------


def trainable_parameters(model: nn.Module) -> List[Tensor]:
    """The parameters the Hessian is taken over: those of ``model`` with ``requires_grad``."""
    return [p for p in model.parameters() if p.requires_grad]


def flatten(tensors: Sequence[Tensor]) -> Tensor:
    """Concatenate a list of tensors into one flat vector (a copy)."""
    return torch.cat([t.reshape(-1) for t in tensors])


def unflatten_like(vector: Tensor, like: Sequence[Tensor]) -> List[Tensor]:
    """Split a flat vector into views shaped like the tensors of ``like`` (inverse of :func:`flatten`)."""
    total = sum(t.numel() for t in like)
    if vector.numel() != total:
        raise ValueError(f"vector has {vector.numel()} elements, the tensors {total}")
    pieces, offset = [], 0
    for t in like:
        pieces.append(vector[offset : offset + t.numel()].view_as(t))
        offset += t.numel()
    return pieces


def dot(xs: Sequence[Tensor], ys: Sequence[Tensor], dtype: torch.dtype = torch.float64) -> Tensor:
    """Inner product of two lists of tensors, accumulated in ``dtype``: a 0-dim tensor on their device
    (no host read; ``float()`` it for a number)."""
    return sum(torch.dot(x.reshape(-1).to(dtype), y.reshape(-1).to(dtype)) for x, y in zip(xs, ys))


# --------------------------------------------------------------------------------------------
# Batch norm policy: which statistics, and leaving the model unchanged
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def measurement_mode(model: nn.Module, bn_stats: str = "batch") -> Iterator[nn.Module]:
    """Put ``model`` in the mode a curvature measurement uses, and undo everything on exit.

    ``bn_stats="batch"``: normalisation layers in train mode (batch statistics of the batch being
    measured, as in a training step), every other module in eval mode (dropout off).
    ``bn_stats="running"``: the whole model in eval mode (running statistics).

    Inside the block every buffer of the model is a clone, so the running-statistics update of a
    train-mode forward pass never reaches the model; on exit the original buffer tensors and every
    module's ``training`` flag are put back.
    """
    if bn_stats not in BN_STATS_MODES:
        raise ValueError(f"bn_stats must be one of {BN_STATS_MODES}, got {bn_stats!r}")
    modules = list(model.modules())
    flags = [m.training for m in modules]
    originals: List[Tuple[nn.Module, str, Tensor]] = [
        (m, name, buf) for m in modules for name, buf in m._buffers.items() if buf is not None
    ]
    try:
        for m, name, buf in originals:
            m._buffers[name] = buf.clone()
        for m in modules:
            m.training = bn_stats == "batch" and isinstance(m, _NORM_LAYERS)
        yield model
    finally:
        for m, name, buf in originals:
            m._buffers[name] = buf
        for m, flag in zip(modules, flags):
            m.training = flag


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CurvatureMeasurement:
    """The terms of the paper's Eq. 2 measured on one batch, and the quadratic model they make.

    ``f(x - eta w g) - f(x) ~ -eta w g^T g + 1/2 eta^2 w^2 g^T H g`` (Eq. 2 with the loss weight
    ``w`` folded into the step). Measured along a run, the two terms test Goodfellow et al.'s
    statement that the paper relies on: "the gradient norm does not shrink significantly throughout
    learning, but the g^T H g term grows by more than an order of magnitude".

    Attributes:
        loss: the (unweighted) loss ``f`` on the batch.
        grad_dot_grad: ``g^T g``, the squared gradient norm (the slope term of Eq. 2).
        grad_hessian_grad: ``g^T H g`` (the curvature term of Eq. 2).
    """

    loss: float
    grad_dot_grad: float
    grad_hessian_grad: float

    @property
    def directional_curvature(self) -> float:
        """Curvature along the gradient, ``g^T H g / g^T g`` (nan when ``g = 0``): the Rayleigh
        quotient of ``H`` at ``g``, between the smallest and the largest eigenvalue of ``H``."""
        return self.grad_hessian_grad / self.grad_dot_grad if self.grad_dot_grad else math.nan

    def predicted_loss_change(self, lr: float, weight: float = 1.0) -> float:
        """Eq. 2's ``-eta w g^T g + 1/2 eta^2 w^2 g^T H g`` for the step ``-lr * weight * g``.

        Exact when the loss is quadratic. For heavy-ball momentum the step actually taken is not
        along ``g``; this is the change of a plain SGD step (or of the momentum step's gradient part).
        """
        step = lr * weight
        return -step * self.grad_dot_grad + 0.5 * step * step * self.grad_hessian_grad

    def optimal_weight(self, lr: float) -> float:
        """Loss weight that minimises Eq. 2's model: ``w* = g^T g / (eta g^T H g)``.

        The model is a parabola in ``w`` with minimum ``-(g^T g)^2 / (2 g^T H g)`` at ``w*``; the
        step lowers it for ``0 < w < 2 w*`` only, i.e. while ``eta w g^T H g / g^T g < 2``: plain
        SGD's stability condition with the directional curvature in place of the sharpness.
        ``math.inf`` when ``g^T H g <= 0`` (no minimum along ``g``: no upper limit on the weight).
        """
        if lr <= 0:
            raise ValueError(f"lr must be positive, got {lr}")
        if self.grad_hessian_grad <= 0:
            return math.inf
        return self.grad_dot_grad / (lr * self.grad_hessian_grad)


@dataclass(frozen=True)
class EigenvalueEstimate:
    """Result of :meth:`LossHessian.top_eigenvalue` / :func:`lanczos_top_eigenvalue`.

    Attributes:
        value: estimate of the largest *algebraic* eigenvalue ``lambda_max`` (not the largest in
            magnitude: a large negative eigenvalue is not reported).
        hvp_count: Hessian-vector (matrix-vector) products used.
        converged: whether a stopping rule was met before ``max_iterations`` ran out.
        residual_norm: ``|H y - value y|`` for the unit Ritz vector ``y``: some eigenvalue of ``H``
            is guaranteed to lie within this distance of ``value`` (a rigorous, usually pessimistic,
            error bar).
        history: the estimate after each product, ``history[-1] == value``; non-decreasing in exact
            arithmetic (Lanczos' top Ritz value only grows).
        vector: the unit Ritz vector ``y`` (flat, see :func:`unflatten_like`), the estimate of the
            top eigenvector; not compared by ``==``.
    """

    value: float
    hvp_count: int
    converged: bool
    residual_norm: float
    history: Tuple[float, ...]
    vector: Optional[Tensor] = field(default=None, compare=False, repr=False)


# --------------------------------------------------------------------------------------------
# Lanczos
# --------------------------------------------------------------------------------------------


def lanczos_top_eigenvalue(matvec: Callable[[Tensor], Tensor], start: Tensor, *,
                           max_iterations: int = 20, rtol: float = 1e-5) -> EigenvalueEstimate:
    """Largest algebraic eigenvalue of a symmetric operator by the Lanczos method.

    ``matvec``: ``v -> A v`` on flat vectors (one Hessian-vector product per iteration); ``start``:
    any nonzero vector; at most ``max_iterations`` products (capped at the dimension). The Krylov
    basis is kept and fully re-orthogonalised (classical Gram-Schmidt, twice), which keeps float32
    runs free of spurious ("ghost") Ritz values; memory is ``max_iterations`` vectors.

    Stops, ``converged=True``, as soon as the top Ritz value (which only rises towards
    ``lambda_max``) moved by at most ``rtol`` (relative) over the last product, or the rigorous
    residual bound ``|A y - theta y| <= rtol |theta|`` holds (this also covers an exhausted Krylov
    space). ``rtol=0``: always use ``max_iterations``.

    Why the default tolerance is small (1e-5) although the goal is 1%: from a start vector with a
    small component along the top eigenvector, the top Ritz value first settles on the *second*
    eigenvalue, moving by ~1e-4 per product, before rising to ``lambda_max``. On the benchmark's
    13-layer BN network one of three seeds did this (11.02 for six products, 9% below ``lambda_max``
    = 12.09, then 12.05 after 20); ``rtol=1e-3`` would have stopped on that plateau, which no
    single-vector Krylov method can detect.
    """
    if max_iterations < 1:
        raise ValueError("max_iterations must be >= 1")
    n = start.numel()
    steps = min(max_iterations, n)
    basis = torch.zeros(steps, n, dtype=start.dtype, device=start.device)
    basis[0] = start.reshape(-1) / start.norm()
    alphas: List[float] = []
    betas: List[float] = []
    history: List[float] = []
    beta, theta, residual, converged = 0.0, math.nan, math.inf, False
    for k in range(steps):
        w = matvec(basis[k])
        if k > 0:
            w = w - beta * basis[k - 1]
        alphas.append(float(torch.dot(w, basis[k])))
        w = w - alphas[-1] * basis[k]
        for _ in range(2):  # full re-orthogonalisation: "twice is enough"
            w = w - basis[: k + 1].T @ (basis[: k + 1] @ w)
        beta = float(w.norm())
        previous, (theta, ritz_vector) = theta, _top_ritz_pair(alphas, betas)
        residual = beta * abs(float(ritz_vector[-1]))
        history.append(theta)
        scale = max(abs(theta), 1e-30)
        if residual <= rtol * scale or (k > 0 and abs(theta - previous) <= rtol * scale):
            converged = True
            break
        if k + 1 < steps:
            betas.append(beta)
            basis[k + 1] = w / beta
    y = ritz_vector.to(dtype=basis.dtype, device=basis.device)
    return EigenvalueEstimate(value=theta, hvp_count=len(history), converged=converged,
                              residual_norm=residual, history=tuple(history),
                              vector=basis[: len(history)].T @ y)


def _top_ritz_pair(alphas: List[float], betas: List[float]) -> Tuple[float, Tensor]:
    """The largest eigenvalue of the Lanczos tridiagonal matrix (``alphas`` on its diagonal,
    ``betas`` beside it) and its unit eigenvector."""
    tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
    if betas:
        off = torch.tensor(betas, dtype=torch.float64)
        tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
    values, vectors = torch.linalg.eigh(tridiagonal)
    return float(values[-1]), vectors[:, -1]


def _random_start(n: int, like: Tensor, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, generator=generator).to(device=like.device, dtype=like.dtype)


# --------------------------------------------------------------------------------------------
# The loss on one batch: gradient and Hessian-vector products
# --------------------------------------------------------------------------------------------


class LossHessian:
    """Loss, gradient and Hessian-vector products of ``loss_fn(model(inputs), targets)`` on one batch.

    The constructor runs one forward and one backward with ``create_graph=True`` under
    :func:`measurement_mode` (so the model is left unchanged, see the module docstring); every
    :meth:`hvp` afterwards is one double-backward pass through that graph. Several measurements
    can share it::

        hessian = LossHessian(model, x, y)
        m = hessian.curvature()                   # g^T g, g^T H g: 1 product
        top = hessian.top_eigenvalue()            # lambda_max: <= 20 products

    Attributes:
        parameters: the trainable parameters (the Hessian's coordinates), in ``model.parameters()``
            order.
        loss: the loss, detached.
        hvp_count: Hessian-vector products computed so far.
    """

    def __init__(self, model: nn.Module, inputs: Tensor, targets: Tensor,
                 loss_fn: LossFn = F.cross_entropy, *, bn_stats: str = "batch") -> None:
        self.parameters = trainable_parameters(model)
        if not self.parameters:
            raise ValueError("the model has no trainable parameters")
        with measurement_mode(model, bn_stats), torch.enable_grad():
            loss = loss_fn(model(inputs), targets)
            if loss.dim() != 0:
                raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}")
            grads = torch.autograd.grad(loss, self.parameters, create_graph=True, allow_unused=True)
        self.loss = loss.detach()
        self._grads = grads  # with graph; None for parameters the loss does not use
        self.hvp_count = 0

    @property
    def num_parameters(self) -> int:
        """Dimension of the Hessian."""
        return sum(p.numel() for p in self.parameters)

    @property
    def gradient(self) -> List[Tensor]:
        """The gradient ``g``, one detached tensor per parameter (zeros for unused parameters)."""
        return [torch.zeros_like(p) if g is None else g.detach() for g, p in zip(self._grads, self.parameters)]

    def hvp(self, vectors: Sequence[Tensor]) -> List[Tensor]:
        """``H v`` for ``v`` given as one tensor per parameter; returns one tensor per parameter."""
        if len(vectors) != len(self.parameters):
            raise ValueError(f"expected {len(self.parameters)} tensors, got {len(vectors)}")
        # Gradient entries that do not depend on the parameters (None, or no graph) add nothing to
        # the derivative of g . v.
        pairs = [(g, v) for g, v in zip(self._grads, vectors) if g is not None and g.requires_grad]
        self.hvp_count += 1
        if not pairs:
            return [torch.zeros_like(p) for p in self.parameters]
        products = torch.autograd.grad([g for g, _ in pairs], self.parameters,
                                       grad_outputs=[v for _, v in pairs], retain_graph=True,
                                       allow_unused=True)
        return [torch.zeros_like(p) if h is None else h for h, p in zip(products, self.parameters)]

    def hvp_flat(self, vector: Tensor) -> Tensor:
        """``H v`` on flat vectors (see :func:`flatten`)."""
        return flatten(self.hvp(unflatten_like(vector, self.parameters)))

    def curvature(self) -> CurvatureMeasurement:
        """Eq. 2's terms: loss, ``g^T g`` and ``g^T H g`` (one Hessian-vector product, ``H g``).

        With the constructor's forward and backward, about four training steps on the CPU
        (``benchmarks/bench_curvature.py``: 3.9-4.0 for its BN network with batch statistics, 3.2
        with running statistics). Two alternatives measured on the same network were slower:
        forward-over-reverse (``torch.func.jvp`` of ``torch.func.grad``, 5.2 steps) and the second
        directional derivative by nested forward mode (5.3 steps).
        """
        g = self.gradient
        return CurvatureMeasurement(float(self.loss), float(dot(g, g)), float(dot(g, self.hvp(g))))

    def top_eigenvalue(self, *, max_iterations: int = 20, rtol: float = 1e-5, seed: int = 0,
                       warm_start: Optional[Tensor] = None) -> EigenvalueEstimate:
        """Sharpness ``lambda_max``: the largest algebraic eigenvalue of ``H``, by Lanczos from a
        Gaussian start vector drawn with ``seed``; compare ``lr * weight * value`` with
        ``2 (1 + momentum)`` (:func:`stability_ratio`).

        ``warm_start``: a flat vector close to the top eigenvector, e.g. the ``vector`` of an earlier
        estimate a few steps before in the same run. Lanczos then starts from it plus a small seeded
        Gaussian part (a tenth of its length, so no direction is missing from the Krylov space) and
        usually converges in a few products instead of most of ``max_iterations``.
        See :func:`lanczos_top_eigenvalue` for the stopping rules and the returned fields.
        """
        start = _random_start(self.num_parameters, self.parameters[0], seed)
        if warm_start is not None:
            if warm_start.numel() != self.num_parameters:
                raise ValueError(f"warm_start has {warm_start.numel()} entries, the Hessian {self.num_parameters}")
            w = warm_start.reshape(-1).to(start)
            start = w / w.norm() + 0.1 * start / start.norm()
        return lanczos_top_eigenvalue(self.hvp_flat, start, max_iterations=max_iterations, rtol=rtol)


# --------------------------------------------------------------------------------------------
# Stability of (heavy-ball) SGD: the edge of stability
# --------------------------------------------------------------------------------------------


def stability_ratio(
    sharpness: float, lr: float, weight: float = 1.0, momentum: float = 0.0, weight_decay: float = 0.0
) -> float:
    """``eta (w lambda_max + wd) / (2 (1 + beta))``: above 1 the step diverges on the quadratic model.

    On ``f = 1/2 lambda x^2``, ``torch.optim.SGD(lr=eta, momentum=beta)`` (heavy ball,
    ``nesterov=False``, ``dampening=0``) iterates ``x' = x - eta lambda x + beta (x - x_prev)``,
    which converges iff ``0 < eta lambda < 2 (1 + beta)``. Sharpness above this threshold makes the
    step diverge along the top eigenvector: the "edge of stability" of Cohen et al. (2021), whose
    full-batch training hovers at ``lambda_max ~ 2 (1 + beta) / eta``.

    ``sharpness`` is ``lambda_max`` of the *unweighted* loss; the loss weight ``w`` multiplies the
    Hessian (equivalently the learning rate: the effective learning rate is ``eta w``) and coupled
    weight decay ``wd`` (``torch.optim.SGD(weight_decay=wd)``, not scaled by ``w``) adds ``wd`` to
    every eigenvalue of the function descended.
    """
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")
    return lr * (weight * sharpness + weight_decay) / (2.0 * (1.0 + momentum))
