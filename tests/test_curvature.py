"""Tests of lossdecay_lib.curvature against exact answers (quadratics, finite differences, eigvalsh)."""

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lossdecay_lib.curvature import (
    CurvatureMeasurement,
    LossHessian,
    flatten,
    lanczos_top_eigenvalue,
    stability_ratio,
    trainable_parameters,
    unflatten_like,
)

DTYPE = torch.float64


# ---------------------------------------------------------------------------------------------
# Small models built here (no dependency on the models package)
# ---------------------------------------------------------------------------------------------


class Quadratic(nn.Module):
    """f(x) = 1/2 x^T A x - b^T x with a parameter x; Hessian A, gradient A x - b."""

    def __init__(self, A, b, x0):
        super().__init__()
        self.register_buffer("A", A)
        self.register_buffer("b", b)
        self.x = nn.Parameter(x0.clone())

    def forward(self, _inputs=None):
        return 0.5 * self.x @ self.A @ self.x - self.b @ self.x


def output_is_loss(output, _targets):
    return output


def symmetric_with_eigenvalues(eigenvalues, seed=0):
    generator = torch.Generator().manual_seed(seed)
    n = len(eigenvalues)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=generator, dtype=DTYPE))
    A = q @ torch.diag(torch.as_tensor(eigenvalues, dtype=DTYPE)) @ q.T
    return 0.5 * (A + A.T)


def quadratic(eigenvalues, seed=0):
    generator = torch.Generator().manual_seed(seed + 1)
    n = len(eigenvalues)
    A = symmetric_with_eigenvalues(eigenvalues, seed)
    b = torch.randn(n, generator=generator, dtype=DTYPE)
    x0 = torch.randn(n, generator=generator, dtype=DTYPE)
    return Quadratic(A, b, x0)


def tiny_mlp(seed=0):
    """3 -> 5 -> 4 with tanh: 44 parameters, small enough to form the full Hessian."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 4)).to(DTYPE)


def classification_batch(n, shape, classes, seed=0, mean=0.0, std=1.0):
    generator = torch.Generator().manual_seed(seed)
    x = mean + std * torch.randn(n, *shape, generator=generator, dtype=DTYPE)
    y = torch.randint(classes, (n,), generator=generator)
    return x, y


def small_bn_convnet(seed=0):
    """Conv-BN-tanh x2, dropout, linear head: exercises batch norm and train/eval behaviour.

    tanh rather than ReLU: finite differences across a ReLU kink are meaningless.
    """
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.Tanh(),
        nn.Conv2d(4, 4, 3, padding=1, stride=2),
        nn.BatchNorm2d(4),
        nn.Tanh(),
        nn.Flatten(),
        nn.Dropout(0.5),
        nn.Linear(4 * 4 * 4, 3),
    ).to(DTYPE)


# ---------------------------------------------------------------------------------------------
# Flat vectors
# ---------------------------------------------------------------------------------------------


def test_flatten_and_unflatten_are_inverse():
    tensors = [torch.arange(6.0).reshape(2, 3), torch.tensor([7.0]), torch.ones(2, 2)]
    flat = flatten(tensors)
    assert flat.shape == (11,)
    for a, b in zip(unflatten_like(flat, tensors), tensors):
        assert torch.equal(a, b)
    with pytest.raises(ValueError):
        unflatten_like(flat[:-1], tensors)


# ---------------------------------------------------------------------------------------------
# Exact answers on a quadratic
# ---------------------------------------------------------------------------------------------


def test_hvp_on_quadratic_is_A_v():
    model = quadratic([3.0, 1.0, -2.0, 0.5, 7.0])
    v = torch.randn(5, dtype=DTYPE, generator=torch.Generator().manual_seed(3))
    (hv,) = LossHessian(model, None, None, output_is_loss).hvp([v])
    torch.testing.assert_close(hv, model.A @ v, rtol=1e-12, atol=1e-12)


def test_grad_dot_grad_and_grad_hessian_grad_on_quadratic():
    model = quadratic([4.0, 2.0, 1.0, 0.25])
    A, b, x = model.A, model.b, model.x.detach()
    g = A @ x - b
    m = LossHessian(model, None, None, output_is_loss).curvature()
    assert isinstance(m, CurvatureMeasurement)
    assert m.loss == pytest.approx(float(0.5 * x @ A @ x - b @ x), rel=1e-12)
    assert m.grad_dot_grad == pytest.approx(float(g @ g), rel=1e-12)
    assert m.grad_hessian_grad == pytest.approx(float(g @ A @ g), rel=1e-12)
    assert m.directional_curvature == pytest.approx(float(g @ A @ g / (g @ g)), rel=1e-12)
    # A Rayleigh quotient: between the extreme eigenvalues.
    assert 0.25 <= m.directional_curvature <= 4.0


def test_directional_curvature_of_zero_gradient_is_nan():
    assert math.isnan(CurvatureMeasurement(1.0, 0.0, 0.0).directional_curvature)


def test_top_eigenvalue_of_quadratic_is_largest_algebraic_not_largest_magnitude():
    # A large negative eigenvalue (-50) dominates in magnitude; lambda_max is 10.
    eigenvalues = [-50.0, 10.0, 9.0, 5.0, 3.0, 1.0, 0.5, 0.0, -1.0, -3.0, 2.0, 4.0]
    model = quadratic(eigenvalues, seed=4)
    estimate = LossHessian(model, None, None, output_is_loss).top_eigenvalue(max_iterations=50, rtol=1e-12)
    assert estimate.value == pytest.approx(10.0, rel=1e-9)
    assert estimate.converged
    assert estimate.hvp_count <= len(eigenvalues)  # Krylov space exhausted at the dimension
    assert estimate.history[-1] == estimate.value


def test_top_eigenvalue_of_positive_definite_quadratic_with_default_budget():
    eigenvalues = torch.cat([torch.tensor([20.0]), torch.linspace(0.0, 10.0, 39)]).tolist()
    model = quadratic(eigenvalues, seed=5)
    estimate = LossHessian(model, None, None, output_is_loss).top_eigenvalue()
    exact = float(torch.linalg.eigvalsh(model.A).max())
    assert exact == pytest.approx(20.0)
    assert estimate.hvp_count <= 20
    assert estimate.value == pytest.approx(exact, rel=1e-2)
    assert estimate.value <= exact * (1 + 1e-12)  # Ritz values never exceed lambda_max
    assert estimate.residual_norm >= abs(estimate.value - exact) - 1e-9  # the bound holds


def test_lanczos_reports_not_converged_when_budget_runs_out():
    A = symmetric_with_eigenvalues(torch.linspace(1.0, 2.0, 30).tolist())
    start = torch.ones(30, dtype=DTYPE)
    estimate = lanczos_top_eigenvalue(lambda v: A @ v, start, max_iterations=3, rtol=1e-12)
    assert not estimate.converged
    assert estimate.hvp_count == 3
    assert len(estimate.history) == 3
    assert list(estimate.history) == sorted(estimate.history)  # top Ritz value only grows


def test_lanczos_residual_norm_and_ritz_vector():
    A = symmetric_with_eigenvalues(torch.linspace(-1.0, 3.0, 25).tolist(), seed=6)
    start = torch.randn(25, dtype=DTYPE, generator=torch.Generator().manual_seed(6))
    estimate = lanczos_top_eigenvalue(lambda v: A @ v, start, max_iterations=5, rtol=0.0)
    y = estimate.vector
    assert float(y.norm()) == pytest.approx(1.0, rel=1e-10)
    assert float(y @ A @ y) == pytest.approx(estimate.value, rel=1e-10)  # a Rayleigh quotient
    assert estimate.residual_norm == pytest.approx(float((A @ y - estimate.value * y).norm()), rel=1e-6)
    assert estimate.residual_norm > 1e-3  # not converged after 5 products: a real test of the formula


def test_lanczos_stops_at_the_first_iteration_meeting_the_tolerance():
    A = symmetric_with_eigenvalues(torch.cat([torch.tensor([5.0]), torch.linspace(0.0, 4.0, 59)]).tolist(), seed=7)
    start = torch.randn(60, dtype=DTYPE, generator=torch.Generator().manual_seed(7))
    rtol = 1e-3
    estimate = lanczos_top_eigenvalue(lambda v: A @ v, start, max_iterations=60, rtol=rtol)
    history = estimate.history
    assert estimate.converged and 3 <= estimate.hvp_count < 60
    for k in range(1, len(history) - 1):  # before stopping: the estimate still moved by more than rtol
        assert history[k] - history[k - 1] > rtol * abs(history[k])
    last_increase = history[-1] - history[-2]
    assert last_increase <= rtol * abs(history[-1]) or estimate.residual_norm <= rtol * abs(history[-1])
    assert estimate.value == pytest.approx(5.0, rel=1e-2)


def test_lanczos_start_vector_is_seeded():
    model = tiny_mlp()
    x, y = classification_batch(16, (3,), 4)
    a = LossHessian(model, x, y).top_eigenvalue(max_iterations=4, rtol=0.0, seed=1)
    b = LossHessian(model, x, y).top_eigenvalue(max_iterations=4, rtol=0.0, seed=1)
    c = LossHessian(model, x, y).top_eigenvalue(max_iterations=4, rtol=0.0, seed=2)
    assert a.history == b.history
    assert a.history != c.history


# ---------------------------------------------------------------------------------------------
# Nonlinear networks: finite differences and the full Hessian
# ---------------------------------------------------------------------------------------------


def finite_difference_hvp(model, x, y, v, bn_stats, eps=1e-5):
    """(g(theta + eps v) - g(theta - eps v)) / (2 eps), error O(eps^2)."""
    params = trainable_parameters(model)

    def gradient_at(sign):
        with torch.no_grad():
            for p, d in zip(params, v):
                p.add_(sign * eps * d)
        g = flatten(LossHessian(model, x, y, bn_stats=bn_stats).gradient)
        with torch.no_grad():
            for p, d in zip(params, v):
                p.sub_(sign * eps * d)
        return g

    return (gradient_at(+1) - gradient_at(-1)) / (2 * eps)


@pytest.mark.parametrize(
    "make_model, shape, bn_stats",
    [
        (tiny_mlp, (3,), "batch"),
        (small_bn_convnet, (3, 8, 8), "batch"),
        (small_bn_convnet, (3, 8, 8), "running"),
    ],
)
def test_hvp_matches_finite_differences_of_the_gradient(make_model, shape, bn_stats):
    model = make_model()
    classes = model[-1].out_features
    x, y = classification_batch(8, shape, classes, mean=1.0, std=2.0)
    params = trainable_parameters(model)
    generator = torch.Generator().manual_seed(7)
    v = [torch.randn(p.shape, generator=generator, dtype=DTYPE) for p in params]
    exact = flatten(LossHessian(model, x, y, bn_stats=bn_stats).hvp(v))
    approx = finite_difference_hvp(model, x, y, v, bn_stats)
    torch.testing.assert_close(exact, approx, rtol=1e-5, atol=1e-6 * float(exact.abs().max()))


def full_hessian_by_autograd(model, x, y):
    """The full Hessian from torch.autograd.functional.hessian, independent of the module's HVPs."""
    names = [name for name, p in model.named_parameters()]
    params = [p.detach() for p in model.parameters()]

    def loss_of(flat):
        tensors = unflatten_like(flat, params)
        return F.cross_entropy(torch.func.functional_call(model, dict(zip(names, tensors)), (x,)), y)

    return torch.autograd.functional.hessian(loss_of, flatten(params))


def test_hvps_rebuild_the_full_hessian_and_lanczos_finds_its_top_eigenvalue():
    model = tiny_mlp(seed=1)
    x, y = classification_batch(32, (3,), 4, seed=1, std=3.0)
    H = full_hessian_by_autograd(model, x, y)
    n = H.shape[0]
    assert n == 44

    hessian = LossHessian(model, x, y)
    columns = [hessian.hvp_flat(e) for e in torch.eye(n, dtype=DTYPE)]
    torch.testing.assert_close(torch.stack(columns, dim=1), H, rtol=1e-10, atol=1e-12)
    assert hessian.hvp_count == n

    exact_eigenvalues = torch.linalg.eigvalsh(H)
    exact_top = float(exact_eigenvalues.max())
    assert exact_eigenvalues.min() < 0 < exact_top  # a nonconvex point: both signs present

    tight = LossHessian(model, x, y).top_eigenvalue(max_iterations=n, rtol=1e-12)
    assert tight.value == pytest.approx(exact_top, rel=1e-8)

    default = LossHessian(model, x, y).top_eigenvalue()  # <= 20 HVPs, rtol 1e-5
    assert default.hvp_count <= 20
    assert default.value == pytest.approx(exact_top, rel=1e-2)


# ---------------------------------------------------------------------------------------------
# The quadratic model of Eq. 2 and the stability threshold
# ---------------------------------------------------------------------------------------------


def quadratic_value(model, x):
    return float(0.5 * x @ model.A @ x - model.b @ x)


@pytest.mark.parametrize("lr, weight", [(0.1, 1.0), (0.05, 0.7), (0.3, 2.0)])
def test_predicted_loss_change_is_exact_on_a_quadratic(lr, weight):
    model = quadratic([5.0, 2.0, 1.0, -0.5, 0.1], seed=2)
    m = LossHessian(model, None, None, output_is_loss).curvature()
    x = model.x.detach()
    g = model.A @ x - model.b
    actual = quadratic_value(model, x - lr * weight * g) - quadratic_value(model, x)
    assert m.predicted_loss_change(lr, weight) == pytest.approx(actual, rel=1e-10, abs=1e-12)


def test_optimal_weight_minimises_the_loss_along_the_step():
    model = quadratic([5.0, 2.0, 1.0, 0.3], seed=3)
    lr = 0.1
    m = LossHessian(model, None, None, output_is_loss).curvature()
    w_star = m.optimal_weight(lr)
    assert w_star == pytest.approx(m.grad_dot_grad / (lr * m.grad_hessian_grad))
    x = model.x.detach()
    g = model.A @ x - model.b

    def loss_after(w):
        return quadratic_value(model, x - lr * w * g)

    assert loss_after(w_star) < loss_after(0.99 * w_star)
    assert loss_after(w_star) < loss_after(1.01 * w_star)
    best = loss_after(w_star) - quadratic_value(model, x)
    assert best == pytest.approx(-m.grad_dot_grad**2 / (2 * m.grad_hessian_grad), rel=1e-10)
    # The step lowers the model exactly for 0 < w < 2 w*.
    assert m.predicted_loss_change(lr, 1.99 * w_star) < 0 < m.predicted_loss_change(lr, 2.01 * w_star)


def test_optimal_weight_is_inf_without_positive_curvature_along_g():
    # A = diag(1, -4), b = 0, x = (0.1, 1): g = (0.1, -4), g^T A g = 0.01 - 64 < 0.
    model = Quadratic(torch.diag(torch.tensor([1.0, -4.0], dtype=DTYPE)), torch.zeros(2, dtype=DTYPE),
                      torch.tensor([0.1, 1.0], dtype=DTYPE))
    m = LossHessian(model, None, None, output_is_loss).curvature()
    assert m.grad_hessian_grad < 0
    assert m.optimal_weight(0.1) == math.inf
    assert CurvatureMeasurement(0.0, 1.0, 0.0).optimal_weight(0.1) == math.inf
    assert CurvatureMeasurement(0.0, 0.0, 2.0).optimal_weight(0.1) == 0.0
    with pytest.raises(ValueError):
        m.optimal_weight(0.0)


def test_stability_ratio_formula():
    assert stability_ratio(20.0, 0.1) == pytest.approx(1.0)  # plain SGD: eta lambda = 2
    assert stability_ratio(38.0, 0.1, momentum=0.9) == pytest.approx(1.0)
    assert stability_ratio(76.0, 0.1, weight=0.5, momentum=0.9) == pytest.approx(1.0)
    assert stability_ratio(0.0, 0.1, weight_decay=20.0) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        stability_ratio(1.0, 0.1, momentum=1.0)


def run_sgd_on_1d_quadratic(curvature, lr, momentum, weight, steps=300):
    """torch.optim.SGD on weight * 1/2 curvature x^2 from x = 1; returns |x| at the end."""
    x = nn.Parameter(torch.tensor([1.0], dtype=DTYPE))
    optimizer = torch.optim.SGD([x], lr=lr, momentum=momentum)
    for _ in range(steps):
        optimizer.zero_grad()
        (weight * 0.5 * curvature * x.pow(2).sum()).backward()
        optimizer.step()
    return float(x.detach().abs())


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("weight", [1.0, 0.25])
@pytest.mark.parametrize("factor, diverges", [(0.98, False), (1.02, True)])
def test_heavy_ball_sgd_diverges_exactly_above_the_threshold(momentum, weight, factor, diverges):
    lr = 0.1
    # Sharpness of the unweighted loss at `factor` times the threshold for the effective lr * weight.
    sharpness = factor * 2 * (1 + momentum) / (lr * weight)
    assert (stability_ratio(sharpness, lr, weight=weight, momentum=momentum) > 1) is diverges
    final = run_sgd_on_1d_quadratic(sharpness, lr, momentum, weight)
    if diverges:
        assert final > 1e3
    else:
        assert final < 1e-3


# ---------------------------------------------------------------------------------------------
# Batch norm policy and leaving the model unchanged
# ---------------------------------------------------------------------------------------------


def snapshot(model):
    return {
        "state": {k: v.clone() for k, v in model.state_dict(keep_vars=True).items()},
        "tensors": {k: v for k, v in model.state_dict(keep_vars=True).items()},
        "grads": {k: None if p.grad is None else p.grad.clone() for k, p in model.named_parameters()},
        "training": {k: m.training for k, m in model.named_modules()},
    }


def assert_unchanged(model, before):
    after = model.state_dict(keep_vars=True)
    assert after.keys() == before["state"].keys()
    for key, value in after.items():
        assert value is before["tensors"][key], f"{key} was replaced"
        assert torch.equal(value, before["state"][key]), f"{key} changed"
    for key, p in model.named_parameters():
        if before["grads"][key] is None:
            assert p.grad is None, f"{key}.grad was written"
        else:
            assert torch.equal(p.grad, before["grads"][key]), f"{key}.grad changed"
    assert {k: m.training for k, m in model.named_modules()} == before["training"]


@pytest.mark.parametrize("mode", ["train", "eval", "mixed"])
@pytest.mark.parametrize("bn_stats", ["batch", "running"])
def test_measurements_leave_the_model_unchanged(mode, bn_stats):
    model = small_bn_convnet()
    x, y = classification_batch(8, (3, 8, 8), 3, mean=1.0, std=2.0)
    # Non-trivial running statistics, and a .grad on some parameters.
    model.train()
    with torch.no_grad():
        model(x)
    model[0].weight.grad = torch.ones_like(model[0].weight)
    if mode == "eval":
        model.eval()
    elif mode == "mixed":
        model.eval()
        model[4].train()
    before = snapshot(model)
    LossHessian(model, x, y, bn_stats=bn_stats).curvature()
    assert_unchanged(model, before)
    LossHessian(model, x, y, bn_stats=bn_stats).top_eigenvalue(max_iterations=3)
    assert_unchanged(model, before)


def test_batch_stats_measure_the_train_mode_loss_and_running_stats_the_eval_mode_loss():
    model = small_bn_convnet()
    x, y = classification_batch(8, (3, 8, 8), 3, mean=3.0, std=2.0)  # far from the initial running stats
    model.train()  # dropout on: the measurement must still be deterministic

    reference = copy.deepcopy(model).eval()
    with torch.no_grad():
        eval_loss = float(F.cross_entropy(reference(x), y))
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.train()
        batch_loss = float(F.cross_entropy(reference(x), y))
    assert abs(batch_loss - eval_loss) > 1e-3

    batch = LossHessian(model, x, y, bn_stats="batch").curvature()
    running = LossHessian(model, x, y, bn_stats="running").curvature()
    assert batch.loss == pytest.approx(batch_loss, rel=1e-12)
    assert running.loss == pytest.approx(eval_loss, rel=1e-12)
    assert batch.grad_hessian_grad != pytest.approx(running.grad_hessian_grad, rel=1e-3)
    assert LossHessian(model, x, y, bn_stats="batch").curvature() == batch  # dropout off: deterministic

    with pytest.raises(ValueError):
        LossHessian(model, x, y, bn_stats="train").curvature()


# ---------------------------------------------------------------------------------------------
# Edge cases of the parameter set
# ---------------------------------------------------------------------------------------------


class PartlyLinear(nn.Module):
    """Loss = sum(c * a) + 1/2 |b|^2 d, with an unused and a frozen parameter."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.ones(3, dtype=DTYPE))  # gradient constant: no graph
        self.b = nn.Parameter(torch.full((2,), 2.0, dtype=DTYPE))  # Hessian 3 I
        self.unused = nn.Parameter(torch.ones(4, dtype=DTYPE))
        self.frozen = nn.Parameter(torch.ones(1, dtype=DTYPE), requires_grad=False)

    def forward(self, _inputs=None):
        return (torch.arange(3, dtype=DTYPE) * self.a).sum() + 1.5 * self.b.pow(2).sum() * self.frozen.sum()


def test_unused_frozen_and_linear_parameters():
    model = PartlyLinear()
    hessian = LossHessian(model, None, None, output_is_loss)
    assert [p.shape for p in hessian.parameters] == [(3,), (2,), (4,)]  # frozen excluded
    v = [torch.ones(3, dtype=DTYPE), torch.ones(2, dtype=DTYPE), torch.ones(4, dtype=DTYPE)]
    ha, hb, hu = hessian.hvp(v)
    assert torch.equal(ha, torch.zeros(3, dtype=DTYPE))
    assert torch.equal(hb, torch.full((2,), 3.0, dtype=DTYPE))
    assert torch.equal(hu, torch.zeros(4, dtype=DTYPE))
    m = hessian.curvature()
    assert m.grad_dot_grad == pytest.approx(0 + 1 + 4 + 2 * 36)  # g_a = (0, 1, 2), g_b = 3 b = (6, 6)
    assert m.grad_hessian_grad == pytest.approx(3 * 72)


def test_a_warm_started_lanczos_finds_the_same_top_eigenvalue_in_fewer_products():
    model = small_bn_convnet()
    x, y = classification_batch(16, (3, 8, 8), 3)
    x = x.to(DTYPE)
    hessian = LossHessian(model, x, y)
    cold = hessian.top_eigenvalue(max_iterations=60, rtol=1e-10)
    with torch.no_grad():  # a few small steps later the top eigenvector has moved a little
        for p in model.parameters():
            p.add_(1e-3 * torch.randn_like(p))
    later = LossHessian(model, x, y)
    reference = later.top_eigenvalue(max_iterations=60, rtol=1e-10)
    warm = later.top_eigenvalue(max_iterations=60, rtol=1e-6, warm_start=cold.vector)
    assert warm.value == pytest.approx(reference.value, rel=1e-4)
    assert warm.hvp_count < later.top_eigenvalue(max_iterations=60, rtol=1e-6).hvp_count
    loose = later.top_eigenvalue(max_iterations=60, rtol=1e-3, warm_start=cold.vector)  # as the tracker does
    assert loose.value == pytest.approx(reference.value, rel=1e-2) and loose.hvp_count <= warm.hvp_count
    with pytest.raises(ValueError, match="warm_start has 3 entries"):
        later.top_eigenvalue(warm_start=torch.zeros(3, dtype=DTYPE))
