"""Run records on disk: one JSON file per run, keyed by its configuration.

A chapter asks for a run by its configuration; if a finished record with that key exists it is loaded
instead of training again (pass ``force=True`` to rerun). Records of the runs the rendered book shows
are committed under ``records/``, so ``make book`` on a fresh machine renders real results quickly.

Where records live: ``$LOSSDECAY_RECORDS`` if set, else ``records/`` at the root of the checkout the
code runs in (found from the working directory), else ``./records``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, Union

from .records import read_json, write_json_atomic

__all__ = ["RECORDS_ENV", "RunStore", "config_key", "run_key", "group_by_label", "metric_curves", "summarize", "setting_name",
           "markdown_table", "mean_std", "compare", "jump_epoch"]

RECORDS_ENV = "LOSSDECAY_RECORDS"


def config_key(description: Dict) -> str:
    """A short stable hash of a JSON-ready configuration."""
    text = json.dumps(description, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_key(config) -> str:
    """The key of a run: :func:`config_key` of ``config.describe()`` without ``profile``.

    A run is what it trains (network, data sizes, optimizer, schedules, seed...); the profile that asked
    for it is provenance, kept in the record. Two profiles that share a section's sizes (``quick`` and
    ``cpu`` share segmentation and pix2pix) share its runs.
    """
    description = dict(config.describe())
    description.pop("profile", None)
    return config_key(description)


class RunStore:
    """A folder of run records: ``<root>/<key>.json``."""

    def __init__(self, root: Union[str, Path]):
        self.root = Path(root)

    @classmethod
    def default(cls) -> "RunStore":
        env = os.environ.get(RECORDS_ENV)
        if env:
            return cls(env)
        here = Path.cwd().resolve()
        for d in (here, *here.parents):
            if (d / "_toc.yml").is_file() and (d / "lossdecay_lib").is_dir():
                return cls(d / "records")
        return cls(here / "records")

    key = staticmethod(config_key)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def load(self, key: str) -> Optional[Dict]:
        """The finished (or diverged) record with this key, or ``None``."""
        p = self.path(key)
        if not p.is_file():
            return None
        record = read_json(p)
        return record if record.get("status") in ("finished", "diverged") else None

    def save(self, key: str, record: Dict) -> Path:
        return write_json_atomic(self.path(key), record)

    def __iter__(self) -> Iterator[Dict]:
        for p in sorted(self.root.glob("*.json")):
            yield read_json(p)


def group_by_label(records: Iterable[Dict]) -> "OrderedDict[str, List[Dict]]":
    """Records grouped by their label, in first-seen order (the seeds of one setting together)."""
    groups: "OrderedDict[str, List[Dict]]" = OrderedDict()
    for r in records:
        groups.setdefault(r["label"], []).append(r)
    return groups


def setting_name(label: str, records: Sequence[Dict]) -> str:
    """How a setting is named in figures and tables: its label, the finished runs, and what must not hide.

    ``"loss decay (n=3)"``; ``"x (n=2, 1 diverged)"``; a setting whose runs were allowed negative loss
    weights (gradient ascent, e.g. the authors' code schedule after epoch 100) says so:
    ``"authors' code weight (n=3, negative weights)"``.
    """
    done = sum(r.get("status") == "finished" for r in records)
    bad = sum(r.get("status") == "diverged" for r in records)
    notes = [f"n={done}"] + ([f"{bad} diverged"] if bad else [])
    if any(r.get("negative_weights") for r in records):
        notes.append("negative weights")
    return f"{label} ({', '.join(notes)})"


def mean_std(values: Sequence[float]) -> Tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    m = sum(values) / n
    s = math.sqrt(sum((v - m) ** 2 for v in values) / (n - 1)) if n > 1 else 0.0
    return m, s


def metric_curves(records: Sequence[Dict], metric: str = "test_acc"):
    """Per-epoch mean and standard deviation of ``metric`` over finished runs: (epochs, mean, std)."""
    runs = [r for r in records if r["status"] == "finished"]
    if not runs:
        return [], [], []
    n_epochs = min(len(r["epochs"]) for r in runs)
    xs = list(range(1, n_epochs + 1))
    stats = [mean_std([r["epochs"][e][metric] for r in runs]) for e in range(n_epochs)]
    return xs, [m for m, _ in stats], [s for _, s in stats]


def summarize(records: Sequence[Dict]) -> Dict:
    """Final-epoch and best-over-epochs test accuracy (mean, std), seeds, diverged runs, provenance."""
    done = [r for r in records if r["status"] == "finished"]
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


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table (display it with ``IPython.display.Markdown``)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def compare(baseline: Sequence[Dict], treatment: Sequence[Dict], metric: str = "final_test_acc") -> Dict:
    """Difference of means ``treatment - baseline`` of a run-level metric, its standard error and a verdict.

    The verdict for "the treatment is better": ``supported`` when the difference exceeds two standard
    errors, ``contradicted`` when it is below minus two, ``inconclusive`` otherwise or with fewer than
    two finished seeds on either side.
    """
    a = [r[metric] for r in baseline if r["status"] == "finished"]
    b = [r[metric] for r in treatment if r["status"] == "finished"]
    (ma, sa), (mb, sb) = mean_std(a), mean_std(b)
    diff = mb - ma
    if len(a) < 2 or len(b) < 2:
        return {"diff": diff, "se": math.nan, "verdict": "inconclusive (fewer than 2 seeds)", "n": (len(a), len(b))}
    se = math.sqrt(sa**2 / len(a) + sb**2 / len(b))
    if diff > 2 * se:
        verdict = "supported"
    elif diff < -2 * se:
        verdict = "contradicted"
    else:
        verdict = "inconclusive"
    return {"diff": diff, "se": se, "verdict": verdict, "n": (len(a), len(b))}


def jump_epoch(record: Dict, metric: str = "test_acc") -> Tuple[int, float]:
    """The epoch (1-based) with the largest one-epoch rise of ``metric``, and the size of that rise.

    The paper's "death convergence" is a sudden late jump in test accuracy; this locates the largest
    jump of a run, wherever it is, so that its timing can be compared with the schedule's.
    """
    values = [e[metric] for e in record["epochs"]]
    if len(values) < 2:
        return 1, 0.0
    rises = [b - a for a, b in zip(values, values[1:])]
    i = max(range(len(rises)), key=rises.__getitem__)
    return i + 2, rises[i]
