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
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Union

from .records import read_json, write_json_atomic
from .statistics import mean_std

__all__ = ["RECORDS_ENV", "TRAINED_LOG_ENV", "RunStore", "config_key", "run_key", "group_by_label", "metric_curves",
           "summarize", "setting_name", "markdown_table", "finished", "format_pm", "SUMMARY_COLUMNS", "summary_table",
           "load_existing", "scales_table", "scale_name", "SCALE_PROFILES", "jump_table"]

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


def finished(records: Iterable[Dict]) -> List[Dict]:
    """The finished runs of ``records`` (not diverged, not interrupted), in order."""
    return [r for r in records if r.get("status") == "finished"]


def metric_curves(records: Sequence[Dict], metric: str = "test_acc"):
    """Per-epoch mean and standard deviation of ``metric`` over finished runs: (epochs, mean, std)."""
    runs = finished(records)
    if not runs:
        return [], [], []
    n_epochs = min(len(r["epochs"]) for r in runs)
    xs = list(range(1, n_epochs + 1))
    stats = [mean_std([r["epochs"][e][metric] for r in runs]) for e in range(n_epochs)]
    return xs, [m for m, _ in stats], [s for _, s in stats]


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


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table (display it with ``IPython.display.Markdown``)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def format_pm(mean: float, std: float, scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` (both times ``scale``: accuracies in per cent by default); ``-`` for no value."""
    if mean is None or mean != mean:
        return "-"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


#: The columns :func:`summary_table` knows: name -> (header, cell from the :func:`summarize` dict).
SUMMARY_COLUMNS: Dict[str, tuple] = {
    "final": ("final test acc. (%)", lambda s, d: format_pm(s["final_mean"], s["final_std"], digits=d)),
    "best": ("best over epochs (%, selects on test)",
             lambda s, d: format_pm(s["best_mean"], s["best_std"], digits=d)),
    "seeds": ("seeds", lambda s, d: len(s["seeds"])),
    "diverged": ("diverged", lambda s, d: len(s["diverged"])),
    "minutes": ("train minutes", lambda s, d: f"{s['wall_seconds'] / 60:.1f}"),
}


def summary_table(groups: Dict[str, Sequence[Dict]], columns: Sequence[str] = ("final", "best", "seeds", "diverged"),
                  extra: Optional[Dict[str, Callable[[str, Sequence[Dict]], object]]] = None,
                  by_final: bool = False, digits: int = 2) -> str:
    """A Markdown table with one row per setting of ``groups`` (``{label: records}``): the
    :data:`SUMMARY_COLUMNS` named in ``columns`` (final-epoch and best-over-epochs test accuracy as
    mean ± std over finished runs, seeds, diverged runs, training minutes), then one column per entry
    of ``extra`` (``{header: f(label, records) -> cell}``). ``by_final``: best final accuracy first."""
    unknown = [c for c in columns if c not in SUMMARY_COLUMNS]
    if unknown:
        raise ValueError(f"unknown summary columns {unknown}; known: {sorted(SUMMARY_COLUMNS)}")
    extra = extra or {}
    items = list(groups.items())
    if by_final:
        items.sort(key=lambda kv: -_final_or_nan(kv[1]))
    rows = []
    for label, records in items:
        s = summarize(records)
        rows.append([label] + [SUMMARY_COLUMNS[c][1](s, digits) for c in columns]
                    + [f(label, records) for f in extra.values()])
    return markdown_table(["setting"] + [SUMMARY_COLUMNS[c][0] for c in columns] + list(extra), rows)


def _final_or_nan(records: Sequence[Dict]) -> float:
    m = summarize(records)["final_mean"]
    return m if m == m else -1.0


def _flat_configs(configs) -> List:
    if isinstance(configs, dict):
        return [c for v in configs.values() for c in _flat_configs(v)]
    return list(configs) if isinstance(configs, (list, tuple)) else [configs]


def load_existing(configs, seeds: Sequence[int], store: Optional[RunStore] = None) -> "OrderedDict[str, List[Dict]]":
    """The records already in ``store`` of ``configs`` (a config, a list, or nested ``{...: config}`` as
    :mod:`lossdecay_lib.experiments` returns them) at ``seeds``, grouped by each config's label (a
    record's own label is that of the chapter that trained it). Trains nothing; a setting with no
    record is absent."""
    store = store or RunStore.default()
    groups: "OrderedDict[str, List[Dict]]" = OrderedDict()
    for config in _flat_configs(configs):
        for seed in seeds:
            record = store.load(run_key(config.with_(seed=seed)))
            if record is not None:
                groups.setdefault(config.label, []).append(record)
    return groups


#: The profiles whose records :func:`scales_table` looks for (``smoke`` is for tests).
SCALE_PROFILES = ("quick", "cpu", "gpu", "paper")


def scale_name(profile: str, config) -> str:
    """How a profile's sizes are named: ``"cpu (50,000 images, 16x16, 20 epochs)"``, from one of its configs."""
    images = 50_000 if config.train_per_class is None else 10 * config.train_per_class
    return f"{profile} ({images:,} images, {config.image_size}x{config.image_size}, {config.epochs} epochs)"


def scales_table(experiment: Callable[[str], Dict], first_seed: int = 0, profiles: Sequence[str] = SCALE_PROFILES,
                 store: Optional[RunStore] = None, current: Optional[str] = None) -> str:
    """Markdown: each setting's final test accuracy (mean ± std, n) at every profile whose records of
    ``experiment`` (a function of :mod:`lossdecay_lib.experiments`) are in ``store``, side by side, from
    the records only (nothing is trained); a line for each profile with none. ``current``, the
    chapter's profile, is looked at too when it is not among ``profiles``."""
    from .profiles import get_profile

    names = list(profiles) + ([current] if current and current not in profiles else [])
    columns, missing, labels = {}, [], []
    for profile in names:
        configs = _flat_configs(experiment(profile))
        seeds = range(first_seed, first_seed + get_profile(profile).seeds)
        groups = load_existing(configs, seeds, store)
        labels += [c.label for c in configs if c.label not in labels]
        if groups:
            columns[scale_name(profile, configs[0])] = (groups, {c.label for c in configs})
        else:
            missing.append(f"- `{profile}`: no records yet.")
    rows = [[label] + [_scale_cell(label, groups, run) for groups, run in columns.values()] for label in labels]
    table = markdown_table(["setting"] + list(columns), rows) if columns else ""
    if table:
        table = "Final test accuracy (%), mean ± std over seeds (n runs):\n\n" + table
    return "\n\n".join(x for x in (table, "\n".join(missing)) if x)


def _scale_cell(label: str, groups: Dict[str, List[Dict]], run: set) -> str:
    if label not in run:
        return "not in this profile"
    done = finished(groups.get(label, []))
    if not done:
        return "not trained yet"
    m, s = mean_std([r["final_test_acc"] for r in done])
    return f"{format_pm(m, s, digits=1) if len(done) > 1 else f'{100 * m:.1f}'} (n={len(done)})"


def _jump_columns(epochs: int) -> Dict[str, Callable[[str, Sequence[Dict]], object]]:
    from .statistics import jump_epoch

    def jumps(records):
        done = finished(records)
        found = [jump_epoch(r) for r in done]
        return found, [r["epochs"][e - 1] for r, (e, _) in zip(done, found)]

    def epoch(_, recs):
        return format_pm(*mean_std([e for e, _ in jumps(recs)[0]]), scale=1, digits=1)

    def share(_, recs):
        return f"{mean_std([e for e, _ in jumps(recs)[0]])[0] / epochs:.0%}"

    def rise(_, recs):
        return f"{mean_std([100 * d for _, d in jumps(recs)[0]])[0]:+.1f}"

    def weight(_, recs):
        return f"{mean_std([a['weight_mean'] for a in jumps(recs)[1]])[0]:.2f}"

    def step(_, recs):
        return f"{mean_std([a['weight_mean'] * a['lr_mean'] for a in jumps(recs)[1]])[0]:.4f}"

    return {"jump epoch": epoch, "jump at % of training": share, "jump (points)": rise,
            "weight at jump": weight, "lr x weight at jump": step}


def jump_table(groups: Dict[str, Sequence[Dict]], epochs: int) -> str:
    """Markdown: per setting, final and best test accuracy (:func:`summary_table`) and where each run's
    largest one-epoch rise of test accuracy came (:func:`lossdecay_lib.statistics.jump_epoch`, mean ±
    std over runs): its epoch, its share of the ``epochs`` of training, its size in points, and the loss
    weight and effective step (lr x weight) in force during that epoch."""
    return summary_table(groups, columns=("final", "best"), extra=_jump_columns(epochs))
