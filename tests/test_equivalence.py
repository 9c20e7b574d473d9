"""Each identity of the chapter "Loss decay or learning-rate decay?", as a unit test (float64)."""

import pytest
import torch

from lossdecay_lib import equivalence as E
from lossdecay_lib import schedules as S
from lossdecay_lib.optimizers import HeavyBallSGD, build_optimizer


def _tiny_net():
    # No conv bias before batch norm: the loss does not depend on it, its gradient is rounding noise,
    # and Adam normalises that noise into full-size steps that differ between any two runs.
    return torch.nn.Sequential(
        torch.nn.Conv2d(3, 4, 3, padding=1, bias=False), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 5),
    )


@pytest.fixture(scope="module")
def setup():
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(8, 3, 8, 8, generator=g, dtype=torch.float64), torch.randint(0, 5, (8,), generator=g))
               for _ in range(12)]
    return E.seeded(_tiny_net, seed=0), batches


@pytest.fixture(scope="module")
def results(setup):
    model_fn, batches = setup
    return E.check_identities(model_fn, batches, S.linear_decay(2.0), steps_per_epoch=4)


def test_every_identity_holds_as_derived(results):
    wrong = [(r.identity.setting, r.gap) for r in results if not r.as_expected]
    assert not wrong, wrong


def test_identical_means_rounding_error_and_different_means_far_apart(results):
    for r in results:
        if r.identity.expect_identical:
            assert r.gap < 1e-12, (r.identity.setting, r.gap)
        else:
            assert r.gap > 1e-4, (r.identity.setting, r.gap)


def test_trajectories_are_reproducible_and_the_gap_sees_a_changed_learning_rate(setup):
    model_fn, batches = setup
    a = E.trajectory(model_fn, batches, E.Recipe("sgd", dict(lr=0.1)), S.constant(), 4)
    b = E.trajectory(model_fn, batches, E.Recipe("sgd", dict(lr=0.1)), S.constant(), 4)
    c = E.trajectory(model_fn, batches, E.Recipe("sgd", dict(lr=0.1001)), S.constant(), 4)
    assert E.trajectory_gap(a, b) == 0.0
    assert 1e-5 < E.trajectory_gap(a, c) < 1e-2
    assert a.params.shape[0] == len(batches) + 1


def test_heavy_ball_equals_torch_sgd_at_a_constant_learning_rate(setup):
    model_fn, batches = setup
    a = E.trajectory(model_fn, batches, E.Recipe("sgd", dict(lr=0.05, momentum=0.9, weight_decay=1e-3)), S.constant(), 4)
    b = E.trajectory(model_fn, batches, E.Recipe("heavy_ball_sgd", dict(lr=0.05, momentum=0.9, weight_decay=1e-3)),
                     S.constant(), 4)
    assert E.trajectory_gap(a, b) < 1e-12


def test_adam_multiplier_is_one_for_a_constant_weight_and_lags_a_decaying_one(setup):
    model_fn, batches = setup
    const = E.adam_step_multiplier(model_fn, batches, S.constant(0.3), eps=1e-30)
    assert const.measured == pytest.approx([1.0] * len(batches), abs=1e-9)
    with_eps = E.adam_step_multiplier(model_fn, batches, S.constant(0.3), eps=1e-3)
    assert min(with_eps.measured) < 0.999  # eps is where a constant weight does act
    decay = E.adam_step_multiplier(model_fn, batches, S.linear_decay(2.0))
    assert decay.measured[0] == pytest.approx(1.0, abs=1e-6)  # a weight of 2 does not double the first step
    assert decay.measured[-1] > 2 * decay.weights[-1]  # falls far less than the weight


def test_adam_multiplier_follows_torch_adam(setup):
    """The measurement's own Adam arithmetic reproduces torch.optim.Adam's trajectory."""
    model_fn, batches = setup
    ours = E.adam_step_multiplier(model_fn, batches, S.linear_decay(2.0), steps_per_epoch=4, lr=1e-2)
    ref = E.trajectory(model_fn, batches, E.Recipe("adam", dict(lr=1e-2)), S.linear_decay(2.0), 4)
    assert torch.allclose(ours.final_params, ref.params[-1], rtol=0, atol=1e-12)


def test_first_batches_cycles_epochs_and_validates():
    epochs = lambda e: [(e, i) for i in range(3)]  # noqa: E731
    assert E.first_batches(epochs, 5) == [(0, 0), (0, 1), (0, 2), (1, 0), (1, 1)]
    with pytest.raises(ValueError, match="gave no batches"):
        E.first_batches(lambda e: [], 2)
    with pytest.raises(ValueError, match="positive"):
        E.first_batches(epochs, 0)


def test_build_optimizer_lists_valid_names():
    p = [torch.nn.Parameter(torch.zeros(1))]
    assert isinstance(build_optimizer("heavy_ball_sgd", p, lr=0.1), HeavyBallSGD)
    with pytest.raises(ValueError, match=r"unknown optimizer 'lamb'; valid optimizers: adam, adamw, heavy_ball_sgd, sgd, "
                                         r"sgd_schedule_free, or the name of any torch.optim class"):
        build_optimizer("lamb", p, lr=0.1)
    assert isinstance(build_optimizer("RMSprop", p, lr=0.1), torch.optim.RMSprop)


@pytest.fixture(scope="module")
def paper_results(setup):
    model_fn, batches = setup
    return E.check_identities(model_fn, batches, S.linear_decay(2.0), steps_per_epoch=4,
                              identities=E.paper_identities())


def test_under_the_papers_sgd_loss_decay_is_heavy_ball_lr_decay_with_weight_decay_over_w(paper_results):
    """The paper's SGD (PyTorch momentum 0.95, coupled weight decay 1e-4) with the loss weighted equals
    heavy-ball SGD with the learning rate weighted and weight decay lambda / w_t, in float64."""
    sgd, heavy, adam = paper_results
    assert heavy.identity.right.optimizer == "heavy_ball_sgd" and heavy.identity.right.weight_decay_over_weight
    assert dict(heavy.identity.left.settings) == dict(E.PAPER_SGD)
    assert heavy.gap < 1e-12, heavy.gap
    assert sgd.gap > 1e-4 and adam.gap > 1e-4  # the same optimizer with the schedule on the lr differs


def test_the_identity_needs_both_changes(setup):
    """Heavy-ball lr decay without the weight decay over w, or PyTorch's form with it, is not the same."""
    model_fn, batches = setup
    paper = E.Recipe("sgd", dict(E.PAPER_SGD))
    left = E.trajectory(model_fn, batches, paper, S.linear_decay(2.0), 4)
    for right in (E.Recipe("heavy_ball_sgd", dict(E.PAPER_SGD), place="lr"),
                  E.Recipe("sgd", dict(E.PAPER_SGD), place="lr", weight_decay_over_weight=True)):
        assert E.trajectory_gap(left, E.trajectory(model_fn, batches, right, S.linear_decay(2.0), 4)) > 1e-6


def test_finding_lists_only_loss_versus_lr_rows_as_identical_to_lr_decay(results, paper_results):
    out = E.equivalence_finding(results, paper_results)
    same = out["finding"]["identical to lr decay (loss vs lr, same optimizer)"]
    assert same == ["plain SGD", "SGD, heavy-ball momentum (lr inside)", "SGD, AMP GradScaler"]
    differ = out["finding"]["different from lr decay (loss vs lr, same optimizer)"]
    assert "SGD, PyTorch momentum" in differ and "SGD, coupled weight decay" in differ
    for other in ("plain SGD, loss vs gradients", "SGD, gradient clipping, gradients vs lr",
                  "SGD, coupled weight decay / w on the lr side", "Adam, constant weight 0.1 vs no weight"):
        assert other not in same + differ
    assert out["loss_differs"] and out["identity_holds"]
    assert out["finding"]["paper's SGD on the loss vs heavy-ball SGD on the lr with weight decay lambda / w_t"] \
        .startswith("identical (gap ")


def test_identity_gaps_do_not_depend_on_the_threads_of_the_caller(setup, results):
    model_fn, batches = setup
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        again = E.check_identities(model_fn, batches, S.linear_decay(2.0), steps_per_epoch=4)
        assert torch.get_num_threads() == 2  # the caller's setting is given back
    finally:
        torch.set_num_threads(threads)
    assert [r.gap for r in again] == [r.gap for r in results]  # bitwise: stored claims stay unchanged
