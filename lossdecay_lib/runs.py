"""Run records on disk: one JSON file per run, keyed by its configuration; grouping and tables of them.

A chapter asks for a run by its configuration; if a finished record with that key exists it is loaded
instead of training again (pass ``force=True`` to rerun). Records of the runs the rendered book shows
are committed under ``records/``, so ``make book`` on a fresh machine renders real results quickly.

Where records live: ``$LOSSDECAY_RECORDS`` if set, else ``records/`` at the root of the checkout the
code runs in (found from the working directory), else ``./records``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence, Union

from .records import read_json, write_json_atomic
from .statistics import mean_std

__all__ = ["RECORDS_ENV", "TRAINED_LOG_ENV", "RunStore", "config_key", "run_key", "group_by_label", "metric_curves", "summarize", "setting_name",
           "markdown_table"]

RECORDS_ENV = "LOSSDECAY_RECORDS"
# When set (by the chapter runner), every record saved appends its key to this file, one a line: how the
# runner knows whether a chapter trained anything (lossdecay_lib.chapters.run_chapters).
TRAINED_LOG_ENV = "LOSSDECAY_TRAINED_LOG"


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
        path = write_json_atomic(self.path(key), record)
        log = os.environ.get(TRAINED_LOG_ENV)
        if log:
            with open(log, "a") as f:  # appends of a line are atomic across processes
                f.write(key + "\n")
        return path

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
