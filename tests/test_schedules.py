import math
import pickle

import pytest
import torch

from lossdecay_lib import schedules as S
from lossdecay_lib.schedules import Progress


def test_authors_code_weight_at_known_epochs():
    code = S.authors_code_weight()
    expected = {0: 1.0, 69: 1.0, 70: 0.2, 99: 1 / 150, 100: 0.0, 150: -1 / 3, 199: -0.66}
    for epoch, value in expected.items():
        assert code.at(epoch, epochs=200) == pytest.approx(value, abs=1e-12), epoch
    # Whole epochs: the value holds through an epoch, and does not depend on the run's length.
    assert code.at(70.9, epochs=100, steps_per_epoch=10) == pytest.approx(0.2)
    assert code.at(99, epochs=100) == code.at(99, epochs=200)


def test_linear_decay_start_end_and_middle():
    lin = S.linear_decay(start=2.0)
    assert lin.at(0, epochs=100) == 2.0
    assert lin.at(50, epochs=100) == pytest.approx(1.0)
    assert lin.at(99, epochs=100) == pytest.approx(0.02)
    assert S.linear_decay(start=3.0).at(90, epochs=100) == pytest.approx(0.3)
    # Per step: the last step of 10 x 100 steps has weight 2 / 1000.
    assert lin(Progress(999, 10, 100)) == pytest.approx(0.002)


def test_long_tail_is_exponential_and_never_zero():
    tail = S.long_tail(start=2.0, end=0.1)
    assert tail.at(0, epochs=100) == 2.0
    assert tail.at(50, epochs=100) == pytest.approx(2.0 * math.sqrt(0.05))
    last_ten = [tail.at(e, epochs=100) for e in range(90, 100)]
    assert all(0.1 < v < 0.14 for v in last_ten)
    with pytest.raises(ValueError, match="start > 0 and end > 0"):
        S.long_tail(end=0.0)


def test_learning_rate_schedules():
    pc = S.piecewise_constant((0.5, 0.75))
    assert [pc.at(e, 100) for e in (0, 49, 50, 74, 75, 99)] == pytest.approx([1, 1, 0.1, 0.1, 0.01, 0.01])
    assert S.poly(0.9).at(50, 100) == pytest.approx(0.5**0.9)
    assert S.cosine().at(50, 100) == pytest.approx(0.5)
    assert S.cosine().at(0, 100) == 1.0
    assert S.linear_to_zero().at(25, 100) == pytest.approx(0.75)
    with pytest.raises(ValueError, match="increasing fractions"):
        S.piecewise_constant((0.75, 0.5))


def test_one_cycle_matches_torch_onecyclelr():
    steps = 100
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=1.0, momentum=0.9)
    torch_sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=steps, pct_start=0.3,
                                                      cycle_momentum=False)
    ours = S.one_cycle(peak_fraction=0.3)
    ref = []
    for _ in range(steps):
        ref.append(opt.param_groups[0]["lr"])
        opt.step()
        torch_sched.step()
    mine = [ours(Progress(s, 1, steps)) for s in range(steps)]
    # torch anchors the peak at step pct*total - 1 and the end at the last step; ours at fractions
    # 0.3 and 1.0 of the run. Same shape, same start, peak and floor.
    assert mine[0] == pytest.approx(ref[0])
    assert max(mine) == pytest.approx(max(ref), rel=1e-3)
    assert max(abs(a - b) for a, b in zip(mine, ref)) < 0.05


def test_per_epoch_holds_values_through_each_epoch():
    held = S.per_epoch(S.poly(0.9))
    vals = [held(Progress(s, 10, 100)) for s in range(690, 710)]
    assert len(set(vals[:10])) == 1 and len(set(vals[10:])) == 1
    assert vals[0] == pytest.approx(0.31**0.9)  # epoch 69 -> (1 - 69/100)^0.9
    assert S.per_epoch(S.poly(0.9), offset=1).at(69, 100) == pytest.approx(0.30**0.9)


def test_random_uniform_is_a_pure_function_of_seed_and_step():
    r = S.random_uniform(seed=3)
    first = [r(Progress(s, 10, 10)) for s in range(50)]
    again = [r(Progress(s, 10, 10)) for s in range(50)]
    other = [S.random_uniform(seed=4)(Progress(s, 10, 10)) for s in range(50)]
    assert first == again and first != other
    assert all(0.0 <= v < 1.0 for v in first)
    many = [r(Progress(s, 100, 100)) for s in range(5000)]
    assert sum(many) / len(many) == pytest.approx(0.5, abs=0.02)


def test_random_half_applies_inner_on_about_half_the_steps():
    half = S.random_half(S.constant(0.25), seed=1)
    vals = [half(Progress(s, 100, 20)) for s in range(2000)]
    assert set(vals) == {0.25, 1.0}
    assert vals.count(0.25) / len(vals) == pytest.approx(0.5, abs=0.04)


def test_composition_and_pickling():
    combo = 0.1 * S.per_epoch(S.poly(0.9)) * S.authors_code_weight()
    assert combo.at(70, 100) == pytest.approx(0.1 * 0.3**0.9 * 0.2)
    clone = pickle.loads(pickle.dumps(combo))
    assert [clone.at(e, 100) for e in range(0, 100, 7)] == [combo.at(e, 100) for e in range(0, 100, 7)]
    assert pickle.loads(pickle.dumps(S.linear_decay(3.0))) == S.linear_decay(3.0)
    assert S.linear_decay(3.0) != S.linear_decay(2.0)


def test_repr_is_the_record_key_and_never_changes():
    # Record keys are derived from these strings: a change here orphans every committed record.
    code = "AuthorsCodeWeight(switch_epoch=70, offset=0.6666666666666666, slope_epochs=150.0)"
    expected = [
        (S.linear_decay(), "LinearDecay(start=2.0, end=0.0)"),
        (S.linear_to_zero(), "LinearDecay(start=1.0, end=0.0)"),
        (S.long_tail(), "LongTail(start=2.0, end=0.1)"),
        (S.authors_code_weight(), code),
        (S.constant(0.5), "Constant(constant=0.5)"),
        (S.random_uniform(seed=3), "RandomUniform(low=0.0, high=1.0, seed=3)"),
        (S.random_half(S.constant(), seed=1),
         "RandomHalf(inner=Constant(constant=1.0), seed=1, probability=0.5)"),
        (S.piecewise_constant(), "PiecewiseConstant(milestones=(0.5, 0.75), factor=0.1)"),
        (S.poly(), "Poly(power=0.9)"),
        (S.cosine(), "Cosine(final=0.0)"),
        (S.one_cycle(), "OneCycle(peak_fraction=0.3, div_factor=25.0, final_div_factor=10000.0)"),
        (S.constant_then_linear(), "ConstantThenLinear(start_fraction=0.5)"),
        (S.per_epoch(S.poly(0.9)), "PerEpoch(inner=Poly(power=0.9), offset=0)"),
        (S.stretched(S.authors_code_weight(), 100), f"Stretched(inner={code}, epochs=100.0)"),
        (S.curvature_adaptive(), "CurvatureAdaptive(max_weight=2.0, momentum=0.95, smoothing=0.5)"),
        (2 * S.cosine(), "2.0 * Cosine(final=0.0)"),
        (S.linear_decay() * S.poly(), "(LinearDecay(start=2.0, end=0.0) * Poly(power=0.9))"),
    ]
    for schedule, text in expected:
        assert repr(schedule) == text
    assert repr(S.linear_decay(3)) == repr(S.linear_decay(3.0))  # numbers kept as floats


def test_check_schedule_refuses_negative_weights_unless_allowed():
    with pytest.raises(ValueError, match=r"goes negative .* at epoch 101 .*allow_negative=True"):
        S.check_schedule(S.authors_code_weight(), epochs=200, steps_per_epoch=1)
    S.check_schedule(S.authors_code_weight(), epochs=200, steps_per_epoch=1, allow_negative=True)
    S.check_schedule(S.authors_code_weight(), epochs=100, steps_per_epoch=3)  # stops at epoch 99: fine
    with pytest.raises(ValueError, match="positive"):
        S.check_schedule(S.constant(), epochs=0, steps_per_epoch=1)


def test_progress_validates():
    with pytest.raises(ValueError, match="steps_per_epoch"):
        Progress(0, 0, 10)
    with pytest.raises(ValueError, match="epochs"):
        Progress(0, 1, 0)
    assert Progress(15, 10, 3).epoch == 1.5 and Progress(15, 10, 3).fraction == pytest.approx(0.5)


def test_stretched_moves_the_authors_cliff_onto_a_shorter_run():
    code20 = S.stretched(S.authors_code_weight(), epochs=100)
    assert code20.at(13.9, epochs=20, steps_per_epoch=10) == 1.0
    assert code20.at(14, epochs=20, steps_per_epoch=10) == pytest.approx(0.2)
    assert code20.at(19.9, epochs=20, steps_per_epoch=10) == pytest.approx(2 / 3 - 99 / 150)
    assert [code20.at(e, 100) for e in range(100)] == [S.authors_code_weight().at(e, 100) for e in range(100)]


def test_curvature_adaptive_weight_follows_the_quadratic_models_optimum():
    from lossdecay_lib.schedules import curvature_adaptive

    w = curvature_adaptive(max_weight=2.0, momentum=0.9, smoothing=0.5)
    p = S.Progress(0, 10, 2)
    assert w(p) == 2.0  # starts at the cap
    # w* = (1 - 0.9) * 4 / (0.1 * 1) = 4 -> capped at 2; negative curvature -> the cap
    assert w.target(4.0, 1.0, 0.1) == 2.0 and w.target(1.0, -1.0, 0.1) == 2.0
    assert w.target(1.0, 2.0, 0.1) == pytest.approx(0.5)
    assert not hasattr(w, "observe")  # the run state lives in weighting.AdaptiveWeight (tests/test_weighting.py)
    assert repr(w) == "CurvatureAdaptive(max_weight=2.0, momentum=0.9, smoothing=0.5)"  # state not in the key
    assert w == curvature_adaptive(2.0, 0.9, 0.5)
    with pytest.raises(ValueError, match="smoothing must be in"):
        curvature_adaptive(smoothing=1.0)
