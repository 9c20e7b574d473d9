"""Weight decay lambda / w_t (chapter "What loss decay changes: weight decay over w_t", issue 19).

The identity: loss weighting under PyTorch's SGD with momentum and coupled weight decay lambda
(``buf = mu buf + (w g + lambda p); p -= lr buf``) is learning-rate weighting in heavy-ball form with the
weight decay divided by the weight (``v = mu v + (lr w)(g + (lambda / w) p); p -= v``). Checked in float64
on a real plain network and real CIFAR-10 batches; then the training loop's option that runs the
learning-rate side of it (``weight_decay_over_weight``).
"""

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from lossdecay_lib import equivalence as E
from lossdecay_lib import layer_stats
from lossdecay_lib import schedules as S
from lossdecay_lib.runs import RunStore, run_key
from lossdecay_lib.schedules import Progress
from lossdecay_lib.training import AUTHORS_SGD, ClassificationConfig, train_classifier
from lossdecay_lib.weighting import ScheduledWeight, base_settings

SGD = dict(AUTHORS_SGD)  # the paper's settings: lr 0.1, momentum 0.95, weight decay 1e-4


SIZES = SimpleNamespace(per_class=8, batch_size=16, steps=15, depth=6, width=4)


@pytest.fixture(scope="module")
def setup():
    return E.identity_setup(SIZES, None, seed=0)


@pytest.fixture(scope="module")
def real(setup):
    return setup.model_fn, setup.batches, setup.steps_per_epoch


def test_the_identity_setup_is_float64_real_data_and_one_initial_network(setup):
    assert len(setup.batches) == 15 and setup.images == 80 and setup.steps_per_epoch == 5  # 80 images, 16 a batch
    x, y = setup.batches[0]
    assert x.dtype == torch.float64 and x.shape == (16, 3, 32, 32) and y.dtype == torch.int64
    assert not torch.equal(setup.batches[0][0], setup.batches[5][0])  # epoch 2 is reshuffled and re-augmented
    a, b = setup.model_fn(), setup.model_fn()
    assert all(p.dtype == torch.float64 and torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert E.identity_setup(SIZES, None, seed=1).batches[0][0].ne(x).any()  # the seed reaches the data


def _gap(real, left, right, schedule=None):
    model_fn, batches, per_epoch = real
    schedule = schedule or S.linear_decay(start=2.0)
    return E.trajectory_gap(E.trajectory(model_fn, batches, left, schedule, per_epoch),
                            E.trajectory(model_fn, batches, right, schedule, per_epoch))


def test_loss_weighting_is_heavy_ball_lr_weighting_with_weight_decay_over_w(real):
    loss_side = E.Recipe("sgd", SGD, place="loss")
    lr_side = E.Recipe("heavy_ball_sgd", SGD, place="lr", weight_decay_over_weight=True)
    assert _gap(real, loss_side, lr_side) < 1e-12
    # and each half of the identity matters: the plain weight decay, or PyTorch's momentum form, differs
    assert _gap(real, loss_side, E.Recipe("heavy_ball_sgd", SGD, place="lr")) > 1e-8
    assert _gap(real, loss_side, E.Recipe("sgd", SGD, place="lr", weight_decay_over_weight=True)) > 1e-6


def test_the_lr_place_sets_weight_decay_over_w_from_the_base_at_every_step():
    p = torch.nn.Parameter(torch.ones(3, dtype=torch.float64))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9, weight_decay=1e-4)
    seen = []
    opt.register_step_pre_hook(lambda o, *_: seen.append((o.param_groups[0]["lr"], o.param_groups[0]["weight_decay"])))
    weight = ScheduledWeight(S.linear_decay(start=2.0), place="lr", weight_decay_over_weight=True)
    base = base_settings(opt)
    for step in range(4):
        w = weight.value(Progress(step, 4, 1))
        weight.set_lr(opt, base, 1.0, w)
        opt.zero_grad()
        p.sum().backward()
        opt.step()
        assert seen[-1] == pytest.approx((0.1 * w, 1e-4 / w))
        assert base == [{"lr": 0.1, "weight_decay": 1e-4}]  # every step starts from the base values
    assert [wd for _, wd in seen] == pytest.approx([1e-4 / 2.0, 1e-4 / 1.5, 1e-4 / 1.0, 1e-4 / 0.5])


@pytest.mark.parametrize("make, message", [
    (lambda: ScheduledWeight(S.constant(1.0), place="loss", weight_decay_over_weight=True), "it needs place 'lr'"),
    (lambda: ScheduledWeight(S.constant(1.0), place="lr", weight_decay_over_weight="yes"), "must be True or False"),
    (lambda: ScheduledWeight(S.linear_decay(1.0, end=-1.0), "lr", True, weight_decay_over_weight=True).check(2, 5),
     "it needs a weight > 0 at every step"),
    (lambda: ScheduledWeight(S.constant(0.0), place="lr", weight_decay_over_weight=True).check(2, 5),
     "it needs a weight > 0 at every step"),
])
def test_weight_decay_over_w_refuses_what_it_cannot_mean(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def _tiny(**changes):
    base = ClassificationConfig(profile="smoke", model_settings=(("depth", 5), ("widths", 4)), train_per_class=8,
                                test_per_class=4, epochs=2, batch_size=16, weight=S.linear_decay(2.0),
                                weight_place="lr", optimizer_settings=AUTHORS_SGD)
    return base.with_(**changes)


@pytest.mark.parametrize("changes, message", [
    (dict(weight_place="loss", weight_decay_over_weight=True), "it needs place 'lr', got 'loss'"),
    (dict(weight_decay_over_weight=True, optimizer_settings=dict(SGD, weight_decay=0.0)), "weight_decay > 0"),
])
def test_bad_configurations_fail_before_any_work(changes, message):
    with pytest.raises(ValueError, match=message):
        _tiny(**changes).validate()


def test_a_run_with_weight_decay_over_w_differs_from_the_plain_lr_place(tmp_path):
    store = RunStore(tmp_path)
    plain = _tiny(weight=S.linear_decay(start=1.0))
    over_w = plain.with_(weight_decay_over_weight=True, optimizer_settings=dict(SGD, weight_decay=0.05))
    assert "weight_decay_over_weight" not in plain.describe()  # old keys hold
    assert run_key(over_w) != run_key(over_w.with_(weight_decay_over_weight=False))
    a = train_classifier(plain.with_(optimizer_settings=dict(SGD, weight_decay=0.05)), store=store, progress=False)
    b = train_classifier(over_w, store=store, progress=False)
    assert b["config"]["weight_decay_over_weight"] is True
    norms = lambda r: [n for e in r["epochs"] for n in e["layer_weight_norms"]]  # noqa: E731
    assert norms(a) != norms(b)
    # w_t <= 1 here, so lambda / w_t >= lambda: the stronger decay leaves smaller weights
    assert sum(norms(b)) < sum(norms(a))


def _record(seed, norms, steps, status="finished"):
    return {"status": status, "config": {"seed": seed}, "layers": ["conv1", "conv2", "fc"],
            "epochs": [{"layer_weight_norms": n, "layer_effective_steps": s, "test_acc": 0.1} for n, s in zip(norms, steps)]}


def test_layer_ratios_pair_runs_by_seed_and_leave_out_the_classifier():
    a = [_record(0, [[2.0, 8.0, 5.0]], [[0.1, 0.1, 9.0]]), _record(1, [[1.0, 1.0, 5.0]], [[0.2, 0.2, 9.0]])]
    b = [_record(1, [[2.0, 2.0, 1.0]], [[0.1, 0.1, 1.0]]), _record(0, [[1.0, 2.0, 1.0]], [[0.1, 0.1, 1.0]]),
         _record(2, [[1.0, 1.0, 1.0]], [[0.1, 0.1, 1.0]])]
    seeds, logs = layer_stats.paired_log_ratio(a, b, "layer_weight_norms")
    assert seeds == [0, 1]  # seed 2 ran one setting only
    assert np.exp(logs[:, 0]) == pytest.approx([(2.0 * 4.0) ** 0.5, 0.5])  # geometric mean over the convolutions
    _, steps = layer_stats.paired_log_ratio(a, b, "layer_effective_steps")
    assert np.exp(steps[:, 0]) == pytest.approx([1.0, 2.0])
    old = {"status": "finished", "config": {"seed": 3}, "epochs": [{"test_acc": 0.1}]}  # before layers were recorded
    assert not layer_stats.has_layers(old) and layer_stats.by_seed([old], lambda e: e["test_acc"]) == {}


def test_parting_epoch_is_the_first_from_which_every_test_says_apart():
    assert layer_stats.parting_epoch([0.5, 0.01, 0.2, 0.01, 0.001]) == 3
    assert layer_stats.parting_epoch([0.01, float("nan")]) is None
    assert layer_stats.parting_epoch([]) is None
