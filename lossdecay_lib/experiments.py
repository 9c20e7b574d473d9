"""The runs of the classification chapters, by chapter: one place that both the chapter and the
training campaign read.

Each function returns ``{label: ClassificationConfig}`` (seed 0) at the sizes of ``profile``; a
chapter trains them at its seeds with :func:`lossdecay_lib.training.train_seeds`, and
``python -m lossdecay_lib.campaign`` trains every missing run of the chosen chapters ahead of
rendering, in parallel (:data:`CHAPTERS` is also its priority order). Runs that two chapters share
(the 40-layer constant-weight and loss-decay runs, for instance) have one key and train once.

Which settings a chapter runs is the paper's choice, written out in each function's docstring with
the figure it reproduces; the chapters name their comparators from these labels before results are
read.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Sequence, Tuple

from . import schedules as S
from .profiles import get_profile
from .training.classification import AUTHORS_SGD, ClassificationConfig

__all__ = ["deep_plain_networks", "death_convergence", "schedules_compared", "second_order", "weight_decay",
           "CHAPTERS", "BUDGETS", "campaign_configs", "EXTRA_BASELINES"]

#: Today's schedules, beside the paper's (Fig. 4c compares only the paper's methods); a profile lists
#: which of them it can afford (:attr:`ClassificationSizes.extra_baselines`).
EXTRA_BASELINES = ("cosine lr", "linear-to-zero lr", "Schedule-Free SGD")


def _plain(profile: str, depth: int, label: str, **changes) -> ClassificationConfig:
    return ClassificationConfig.from_profile(profile, depth=depth, label=label, **changes)


def deep_plain_networks(profile: str) -> Dict[int, Dict[str, ClassificationConfig]]:
    """Fig. 1: at each depth of the profile (the paper's 40 and 50 layers), a plain network at a fixed
    learning rate with a constant weight of 1 and with loss decay 2 -> 0 (Fig. 2a). ``{depth: {label:
    config}}``."""
    sizes = get_profile(profile).classification
    return {depth: {f"constant weight 1, depth {depth}": _plain(profile, depth, f"constant weight 1, depth {depth}"),
                    f"loss decay 2 -> 0, depth {depth}": _plain(profile, depth, f"loss decay 2 -> 0, depth {depth}",
                                                                weight=S.linear_decay(start=2.0))}
            for depth in sizes.depths}


def death_convergence(profile: str) -> Dict[str, ClassificationConfig]:
    """Figs. 2b and 3: the first depth's plain network; fixed and poly(0.9) learning rate, each with a
    constant weight and loss decay 2 -> 0 (Fig. 2b); loss decay 3 -> 0 and the long tail 2 -> 0.1
    (Fig. 3a); the authors' code weight (stretched so its cliff stays at 70% of training); and the control
    of the Fig. 2b late-jump claim, loss decay's schedule on the learning rate (the Fig. 4d runs of
    :func:`schedules_compared`, one key for both chapters)."""
    depth = get_profile(profile).classification.depths[0]
    settings = {
        "fixed lr, constant weight": dict(weight=S.constant(1.0)),
        "fixed lr, loss decay 2 -> 0": dict(weight=S.linear_decay(start=2.0)),
        "poly lr, constant weight": dict(weight=S.constant(1.0), lr_schedule=S.poly(0.9)),
        "poly lr, loss decay 2 -> 0": dict(weight=S.linear_decay(start=2.0), lr_schedule=S.poly(0.9)),
        "fixed lr, loss decay 3 -> 0": dict(weight=S.linear_decay(start=3.0)),
        "fixed lr, long tail 2 -> 0.1": dict(weight=S.long_tail(start=2.0, end=0.1)),
        "fixed lr, authors' code weight": dict(weight=S.stretched(S.authors_code_weight(), epochs=100)),
        "same schedule on the lr (Fig. 4d)": dict(weight=S.linear_decay(start=2.0), weight_place="lr"),
    }
    return {label: _plain(profile, depth, label, **kw) for label, kw in settings.items()}


def schedules_compared(profile: str) -> Dict[str, ClassificationConfig]:
    """Fig. 4: the paper's weighting (4a, the authors' code weight), loss decay 2 -> 0, the same schedule
    on the learning rate (4d), a piecewise-constant lr (x0.1 at 50% and 75%) and the random weight
    U(0, 1) (4b) on the first depth's plain network; the authors' code protocol (CIFAR ResNet-34, per-epoch
    poly lr, with and without their code weight); and the profile's share of today's baselines
    (:data:`EXTRA_BASELINES`)."""
    sizes = get_profile(profile).classification
    depth = sizes.depths[0]
    steps = sizes.epochs * (sizes.train_images // sizes.batch_size)
    code_weight = S.stretched(S.authors_code_weight(), epochs=100)
    settings = {
        "paper's weighting (Fig. 4a)": dict(weight=code_weight),
        "loss decay 2 -> 0": dict(weight=S.linear_decay(start=2.0)),
        "same schedule on the lr (Fig. 4d)": dict(weight=S.linear_decay(start=2.0), weight_place="lr"),
        "piecewise constant lr": dict(lr_schedule=S.piecewise_constant((0.5, 0.75))),
        "random weight U(0, 1)": dict(weight=S.random_uniform(seed=0)),
    }
    extras = {
        "cosine lr": dict(lr_schedule=S.cosine()),
        "linear-to-zero lr": dict(lr_schedule=S.linear_to_zero()),
        "Schedule-Free SGD": dict(optimizer="sgd_schedule_free", optimizer_settings=dict(
            lr=1.0, momentum=0.9, weight_decay=1e-4, warmup_steps=max(1, steps // 20))),
    }
    settings.update({name: extras[name] for name in sizes.extra_baselines})
    configs = {label: _plain(profile, depth, label, **kw) for label, kw in settings.items()}
    resnet = dict(model="resnet34_cifar", model_settings=dict(width=sizes.resnet_width), label="")
    poly = S.per_epoch(S.poly(0.9))
    for label, kw in {"ResNet-34, poly lr": dict(lr_schedule=poly),
                      "ResNet-34, poly lr x code weight (authors' code)": dict(lr_schedule=poly, weight=code_weight)}.items():
        configs[label] = ClassificationConfig.from_profile(profile, **{**resnet, **kw, "label": label})
    return configs


def second_order(profile: str) -> Dict[str, ClassificationConfig]:
    """Section II's Taylor view (Eq. 2) measured along training: a constant weight, the weights of Figs.
    2a and 3a, the authors' code weight, and a weight set from the measured curvature, at the profile's
    curvature sizes with g^T g and g^T H g measured along every run."""
    momentum = dict(AUTHORS_SGD)["momentum"]
    settings = {
        "constant weight 1": S.constant(1.0),
        "loss decay 2 -> 0": S.linear_decay(start=2.0),
        "loss decay 3 -> 0": S.linear_decay(start=3.0),
        "long tail 2 -> 0.1": S.long_tail(start=2.0, end=0.1),
        "authors' code weight": S.stretched(S.authors_code_weight(), epochs=100),
        "curvature-adaptive (max 2)": S.curvature_adaptive(max_weight=2.0, momentum=momentum),
    }
    return {label: ClassificationConfig.from_profile(profile, curvature=True, weight=w, label=label)
            for label, w in settings.items()}


def weight_decay(profile: str) -> Dict[str, ClassificationConfig]:
    """What loss decay changes through coupled weight decay (issue 19; paper Fig. 4d's question): on
    the first depth's plain network with the authors' SGD, (1) loss decay 2 -> 0; (2) the same schedule
    on the lr, whose weight decay falls with the rate; (3) the same on the lr with weight decay
    lambda / w_t, which the identity ``lr (w g + lambda p) = (lr w)(g + (lambda / w) p)`` makes equal to
    (1) up to the momentum form; (4) and (5): (1) and (2) without weight decay. Runs (1) and (2) share
    their keys with the other chapters' (labels are not part of a key)."""
    depth = get_profile(profile).classification.depths[0]
    decay = S.linear_decay(start=2.0)
    no_wd = dict(AUTHORS_SGD, weight_decay=0.0)
    settings = {
        "loss decay 2 -> 0": dict(weight=decay),
        "same schedule on the lr": dict(weight=decay, weight_place="lr"),
        "same schedule on the lr, weight decay / w_t": dict(weight=decay, weight_place="lr",
                                                            weight_decay_over_weight=True),
        "loss decay 2 -> 0, no weight decay": dict(weight=decay, optimizer_settings=no_wd),
        "same schedule on the lr, no weight decay": dict(weight=decay, weight_place="lr", optimizer_settings=no_wd),
    }
    return {label: _plain(profile, depth, label, **kw) for label, kw in settings.items()}


def _flat(configs) -> List[ClassificationConfig]:
    if isinstance(configs, dict):
        return [c for v in configs.values() for c in _flat(v)]
    return [configs]


#: The chapters whose runs the campaign trains, in its priority order.
CHAPTERS: Dict[str, Callable[[str], Dict]] = {
    "deep_plain_networks": deep_plain_networks,
    "death_convergence": death_convergence,
    "schedules_compared": schedules_compared,
    "second_order": second_order,
    "weight_decay": weight_decay,
}

#: The training budget of the rendered book's ``cpu`` profile, in core-hours: the four classification
#: chapters of the paper together at most 20 (issue 14), the weight-decay chapter's own runs at most 6
#: (issue 19). ``{name: (chapters, core-hours)}``; Reproducing compares the records' CPU time with it.
BUDGETS: Dict[str, Tuple[Tuple[str, ...], float]] = {
    "the paper's classification experiments": (
        ("deep_plain_networks", "death_convergence", "schedules_compared", "second_order"), 20.0),
    "the weight-decay chapter": (("weight_decay",), 6.0),
}


def campaign_configs(profile: str, chapters: Sequence[str], seeds: Sequence[int]) -> List[ClassificationConfig]:
    """Every run of ``chapters`` (in priority order) at every seed, each key once. Within a chapter, seed
    0 of every setting comes before seed 1, so a half-finished chapter already covers every setting."""
    from .checks import check_name
    from .runs import run_key

    for name in chapters:
        check_name(name, tuple(CHAPTERS), "chapter")
    seen, out = set(), []
    for name in chapters:
        for seed in seeds:
            for config in _flat(CHAPTERS[name](profile)):
                c = config.with_(seed=seed)
                key = run_key(c)
                if key not in seen:
                    seen.add(key)
                    out.append(c)
    return out
