import pytest
import torch

from lossdecay_lib import schedules as S
from lossdecay_lib.schedules import Progress
from lossdecay_lib.weighting import NegativeWeightError, ScheduledWeight


def _one_step(place, w, optimizer="sgd", **settings):
    torch.manual_seed(0)
    model = torch.nn.Linear(5, 3).double()
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    opt = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer](model.parameters(), **settings)
    weight = ScheduledWeight(S.constant(w), place=place)
    wt = weight.value(Progress(0, 1, 1))
    loss = torch.nn.functional.cross_entropy(model(x), y)
    weight.scale_loss(loss, wt).backward()
    weight.step(opt, wt)
    return torch.cat([p.detach().flatten() for p in model.parameters()]), opt


@pytest.mark.parametrize("place", ["loss", "grad", "lr"])
def test_every_place_gives_the_same_plain_sgd_step(place):
    ref, _ = _one_step("loss", 1.0, lr=0.1)
    scaled, _ = _one_step(place, 0.5, lr=0.1)
    half_lr, _ = _one_step("loss", 1.0, lr=0.05)
    assert torch.allclose(scaled, half_lr, atol=1e-15)
    assert not torch.allclose(scaled, ref)


def test_lr_place_restores_the_learning_rate_and_composes_with_torch_schedulers():
    p = torch.nn.Parameter(torch.ones(1))
    opt = torch.optim.SGD([p], lr=1.0)
    torch_sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    weight = ScheduledWeight(S.constant(0.1), place="lr")
    moves = []
    for _ in range(3):
        opt.zero_grad()
        p.sum().backward()  # gradient 1
        before = p.item()
        weight.step(opt, 0.1)
        moves.append(before - p.item())
        torch_sched.step()
    assert moves == pytest.approx([0.1, 0.05, 0.025])  # torch's schedule times our weight
    assert opt.param_groups[0]["lr"] == pytest.approx(0.125)  # untouched by us


def test_grad_place_scales_gradients_before_the_step_only():
    p = torch.nn.Parameter(torch.zeros(2))
    opt = torch.optim.SGD([p], lr=1.0)
    (p * torch.tensor([1.0, 2.0])).sum().backward()
    ScheduledWeight(S.constant(0.5), place="grad").step(opt, 0.5)
    assert p.detach().tolist() == [-0.5, -1.0]


def test_loss_place_scales_only_the_loss():
    weight = ScheduledWeight(S.constant(0.3), place="loss")
    assert weight.scale_loss(torch.tensor(2.0), 0.3).item() == pytest.approx(0.6)
    assert ScheduledWeight(S.constant(0.3), place="lr").scale_loss(torch.tensor(2.0), 0.3).item() == 2.0


def test_step_accepts_a_custom_step_function():
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0)
    calls = []
    ScheduledWeight(S.constant(1.0), place="lr").step(opt, 1.0, step=lambda: calls.append(opt.param_groups[0]["lr"]))
    assert calls == [1.0]


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
