"""Markdown tables of run records, of profiles' sizes and of claims: one helper writes them all.

:func:`markdown_table` is the one table writer; the others choose rows and cells, so that no chapter
formats a table inline: :func:`summary_table` (a row per setting: accuracy, or any metric through
:func:`mean_pm`, and comparisons with a baseline through :func:`comparison_columns`),
:func:`comparison_table` (a row per comparison), :func:`values_table` (values computed by a chapter),
:func:`settings_table` (the sizes a chapter runs at), :func:`scales_table` (a setting at every
profile) and :func:`jump_table` (where the late jump of Figs. 2b and 3 happened). Display them with
``IPython.display.Markdown``.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

from .runs import RunStore, flat_configs, load_existing
from .statistics import finished, format_p, jump_epoch, mean_std, metric_values, summarize

__all__ = ["markdown_table", "cost_table", "epoch_tests_table", "settings_table", "values_table", "format_pm",
           "setting_name", "SUMMARY_COLUMNS", "summary_table", "mean_pm", "diff_ci", "comparison_columns",
           "comparison_table", "SCALE_PROFILES", "scale_name", "scales_table", "jump_table"]


#: A table cell computed from a setting's label and its run records.
Cell = Callable[[str, Sequence[Dict]], object]
#: A column of :func:`summary_table`: a name of :data:`SUMMARY_COLUMNS`, or ``(header, cell)``.
Column = Union[str, Tuple[str, Cell]]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence]) -> str:
    """A Markdown table (display it with ``IPython.display.Markdown``); ``|`` in a cell is escaped."""
    def line(cells):
        return "| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in cells) + " |"

    return "\n".join([line(headers), "|" + "---|" * len(headers)] + [line(row) for row in rows])


def settings_table(settings: Dict[str, object]) -> str:
    """The sizes a chapter runs at, one per row (``{what: value}``): a list that fits any page."""
    return markdown_table(["setting", "this page"], list(settings.items()))


def values_table(rows: Dict[str, Dict[str, object]], first: str = "setting",
                 formats: Union[str, Dict[str, str]] = "{}") -> str:
    """A table of computed values: one row per key of ``rows`` (``{row: {column: value}}``), each value
    written with its column's format (``formats``: one for all, or ``{column: format}``; a tuple is
    spread into the format, e.g. ``"{:.1f} ± {:.1f}"``); ``None`` is written "-"."""
    headers = list(dict.fromkeys(h for values in rows.values() for h in values))

    def cell(header, value):
        if value is None or isinstance(value, str):
            return "-" if value is None else value
        fmt = formats if isinstance(formats, str) else formats.get(header, "{}")
        return fmt.format(*value) if isinstance(value, tuple) else fmt.format(value)

    return markdown_table([first] + headers, [[name] + [cell(h, values.get(h)) for h in headers]
                                              for name, values in rows.items()])


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


#: The columns :func:`summary_table` knows: name -> (header, cell from the records and ``digits``).
SUMMARY_COLUMNS: Dict[str, tuple] = {
    "final": ("final test acc. (%)", lambda rs, d: mean_pm("final_test_acc", digits=d)("", rs)),
    "best": ("best over epochs (%, selects on test)",
             lambda rs, d: mean_pm("best_test_acc_over_epochs", digits=d)("", rs)),
    "seeds": ("seeds", lambda rs, d: len(finished(rs))),
    "diverged": ("diverged", lambda rs, d: sum(r["status"] == "diverged" for r in rs)),
    "minutes": ("train minutes", lambda rs, d: f"{sum(r.get('wall_seconds', 0.0) for r in rs) / 60:.1f}"),
}


def summary_table(groups: Dict[str, Sequence[Dict]], columns: Sequence[Column] = ("final", "best", "seeds", "diverged"),
                  by_final: bool = False, digits: int = 2, first: str = "setting") -> str:
    """A Markdown table with one row per setting of ``groups`` (``{label: records}``, the label under
    the header ``first``) and one column per entry of ``columns``: a name of :data:`SUMMARY_COLUMNS`
    (final-epoch and best-over-epochs test accuracy as mean ± std over finished runs, seeds, diverged
    runs, training minutes) or a ``(header, cell)`` pair (e.g. :func:`mean_pm` of another metric; a
    cell that is a float is written with ``digits`` decimals). ``by_final``: best final accuracy first."""
    unknown = [c for c in columns if isinstance(c, str) and c not in SUMMARY_COLUMNS]
    if unknown:
        raise ValueError(f"unknown summary columns {unknown}; known: {sorted(SUMMARY_COLUMNS)}")
    named = {c: SUMMARY_COLUMNS[c] for c in columns if isinstance(c, str)}
    headers = [named[c][0] if isinstance(c, str) else c[0] for c in columns]
    items = list(groups.items())
    if by_final:
        items.sort(key=lambda kv: -_final_or_nan(kv[1]))
    rows = []
    for label, records in items:
        cells = [named[c][1](records, digits) if isinstance(c, str) else c[1](label, records)
                 for c in columns]
        rows.append([label] + [f"{x:.{digits}f}" if isinstance(x, float) else x for x in cells])
    return markdown_table([first] + headers, rows)


def mean_pm(metric: Union[str, Callable[[Dict], float]], scale: float = 100.0, digits: int = 2) -> Cell:
    """A :func:`summary_table` cell: ``mean ± std`` of ``metric`` (a record key, or a function of a
    record) over the setting's finished runs, times ``scale``."""
    return lambda _, records: format_pm(*mean_std(metric_values(records, metric)), scale=scale, digits=digits)


def diff_ci(comparison: Dict, scale: float = 100.0, digits: int = 2) -> str:
    """``"+1.23 (-0.50 to +2.96)"``: a difference of means and its 95% confidence interval, from
    :func:`lossdecay_lib.statistics.compare` (times ``scale``: points for accuracies)."""
    lo, hi = (scale * x for x in comparison["ci95"])
    return f"{scale * comparison['diff']:+.{digits}f} ({lo:+.{digits}f} to {hi:+.{digits}f})"


def comparison_columns(comparisons: Dict[str, Dict], header: str = "difference (points, 95% CI)",
                       verdict: str = "verdict", scale: float = 100.0, digits: int = 2) -> List[Column]:
    """:func:`summary_table` columns for each setting's comparison with a baseline (``{label:
    compare(...)}``): the difference with its CI (:func:`diff_ci`), Welch's p and the verdict; "-" for
    a setting not compared (the baseline)."""
    def of(f):
        return lambda label, _: f(comparisons[label]) if label in comparisons else "-"

    return [(header, of(lambda c: diff_ci(c, scale, digits))), ("Welch p", of(lambda c: format_p(c["p"]))),
            (verdict, of(lambda c: c["verdict"]))]


def comparison_table(comparisons: Dict[Tuple[str, ...], Dict], keys: Sequence[str],
                     header: str = "difference (points, 95% CI)", scale: float = 100.0,
                     digits: int = 2) -> str:
    """One row per comparison (``{(key, ...): compare(...)}``, the key's parts under ``keys``): the
    difference with its CI (:func:`diff_ci`), Welch's p and the verdict."""
    rows = [list(key) + [diff_ci(c, scale, digits), format_p(c["p"]), c["verdict"]]
            for key, c in comparisons.items()]
    return markdown_table(list(keys) + [header, "Welch p", "verdict"], rows)


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
    return summary_table(groups, columns=["final", "best", *_jump_columns(epochs).items()])


def epoch_tests_table(tests: Dict[str, Sequence[Dict]]) -> str:
    """Markdown: one row per epoch, one column per series of per-epoch tests (``{header: tests}``, as
    :func:`lossdecay_lib.layer_stats.epoch_tests` and :func:`~lossdecay_lib.layer_stats.ratio_tests`
    give them): a difference of accuracies in points ± one standard error, or a ratio, each with its p.
    The table stops at the last epoch every series has; "" when one has none."""
    def cell(t):
        if "ratio" in t:
            return f"{t['ratio']:.2f} (p {format_p(t['p'])})"
        return f"{100 * t['diff']:+.1f} ± {100 * t['se']:.1f} (p {format_p(t['p'])})"

    epochs = min((len(v) for v in tests.values()), default=0)
    if not epochs:
        return ""
    return markdown_table(["epoch", *tests], [[e + 1] + [cell(v[e]) for v in tests.values()] for e in range(epochs)])


def cost_table(rows: Sequence[Dict], budgets: Dict[str, Tuple[Sequence[str], float]],
               name: Callable[[str], str] = str) -> str:
    """The campaign's compute against its budgets: per chapter (rows of
    :func:`lossdecay_lib.campaign.cost`) the runs finished, the core-hours spent and an estimate of the
    rest, then per budget (``{name: (chapters, core-hours)}``, as
    :data:`lossdecay_lib.experiments.BUDGETS`) its chapters' total beside it."""
    by_chapter = {r["chapter"]: r for r in rows}
    lines = []
    for r in rows:
        left = "-" if r["finished"] == r["runs"] else (
            "not estimated yet" if math.isnan(r["core_hours_left"]) else f"about {r['core_hours_left']:.1f}")
        note = f" ({r['wall_time_only']} by wall time)" if r["wall_time_only"] else ""
        lines.append([name(r["chapter"]), f"{r['finished']} of {r['runs']}", f"{r['core_hours']:.1f}{note}",
                      left, ""])
    for title, (group, budget) in budgets.items():
        members = [by_chapter[c] for c in group if c in by_chapter]
        if not members:
            continue
        spent = sum(r["core_hours"] for r in members)
        left = sum(r["core_hours_left"] for r in members if r["finished"] < r["runs"])
        done = all(r["finished"] == r["runs"] for r in members)
        total = f"{spent:.1f}" if done else (f"{spent:.1f} so far; about {spent + left:.1f} in all"
                                             if not math.isnan(left) else f"{spent:.1f} so far")
        lines.append([f"**{title}**",
                      f"{sum(r['finished'] for r in members)} of {sum(r['runs'] for r in members)}",
                      total, "", f"{budget:g}"])
    return markdown_table(["chapter", "runs finished", "core-hours", "core-hours to go", "budget"], lines)
