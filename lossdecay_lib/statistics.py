"""The statistics behind the book's verdicts: per-run metrics, tests of a difference, the correction.

The paper (Wei 2019) reports one run per setting and no spread; the book reruns each setting over seeds
and asks whether a difference is larger than the seed-to-seed noise. Every test here is ``scipy.stats``'s,
two-sided, at :data:`ALPHA` = 0.05; no distribution is written by hand.

- :func:`welch_test`: two independent samples (runs of a baseline and of a treatment), Welch's t-test
  (``scipy.stats.ttest_ind(equal_var=False)``: no equal-variance assumption), its 95% confidence
  interval, and beside it an exact permutation test of the difference of means
  (``scipy.stats.permutation_test``) where the samples are small. With 3 runs a side the permutation
  test cannot go below p = 0.1 (2 of the 20 splits), so it can never reject at 0.05: it is shown as a
  check that needs no normality, and the verdict is Welch's.
- :func:`one_sample_test`: one sample against a reference value (``scipy.stats.ttest_1samp``), with a
  sign-flip permutation test beside it.
- :func:`welch_contrast`: a difference of differences of means (does a gain grow from one depth to the
  next, Fig. 1), with Welch-Satterthwaite degrees of freedom and scipy's t distribution.
- :func:`verdict_of`: the verdict of a test for a claim of direction ``greater``, ``less`` or
  ``different``: supported, contradicted or inconclusive.
- :func:`adjust_p`: Benjamini-Hochberg (``scipy.stats.false_discovery_control``) across the book's
  claims: it bounds the expected share of false findings among those the book calls supported or
  contradicted, which with some 30 claims at 3 seeds each is the error a reader cares about (Holm's
  family-wise bound would leave almost nothing testable at this scale).

Summaries of run records (:func:`finished`, :func:`group_by_label`, :func:`summarize`,
:func:`metric_curves`) are what tables and figures show; per-run metrics (:func:`jump_epoch`, :func:`late_rise`, :func:`plateaued`, :func:`epoch_metric`) turn a
run record into the one number that a claim compares between settings.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from scipy import stats

from .checks import check_one_of

__all__ = ["ALPHA", "DIRECTIONS", "EXACT_PERMUTATIONS", "mean_std", "welch_test", "one_sample_test", "welch_contrast",
           "verdict_of", "adjust_p", "metric_value", "metric_values", "compare", "jump_epoch", "late_rise", "plateaued",
           "epoch_metric", "format_p", "finished", "group_by_label", "summarize",
           "metric_curves"]

#: Two-sided significance level of every test.
ALPHA = 0.05
#: The direction a claim predicts for "treatment minus baseline" (or "sample minus reference").
DIRECTIONS = ("greater", "less", "different")
#: Permutation tests are exact (every split enumerated) up to this many splits, and left out above it.
EXACT_PERMUTATIONS = 20_000


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value; NaN for none)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    m = sum(values) / n
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return m, s


def _floats(values, what: str) -> List[float]:
    out = [float(v) for v in values]
    if any(not math.isfinite(v) for v in out):
        raise ValueError(f"{what} must be finite numbers, got {list(values)}")
    return out


def _untested(test: str, diff: float, n, why: str) -> Dict:
    return {"test": test, "statistic": math.nan, "df": math.nan, "p": math.nan, "diff": diff, "se": math.nan,
            "ci95": [math.nan, math.nan], "permutation_p": None, "permutation_min_p": None, "n": list(n),
            "alpha": ALPHA, "alternative": "two-sided", "untested": why}


def _quiet(fn, *args, **kwargs):
    """scipy warns about nearly identical samples ("catastrophic cancellation"); the p it returns is
    kept, the warning is not printed into the chapters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return fn(*args, **kwargs)


def _permutation(samples, statistic, permutation_type: str, splits: int) -> Tuple[Optional[float], Optional[float]]:
    """Exact two-sided permutation p over every split, and the smallest p these sample sizes allow;
    ``(None, None)`` above :data:`EXACT_PERMUTATIONS` splits (Welch's test needs no help there)."""
    if splits > EXACT_PERMUTATIONS:
        return None, None
    res = _quiet(stats.permutation_test, samples, statistic, permutation_type=permutation_type, vectorized=True,
                 n_resamples=np.inf, alternative="two-sided")
    return float(res.pvalue), min(1.0, 2.0 / splits)


def _diff_of_means(x, y, axis):
    return np.mean(y, axis=axis) - np.mean(x, axis=axis)


def welch_test(baseline: Sequence[float], treatment: Sequence[float]) -> Dict:
    """Welch's two-sided t-test of ``mean(treatment) - mean(baseline)`` (paper's claims of a gain, e.g.
    Table I, Figs. 1 and 4), with its 95% confidence interval and an exact permutation p beside it.

    Returns ``test, statistic, df, p, diff, se, ci95, permutation_p, permutation_min_p, n, alpha,
    alternative``; with fewer than two values on a side nothing is tested (``p`` NaN, ``untested`` says
    why).
    """
    a, b = _floats(baseline, "baseline values"), _floats(treatment, "treatment values")
    diff = mean_std(b)[0] - mean_std(a)[0]
    if len(a) < 2 or len(b) < 2:
        return _untested("Welch's t-test", diff, (len(a), len(b)), "fewer than 2 runs on a side")
    se = math.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b))
    if se == 0:
        return _untested("Welch's t-test", diff, (len(a), len(b)), "no spread on either side")
    res = _quiet(stats.ttest_ind, b, a, equal_var=False)
    ci = res.confidence_interval(0.95)
    perm_p, min_p = _permutation((a, b), _diff_of_means, "independent", math.comb(len(a) + len(b), len(a)))
    return {"test": "Welch's t-test", "statistic": float(res.statistic), "df": float(res.df), "p": float(res.pvalue),
            "diff": diff, "se": se, "ci95": [float(ci[0]), float(ci[1])], "permutation_p": perm_p,
            "permutation_min_p": min_p, "n": [len(a), len(b)], "alpha": ALPHA, "alternative": "two-sided"}


def one_sample_test(values: Sequence[float], reference: float) -> Dict:
    """One-sample two-sided t-test of ``mean(values) - reference`` (e.g. Eq. 2's premise that g^T H g
    grows tenfold: log10 of each run's growth against 1), with a sign-flip permutation p beside it."""
    v = _floats(values, "values")
    diff = mean_std(v)[0] - reference if v else math.nan
    if len(v) < 2:
        return _untested("one-sample t-test", diff, (len(v),), "fewer than 2 runs")
    if len(set(v)) == 1:
        return _untested("one-sample t-test", diff, (len(v),), "no spread in the sample")
    res = _quiet(stats.ttest_1samp, v, reference)
    ci = res.confidence_interval(0.95)
    centred = [x - reference for x in v]
    perm_p, min_p = _permutation((centred,), lambda x, axis: np.mean(x, axis=axis), "samples", 2 ** len(v))
    return {"test": "one-sample t-test", "statistic": float(res.statistic), "df": float(res.df),
            "p": float(res.pvalue), "diff": diff, "se": float(np.std(v, ddof=1) / math.sqrt(len(v))),
            "ci95": [float(ci[0]) - reference, float(ci[1]) - reference], "permutation_p": perm_p,
            "permutation_min_p": min_p, "n": [len(v)], "alpha": ALPHA, "alternative": "two-sided",
            "reference": reference}


def welch_contrast(samples: Sequence[Sequence[float]], weights: Sequence[float]) -> Dict:
    """Two-sided t-test of a contrast ``sum_i weights_i * mean(samples_i)`` of independent samples, with
    Welch-Satterthwaite degrees of freedom (Fig. 1: the gain at depth 50 minus the gain at depth 40 is
    the contrast (-1, +1, +1, -1) of the four settings' means). With two samples and weights (-1, +1)
    it is exactly :func:`welch_test`."""
    if len(samples) != len(weights) or len(samples) < 2:
        raise ValueError(f"need one weight per sample and at least two samples, got {len(samples)} and {len(weights)}")
    xs = [_floats(s, "sample values") for s in samples]
    est = sum(c * mean_std(x)[0] for c, x in zip(weights, xs))
    if any(len(x) < 2 for x in xs):
        return _untested("Welch contrast t-test", est, [len(x) for x in xs], "fewer than 2 runs in a sample")
    parts = [c * c * float(np.var(x, ddof=1)) / len(x) for c, x in zip(weights, xs)]
    se = math.sqrt(sum(parts))
    if se == 0:
        return _untested("Welch contrast t-test", est, [len(x) for x in xs], "no spread in any sample")
    df = sum(parts) ** 2 / sum(p * p / (len(x) - 1) for p, x in zip(parts, xs) if p > 0)
    t = est / se
    half = float(stats.t.ppf(1 - ALPHA / 2, df)) * se
    return {"test": "Welch contrast t-test", "statistic": t, "df": df, "p": float(2 * stats.t.sf(abs(t), df)),
            "diff": est, "se": se, "ci95": [est - half, est + half], "permutation_p": None,
            "permutation_min_p": None, "n": [len(x) for x in xs], "alpha": ALPHA, "alternative": "two-sided",
            "weights": list(weights)}


def verdict_of(test: Dict, direction: str, p: Optional[float] = None) -> str:
    """The verdict of ``test`` for a claim that the difference is ``greater`` than 0, ``less``, or
    ``different`` (either sign): "supported" when ``p < ALPHA`` in the claimed direction,
    "contradicted" when ``p < ALPHA`` in the other, else "inconclusive" (a claim of a difference cannot
    be contradicted by a test of difference). ``p`` replaces the test's own (an adjusted p)."""
    check_one_of("direction", direction, DIRECTIONS)
    p = test["p"] if p is None else p
    if p is None or not math.isfinite(p) or p >= ALPHA or test["diff"] == 0:
        return "inconclusive"
    if direction == "different":
        return "supported"
    return "supported" if (test["diff"] > 0) == (direction == "greater") else "contradicted"


def adjust_p(p_values: Sequence[Optional[float]]) -> List[Optional[float]]:
    """Benjamini-Hochberg adjusted p values (``scipy.stats.false_discovery_control``) of the finite
    ones among ``p_values``; ``None`` (no test) and NaN stay ``None``."""
    finite = [i for i, p in enumerate(p_values) if p is not None and math.isfinite(p)]
    out: List[Optional[float]] = [None] * len(p_values)
    if finite:
        adjusted = stats.false_discovery_control([p_values[i] for i in finite], method="bh")
        for i, q in zip(finite, adjusted):
            out[i] = float(q)
    return out


def metric_value(record: Dict, metric) -> Optional[float]:
    """A run's value of ``metric``: a record key (an error names the run-level values a record has), or
    a function of a record (which may return ``None`` for a run it cannot measure)."""
    if callable(metric):
        value = metric(record)
    elif metric in record:
        value = record[metric]
    else:
        raise ValueError(f"record {record.get('key', '?')} ({record.get('label')}) has no metric {metric!r}; "
                         f"its run-level values are {sorted(k for k, v in record.items() if isinstance(v, float))}")
    return None if value is None else float(value)


def metric_values(records: Sequence[Dict], metric) -> List[float]:
    """The run-level value of ``metric`` (:func:`metric_value`) of each finished run."""
    return [float(metric_value(r, metric)) for r in finished(records)]


def compare(baseline: Sequence[Dict], treatment: Sequence[Dict], metric="final_test_acc",
            direction: str = "greater") -> Dict:
    """:func:`welch_test` of a run-level metric between the finished runs of two settings, and its
    :func:`verdict_of` for ``direction`` (for a chapter's table; a claim is stored with
    :func:`lossdecay_lib.verdict.claim_from_comparison`)."""
    test = welch_test(metric_values(baseline, metric), metric_values(treatment, metric))
    return dict(test, verdict=verdict_of(test, direction))


def format_p(p: Optional[float]) -> str:
    """A p value as the tables show it: three significant digits, "<0.001" below that, "-" for none."""
    if p is None or not math.isfinite(p):
        return "-"
    return "<0.001" if p < 0.001 else f"{p:.3g}"


def jump_epoch(record: Dict, metric: str = "test_acc") -> Tuple[int, float]:
    """The epoch (1-based) with the largest one-epoch rise of ``metric``, and the size of that rise.

    The paper's "death convergence" (Fig. 2b) is a sudden late jump in test accuracy; this locates the
    largest jump of a run, wherever it is, so that its timing can be compared with the schedule's.
    """
    values = [e[metric] for e in record["epochs"]]
    if len(values) < 2:
        return 1, 0.0
    rises = [b - a for a, b in zip(values, values[1:])]
    i = max(range(len(rises)), key=rises.__getitem__)
    return i + 2, rises[i]


def _last_part(epochs: int, fraction: float) -> int:
    return max(1, round(epochs * fraction))


def late_rise(record: Dict, fraction: float = 0.1, metric: str = "test_acc") -> float:
    """The largest one-epoch rise of ``metric`` into an epoch of the run's last ``fraction`` of epochs
    (Fig. 2b: "a very amazing boost at about the last 10 epochs" of 100), 0 when it only falls there.
    One number per run, so that loss decay and its controls are compared through the same metric."""
    values = [e[metric] for e in record["epochs"]]
    if len(values) < 2:
        return 0.0
    first = max(1, len(values) - _last_part(len(values), fraction))
    return max(0.0, max(values[i] - values[i - 1] for i in range(first, len(values))))


late_rise.name = "largest one-epoch rise of test accuracy in the last tenth of epochs"


def plateaued(record: Dict, tolerance: float = 0.01, window: float = 0.2, before_last: float = 0.1,
              metric: str = "test_acc") -> bool:
    """Whether a run's best ``metric`` so far rose by less than ``tolerance`` over the ``window`` of the
    run (a fraction of its epochs) that ends where its last ``before_last`` fraction begins: the
    "training deadlock" that the paper's death convergence is said to break (Sec. III.A)."""
    values = [e[metric] for e in record["epochs"]]
    end = len(values) - _last_part(len(values), before_last)
    start = end - _last_part(len(values), window)
    if start < 1:
        return False
    return max(values[:end]) - max(values[:start]) < tolerance


def epoch_metric(key: str, epoch: int) -> Callable[[Dict], float]:
    """A per-run metric: ``key`` of the record's epoch ``epoch`` (0-based), e.g. the val mean IoU halfway
    through a segmentation run (Table I's "converge faster")."""

    def value(record: Dict) -> float:
        return float(record["epochs"][epoch][key])

    value.name = f"{key} after epoch {epoch + 1}"
    value.__name__ = f"{key}_epoch_{epoch + 1}"
    return value


# -- summaries of run records ------------------------------------------------------------------------


def finished(records: Iterable[Dict]) -> List[Dict]:
    """The finished runs of ``records`` (not diverged, not interrupted), in order."""
    return [r for r in records if r.get("status") == "finished"]


def group_by_label(records: Iterable[Dict]) -> "OrderedDict[str, List[Dict]]":
    """Records grouped by their label, in first-seen order (the seeds of one setting together)."""
    groups: "OrderedDict[str, List[Dict]]" = OrderedDict()
    for r in records:
        groups.setdefault(r["label"], []).append(r)
    return groups


def summarize(records: Sequence[Dict]) -> Dict:
    """Final-epoch and best-over-epochs test accuracy (mean, std), seeds, diverged runs, provenance."""
    done = finished(records)
    final = mean_std([r["final_test_acc"] for r in done])
    best = mean_std([r["best_test_acc_over_epochs"] for r in done])
    return {
        "final_mean": final[0], "final_std": final[1], "best_mean": best[0], "best_std": best[1],
        "seeds": sorted(r["config"]["seed"] for r in done),
        "diverged": sorted(r["config"]["seed"] for r in records if r["status"] == "diverged"),
        "negative_weights": any(r.get("negative_weights") for r in records),
        "profile": records[0]["provenance"]["profile"] if records else None,
        "device": records[0]["provenance"]["device_name"] if records else None,
        "wall_seconds": sum(r.get("wall_seconds", 0.0) for r in records),
    }


def metric_curves(records: Sequence[Dict], metric: str = "test_acc"):
    """Per-epoch mean and standard deviation of ``metric`` over finished runs: (epochs, mean, std)."""
    runs = finished(records)
    if not runs:
        return [], [], []
    n_epochs = min(len(r["epochs"]) for r in runs)
    xs = list(range(1, n_epochs + 1))
    stats = [mean_std([r["epochs"][e][metric] for r in runs]) for e in range(n_epochs)]
    return xs, [m for m, _ in stats], [s for _, s in stats]
