import pytest
import torch

from lossdecay_lib import schedules as S
from lossdecay_lib.schedules import Progress
from lossdecay_lib.weighting import AdaptiveWeight, NegativeWeightError, ScheduledWeight, base_settings


def _one_step(place, w, optimizer="sgd", **settings):
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3).double()
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer](model.parameters(), **settings)
    weight = ScheduledWeight(S.constant(w), place=place)
    base = base_settings(opt)
    wt = weight.value(Progress(0, 1, 1))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    weight.set_lr(opt, base, 1.0, wt)
    weight.scale_loss(loss, wt).backward()
    weight.scale_grads(opt, wt)
    opt.step()
    return torch.cat([p.detach().flatten() for p in model.parameters()]), opt


@pytest.mark.parametrize("place", ["loss", "grad", "lr"])
def test_every_place_gives_the_same_plain_sgd_step(place):
    ref, _ = _one_step("loss", 1.0, lr=0.1)
    scaled, _ = _one_step(place, 0.5, lr=0.1)
    half_lr, _ = _one_step("loss", 1.0, lr=0.05)
    assert torch.allclose(scaled, half_lr, atol=1e-15)
    assert not torch.allclose(scaled, ref)


def test_set_lr_is_base_times_schedule_times_the_weight_at_the_lr_place_only():
    p = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([p], lr=1.0)
    base = base_settings(opt)
    moves = []
    for factor in (1.0, 0.5, 0.25):  # a learning-rate schedule
        lr = ScheduledWeight(S.constant(0.1), place="lr").set_lr(opt, base, factor, 0.1)
        assert lr == factor  # the scheduled learning rate, without the weight
        opt.zero_grad()
        p.sum().backward()  # gradient 1
        before = p.item()
        opt.step()
        moves.append(before - p.item())
    assert moves == pytest.approx([0.1, 0.05, 0.025])  # the schedule times the weight
    ScheduledWeight(S.constant(0.1), place="loss").set_lr(opt, base, 0.5, 0.1)
    assert opt.param_groups[0]["lr"] == 0.5  # elsewhere the weight leaves the learning rate alone


def test_grad_place_scales_gradients_before_the_step_only():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=1.0)
    (p * torch.tensor([1.0, 2.0])).sum().backward()
    ScheduledWeight(S.constant(0.5), place="grad").scale_grads(opt, 0.5)
    ScheduledWeight(S.constant(0.5), place="loss").scale_grads(opt, 0.5)  # not its place: no change
    opt.step()
    assert p.detach().tolist() == [-0.5, -1.0]


def test_loss_place_scales_only_the_loss():
    weight = ScheduledWeight(S.constant(0.3), place="loss")
    assert weight.scale_loss(torch.tensor(2.0), 0.3).item() == pytest.approx(0.6)
    assert ScheduledWeight(S.constant(0.3), place="lr").scale_loss(torch.tensor(2.0), 0.3).item() == 2.0


def test_a_curvature_adaptive_weight_keeps_its_run_state_outside_the_schedule():
    schedule = S.curvature_adaptive(max_weight=2.0, momentum=0.9, smoothing=0.5)
    weight = ScheduledWeight(schedule)
    p = Progress(0, 10, 2)
    assert isinstance(weight.adaptive, AdaptiveWeight) and weight.value(p) == 2.0  # starts at the cap
    assert weight.adaptive.observe(1.0, 2.0, 0.1) == pytest.approx(0.5 * 2.0 + 0.5 * 0.5)
    assert weight.value(p) == pytest.approx(1.25) and schedule(p) == 2.0  # the schedule is unchanged
    state = weight.adaptive.state_dict()
    fresh = ScheduledWeight(schedule)  # another run starts afresh
    assert fresh.value(p) == 2.0
    fresh.adaptive.load_state_dict(state)
    assert fresh.value(p) == pytest.approx(1.25)
    assert ScheduledWeight(S.constant()).adaptive is None


def test_negative_weights_are_refused_unless_allowed():
    weight = ScheduledWeight(S.authors_code_weight(), place="loss")
    assert weight.value(Progress(99, 1, 200)) == pytest.approx(1 / 150)
    with pytest.raises(NegativeWeightError, match=r"epoch 101 .*allow_negative=True"):
        weight.value(Progress(101, 1, 200))
    with pytest.raises(ValueError, match="goes negative"):
        weight.check(epochs=200, steps_per_epoch=1)
    allowed = ScheduledWeight(S.authors_code_weight(), place="loss", allow_negative=True)
    assert allowed.value(Progress(150, 1, 200)) == pytest.approx(-1 / 3)


def test_invalid_place_and_schedule_are_clear_errors():
    with pytest.raises(ValueError, match=r"unknown place 'weights'.*loss, grad, lr"):
        ScheduledWeight(S.constant(), place="weights")
    with pytest.raises(TypeError, match="must be a lossdecay_lib.schedules.Schedule"):
        ScheduledWeight(lambda p: 1.0)
