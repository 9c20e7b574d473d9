"""Markdown tables of run records, of profiles' sizes and of claims: one helper writes them all.

:func:`markdown_table` is the one table writer; the others choose rows and cells: :func:`summary_table`
(final and best accuracy per setting), :func:`scales_table` (a setting at every profile),
:func:`jump_table` (where the late jump of Figs. 2b and 3 happened) and :func:`settings_table` (the
sizes a chapter runs at). Display them with ``IPython.display.Markdown``.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional, Sequence

from .runs import RunStore, flat_configs, load_existing
from .statistics import finished, jump_epoch, mean_std, summarize

__all__ = ["markdown_table", "settings_table", "format_pm", "setting_name", "SUMMARY_COLUMNS",
           "summary_table", "SCALE_PROFILES", "scale_name", "scales_table", "jump_table"]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table (display it with ``IPython.display.Markdown``)."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


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
        configs = flat_configs(experiment(profile))
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
