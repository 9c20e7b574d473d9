"""The verdicts' statistics (lossdecay_lib.statistics) against scipy and hand-computed values."""

import math

import numpy as np
import pytest
from scipy import stats

from lossdecay_lib.statistics import (adjust_p, compare, epoch_metric, format_p, jump_epoch, late_rise, mean_std,
                                      one_sample_test, plateaued, verdict_of, welch_contrast, welch_test)

A = [0.40, 0.41, 0.42]
B = [0.45, 0.46, 0.47]
# unequal sizes and spreads: Welch's degrees of freedom are far from n_a + n_b - 2
X = [12.1, 14.3, 9.8, 11.0, 13.7]
Y = [15.2, 19.9, 12.4]


def test_mean_std():
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(2**0.5))
    assert mean_std([5.0]) == (5.0, 0.0)
    assert all(math.isnan(v) for v in mean_std([]))


def test_welch_test_matches_scipy_and_the_welch_satterthwaite_formula():
    t = welch_test(X, Y)
    ref = stats.ttest_ind(Y, X, equal_var=False)
    assert t["statistic"] == pytest.approx(ref.statistic) and t["p"] == pytest.approx(ref.pvalue)
    va, vb = np.var(X, ddof=1) / len(X), np.var(Y, ddof=1) / len(Y)
    df = (va + vb) ** 2 / (va**2 / (len(X) - 1) + vb**2 / (len(Y) - 1))
    assert t["df"] == pytest.approx(df) and t["df"] < len(X) + len(Y) - 2
    assert t["diff"] == pytest.approx(np.mean(Y) - np.mean(X)) and t["se"] == pytest.approx(math.sqrt(va + vb))
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert t["ci95"] == pytest.approx([t["diff"] - half, t["diff"] + half])
    assert t["n"] == [5, 3] and t["alternative"] == "two-sided" and t["alpha"] == 0.05


def test_welch_test_known_values():
    t = welch_test(A, B)  # diff 0.05, se 0.05/6.12..., equal spreads: df = 4
    assert t["statistic"] == pytest.approx(6.1237244, rel=1e-6)
    assert t["df"] == pytest.approx(4.0)
    assert t["p"] == pytest.approx(0.0036022, rel=1e-4)


def test_permutation_p_is_exact_and_bounded_below_with_three_runs_a_side():
    t = welch_test(A, B)  # fully separated: 2 of the 20 splits are as extreme
    assert t["permutation_p"] == pytest.approx(0.1) and t["permutation_min_p"] == pytest.approx(0.1)
    mixed = welch_test([1.0, 3.0, 5.0], [2.0, 4.0, 6.0])
    ref = stats.permutation_test(([1.0, 3.0, 5.0], [2.0, 4.0, 6.0]), lambda x, y: np.mean(y) - np.mean(x),
                                 permutation_type="independent", n_resamples=np.inf)
    assert mixed["permutation_p"] == pytest.approx(ref.pvalue) and mixed["permutation_p"] > 0.5
    assert welch_test(list(range(20)), list(range(1, 21)))["permutation_p"] is None  # too many splits


def test_nothing_is_tested_with_one_run_or_no_spread():
    one = welch_test([0.5], [0.6, 0.7])
    assert math.isnan(one["p"]) and one["untested"] == "fewer than 2 runs on a side"
    flat = welch_test([0.5, 0.5], [0.6, 0.6])
    assert math.isnan(flat["p"]) and flat["untested"] == "no spread on either side"
    assert verdict_of(one, "greater") == verdict_of(flat, "greater") == "inconclusive"


def test_one_sample_test_matches_scipy():
    t = one_sample_test([0.41, 0.2, 0.33, 0.12], 1.0)
    ref = stats.ttest_1samp([0.41, 0.2, 0.33, 0.12], 1.0)
    assert (t["statistic"], t["df"], t["p"]) == (pytest.approx(ref.statistic), 3, pytest.approx(ref.pvalue))
    assert t["diff"] == pytest.approx(np.mean([0.41, 0.2, 0.33, 0.12]) - 1.0)
    ci = ref.confidence_interval(0.95)
    assert t["ci95"] == pytest.approx([ci.low - 1.0, ci.high - 1.0])
    assert t["permutation_p"] == pytest.approx(2 / 16)  # all four below the reference: 2 of 16 sign flips


def test_welch_contrast_of_two_samples_is_welchs_test():
    c, t = welch_contrast([X, Y], [-1, 1]), welch_test(X, Y)
    for k in ("statistic", "df", "p", "diff", "se"):
        assert c[k] == pytest.approx(t[k])
    assert c["ci95"] == pytest.approx(t["ci95"])


def test_welch_contrast_of_four_samples_by_hand():
    samples = [A, B, X, Y]
    w = [-1, 1, 1, -1]
    parts = [np.var(s, ddof=1) / len(s) for s in samples]
    est = sum(c * np.mean(s) for c, s in zip(w, samples))
    se = math.sqrt(sum(parts))
    df = sum(parts) ** 2 / sum(p**2 / (len(s) - 1) for p, s in zip(parts, samples))
    c = welch_contrast(samples, w)
    assert (c["diff"], c["se"], c["df"]) == (pytest.approx(est), pytest.approx(se), pytest.approx(df))
    assert c["p"] == pytest.approx(2 * stats.t.sf(abs(est / se), df))
    with pytest.raises(ValueError, match="one weight per sample"):
        welch_contrast([A, B], [1])


@pytest.mark.parametrize("test, direction, verdict", [
    (dict(p=0.01, diff=0.3), "greater", "supported"),
    (dict(p=0.01, diff=-0.3), "greater", "contradicted"),
    (dict(p=0.01, diff=-0.3), "less", "supported"),
    (dict(p=0.01, diff=0.3), "less", "contradicted"),
    (dict(p=0.01, diff=-0.3), "different", "supported"),
    (dict(p=0.2, diff=0.3), "greater", "inconclusive"),
    (dict(p=0.05, diff=0.3), "greater", "inconclusive"),  # p < alpha, strictly
    (dict(p=0.2, diff=0.3), "different", "inconclusive"),
    (dict(p=float("nan"), diff=0.3), "greater", "inconclusive"),
])
def test_verdict_rules(test, direction, verdict):
    assert verdict_of(test, direction) == verdict


def test_verdict_of_an_adjusted_p_and_bad_direction():
    assert verdict_of(dict(p=0.01, diff=1.0), "greater", p=0.2) == "inconclusive"
    with pytest.raises(ValueError, match="direction must be one of"):
        verdict_of(dict(p=0.01, diff=1.0), "better")


def test_benjamini_hochberg_by_hand_and_by_scipy():
    ps = [0.01, 0.04, 0.03, 0.2]
    # sorted 0.01, 0.03, 0.04, 0.2 -> 4p/rank 0.04, 0.04, 0.0533, 0.2 -> running minimum from the top
    assert adjust_p(ps) == pytest.approx([0.04, 0.0533333, 0.0533333, 0.2], rel=1e-5)
    assert adjust_p(ps) == pytest.approx(list(stats.false_discovery_control(ps)))
    assert adjust_p([0.01, None, float("nan"), 0.04]) == [pytest.approx(0.02), None, None, pytest.approx(0.04)]


def test_compare_runs_and_metric_errors():
    runs = lambda vals: [{"status": "finished", "final_test_acc": v} for v in vals]  # noqa: E731
    assert compare(runs(A), runs(B))["verdict"] == "supported"
    assert compare(runs(B), runs(A))["verdict"] == "contradicted"
    assert compare(runs(A), runs([0.39, 0.43, 0.42]))["verdict"] == "inconclusive"
    assert compare(runs(B), runs(A), direction="less")["verdict"] == "supported"
    assert compare(runs(A) + [{"status": "diverged"}], runs(B))["n"] == [3, 3]
    with pytest.raises(ValueError, match="no metric 'nope'"):
        compare(runs(A), runs(B), metric="nope")


def test_format_p():
    assert [format_p(p) for p in (0.0312, 0.0004, None, float("nan"), 0.5)] == ["0.0312", "<0.001", "-", "-", "0.5"]


def _run(accs):
    return {"epochs": [{"test_acc": v} for v in accs]}


def test_jump_epoch_finds_the_largest_rise():
    assert jump_epoch(_run([0.1, 0.2, 0.25, 0.6, 0.62])) == (4, pytest.approx(0.35))


def test_late_rise_looks_only_at_the_last_tenth():
    early = _run([0.1, 0.5] + [0.5 + 0.001 * i for i in range(18)])  # 20 epochs: the last tenth is epochs 19-20
    assert late_rise(early) == pytest.approx(0.001)
    late = _run([0.1] * 18 + [0.3, 0.32])
    assert late_rise(late) == pytest.approx(0.2)
    assert late_rise(_run([0.5] * 19 + [0.4])) == 0.0  # a fall is no rise
    assert late_rise(_run([0.1] * 90 + [0.1 + 0.01 * i for i in range(10)])) == pytest.approx(0.01)  # 100 epochs
    assert late_rise(_run([0.1, 0.2]), fraction=0.5) == pytest.approx(0.1)


def test_plateaued_reads_the_best_so_far_before_the_last_tenth():
    flat = _run([0.1, 0.3, 0.4] + [0.4] * 15 + [0.6, 0.7])  # no gain over epochs 15-18
    rising = _run([0.1 + 0.02 * i for i in range(20)])
    noisy = _run([0.1, 0.3, 0.45] + [0.30, 0.44] * 7 + [0.2, 0.6, 0.7])  # oscillates below its best
    assert plateaued(flat) and not plateaued(rising) and plateaued(noisy)
    assert not plateaued(_run([0.1, 0.2]))  # too short to have a window before the last tenth


def test_epoch_metric():
    m = epoch_metric("val_miou", 1)
    assert m({"epochs": [{"val_miou": 0.1}, {"val_miou": 0.3}]}) == 0.3
    assert m.name == "val_miou after epoch 2"


def _curvature_run(gthg, sharpness=None, lr=0.1, weight=1.0):
    rows = [{"epoch": e, "gTHg": v, "gTg": 1.0, "sharpness": s, "lr": lr, "weight": weight}
            for e, (v, s) in enumerate(zip(gthg, sharpness or [None] * len(gthg)))]
    return {"curvature": rows, "epochs": [{"test_acc": 0.1}] * len(gthg)}


def test_curvature_growth_after_the_first_epoch_and_undefined_from_a_negative_start():
    from lossdecay_lib.tracking import curvature_growth, gthg_growth_log10

    run = _curvature_run([-5.0] + [1.0, 1.0] + [2.0] * 6 + [10.0, 10.0])  # 9 after epoch 1: fifths of 1
    assert curvature_growth(run) == pytest.approx(10.0) and gthg_growth_log10(run) == pytest.approx(1.0)
    assert curvature_growth(_curvature_run([1.0, -1.0, 3.0, 3.0, 3.0, 3.0])) is None
    assert gthg_growth_log10(_curvature_run([1.0])) is None  # nothing after epoch 1


def test_last_epoch_above_the_stability_threshold():
    from lossdecay_lib.curvature import stability_ratio
    from lossdecay_lib.tracking import last_epoch_above_threshold

    # lr 0.1, momentum 0.9: above 1 when 0.1 * sharpness / 3.8 > 1, i.e. sharpness > 38
    run = _curvature_run([1.0] * 5, sharpness=[50.0, None, 40.0, 30.0, 20.0])
    assert stability_ratio(40.0, 0.1, 1.0, 0.9, 0.0) > 1 > stability_ratio(30.0, 0.1, 1.0, 0.9, 0.0)
    assert last_epoch_above_threshold(run, momentum=0.9, weight_decay=0.0) == 3
    assert last_epoch_above_threshold(_curvature_run([1.0] * 3, [1.0] * 3), 0.9, 0.0) == 0
