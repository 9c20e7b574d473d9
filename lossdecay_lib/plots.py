"""The book's figures: one style, one function per kind of figure. Chapters never style plots.

Every function returns the matplotlib ``Figure`` and titles and labels it so that it stands on its own
(the paper's own figures are missing from its text). Each draws under the book's style,
:data:`STYLE`, applied with ``plt.style.context`` for the duration of the call only: importing or
using this module leaves the reader's global matplotlib settings as they were. For a figure of your
own in the same style: ``with plt.style.context(plots.STYLE): ...``.
"""

from __future__ import annotations

import functools
from typing import Dict, Mapping, Optional, Sequence

import matplotlib
import matplotlib.pyplot as plt
import numpy as np

from .schedules import Schedule, curve

__all__ = ["STYLE", "plot_schedules", "plot_identity_gaps", "plot_adam_multiplier", "plot_curves",
           "plot_metric_bands", "plot_layer_grad_norms", "plot_curvature_along_training", "plot_quadratic_check"]

PALETTE = ["#0b5394", "#cc4125", "#38761d", "#e69138", "#674ea7", "#45818e", "#222222", "#c27ba0", "#7f6000", "#999999"]


#: The book's plot style: the rcParams every plotting function draws under.
STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "figure.figsize": (7.5, 4.0),
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "font.size": 10,
}


def _styled(plot):
    """``plot`` drawn under :data:`STYLE`, the global rcParams untouched."""

    @functools.wraps(plot)
    def styled(*args, **kwargs):
        with plt.style.context(STYLE):
            fig = plot(*args, **kwargs)
            interactive = matplotlib.is_interactive()
        # A backend loaded inside the context (IPython's inline backend, at a notebook's first
        # figure) turns interactive mode on; leaving the context must not turn it off, or the
        # notebook's later figures would not be shown.
        matplotlib.interactive(interactive)
        return fig

    return styled


def _grid(n: int, ncols: int, width: float, height: float, extra_height: float = 0.0, **share):
    """A figure of ``n`` panels, ``ncols`` to a row, each ``width`` x ``height`` inches; ``axes`` is
    always 2-d. ``share``: ``sharex``/``sharey``."""
    nrows = int(np.ceil(n / ncols))
    return plt.subplots(nrows, ncols, figsize=(width * ncols, height * nrows + extra_height),
                        squeeze=False, **share)


def _finish(fig, axes=None, used: Optional[int] = None, title: str = "", rect=None, **title_style):
    """Hide the panels past the first ``used``, add the title, lay the figure out inside ``rect``
    (room left for a figure legend); returns the figure."""
    if axes is not None and used is not None:
        for ax in list(axes.flat)[used:]:
            ax.set_visible(False)
    if title:
        fig.suptitle(title, **title_style)
    fig.tight_layout(rect=rect)
    return fig


def _legend_below(fig, ax, columns: int, space: float, per_row: float):
    """``ax``'s legend entries as one figure legend below the panels, ``columns`` wide; returns the
    ``rect`` for :func:`_finish` that keeps ``space`` of the height for it, plus ``per_row`` for
    each further row."""
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), columns), fontsize=8)
    return (0, space + per_row * ((len(labels) - 1) // columns), 1, 1)


def _image_grid(columns, cell, extra_height: float, title_size: float, frame: bool = True, **imshow):
    """A figure of pictures, one column per ``(title, [n, H, W, 3] images)`` of ``columns``, one row
    per image; ``cell``: (width, height) of a picture in inches; no ticks, no grid."""
    fig, axes = _grid(len(columns[0][1]) * len(columns), len(columns), *cell, extra_height)
    for col, (name, pictures) in enumerate(columns):
        axes[0, col].set_title(name, fontsize=title_size)
        for ax, picture in zip(axes[:, col], pictures):
            ax.imshow(np.asarray(picture), **imshow)
            ax.set(xticks=[], yticks=[])
            ax.grid(False)
            if not frame:
                ax.spines[:].set_visible(False)
    return fig


def _colour(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


@_styled
def plot_schedules(
    panels: Mapping[str, Mapping[str, Schedule]],
    epochs: int = 100,
    steps_per_epoch: int = 20,
    ylabels: Optional[Mapping[str, str]] = None,
    ncols: int = 2,
    markers: Sequence[str] = (),
):
    """One panel per group of schedules, each drawn over an ``epochs``-long run.

    ``markers``: names of schedules drawn as dots at every step (random weights), not lines.
    """
    fig, axes = _grid(len(panels), ncols, 5.2, 3.4)
    for ax, (title, group) in zip(axes.flat, panels.items()):
        for name, sched in group.items():
            xs, ys = curve(sched, epochs, steps_per_epoch)
            if name in markers:
                ax.plot(xs, ys, ".", ms=1.5, alpha=0.5, label=name)
            else:
                ax.plot(xs, ys, lw=1.8, label=name)
        ax.axhline(0, color="black", lw=0.6)
        ax.set(title=title, xlabel=f"epoch (of {epochs})", ylabel=(ylabels or {}).get(title, "value"))
        if any(name in markers for name in group):  # dots fill the panel: a framed legend, big markers
            ax.legend(loc="center left", markerscale=8, frameon=True, framealpha=0.95)
        else:
            ax.legend(loc="best")
    return _finish(fig, axes, len(panels))


@_styled
def plot_identity_gaps(results, threshold: float):
    """Horizontal bars of the relative trajectory gap for each identity, on a log scale."""
    names = [r.identity.setting for r in results]
    gaps = np.array([max(r.gap, 1e-18) for r in results])
    colors = [PALETTE[2] if r.identical else PALETTE[1] for r in results]
    fig, ax = plt.subplots(figsize=(8.5, 0.38 * len(results) + 1.2))
    y = np.arange(len(results))[::-1]
    ax.barh(y, gaps, color=colors, left=1e-18)
    ax.set_xscale("log")
    ax.set_yticks(y, names)
    ax.axvline(threshold, color="black", ls="--", lw=1)
    ax.text(threshold, len(results) - 0.4, f"  identical below {threshold:g}", fontsize=8, va="bottom")
    ax.set_xlabel("largest gap between the two trajectories / distance travelled")
    ax.set_title("Loss decay against learning-rate decay: same trajectory (green) or not (red)")
    ax.grid(axis="y", visible=False)
    return _finish(fig)


@_styled
def plot_adam_multiplier(mult, title: str = "What a decaying loss weight does to Adam's step"):
    """The loss weight, the step multiplier it produced under Adam, and the lag-model prediction."""
    fig, ax = plt.subplots()
    steps = np.arange(1, len(mult.weights) + 1)
    w = np.asarray(mult.weights)
    ax.plot(steps, w, color=PALETTE[-1], ls="--", label="loss weight $w_t$ (= the multiplier under lr decay)")
    ax.plot(steps, mult.measured, color=PALETTE[0], lw=2, label="measured: |Adam step with $w_t$| / |step without|")
    ax.plot(steps, mult.predicted, color=PALETTE[3], ls=":", lw=2,
            label=r"lag model: EMA$_{\beta_1}(w)$ / sqrt(EMA$_{\beta_2}(w^2)$)")
    ax.set(xlabel="optimizer step", ylabel="step multiplier", title=title)
    ax.legend()
    return _finish(fig)


@_styled
def plot_curves(x, series: Dict[str, Sequence[float]], xlabel: str, ylabel: str, title: str, logy: bool = False):
    """Several named curves against one x axis."""
    fig, ax = plt.subplots()
    for name, ys in series.items():
        ax.plot(x, ys, lw=1.8, label=name)
    if logy:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend()
    return _finish(fig)


def draw_band(ax, records, metric: str, color: str, label: str, **line) -> bool:
    """On ``ax``: the per-epoch mean of ``metric`` over the finished ``records`` (a line) and +- one
    standard deviation (a band). Returns whether there was anything to draw; ``line`` styles the line."""
    from .statistics import metric_curves

    xs, mean, std = metric_curves(records, metric)
    if not xs:
        return False
    mean, std = np.asarray(mean), np.asarray(std)
    ax.plot(xs, mean, color=color, lw=line.pop("lw", 1.8), label=label, **line)
    ax.fill_between(xs, mean - std, mean + std, color=color, alpha=0.18, lw=0)
    return True


@_styled
def plot_metric_bands(panels, metric: str = "test_acc", ylabel: str = "test accuracy", title: str = "",
                      ncols: int = 2):
    """Mean over seeds (line) and +- one standard deviation (band) of a per-epoch metric.

    ``panels``: ``{panel title: {label: [records of that setting, one per seed]}}``. Diverged runs are
    not averaged in: they are counted in the legend as ``(k diverged)``; runs allowed negative weights
    say so there too (:func:`lossdecay_lib.tables.setting_name`).
    """
    from .tables import setting_name

    n = len(panels)
    fig, axes = _grid(n, min(ncols, n), 5.4, 3.6, sharey=True)
    colors: Dict[str, str] = {}  # one colour per setting across all panels
    for groups in panels.values():
        for label in groups:
            colors.setdefault(label, PALETTE[len(colors) % len(PALETTE)])
    for ax, (panel, groups) in zip(axes.flat, panels.items()):
        for label, records in groups.items():
            name = setting_name(label, records)
            if not draw_band(ax, records, metric, colors[label], name):
                ax.plot([], [], color=colors[label], label=name)  # in the legend all the same
        ax.set(title=panel, xlabel="epoch", ylabel=ylabel)
        ax.legend(loc="best", fontsize=7.5)
    return _finish(fig, axes, n, title)


@_styled
def plot_layer_grad_norms(groups, epochs: Sequence[int], title: str = ""):
    """Per-layer gradient norm (mean over seeds and over the epoch's steps), input layer on the left.

    ``groups``: ``{label: [records]}``; one panel per epoch in ``epochs`` (0-based).
    """
    fig, axes = _grid(len(epochs), len(epochs), 4.2, 3.5, sharey=True)
    for ax, epoch in zip(axes.flat, epochs):
        for i, (label, records) in enumerate(groups.items()):
            runs = [r for r in records if r["status"] == "finished"]
            if not runs:
                continue
            norms = np.mean([r["epochs"][epoch]["layer_grad_norms"] for r in runs], axis=0)
            ax.plot(np.arange(1, len(norms) + 1), norms, color=_colour(i), lw=1.6, label=label)
        ax.set_yscale("log")
        ax.set(title=f"epoch {epoch + 1}", xlabel="layer (1 = input side)")
    axes.flat[0].set_ylabel("gradient norm of the layer's weight")
    axes.flat[0].legend()
    return _finish(fig, title=title)


def _curvature_series(records, key, transform=None):
    """Per measurement: epochs (fractional) and the mean over seeds of ``key`` (rows where it exists)."""
    runs = [r for r in records if r["status"] == "finished" and r.get("curvature")]
    if not runs:
        return np.array([]), np.array([])
    spe = runs[0]["data"]["steps_per_epoch"]
    steps = [row["step"] for row in runs[0]["curvature"] if row.get(key) is not None]
    values = []
    for r in runs:
        by_step = {row["step"]: row for row in r["curvature"] if row.get(key) is not None}
        values.append([transform(by_step[s]) if transform else by_step[s][key] for s in steps if s in by_step])
    n = min(len(v) for v in values)
    return np.asarray(steps[:n]) / spe, np.mean([v[:n] for v in values], axis=0)


@_styled
def plot_curvature_along_training(groups, momentum: float, weight_decay: float = 0.0, title: str = ""):
    """The two terms of the paper's Eq. 2 and the stability ratio along training, one line per setting.

    Panels: ``g^T g``; ``g^T H g``; and ``eta_t w_t (lambda_max + weight decay) / (2 (1 + momentum))``, the
    effective step against the heavy-ball stability threshold (above 1: a quadratic with that curvature
    makes the step diverge). ``groups``: ``{label: [records with curvature rows]}``; means over seeds.
    """
    from .curvature import stability_ratio

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.8))
    ratio = lambda row: stability_ratio(row["sharpness"], row["lr"], row["weight"], momentum, weight_decay)  # noqa: E731
    for i, (label, records) in enumerate(groups.items()):
        color = _colour(i)
        for ax, key, tf in ((axes[0], "gTg", None), (axes[1], "gTHg", None), (axes[2], "sharpness", ratio)):
            x, y = _curvature_series(records, key, tf)
            if len(x):
                ax.plot(x, y, color=color, lw=1.6, label=label)
    axes[0].set_ylabel("$g^T g$")
    axes[1].set_ylabel("$g^T H g$ (can be negative)")
    axes[2].set_ylabel(r"$\eta_t w_t \lambda_{max} / 2(1+\beta)$")
    axes[2].axhline(1.0, color="black", ls="--", lw=1)
    axes[2].legend(loc="upper right", frameon=True, framealpha=0.9)
    for ax, t in zip(axes, ("gradient norm squared", "curvature along the gradient", "step against the stability threshold")):
        ax.set_yscale("symlog", linthresh=1.0) if ax is axes[1] else ax.set_yscale("log")
        ax.set(xlabel="epoch", title=t)
    return _finish(fig, title=title)


@_styled
def plot_quadratic_check(groups, title: str = "Does the quadratic model predict the loss change of the step taken?"):
    """Predicted (Eq. 2, for the step the optimizer took) against measured loss change, every measurement."""
    fig, ax = plt.subplots(figsize=(5.6, 5.0))
    lim = 0.0
    for i, (label, records) in enumerate(groups.items()):
        rows = [row for r in records if r["status"] == "finished" for row in r.get("curvature", [])]
        if not rows:
            continue
        p = np.array([row["predicted_change"] for row in rows])
        a = np.array([row["actual_change"] for row in rows])
        lim = max(lim, np.abs(p).max(), np.abs(a).max())
        ax.plot(p, a, ".", ms=4, alpha=0.6, color=_colour(i), label=label)
    if lim > 0:
        ax.plot([-lim, lim], [-lim, lim], color="black", lw=0.8, ls="--", label="prediction = measurement")
        ax.set_xscale("symlog", linthresh=lim * 1e-3, linscale=2.0)
        ax.set_yscale("symlog", linthresh=lim * 1e-3, linscale=2.0)
    ax.set(xlabel="predicted change of the evaluation loss", ylabel="measured change", title=title)
    ax.legend(fontsize=7.5)
    return _finish(fig)


# --------------------------------------------------------------------------------------------------
# Semantic segmentation (chapter "Semantic segmentation", paper Table I and Fig. 6)
# --------------------------------------------------------------------------------------------------

__all__ += ["plot_segmentation_curves", "plot_segmentation_grid"]

SEGMENTATION_CURVES = (
    ("train_loss", "training loss (unweighted)"),
    ("train_loss_weighted", "training loss x weight"),
    ("val_loss", "val loss (main head)"),
    ("val_miou", "val mean IoU"),
)


@_styled
def plot_segmentation_curves(groups, title: str = "", metrics=SEGMENTATION_CURVES):
    """One panel per per-epoch metric of segmentation records: mean over seeds and +- one std band.

    ``groups``: ``{label: [records of that setting, one per seed]}``; ``metrics``: ``(key, axis label)``
    pairs of the records' ``epochs`` entries. The legend names settings by
    :func:`lossdecay_lib.tables.setting_name` (diverged runs counted, not averaged; negative weights said).
    """
    from .tables import setting_name

    fig, axes = _grid(len(metrics), 2, 5.4, 3.3)
    for ax, (metric, ylabel) in zip(axes.flat, metrics):
        for i, (label, records) in enumerate(groups.items()):
            draw_band(ax, records, metric, _colour(i), setting_name(label, records), marker="o", ms=3)
        if metric == "val_loss" and ax.lines:
            ax.set_yscale("log")  # batch-norm statistics of the first epochs make it span decades
        ax.set(xlabel="epoch", ylabel=ylabel)
    rect = _legend_below(fig, axes.flat[0], columns=2, space=0.06, per_row=0.03)
    return _finish(fig, axes, len(metrics), title, rect=rect)


@_styled
def plot_segmentation_grid(images, truth, predictions, info, title: str = ""):
    """The paper's Fig. 6: one row per val image; input, one column per setting's prediction, ground truth.

    ``images``: uint8 ``[n, H, W, 3]``; ``truth``: label maps ``[n, H, W]``; ``predictions``:
    ``{column title: label maps [n, H, W]}`` (the same images in the same order); ``info``: the dataset's
    :class:`~lossdecay_lib.data.segmentation.SegmentationInfo`, whose palette colours the maps (the
    ignore colour where unlabelled). A legend names the palette's classes.
    """
    from matplotlib.patches import Patch

    columns = [("input", images)] + [(name, [info.colourise(m) for m in maps]) for name, maps in
                                     [*predictions.items(), ("ground truth", truth)]]
    h, w = images.shape[1:3]
    fig = _image_grid(columns, (2.6, 2.6 * h / w), 0.9, title_size=9, interpolation="nearest")
    patches = [Patch(color=np.array(c) / 255, label=name) for name, c in zip(info.class_names, info.palette)]
    patches.append(Patch(color=np.array(info.ignore_colour) / 255, label="unlabelled (ignored)"))
    fig.legend(handles=patches, loc="lower center", ncol=min(len(patches), 6), fontsize=7)
    return _finish(fig, title=title, rect=(0, 0.12, 1, 1))


VERDICT_COLOURS = {"supported": PALETTE[2], "contradicted": PALETTE[1], "inconclusive": PALETTE[9],
                   "untestable at this scale": PALETTE[7]}


@_styled
def plot_claim_differences(claims, title: str = "The paper's claims tested by comparing two settings"):
    """Each stored comparison claim (:mod:`lossdecay_lib.verdict`): treatment minus baseline (or the
    claim's contrast) with its 95% confidence interval, coloured by its verdict. Claims without a
    comparison are not drawn."""
    from matplotlib.lines import Line2D

    rows = [c for c in claims if c.get("comparison")]
    fig, ax = plt.subplots(figsize=(8.5, 1.4 + 0.42 * max(1, len(rows))))
    if not rows:
        ax.text(0.5, 0.5, "no comparison claims stored for this profile", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    for i, c in enumerate(rows):
        diff, (lo, hi) = c["comparison"]["diff"], c["comparison"]["ci95"]
        bar = [[diff - lo], [hi - diff]] if np.isfinite(lo) else None
        ax.errorbar(diff, i, xerr=bar, fmt="o", color=VERDICT_COLOURS[c["verdict"]], capsize=3, markersize=6)
    ax.axvline(0.0, color="#222222", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [f"{c['chapter'].replace('_', ' ')}: {c['claim_id']}" for c in rows],
                  fontsize=8.5)
    ax.set_ylim(len(rows) - 0.5, -0.5)
    units = sorted({c["comparison"]["unit"] for c in rows})
    ax.set_xlabel(f"treatment minus baseline ({', '.join(units)}): difference of means and its 95% confidence interval")
    handles = [Line2D([], [], marker="o", linestyle="", color=colour, label=verdict)
               for verdict, colour in VERDICT_COLOURS.items()]
    ax.legend(handles=handles, loc="best")
    ax.set_title(title)
    return _finish(fig)


@_styled
def plot_chapter_times(timings, chapters: Sequence[str], title: str = "Measured execution time per chapter"):
    """Horizontal bars: ``timings`` is ``{profile: {chapter: seconds}}``; chapters without a time are left
    empty (and said so in the legend's count)."""
    profiles = [p for p in timings if timings[p]]
    fig, ax = plt.subplots(figsize=(8.0, 1.2 + 0.38 * len(chapters) * max(1, len(profiles)) ** 0.5))
    height = 0.8 / max(1, len(profiles))
    for k, profile in enumerate(profiles):
        ys = [i + (k - (len(profiles) - 1) / 2) * height for i in range(len(chapters))]
        secs = [timings[profile].get(ch, np.nan) for ch in chapters]
        have = sum(np.isfinite(s) for s in secs)
        ax.barh(ys, secs, height=height, color=_colour(k),
                label=f"{profile} ({have} of {len(chapters)} chapters measured)")
    ax.set_yticks(range(len(chapters)), [ch.replace("_", " ") for ch in chapters], fontsize=8.5)
    ax.set_ylim(len(chapters) - 0.5, -0.5)
    ax.set_xscale("log")
    ax.set_xlabel("seconds (log scale)")
    ax.legend(loc="best")
    ax.set_title(title)
    return _finish(fig)


# --------------------------------------------------------------------------------------------------
# pix2pix (chapter "pix2pix", paper Section III.C and Fig. 5)
# --------------------------------------------------------------------------------------------------

__all__ += ["PIX2PIX_CURVES", "plot_pix2pix_curves", "plot_pix2pix_grid", "plot_step_multipliers",
            "plot_final_image_metrics"]

PIX2PIX_CURVES = (
    ("d_loss", "discriminator loss"),
    ("g_gan_loss", "generator adversarial loss"),
    ("g_l1_loss", "generator L1 loss (unweighted)"),
    ("g_loss_weighted", "G loss x weight (backpropagated)"),
    ("test_l1", "test L1"),
    ("test_psnr", "test PSNR (dB)"),
)


@_styled
def plot_pix2pix_curves(groups, title: str = "", metrics=PIX2PIX_CURVES):
    """Per-epoch losses and test metrics of pix2pix records, mean over seeds and +- one std band, one
    panel per metric (the layout of :func:`plot_segmentation_curves`, with pix2pix's quantities)."""
    return plot_segmentation_curves(groups, title=title, metrics=metrics)


@_styled
def plot_pix2pix_grid(inputs, outputs: Mapping[str, object], targets, title: str = ""):
    """The paper's Fig. 5 layout: one row per test image; the input, each setting's output, the ground truth.

    ``inputs``, ``targets`` and every value of ``outputs`` (``{column title: images}``) are uint8
    ``[n, 3, H, W]`` tensors or arrays of the same test images in the same order. Long column titles wrap.
    """
    import textwrap

    columns = [(textwrap.fill(name, 24), np.transpose(np.asarray(images), (0, 2, 3, 1)))
               for name, images in [("input", inputs), *outputs.items(), ("ground truth", targets)]]
    fig = _image_grid(columns, (1.9, 1.9), 0.5, title_size=8, frame=False)
    return _finish(fig, title=title, fontsize=10)


@_styled
def plot_step_multipliers(groups, base_lr: float, title: str = ""):
    """Per setting, the generator's Adam step relative to plain Adam's at the base learning rate.

    Three curves per panel (means over seeds, measured one with a +- std band): the multiplier measured
    in the run (``step_multiplier``), the one the lag model predicts (``step_multiplier_predicted``), and
    the nominal one, ``weight x learning-rate factor``: what multiplying the learning rate by the weight
    would give.
    """
    from .statistics import metric_curves
    from .tables import setting_name
    from .statistics import mean_std

    fig, axes = _grid(len(groups), 2, 5.4, 3.2, sharey=True)
    for ax, (label, records) in zip(axes.flat, groups.items()):
        done = [r for r in records if r["status"] == "finished"]
        if draw_band(ax, done, "step_multiplier", PALETTE[0], "measured", lw=2, marker="o", ms=3):
            xs, pred, _ = metric_curves(done, "step_multiplier_predicted")
            ax.plot(xs, pred, color=PALETTE[3], ls=":", lw=2, label="lag model")
            nominal = [mean_std([r["epochs"][e]["weight_mean"] * r["epochs"][e]["lr_mean"] / base_lr
                                 for r in done])[0] for e in range(len(xs))]
            ax.plot(xs, nominal, color=PALETTE[-1], ls="--", lw=1.5, label="weight x lr factor")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(setting_name(label, records), fontsize=9)
        ax.set(xlabel="epoch", ylabel="step multiplier")
        ax.legend(loc="best", fontsize=7.5)
    return _finish(fig, axes, len(groups), title)


@_styled
def plot_final_image_metrics(groups, metrics=(("final_test_l1", "test L1 (lower is better)"),
                                              ("final_test_psnr", "test PSNR, dB (higher is better)"),
                                              ("final_test_ssim", "test SSIM (higher is better)")), title: str = ""):
    """One panel per run-level metric, one row per setting: each seed's value (dots) and mean +- std (bar)."""
    from .tables import setting_name
    from .statistics import mean_std

    labels = list(groups)
    fig, axes = plt.subplots(1, len(metrics), figsize=(3.3 * len(metrics) + 2.6, 0.45 * len(labels) + 1.5),
                             squeeze=False, sharey=True)
    ys = np.arange(len(labels))[::-1]
    for ax, (metric, xlabel) in zip(axes.flat, metrics):
        for y, (i, label) in zip(ys, enumerate(labels)):
            values = [r[metric] for r in groups[label] if r["status"] == "finished"]
            color = _colour(i)
            m, s = mean_std(values)
            ax.errorbar([m], [y], xerr=[s], fmt="s", color=color, ms=7, capsize=4)
            ax.plot(values, [y - 0.18] * len(values), "o", color=color, ms=3.5, alpha=0.6)
        ax.set_xlabel(xlabel)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(4))
        ax.grid(axis="y", visible=False)
    axes.flat[0].set_yticks(ys, [setting_name(lb, groups[lb]) for lb in labels], fontsize=8)
    axes.flat[0].set_ylim(-0.6, len(labels) - 0.4)
    return _finish(fig, title=title)


# --------------------------------------------------------------------------------------------------
# Weight decay over w_t (chapter "What loss decay changes", issue 19)
# --------------------------------------------------------------------------------------------------

__all__ += ["plot_layer_curves", "plot_step_scales"]


def _epoch_view(records, value):
    """Finished records that carry what ``value(record, epoch_entry)`` reads, reduced to one number per
    epoch (``{"value": ...}``), so that :func:`draw_band` can draw any derived quantity."""
    out = []
    for r in records:
        if r.get("status") != "finished" or not r.get("epochs"):
            continue
        try:
            out.append({"status": "finished", "epochs": [{"value": value(r, e)} for e in r["epochs"]]})
        except KeyError:  # a record from before the quantity was recorded: left out, not guessed
            continue
    return out


def _log_ticks(ax) -> None:
    """Label an axis that holds log10 values as powers of ten."""
    ax.yaxis.set_major_locator(matplotlib.ticker.MaxNLocator(nbins=5, steps=[1, 2, 5, 10]))
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{10 ** v:.2g}"))


@_styled
def plot_layer_curves(groups, key: str, layers: Sequence[int], ylabel: str, title: str = "",
                      logy: bool = False, ncols: int = 4):
    """A per-layer quantity of the records (``key``: e.g. ``layer_weight_norms`` or
    ``layer_effective_steps``) over training: one panel per layer index in ``layers`` (negative counts
    from the classifier), one band per setting (mean over seeds, +- one standard deviation).

    ``groups``: ``{label: [records]}``. Records without ``key`` (trained before it was recorded) are
    left out; the legend's ``n=`` counts the runs drawn. ``logy``: on the panels whose values span more
    than a decade, the mean and spread are those of log10 (geometric mean, a band that stays positive),
    on a log axis.
    """
    from .tables import setting_name

    first = next((r for recs in groups.values() for r in recs if r.get("layers")), None)
    names = first["layers"] if first else []
    fig, axes = _grid(len(layers), min(ncols, len(layers)), 3.9, 3.3, extra_height=0.6, sharex=True)
    for ax, layer in zip(axes.flat, layers):
        views = {label: _epoch_view(records, lambda r, e: e[key][layer]) for label, records in groups.items()}
        values = np.array([e["value"] for v in views.values() for r in v for e in r["epochs"]])
        log = logy and len(values) and values.min() > 0 and values.max() > 10 * values.min()
        for i, (label, view) in enumerate(views.items()):
            drawn = _epoch_view(view, lambda r, e: np.log10(e["value"])) if log else view
            draw_band(ax, drawn, "value", _colour(i), setting_name(label, view), lw=1.6)
        if log:
            _log_ticks(ax)
        index = layer % len(names) if names else layer
        ax.set_title(f"layer {index + 1}: {names[layer]}" if names else f"layer {layer}", fontsize=9)
        ax.set_xlabel("epoch")
    for row in axes:
        row[0].set_ylabel(ylabel)
    rect = _legend_below(fig, axes.flat[0], columns=3, space=0.08, per_row=0.04)
    return _finish(fig, axes, len(layers), title, rect=rect)


@_styled
def plot_step_scales(groups, title: str = "What the optimizer is asked to do, per setting"):
    """Two panels per setting's records: the learning rate times the weight in force (the step scale of
    the gradient), and the coupled weight decay's shrink per step, ``lr x weight-decay factor`` (see
    :func:`lossdecay_lib.weighting.decay_per_step`; before momentum's ``1 / (1 - mu)``). Means over
    the epoch's steps and over seeds."""
    from .tables import setting_name
    from .weighting import decay_per_step

    fig, axes = _grid(2, 2, 5.5, 3.9)
    panels = (("learning rate x weight", lambda r, e: e["lr_mean"] * e["weight_mean"]),
              ("weight decay's shrink per step", lambda r, e: decay_per_step(r["config"], e["lr_mean"], e["weight_mean"])))
    for ax, (ylabel, value) in zip(axes.flat, panels):
        for i, (label, records) in enumerate(groups.items()):
            view = _epoch_view(records, value)
            draw_band(ax, view, "value", _colour(i), setting_name(label, view), lw=1.8,
                      ls=("-", "--", ":", "-.")[i % 4])
        ax.set(xlabel="epoch", ylabel=ylabel)
    axes.flat[1].legend(loc="best", fontsize=7.5)
    return _finish(fig, axes, 2, title)
