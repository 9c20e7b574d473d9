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

* :func:`measure_curvature` -- the loss, ``g^T g``, ``g^T H g`` and the directional curvature
  ``g^T H g / g^T g`` on one fixed batch, in one call (one forward, one backward that keeps its
  graph, one Hessian-vector product).
* :func:`top_hessian_eigenvalue` -- the sharpness ``lambda_max`` (largest algebraic eigenvalue of
  the Hessian) by Lanczos with a relative tolerance.
* The quadratic model of Eq. 2: :func:`predicted_loss_change`, :func:`optimal_weight`, and the
  stability threshold of heavy-ball SGD, :func:`stability_threshold`, :func:`stability_ratio`,
  :func:`exceeds_stability_threshold` (the "edge of stability", Cohen et al. 2021).
* :class:`LossHessian` -- the object behind all of these: the loss, gradient and Hessian-vector
  products of a model on one fixed batch, sharing one forward/backward between several
  measurements (e.g. ``g^T H g`` and the top eigenvalue from the same graph).

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
composite of elementwise ops) is nearly half; :func:`measure_curvature` ~3.1-3.6 steps in all.

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

__all__ = [
    "BN_STATS_MODES",
    "CurvatureMeasurement",
    "EigenvalueEstimate",
    "LossHessian",
    "directional_curvature",
    "dot",
    "exceeds_stability_threshold",
    "flatten",
    "hessian_vector_product",
    "lanczos_top_eigenvalue",
    "measure_curvature",
    "measurement_mode",
    "optimal_weight",
    "predicted_loss_change",
    "stability_ratio",
    "stability_threshold",
    "top_hessian_eigenvalue",
    "trainable_parameters",
    "unflatten_like",
]

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


def directional_curvature(grad_dot_grad: float, grad_hessian_grad: float) -> float:
    """Curvature of the loss along the gradient, ``g^T H g / g^T g`` (nan when ``g = 0``).

    It is the Rayleigh quotient of ``H`` at ``g``, so it lies between the smallest and the largest
    eigenvalue of ``H``; the quadratic model of Eq. 2 along ``g`` is
    ``-eta w |g|^2 + 1/2 (eta w)^2 |g|^2 * directional_curvature``.
    """
    if grad_dot_grad == 0:
        return math.nan
    return grad_hessian_grad / grad_dot_grad


def predicted_loss_change(grad_dot_grad: float, grad_hessian_grad: float, lr: float, weight: float = 1.0) -> float:
    """Loss change predicted by the quadratic model (the paper's Eq. 2) for the step ``-lr * weight * g``.

    ``f(x - eta w g) - f(x) ~ -eta w g^T g + 1/2 eta^2 w^2 g^T H g``, with ``eta = lr`` and
    ``w = weight``. Exact when the loss is quadratic. For heavy-ball momentum the step actually
    taken is not along ``g``; this is the change of a plain SGD step (or of the gradient part of
    the momentum step).
    """
    step = lr * weight
    return -step * grad_dot_grad + 0.5 * step * step * grad_hessian_grad


def optimal_weight(grad_dot_grad: float, grad_hessian_grad: float, lr: float) -> float:
    """Loss weight that minimises the quadratic model of Eq. 2: ``w* = g^T g / (eta g^T H g)``.

    The model ``q(w) = -eta w g^T g + 1/2 eta^2 w^2 g^T H g`` is a parabola in ``w``; its minimum
    ``q(w*) = -(g^T g)^2 / (2 g^T H g)`` is at ``w*``, and the step lowers the model for
    ``0 < w < 2 w*`` only, i.e. while ``eta w (g^T H g / g^T g) < 2``: the plain-SGD stability
    condition with the directional curvature in place of the sharpness.

    Returns ``math.inf`` when ``g^T H g <= 0``: the quadratic then has no minimum along ``g`` (it
    decreases without bound for ``w > 0``), so the model sets no upper limit on the weight. Returns
    0 when ``g = 0`` and ``g^T H g > 0``.
    """
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    if grad_hessian_grad <= 0:
        return math.inf
    return grad_dot_grad / (lr * grad_hessian_grad)


@dataclass(frozen=True)
class CurvatureMeasurement:
    """The terms of the paper's Eq. 2 measured on one batch.

    Attributes:
        loss: the (unweighted) loss ``f`` on the batch.
        grad_dot_grad: ``g^T g``, the squared gradient norm (the slope term of Eq. 2).
        grad_hessian_grad: ``g^T H g`` (the curvature term of Eq. 2), the term Goodfellow et al.
            say "grows by more than an order of magnitude" while the gradient norm does not.
    """

    loss: float
    grad_dot_grad: float
    grad_hessian_grad: float

    @property
    def gradient_norm(self) -> float:
        """``|g| = sqrt(g^T g)``."""
        return math.sqrt(self.grad_dot_grad)

    @property
    def directional_curvature(self) -> float:
        """``g^T H g / g^T g`` (see :func:`directional_curvature`)."""
        return directional_curvature(self.grad_dot_grad, self.grad_hessian_grad)

    def predicted_loss_change(self, lr: float, weight: float = 1.0) -> float:
        """Eq. 2's ``-eta w g^T g + 1/2 eta^2 w^2 g^T H g`` (see :func:`predicted_loss_change`)."""
        return predicted_loss_change(self.grad_dot_grad, self.grad_hessian_grad, lr, weight)

    def optimal_weight(self, lr: float) -> float:
        """``w* = g^T g / (eta g^T H g)``, ``inf`` if ``g^T H g <= 0`` (see :func:`optimal_weight`)."""
        return optimal_weight(self.grad_dot_grad, self.grad_hessian_grad, lr)


@dataclass(frozen=True)
class EigenvalueEstimate:
    """Result of :func:`top_hessian_eigenvalue` / :func:`lanczos_top_eigenvalue`.

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


def lanczos_top_eigenvalue(
    matvec: Callable[[Tensor], Tensor],
    start: Tensor,
    *,
    max_iterations: int = 20,
    rtol: float = 1e-5,
) -> EigenvalueEstimate:
    """Largest algebraic eigenvalue of a symmetric operator by the Lanczos method.

    Each iteration costs one ``matvec`` (one Hessian-vector product). The Krylov basis is kept and
    fully re-orthogonalised (classical Gram-Schmidt, twice), which keeps float32 runs free of
    spurious ("ghost") Ritz values; memory is ``max_iterations`` vectors of the operator's size.

    Stops, ``converged=True``, as soon as either

    * the relative increase of the top Ritz value over the last product is ``<= rtol`` (the
      usual practical rule; the top Ritz value rises monotonically towards ``lambda_max``), or
    * the rigorous residual bound ``|H y - theta y| <= rtol * |theta|`` holds (this also covers an
      exhausted Krylov space, e.g. ``max_iterations >= dimension``).

    Why the default tolerance is small (1e-5) although the goal is 1%: when the start vector has a
    small component along the top eigenvector, the top Ritz value first converges to the *second*
    eigenvalue and sits there, moving by ~1e-4 per product, before rising to ``lambda_max``. On the
    benchmark's 13-layer BN network one of three seeds did this (11.02 for six products, 9% below
    ``lambda_max`` = 12.09, then 12.05 after 20 products); ``rtol=1e-3`` would have stopped on that
    plateau. No single-vector Krylov method can detect it, so the default effectively spends the
    whole ``max_iterations`` budget unless the estimate has truly settled.

    Args:
        matvec: ``v -> A v`` on flat vectors, ``A`` symmetric.
        start: starting vector (any nonzero vector; its direction is what matters).
        max_iterations: most products to use (capped at the dimension).
        rtol: relative tolerance of both stopping rules (0: always use ``max_iterations``).
    """
    if max_iterations < 1:
        raise ValueError("max_iterations must be >= 1")
    n = start.numel()
    steps = min(max_iterations, n)
    basis = torch.zeros(steps, n, dtype=start.dtype, device=start.device)
    q = start.reshape(-1) / start.norm()
    basis[0] = q
    alphas: List[float] = []
    betas: List[float] = []
    history: List[float] = []
    beta = 0.0
    theta, residual, converged = math.nan, math.inf, False
    for k in range(steps):
        w = matvec(basis[k])
        if k > 0:
            w = w - beta * basis[k - 1]
        alpha = float(torch.dot(w, basis[k]))
        w = w - alpha * basis[k]
        for _ in range(2):  # full re-orthogonalisation: "twice is enough"
            w = w - basis[: k + 1].T @ (basis[: k + 1] @ w)
        beta = float(w.norm())
        alphas.append(alpha)

        tridiagonal = torch.diag(torch.tensor(alphas, dtype=torch.float64))
        if betas:
            off = torch.tensor(betas, dtype=torch.float64)
            tridiagonal += torch.diag(off, 1) + torch.diag(off, -1)
        ritz_values, ritz_vectors = torch.linalg.eigh(tridiagonal)
        previous = theta
        theta = float(ritz_values[-1])
        residual = beta * abs(float(ritz_vectors[-1, -1]))
        history.append(theta)

        scale = max(abs(theta), 1e-30)
        if residual <= rtol * scale or (k > 0 and abs(theta - previous) <= rtol * scale):
            converged = True
            break
        if k + 1 < steps:
            betas.append(beta)
            basis[k + 1] = w / beta
    used = len(history)
    top_vector = ritz_vectors[:, -1].to(dtype=basis.dtype, device=basis.device)
    return EigenvalueEstimate(
        value=theta,
        hvp_count=used,
        converged=converged,
        residual_norm=residual,
        history=tuple(history),
        vector=basis[:used].T @ top_vector,
    )


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

    def __init__(
        self,
        model: nn.Module,
        inputs: Tensor,
        targets: Tensor,
        loss_fn: LossFn = F.cross_entropy,
        *,
        bn_stats: str = "batch",
    ) -> None:
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
        products = torch.autograd.grad(
            [g for g, _ in pairs],
            self.parameters,
            grad_outputs=[v for _, v in pairs],
            retain_graph=True,
            allow_unused=True,
        )
        return [torch.zeros_like(p) if h is None else h for h, p in zip(products, self.parameters)]

    def hvp_flat(self, vector: Tensor) -> Tensor:
        """``H v`` on flat vectors (see :func:`flatten`)."""
        return flatten(self.hvp(unflatten_like(vector, self.parameters)))

    def curvature(self) -> CurvatureMeasurement:
        """Eq. 2's terms: loss, ``g^T g`` and ``g^T H g`` (one Hessian-vector product, ``H g``)."""
        g = self.gradient
        return CurvatureMeasurement(
            loss=float(self.loss),
            grad_dot_grad=float(dot(g, g)),
            grad_hessian_grad=float(dot(g, self.hvp(g))),
        )

    def top_eigenvalue(self, *, max_iterations: int = 20, rtol: float = 1e-5, seed: int = 0,
                       warm_start: Optional[Tensor] = None) -> EigenvalueEstimate:
        """Largest algebraic eigenvalue of ``H`` by Lanczos from a seeded Gaussian start vector.

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
# One-call entry points
# --------------------------------------------------------------------------------------------


def hessian_vector_product(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    vectors: Sequence[Tensor],
    loss_fn: LossFn = F.cross_entropy,
    *,
    bn_stats: str = "batch",
) -> List[Tensor]:
    """``H v`` of the loss on one batch, ``v`` and the result one tensor per trainable parameter.

    Costs one forward, one backward with graph and one double backward; to compute several
    products on the same batch build one :class:`LossHessian` and call its :meth:`~LossHessian.hvp`.
    """
    return LossHessian(model, inputs, targets, loss_fn, bn_stats=bn_stats).hvp(vectors)


def measure_curvature(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn = F.cross_entropy,
    *,
    bn_stats: str = "batch",
) -> CurvatureMeasurement:
    """The terms of the paper's Eq. 2 on a fixed batch: loss, ``g^T g``, ``g^T H g``.

    ``f(x - eta w g) ~ f(x) - eta w g^T g + 1/2 eta^2 w^2 g^T H g``. Measured over a training run,
    these test Goodfellow et al.'s statement that the paper relies on: "the gradient norm does not
    shrink significantly throughout learning, but the g^T H g term grows by more than an order of
    magnitude".

    Cost: one forward, one backward with graph, one Hessian-vector product by double backward: about
    four training steps on the CPU (``benchmarks/bench_curvature.py``: 3.9-4.0 for its BN network with
    batch statistics, 3.2 with running statistics; the Hessian-vector product alone costs about three
    steps there). Two alternatives measured on the same network were slower: forward-over-reverse
    (``torch.func.jvp`` of ``torch.func.grad``, 5.2 steps) and the second directional derivative by
    nested forward mode (5.3 steps). The model is left unchanged;
    ``bn_stats`` chooses the batch-norm statistics (``"batch"``, the default: those of this batch,
    as SGD sees them; ``"running"``: eval mode, somewhat cheaper). Returns a
    :class:`CurvatureMeasurement`, whose ``directional_curvature``, ``predicted_loss_change(lr,
    weight)`` and ``optimal_weight(lr)`` give the rest of the quadratic model.
    """
    return LossHessian(model, inputs, targets, loss_fn, bn_stats=bn_stats).curvature()


def top_hessian_eigenvalue(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    loss_fn: LossFn = F.cross_entropy,
    *,
    bn_stats: str = "batch",
    max_iterations: int = 20,
    rtol: float = 1e-5,
    seed: int = 0,
) -> EigenvalueEstimate:
    """Sharpness ``lambda_max``: the largest algebraic eigenvalue of the loss Hessian on a fixed batch.

    Lanczos from a Gaussian start vector drawn with ``seed``, at most ``max_iterations``
    Hessian-vector products, stopping at relative tolerance ``rtol`` (see
    :func:`lanczos_top_eigenvalue`). Compare ``lr * weight * value`` with ``2 (1 + momentum)``
    (:func:`exceeds_stability_threshold`). The model is left unchanged; ``bn_stats`` as in
    :func:`measure_curvature`.
    """
    hessian = LossHessian(model, inputs, targets, loss_fn, bn_stats=bn_stats)
    return hessian.top_eigenvalue(max_iterations=max_iterations, rtol=rtol, seed=seed)


# --------------------------------------------------------------------------------------------
# Stability of (heavy-ball) SGD: the edge of stability
# --------------------------------------------------------------------------------------------


def _check_momentum(momentum: float) -> None:
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum must be in [0, 1), got {momentum}")


def stability_threshold(lr: float, momentum: float = 0.0) -> float:
    """Largest sharpness at which SGD with heavy-ball momentum is stable on a quadratic: ``2 (1 + beta) / eta``.

    On ``f = 1/2 lambda x^2``, ``torch.optim.SGD(lr=eta, momentum=beta)`` (heavy ball,
    ``nesterov=False``, ``dampening=0``) iterates ``x' = x - eta lambda x + beta (x - x_prev)``,
    which converges iff ``0 < eta lambda < 2 (1 + beta)``. Sharpness above this threshold makes the
    step diverge along the top eigenvector: the "edge of stability" of Cohen et al. (2021), whose
    full-batch training hovers at ``lambda_max ~ 2 (1 + beta) / eta``. With a loss weight ``w``
    the effective learning rate is ``eta w``: pass ``lr = eta * w`` (or use
    :func:`exceeds_stability_threshold`).
    """
    if lr <= 0:
        raise ValueError(f"lr must be positive, got {lr}")
    _check_momentum(momentum)
    return 2.0 * (1.0 + momentum) / lr


def stability_ratio(
    sharpness: float, lr: float, weight: float = 1.0, momentum: float = 0.0, weight_decay: float = 0.0
) -> float:
    """``eta (w lambda_max + wd) / (2 (1 + beta))``: above 1 the step diverges on the quadratic model.

    ``sharpness`` is ``lambda_max`` of the *unweighted* loss; the loss weight ``w`` multiplies the
    Hessian (equivalently the learning rate: the effective learning rate is ``eta w``) and coupled
    weight decay ``wd`` (``torch.optim.SGD(weight_decay=wd)``, not scaled by ``w``) adds ``wd`` to
    every eigenvalue of the function descended. A continuous version of
    :func:`exceeds_stability_threshold`, convenient to plot against training time.
    """
    _check_momentum(momentum)
    return lr * (weight * sharpness + weight_decay) / (2.0 * (1.0 + momentum))


def exceeds_stability_threshold(
    sharpness: float, lr: float, weight: float = 1.0, momentum: float = 0.0, weight_decay: float = 0.0
) -> bool:
    """Whether ``eta * w * lambda_max`` (plus ``eta * wd``) exceeds ``2 (1 + beta)``.

    True means SGD with heavy-ball momentum ``beta``, learning rate ``eta`` and loss weight ``w``
    would diverge along the top eigenvector of a quadratic with this sharpness (see
    :func:`stability_threshold`, :func:`stability_ratio`).
    """
    return stability_ratio(sharpness, lr, weight, momentum, weight_decay) > 1.0
