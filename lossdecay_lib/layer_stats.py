"""Per-layer records compared between settings: where two settings' weight norms, effective steps or
accuracies part ways (chapter "What loss decay changes", issue 19).

Every classification record keeps, per epoch, each weight layer's norm at the epoch's end
(``layer_weight_norms``) and its mean effective step ``||w_{t+1} - w_t|| / ||w_t||``
(``layer_effective_steps``; for a scale-invariant layer, the angle it turns per step). Two settings run
at the same seed start from the same weights and see the same batches, so their runs pair by seed:
the per-seed ratio removes the seed's own variation, and a one-sample test of the log ratio against 0
(:func:`lossdecay_lib.statistics.one_sample_test`) says at which epochs the two differ.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .statistics import ALPHA, one_sample_test, welch_test

__all__ = ["has_layers", "by_seed", "paired_log_ratio", "ratio_tests", "epoch_tests", "parting_epoch"]


def has_layers(record: Dict) -> bool:
    """Whether ``record`` finished and recorded per-layer weight norms (runs trained before did not)."""
    return record.get("status") == "finished" and bool(record.get("epochs")) and \
        "layer_weight_norms" in record["epochs"][0]


def by_seed(records: Sequence[Dict], value: Callable[[Dict], float]) -> Dict[int, np.ndarray]:
    """``{seed: per-epoch array of value(epoch entry)}`` over the runs of ``records`` that
    :func:`has_layers`."""
    return {r["config"]["seed"]: np.array([value(e) for e in r["epochs"]]) for r in records if has_layers(r)}


def paired_log_ratio(a: Sequence[Dict], b: Sequence[Dict], key: str, layers: slice = slice(None, -1)
                     ) -> Tuple[List[int], np.ndarray]:
    """Per seed that both settings ran, and per epoch, the mean over ``layers`` (default: every layer
    but the classifier, i.e. the convolutions) of ``log(key of a / key of b)``: the log of the
    geometric-mean ratio. Returns ``(seeds, array [seeds, epochs])``; the arrays are cut to the epochs
    both runs of a seed have."""
    la = by_seed(a, lambda e: float(np.mean(np.log(e[key][layers]))))
    lb = by_seed(b, lambda e: float(np.mean(np.log(e[key][layers]))))
    seeds = sorted(set(la) & set(lb))
    if not seeds:
        return [], np.zeros((0, 0))
    n = min(min(len(la[s]), len(lb[s])) for s in seeds)
    return seeds, np.array([la[s][:n] - lb[s][:n] for s in seeds])


def ratio_tests(a: Sequence[Dict], b: Sequence[Dict], key: str) -> List[Dict]:
    """Per epoch, :func:`lossdecay_lib.statistics.one_sample_test` of the per-seed log ratio of
    :func:`paired_log_ratio` against 0, with ``ratio``: the geometric-mean ratio over seeds."""
    _, logs = paired_log_ratio(a, b, key)
    return [dict(one_sample_test(logs[:, e], 0.0), ratio=float(np.exp(logs[:, e].mean())))
            for e in range(logs.shape[1])]


def epoch_tests(baseline: Sequence[Dict], treatment: Sequence[Dict], key: str = "test_acc") -> List[Dict]:
    """Per epoch that every run has, Welch's test (:func:`lossdecay_lib.statistics.welch_test`) of
    ``key`` between the runs of two settings that :func:`has_layers`."""
    base, treat = by_seed(baseline, lambda e: e[key]), by_seed(treatment, lambda e: e[key])
    epochs = min((len(v) for side in (base, treat) for v in side.values()), default=0)
    return [welch_test([v[e] for v in base.values()], [v[e] for v in treat.values()]) for e in range(epochs)]


def parting_epoch(p_values: Sequence[Optional[float]], alpha: float = ALPHA) -> Optional[int]:
    """The first epoch (0-based) from which every test's p is below ``alpha`` to the end, or ``None``.
    Untested epochs (``None`` or NaN p) count as not apart."""
    apart = [p is not None and np.isfinite(p) and p < alpha for p in p_values]
    return next((e for e in range(len(apart)) if all(apart[e:])), None)
