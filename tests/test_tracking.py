import pytest
import torch
import torch.nn.functional as F

from lossdecay_lib.tracking import CurvatureTracker


def _net():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.Tanh(),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 5),
    ).double()


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 5, (16,), generator=g)


def _sgd_step(model, opt, batch):
    opt.zero_grad()
    F.cross_entropy(model(batch[0]), batch[1]).backward()
    opt.step()


def test_plain_sgd_step_on_the_eval_batch_matches_equation_2_exactly():
    model, batch = _net(), _batch()
    lr = 0.05
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    tracker = CurvatureTracker(model, batch, every=1)
    tracker.before_step()
    _sgd_step(model, opt, batch)
    row = tracker.after_step(0, 0, 1.0, lr)
    # The step taken is -lr g on the same batch: g^T d + 1/2 d^T H d = -lr g^T g + 1/2 lr^2 g^T H g.
    assert row["predicted_change"] == pytest.approx(-lr * row["gTg"] + 0.5 * lr**2 * row["gTHg"], rel=1e-9)
    assert row["step_norm"] == pytest.approx(lr * row["gTg"] ** 0.5, rel=1e-9)


def test_quadratic_model_predicts_small_steps_and_the_model_is_left_as_trained():
    model, batch = _net(), _batch()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    tracker = CurvatureTracker(model, batch, every=2, sharpness_every=1, lanczos_iterations=10)
    rows = []
    for step in range(4):
        if tracker.due(step):
            tracker.before_step()
        _sgd_step(model, opt, _batch(step))
        if step % 2 == 0:
            state = [p.detach().clone() for p in model.parameters()], [b.clone() for b in model.buffers()]
            rows.append(tracker.after_step(step, 0, 1.0, 1e-3))
            assert all(torch.equal(a, p) for a, p in zip(state[0], model.parameters()))
            assert all(torch.equal(a, b) for a, b in zip(state[1], model.buffers()))
    assert [r["step"] for r in rows] == [0, 2]
    for r in rows:
        assert r["actual_change"] == pytest.approx(r["predicted_change"], rel=1e-2, abs=1e-9)
        assert r["sharpness"] is not None and r["sharpness"] > 0


def test_misuse_is_an_error():
    with pytest.raises(ValueError, match="every must be a positive"):
        CurvatureTracker(_net(), _batch(), every=0)
    with pytest.raises(RuntimeError, match="without before_step"):
        CurvatureTracker(_net(), _batch(), every=1).after_step(0, 0, 1.0, 0.1)


def test_measurement_cost_counts_the_share_of_wall_time_and_the_lanczos_products():
    from lossdecay_lib.tracking import measurement_cost

    rows = [{"seconds": 1.0, "sharpness_hvps": 8}, {"seconds": 2.0, "sharpness_hvps": None}]
    runs = [{"status": "finished", "wall_seconds": 10.0, "curvature": rows},
            {"status": "finished", "wall_seconds": 6.0, "curvature": rows},
            {"status": "finished", "wall_seconds": 6.0, "curvature": [{"sharpness_hvps": 3}]},  # untimed
            {"status": "diverged", "wall_seconds": 1.0, "curvature": rows}]
    cost = measurement_cost(runs)
    assert cost["runs"] == 2 and cost["measurements_per_run"] == 2
    assert cost["share_mean"] == pytest.approx(0.4) and cost["hvps_per_sharpness"] == 8
