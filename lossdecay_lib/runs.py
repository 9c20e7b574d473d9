"""The record store: one JSON file per run, keyed by its configuration.

A chapter asks for a run by its configuration; if a finished record with that key exists it is loaded
instead of training again (pass ``force=True`` to rerun). Records of the runs the rendered book shows
are committed under ``records/``, so ``make book`` on a fresh machine renders real results quickly.

Where records live: ``$LOSSDECAY_RECORDS`` if set, else ``records/`` at the root of the checkout the
code runs in (:func:`lossdecay_lib.chapters.repo_root`), else ``./records``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence, Union

from .atomic import read_json, write_json_atomic

__all__ = ["RECORDS_ENV", "TRAINED_LOG_ENV", "RunStore", "config_key", "run_key", "flat_configs",
           "load_existing"]

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
        """``$LOSSDECAY_RECORDS``, else the checkout's ``records/``, else ``./records``."""
        from .chapters import repo_root

        env = os.environ.get(RECORDS_ENV)
        if env:
            return cls(env)
        try:
            return cls(repo_root() / "records")
        except FileNotFoundError:  # not in a checkout (e.g. Colab with the library installed)
            return cls(Path.cwd().resolve() / "records")

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


def flat_configs(configs) -> List:
    """The configs of ``configs``: one, a list, or nested ``{...: config}`` dicts, in order."""
    if isinstance(configs, dict):
        return [c for v in configs.values() for c in flat_configs(v)]
    return list(configs) if isinstance(configs, (list, tuple)) else [configs]


def load_existing(configs, seeds: Sequence[int],
                  store: Optional[RunStore] = None) -> "OrderedDict[str, List[Dict]]":
    """The records already in ``store`` of ``configs`` (a config, a list, or nested ``{...: config}`` as
    :mod:`lossdecay_lib.experiments` returns them) at ``seeds``, grouped by each config's label (a
    record's own label is that of the chapter that trained it). Trains nothing; a setting with no
    record is absent."""
    store = store or RunStore.default()
    groups: "OrderedDict[str, List[Dict]]" = OrderedDict()
    for config in flat_configs(configs):
        for seed in seeds:
            record = store.load(run_key(config.with_(seed=seed)))
            if record is not None:
                groups.setdefault(config.label, []).append(record)
    return groups
